//! `device_bindings`: the one active device of each account, and how a device token finds it.

use chrono::{DateTime, Utc};
use spse_totp_domain::{AccountEvent, AccountKey};
use spse_totp_store::RecordedEvent;
use sqlx::AnyPool;

use crate::event::Decoded;
use crate::projector::Projector;
use crate::sql;
use crate::statement::Statement;
use crate::time::{to_db, Micros};

pub struct DeviceBindingsProjector;

impl Projector for DeviceBindingsProjector {
    fn name(&self) -> &'static str {
        "device_bindings"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["device_bindings"]
    }

    fn project(&self, recorded: &RecordedEvent, decoded: &Decoded) -> Vec<Statement> {
        let Decoded::Account(key, event) = decoded else {
            return Vec::new();
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
            } => vec![sql!(
                "INSERT INTO device_bindings (stream, user_type, user_id, device_id, enrollment_id, label, platform, \
                 method, token_sha256, activated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (stream) DO UPDATE SET device_id = excluded.device_id, enrollment_id = excluded.enrollment_id, \
                 label = excluded.label, platform = excluded.platform, method = excluded.method, \
                 token_sha256 = excluded.token_sha256, activated_at = excluded.activated_at",
                recorded.stream.as_str(),
                key.user_type.as_str(),
                key.user_id.as_str(),
                device_id.to_string(),
                enrollment_id.to_string(),
                device_label.as_str(),
                platform.clone(),
                method.as_str(),
                device_token_sha256.clone(),
                to_db(*at),
            )],
            AccountEvent::TotpDisabled { .. } | AccountEvent::TotpReset { .. } => {
                vec![sql!("DELETE FROM device_bindings WHERE stream = $1", recorded.stream.as_str())]
            }
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DeviceRow {
    pub stream: String,
    pub device_id: String,
    pub label: String,
    pub platform: Option<String>,
    pub method: String,
    #[sqlx(try_from = "Micros")]
    pub activated_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "SELECT stream, device_id, label, platform, method, activated_at FROM device_bindings";

pub async fn for_account(
    pool: &AnyPool,
    key: &AccountKey,
) -> Result<Option<DeviceRow>, sqlx::Error> {
    sqlx::query_as(&format!("{COLUMNS} WHERE stream = $1"))
        .bind(key.stream_name())
        .fetch_optional(pool)
        .await
}

/// The device a token was issued to, by the token's SHA-256.
pub async fn by_token(
    pool: &AnyPool,
    token_sha256: &str,
) -> Result<Option<DeviceRow>, sqlx::Error> {
    sqlx::query_as(&format!("{COLUMNS} WHERE token_sha256 = $1"))
        .bind(token_sha256)
        .fetch_optional(pool)
        .await
}
