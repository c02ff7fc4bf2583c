//! Reactions to time rather than to one event: recording logins that ran out of time (so the
//! audit trail and the device list say so) and destroying the sealed secrets of QR codes never
//! scanned or left behind by a disable or reset whose delete failed. They read the read models and write through the store's port (see [`reaction`]),
//! never through the command handlers; the API runs them under the log follower's `sweeps`
//! leadership, so on PostgreSQL one instance sweeps.

use chrono::{DateTime, Utc};
use spse_totp_domain::{AccountCommand, AccountKey, Policy};
use spse_totp_store::{Database, EventMetadata};

use crate::login_sessions;
use crate::reaction::{self, ReactionError};

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("sweep database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Reaction(#[from] ReactionError),
}

/// What one expiry sweep did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expired {
    /// Accounts whose overdue logins were recorded as expired.
    pub accounts: usize,
    /// The last position appended, for a caller that reads its own writes.
    pub position: Option<u64>,
}

/// Records the expiry of up to `limit` accounts' overdue logins.
pub async fn expire_logins(
    db: &Database,
    now: DateTime<Utc>,
    policy: &Policy,
    limit: i64,
) -> Result<Expired, SweepError> {
    let streams = login_sessions::streams_with_overdue(&db.pool, now, limit).await?;
    let mut expired = Expired::default();
    for stream in streams {
        let Some(key) = AccountKey::from_stream_name(&stream) else {
            continue;
        };
        let position = reaction::record(
            &*db.events,
            &key,
            &AccountCommand::ExpireStaleLogins,
            &EventMetadata::system(),
            now,
            policy,
        )
        .await?;
        if position.is_some() {
            expired.accounts += 1;
            expired.position = expired.position.max(position);
        }
    }
    Ok(expired)
}

/// Destroys the sealed secrets of up to `limit` enrollments whose QR expired before `now` and
/// that no account uses; keeps (past any expiry) the ones an account activated. Also finds the
/// secrets a disable or reset should have destroyed but could not (the delete after the commit
/// failed): kept rows of accounts whose device binding names another enrollment, or none.
/// Returns how many it destroyed.
pub async fn sweep_vault(
    db: &Database,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<usize, SweepError> {
    let mut candidates: Vec<(String, String)> = sqlx::query_as(
        "SELECT enrollment_id, stream FROM vault_secrets WHERE expires_at < $1 ORDER BY expires_at LIMIT $2",
    )
    .bind(now.timestamp_micros())
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    // Kept rows are the activated secrets; each should be its account's bound device. One that
    // is not is either left over (destroyed by the log, still in the table) or activated so
    // recently that the binding is not projected yet: the account's own stream, read below,
    // tells the two apart. Operators' secrets live in other streams and are not looked at.
    let orphans: Vec<(String, String)> = sqlx::query_as(
        "SELECT v.enrollment_id, v.stream FROM vault_secrets v \
         WHERE v.expires_at = $1 AND v.stream LIKE 'account-%' AND NOT EXISTS \
         (SELECT 1 FROM device_bindings d WHERE d.stream = v.stream AND d.enrollment_id = v.enrollment_id) \
         LIMIT $2",
    )
    .bind(i64::MAX)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    candidates.extend(orphans);
    let expired = candidates;
    let mut destroyed = 0;
    for (enrollment_id, stream) in expired {
        let in_use = match AccountKey::from_stream_name(&stream) {
            Some(key) => {
                let (account, _) = reaction::load(&*db.events, &key).await?;
                account
                    .device
                    .as_ref()
                    .is_some_and(|d| d.enrollment_id.to_string() == enrollment_id)
            }
            None => false,
        };
        let pool = db.write().await;
        if in_use {
            sqlx::query("UPDATE vault_secrets SET expires_at = $1 WHERE enrollment_id = $2")
                .bind(i64::MAX)
                .bind(&enrollment_id)
                .execute(&*pool)
                .await?;
        } else {
            sqlx::query("DELETE FROM vault_secrets WHERE enrollment_id = $1")
                .bind(&enrollment_id)
                .execute(&*pool)
                .await?;
            destroyed += 1;
        }
    }
    Ok(destroyed)
}
