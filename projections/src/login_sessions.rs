//! `login_sessions`: every login and where it stands, for the portal's polling and the device's
//! list of logins waiting for it.

use chrono::{DateTime, Utc};
use spse_totp_domain::account::{LoginStage, LoginStatus, Method};
use spse_totp_domain::{AccountEvent, AccountKey, LoginId};
use spse_totp_store::RecordedEvent;
use sqlx::AnyPool;
use uuid::Uuid;

use crate::event::Decoded;
use crate::projector::Projector;
use crate::statement::{insert_with_terms, rows_in_chunks, Column, SqlValue, Statement};
use crate::time::{to_db, MaybeMicros, Micros};

type AnyQuery<'q> = sqlx::query::QueryAs<'q, sqlx::Any, StoredLogin, sqlx::any::AnyArguments<'q>>;

pub struct LoginSessionsProjector;

// How stage, status and method are stored: one-byte codes instead of their names, the same on
// both engines. The migration `*_lean_login_sessions.sql` converted old rows with these codes,
// and the partial index `login_sessions_pending_expiry` names the pending ones: a code never
// changes meaning.
fn stage_code(stage: LoginStage) -> i64 {
    match stage {
        LoginStage::Activation => 0,
        LoginStage::Approval => 1,
    }
}

fn status_code(status: LoginStatus) -> i64 {
    match status {
        LoginStatus::AwaitingActivation => 0,
        LoginStatus::AwaitingApproval => 1,
        LoginStatus::Approved => 2,
        LoginStatus::Denied => 3,
        LoginStatus::Expired => 4,
        LoginStatus::Cancelled => 5,
    }
}

fn method_code(method: Method) -> i64 {
    match method {
        Method::Code => 0,
        Method::Device => 1,
    }
}

/// The pending statuses' codes, spelled as the partial index `login_sessions_pending_expiry`
/// spells them: a query must say the same for the planner to use it.
const PENDING: &str = "(0, 1)";

const STAGES: [LoginStage; 2] = [LoginStage::Activation, LoginStage::Approval];
const STATUSES: [LoginStatus; 6] = [
    LoginStatus::AwaitingActivation,
    LoginStatus::AwaitingApproval,
    LoginStatus::Approved,
    LoginStatus::Denied,
    LoginStatus::Expired,
    LoginStatus::Cancelled,
];
const METHODS: [Method; 2] = [Method::Code, Method::Device];

/// The value a stored code stands for.
fn decode<T: Copy>(
    all: &[T],
    code_of: fn(T) -> i64,
    code: i64,
    column: &str,
) -> Result<T, sqlx::Error> {
    all.iter()
        .copied()
        .find(|v| code_of(*v) == code)
        .ok_or_else(|| {
            sqlx::Error::Decode(format!("login_sessions.{column}: no code {code}").into())
        })
}

fn stage_str(stage: LoginStage) -> &'static str {
    match stage {
        LoginStage::Activation => "activation",
        LoginStage::Approval => "approval",
    }
}

/// A login id as stored: its 16 bytes.
fn id_bytes(login_id: LoginId) -> Vec<u8> {
    login_id.0.as_bytes().to_vec()
}

impl Projector for LoginSessionsProjector {
    fn name(&self) -> &'static str {
        "login_sessions"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["login_sessions"]
    }

    fn project(&self, recorded: &RecordedEvent, decoded: &Decoded) -> Vec<Statement> {
        self.project_batch(&[(recorded, decoded)])
    }

    /// The batch's new logins go in together, their strings given term ids first; then the
    /// decisions, together too. A decision names its login by id, and a login is started before
    /// it is decided, so writing the batch's starts first changes no decision's row. Each
    /// decision overwrites its login's whole outcome, so of two for one login (the domain makes
    /// none) the later is all that one after the other would leave.
    fn project_batch(&self, events: &[(&RecordedEvent, &Decoded)]) -> Vec<Statement> {
        let mut started = Vec::new();
        let mut decisions = Vec::new();
        for (recorded, decoded) in events {
            let Decoded::Account(_, event) = decoded else {
                continue;
            };
            match event {
                AccountEvent::LoginStarted {
                    login_id,
                    stage,
                    expires_at,
                    approval_number,
                    client_ip,
                    user_agent,
                    at,
                } => started.push(NewLogin {
                    login_id: *login_id,
                    stream: recorded.stream.clone(),
                    stage: *stage,
                    approval_number: approval_number.map(|n| i64::from(n.value())),
                    client_ip: client_ip.clone(),
                    user_agent: user_agent.clone(),
                    started_at: to_db(*at),
                    expires_at: to_db(*expires_at),
                }),
                AccountEvent::LoginApproved {
                    login_id,
                    method,
                    at,
                    ..
                } => decisions.push(decided(
                    *login_id,
                    LoginStatus::Approved,
                    *at,
                    Some(*method),
                )),
                AccountEvent::LoginDenied { login_id, at, .. } => decisions.push(decided(
                    *login_id,
                    LoginStatus::Denied,
                    *at,
                    Some(Method::Device),
                )),
                AccountEvent::LoginExpired { login_id, at } => {
                    decisions.push(decided(*login_id, LoginStatus::Expired, *at, None));
                }
                AccountEvent::LoginCancelled { login_id, at, .. } => {
                    decisions.push(decided(*login_id, LoginStatus::Cancelled, *at, None));
                }
                _ => {}
            }
        }
        let mut statements = insert_with_terms(
            "login_sessions",
            &[
                Column::Value("login_id"),
                Column::Term("account"),
                Column::Value("stage"),
                Column::Value("status"),
                Column::Value("approval_number"),
                Column::Term("client_ip"),
                Column::Term("user_agent"),
                Column::Value("started_at"),
                Column::Value("expires_at"),
            ],
            started.into_iter().map(NewLogin::values).collect(),
        );
        statements.extend(rows_in_chunks(
            "UPDATE login_sessions SET status = v.column2, decided_at = v.column3, method = v.column4 \
             FROM (VALUES",
            "(?, ?, ?, ?)",
            ") AS v WHERE login_sessions.login_id = v.column1",
            last_of_each(decisions),
        ));
        statements
    }
}

/// A login's row as `LoginStarted` writes it, its strings not yet term ids.
struct NewLogin {
    login_id: LoginId,
    stream: String,
    stage: LoginStage,
    approval_number: Option<i64>,
    client_ip: Option<String>,
    user_agent: Option<String>,
    started_at: i64,
    expires_at: i64,
}

impl NewLogin {
    /// The row's values, in the order of the insert's placeholders.
    fn values(self) -> Vec<SqlValue> {
        vec![
            SqlValue::Bytes(id_bytes(self.login_id)),
            SqlValue::Text(self.stream),
            SqlValue::Int(stage_code(self.stage)),
            SqlValue::Int(status_code(LoginStatus::pending_for(self.stage))),
            SqlValue::from(self.approval_number),
            SqlValue::from(self.client_ip),
            SqlValue::from(self.user_agent),
            SqlValue::Int(self.started_at),
            SqlValue::Int(self.expires_at),
        ]
    }
}

/// A decision's values, as the batched `UPDATE ... FROM (VALUES ...)` reads them: the login's
/// id, then its status, when, and how.
fn decided(
    login_id: LoginId,
    status: LoginStatus,
    at: DateTime<Utc>,
    method: Option<Method>,
) -> (LoginId, Vec<SqlValue>) {
    let values = vec![
        SqlValue::from(id_bytes(login_id)),
        SqlValue::from(status_code(status)),
        SqlValue::from(to_db(at)),
        SqlValue::from(method.map(method_code)),
    ];
    (login_id, values)
}

/// Each login's last decision, in the order of those: an `UPDATE ... FROM` joining one row to
/// two would pick either.
fn last_of_each(decisions: Vec<(LoginId, Vec<SqlValue>)>) -> Vec<Vec<SqlValue>> {
    let mut seen = std::collections::HashSet::new();
    let mut last: Vec<Vec<SqlValue>> = decisions
        .into_iter()
        .rev()
        .filter(|(login_id, _)| seen.insert(*login_id))
        .map(|(_, values)| values)
        .collect();
    last.reverse();
    last
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

/// A row as stored: codes and term ids, read back through the terms table.
#[derive(sqlx::FromRow)]
struct StoredLogin {
    login_id: Vec<u8>,
    stream: String,
    stage: i64,
    status: i64,
    approval_number: Option<i64>,
    client_ip: Option<String>,
    user_agent: Option<String>,
    #[sqlx(try_from = "Micros")]
    started_at: DateTime<Utc>,
    #[sqlx(try_from = "Micros")]
    expires_at: DateTime<Utc>,
    #[sqlx(try_from = "MaybeMicros")]
    decided_at: Option<DateTime<Utc>>,
    method: Option<i64>,
}

impl TryFrom<StoredLogin> for LoginRow {
    type Error = sqlx::Error;

    fn try_from(stored: StoredLogin) -> Result<Self, Self::Error> {
        let login_id = Uuid::from_slice(&stored.login_id)
            .map_err(|e| sqlx::Error::Decode(format!("login_sessions.login_id: {e}").into()))?;
        let key = AccountKey::from_stream_name(&stored.stream).ok_or_else(|| {
            sqlx::Error::Decode(
                format!("login_sessions.account: {} is no account", stored.stream).into(),
            )
        })?;
        let method = stored
            .method
            .map(|m| decode(&METHODS, method_code, m, "method"))
            .transpose()?;
        Ok(LoginRow {
            login_id: LoginId(login_id).to_string(),
            user_type: key.user_type.as_str().to_owned(),
            user_id: key.user_id.as_str().to_owned(),
            stream: stored.stream,
            stage: stage_str(decode(&STAGES, stage_code, stored.stage, "stage")?).to_owned(),
            status: decode(&STATUSES, status_code, stored.status, "status")?
                .as_str()
                .to_owned(),
            approval_number: stored.approval_number,
            client_ip: stored.client_ip,
            user_agent: stored.user_agent,
            started_at: stored.started_at,
            expires_at: stored.expires_at,
            decided_at: stored.decided_at,
            method: method.map(|m| m.as_str().to_owned()),
        })
    }
}

/// Each term read by its id, one probe of the primary key whatever the size of `terms`. As joins,
/// PostgreSQL planned them as merge joins walking `terms` from its first id, cheap while the
/// addresses and user agents were among the first terms and not once they are not (32 µs a
/// lookup in the benchmark against 21 µs this way).
const COLUMNS: &str =
    "SELECT l.login_id, (SELECT term FROM terms WHERE id = l.account) AS stream, l.stage, \
     l.status, l.approval_number, (SELECT term FROM terms WHERE id = l.client_ip) AS client_ip, \
     (SELECT term FROM terms WHERE id = l.user_agent) AS user_agent, l.started_at, l.expires_at, \
     l.decided_at, l.method FROM login_sessions AS l";

/// An account's logins are found by its term id: an index query on `(account, status)`.
const OF_ACCOUNT: &str = "l.account = (SELECT id FROM terms WHERE term = $1)";

async fn fetch_all(
    query: String,
    binds: impl FnOnce(AnyQuery<'_>) -> AnyQuery<'_>,
    pool: &AnyPool,
) -> Result<Vec<LoginRow>, sqlx::Error> {
    let stored: Vec<StoredLogin> = binds(sqlx::query_as(&query)).fetch_all(pool).await?;
    stored.into_iter().map(LoginRow::try_from).collect()
}

pub async fn get(pool: &AnyPool, login_id: LoginId) -> Result<Option<LoginRow>, sqlx::Error> {
    let stored: Option<StoredLogin> = sqlx::query_as(&format!("{COLUMNS} WHERE l.login_id = $1"))
        .bind(id_bytes(login_id))
        .fetch_optional(pool)
        .await?;
    stored.map(LoginRow::try_from).transpose()
}

/// Logins of an account still waiting for its device at `now`, oldest first.
pub async fn pending_approvals(
    pool: &AnyPool,
    stream: &str,
    now: DateTime<Utc>,
) -> Result<Vec<LoginRow>, sqlx::Error> {
    let query = format!(
        "{COLUMNS} WHERE {OF_ACCOUNT} AND l.status = {} AND l.expires_at > $2 ORDER BY l.started_at",
        status_code(LoginStatus::AwaitingApproval)
    );
    fetch_all(query, |q| q.bind(stream.to_owned()).bind(to_db(now)), pool).await
}

/// Accounts with a pending login past its time: what the expiry sweep visits.
pub async fn streams_with_overdue(
    pool: &AnyPool,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "SELECT a.term FROM terms AS a WHERE a.id IN (SELECT l.account FROM login_sessions AS l \
         WHERE l.status IN {PENDING} AND l.expires_at <= $1) LIMIT $2"
    ))
    .bind(to_db(now))
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Every login of an account, oldest first: for the subject export.
pub async fn for_account(pool: &AnyPool, stream: &str) -> Result<Vec<LoginRow>, sqlx::Error> {
    let query = format!("{COLUMNS} WHERE {OF_ACCOUNT} ORDER BY l.started_at, l.login_id");
    fetch_all(query, |q| q.bind(stream.to_owned()), pool).await
}

/// An account's most recent logins, newest first: what the helpdesk sees as "last logins".
pub async fn recent_for_account(
    pool: &AnyPool,
    stream: &str,
    limit: i64,
) -> Result<Vec<LoginRow>, sqlx::Error> {
    let query = format!(
        "{COLUMNS} WHERE {OF_ACCOUNT} ORDER BY l.started_at DESC, l.login_id DESC LIMIT $2"
    );
    fetch_all(query, |q| q.bind(stream.to_owned()).bind(limit), pool).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_decided_twice_in_a_batch_keeps_the_later_decision_only() {
        let (first, second) = (LoginId::generate(), LoginId::generate());
        let at = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).expect("a time");
        let kept = last_of_each(vec![
            decided(first, LoginStatus::Approved, at, Some(Method::Code)),
            decided(second, LoginStatus::Cancelled, at, None),
            decided(first, LoginStatus::Expired, at, None),
        ]);
        assert_eq!(
            kept,
            vec![
                decided(second, LoginStatus::Cancelled, at, None).1,
                decided(first, LoginStatus::Expired, at, None).1,
            ]
        );
    }

    #[test]
    fn every_code_stands_for_one_value() {
        for stage in STAGES {
            assert_eq!(
                decode(&STAGES, stage_code, stage_code(stage), "stage").ok(),
                Some(stage)
            );
        }
        for status in STATUSES {
            let code = status_code(status);
            assert_eq!(
                decode(&STATUSES, status_code, code, "status").ok(),
                Some(status)
            );
        }
        for method in METHODS {
            let code = method_code(method);
            assert_eq!(
                decode(&METHODS, method_code, code, "method").ok(),
                Some(method)
            );
        }
        assert!(decode(&STATUSES, status_code, 6, "status").is_err());
    }

    #[test]
    fn the_pending_codes_are_the_pending_statuses() {
        let pending: Vec<i64> = STATUSES
            .into_iter()
            .filter(|s| s.is_pending())
            .map(status_code)
            .collect();
        let spelled = format!(
            "({})",
            pending
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert_eq!(spelled, PENDING);
    }
}
