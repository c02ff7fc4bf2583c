//! `accounts`: one row per account, what the portal and the helpdesk read about it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use spse_totp_commands::RecordedEvent;
use spse_totp_domain::{AccountEvent, AccountKey};
use sqlx::{AnyConnection, AnyPool};

use crate::event::Decoded;
use crate::projector::Projector;
use crate::time::{from_db, to_db};

pub struct AccountsProjector;

#[async_trait]
impl Projector for AccountsProjector {
    fn name(&self) -> &'static str {
        "accounts"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["accounts"]
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
        let stream = recorded.stream.as_str();
        let at = to_db(recorded.recorded_at);
        match event {
            AccountEvent::AccountRegistered { email, name, .. } => {
                sqlx::query(
                    "INSERT INTO accounts (stream, user_type, user_id, email, name, totp_status, failed_attempts, \
                     locked_until, registered_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'inactive', 0, NULL, $6, $6)",
                )
                .bind(stream)
                .bind(key.user_type.as_str())
                .bind(key.user_id.as_str())
                .bind(email.clone())
                .bind(name.clone())
                .bind(at)
                .execute(c)
                .await?;
            }
            AccountEvent::ProfileUpdated { email, name } => {
                sqlx::query(
                    "UPDATE accounts SET email = COALESCE($1, email), name = COALESCE($2, name), updated_at = $3 WHERE stream = $4",
                )
                .bind(email.clone())
                .bind(name.clone())
                .bind(at)
                .bind(stream)
                .execute(c)
                .await?;
            }
            AccountEvent::TotpActivated { .. } => {
                set(
                    c,
                    stream,
                    "totp_status = 'active', failed_attempts = 0, locked_until = NULL",
                    at,
                )
                .await?
            }
            AccountEvent::TotpDisabled { .. } => {
                set(c, stream, "totp_status = 'disabled'", at).await?
            }
            AccountEvent::LoginApproved { .. } => {
                set(c, stream, "failed_attempts = 0, locked_until = NULL", at).await?
            }
            AccountEvent::CodeRejected {
                failed_attempts, ..
            } => {
                sqlx::query(
                    "UPDATE accounts SET failed_attempts = $1, updated_at = $2 WHERE stream = $3",
                )
                .bind(i64::from(*failed_attempts))
                .bind(at)
                .bind(stream)
                .execute(c)
                .await?;
            }
            AccountEvent::AccountLocked { until, .. } => {
                sqlx::query("UPDATE accounts SET failed_attempts = 0, locked_until = $1, updated_at = $2 WHERE stream = $3")
                    .bind(to_db(*until))
                    .bind(at)
                    .bind(stream)
                    .execute(c)
                    .await?;
            }
            AccountEvent::EnrollmentStarted { .. }
            | AccountEvent::LoginStarted { .. }
            | AccountEvent::LoginDenied { .. }
            | AccountEvent::LoginExpired { .. }
            | AccountEvent::LoginCancelled { .. } => {}
        }
        Ok(())
    }
}

async fn set(
    c: &mut AnyConnection,
    stream: &str,
    assignments: &'static str,
    at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "UPDATE accounts SET {assignments}, updated_at = $1 WHERE stream = $2"
    ))
    .bind(at)
    .bind(stream)
    .execute(c)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccountRow {
    pub user_type: String,
    pub user_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub totp_status: String,
    pub failed_attempts: i64,
    pub locked_until: Option<DateTime<Utc>>,
    pub registered_at: DateTime<Utc>,
}

impl AccountRow {
    /// The lock, if it still holds at `now`.
    pub fn locked_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.locked_until.filter(|until| *until > now)
    }
}

type Row = (
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    i64,
    Option<i64>,
    i64,
);

pub async fn get(pool: &AnyPool, key: &AccountKey) -> Result<Option<AccountRow>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT user_type, user_id, email, name, totp_status, failed_attempts, locked_until, registered_at \
         FROM accounts WHERE stream = $1",
    )
    .bind(key.stream_name())
    .fetch_optional(pool)
    .await?;
    Ok(row.map(
        |(
            user_type,
            user_id,
            email,
            name,
            totp_status,
            failed_attempts,
            locked_until,
            registered_at,
        )| AccountRow {
            user_type,
            user_id,
            email,
            name,
            totp_status,
            failed_attempts,
            locked_until: locked_until.map(from_db),
            registered_at: from_db(registered_at),
        },
    ))
}
