//! `api_keys`: who may call, as what, until when. Requests are checked against the key's
//! SHA-256 here. Beside it, `api_key_usage` holds when each key last authorised a call: written
//! by the API (not a projector), read with the keys for their listing.

use chrono::{DateTime, Utc};
use spse_totp_domain::apikey::{ApiKeyEvent, Role};
use spse_totp_store::{Database, RecordedEvent};
use sqlx::AnyPool;
use uuid::Uuid;

use crate::event::Decoded;
use crate::projector::Projector;
use crate::sql;
use crate::statement::Statement;
use crate::time::{to_db, MaybeMicros, Micros};

pub struct ApiKeysProjector;

impl Projector for ApiKeysProjector {
    fn name(&self) -> &'static str {
        "api_keys"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["api_keys"]
    }

    fn project(&self, _recorded: &RecordedEvent, decoded: &Decoded) -> Vec<Statement> {
        match decoded {
            Decoded::ApiKey(ApiKeyEvent::ApiKeyCreated {
                key_id,
                name,
                role,
                key_sha256,
                at,
                expires_at,
            }) => vec![sql!(
                "INSERT INTO api_keys (key_id, name, role, key_sha256, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                key_id.to_string(),
                name.as_str(),
                role.as_str(),
                key_sha256.as_str(),
                to_db(*at),
                expires_at.map(to_db),
            )],
            Decoded::ApiKey(ApiKeyEvent::ApiKeyRevoked { key_id, at }) => vec![sql!(
                "UPDATE api_keys SET revoked_at = $1 WHERE key_id = $2",
                to_db(*at),
                key_id.to_string(),
            )],
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ApiKeyRow {
    #[sqlx(try_from = "String")]
    pub key_id: Uuid,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    #[sqlx(try_from = "MaybeMicros")]
    pub expires_at: Option<DateTime<Utc>>,
    #[sqlx(try_from = "MaybeMicros")]
    pub revoked_at: Option<DateTime<Utc>>,
}

pub async fn by_digest(pool: &AnyPool, key_sha256: &str) -> Result<Option<ApiKeyRow>, sqlx::Error> {
    match sqlx::query_as(
        "SELECT key_id, name, role, expires_at, revoked_at FROM api_keys WHERE key_sha256 = $1",
    )
    .bind(key_sha256)
    .fetch_optional(pool)
    .await
    {
        // A row that does not read as a key authorises nobody, as an absent one.
        Err(sqlx::Error::ColumnDecode { .. }) => Ok(None),
        answer => answer,
    }
}

/// A key as an admin lists it: never the key, nor its digest.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ApiKeyListing {
    #[sqlx(try_from = "String")]
    pub key_id: Uuid,
    pub name: String,
    pub role: String,
    #[sqlx(try_from = "Micros")]
    pub created_at: DateTime<Utc>,
    #[sqlx(try_from = "MaybeMicros")]
    pub last_used_at: Option<DateTime<Utc>>,
    #[sqlx(try_from = "MaybeMicros")]
    pub expires_at: Option<DateTime<Utc>>,
    #[sqlx(try_from = "MaybeMicros")]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Every key, newest first.
pub async fn list(pool: &AnyPool) -> Result<Vec<ApiKeyListing>, sqlx::Error> {
    sqlx::query_as(
        "SELECT k.key_id, k.name, k.role, k.created_at, u.last_used_at, k.expires_at, k.revoked_at \
         FROM api_keys k LEFT JOIN api_key_usage u ON u.key_id = k.key_id \
         ORDER BY k.created_at DESC, k.key_id",
    )
    .fetch_all(pool)
    .await
}

/// Records that `key_id` authorised a call at `at`. A later time never goes back: two instances
/// (or a clock moved by a test) may write out of order. Written in the process's write turn, as
/// every write is: on SQLite a write beside the event writer would meet SQLite's busy wait and
/// stall the appends queued behind it.
pub async fn record_use(db: &Database, key_id: Uuid, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    let pool = db.write().await;
    sqlx::query(
        "INSERT INTO api_key_usage (key_id, last_used_at) VALUES ($1, $2) \
         ON CONFLICT (key_id) DO UPDATE SET last_used_at = excluded.last_used_at \
         WHERE api_key_usage.last_used_at < excluded.last_used_at",
    )
    .bind(key_id.to_string())
    .bind(to_db(at))
    .execute(&*pool)
    .await
    .map(|_| ())
}
