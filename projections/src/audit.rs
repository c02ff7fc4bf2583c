//! What auditors and the helpdesk read from the log itself: one account's history a page at a
//! time, its state as of an instant, the hash chains' verification, and the record of each read.
//!
//! Where the log is the SQL `events` table (SQLite, PostgreSQL), reads go through the shared
//! pool in SQL both engines accept: the table's `(stream, version)` key serves every history
//! read, so a page costs the same for an account with ten events or a hundred thousand, and the
//! verifier re-hashes the columns exactly as stored. Any other event store (EventStoreDB) is
//! read through the [`EventStore`] port, with the same answers.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use spse_totp_domain::access::AccessEvent;
use spse_totp_domain::account::AccountHistory;
use spse_totp_domain::AccountEvent;
use sqlx::AnyPool;
use uuid::Uuid;

use crate::audit_checkpoints::{self, AuditKey, SignedCheckpoint};
use spse_totp_store::chain::{event_hash, ChainedFields};
use spse_totp_store::stored_row;
use spse_totp_store::{
    EventMetadata, EventStore, ExpectedVersion, LogSource, NewEvent, RecordedEvent, StoreError,
    StoredRow,
};

/// Which of a stream's events a history page holds.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    /// Only events after this stream version (the cursor).
    pub after_version: u64,
    /// Recorded at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Recorded at or before this instant.
    pub to: Option<DateTime<Utc>>,
    pub event_type: Option<String>,
}

impl HistoryFilter {
    fn matches(&self, event: &RecordedEvent) -> bool {
        self.from.is_none_or(|from| event.recorded_at >= from)
            && self.to.is_none_or(|to| event.recorded_at <= to)
            && self
                .event_type
                .as_ref()
                .is_none_or(|t| *t == event.event_type)
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Up to `limit` events of `stream` matching `filter`, in stream order.
pub async fn history_page(
    log: LogSource<'_>,
    stream: &str,
    filter: &HistoryFilter,
    limit: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let limit = limit.min(10_000);
    match log {
        LogSource::Table(pool) => table_history_page(pool, stream, filter, limit).await,
        LogSource::Store(events) => store_history_page(events, stream, filter, limit).await,
    }
}

/// The stream read a page at a time from the cursor on, keeping what matches.
async fn store_history_page(
    events: &dyn EventStore,
    stream: &str,
    filter: &HistoryFilter,
    limit: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut found = Vec::new();
    let mut after = filter.after_version;
    while found.len() < limit {
        let page = events.read_stream(stream, after + 1, FOLD_PAGE).await?;
        let Some(last) = page.last().map(|e| e.version) else {
            break;
        };
        found.extend(page.into_iter().filter(|e| filter.matches(e)));
        after = last;
    }
    found.truncate(limit);
    Ok(found)
}

async fn table_history_page(
    pool: &AnyPool,
    stream: &str,
    filter: &HistoryFilter,
    limit: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut sql = format!(
        "SELECT {} FROM event_rows WHERE stream = $1 AND version > $2",
        StoredRow::COLUMNS
    );
    let mut n = 2;
    let mut next = |sql: &mut String, condition: &str| {
        n += 1;
        sql.push_str(&format!(" AND {condition} ${n}"));
    };
    if filter.from.is_some() {
        next(&mut sql, "recorded_at >=");
    }
    if filter.to.is_some() {
        next(&mut sql, "recorded_at <=");
    }
    if filter.event_type.is_some() {
        next(&mut sql, "event_type =");
    }
    sql.push_str(&format!(" ORDER BY version LIMIT {limit}"));
    let mut query = sqlx::query_as::<_, StoredRow>(&sql)
        .bind(stream)
        .bind(to_i64(filter.after_version));
    if let Some(from) = filter.from {
        query = query.bind(from.timestamp_micros());
    }
    if let Some(to) = filter.to {
        query = query.bind(to.timestamp_micros());
    }
    if let Some(event_type) = &filter.event_type {
        query = query.bind(event_type.clone());
    }
    let rows = query.fetch_all(pool).await?;
    rows.into_iter().map(StoredRow::decode).collect()
}

/// Events read per query while folding or verifying.
const FOLD_PAGE: usize = 2_000;

/// The account stream folded up to and including `as_of`; `None` when nothing had been recorded
/// for it by then.
pub async fn history_as_of(
    log: LogSource<'_>,
    stream: &str,
    as_of: DateTime<Utc>,
) -> Result<Option<AccountHistory>, StoreError> {
    match log {
        LogSource::Table(pool) => table_history_as_of(pool, stream, as_of).await,
        LogSource::Store(_) => store_history_as_of(log, stream, as_of).await,
    }
}

/// The fold needs each event's type, payload and instant only: reading those alone spares
/// decoding every event's metadata, much of the cost on a long stream.
async fn table_history_as_of(
    pool: &AnyPool,
    stream: &str,
    as_of: DateTime<Utc>,
) -> Result<Option<AccountHistory>, StoreError> {
    let mut history = AccountHistory::default();
    let mut seen = false;
    let sql = format!(
        "SELECT version, event_type, schema_version, payload, recorded_at, payload_keys \
         FROM event_rows \
         WHERE stream = $1 AND version > $2 AND recorded_at <= $3 \
         ORDER BY version LIMIT {FOLD_PAGE}"
    );
    let mut after = 0;
    loop {
        let rows: Vec<(i64, String, i64, String, i64, Option<String>)> = sqlx::query_as(&sql)
            .bind(stream)
            .bind(after)
            .bind(as_of.timestamp_micros())
            .fetch_all(pool)
            .await?;
        let Some(last) = rows.last().map(|r| r.0) else {
            break;
        };
        seen = true;
        for (_, event_type, schema_version, payload, at, keys) in rows {
            let at = DateTime::<Utc>::from_timestamp_micros(at).unwrap_or(as_of);
            // A payload stored as keys and values is joined into its value; one stored whole is
            // read straight from its text.
            let event = u32::try_from(schema_version)
                .ok()
                .and_then(|version| match keys {
                    None => AccountEvent::from_stored_json(&event_type, version, &payload).ok(),
                    Some(keys) => stored_row::decode_payload(Some(&keys), &payload)
                        .ok()
                        .and_then(|value| {
                            AccountEvent::from_stored(&event_type, version, value).ok()
                        }),
                });
            fold(&mut history, event, at);
        }
        after = last;
    }
    Ok(seen.then_some(history))
}

async fn store_history_as_of(
    log: LogSource<'_>,
    stream: &str,
    as_of: DateTime<Utc>,
) -> Result<Option<AccountHistory>, StoreError> {
    let mut history = AccountHistory::default();
    let mut seen = false;
    let mut filter = HistoryFilter {
        to: Some(as_of),
        ..HistoryFilter::default()
    };
    loop {
        let page = history_page(log, stream, &filter, FOLD_PAGE).await?;
        let Some(last) = page.last().map(|e| e.version) else {
            break;
        };
        seen = true;
        for recorded in page {
            let event = AccountEvent::from_stored(
                &recorded.event_type,
                recorded.schema_version,
                recorded.payload,
            )
            .ok();
            fold(&mut history, event, recorded.recorded_at);
        }
        filter.after_version = last;
    }
    Ok(seen.then_some(history))
}

/// One event into the history; one this build cannot read is counted, not guessed at.
fn fold(history: &mut AccountHistory, event: Option<AccountEvent>, at: DateTime<Utc>) {
    match event {
        Some(event) => history.record(&event, at),
        None => history.skip_unrecognised(at),
    }
}

/// Appends the record of one read to the day's access stream. Readers append with
/// [`ExpectedVersion::Any`]: a read never conflicts with another read, and the store still
/// chains the events in the order it commits them.
pub async fn record_read(
    events: &dyn EventStore,
    read: AccessEvent,
    metadata: EventMetadata,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let appended = events
        .append(
            &AccessEvent::stream_name(now),
            ExpectedVersion::Any,
            vec![NewEvent {
                event_id: Uuid::now_v7(),
                event_type: read.event_type().to_owned(),
                schema_version: read.schema_version(),
                payload: read.to_payload(),
                metadata,
                recorded_at: now,
            }],
        )
        .await?;
    Ok(appended.last_position)
}

/// The first link that does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenLink {
    pub stream: String,
    pub position: u64,
    pub version: u64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// True when every event's hash re-computes and links to its predecessor, and, when
    /// checkpoints were checked, none is broken and the log reaches the newest of them.
    pub ok: bool,
    /// Events checked (up to the broken one, if any).
    pub checked: u64,
    /// Always 0: a row without a hash is a broken link (issue 13). Kept so that readers of the
    /// earlier report, which counted such rows here as older than the chain, still find it.
    pub legacy: u64,
    pub streams: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken: Option<BrokenLink>,
    /// The position of the last event read: the log's head when the walk completed.
    pub head: u64,
    /// The fingerprint of the audit key the signed checkpoints were checked with; absent when
    /// they were not checked (no key at hand).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_key: Option<String>,
    /// Checkpoints whose MAC verified and whose hash is the event's at their position.
    pub checkpoints: u64,
    /// Checkpoints signed under another key (the audit key or the master key changed since),
    /// which this key cannot check: neither trusted nor reported as forged.
    pub checkpoints_other_key: u64,
    /// The newest checkpoint verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_checkpoint: Option<CheckpointSeen>,
    /// True when the log no longer reaches a valid checkpoint (its head is behind it, or the
    /// event there is gone): events were removed from its end.
    pub truncated: bool,
    /// The first checkpoint that does not hold, when one does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken_checkpoint: Option<BrokenCheckpoint>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointSeen {
    pub position: u64,
    pub signed_at: DateTime<Utc>,
}

/// What is wrong with a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointProblem {
    /// The log no longer reaches it: its head is behind the checkpoint's position, or the event
    /// there (the head when it was signed) is gone while later ones were appended since (on
    /// PostgreSQL positions are never reused). Events were removed from the log's end as it
    /// was then.
    Truncated,
    /// Its MAC does not verify under the key that claims to have signed it: forged or altered.
    MacInvalid,
    /// The event at its position has another hash: replaced, or its position reused after a
    /// deletion (SQLite gives the next event the freed position).
    HashMismatch,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenCheckpoint {
    pub problem: CheckpointProblem,
    pub position: u64,
    pub signed_at: DateTime<Utc>,
    pub key_fingerprint: String,
    pub reason: String,
}

/// Where the verifier finds the signed checkpoints and the key to check them with.
#[derive(Clone, Copy)]
pub struct CheckpointCheck<'a> {
    pub pool: &'a AnyPool,
    pub key: &'a AuditKey,
}

/// Most checkpoints read for one page of events (a page of 1,000 events holds at most that many
/// positions, each signed under a few keys at most).
const CHECKPOINT_PAGE: i64 = 100_000;

/// Re-computes every stream's chain in position order and stops at the first broken link.
/// Signed checkpoints are not checked: see [`verify_signed`].
pub async fn verify(log: LogSource<'_>) -> Result<VerifyReport, StoreError> {
    verify_signed(log, None).await
}

/// Re-computes every stream's chain in position order and, with `checkpoints`, checks every
/// signed checkpoint against the event at its position and the log's head against the newest;
/// stops at the first break.
///
/// Detected: any change to an event's columns (its own hash no longer matches), an event removed
/// or inserted in the middle of a stream (a version gap, or the next event's link no longer
/// matches), a row without a hash, and, with checkpoints, the log's end removed (its head behind
/// a checkpoint), an event at a checkpoint's position removed or replaced, a checkpoint forged
/// or altered. Not detectable: removing a stream's last events between two checkpointed
/// positions, or events appended after the newest checkpoint and removed before the next one
/// (at most one checkpoint interval), or the newest checkpoints deleted along with the log's
/// end (the service's own log keeps a copy of each checkpoint for that case).
pub async fn verify_signed(
    log: LogSource<'_>,
    checkpoints: Option<CheckpointCheck<'_>>,
) -> Result<VerifyReport, StoreError> {
    let mut chains = Chains::default();
    chains.report.checkpoint_key = checkpoints.map(|c| c.key.fingerprint());
    let mut after: u64 = 0;
    let sql = format!(
        "SELECT {} FROM event_rows WHERE position > $1 ORDER BY position LIMIT {FOLD_PAGE}",
        StoredRow::COLUMNS
    );
    loop {
        let links: Vec<Link> = match log {
            LogSource::Table(pool) => sqlx::query_as::<_, StoredRow>(&sql)
                .bind(to_i64(after))
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(Link::from)
                .collect(),
            LogSource::Store(events) => events
                .read_all(after, FOLD_PAGE)
                .await?
                .into_iter()
                .map(Link::from)
                .collect(),
        };
        let Some(last) = links.last().map(|l| l.position) else {
            break;
        };
        let hashes: HashMap<u64, Option<String>> =
            links.iter().map(|l| (l.position, l.hash.clone())).collect();
        for link in links {
            if !chains.follow(link) {
                return Ok(chains.report);
            }
        }
        if let Some(check) = checkpoints {
            let signed = audit_checkpoints::between(check.pool, after, last, CHECKPOINT_PAGE)
                .await
                .map_err(StoreError::from)?;
            if !chains.check_checkpoints(check.key, signed, &hashes) {
                return Ok(chains.report);
            }
        }
        after = last;
    }
    if let Some(check) = checkpoints {
        let beyond = audit_checkpoints::between(check.pool, after, u64::MAX, CHECKPOINT_PAGE)
            .await
            .map_err(StoreError::from)?;
        // A checkpoint signed while the walk ran may name events appended since it ended: those
        // that are there now are checked as any other, not taken for a cut.
        let mut appended_since = HashMap::new();
        for checkpoint in &beyond {
            if appended_since.contains_key(&checkpoint.position) {
                continue;
            }
            if let Some(hash) = hash_at(log, checkpoint.position).await? {
                appended_since.insert(checkpoint.position, hash);
            }
        }
        let (present, missing): (Vec<_>, Vec<_>) = beyond
            .into_iter()
            .partition(|c| appended_since.contains_key(&c.position));
        if !chains.check_checkpoints(check.key, present, &appended_since) {
            return Ok(chains.report);
        }
        chains.check_beyond_head(check.key, missing);
    }
    Ok(chains.report)
}

/// The hash of the event at `position`, if there is one (`Some(None)`: there is, without a hash).
async fn hash_at(log: LogSource<'_>, position: u64) -> Result<Option<Option<String>>, StoreError> {
    match log {
        LogSource::Table(pool) => {
            let row: Option<(Option<Vec<u8>>,)> =
                sqlx::query_as("SELECT hash FROM events WHERE position = $1")
                    .bind(to_i64(position))
                    .fetch_optional(pool)
                    .await?;
            Ok(row.map(|(hash,)| hash.as_deref().map(hex::encode)))
        }
        LogSource::Store(events) => Ok(events
            .read_all(position.saturating_sub(1), 1)
            .await?
            .into_iter()
            .find(|e| e.position == position)
            .map(|e| e.hash)),
    }
}

/// One event as the verifier checks it: the fields the hash covers, as stored.
struct Link {
    position: u64,
    stream: String,
    version: u64,
    event_id: Result<Uuid, String>,
    event_type: String,
    schema_version: u32,
    payload: Result<Value, String>,
    metadata: Result<Value, String>,
    recorded_at_micros: i64,
    hash: Option<String>,
}

impl From<StoredRow> for Link {
    /// The columns exactly as stored: the JSON is parsed from the row's own text, so a field
    /// added to it by hand changes the hash even where the decoder would ignore it (metadata in
    /// its compact form must decode strictly, see [`StoredRow::chained_metadata`]).
    fn from(row: StoredRow) -> Self {
        Link {
            position: row.position(),
            version: u64::try_from(row.version).unwrap_or(0),
            event_id: row.event_id(),
            schema_version: u32::try_from(row.schema_version).unwrap_or(u32::MAX),
            payload: row
                .payload_value()
                .map_err(|e| format!("the payload is not JSON: {e}")),
            metadata: row
                .chained_metadata()
                .map_err(|e| format!("the metadata does not decode: {e}")),
            recorded_at_micros: row.recorded_at,
            hash: row.hash_hex(),
            stream: row.stream,
            event_type: row.event_type,
        }
    }
}

impl From<RecordedEvent> for Link {
    fn from(event: RecordedEvent) -> Self {
        Link {
            position: event.position,
            version: event.version,
            event_id: Ok(event.event_id),
            schema_version: event.schema_version,
            metadata: serde_json::to_value(&event.metadata)
                .map_err(|e| format!("the metadata does not encode: {e}")),
            payload: Ok(event.payload),
            recorded_at_micros: event.recorded_at.timestamp_micros(),
            stream: event.stream,
            event_type: event.event_type,
            hash: event.hash,
        }
    }
}

/// Every stream's last version and hash so far, and the report being built.
struct Chains {
    heads: HashMap<String, (u64, Option<String>)>,
    report: VerifyReport,
}

impl Default for Chains {
    fn default() -> Self {
        Chains {
            heads: HashMap::new(),
            report: VerifyReport {
                ok: true,
                checked: 0,
                legacy: 0,
                streams: 0,
                broken: None,
                head: 0,
                checkpoint_key: None,
                checkpoints: 0,
                checkpoints_other_key: 0,
                newest_checkpoint: None,
                truncated: false,
                broken_checkpoint: None,
            },
        }
    }
}

impl Chains {
    /// Checks `link` against its stream's head; false (and the report names it) when broken.
    fn follow(&mut self, link: Link) -> bool {
        self.report.checked += 1;
        self.report.head = link.position;
        let head = self.heads.get(&link.stream);
        if head.is_none() {
            self.report.streams += 1;
        }
        if let Err(reason) = check_link(head, &link) {
            self.report.ok = false;
            self.report.broken = Some(BrokenLink {
                position: link.position,
                version: link.version,
                stream: link.stream,
                reason,
            });
            return false;
        }
        self.heads.insert(link.stream, (link.version, link.hash));
        true
    }
}

impl Chains {
    fn break_checkpoint(
        &mut self,
        problem: CheckpointProblem,
        checkpoint: &SignedCheckpoint,
        reason: String,
    ) {
        self.report.ok = false;
        self.report.truncated = problem == CheckpointProblem::Truncated;
        self.report.broken_checkpoint = Some(BrokenCheckpoint {
            problem,
            position: checkpoint.position,
            signed_at: checkpoint.signed_at,
            key_fingerprint: checkpoint.key_fingerprint.clone(),
            reason,
        });
    }

    /// Checks the checkpoints at positions of one page of events (`hashes`, by position);
    /// false (and the report names it) at the first that does not hold.
    fn check_checkpoints(
        &mut self,
        key: &AuditKey,
        signed: Vec<SignedCheckpoint>,
        hashes: &HashMap<u64, Option<String>>,
    ) -> bool {
        let fingerprint = key.fingerprint();
        for checkpoint in signed {
            if checkpoint.key_fingerprint != fingerprint {
                self.report.checkpoints_other_key += 1;
                continue;
            }
            if !key.verifies(&checkpoint) {
                self.break_checkpoint(
                    CheckpointProblem::MacInvalid,
                    &checkpoint,
                    "the checkpoint's MAC does not verify under the audit key: it was forged or altered".to_owned(),
                );
                return false;
            }
            let problem = match hashes.get(&checkpoint.position) {
                None => Some((
                    CheckpointProblem::Truncated,
                    "no event is at the checkpoint's position any more, which was the log's head when signed: events were removed from its end",
                )),
                Some(hash) if hash.as_deref() != Some(checkpoint.chain_hash.as_str()) => Some((
                    CheckpointProblem::HashMismatch,
                    "the event at the checkpoint's position is not the one signed: it was replaced, or its position reused after a deletion",
                )),
                Some(_) => None,
            };
            if let Some((problem, reason)) = problem {
                self.break_checkpoint(problem, &checkpoint, reason.to_owned());
                return false;
            }
            self.report.checkpoints += 1;
            self.report.newest_checkpoint = Some(CheckpointSeen {
                position: checkpoint.position,
                signed_at: checkpoint.signed_at,
            });
        }
        true
    }

    /// Checkpoints past the last event read: the newest valid one means the log was cut short.
    fn check_beyond_head(&mut self, key: &AuditKey, beyond: Vec<SignedCheckpoint>) {
        let fingerprint = key.fingerprint();
        let (ours, others): (Vec<_>, Vec<_>) = beyond
            .into_iter()
            .partition(|c| c.key_fingerprint == fingerprint);
        self.report.checkpoints_other_key += others.len() as u64;
        if let Some(valid) = ours.iter().rev().find(|c| key.verifies(c)) {
            let reason = format!(
                "the log ends at position {} but a checkpoint signed at {} reached position {}: events were removed from its end",
                self.report.head, valid.signed_at, valid.position
            );
            self.break_checkpoint(CheckpointProblem::Truncated, valid, reason);
        } else if let Some(forged) = ours.first() {
            self.break_checkpoint(
                CheckpointProblem::MacInvalid,
                forged,
                "the checkpoint's MAC does not verify under the audit key: it was forged or altered".to_owned(),
            );
        }
    }
}

/// Whether `link` follows `head` (its stream's previous version and hash) in an unbroken chain.
fn check_link(head: Option<&(u64, Option<String>)>, link: &Link) -> Result<(), String> {
    let (previous_version, previous_hash) = match head {
        Some((v, h)) => (*v, h.as_deref()),
        None => (0, None),
    };
    let version = link.version;
    if version != previous_version + 1 {
        return Err(format!(
            "version {version} follows version {previous_version}: events are missing or inserted"
        ));
    }
    // The service hashes every event it writes (import re-chains what it reads), so a row
    // without a hash was written or altered outside it.
    let Some(stored) = link.hash.as_deref() else {
        return Err(match previous_hash {
            Some(_) => "the hash is missing: the event was written or altered outside the service",
            None => "the hash is missing (no event is exempt from the chain): the event was written or altered outside the service",
        }
        .to_owned());
    };
    let expected = event_hash(
        previous_hash,
        &ChainedFields {
            stream: &link.stream,
            version,
            event_id: link.event_id.clone()?,
            event_type: &link.event_type,
            schema_version: link.schema_version,
            payload: link.payload.as_ref().map_err(String::clone)?,
            metadata: link.metadata.as_ref().map_err(String::clone)?,
            recorded_at_micros: link.recorded_at_micros,
        },
    );
    if expected == stored {
        Ok(())
    } else {
        Err("the stored hash does not match the event's content or its predecessor".to_owned())
    }
}
