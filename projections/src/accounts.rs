//! `accounts`: one row per account, what the portal and the helpdesk read about it.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use spse_totp_domain::{AccountEvent, AccountKey};
use spse_totp_store::RecordedEvent;
use sqlx::AnyPool;

use crate::event::Decoded;
use crate::projector::Projector;
use crate::sql;
use crate::statement::{rows_in_chunks, SqlValue, Statement};
use crate::time::{to_db, MaybeMicros, Micros};

pub struct AccountsProjector;

impl Projector for AccountsProjector {
    fn name(&self) -> &'static str {
        "accounts"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["accounts"]
    }

    fn project(&self, recorded: &RecordedEvent, decoded: &Decoded) -> Vec<Statement> {
        let Decoded::Account(key, event) = decoded else {
            return Vec::new();
        };
        let stream = recorded.stream.as_str();
        let at = to_db(recorded.recorded_at);
        let set = |assignments: &'static str| {
            sql!(
                format!("UPDATE accounts SET {assignments}, updated_at = $1 WHERE stream = $2"),
                at,
                stream
            )
        };
        let statement = match event {
            AccountEvent::AccountRegistered { email, name, .. } => sql!(
                "INSERT INTO accounts (stream, user_type, user_id, email, name, totp_status, failed_attempts, \
                 locked_until, registered_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'inactive', 0, NULL, $6, $6)",
                stream,
                key.user_type.as_str(),
                key.user_id.as_str(),
                email.clone(),
                name.clone(),
                at,
            ),
            AccountEvent::ProfileUpdated { email, name } => sql!(
                "UPDATE accounts SET email = COALESCE($1, email), name = COALESCE($2, name), updated_at = $3 WHERE stream = $4",
                email.clone(),
                name.clone(),
                at,
                stream,
            ),
            AccountEvent::TotpActivated { .. } => set("totp_status = 'active', failed_attempts = 0, locked_until = NULL, locked_until_unlock = 0"),
            AccountEvent::TotpDisabled { .. } => set("totp_status = 'disabled'"),
            AccountEvent::TotpReset { .. } => set("totp_status = 'inactive'"),
            AccountEvent::AccountUnlocked { .. } => set("failed_attempts = 0, locked_until = NULL, locked_until_unlock = 0"),
            AccountEvent::LoginApproved { .. } => {
                return cleared(vec![vec![SqlValue::from(stream), SqlValue::from(at)]]);
            }
            AccountEvent::CodeRejected { failed_attempts, .. } => sql!(
                "UPDATE accounts SET failed_attempts = $1, updated_at = $2 WHERE stream = $3",
                i64::from(*failed_attempts),
                at,
                stream,
            ),
            AccountEvent::AccountLocked { until, until_unlock, .. } => sql!(
                "UPDATE accounts SET failed_attempts = 0, locked_until = $1, locked_until_unlock = $2, updated_at = $3 \
                 WHERE stream = $4",
                to_db(*until),
                i64::from(*until_unlock),
                at,
                stream,
            ),
            AccountEvent::EnrollmentStarted { .. }
            | AccountEvent::LoginStarted { .. }
            | AccountEvent::LoginDenied { .. }
            | AccountEvent::LoginExpired { .. }
            | AccountEvent::LoginCancelled { .. }
            | AccountEvent::ResetRequested { .. }
            | AccountEvent::ResetRequestDeclined { .. }
            | AccountEvent::ResetEmailSent { .. }
            | AccountEvent::ResetEmailFailed { .. }
            | AccountEvent::NoticeEmailSent { .. }
            | AccountEvent::NoticeEmailFailed { .. } => return Vec::new(),
        };
        vec![statement]
    }

    /// Approvals in a row, whatever other accounts' events that write nothing here come between
    /// them, clear their accounts in one statement instead of one each: an approval is most of
    /// what a group of logins writes to this table. Of two approvals of one account in a run
    /// the first clears and stamps the row, and the second would find nothing to clear, so the
    /// run keeps each account's first.
    fn project_batch(&self, events: &[(&RecordedEvent, &Decoded)]) -> Vec<Statement> {
        let mut statements = Vec::new();
        let mut run: Vec<Vec<SqlValue>> = Vec::new();
        let mut in_run = HashSet::new();
        for (recorded, decoded) in events {
            if let Decoded::Account(_, AccountEvent::LoginApproved { .. }) = decoded {
                if in_run.insert(recorded.stream.as_str()) {
                    run.push(vec![
                        SqlValue::from(recorded.stream.as_str()),
                        SqlValue::from(to_db(recorded.recorded_at)),
                    ]);
                }
                continue;
            }
            let written = self.project(recorded, decoded);
            if !written.is_empty() {
                statements.extend(cleared(std::mem::take(&mut run)));
                in_run.clear();
            }
            statements.extend(written);
        }
        statements.extend(cleared(run));
        statements
    }
}

/// A success clears the failure count and any lock of each `(stream, at)` row; an account with
/// nothing to clear is not written.
fn cleared(approvals: Vec<Vec<SqlValue>>) -> Vec<Statement> {
    rows_in_chunks(
        "UPDATE accounts SET failed_attempts = 0, locked_until = NULL, locked_until_unlock = 0, \
         updated_at = v.column2 FROM (VALUES",
        "(?, ?)",
        ") AS v WHERE accounts.stream = v.column1 \
         AND (accounts.failed_attempts <> 0 OR accounts.locked_until IS NOT NULL)",
        approvals,
    )
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AccountRow {
    pub user_type: String,
    pub user_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub totp_status: String,
    pub failed_attempts: i64,
    #[sqlx(try_from = "MaybeMicros")]
    pub locked_until: Option<DateTime<Utc>>,
    #[sqlx(try_from = "Micros")]
    pub registered_at: DateTime<Utc>,
    /// 1 while only a helpdesk unlock lifts the lock.
    pub locked_until_unlock: i64,
}

impl AccountRow {
    /// The lock, if it still holds at `now`.
    pub fn locked_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.locked_until.filter(|until| *until > now)
    }

    pub fn is_locked_until_unlock(&self) -> bool {
        self.locked_until_unlock != 0
    }
}

pub async fn get(pool: &AnyPool, key: &AccountKey) -> Result<Option<AccountRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT user_type, user_id, email, name, totp_status, failed_attempts, locked_until, registered_at, \
         locked_until_unlock \
         FROM accounts WHERE stream = $1",
    )
    .bind(key.stream_name())
    .fetch_optional(pool)
    .await
}

/// One line of the console's account search: the account, its lock and its device's label.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AccountMatch {
    pub user_type: String,
    pub user_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub totp_status: String,
    #[sqlx(try_from = "MaybeMicros")]
    pub locked_until: Option<DateTime<Utc>>,
    pub device_label: Option<String>,
}

/// Accounts whose User ID starts with `user_id_prefix` (upper-cased, as stored), whose email
/// is `email` (case-insensitive), of `user_type`; each filter only when given. At most `limit`.
pub async fn search(
    pool: &AnyPool,
    user_id_prefix: Option<&str>,
    email: Option<&str>,
    user_type: Option<&str>,
    limit: i64,
) -> Result<Vec<AccountMatch>, sqlx::Error> {
    // LIKE's own wildcards in the prefix are escaped, so "A_" finds "A_..." only.
    let prefix = user_id_prefix.map(|p| {
        let escaped = p
            .to_uppercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("{escaped}%")
    });
    sqlx::query_as(
        "SELECT a.user_type, a.user_id, a.email, a.name, a.totp_status, a.locked_until, d.label AS device_label \
         FROM accounts a LEFT JOIN device_bindings d ON d.stream = a.stream \
         WHERE ($1 IS NULL OR a.user_id LIKE $1 ESCAPE '\\') \
           AND ($2 IS NULL OR LOWER(a.email) = LOWER($2)) \
           AND ($3 IS NULL OR a.user_type = $3) \
         ORDER BY a.user_id, a.user_type LIMIT $4",
    )
    .bind(prefix)
    .bind(email)
    .bind(user_type)
    .bind(limit)
    .fetch_all(pool)
    .await
}
