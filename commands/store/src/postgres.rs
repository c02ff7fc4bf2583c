//! The PostgreSQL adapter, for several `spse-totp` instances on one database.
//!
//! # Why positions can never be skipped
//!
//! A reader follows the log by position (`read_all(after)`), so it must never see position P and
//! later find that an event with a smaller position committed after it looked. With a sequence
//! that happens: two transactions take 7 and 8, the one with 8 commits first, a reader sees 8 and
//! moves on, and 7 appears behind it. This adapter does not use a sequence. Every append locks
//! the one row of `event_log_head` (`SELECT ... FOR UPDATE`), takes the positions after the one it
//! holds, and writes the new head in the same transaction. The next appender waits on that row
//! lock until the first commits, and only then reads the head the first wrote. So positions are
//! handed out in commit order: when a reader can see P, every position below P has already
//! committed and is visible too. A transaction that rolls back rolls back its head update with
//! it, so positions have no gaps either.
//!
//! The cost is that appends across all instances commit one after another. Each instance's
//! appends go through one writer task that puts every append waiting at that moment into one
//! transaction (group commit, as in the SQLite adapter), so the row lock is taken once per group,
//! not once per append, and one WAL flush covers the group.
//!
//! # Read models in the same commit
//!
//! Once the read side installs its [`InlineProjection`] (see `inline.rs`), each group's
//! transaction also writes the read models for the group's events, behind a savepoint and
//! guarded by the projectors' checkpoint compare-and-sets, so a request's reads see its writes
//! when its append returns, with no second transaction to wait for. Since every group holds the
//! head lock, a group's guards see the checkpoints the group before it committed: while
//! projection keeps up, every group finds them where it starts.
//!
//! # One round trip a group, or two
//!
//! Every round trip to the server is a wait the whole group shares, and on a busy machine each
//! is also a wait for the server's process to be scheduled. A group must know, under the head
//! lock, the log's head, its streams' versions and last hashes, and whether its event ids are
//! already stored. Read, that is one simple-query script (open the transaction, take the lock,
//! read); a second inserts the events, runs the guards (each a statement that stops the script
//! unless it moved its checkpoint), the projection's statements, the head update and the
//! notification, and commits. But while this instance is the only one appending, the writer
//! already knows all of it from its own groups (`Known`), and sends the second script alone,
//! opened by the lock and a statement that stops it unless the head is still where this writer
//! left it: one round trip. When another instance has appended in between, or an event id is
//! already stored (the unique index stops the insert), that transaction is rolled back and the
//! group goes again in two. Statements travel with their arguments written in as literals
//! ([`crate::statement`]), since sqlx has no pipelining of bound statements; those of the
//! writing script are prepared once on the connection and named (`prepared.rs`), so that
//! PostgreSQL does not parse and plan them again for every group. The writer keeps one
//! connection of its own from group to group: a pooled connection costs a check as it is handed
//! out and another as it is taken back, and its prepared statements are only on it.
//!
//! The writer runs on a thread with a runtime of its own, as SQLite's does. On the shared
//! runtime, every reply from the server waited for a worker thread to come free from the HTTP
//! tasks before the group could go on, with the head lock held all the while: under the
//! benchmark's load a group's first round trip took twice as long there.
//!
//! # Waking readers
//!
//! Each committed group sends `NOTIFY "spse_totp_events_<schema>", '<last position>'` from inside
//! its transaction; PostgreSQL delivers it on commit. (Notifications are per database, not per
//! schema, so the channel names the schema the log lives in.) Every instance listens, so a projection runner
//! or a long-poll on one instance wakes promptly when another appends. A lost listener connection
//! is re-established and the head re-read, so a notification missed meanwhile costs nothing.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool};
use sqlx::{Connection, Executor, Row};
use tokio::sync::{mpsc, oneshot, watch};

use crate::append_queue::{AppendQueue, AppendRequest};
use uuid::Uuid;

use crate::advance_watch;
use crate::chain::{chain_new_event, Chained};
use crate::inline::{unit_for_rows, InlineProjection, InlineSlot};
use crate::prepared::{ArgType, SessionStatements};
use crate::statement::{push_escaped, NulInText, SqlValue, Statement, Unit};
use crate::{
    Appended, BackendError, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError,
    StoredRow,
};

/// The channel every instance listens on for new events, before the schema's name.
pub const EVENTS_CHANNEL: &str = "spse_totp_events";

/// The notification channel of the log in the connection's current schema.
pub async fn events_channel(pool: &PgPool) -> Result<String, StoreError> {
    let schema: String = sqlx::query_scalar("SELECT current_schema()::text")
        .fetch_one(pool)
        .await?;
    Ok(channel_in_schema(EVENTS_CHANNEL, &schema))
}

/// The longest channel name PostgreSQL takes (an identifier: `NAMEDATALEN` - 1 bytes). A longer
/// one is refused by `NOTIFY` ("channel name too long"), and would stop every notification.
const LONGEST_CHANNEL: usize = 63;

/// The channel named `prefix` for the objects in `schema` (notifications are per database, not
/// per schema): `<prefix>_<schema>`, or, when that is longer than a channel name can be,
/// `<prefix>_` and the first 16 hex digits of the SHA-256 of the schema's name, which every
/// instance on that schema computes alike.
pub fn channel_in_schema(prefix: &str, schema: &str) -> String {
    let plain = format!("{prefix}_{schema}");
    if plain.len() <= LONGEST_CHANNEL {
        return plain;
    }
    let digest = Sha256::digest(schema.as_bytes());
    format!("{prefix}_{}", hex::encode(&digest[..8]))
}

/// The most appends one transaction takes. Bounds how long a group holds the head lock.
const MAX_GROUP: usize = 256;

/// How long the listener waits before reconnecting after losing its connection.
const LISTENER_RETRY: Duration = Duration::from_millis(500);

pub struct PostgresEventStore {
    pool: PgPool,
    writer: AppendQueue,
    head: Arc<watch::Sender<u64>>,
    /// Dropped with the store, which stops the listener task.
    _stop_listener: oneshot::Sender<()>,
}

impl PostgresEventStore {
    /// Starts this instance's writer and listener on `pool` (already migrated); the writer
    /// projects each group in its own transaction once the read side installs itself in `inline`.
    pub(crate) async fn open(pool: PgPool, inline: InlineSlot) -> Result<Self, StoreError> {
        let head = Arc::new(watch::channel(read_head(&pool).await?).0);
        let channel: Arc<str> = events_channel(&pool).await?.into();
        let (writer, requests) = AppendQueue::new(4 * MAX_GROUP);
        // A thread and a runtime of its own, so that a reply from the server is taken up at once
        // rather than queued behind the HTTP tasks on the shared runtime's workers: the whole
        // group, and the head lock with it, waits for it.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| cannot_start_writer(&e))?;
        let options = pool.connect_options();
        let (thread_head, thread_channel) = (Arc::clone(&head), Arc::clone(&channel));
        std::thread::Builder::new()
            .name("event-writer".to_owned())
            .spawn(move || {
                runtime.block_on(run_writer(
                    options,
                    requests,
                    thread_head,
                    thread_channel,
                    inline,
                ));
            })
            .map_err(|e| cannot_start_writer(&e))?;
        let (stop_listener, stopped) = oneshot::channel();
        tokio::spawn(run_listener(
            pool.clone(),
            Arc::clone(&head),
            channel,
            stopped,
        ));
        Ok(PostgresEventStore {
            pool,
            writer,
            head,
            _stop_listener: stop_listener,
        })
    }
}

fn cannot_start_writer(e: &std::io::Error) -> StoreError {
    StoreError::Corrupt {
        position: 0,
        reason: format!("cannot start the writer: {e}"),
    }
}

async fn read_head(pool: &PgPool) -> Result<u64, StoreError> {
    let head: i64 = sqlx::query_scalar("SELECT position FROM event_log_head WHERE id = 1")
        .fetch_one(pool)
        .await?;
    Ok(to_u64(head))
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Runs until every handle to the store is dropped.
async fn run_writer(
    options: Arc<PgConnectOptions>,
    mut requests: mpsc::Receiver<AppendRequest>,
    head: Arc<watch::Sender<u64>>,
    channel: Arc<str>,
    inline: InlineSlot,
) {
    // One connection, kept from group to group: sqlx pings a pooled connection as it hands it
    // out and again as it takes it back, two round trips a group would wait for or pay for.
    let mut held = Held {
        options,
        connection: None,
        known: Known::default(),
    };
    while let Some(first) = requests.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match requests.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let projection = inline.current();
        let projection = projection.as_deref();
        let mut projected = None;
        let results = match held.commit_group(&channel, &group, projection).await {
            Ok((results, reached)) => {
                projected = reached;
                results
            }
            // The group failed as a whole (a lost connection, a constraint the checks below did
            // not foresee): commit each alone, so only the culprit hears about it.
            Err(_) => {
                let mut results = Vec::with_capacity(group.len());
                for request in &group {
                    let alone = std::slice::from_ref(request);
                    results.push(match held.commit_group(&channel, alone, projection).await {
                        Ok((mut r, reached)) => {
                            projected = projected.max(reached);
                            r.pop().unwrap_or(Err(StoreError::EmptyAppend))
                        }
                        Err(e) => Err(e),
                    });
                }
                results
            }
        };
        // Before anyone hears of the append: whoever it wakes finds its read models written.
        if let (Some(projection), Some(reached)) = (projection, projected) {
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

/// The rows of one group's insert, column by column, for one `INSERT ... SELECT FROM UNNEST`.
#[derive(Default)]
struct Rows {
    position: Vec<i64>,
    stream: Vec<String>,
    version: Vec<i64>,
    event_id: Vec<Vec<u8>>,
    event_type: Vec<String>,
    schema_version: Vec<i64>,
    payload: Vec<String>,
    metadata: Vec<String>,
    recorded_at: Vec<i64>,
    hash: Vec<Vec<u8>>,
}

impl Rows {
    /// Adds one event chained to `previous` (its stream's last hash); returns its own hash.
    fn push(
        &mut self,
        position: u64,
        stream: &str,
        version: u64,
        previous: Option<&str>,
        event: &NewEvent,
    ) -> Result<String, StoreError> {
        let Chained {
            metadata,
            recorded_at_micros: recorded_at,
            hash,
            digest,
        } = chain_new_event(previous, stream, version, event).map_err(|e| StoreError::Corrupt {
            position,
            reason: e.to_string(),
        })?;
        self.position.push(to_i64(position));
        self.stream.push(stream.to_owned());
        self.version.push(to_i64(version));
        self.event_id.push(event.event_id.as_bytes().to_vec());
        self.event_type.push(event.event_type.clone());
        self.schema_version.push(i64::from(event.schema_version));
        self.payload.push(event.payload.to_string());
        self.metadata.push(metadata);
        self.recorded_at.push(recorded_at);
        self.hash.push(digest.to_vec());
        Ok(hash)
    }
}

type Outcomes = Vec<Result<Appended, StoreError>>;

/// The writer's connection, opened when first needed and after a failure, with the statements
/// prepared on it. Not the pool's: its prepared statements are the writer's alone, and it lives
/// on the writer's runtime.
struct Held {
    options: Arc<PgConnectOptions>,
    connection: Option<(PgConnection, SessionStatements)>,
    known: Known,
}

impl Held {
    /// Appends a group in one transaction, with its projection when one is installed. Returns
    /// each request's outcome and the position the read models reached in the same commit, or
    /// an error that rolled back the whole group.
    ///
    /// When the log is known as this writer left it ([`Known`]), the group is sent in one round
    /// trip that checks, under the head lock, that it still is; if it is not, that transaction
    /// is rolled back and the group goes again the usual way, reading what it needs first.
    async fn commit_group(
        &mut self,
        channel: &str,
        group: &[AppendRequest],
        projection: Option<&dyn InlineProjection>,
    ) -> Result<(Outcomes, Option<u64>), StoreError> {
        if let Some(state) = self.known.state_for(group) {
            let (connection, session) = open(&mut self.connection, &self.options).await?;
            let prepared_before = session.prepared();
            match commit_group(
                connection,
                session,
                channel,
                group,
                projection,
                Read::Known(state),
            )
            .await
            {
                Ok(Some(committed)) => return Ok(self.keep(committed)),
                // Nothing was sent: a request the log must decide.
                Ok(None) => {}
                Err(_) => {
                    // The check, or a statement after it, aborted the transaction: end it. Had
                    // the script prepared a statement, it may have stopped before running that
                    // PREPARE, and the session is given up instead.
                    let intact = session.prepared() == prepared_before;
                    if !intact || connection.execute("ROLLBACK").await.is_err() {
                        self.connection = None;
                    }
                    self.known.forget();
                }
            }
        }
        let (connection, session) = open(&mut self.connection, &self.options).await?;
        match commit_group(connection, session, channel, group, projection, Read::Log).await {
            Ok(Some(committed)) => Ok(self.keep(committed)),
            // Only a group planned on what this writer knew is handed back undecided.
            Ok(None) => Err(StoreError::Corrupt {
                position: 0,
                reason: "a group read from the log was left undecided".to_owned(),
            }),
            Err(e) => {
                // The transaction may still be open, the connection gone, or a script stopped
                // between a PREPARE and its end: rather than find out, close it (which ends the
                // transaction and forgets its statements) and take another for the next group.
                self.connection = None;
                self.known.forget();
                Err(e)
            }
        }
    }

    /// Records what a committed group leaves the log as, and gives up the connection if its
    /// session is not what it records, or if its plans were made on tables much smaller than
    /// they are now.
    fn keep(&mut self, committed: Committed) -> (Outcomes, Option<u64>) {
        if committed.session_intact {
            self.known
                .committed(committed.started_at, committed.left_at, committed.heads);
            let left_at = committed.left_at;
            if let Some((_, session)) = self.connection.as_mut() {
                if session.outgrown(left_at) {
                    tracing::debug!(
                        head = left_at,
                        "the log has doubled: planning the writer's statements again"
                    );
                    self.connection = None;
                }
            }
        } else {
            self.connection = None;
            self.known.forget();
        }
        (committed.outcomes, committed.reached)
    }
}

/// The writer's connection in `slot`, opened if there is none.
async fn open<'a>(
    slot: &'a mut Option<(PgConnection, SessionStatements)>,
    options: &PgConnectOptions,
) -> Result<(&'a mut PgConnection, &'a mut SessionStatements), StoreError> {
    let held = match slot.take() {
        Some(held) => held,
        None => {
            let mut connection = PgConnection::connect_with(options).await?;
            // See `prepared.rs` on why generic plans, made once, and no table scans.
            connection
                .execute("SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off")
                .await?;
            (connection, SessionStatements::default())
        }
    };
    let (connection, session) = slot.insert(held);
    Ok((connection, session))
}

/// How many streams [`Known`] remembers at most; past that it starts again from none, and the
/// groups that name a stream it has forgotten read the log first until it knows them again.
const MOST_KNOWN_STREAMS: usize = 65_536;

/// How many groups in a row must find the log where this writer left it before the next is sent
/// without reading it first. While another instance appends too, the log has moved on between
/// most of this writer's groups, and a group sent on what it knew would be rolled back and sent
/// again.
const QUIET_GROUPS: u32 = 4;

/// The log as this writer last left it: its head, and the version and last hash of the streams
/// the writer has appended to or read since. While no other writer appends, that is exactly
/// what the next group would read under the head lock, so it need not: it is sent in one round
/// trip that takes the lock and checks that the head is still this one, instead of one round
/// trip to read and another to write. Positions are handed out without gaps and in commit order,
/// so a head that has not moved means that no event at all was appended in between, and every
/// stream is as remembered.
#[derive(Default)]
struct Known {
    head: Option<u64>,
    streams: HashMap<String, (u64, Option<String>)>,
    /// Groups in a row that found the head where this writer had left it.
    quiet: u32,
}

impl Known {
    /// What the group would read under the head lock, if this writer knows it.
    fn state_for(&self, group: &[AppendRequest]) -> Option<GroupState> {
        let head = self.head?;
        if self.quiet < QUIET_GROUPS {
            return None;
        }
        let mut heads = HashMap::new();
        for request in group {
            let stream = self.streams.get(&request.stream)?;
            heads.insert(request.stream.clone(), stream.clone());
        }
        // An event id already in the log meets the unique index, which stops the script like a
        // moved head: the group goes again the usual way, which finds it.
        Some(GroupState {
            head,
            heads,
            taken: HashSet::new(),
        })
    }

    /// A group that found the log at `started_at` committed (or appended nothing), leaving it
    /// at `left_at` with its streams at `heads`.
    fn committed(
        &mut self,
        started_at: u64,
        left_at: u64,
        heads: HashMap<String, (u64, Option<String>)>,
    ) {
        if self.head == Some(started_at) {
            self.quiet = self.quiet.saturating_add(1);
        } else {
            // Another writer appended since: any stream may have moved.
            self.quiet = 0;
            self.streams.clear();
        }
        if self.streams.len() + heads.len() > MOST_KNOWN_STREAMS {
            self.streams.clear();
        }
        self.streams.extend(heads);
        self.head = Some(left_at);
    }

    fn forget(&mut self) {
        *self = Known::default();
    }
}

/// A group that committed.
struct Committed {
    outcomes: Outcomes,
    /// The position the read models reached in the same commit.
    reached: Option<u64>,
    /// Whether every statement the session records as prepared is (see [`append_and_project`]).
    session_intact: bool,
    /// The log's head when the group took the lock, and when it let go of it.
    started_at: u64,
    left_at: u64,
    /// The version and last hash of each of the group's streams after it.
    heads: HashMap<String, (u64, Option<String>)>,
}

/// Where a group's [`GroupState`] comes from.
enum Read {
    /// Read under the head lock, in a round trip of its own.
    Log,
    /// Known from the groups before ([`Known`]); checked under the lock in the same script.
    Known(GroupState),
}

/// [`Held::commit_group`] on the writer's connection. With [`Read::Log`], in two round trips: one
/// opens the transaction, takes the head lock and reads what the checks need ([`group_state`]);
/// the other inserts the events, writes their projection, moves the head, notifies and commits
/// ([`append_and_project`]). With [`Read::Known`], the second alone, which begins by taking the
/// lock and checking the head. The transaction is begun and ended by statements of its own
/// rather than a `sqlx::Transaction`, so that they travel with the others; on an error it may
/// be left open, and the caller ends it or closes the connection.
async fn commit_group(
    connection: &mut PgConnection,
    session: &mut SessionStatements,
    channel: &str,
    group: &[AppendRequest],
    projection: Option<&dyn InlineProjection>,
    read: Read,
) -> Result<Option<Committed>, StoreError> {
    let (state, expected_head) = match read {
        Read::Log => (group_state(connection, session, group).await?, None),
        Read::Known(state) => {
            let head = state.head;
            (state, Some(head))
        }
    };
    let GroupState {
        head,
        mut heads,
        mut taken,
    } = state;
    let mut next_position = head + 1;
    let mut rows = Rows::default();
    let mut results = Vec::with_capacity(group.len());
    for request in group {
        if request.events.is_empty() {
            results.push(Err(StoreError::EmptyAppend));
            continue;
        }
        if let Some(duplicate) = request.events.iter().find(|e| taken.contains(&e.event_id)) {
            results.push(Err(StoreError::DuplicateEvent(duplicate.event_id)));
            continue;
        }
        let distinct: HashSet<Uuid> = request.events.iter().map(|e| e.event_id).collect();
        if distinct.len() != request.events.len() {
            let repeated = request
                .events
                .iter()
                .enumerate()
                .find(|(i, e)| {
                    request.events[..*i]
                        .iter()
                        .any(|p| p.event_id == e.event_id)
                })
                .map(|(_, e)| e.event_id)
                .unwrap_or_default();
            results.push(Err(StoreError::DuplicateEvent(repeated)));
            continue;
        }
        let (actual, mut hash) = heads.get(&request.stream).cloned().unwrap_or((0, None));
        if !request.expected.matches(actual) {
            if expected_head.is_some() {
                // Only the log can say the stream is not where this request expects it: another
                // instance may have moved it past what this writer knows.
                return Ok(None);
            }
            results.push(Err(StoreError::Conflict {
                stream: request.stream.clone(),
                expected: request.expected,
                actual,
            }));
            continue;
        }
        let first_position = next_position;
        let mut version = actual;
        for event in &request.events {
            version += 1;
            hash = Some(rows.push(
                next_position,
                &request.stream,
                version,
                hash.as_deref(),
                event,
            )?);
            taken.insert(event.event_id);
            next_position += 1;
        }
        heads.insert(request.stream.clone(), (version, hash));
        results.push(Ok(Appended {
            version,
            first_position,
            last_position: next_position - 1,
        }));
    }
    if rows.position.is_empty() {
        // Known: no transaction was begun.
        if expected_head.is_none() {
            connection.execute("ROLLBACK").await?;
        }
        return Ok(Some(Committed {
            outcomes: results,
            reached: None,
            session_intact: true,
            started_at: head,
            left_at: head,
            heads,
        }));
    }
    let last = next_position - 1;
    let unit = projection.and_then(|p| unit_for_rows(p, head, stored_rows(&rows)));
    let (reached, session_intact) = append_and_project(
        connection,
        session,
        &rows,
        unit.as_ref(),
        channel,
        (expected_head, last),
    )
    .await?;
    Ok(Some(Committed {
        outcomes: results,
        reached,
        session_intact,
        started_at: head,
        left_at: last,
        heads,
    }))
}

/// The group's rows as the columns hold them, for the inline projection to decode as a reader
/// of the log would.
fn stored_rows(rows: &Rows) -> Vec<StoredRow> {
    (0..rows.position.len())
        .map(|i| StoredRow {
            position: rows.position[i],
            stream: rows.stream[i].clone(),
            version: rows.version[i],
            event_id: rows.event_id[i].clone(),
            event_type: rows.event_type[i].clone(),
            schema_version: rows.schema_version[i],
            payload: rows.payload[i].clone(),
            metadata: rows.metadata[i].clone(),
            recorded_at: rows.recorded_at[i],
            hash: Some(rows.hash[i].clone()),
            payload_keys: None,
            metadata_context: None,
        })
        .collect()
}

/// Writes the statements that move the head to `last` and notify the listeners, and the commit.
fn head_notify_commit(
    session: &mut SessionStatements,
    prepares: &mut String,
    script: &mut String,
    channel: &str,
    last: u64,
) -> Result<(), StoreError> {
    for statement in [
        Statement::new(
            "UPDATE event_log_head SET position = $1 WHERE id = 1",
            vec![SqlValue::Int(to_i64(last))],
        ),
        Statement::new(
            "SELECT pg_notify($1, $2)",
            vec![
                SqlValue::Text(channel.to_owned()),
                SqlValue::Text(last.to_string()),
            ],
        ),
    ] {
        session
            .execute_statement(prepares, script, &statement)
            .map_err(|e| StoreError::Corrupt {
                position: last,
                reason: e.to_string(),
            })?;
    }
    script.push_str("COMMIT;\n");
    Ok(())
}

/// The SQLSTATE of the division by zero with which a guard ends a script when it changed no row.
const GUARD_MISSED: &str = "22012";

/// Inserts the group's rows and writes their projection behind a savepoint, then moves the head,
/// notifies and commits, in one round trip; given the head the group expects, it first begins
/// the transaction and takes the lock, and stops unless the head is that one. Returns the position the read models reached, or
/// `None` when the events commit without their projection (the runner will project them): no
/// unit, a guard that missed, a statement that failed. And whether the session's prepared
/// statements are still as `session` records them.
///
/// Each guard runs as a statement that divides by zero unless it moved its checkpoint: the error
/// stops the script before the projection's statements, where a separate round trip for the
/// guards used to decide whether to send them.
///
/// The script prepares what the connection has not yet, in two places: the insert's, head's and
/// notification's statements before anything else, and the projection's right after the
/// savepoint, before its guards. So a script that stops at a missed guard has run every one of
/// its `PREPARE`s, and the events can still commit with the statements prepared up front. A
/// script that stops anywhere else may have stopped among them, and the session is given up
/// once the events are committed.
async fn append_and_project(
    connection: &mut PgConnection,
    session: &mut SessionStatements,
    rows: &Rows,
    unit: Option<&(Unit, u64)>,
    channel: &str,
    (expected_head, last): (Option<u64>, u64),
) -> Result<(Option<u64>, bool), StoreError> {
    let mut prepares = String::new();
    let mut insert = String::new();
    insert_rows(session, &mut prepares, &mut insert, rows)?;
    let mut head_notify = String::new();
    head_notify_commit(session, &mut prepares, &mut head_notify, channel, last)?;
    let mut projection_prepares = String::new();
    let projected = unit.and_then(|(unit, reached)| {
        match projection_script(session, &mut projection_prepares, unit) {
            Ok(projection) => Some((projection, *reached)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot project a group inline; the runner will project it");
                None
            }
        }
    });
    let mut script = prepares;
    if let Some(expected) = expected_head {
        // The group was planned on the log as this writer left it: the lock, and a division by
        // zero unless the head is still there.
        let _ = writeln!(
            script,
            "BEGIN;\nSELECT 1 / (position = {expected})::int FROM event_log_head WHERE id = 1 FOR UPDATE;"
        );
    }
    script.push_str(&insert);
    let Some((projection, reached)) = projected else {
        script.push_str(&head_notify);
        connection.execute(script.as_str()).await?;
        // A projection the writer could not write out may have recorded some of its statements
        // as prepared without their PREPARE being sent.
        return Ok((None, unit.is_none()));
    };
    script.push_str("SAVEPOINT inline_projection;\n");
    script.push_str(&projection_prepares);
    script.push_str(&projection);
    script.push_str(&head_notify);
    let failed = match connection.execute(script.as_str()).await {
        Ok(_) => return Ok((Some(reached), true)),
        Err(e) => e,
    };
    // Undoes the projection and clears the transaction's aborted state, keeping the events. With
    // no savepoint to go back to (the insert failed) or no transaction (the commit failed), this
    // fails too, and the group fails with the first error.
    let undo = format!("ROLLBACK TO SAVEPOINT inline_projection;\n{head_notify}");
    if connection.execute(undo.as_str()).await.is_err() {
        return Err(failed.into());
    }
    let missed = failed
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == GUARD_MISSED);
    if !missed {
        tracing::warn!(error = %failed, "inline projection failed; appending without it, the runner will project");
    }
    Ok((None, missed))
}

/// Writes the statement that inserts the group's rows, one array argument a column.
fn insert_rows(
    session: &mut SessionStatements,
    prepares: &mut String,
    script: &mut String,
    rows: &Rows,
) -> Result<(), StoreError> {
    use ArgType::{BigintArray, ByteaArray, TextArray};
    session
        .execute(
            prepares,
            script,
            "INSERT INTO events (position, stream, version, event_id, event_type, schema_version, \
         payload, metadata, recorded_at, hash) \
         SELECT * FROM UNNEST($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                BigintArray,
                TextArray,
                BigintArray,
                ByteaArray,
                TextArray,
                BigintArray,
                TextArray,
                TextArray,
                BigintArray,
                ByteaArray,
            ],
            |script| {
                push_int_array(script, &rows.position);
                script.push_str(", ");
                push_text_array(script, &rows.stream)?;
                script.push_str(", ");
                push_int_array(script, &rows.version);
                script.push_str(", ");
                push_bytea_array(script, &rows.event_id);
                script.push_str(", ");
                push_text_array(script, &rows.event_type)?;
                script.push_str(", ");
                push_int_array(script, &rows.schema_version);
                script.push_str(", ");
                push_text_array(script, &rows.payload)?;
                script.push_str(", ");
                push_text_array(script, &rows.metadata)?;
                script.push_str(", ");
                push_int_array(script, &rows.recorded_at);
                script.push_str(", ");
                push_bytea_array(script, &rows.hash);
                Ok(())
            },
        )
        .map_err(|()| {
            StoreError::Backend(BackendError::message(
                "an event's text holds a NUL character, which PostgreSQL text cannot hold",
            ))
        })
}

// The insert's arguments, like every `EXECUTE` argument, are written without casts: PostgreSQL
// reads each with the input function of the parameter's declared type (see
// `statement::push_literal`).

/// Writes `values` as an array literal (`'{1,2}'`).
fn push_int_array(script: &mut String, values: &[i64]) {
    script.push_str("'{");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            script.push(',');
        }
        let _ = write!(script, "{v}");
    }
    script.push_str("}'");
}

/// Writes `values` as an array literal of bytea's hex forms (`E'{\\\\x00ab,\\\\x}'`: the escape
/// string reads `\\\\` as `\\`, and the array reads that as the one `\` of the hex form). Hex
/// digits only, so nothing can end the literal early.
fn push_bytea_array(script: &mut String, values: &[impl AsRef<[u8]>]) {
    script.push_str("E'{");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            script.push(',');
        }
        script.push_str("\\\\\\\\x");
        script.push_str(&hex::encode(v));
    }
    script.push_str("}'");
}

/// Writes `values` as `ARRAY[E'...', ...]`, which PostgreSQL types `text[]` (an array of
/// literals of no type is one of text). `Err`: a value holds a NUL character.
fn push_text_array(script: &mut String, values: &[impl AsRef<str>]) -> Result<(), ()> {
    if values.is_empty() {
        script.push_str("'{}'");
        return Ok(());
    }
    script.push_str("ARRAY[");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            script.push_str(", ");
        }
        push_escaped(script, v.as_ref())?;
    }
    script.push(']');
    Ok(())
}

/// The guards, each stopping the script unless it moved its checkpoint, and the projection's
/// statements; their `PREPARE`s go to `prepares`.
fn projection_script(
    session: &mut SessionStatements,
    prepares: &mut String,
    unit: &Unit,
) -> Result<String, NulInText> {
    let mut script = String::new();
    for guard in &unit.guards {
        let checked = Statement {
            sql: format!(
                "WITH moved AS ({} RETURNING 1) SELECT 1 / (SELECT count(*) FROM moved)",
                guard.sql
            )
            .into(),
            args: guard.args.clone(),
        };
        session.execute_statement(prepares, &mut script, &checked)?;
    }
    for statement in &unit.statements {
        session.execute_statement(prepares, &mut script, statement)?;
    }
    Ok(script)
}

/// What a group must know before it writes, read under the head lock.
struct GroupState {
    /// The last position in the log.
    head: u64,
    /// The current version and last hash of every stream the group appends to (absent: no
    /// events yet).
    heads: HashMap<String, (u64, Option<String>)>,
    /// Which of the group's event ids are already in the log.
    taken: HashSet<Uuid>,
}

/// Opens the group's transaction, takes the head lock and reads the [`GroupState`], in one
/// round trip. From the lock on, no other appender anywhere can write to the log, so the checks
/// made on what this reads stay true until the group commits. The lock's `SELECT ... FOR UPDATE`
/// answers the head as the previous holder committed it, and the read after it is a statement of
/// its own, whose snapshot (read committed) is taken once the lock is granted: it sees every
/// event committed before.
///
/// Each stream's head is one probe of the `(stream, version)` index from its newest end, so the
/// cost does not grow with the stream's history. The answers come as rows of two shapes: the
/// lock's one column (the log's head), and the read's four, where a row with a stream is that
/// stream's head and a row without is an event id already taken.
///
/// The read is prepared on the session like the second script's statements, its streams and
/// event ids passed as two arrays, so that one plan serves every group: planned afresh for each
/// group's literals, it cost the planner more than the reading, under the lock. Whichever the
/// arrays' lengths, the plan is one probe per stream and one per event id.
async fn group_state(
    connection: &mut PgConnection,
    session: &mut SessionStatements,
    group: &[AppendRequest],
) -> Result<GroupState, StoreError> {
    let mut prepares = String::new();
    let mut read = String::new();
    let streams: Vec<&str> = group.iter().map(|r| r.stream.as_str()).collect();
    let ids: Vec<&[u8]> = group
        .iter()
        .flat_map(|r| r.events.iter().map(|e| e.event_id.as_bytes().as_slice()))
        .collect();
    session
        .execute(
            &mut prepares,
            &mut read,
            "SELECT s.stream, e.version, e.hash, NULL::bytea AS event_id \
             FROM UNNEST($1) AS s(stream) \
             CROSS JOIN LATERAL (SELECT version, hash FROM events WHERE events.stream = s.stream \
                                 ORDER BY version DESC LIMIT 1) AS e \
             UNION ALL \
             SELECT NULL, NULL, NULL, event_id FROM events WHERE event_id = ANY($2)",
            &[ArgType::TextArray, ArgType::ByteaArray],
            |script| {
                push_text_array(script, &streams)?;
                script.push_str(", ");
                push_bytea_array(script, &ids);
                Ok(())
            },
        )
        .map_err(|()| {
            StoreError::Backend(BackendError::message(
                "a stream name holds a NUL character, which PostgreSQL text cannot hold",
            ))
        })?;
    let script = format!(
        "{prepares}BEGIN;\nSELECT position FROM event_log_head WHERE id = 1 FOR UPDATE;\n{read}"
    );
    let rows = connection.fetch_all(script.as_str()).await?;
    let mut head = None;
    let mut heads = HashMap::new();
    let mut taken = HashSet::new();
    for row in &rows {
        if row.len() == 1 {
            head = Some(to_u64(row.try_get::<i64, _>(0)?));
            continue;
        }
        match row.try_get::<Option<String>, _>(0)? {
            Some(stream) => {
                let version = to_u64(row.try_get::<i64, _>(1)?);
                let hash = row.try_get::<Option<Vec<u8>>, _>(2)?;
                heads.insert(stream, (version, hash.as_deref().map(hex::encode)));
            }
            None => {
                let id = row.try_get::<Vec<u8>, _>(3)?;
                taken.extend(Uuid::from_slice(&id).ok());
            }
        }
    }
    // The head row is there from the first migration on: without it the log is not ours.
    let head = head.ok_or_else(|| StoreError::Corrupt {
        position: 0,
        reason: "event_log_head has no row".to_owned(),
    })?;
    Ok(GroupState { head, heads, taken })
}

/// Follows other instances' appends. Ends when the store is dropped.
async fn run_listener(
    pool: PgPool,
    head: Arc<watch::Sender<u64>>,
    channel: Arc<str>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut stop => return,
            outcome = listen(&pool, &head, &channel) => {
                if let Err(e) = outcome {
                    tracing::warn!(error = %e, "lost the event notification channel; reconnecting");
                }
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(LISTENER_RETRY) => {}
        }
    }
}

async fn listen(pool: &PgPool, head: &watch::Sender<u64>, channel: &str) -> Result<(), StoreError> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(channel).await?;
    // Anything appended while we were not listening.
    advance_watch(head, read_head(pool).await?);
    loop {
        match listener.try_recv().await? {
            Some(notification) => {
                if let Ok(position) = notification.payload().parse::<u64>() {
                    advance_watch(head, position);
                }
            }
            // The connection dropped; the next try_recv reconnects, and a re-read of the head
            // covers what was missed.
            None => advance_watch(head, read_head(pool).await?),
        }
    }
}

#[async_trait]
impl EventStore for PostgresEventStore {
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
        let rows = sqlx::query_as::<_, StoredRow>(&format!(
            "SELECT {} FROM event_rows WHERE stream = $1 AND version >= $2 ORDER BY version LIMIT $3",
            StoredRow::COLUMNS
        ))
        .bind(stream)
        .bind(to_i64(from_version))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(StoredRow::decode).collect()
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query_as::<_, StoredRow>(&format!(
            "SELECT {} FROM event_rows WHERE position > $1 ORDER BY position LIMIT $2",
            StoredRow::COLUMNS
        ))
        .bind(to_i64(after))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(StoredRow::decode).collect()
    }

    async fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        let v: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM events WHERE stream = $1")
                .bind(stream)
                .fetch_one(&self.pool)
                .await?;
        Ok(to_u64(v))
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        read_head(&self.pool).await
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_names_its_schema_while_the_name_fits() {
        assert_eq!(
            channel_in_schema(EVENTS_CHANNEL, "lpse_jakarta"),
            "spse_totp_events_lpse_jakarta"
        );
        let fits = "s".repeat(LONGEST_CHANNEL - EVENTS_CHANNEL.len() - 1);
        assert_eq!(
            channel_in_schema(EVENTS_CHANNEL, &fits).len(),
            LONGEST_CHANNEL
        );
    }

    #[test]
    fn a_schema_too_long_for_a_channel_is_named_by_its_digest() {
        let long = "t_1796500000_0123456789abcdef0123456789abcdef";
        let channel = channel_in_schema("spse_totp_projected", long);
        assert!(channel.len() <= LONGEST_CHANNEL, "{channel}");
        assert!(channel.starts_with("spse_totp_projected_"), "{channel}");
        assert_eq!(channel, channel_in_schema("spse_totp_projected", long));
        let other = "t_1796500000_0123456789abcdef0123456789abcdee";
        assert_ne!(channel, channel_in_schema("spse_totp_projected", other));
    }
}
