//! `login_sessions`: every login and where it stands, for the portal's polling and the device's
//! list of logins waiting for it.

use chrono::{DateTime, Utc};
use spse_totp_domain::account::{LoginStage, LoginStatus};
use spse_totp_domain::{AccountEvent, LoginId};
use spse_totp_store::RecordedEvent;
use sqlx::AnyPool;

use crate::event::Decoded;
use crate::projector::Projector;
use crate::sql;
use crate::statement::Statement;
use crate::time::{to_db, MaybeMicros, Micros};

pub struct LoginSessionsProjector;

fn stage_str(stage: LoginStage) -> &'static str {
    match stage {
        LoginStage::Activation => "activation",
        LoginStage::Approval => "approval",
    }
}

impl Projector for LoginSessionsProjector {
    fn name(&self) -> &'static str {
        "login_sessions"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["login_sessions"]
    }

    fn project(&self, recorded: &RecordedEvent, decoded: &Decoded) -> Vec<Statement> {
        let Decoded::Account(key, event) = decoded else {
            return Vec::new();
        };
        let statement = match event {
            AccountEvent::LoginStarted { login_id, stage, expires_at, approval_number, client_ip, user_agent, at } => sql!(
                "INSERT INTO login_sessions (login_id, stream, user_type, user_id, stage, status, approval_number, \
                 client_ip, user_agent, started_at, expires_at, decided_at, method) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, NULL)",
                login_id.to_string(),
                recorded.stream.as_str(),
                key.user_type.as_str(),
                key.user_id.as_str(),
                stage_str(*stage),
                LoginStatus::pending_for(*stage).as_str(),
                approval_number.map(|n| i64::from(n.value())),
                client_ip.clone(),
                user_agent.clone(),
                to_db(*at),
                to_db(*expires_at),
            ),
            AccountEvent::LoginApproved { login_id, method, at, .. } => {
                decided(*login_id, LoginStatus::Approved, *at, Some(method.as_str()))
            }
            AccountEvent::LoginDenied { login_id, at, .. } => decided(*login_id, LoginStatus::Denied, *at, Some("device")),
            AccountEvent::LoginExpired { login_id, at } => decided(*login_id, LoginStatus::Expired, *at, None),
            AccountEvent::LoginCancelled { login_id, at, .. } => decided(*login_id, LoginStatus::Cancelled, *at, None),
            _ => return Vec::new(),
        };
        vec![statement]
    }
}

fn decided(
    login_id: LoginId,
    status: LoginStatus,
    at: DateTime<Utc>,
    method: Option<&str>,
) -> Statement {
    sql!(
        "UPDATE login_sessions SET status = $1, decided_at = $2, method = $3 WHERE login_id = $4",
        status.as_str(),
        to_db(at),
        method,
        login_id.to_string(),
    )
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct LoginRow {
    pub login_id: String,
    pub stream: String,
    pub user_type: String,
    pub user_id: String,
    pub stage: String,
    pub status: String,
    pub approval_number: Option<i64>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    #[sqlx(try_from = "Micros")]
    pub started_at: DateTime<Utc>,
    #[sqlx(try_from = "Micros")]
    pub expires_at: DateTime<Utc>,
    #[sqlx(try_from = "MaybeMicros")]
    pub decided_at: Option<DateTime<Utc>>,
    pub method: Option<String>,
}

impl LoginRow {
    /// The status as of `now`: a pending login past its time reads as expired even before the
    /// sweep records it, so no caller ever acts on a login that can no longer be approved.
    pub fn status_at(&self, now: DateTime<Utc>) -> &str {
        if self.is_pending() && self.expires_at <= now {
            LoginStatus::Expired.as_str()
        } else {
            &self.status
        }
    }

    pub fn is_pending(&self) -> bool {
        self.status == LoginStatus::AwaitingActivation.as_str()
            || self.status == LoginStatus::AwaitingApproval.as_str()
    }

    /// When its status last changed or will change by itself: for expired-by-time logins, the
    /// expiry instant.
    pub fn decided_at_as_of(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.is_pending() && self.expires_at <= now {
            Some(self.expires_at)
        } else {
            self.decided_at
        }
    }
}

const COLUMNS: &str =
    "SELECT login_id, stream, user_type, user_id, stage, status, approval_number, client_ip, \
     user_agent, started_at, expires_at, decided_at, method FROM login_sessions";

pub async fn get(pool: &AnyPool, login_id: LoginId) -> Result<Option<LoginRow>, sqlx::Error> {
    sqlx::query_as(&format!("{COLUMNS} WHERE login_id = $1"))
        .bind(login_id.to_string())
        .fetch_optional(pool)
        .await
}

/// Logins of an account still waiting for its device at `now`, oldest first.
pub async fn pending_approvals(
    pool: &AnyPool,
    stream: &str,
    now: DateTime<Utc>,
) -> Result<Vec<LoginRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{COLUMNS} WHERE stream = $1 AND status = 'awaiting_approval' AND expires_at > $2 ORDER BY started_at"
    ))
    .bind(stream)
    .bind(to_db(now))
    .fetch_all(pool)
    .await
}

/// Accounts with a pending login past its time: what the expiry sweep visits.
pub async fn streams_with_overdue(
    pool: &AnyPool,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT stream FROM login_sessions WHERE status IN ('awaiting_activation', 'awaiting_approval') \
         AND expires_at <= $1 LIMIT $2",
    )
    .bind(to_db(now))
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Every login of an account, oldest first: for the subject export.
pub async fn for_account(pool: &AnyPool, stream: &str) -> Result<Vec<LoginRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{COLUMNS} WHERE stream = $1 ORDER BY started_at, login_id"
    ))
    .bind(stream)
    .fetch_all(pool)
    .await
}

/// An account's most recent logins, newest first: what the helpdesk sees as "last logins".
pub async fn recent_for_account(
    pool: &AnyPool,
    stream: &str,
    limit: i64,
) -> Result<Vec<LoginRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{COLUMNS} WHERE stream = $1 ORDER BY started_at DESC, login_id DESC LIMIT $2"
    ))
    .bind(stream)
    .bind(limit)
    .fetch_all(pool)
    .await
}
