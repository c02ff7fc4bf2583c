//! The EventStoreDB / KurrentDB adapter (cargo feature `eventstoredb`), through the official
//! gRPC client. The read models, the vault and the checkpoints stay in SQL (SQLite or
//! PostgreSQL); only the log moves.
//!
//! - **Streams map one to one**, under an optional name prefix (`namespace`) so that several
//!   deployments, or tests, can share one server. EventStoreDB numbers a stream's events from 0;
//!   the port numbers them from 1, so revision = version - 1.
//! - **Optimistic concurrency** is EventStoreDB's expected revision; a wrong one comes back as
//!   [`StoreError::Conflict`] with the stream's actual version.
//! - **Global positions** are `$all` commit positions. They increase in commit order (the
//!   server's log is append-only and `$all` is read in its order), so a reader that saw P never
//!   meets a smaller position later; but they are byte offsets, not `1, 2, 3, ...`
//!   ([`EventStore::dense_positions`] is false). The projection runner only ever asks for
//!   "after P", which works the same. A read resumes at `Position { commit: P, prepare: P }`: on
//!   EventStoreDB 20 and later, whose writes are not split into prepare and commit records, the
//!   two are equal for every event.
//! - **Event ids** go to the server as EventStoreDB event ids. The server treats a repeated id as
//!   an idempotent retry, not an error ([`EventStore::refuses_duplicate_ids`] is false): a
//!   retried append still never stores an event twice.
//! - Our metadata, schema version, recording instant and chain hash travel in the event's custom
//!   metadata, so events read back exactly as they were appended. Each append first reads the
//!   stream's last event, chains to its hash and expects exactly its revision, so the chain
//!   cannot fork.
//!
//! The client installs rustls' aws-lc crypto provider process-wide on its first connection and
//! panics if another was installed before; [`EventStoreDbStore::connect`] therefore refuses to
//! start (with an error) when a provider is already installed, and connects at once, so that
//! the client's provider is the process's from then on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use eventstore::{
    AppendToStreamOptions, Client, ClientSettings, CurrentRevision, EventData, ExpectedRevision,
    Position, ReadAllOptions, ReadStreamOptions, ResolvedEvent, StreamPosition,
    SubscribeToAllOptions, SubscriptionFilter,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

use crate::advance_watch;
use crate::chain::{chain_new_event, Chained};
use crate::{
    Appended, EventMetadata, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError,
};

/// `$all` is read in pages of this many events, whatever the caller's limit: events of other
/// namespaces and system events are skipped on the way.
const PAGE: usize = 500;
/// How far back `head_position` looks for an event of this namespace.
const HEAD_SEARCH: usize = 4096;
const SUBSCRIPTION_RETRY: Duration = Duration::from_secs(1);

/// Whether an EventStoreDB client of this process has connected (and so installed the crypto
/// provider): from then on a provider being installed is expected.
static CLIENT_CONNECTED: AtomicBool = AtomicBool::new(false);

/// What the port needs beyond EventStoreDB's own fields, in each event's custom metadata.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    metadata: EventMetadata,
    schema_version: u32,
    /// Microseconds since the epoch: the instant the service decided, not the server's.
    recorded_at: i64,
    /// The event's link in its stream's hash chain ([`crate::chain`]).
    hash: String,
}

/// How often an append with `ExpectedVersion::Any` re-reads the stream's end when another
/// writer got there first (the chain needs the true previous event).
const ANY_RETRIES: usize = 16;

pub struct EventStoreDbStore {
    client: Client,
    namespace: String,
    head: Arc<watch::Sender<u64>>,
    _stop_subscription: oneshot::Sender<()>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(crate::BackendError::message(format!("EventStoreDB: {e}")))
}

impl EventStoreDbStore {
    /// Connects to `url` (`esdb://host:2113?tls=false`, ...). Streams are named
    /// `{namespace}{stream}`; use an empty namespace unless several deployments share a server.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self, StoreError> {
        // After the first client connected, the provider installed is its own.
        if !CLIENT_CONNECTED.load(Ordering::Acquire)
            && rustls::crypto::CryptoProvider::get_default().is_some()
        {
            return Err(backend(
                "a TLS crypto provider is already installed in this process, and the \
                 EventStoreDB client would panic installing its own; open the event store first",
            ));
        }
        let settings: ClientSettings = url.parse().map_err(backend)?;
        let client = Client::new(settings).map_err(backend)?;
        let store = {
            let (head, _) = watch::channel(0);
            let (stop, stopped) = oneshot::channel();
            let store = EventStoreDbStore {
                client,
                namespace: namespace.to_owned(),
                head: Arc::new(head),
                _stop_subscription: stop,
            };
            // The first call connects (and installs the client's crypto provider).
            let head_now = store.head_position().await?;
            CLIENT_CONNECTED.store(true, Ordering::Release);
            store.head.send_replace(head_now);
            tokio::spawn(follow_all(
                store.client.clone(),
                store.namespace.clone(),
                Arc::clone(&store.head),
                stopped,
            ));
            store
        };
        Ok(store)
    }

    /// The stream's last event, if it has any.
    async fn last_event(&self, stream: &str) -> Result<Option<RecordedEvent>, StoreError> {
        let options = ReadStreamOptions::default()
            .position(StreamPosition::End)
            .backwards()
            .max_count(1);
        let mut read = match self
            .client
            .read_stream(self.stored_name(stream).as_str(), &options)
            .await
        {
            Ok(read) => read,
            Err(eventstore::Error::ResourceNotFound) => return Ok(None),
            Err(e) => return Err(backend(e)),
        };
        match read.next().await {
            Ok(Some(resolved)) => self.decode(&resolved),
            Ok(None) | Err(eventstore::Error::ResourceNotFound) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    fn stored_name(&self, stream: &str) -> String {
        format!("{}{stream}", self.namespace)
    }

    /// The event as the port knows it, or `None` for a system event or another namespace's.
    fn decode(&self, resolved: &ResolvedEvent) -> Result<Option<RecordedEvent>, StoreError> {
        decode_in(&self.namespace, resolved)
    }
}

fn decode_in(
    namespace: &str,
    resolved: &ResolvedEvent,
) -> Result<Option<RecordedEvent>, StoreError> {
    let event = resolved.get_original_event();
    if event.stream_id.starts_with('$') || event.event_type.starts_with('$') {
        return Ok(None);
    }
    let Some(stream) = event.stream_id.strip_prefix(namespace) else {
        return Ok(None);
    };
    let position = event.position.commit;
    let corrupt = |reason: String| StoreError::Corrupt { position, reason };
    let envelope: Envelope =
        serde_json::from_slice(&event.custom_metadata).map_err(|e| corrupt(e.to_string()))?;
    Ok(Some(RecordedEvent {
        position,
        stream: stream.to_owned(),
        version: event.revision + 1,
        event_id: event.id,
        event_type: event.event_type.clone(),
        schema_version: envelope.schema_version,
        payload: serde_json::from_slice(&event.data).map_err(|e| corrupt(e.to_string()))?,
        metadata: envelope.metadata,
        recorded_at: DateTime::<Utc>::from_timestamp_micros(envelope.recorded_at)
            .ok_or_else(|| corrupt("recorded_at out of range".to_owned()))?,
        hash: Some(envelope.hash),
    }))
}

/// The event as sent, chained to `previous`; returns it with its own hash.
fn to_event_data(
    stream: &str,
    version: u64,
    previous: Option<&str>,
    event: &NewEvent,
) -> Result<(EventData, String), StoreError> {
    let Chained {
        recorded_at_micros: recorded_at,
        hash,
        ..
    } = chain_new_event(previous, stream, version, event).map_err(backend)?;
    let envelope = Envelope {
        metadata: event.metadata.clone(),
        schema_version: event.schema_version,
        recorded_at,
        hash: hash.clone(),
    };
    let data = EventData::json(event.event_type.as_str(), &event.payload)
        .map_err(backend)?
        .id(event.event_id)
        .metadata_as_json(&envelope)
        .map_err(backend)?;
    Ok((data, hash))
}

/// Moves `head` as events of the namespace arrive on `$all`, from any writer. Ends when the
/// store is dropped.
async fn follow_all(
    client: Client,
    namespace: String,
    head: Arc<watch::Sender<u64>>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let options = SubscribeToAllOptions::default()
            .position(StreamPosition::End)
            .filter(SubscriptionFilter::on_event_type().exclude_system_events());
        let mut subscription = client.subscribe_to_all(&options).await;
        loop {
            tokio::select! {
                _ = &mut stop => return,
                next = subscription.next() => match next {
                    Ok(resolved) => {
                        if let Ok(Some(event)) = decode_in(&namespace, &resolved) {
                            advance_watch(&head, event.position);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the $all subscription; resubscribing");
                        break;
                    }
                },
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(SUBSCRIPTION_RETRY) => {}
        }
    }
}

#[async_trait]
impl EventStore for EventStoreDbStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        if events.is_empty() {
            return Err(StoreError::EmptyAppend);
        }
        let count = events.len() as u64;
        let name = self.stored_name(stream);
        let mut attempts = 0;
        let written = loop {
            attempts += 1;
            // The stream's end as it is now: the chain continues from its last hash, and the
            // append expects exactly that revision, so nobody can slip an event in between.
            let last = self.last_event(stream).await?;
            let actual = last.as_ref().map_or(0, |e| e.version);
            if !expected.matches(actual) {
                return Err(StoreError::Conflict {
                    stream: stream.to_owned(),
                    expected,
                    actual,
                });
            }
            let mut previous = last.and_then(|e| e.hash);
            let mut data = Vec::with_capacity(events.len());
            for (i, event) in events.iter().enumerate() {
                let (event_data, hash) =
                    to_event_data(stream, actual + 1 + i as u64, previous.as_deref(), event)?;
                data.push(event_data);
                previous = Some(hash);
            }
            let revision = match actual {
                0 => ExpectedRevision::NoStream,
                v => ExpectedRevision::Exact(v - 1),
            };
            match self
                .client
                .append_to_stream(
                    name.as_str(),
                    &AppendToStreamOptions::default().expected_revision(revision),
                    data,
                )
                .await
            {
                Ok(written) => break written,
                Err(eventstore::Error::WrongExpectedVersion { current, .. }) => {
                    if expected == ExpectedVersion::Any && attempts < ANY_RETRIES {
                        continue;
                    }
                    return Err(StoreError::Conflict {
                        stream: stream.to_owned(),
                        expected,
                        actual: match current {
                            CurrentRevision::Current(r) => r + 1,
                            CurrentRevision::NoStream => 0,
                        },
                    });
                }
                Err(other) => return Err(backend(other)),
            }
        };
        let version = written.next_expected_version + 1;
        // The write result names one position; read the appended events back for each one's.
        let appended = self
            .read_stream(
                stream,
                version + 1 - count,
                usize::try_from(count).unwrap_or(usize::MAX),
            )
            .await?;
        let first_position = appended
            .first()
            .map_or(written.position.commit, |e| e.position);
        let last_position = appended
            .last()
            .map_or(written.position.commit, |e| e.position);
        advance_watch(&self.head, last_position);
        Ok(Appended {
            version,
            first_position,
            last_position,
        })
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let options = ReadStreamOptions::default()
            .position(StreamPosition::Position(from_version.saturating_sub(1)))
            .forwards()
            .max_count(limit);
        let mut read = match self
            .client
            .read_stream(self.stored_name(stream).as_str(), &options)
            .await
        {
            Ok(read) => read,
            Err(eventstore::Error::ResourceNotFound) => return Ok(Vec::new()),
            Err(e) => return Err(backend(e)),
        };
        let mut events = Vec::new();
        loop {
            match read.next().await {
                Ok(Some(resolved)) => {
                    if let Some(event) = self.decode(&resolved)? {
                        events.push(event);
                    }
                }
                Ok(None) | Err(eventstore::Error::ResourceNotFound) => break,
                Err(e) => return Err(backend(e)),
            }
        }
        Ok(events)
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut found = Vec::new();
        let mut cursor = after;
        while found.len() < limit {
            let from = if cursor == 0 {
                StreamPosition::Start
            } else {
                StreamPosition::Position(Position {
                    commit: cursor,
                    prepare: cursor,
                })
            };
            let options = ReadAllOptions::default()
                .position(from)
                .forwards()
                .max_count(PAGE);
            let mut read = self.client.read_all(&options).await.map_err(backend)?;
            let mut seen = 0;
            let mut moved = false;
            while let Some(resolved) = read.next().await.map_err(backend)? {
                seen += 1;
                let position = resolved.get_original_event().position.commit;
                // Reading from a position includes the event at it; "after" excludes it.
                if position <= cursor {
                    continue;
                }
                cursor = position;
                moved = true;
                if let Some(event) = self.decode(&resolved)? {
                    found.push(event);
                    if found.len() == limit {
                        break;
                    }
                }
            }
            if seen < PAGE || !moved {
                break;
            }
        }
        Ok(found)
    }

    async fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        Ok(self.last_event(stream).await?.map_or(0, |e| e.version))
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        let options = ReadAllOptions::default()
            .position(StreamPosition::End)
            .backwards()
            .max_count(HEAD_SEARCH);
        let mut read = self.client.read_all(&options).await.map_err(backend)?;
        while let Some(resolved) = read.next().await.map_err(backend)? {
            if let Some(event) = self.decode(&resolved)? {
                return Ok(event.position);
            }
        }
        Ok(0)
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    fn dense_positions(&self) -> bool {
        false
    }

    fn refuses_duplicate_ids(&self) -> bool {
        false
    }
}
