//! `api_keys`: who may call, as what. Requests are checked against the key's SHA-256 here.

use async_trait::async_trait;
use spse_totp_commands::RecordedEvent;
use spse_totp_domain::apikey::{ApiKeyEvent, Role};
use sqlx::{AnyConnection, AnyPool};
use uuid::Uuid;

use crate::event::Decoded;
use crate::projector::Projector;
use crate::time::to_db;

pub struct ApiKeysProjector;

#[async_trait]
impl Projector for ApiKeysProjector {
    fn name(&self) -> &'static str {
        "api_keys"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["api_keys"]
    }

    async fn apply(
        &self,
        c: &mut AnyConnection,
        _recorded: &RecordedEvent,
        decoded: &Decoded,
    ) -> Result<(), sqlx::Error> {
        let Decoded::ApiKey(ApiKeyEvent::ApiKeyCreated {
            key_id,
            name,
            role,
            key_sha256,
            at,
        }) = decoded
        else {
            return Ok(());
        };
        sqlx::query("INSERT INTO api_keys (key_id, name, role, key_sha256, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(key_id.to_string())
            .bind(name.as_str())
            .bind(role.as_str())
            .bind(key_sha256.as_str())
            .bind(to_db(*at))
            .execute(c)
            .await?;
        Ok(())
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
