//! How a reaction to events (mail outcomes, expired logins) writes its own events: through the
//! store's port, never the command handlers. It folds the account from its stream, asks the
//! domain to decide, and appends with the version it decided on; a conflict (a request of the
//! same account got in first) reads again and decides again, a bounded number of times.

use chrono::{DateTime, Utc};
use spse_totp_domain::account::Context;
use spse_totp_domain::{
    decide, Account, AccountCommand, AccountEvent, AccountKey, Policy, Rejection,
};
use spse_totp_store::{
    fold_stream, EventMetadata, EventStore, ExpectedVersion, NewEvent, StoreError,
};
use uuid::Uuid;

const ATTEMPTS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum ReactionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored event in {stream} does not decode: {reason}")]
    Decode { stream: String, reason: String },
    #[error("the domain refused a reaction's command: {0}")]
    Refused(String),
    #[error("{0}: the account kept changing; tried {ATTEMPTS} times")]
    Contention(String),
}

/// An account folded from its whole stream, and the version it was folded to.
pub async fn load(
    store: &dyn EventStore,
    key: &AccountKey,
) -> Result<(Account, u64), ReactionError> {
    let stream = key.stream_name();
    let mut account = Account::default();
    let version = fold_stream::<ReactionError>(store, &stream, 0, |recorded| {
        let event = AccountEvent::from_stored(
            &recorded.event_type,
            recorded.schema_version,
            recorded.payload,
        )
        .map_err(|e| ReactionError::Decode {
            stream: stream.clone(),
            reason: e.to_string(),
        })?;
        account.apply(&event);
        Ok(())
    })
    .await?;
    Ok((account, version))
}

/// Decides `command` on the account as stored and appends what it records. Returns the last
/// position appended (none when the decision recorded nothing).
pub async fn record(
    store: &dyn EventStore,
    key: &AccountKey,
    command: &AccountCommand,
    metadata: &EventMetadata,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Result<Option<u64>, ReactionError> {
    let stream = key.stream_name();
    let metadata = EventMetadata {
        causation_id: metadata
            .causation_id
            .clone()
            .or_else(|| Some(Uuid::now_v7().to_string())),
        ..metadata.clone()
    };
    for _ in 0..ATTEMPTS {
        let (account, version) = load(store, key).await?;
        let events = match decide(&account, command, Context::new(now, policy)) {
            Ok(events) => events,
            Err(Rejection { error, record }) if record.is_empty() => {
                return Err(ReactionError::Refused(error.to_string()))
            }
            Err(Rejection { record, .. }) => record,
        };
        if events.is_empty() {
            return Ok(None);
        }
        let new_events = events
            .iter()
            .map(|event| NewEvent {
                event_id: Uuid::now_v7(),
                event_type: event.event_type().to_owned(),
                schema_version: event.schema_version(),
                payload: event.to_payload(),
                metadata: metadata.clone(),
                recorded_at: now,
            })
            .collect();
        match store
            .append(&stream, ExpectedVersion::at(version), new_events)
            .await
        {
            Ok(appended) => return Ok(Some(appended.last_position)),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ReactionError::Contention(stream))
}
