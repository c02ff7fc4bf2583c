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

use spse_totp_store::chain::{event_hash, ChainedFields};
use spse_totp_store::stored_metadata;
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
        "SELECT {} FROM events WHERE stream = $1 AND version > $2",
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
        "SELECT version, event_type, schema_version, payload, recorded_at FROM events \
         WHERE stream = $1 AND version > $2 AND recorded_at <= $3 \
         ORDER BY version LIMIT {FOLD_PAGE}"
    );
    let mut after = 0;
    loop {
        let rows: Vec<(i64, String, i64, String, i64)> = sqlx::query_as(&sql)
            .bind(stream)
            .bind(after)
            .bind(as_of.timestamp_micros())
            .fetch_all(pool)
            .await?;
        let Some(last) = rows.last().map(|r| r.0) else {
            break;
        };
        seen = true;
        for (_, event_type, schema_version, payload, at) in rows {
            let at = DateTime::<Utc>::from_timestamp_micros(at).unwrap_or(as_of);
            let event = u32::try_from(schema_version).ok().and_then(|version| {
                AccountEvent::from_stored_json(&event_type, version, &payload).ok()
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
    /// True when every chained event's hash re-computes and links to its predecessor.
    pub ok: bool,
    /// Events checked (up to the broken one, if any).
    pub checked: u64,
    /// Events written before the chain existed (no hash). A database created with the chain
    /// has none; they are listed, not counted as broken, since nothing was ever promised of them.
    pub legacy: u64,
    pub streams: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken: Option<BrokenLink>,
}

/// Re-computes every stream's chain in position order and stops at the first broken link.
///
/// Detected: any change to an event's columns (its own hash no longer matches), an event removed
/// or inserted in the middle of a stream (a version gap, or the next event's link no longer
/// matches), a hash removed after the chain began. Not detectable by a chain alone: removing a
/// stream's last events, or rewriting a whole stream's tail with freshly computed hashes (that
/// needs an anchor outside the database, e.g. the report's last hashes kept elsewhere).
pub async fn verify(log: LogSource<'_>) -> Result<VerifyReport, StoreError> {
    let mut chains = Chains::default();
    let mut after: u64 = 0;
    let sql = format!(
        "SELECT {} FROM events WHERE position > $1 ORDER BY position LIMIT {FOLD_PAGE}",
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
        for link in links {
            if !chains.follow(link) {
                return Ok(chains.report);
            }
        }
        after = last;
    }
    Ok(chains.report)
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
    /// its compact form must decode strictly, see [`stored_metadata::chained_value`]).
    fn from(row: StoredRow) -> Self {
        Link {
            position: row.position(),
            version: u64::try_from(row.version).unwrap_or(0),
            event_id: row.event_id(),
            schema_version: u32::try_from(row.schema_version).unwrap_or(u32::MAX),
            payload: serde_json::from_str(&row.payload)
                .map_err(|e| format!("the payload is not JSON: {e}")),
            metadata: stored_metadata::chained_value(&row.metadata)
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
            },
        }
    }
}

impl Chains {
    /// Checks `link` against its stream's head; false (and the report names it) when broken.
    fn follow(&mut self, link: Link) -> bool {
        self.report.checked += 1;
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
        if link.hash.is_none() {
            self.report.legacy += 1;
        }
        self.heads.insert(link.stream, (link.version, link.hash));
        true
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
    let Some(stored) = link.hash.as_deref() else {
        return match previous_hash {
            Some(_) => Err("the hash is missing after the chain began".to_owned()),
            None => Ok(()),
        };
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
