//! Creating API keys. The key is returned once and never stored: its stream records the digest,
//! the name and the role, and the `api_keys` projection is what requests are checked against.

use chrono::{DateTime, Utc};
use spse_totp_domain::apikey::{ApiKeyEvent, Role};
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
    let metadata = EventMetadata {
        actor: Actor::Operator {
            name: created_by.to_owned(),
        },
        ..EventMetadata::system()
    };
    create_as(store, name, role, metadata, now).await
}

/// A key created by whoever `metadata` names (an admin signed in to the console).
pub async fn create_as(
    store: &dyn EventStore,
    name: &str,
    role: Role,
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
