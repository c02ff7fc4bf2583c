//! `device_bindings`: the one active device of each account, and how a device token finds it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use spse_totp_commands::RecordedEvent;
use spse_totp_domain::{AccountEvent, AccountKey};
use sqlx::{AnyConnection, AnyPool};

use crate::event::Decoded;
use crate::projector::Projector;
use crate::time::{from_db, to_db};

pub struct DeviceBindingsProjector;

#[async_trait]
impl Projector for DeviceBindingsProjector {
    fn name(&self) -> &'static str {
        "device_bindings"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["device_bindings"]
    }

    async fn apply(
        &self,
        c: &mut AnyConnection,
        recorded: &RecordedEvent,
        decoded: &Decoded,
    ) -> Result<(), sqlx::Error> {
        let Decoded::Account(key, event) = decoded else {
            return Ok(());
        };
        match event {
            AccountEvent::TotpActivated {
                enrollment_id,
                device_id,
                device_label,
                platform,
                method,
                device_token_sha256,
                at,
                ..
            } => {
                sqlx::query(
                    "INSERT INTO device_bindings (stream, user_type, user_id, device_id, enrollment_id, label, platform, \
                     method, token_sha256, activated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                     ON CONFLICT (stream) DO UPDATE SET device_id = excluded.device_id, enrollment_id = excluded.enrollment_id, \
                     label = excluded.label, platform = excluded.platform, method = excluded.method, \
                     token_sha256 = excluded.token_sha256, activated_at = excluded.activated_at",
                )
                .bind(recorded.stream.as_str())
                .bind(key.user_type.as_str())
                .bind(key.user_id.as_str())
                .bind(device_id.to_string())
                .bind(enrollment_id.to_string())
                .bind(device_label.as_str())
                .bind(platform.clone())
                .bind(method.as_str())
                .bind(device_token_sha256.clone())
                .bind(to_db(*at))
                .execute(c)
                .await?;
            }
            AccountEvent::TotpDisabled { .. } => {
                sqlx::query("DELETE FROM device_bindings WHERE stream = $1")
                    .bind(recorded.stream.as_str())
                    .execute(c)
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRow {
    pub stream: String,
    pub device_id: String,
    pub label: String,
    pub platform: Option<String>,
    pub method: String,
    pub activated_at: DateTime<Utc>,
}

type Row = (String, String, String, Option<String>, String, i64);

fn row(r: Row) -> DeviceRow {
    let (stream, device_id, label, platform, method, activated_at) = r;
    DeviceRow {
        stream,
        device_id,
        label,
        platform,
        method,
        activated_at: from_db(activated_at),
    }
}

const COLUMNS: &str =
    "SELECT stream, device_id, label, platform, method, activated_at FROM device_bindings";

pub async fn for_account(
    pool: &AnyPool,
    key: &AccountKey,
) -> Result<Option<DeviceRow>, sqlx::Error> {
    let r: Option<Row> = sqlx::query_as(&format!("{COLUMNS} WHERE stream = $1"))
        .bind(key.stream_name())
        .fetch_optional(pool)
        .await?;
    Ok(r.map(row))
}

/// The device a token was issued to, by the token's SHA-256.
pub async fn by_token(
    pool: &AnyPool,
    token_sha256: &str,
) -> Result<Option<DeviceRow>, sqlx::Error> {
    let r: Option<Row> = sqlx::query_as(&format!("{COLUMNS} WHERE token_sha256 = $1"))
        .bind(token_sha256)
        .fetch_optional(pool)
        .await?;
    Ok(r.map(row))
}
