//! Moving a deployment from one database to another (SQLite to PostgreSQL, say): the event log
//! and the vault's sealed secrets, as JSON Lines. Everything else is derived (projections are
//! rebuilt on the other side, snapshots are taken again) or short-lived (pending captchas).
//!
//! One line per record, tagged by `kind`, in log order, closed by an `end` line with the counts,
//! so an import can tell a whole export from a truncated one. Sealed secrets stay sealed: the
//! target must run with the same master key. Secrets are never decrypted on the way.

use std::io::{BufRead, Write};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use uuid::Uuid;

use crate::database::Database;
use crate::{EventMetadata, ExpectedVersion, NewEvent, StoreError};

/// The first line of every export.
const FORMAT: &str = "spse-totp-export";
const FORMAT_VERSION: u32 = 1;
/// Events read from the source per page.
const PAGE: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("line {line}: {reason}")]
    Malformed { line: usize, reason: String },
    #[error("the target already holds {0} events; import only into an empty database")]
    TargetNotEmpty(u64),
    #[error("the export is incomplete: {0}")]
    Incomplete(String),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Record {
    Header {
        format: String,
        format_version: u32,
        exported_at: DateTime<Utc>,
    },
    Event {
        stream: String,
        version: u64,
        event_id: Uuid,
        event_type: String,
        schema_version: u32,
        payload: serde_json::Value,
        metadata: EventMetadata,
        recorded_at: DateTime<Utc>,
    },
    SealedSecret {
        enrollment_id: String,
        stream: String,
        key_id: String,
        /// Base64.
        nonce: String,
        /// Base64; still sealed under the master key.
        sealed: String,
        created_at: i64,
        expires_at: i64,
    },
    End {
        events: u64,
        sealed_secrets: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub events: u64,
    pub sealed_secrets: u64,
}

fn write_record(out: &mut impl Write, record: &Record) -> Result<(), TransferError> {
    serde_json::to_writer(&mut *out, record).map_err(std::io::Error::from)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Writes the whole log and every sealed secret of `db` to `out`.
pub async fn export(
    db: &Database,
    out: &mut impl Write,
    now: DateTime<Utc>,
) -> Result<Counts, TransferError> {
    write_record(
        out,
        &Record::Header {
            format: FORMAT.to_owned(),
            format_version: FORMAT_VERSION,
            exported_at: now,
        },
    )?;
    let mut counts = Counts {
        events: 0,
        sealed_secrets: 0,
    };
    let mut after = 0;
    loop {
        let page = db.events.read_all(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for event in page {
            write_record(
                out,
                &Record::Event {
                    stream: event.stream,
                    version: event.version,
                    event_id: event.event_id,
                    event_type: event.event_type,
                    schema_version: event.schema_version,
                    payload: event.payload,
                    metadata: event.metadata,
                    recorded_at: event.recorded_at,
                },
            )?;
            counts.events += 1;
        }
    }
    let rows = sqlx::query(
        "SELECT enrollment_id, stream, key_id, nonce, sealed, created_at, expires_at \
         FROM vault_secrets ORDER BY enrollment_id",
    )
    .fetch_all(&db.pool)
    .await?;
    for row in rows {
        let nonce: Vec<u8> = row.try_get(3)?;
        let sealed: Vec<u8> = row.try_get(4)?;
        write_record(
            out,
            &Record::SealedSecret {
                enrollment_id: row.try_get(0)?,
                stream: row.try_get(1)?,
                key_id: row.try_get(2)?,
                nonce: BASE64.encode(nonce),
                sealed: BASE64.encode(sealed),
                created_at: row.try_get(5)?,
                expires_at: row.try_get(6)?,
            },
        )?;
        counts.sealed_secrets += 1;
    }
    write_record(
        out,
        &Record::End {
            events: counts.events,
            sealed_secrets: counts.sealed_secrets,
        },
    )?;
    out.flush()?;
    Ok(counts)
}

/// The master key fingerprints (`key_id`) the sealed secrets of an export are sealed under, read
/// without importing anything, so an import under the wrong key is refused before it writes.
pub fn sealed_key_ids(
    input: impl BufRead,
) -> Result<std::collections::BTreeSet<String>, TransferError> {
    #[derive(Deserialize)]
    struct KeyOnly {
        kind: String,
        #[serde(default)]
        key_id: Option<String>,
    }
    let mut ids = std::collections::BTreeSet::new();
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        // Only sealed-secret lines name a key; the events need no parsing.
        if !line.contains("\"sealed_secret\"") {
            continue;
        }
        let record: KeyOnly =
            serde_json::from_str(&line).map_err(|e| TransferError::Malformed {
                line: index + 1,
                reason: e.to_string(),
            })?;
        if record.kind == "sealed_secret" {
            ids.extend(record.key_id);
        }
    }
    Ok(ids)
}

/// Appends an export into `db`, whose log must be empty. Each stream gets its events back at
/// the same versions, with the same ids, times and metadata, in the same order across streams;
/// global positions are the target's own. Consecutive events of one stream go in one append.
pub async fn import(db: &Database, input: impl BufRead) -> Result<Counts, TransferError> {
    let head = db.events.head_position().await?;
    if head > 0 {
        return Err(TransferError::TargetNotEmpty(head));
    }
    let mut counts = Counts {
        events: 0,
        sealed_secrets: 0,
    };
    let mut run: Option<(String, u64, Vec<NewEvent>)> = None;
    let mut header_seen = false;
    let mut end = None;
    for (index, line) in input.lines().enumerate() {
        let line_number = index + 1;
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let malformed = |reason: String| TransferError::Malformed {
            line: line_number,
            reason,
        };
        if end.is_some() {
            return Err(malformed("a record after the end line".to_owned()));
        }
        let record: Record = serde_json::from_str(&line).map_err(|e| malformed(e.to_string()))?;
        match record {
            Record::Header {
                format,
                format_version,
                ..
            } => {
                if header_seen || format != FORMAT || format_version != FORMAT_VERSION {
                    return Err(malformed(format!(
                        "expected one {FORMAT} header at version {FORMAT_VERSION}"
                    )));
                }
                header_seen = true;
            }
            _ if !header_seen => {
                return Err(malformed(format!(
                    "the first line must be the {FORMAT} header"
                )));
            }
            Record::Event {
                stream,
                version,
                event_id,
                event_type,
                schema_version,
                payload,
                metadata,
                recorded_at,
            } => {
                let event = NewEvent {
                    event_id,
                    event_type,
                    schema_version,
                    payload,
                    metadata,
                    recorded_at,
                };
                match run.as_mut() {
                    Some((run_stream, first, events))
                        if *run_stream == stream
                            && *first + events.len() as u64 == version
                            && events.len() < PAGE =>
                    {
                        events.push(event);
                    }
                    _ => {
                        if let Some(done) = run.take() {
                            counts.events += append_run(db, done).await?;
                        }
                        run = Some((stream, version, vec![event]));
                    }
                }
            }
            Record::SealedSecret {
                enrollment_id,
                stream,
                key_id,
                nonce,
                sealed,
                created_at,
                expires_at,
            } => {
                let nonce = BASE64.decode(nonce).map_err(|e| malformed(e.to_string()))?;
                let sealed = BASE64
                    .decode(sealed)
                    .map_err(|e| malformed(e.to_string()))?;
                let pool = db.write().await;
                sqlx::query(
                    "INSERT INTO vault_secrets (enrollment_id, stream, key_id, nonce, sealed, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(enrollment_id)
                .bind(stream)
                .bind(key_id)
                .bind(nonce)
                .bind(sealed)
                .bind(created_at)
                .bind(expires_at)
                .execute(&*pool)
                .await?;
                counts.sealed_secrets += 1;
            }
            Record::End {
                events,
                sealed_secrets,
            } => end = Some((events, sealed_secrets)),
        }
    }
    if let Some(done) = run.take() {
        counts.events += append_run(db, done).await?;
    }
    match end {
        Some((events, sealed_secrets))
            if events == counts.events && sealed_secrets == counts.sealed_secrets =>
        {
            Ok(counts)
        }
        Some((events, sealed_secrets)) => Err(TransferError::Incomplete(format!(
            "the end line counts {events} events and {sealed_secrets} sealed secrets, the file held {} and {}",
            counts.events, counts.sealed_secrets
        ))),
        None => Err(TransferError::Incomplete(
            "no end line: the file was cut short".to_owned(),
        )),
    }
}

/// Appends consecutive events of one stream, expecting the stream to be just before them.
async fn append_run(
    db: &Database,
    (stream, first_version, events): (String, u64, Vec<NewEvent>),
) -> Result<u64, TransferError> {
    let n = events.len() as u64;
    let expected = ExpectedVersion::at(first_version.saturating_sub(1));
    db.events.append(&stream, expected, events).await?;
    Ok(n)
}
