//! `api_keys`: who may call, as what. Requests are checked against the key's SHA-256 here.

use spse_totp_domain::apikey::{ApiKeyEvent, Role};
use spse_totp_store::RecordedEvent;
use sqlx::AnyPool;
use uuid::Uuid;

use crate::event::Decoded;
use crate::projector::Projector;
use crate::sql;
use crate::statement::Statement;
use crate::time::to_db;

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

#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyRow {
    pub key_id: Uuid,
    pub name: String,
    pub role: Role,
}

pub async fn by_digest(pool: &AnyPool, key_sha256: &str) -> Result<Option<ApiKeyRow>, sqlx::Error> {
    let row: Option<(String, String, String)> =
        sqlx::query_as("SELECT key_id, name, role FROM api_keys WHERE key_sha256 = $1")
            .bind(key_sha256)
            .fetch_optional(pool)
            .await?;
    Ok(row.and_then(|(key_id, name, role)| {
        Some(ApiKeyRow {
            key_id: key_id.parse().ok()?,
            name,
            role: role.parse().ok()?,
        })
    }))
}
