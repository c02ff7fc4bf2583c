//! Signed checkpoints of the log's head, which make truncation evident.
//!
//! The hash chain ([`spse_totp_store::chain`]) links each stream's events to the one before, so
//! removing the log's last events leaves every chain intact. So, whenever the head has moved,
//! the follower's `sweeps` leader signs it: an HMAC-SHA256 under the audit key over the head's
//! position, the hash of the event there and the instant ([`write_if_moved`]). `audit verify`
//! then reports a log whose head is behind a checkpoint (its end was deleted), a checkpoint
//! whose MAC does not verify (forged or altered), and one whose hash is not the event's at its
//! position (the event was replaced, or its position taken by another after a deletion).
//!
//! The key is `SPSE_TOTP_AUDIT_KEY`, or one derived from the master key: someone who can write
//! the database but does not hold the key cannot sign a checkpoint. Every checkpoint is kept
//! (the table refuses UPDATE and DELETE as the log does), so each one anchors one more position.
//! Checkpoints signed under another key (the audit key or the master key changed) cannot be
//! checked with this one: they are counted, not trusted and not reported as forged.

use chrono::{DateTime, Duration, Utc};
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::{Digest, Sha256};
use spse_totp_store::{Database, StoreError};
use sqlx::AnyPool;

/// The least time, by the service's clock, between two checkpoints: with the sweeps' 30 s poll,
/// a head that moved is signed at the next sweep, within a minute.
pub const CHECKPOINT_EVERY: Duration = Duration::seconds(20);

/// Versions the MAC input's layout.
const LAYOUT: &[u8] = b"spse-totp-audit-checkpoint-v1";

/// The label of the audit key derived from the master key when `SPSE_TOTP_AUDIT_KEY` is unset.
pub const MASTER_KEY_LABEL: &str = "spse-totp audit checkpoints v1";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("audit checkpoints: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The 256-bit key checkpoints are signed under. Never printed.
#[derive(Clone)]
pub struct AuditKey([u8; 32]);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditKey({})", self.fingerprint())
    }
}

impl AuditKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        AuditKey(bytes)
    }

    /// A key as configured: 32 bytes in hex (64 digits) or base64, as the master key is given.
    pub fn parse(text: &str) -> Result<Self, String> {
        use base64::Engine as _;
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|e| e.to_string())?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| "is neither 64 hex digits nor base64".to_owned())?
        };
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("must be 32 bytes (256 bits), not {}", b.len()))?;
        Ok(AuditKey(key))
    }

    /// Names the key without revealing it (the first 8 bytes of its SHA-256, in hex), so a
    /// checkpoint signed under another key is told apart from a forged one.
    pub fn fingerprint(&self) -> String {
        hex::encode(&Sha256::digest(self.0)[..8])
    }

    fn mac(&self, position: u64, chain_hash: &str, signed_at_micros: i64) -> Hmac<Sha256> {
        // A 32-byte key fits HMAC-SHA256's 64-byte block as is, so no fallible length check.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&self.0);
        let mut mac = <Hmac<Sha256> as KeyInit>::new(&block.into());
        let mut field = |bytes: &[u8]| {
            mac.update(&(bytes.len() as u64).to_be_bytes());
            mac.update(bytes);
        };
        field(LAYOUT);
        field(&position.to_be_bytes());
        field(chain_hash.as_bytes());
        field(&signed_at_micros.to_be_bytes());
        mac
    }

    /// The hex MAC of a checkpoint of `position` whose event has `chain_hash`.
    pub fn sign(&self, position: u64, chain_hash: &str, signed_at: DateTime<Utc>) -> String {
        hex::encode(
            self.mac(position, chain_hash, signed_at.timestamp_micros())
                .finalize()
                .into_bytes(),
        )
    }

    /// Whether `checkpoint`'s MAC is this key's over its fields (compared in constant time).
    pub fn verifies(&self, checkpoint: &SignedCheckpoint) -> bool {
        let Ok(stored) = hex::decode(&checkpoint.mac) else {
            return false;
        };
        self.mac(
            checkpoint.position,
            &checkpoint.chain_hash,
            checkpoint.signed_at.timestamp_micros(),
        )
        .verify_slice(&stored)
        .is_ok()
    }
}

/// One row of `audit_checkpoints`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignedCheckpoint {
    pub position: u64,
    /// The hex hash of the event at `position`.
    pub chain_hash: String,
    pub signed_at: DateTime<Utc>,
    pub key_fingerprint: String,
    /// Hex HMAC-SHA256.
    pub mac: String,
}

type Row = (i64, String, i64, String, String);

const COLUMNS: &str = "position, chain_hash, signed_at, key_fingerprint, mac";

impl From<Row> for SignedCheckpoint {
    fn from((position, chain_hash, signed_at, key_fingerprint, mac): Row) -> Self {
        SignedCheckpoint {
            position: u64::try_from(position).unwrap_or(0),
            chain_hash,
            signed_at: DateTime::from_timestamp_micros(signed_at).unwrap_or_default(),
            key_fingerprint,
            mac,
        }
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The checkpoint with the highest position that `key` signed (its MAC verifies), among the
/// newest few under its fingerprint: one made up by someone without the key neither stops the
/// writer nor moves its interval (`audit verify` reports it).
pub async fn newest(
    pool: &AnyPool,
    key: &AuditKey,
) -> Result<Option<SignedCheckpoint>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM audit_checkpoints WHERE key_fingerprint = $1 \
         ORDER BY position DESC LIMIT 16"
    ))
    .bind(key.fingerprint())
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(SignedCheckpoint::from)
        .find(|c| key.verifies(c)))
}

/// Checkpoints (under any key) at positions in `(after, up_to]`, in position order, at most
/// `limit`.
pub async fn between(
    pool: &AnyPool,
    after: u64,
    up_to: u64,
    limit: i64,
) -> Result<Vec<SignedCheckpoint>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM audit_checkpoints WHERE position > $1 AND position <= $2 \
         ORDER BY position, key_fingerprint LIMIT $3"
    ))
    .bind(to_i64(after))
    .bind(to_i64(up_to))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(SignedCheckpoint::from).collect())
}

/// Signs the log's head when it has moved past the newest checkpoint under `key` and at least
/// [`CHECKPOINT_EVERY`] has passed since that one by `now`. Returns the checkpoint written.
///
/// Never signs a head behind the newest checkpoint: a log cut short is left for `audit verify`
/// to report, not covered by a fresh signature.
pub async fn write_if_moved(
    db: &Database,
    key: &AuditKey,
    now: DateTime<Utc>,
) -> Result<Option<SignedCheckpoint>, CheckpointError> {
    let fingerprint = key.fingerprint();
    let last = newest(&db.pool, key).await?;
    if last.as_ref().is_some_and(|last| {
        last.signed_at
            .checked_add_signed(CHECKPOINT_EVERY)
            .is_none_or(|due| now < due)
    }) {
        return Ok(None);
    }
    let head = db.events.head_position().await?;
    if head == 0 || last.as_ref().is_some_and(|last| head <= last.position) {
        return Ok(None);
    }
    // The event at the head, read as every reader reads it: on PostgreSQL the head may name an
    // append still committing, and then the next sweep signs it.
    let Some(event) = db
        .events
        .read_all(head - 1, 1)
        .await?
        .into_iter()
        .find(|e| e.position == head)
    else {
        return Ok(None);
    };
    let Some(chain_hash) = event.hash else {
        return Ok(None);
    };
    let checkpoint = SignedCheckpoint {
        position: head,
        mac: key.sign(head, &chain_hash, now),
        chain_hash,
        signed_at: now,
        key_fingerprint: fingerprint,
    };
    let pool = db.write().await;
    sqlx::query(&format!(
        "INSERT INTO audit_checkpoints ({COLUMNS}) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (position, key_fingerprint) DO NOTHING"
    ))
    .bind(to_i64(checkpoint.position))
    .bind(&checkpoint.chain_hash)
    .bind(checkpoint.signed_at.timestamp_micros())
    .bind(&checkpoint.key_fingerprint)
    .bind(&checkpoint.mac)
    .execute(&*pool)
    .await?;
    // Also in the service's own log, which is shipped elsewhere: a copy an insider with only
    // the database cannot reach.
    tracing::info!(
        position = checkpoint.position,
        chain_hash = %checkpoint.chain_hash,
        key = %checkpoint.key_fingerprint,
        mac = %checkpoint.mac,
        "audit checkpoint signed"
    );
    Ok(Some(checkpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mac_covers_every_field_and_the_key() {
        let key = AuditKey::new([7; 32]);
        let at = DateTime::from_timestamp_micros(1_764_000_000_000_000).unwrap();
        let checkpoint = SignedCheckpoint {
            position: 42,
            chain_hash: "ab".repeat(32),
            signed_at: at,
            key_fingerprint: key.fingerprint(),
            mac: key.sign(42, &"ab".repeat(32), at),
        };
        assert!(key.verifies(&checkpoint));
        let changed = [
            SignedCheckpoint {
                position: 41,
                ..checkpoint.clone()
            },
            SignedCheckpoint {
                chain_hash: "cd".repeat(32),
                ..checkpoint.clone()
            },
            SignedCheckpoint {
                signed_at: at + Duration::seconds(1),
                ..checkpoint.clone()
            },
            SignedCheckpoint {
                mac: "00".repeat(32),
                ..checkpoint.clone()
            },
            SignedCheckpoint {
                mac: "not hex".into(),
                ..checkpoint.clone()
            },
        ];
        for (i, c) in changed.iter().enumerate() {
            assert!(!key.verifies(c), "change {i} must not verify");
        }
        assert!(!AuditKey::new([8; 32]).verifies(&checkpoint));
        assert_ne!(AuditKey::new([8; 32]).fingerprint(), key.fingerprint());
        assert_eq!(key.fingerprint().len(), 16);
    }
}
