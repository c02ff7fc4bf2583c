//! `reset_requests`: one row per emailed reset link — when and from where it was asked, whether
//! it is still pending, was used or replaced, and what became of its email. The helpdesk reads it
//! to answer "I never got the email" (FAQ 5). The link's token is not here: it is never stored.

use chrono::{DateTime, Utc};
use spse_totp_domain::account::ResetBy;
use spse_totp_domain::{AccountEvent, AccountKey};
use spse_totp_store::RecordedEvent;
use sqlx::AnyPool;

use crate::event::Decoded;
use crate::projector::Projector;
use crate::sql;
use crate::statement::Statement;
use crate::time::{to_db, MaybeMicros, Micros};

pub struct ResetRequestsProjector;

impl Projector for ResetRequestsProjector {
    fn name(&self) -> &'static str {
        "reset_requests"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["reset_requests"]
    }

    fn project(&self, recorded: &RecordedEvent, decoded: &Decoded) -> Vec<Statement> {
        let Decoded::Account(key, event) = decoded else {
            return Vec::new();
        };
        let stream = recorded.stream.as_str();
        // Whatever ends every pending link of the account: a newer request, an activation, a
        // disable or a reset.
        let supersede = |at: DateTime<Utc>| {
            sql!(
                "UPDATE reset_requests SET status = 'superseded', decided_at = $1 WHERE stream = $2 AND status = 'pending'",
                to_db(at),
                stream,
            )
        };
        match event {
            AccountEvent::ResetRequested {
                request_id,
                email,
                client_ip,
                expires_at,
                at,
            } => vec![
                supersede(*at),
                sql!(
                    "INSERT INTO reset_requests (request_id, stream, user_type, user_id, email, client_ip, requested_at, \
                     expires_at, status, decided_at, email_status, email_attempts, email_error, email_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', NULL, 'queued', 0, NULL, NULL)",
                    request_id.to_string(),
                    stream,
                    key.user_type.as_str(),
                    key.user_id.as_str(),
                    email.as_str(),
                    client_ip.clone(),
                    to_db(*at),
                    to_db(*expires_at),
                ),
            ],
            AccountEvent::TotpReset { by, at, .. } => {
                let mut statements = Vec::new();
                if let ResetBy::Link { request_id } = by {
                    statements.push(sql!(
                        "UPDATE reset_requests SET status = 'used', decided_at = $1 WHERE request_id = $2",
                        to_db(*at),
                        request_id.to_string(),
                    ));
                }
                statements.push(supersede(*at));
                statements
            }
            AccountEvent::TotpActivated { at, .. } | AccountEvent::TotpDisabled { at, .. } => {
                vec![supersede(*at)]
            }
            AccountEvent::ResetEmailSent { request_id, at, .. } => vec![sql!(
                "UPDATE reset_requests SET email_status = 'sent', email_attempts = email_attempts + 1, \
                 email_error = NULL, email_at = $1 WHERE request_id = $2",
                to_db(*at),
                request_id.to_string(),
            )],
            AccountEvent::ResetEmailFailed {
                request_id,
                attempt,
                error,
                retry_at,
                at,
            } => vec![sql!(
                "UPDATE reset_requests SET email_status = $1, email_attempts = $2, email_error = $3, email_at = $4 \
                 WHERE request_id = $5",
                if retry_at.is_some() { "retrying" } else { "failed" },
                i64::from(*attempt),
                error.as_str(),
                to_db(*at),
                request_id.to_string(),
            )],
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ResetRequestRow {
    pub request_id: String,
    pub email: String,
    pub client_ip: Option<String>,
    #[sqlx(try_from = "Micros")]
    pub requested_at: DateTime<Utc>,
    #[sqlx(try_from = "Micros")]
    pub expires_at: DateTime<Utc>,
    /// `pending`, `used` or `superseded`.
    pub status: String,
    #[sqlx(try_from = "MaybeMicros")]
    pub decided_at: Option<DateTime<Utc>>,
    /// `queued`, `sent`, `retrying` or `failed`.
    pub email_status: String,
    pub email_attempts: i64,
    pub email_error: Option<String>,
    #[sqlx(try_from = "MaybeMicros")]
    pub email_at: Option<DateTime<Utc>>,
}

impl ResetRequestRow {
    /// The status as of `now`: a pending link past its time reads as expired.
    pub fn status_at(&self, now: DateTime<Utc>) -> &str {
        if self.status == "pending" && self.expires_at <= now {
            "expired"
        } else {
            &self.status
        }
    }
}

const COLUMNS: &str =
    "SELECT request_id, email, client_ip, requested_at, expires_at, status, decided_at, \
     email_status, email_attempts, email_error, email_at FROM reset_requests";

/// An account's most recent reset requests, newest first.
pub async fn recent_for_account(
    pool: &AnyPool,
    key: &AccountKey,
    limit: i64,
) -> Result<Vec<ResetRequestRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{COLUMNS} WHERE stream = $1 ORDER BY requested_at DESC, request_id DESC LIMIT $2"
    ))
    .bind(key.stream_name())
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// The account a reset request belongs to.
pub async fn account_of(
    pool: &AnyPool,
    request_id: &str,
) -> Result<Option<AccountKey>, sqlx::Error> {
    let stream: Option<String> =
        sqlx::query_scalar("SELECT stream FROM reset_requests WHERE request_id = $1")
            .bind(request_id)
            .fetch_optional(pool)
            .await?;
    Ok(stream.and_then(|s| AccountKey::from_stream_name(&s)))
}
