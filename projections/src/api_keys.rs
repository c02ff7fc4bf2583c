//! `api_keys`: who may call, as what. Requests are checked against the key's SHA-256 here.

use chrono::{DateTime, Utc};
use spse_totp_domain::apikey::{ApiKeyEvent, Role};
use spse_totp_store::RecordedEvent;
use sqlx::AnyPool;
use uuid::Uuid;

use crate::event::Decoded;
use crate::projector::Projector;
use crate::sql;
use crate::statement::Statement;
use crate::time::{to_db, Micros};

pub struct ApiKeysProjector;

impl Projector for ApiKeysProjector {
    fn name(&self) -> &'static str {
        "api_keys"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["api_keys"]
    }

    fn project(&self, _recorded: &RecordedEvent, decoded: &Decoded) -> Vec<Statement> {
        let Decoded::ApiKey(ApiKeyEvent::ApiKeyCreated {
            key_id,
            name,
            role,
            key_sha256,
            at,
        }) = decoded
        else {
            return Vec::new();
        };
        vec![sql!(
            "INSERT INTO api_keys (key_id, name, role, key_sha256, created_at) VALUES ($1, $2, $3, $4, $5)",
            key_id.to_string(),
            name.as_str(),
            role.as_str(),
            key_sha256.as_str(),
            to_db(*at),
        )]
    }
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ApiKeyRow {
    #[sqlx(try_from = "String")]
    pub key_id: Uuid,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
}

pub async fn by_digest(pool: &AnyPool, key_sha256: &str) -> Result<Option<ApiKeyRow>, sqlx::Error> {
    match sqlx::query_as("SELECT key_id, name, role FROM api_keys WHERE key_sha256 = $1")
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
}

/// Every key, newest first.
pub async fn list(pool: &AnyPool) -> Result<Vec<ApiKeyListing>, sqlx::Error> {
    sqlx::query_as(
        "SELECT key_id, name, role, created_at FROM api_keys ORDER BY created_at DESC, key_id",
    )
    .fetch_all(pool)
    .await
}
