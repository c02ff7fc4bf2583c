//! The embedded adapter: one SQLite file in WAL mode with `synchronous=FULL`.
//!
//! SQLite has one writer at a time, so this adapter gives it exactly one: a thread that owns a
//! dedicated connection and commits appends in groups. Every append waiting when a commit starts
//! joins it, each with its own expected-version check, and one fsync makes the whole group
//! durable. Under load that turns hundreds of commits into a few; with no load a group is one
//! append and costs nothing. The writer runs its statements synchronously on its own thread
//! (rusqlite) rather than one round trip per statement through an async driver: on a busy
//! two-core machine each such round trip waits for a thread to be scheduled, and a group of
//! forty statements paid for forty of those waits.
//!
//! Positions are `MAX(position) + 1` read inside the write lock, so they follow commit order even
//! when another process (the command line) appends to the same file, and a reader can never see a
//! later position before an earlier one. Reads go through an ordinary async pool.
//!
//! The row stores stream names, event types, payload keys and the metadata's head as ids of
//! `terms` ([`crate::stored_row`]). The writer interns them inside the append transaction and
//! remembers term -> id, but only once that transaction committed: an id made by a group that
//! rolled back does not exist, and must not be handed out again. Reads resolve ids through the
//! view `event_rows`, a join on the table, so an id another process (the command line) made
//! reads as well as one made here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{Sqlite, SqliteConnection, SqlitePool, SqliteRow};
use sqlx::FromRow;
use tokio::sync::{mpsc, watch};

use crate::append_queue::{AppendQueue, AppendRequest};

use crate::database::{WriteGate, WAL_AUTOCHECKPOINT_PAGES};

use crate::advance_watch;
use crate::chain::{chain_new_event, Chained};
use crate::inline::{unit_for_rows, InlineProjection, InlineSlot};
use crate::statement::{run_unit_sqlite, Unit};
use crate::{
    stored_metadata, stored_row, Appended, EventStore, ExpectedVersion, NewEvent, RecordedEvent,
    StoreError, StoredRow,
};

/// The most appends one commit takes. Bounds the time a group holds the write lock.
const MAX_GROUP: usize = 256;

/// The page cache of a writing connection: 64 MiB, enough for the indexes' hot pages.
const WRITER_CACHE_KIB: i64 = 64 * 1024;

/// [`StoredRow::COLUMNS`] of the view that joins each row's terms.
const SELECT_COLUMNS: &str = "SELECT position, stream, version, event_id, event_type, \
     schema_version, payload, metadata, recorded_at, hash, payload_keys, metadata_context \
     FROM event_rows";

/// Beyond this many remembered terms the writer forgets them all and looks them up again: the
/// metadata heads grow with sessions, and memory must not.
const MAX_REMEMBERED_TERMS: usize = 200_000;

/// The terms the writer knows the ids of, all committed.
#[derive(Default)]
struct Terms {
    committed: HashMap<String, i64>,
}

/// The terms of one append transaction: the committed ones, and those it found or made.
struct GroupTerms<'a> {
    committed: &'a Terms,
    found: HashMap<String, i64>,
}

impl Terms {
    fn group(&self) -> GroupTerms<'_> {
        GroupTerms {
            committed: self,
            found: HashMap::new(),
        }
    }

    /// Remembers what a group found, once its transaction committed.
    fn committed(&mut self, found: HashMap<String, i64>) {
        if self.committed.len() + found.len() > MAX_REMEMBERED_TERMS {
            self.committed.clear();
        }
        self.committed.extend(found);
    }
}

impl GroupTerms<'_> {
    /// The id of `term`, if it has one: remembered, or in the table.
    fn find(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        term: &str,
    ) -> Result<Option<i64>, StoreError> {
        if let Some(id) = self
            .committed
            .committed
            .get(term)
            .or_else(|| self.found.get(term))
        {
            return Ok(Some(*id));
        }
        let id: Option<i64> = tx
            .prepare_cached("SELECT id FROM terms WHERE term = ?1")?
            .query_row([term], |row| row.get(0))
            .optional()?;
        if let Some(id) = id {
            self.found.insert(term.to_owned(), id);
        }
        Ok(id)
    }

    /// The id of `term`, given one now if it has none.
    fn id(&mut self, tx: &rusqlite::Transaction<'_>, term: &str) -> Result<i64, StoreError> {
        if let Some(id) = self.find(tx, term)? {
            return Ok(id);
        }
        tx.prepare_cached("INSERT INTO terms (term) VALUES (?1)")?
            .execute([term])?;
        let id = tx.last_insert_rowid();
        self.found.insert(term.to_owned(), id);
        Ok(id)
    }
}

pub struct SqliteEventStore {
    readers: SqlitePool,
    writer: AppendQueue,
    head: Arc<watch::Sender<u64>>,
}

/// A connection for writing to the file at `path`, durable on commit, waiting up to ten seconds
/// for another process's write lock.
pub fn open_write_connection(path: &Path) -> Result<Connection, rusqlite::Error> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(Duration::from_secs(10))?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    // A group touches a few hundred pages spread over the indexes; SQLite's default cache (2 MB)
    // cannot hold them, and every miss is a read from the WAL or the file. Negative: KiB.
    connection.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    connection.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
    connection.set_prepared_statement_cache_capacity(64);
    Ok(connection)
}

impl SqliteEventStore {
    /// Reads through `pool`; writes on a thread of its own with a connection to `path`, taking
    /// turns with the process's other writers through `gate`, and projecting each group in its
    /// own transaction once the read side installs itself in `inline`.
    pub(crate) async fn open(
        pool: SqlitePool,
        path: PathBuf,
        gate: WriteGate,
        inline: InlineSlot,
    ) -> Result<Self, StoreError> {
        let head_now = max_position(&pool).await?;
        let (head, _) = watch::channel(head_now);
        let head = Arc::new(head);
        let connection = open_write_connection(&path)?;
        let (writer, requests) = AppendQueue::new(4 * MAX_GROUP);
        let thread_head = Arc::clone(&head);
        std::thread::Builder::new()
            .name("event-writer".to_owned())
            .spawn(move || run_writer(connection, requests, thread_head, gate, inline))
            .map_err(|e| StoreError::Corrupt {
                position: 0,
                reason: format!("cannot start the writer: {e}"),
            })?;
        Ok(SqliteEventStore {
            readers: pool,
            writer,
            head,
        })
    }
}

async fn max_position(pool: &SqlitePool) -> Result<u64, StoreError> {
    let max: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
        .fetch_one(pool)
        .await?;
    Ok(to_u64(max))
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Runs until every handle to the store is dropped.
fn run_writer(
    mut connection: Connection,
    mut requests: mpsc::Receiver<AppendRequest>,
    head: Arc<watch::Sender<u64>>,
    gate: WriteGate,
    inline: InlineSlot,
) {
    let mut terms = Terms::default();
    while let Some(first) = requests.blocking_recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match requests.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let projection = inline.current();
        let mut projected = None;
        let mut commit = |requests: &[AppendRequest]| {
            let (results, reached) =
                commit_group(&mut connection, &mut terms, requests, &projection)?;
            projected = projected.max(reached);
            Ok::<_, StoreError>(results)
        };
        let turn = gate.blocking_enter();
        let results = match commit(&group) {
            Ok(results) => results,
            // One bad append (a duplicate event id) must not fail its neighbours: commit each
            // alone so only the culprit hears about it.
            Err(_) => group
                .iter()
                .map(|request| match commit(std::slice::from_ref(request)) {
                    Ok(mut r) => r.pop().unwrap_or(Err(StoreError::EmptyAppend)),
                    Err(e) => Err(e),
                })
                .collect(),
        };
        drop(turn);
        // Before anyone hears of the append: whoever it wakes finds its read models written.
        if let (Some(projection), Some(reached)) = (&projection, projected) {
            projection.committed(reached);
        }
        if let Some(last) = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|a| a.last_position)
            .max()
        {
            advance_watch(&head, last);
        }
        for (request, result) in group.into_iter().zip(results) {
            // The caller may have given up (request cancelled); the append stands regardless.
            let _ = request.reply.send(result);
        }
    }
}

type Outcomes = Vec<Result<Appended, StoreError>>;

/// Appends a group in one transaction, with its projection when one is installed. Returns each
/// request's outcome and the position the read models reached in the same commit, or an error
/// that rolled back the whole group.
fn commit_group(
    connection: &mut Connection,
    terms: &mut Terms,
    group: &[AppendRequest],
    projection: &Option<Arc<dyn InlineProjection>>,
) -> Result<(Outcomes, Option<u64>), StoreError> {
    // IMMEDIATE takes the write lock now, so MAX(position) below cannot change under us.
    let mut tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut group_terms = terms.group();
    let (results, after, rows) = append_group(&tx, &mut group_terms, group)?;
    let found = group_terms.found;
    let reached = match projection {
        Some(projection) => match unit_for_rows(projection.as_ref(), after, rows) {
            Some((unit, reached)) => project(&mut tx, &unit, reached)?,
            None => None,
        },
        None => None,
    };
    tx.commit()?;
    terms.committed(found);
    Ok((results, reached))
}

/// Runs the group's projection behind a savepoint, so that a guard that misses or a statement
/// that fails undoes the projection and keeps the events. Returns the position the read models
/// reach on commit, if they do.
fn project(
    tx: &mut rusqlite::Transaction<'_>,
    unit: &Unit,
    reached: u64,
) -> Result<Option<u64>, StoreError> {
    let savepoint = tx.savepoint()?;
    match run_unit_sqlite(&savepoint, unit) {
        Ok(true) => {
            savepoint.commit()?;
            Ok(Some(reached))
        }
        // Dropping the savepoint unreleased rolls it back.
        Ok(false) => Ok(None),
        Err(e) => {
            tracing::warn!(error = %e, "inline projection failed; appending without it, the runner will project");
            Ok(None)
        }
    }
}

/// Inserts the group's events. Returns each request's outcome, the position the group follows,
/// and the rows written.
fn append_group(
    tx: &rusqlite::Transaction<'_>,
    terms: &mut GroupTerms<'_>,
    group: &[AppendRequest],
) -> Result<(Outcomes, u64, Vec<StoredRow>), StoreError> {
    let max: i64 = tx.query_row("SELECT COALESCE(MAX(position), 0) FROM events", [], |row| {
        row.get(0)
    })?;
    let after = to_u64(max);
    let mut next_position = after + 1;
    let mut rows = Vec::new();
    // Each stream's version and last hash, as this group leaves them.
    let mut heads: HashMap<&str, (u64, Option<String>)> = HashMap::new();
    let mut results = Vec::with_capacity(group.len());
    for request in group {
        if request.events.is_empty() {
            results.push(Err(StoreError::EmptyAppend));
            continue;
        }
        let (actual, last_hash) = match heads.get(request.stream.as_str()) {
            Some(head) => head.clone(),
            None => {
                // A stream without a term has no events; it is given one when it has.
                let head: Option<(i64, Option<Vec<u8>>)> = match terms.find(tx, &request.stream)? {
                    Some(stream_id) => tx
                        .prepare_cached(
                            "SELECT version, hash FROM events WHERE stream_id = ?1 \
                             ORDER BY version DESC LIMIT 1",
                        )?
                        .query_row([stream_id], |row| Ok((row.get(0)?, row.get(1)?)))
                        .optional()?,
                    None => None,
                };
                head.map_or((0, None), |(v, h)| {
                    (to_u64(v), h.as_deref().map(hex::encode))
                })
            }
        };
        if !request.expected.matches(actual) {
            results.push(Err(StoreError::Conflict {
                stream: request.stream.clone(),
                expected: request.expected,
                actual,
            }));
            continue;
        }
        let first_position = next_position;
        let mut version = actual;
        let mut hash = last_hash;
        for event in &request.events {
            version += 1;
            let (row, linked) = insert(
                tx,
                terms,
                next_position,
                &request.stream,
                version,
                hash.as_deref(),
                event,
            )?;
            hash = Some(linked);
            rows.push(row);
            next_position += 1;
        }
        heads.insert(request.stream.as_str(), (version, hash));
        results.push(Ok(Appended {
            version,
            first_position,
            last_position: next_position - 1,
        }));
    }
    Ok((results, after, rows))
}

/// Inserts one event chained to `previous` (its stream's last hash); returns the row as stored
/// and its hash as the next event links it.
fn insert(
    tx: &rusqlite::Transaction<'_>,
    terms: &mut GroupTerms<'_>,
    position: u64,
    stream: &str,
    version: u64,
    previous: Option<&str>,
    event: &NewEvent,
) -> Result<(StoredRow, String), StoreError> {
    let Chained {
        recorded_at_micros: recorded_at,
        hash,
        digest,
        ..
    } = chain_new_event(previous, stream, version, event).map_err(|e| StoreError::Corrupt {
        position,
        reason: e.to_string(),
    })?;
    let (payload_keys, payload) = stored_row::encode_payload(&event.payload);
    let (context, metadata) = stored_metadata::encode_split(&event.metadata);
    let stream_id = terms.id(tx, stream)?;
    let type_id = terms.id(tx, &event.event_type)?;
    let shape_id = payload_keys
        .as_deref()
        .map(|keys| terms.id(tx, keys))
        .transpose()?;
    let context_id = terms.id(tx, &context)?;
    let row = StoredRow {
        position: to_i64(position),
        stream: stream.to_owned(),
        version: to_i64(version),
        event_id: event.event_id.as_bytes().to_vec(),
        event_type: event.event_type.clone(),
        schema_version: i64::from(event.schema_version),
        payload,
        metadata,
        recorded_at,
        hash: Some(digest.to_vec()),
        payload_keys,
        metadata_context: Some(context),
    };
    tx.prepare_cached(
        "INSERT INTO events (position, stream_id, version, event_id, type_id, schema_version, \
         shape_id, payload, context_id, metadata, recorded_at, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        row.position,
        stream_id,
        row.version,
        &row.event_id,
        type_id,
        row.schema_version,
        shape_id,
        &row.payload,
        context_id,
        &row.metadata,
        row.recorded_at,
        &row.hash,
    ])
    .map_err(|e| match &e {
        rusqlite::Error::SqliteFailure(_, Some(message)) if message.contains("events.event_id") => {
            StoreError::DuplicateEvent(event.event_id)
        }
        _ => StoreError::from(e),
    })?;
    Ok((row, hash))
}

async fn stream_version_on(
    connection: &mut SqliteConnection,
    stream: &str,
) -> Result<u64, StoreError> {
    let v: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(version), 0) FROM events \
             WHERE stream_id = (SELECT id FROM terms WHERE term = $1)",
    )
    .bind(stream)
    .fetch_one(&mut *connection)
    .await?;
    Ok(to_u64(v))
}

fn decode(row: &SqliteRow) -> Result<RecordedEvent, StoreError> {
    StoredRow::from_row(row)?.decode()
}

#[async_trait]
impl EventStore for SqliteEventStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        self.writer.append(stream, expected, events).await
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "{SELECT_COLUMNS} WHERE stream = $1 AND version >= $2 ORDER BY version LIMIT $3"
        ))
        .bind(stream)
        .bind(to_i64(from_version))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(decode).collect()
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "{SELECT_COLUMNS} WHERE position > $1 ORDER BY position LIMIT $2"
        ))
        .bind(to_i64(after))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(decode).collect()
    }

    async fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        let mut connection: PoolConnection<Sqlite> = self.readers.acquire().await?;
        stream_version_on(&mut connection, stream).await
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        max_position(&self.readers).await
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use crate::*;

    #[test]
    fn expected_versions_match_as_documented() {
        assert!(ExpectedVersion::NoStream.matches(0));
        assert!(!ExpectedVersion::NoStream.matches(1));
        assert!(ExpectedVersion::Exact(3).matches(3));
        assert!(ExpectedVersion::Any.matches(17));
    }
}
