//! Creating and revoking API keys. The key is returned once and never stored: its stream
//! records the digest, the name, the role and the expiry, then a revocation if one comes; the
//! `api_keys` projection is what requests are checked against.

use chrono::{DateTime, Utc};
use spse_totp_domain::apikey::{self, ApiKey, ApiKeyCommand, ApiKeyError, ApiKeyEvent, Role};
use uuid::Uuid;

use crate::tokens::{random_token, sha256_hex};
use spse_totp_store::{Actor, EventMetadata, EventStore, ExpectedVersion, NewEvent, StoreError};

pub struct CreatedKey {
    pub key_id: Uuid,
    /// The bearer key, to hand to the caller now: it cannot be shown again.
    pub key: String,
    pub position: u64,
}

/// A key created at the server's shell, by `created_by`.
pub async fn create(
    store: &dyn EventStore,
    name: &str,
    role: Role,
    created_by: &str,
    now: DateTime<Utc>,
) -> Result<CreatedKey, StoreError> {
    create_as(store, name, role, operator_metadata(created_by), now).await
}

/// The metadata of an action taken at the server's shell by `operator`.
pub fn operator_metadata(operator: &str) -> EventMetadata {
    EventMetadata {
        actor: Actor::Operator {
            name: operator.to_owned(),
        },
        ..EventMetadata::system()
    }
}

/// A key created by whoever `metadata` names (an admin signed in to the console).
pub async fn create_as(
    store: &dyn EventStore,
    name: &str,
    role: Role,
    metadata: EventMetadata,
    now: DateTime<Utc>,
) -> Result<CreatedKey, StoreError> {
    create_expiring_as(store, name, role, None, metadata, now).await
}

/// A key that stops working at `expires_at` (see [`apikey::expiry`]), or never when `None`.
pub async fn create_expiring_as(
    store: &dyn EventStore,
    name: &str,
    role: Role,
    expires_at: Option<DateTime<Utc>>,
    metadata: EventMetadata,
    now: DateTime<Utc>,
) -> Result<CreatedKey, StoreError> {
    let key_id = Uuid::now_v7();
    let key = random_token("spse_key");
    let event = ApiKeyEvent::ApiKeyCreated {
        key_id,
        name: name.to_owned(),
        role,
        key_sha256: sha256_hex(&key),
        at: now,
        expires_at,
    };
    let appended = store
        .append(
            &ApiKeyEvent::stream_name(key_id),
            ExpectedVersion::NoStream,
            vec![NewEvent {
                event_id: Uuid::now_v7(),
                event_type: event.event_type().to_owned(),
                schema_version: 1,
                payload: event.to_payload(),
                metadata,
                recorded_at: now,
            }],
        )
        .await?;
    Ok(CreatedKey {
        key_id,
        key,
        position: appended.last_position,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ApiKeyCommandError {
    #[error("API key {key_id}: {error}")]
    Rejected { key_id: Uuid, error: ApiKeyError },
    #[error("API key {0} is being changed by someone else; try again")]
    Contention(Uuid),
    #[error("stored event in {stream} does not decode: {reason}")]
    Decode { stream: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApiKeyCommandError {
    pub fn rejected(&self) -> Option<&ApiKeyError> {
        match self {
            ApiKeyCommandError::Rejected { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Decisions retried after a version conflict before giving up.
const ATTEMPTS: usize = 3;

/// The key as its stream tells it now, and the stream's version.
pub async fn load(
    store: &dyn EventStore,
    key_id: Uuid,
) -> Result<(ApiKey, u64), ApiKeyCommandError> {
    let stream = ApiKeyEvent::stream_name(key_id);
    let mut key = ApiKey::default();
    let mut version = 0;
    loop {
        let page = store.read_stream(&stream, version + 1, 100).await?;
        let Some(last) = page.last().map(|e| e.version) else {
            break;
        };
        for recorded in &page {
            let event = ApiKeyEvent::from_stored(&recorded.event_type, recorded.payload.clone())
                .map_err(|e| ApiKeyCommandError::Decode {
                    stream: stream.clone(),
                    reason: e.to_string(),
                })?;
            key.apply(&event);
        }
        version = last;
    }
    Ok((key, version))
}

/// Revokes a key at the server's shell, by `revoked_by`; returns the position written.
pub async fn revoke(
    store: &dyn EventStore,
    key_id: Uuid,
    revoked_by: &str,
    now: DateTime<Utc>,
) -> Result<u64, ApiKeyCommandError> {
    revoke_as(store, key_id, operator_metadata(revoked_by), now).await
}

/// Revokes a key by whoever `metadata` names. An unknown or already revoked key is refused and
/// nothing is written.
pub async fn revoke_as(
    store: &dyn EventStore,
    key_id: Uuid,
    metadata: EventMetadata,
    now: DateTime<Utc>,
) -> Result<u64, ApiKeyCommandError> {
    let stream = ApiKeyEvent::stream_name(key_id);
    for _ in 0..ATTEMPTS {
        let (key, version) = load(store, key_id).await?;
        let events = apikey::decide(&key, &ApiKeyCommand::Revoke, now)
            .map_err(|error| ApiKeyCommandError::Rejected { key_id, error })?;
        let new_events = events
            .iter()
            .map(|event| NewEvent {
                event_id: Uuid::now_v7(),
                event_type: event.event_type().to_owned(),
                schema_version: 1,
                payload: event.to_payload(),
                metadata: metadata.clone(),
                recorded_at: now,
            })
            .collect();
        match store
            .append(&stream, ExpectedVersion::at(version), new_events)
            .await
        {
            Ok(appended) => return Ok(appended.last_position),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiKeyCommandError::Contention(key_id))
}
