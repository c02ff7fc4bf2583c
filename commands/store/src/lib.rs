//! The SPSE TOTP event store: the port every adapter implements, the adapters (SQLite, the
//! embedded default; PostgreSQL, for several instances on one database; EventStoreDB behind a
//! feature), the hash chain that links each stream's events, the conformance suite every adapter
//! passes, opening the database the rest of the service shares ([`Database`]), and the
//! [`Clock`] both the command handlers and the reactions to events take their "now" from.
//!
//! Streams are versioned from 1; the log has one global position per event, increasing in commit
//! order, which is what projections follow.
//!
//! Depends on nothing of the service: it knows SQL, but no domain rule, no HTTP, no projection.
//! The read side hooks into the append transaction only through [`InlineProjection`].

mod append_queue;
pub mod chain;
pub mod clock;
pub mod database;
#[cfg(feature = "eventstoredb")]
mod eventstoredb;
mod inline;
mod postgres;
mod prepared;
mod sqlite;
pub mod statement;
pub mod stored_metadata;
pub mod stored_row;
#[cfg(feature = "testing")]
pub mod test_database;
pub mod transfer;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "conformance")]
mod ordinal_view;

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

#[cfg(feature = "eventstoredb")]
pub use eventstoredb::EventStoreDbStore;
pub use inline::{InlineProjection, InlineSlot};
pub use postgres::{channel_in_schema, events_channel, PostgresEventStore, EVENTS_CHANNEL};
pub use sqlite::{open_write_connection, SqliteEventStore};

pub use clock::{Clock, ManualClock, SystemClock};
pub use database::{Database, DatabaseError, Engine, LogSource, SqliteWriter, Writing};

/// Moves a position watch forward to `to`, never back, waking watchers only when it moved.
/// Heads, projection progress and the mail dispatcher's progress all only ever advance.
pub fn advance_watch(watch: &watch::Sender<u64>, to: u64) {
    watch.send_if_modified(|at| {
        let moved = to > *at;
        *at = (*at).max(to);
        moved
    });
}

/// What the writer believes the stream's version is. `NoStream` is version 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    Any,
    NoStream,
    Exact(u64),
}

impl ExpectedVersion {
    pub fn matches(self, actual: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exact(v) => v == actual,
        }
    }

    /// The version a stream at `version` is expected to have: `NoStream` for 0.
    pub fn at(version: u64) -> Self {
        if version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(version)
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::Exact(v) => write!(f, "{v}"),
        }
    }
}

/// Who caused an event. Recorded on every event, so an auditor can answer "who did this".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// The portal, through the API key named.
    Portal { key_id: Uuid, key_name: String },
    /// The account's bound device (or a device activating an enrollment).
    Device { device_id: Uuid },
    /// A helpdesk operator, named on the call, through the API key named.
    Helpdesk { operator: String, key_id: Uuid },
    /// The service itself: expiry sweeps, email outcomes.
    System,
    /// Someone at the `spse-totp` command line on the server.
    Operator { name: String },
    /// An auditor's API key. Auditors change nothing: they appear only on the record of what
    /// they read.
    Auditor { key_id: Uuid, key_name: String },
    /// The account's owner, proving it with an emailed reset link (no API key, no device).
    User,
    /// An operator signed in to the console as themselves (issue 15), with the role they act in.
    Console { username: String, role: String },
}

impl Actor {
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::Portal { .. } => "portal",
            Actor::Device { .. } => "device",
            Actor::Helpdesk { .. } => "helpdesk",
            Actor::System => "system",
            Actor::Operator { .. } => "operator",
            Actor::Auditor { .. } => "auditor",
            Actor::User => "user",
            Actor::Console { .. } => "console",
        }
    }

    /// A short readable name: the key's name, the operator, the device id.
    pub fn display_name(&self) -> String {
        match self {
            Actor::Portal { key_name, .. } => key_name.clone(),
            Actor::Device { device_id } => device_id.to_string(),
            Actor::Helpdesk { operator, .. } => operator.clone(),
            Actor::System => "system".to_owned(),
            Actor::Operator { name } => name.clone(),
            Actor::Auditor { key_name, .. } => key_name.clone(),
            Actor::User => "the account's owner".to_owned(),
            Actor::Console { username, .. } => username.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    pub actor: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Ties together everything one user action caused, across requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The command (request) that produced the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
}

impl EventMetadata {
    pub fn system() -> Self {
        EventMetadata {
            actor: Actor::System,
            client_ip: None,
            user_agent: None,
            correlation_id: None,
            causation_id: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Unique per event: a retried append of the same event is refused, not duplicated.
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub payload: serde_json::Value,
    pub metadata: EventMetadata,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub position: u64,
    pub stream: String,
    pub version: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub payload: serde_json::Value,
    pub metadata: EventMetadata,
    pub recorded_at: DateTime<Utc>,
    /// The event's link in its stream's hash chain ([`chain::event_hash`]); `None` only for
    /// events written before the chain existed.
    pub hash: Option<String>,
}

/// An event row as the view `event_rows` gives it, before decoding: what adapters and readers
/// that query the log directly (the audit verifier) share.
///
/// Ids and hashes are stored as bytes (16 for the event id, 32 for the SHA-256), the metadata in
/// its compact form ([`stored_metadata`]), and on SQLite the payload's keys and the metadata's
/// head apart, as terms ([`stored_row`]); what a reader sees ([`RecordedEvent`]) is unchanged.
#[derive(Debug, Clone)]
pub struct StoredRow {
    pub position: i64,
    pub stream: String,
    pub version: i64,
    pub event_id: Vec<u8>,
    pub event_type: String,
    pub schema_version: i64,
    pub payload: String,
    pub metadata: String,
    pub recorded_at: i64,
    pub hash: Option<Vec<u8>>,
    /// The term of the payload's keys; `None`: `payload` is the whole payload.
    pub payload_keys: Option<String>,
    /// The term of the metadata's head; `None`: `metadata` is the whole metadata.
    pub metadata_context: Option<String>,
}

impl StoredRow {
    /// The columns of the view `event_rows` in the order [`StoredRow`] reads them.
    pub const COLUMNS: &'static str = "position, stream, version, event_id, event_type, \
         schema_version, payload, metadata, recorded_at, hash, payload_keys, metadata_context";

    /// The same columns of the view aliased `e`, for joins.
    pub const COLUMNS_OF_E: &'static str = "e.position, e.stream, e.version, e.event_id, \
         e.event_type, e.schema_version, e.payload, e.metadata, e.recorded_at, e.hash, \
         e.payload_keys, e.metadata_context";

    pub fn position(&self) -> u64 {
        u64::try_from(self.position).unwrap_or(0)
    }

    fn corrupt(&self, reason: impl fmt::Display) -> StoreError {
        StoreError::Corrupt {
            position: self.position(),
            reason: reason.to_string(),
        }
    }

    /// The event id from its 16 stored bytes.
    pub fn event_id(&self) -> Result<Uuid, String> {
        Uuid::from_slice(&self.event_id).map_err(|e| format!("the event id is not a UUID: {e}"))
    }

    /// The hash as the chain links it: lower-case hex.
    pub fn hash_hex(&self) -> Option<String> {
        self.hash.as_deref().map(hex::encode)
    }

    /// The payload, its keys and values joined again where they are stored apart.
    pub fn payload_value(&self) -> Result<serde_json::Value, String> {
        stored_row::decode_payload(self.payload_keys.as_deref(), &self.payload)
    }

    /// The metadata as the hash chain covers it, strictly ([`stored_metadata::chained_value`]).
    pub fn chained_metadata(&self) -> Result<serde_json::Value, String> {
        stored_metadata::chained_value_split(self.metadata_context.as_deref(), &self.metadata)
    }

    pub fn decode(self) -> Result<RecordedEvent, StoreError> {
        let event_id = self.event_id().map_err(|e| self.corrupt(e))?;
        let schema_version = u32::try_from(self.schema_version).map_err(|e| self.corrupt(e))?;
        let payload = self.payload_value().map_err(|e| self.corrupt(e))?;
        let metadata =
            stored_metadata::decode_split(self.metadata_context.as_deref(), &self.metadata)
                .map_err(|e| self.corrupt(e))?;
        let recorded_at = DateTime::<Utc>::from_timestamp_micros(self.recorded_at)
            .ok_or_else(|| self.corrupt("recorded_at out of range"))?;
        let hash = self.hash_hex();
        Ok(RecordedEvent {
            position: self.position(),
            version: u64::try_from(self.version).unwrap_or(0),
            stream: self.stream,
            event_id,
            event_type: self.event_type,
            schema_version,
            payload,
            metadata,
            recorded_at,
            hash,
        })
    }
}

impl<'r, R> sqlx::FromRow<'r, R> for StoredRow
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(StoredRow {
            position: row.try_get(0)?,
            stream: row.try_get(1)?,
            version: row.try_get(2)?,
            event_id: row.try_get(3)?,
            event_type: row.try_get(4)?,
            schema_version: row.try_get(5)?,
            payload: row.try_get(6)?,
            metadata: row.try_get(7)?,
            recorded_at: row.try_get(8)?,
            hash: row.try_get(9)?,
            payload_keys: row.try_get(10)?,
            metadata_context: row.try_get(11)?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The stream's version after the append.
    pub version: u64,
    /// Global positions of the first and last event appended.
    pub first_position: u64,
    pub last_position: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Someone else appended first: reload, decide again.
    #[error("stream {stream} is at version {actual}, not {expected}")]
    Conflict {
        stream: String,
        expected: ExpectedVersion,
        actual: u64,
    },
    #[error("an event with id {0} is already stored")]
    DuplicateEvent(Uuid),
    #[error("nothing to append")]
    EmptyAppend,
    #[error("stored event at position {position} is unreadable: {reason}")]
    Corrupt { position: u64, reason: String },
    #[error("the event store's writer has stopped")]
    WriterGone,
    /// The database or server under the store failed (a lost connection, a full disk, an
    /// unreadable file). Operational: the caller answers 5xx and may retry.
    #[error("event store: {0}")]
    Backend(#[source] BackendError),
}

/// What the database driver or server said, kept as its own error (for logs and `source()`)
/// without making the store's callers depend on the driver's types.
#[derive(Debug)]
pub struct BackendError(Box<dyn std::error::Error + Send + Sync>);

impl BackendError {
    /// An error a store reached over the network words as text only (EventStoreDB's client).
    pub fn message(message: impl Into<String>) -> Self {
        BackendError(message.into().into())
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Backend(BackendError(Box::new(e)))
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(BackendError(Box::new(e)))
    }
}

/// The port. Implementations must make `append` durable before returning, assign positions in
/// commit order, and never let `read_all` skip an event that commits later with a smaller
/// position.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError>;

    /// Events of one stream with version >= `from_version`, in order, at most `limit`.
    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Events of all streams with position > `after`, in position order, at most `limit`.
    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The current version of a stream, 0 if it has no events.
    async fn stream_version(&self, stream: &str) -> Result<u64, StoreError>;

    /// The highest position a reader may safely read up to now.
    async fn head_position(&self) -> Result<u64, StoreError>;

    /// Wakes when this process appends; readers also poll, for appends by other processes.
    fn subscribe(&self) -> watch::Receiver<u64>;

    /// Whether positions are 1, 2, 3, ... (SQLite, PostgreSQL) or only increasing (EventStoreDB's
    /// `$all` positions are byte offsets). Readers never rely on density; the conformance
    /// suite uses it to check a sparse adapter through consecutive ordinals.
    fn dense_positions(&self) -> bool {
        true
    }

    /// Whether appending an event id already stored fails with [`StoreError::DuplicateEvent`]
    /// (SQLite, PostgreSQL) or is taken as an idempotent retry that stores nothing new
    /// (EventStoreDB). Either way an event id is never stored twice.
    fn refuses_duplicate_ids(&self) -> bool {
        true
    }
}

/// Events of one stream read a page at a time.
const STREAM_PAGE: usize = 1000;

/// Hands every event of `stream` after `after_version` to `each`, in order, reading a page at a
/// time, and returns the last version handed over (`after_version` when there was none). This
/// is how a state is folded from its stream; `each` decodes and applies, and its error stops
/// the read.
pub async fn fold_stream<E: From<StoreError>>(
    store: &dyn EventStore,
    stream: &str,
    after_version: u64,
    mut each: impl FnMut(RecordedEvent) -> Result<(), E>,
) -> Result<u64, E> {
    let mut version = after_version;
    loop {
        let page = store.read_stream(stream, version + 1, STREAM_PAGE).await?;
        let full = page.len() == STREAM_PAGE;
        for recorded in page {
            version = recorded.version;
            each(recorded)?;
        }
        if !full {
            return Ok(version);
        }
    }
}
