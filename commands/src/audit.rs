//! What auditors and the helpdesk read from the log itself: one account's history a page at a
//! time, its state as of an instant, the hash chains' verification, and the record of each read.
//!
//! Queries here go through the shared pool in SQL both engines accept; the `events` table's
//! `(stream, version)` key serves every history read, so a page costs the same for an account
//! with ten events or a hundred thousand.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use spse_totp_domain::access::AccessEvent;
use spse_totp_domain::account::AccountHistory;
use spse_totp_domain::AccountEvent;
use sqlx::AnyPool;
use uuid::Uuid;

use crate::store::chain::{event_hash, ChainedFields};
use crate::store::{
    EventMetadata, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError, StoredRow,
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

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Up to `limit` events of `stream` matching `filter`, in stream order.
pub async fn history_page(
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
    sql.push_str(&format!(" ORDER BY version LIMIT {}", limit.min(10_000)));
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
    pool: &AnyPool,
    stream: &str,
    as_of: DateTime<Utc>,
) -> Result<Option<AccountHistory>, StoreError> {
    let mut history = AccountHistory::default();
    let mut filter = HistoryFilter {
        to: Some(as_of),
        ..HistoryFilter::default()
    };
    let mut seen = false;
    loop {
        let page = history_page(pool, stream, &filter, FOLD_PAGE).await?;
        let Some(last) = page.last().map(|e| e.version) else {
            break;
        };
        seen = true;
        for recorded in &page {
            match AccountEvent::from_stored(
                &recorded.event_type,
                recorded.schema_version,
                recorded.payload.clone(),
            ) {
                Ok(event) => history.record(&event, recorded.recorded_at),
                Err(_) => history.skip_unrecognised(recorded.recorded_at),
            }
        }
        filter.after_version = last;
    }
    Ok(seen.then_some(history))
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
pub async fn verify(pool: &AnyPool) -> Result<VerifyReport, StoreError> {
    let mut heads: HashMap<String, (u64, Option<String>)> = HashMap::new();
    let mut report = VerifyReport {
        ok: true,
        checked: 0,
        legacy: 0,
        streams: 0,
        broken: None,
    };
    let mut after: i64 = 0;
    let sql = format!(
        "SELECT {} FROM events WHERE position > $1 ORDER BY position LIMIT {FOLD_PAGE}",
        StoredRow::COLUMNS
    );
    loop {
        let rows: Vec<StoredRow> = sqlx::query_as(&sql).bind(after).fetch_all(pool).await?;
        let Some(last) = rows.last().map(|r| r.position) else {
            break;
        };
        for row in rows {
            report.checked += 1;
            let head = heads.get(&row.stream);
            if head.is_none() {
                report.streams += 1;
            }
            if let Err(reason) = check_link(head, &row) {
                report.ok = false;
                report.broken = Some(BrokenLink {
                    position: row.position(),
                    version: u64::try_from(row.version).unwrap_or(0),
                    stream: row.stream,
                    reason,
                });
                return Ok(report);
            }
            if row.hash.is_none() {
                report.legacy += 1;
            }
            let version = u64::try_from(row.version).unwrap_or(0);
            heads.insert(row.stream, (version, row.hash));
        }
        after = last;
    }
    Ok(report)
}

/// Whether `row` follows `head` (its stream's previous version and hash) in an unbroken chain.
fn check_link(head: Option<&(u64, Option<String>)>, row: &StoredRow) -> Result<(), String> {
    let (previous_version, previous_hash) = match head {
        Some((v, h)) => (*v, h.as_deref()),
        None => (0, None),
    };
    let version = u64::try_from(row.version).unwrap_or(0);
    if version != previous_version + 1 {
        return Err(format!(
            "version {version} follows version {previous_version}: events are missing or inserted"
        ));
    }
    let Some(stored) = row.hash.as_deref() else {
        return match previous_hash {
            Some(_) => Err("the hash is missing after the chain began".to_owned()),
            None => Ok(()),
        };
    };
    let payload: Value =
        serde_json::from_str(&row.payload).map_err(|e| format!("the payload is not JSON: {e}"))?;
    let metadata: Value = serde_json::from_str(&row.metadata)
        .map_err(|e| format!("the metadata is not JSON: {e}"))?;
    let event_id =
        Uuid::parse_str(&row.event_id).map_err(|e| format!("the event id is not a UUID: {e}"))?;
    let expected = event_hash(
        previous_hash,
        &ChainedFields {
            stream: &row.stream,
            version,
            event_id,
            event_type: &row.event_type,
            schema_version: u32::try_from(row.schema_version).unwrap_or(u32::MAX),
            payload: &payload,
            metadata: &metadata,
            recorded_at_micros: row.recorded_at,
        },
    );
    if expected == stored {
        Ok(())
    } else {
        Err("the stored hash does not match the event's content or its predecessor".to_owned())
    }
}
