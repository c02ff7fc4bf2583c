//! `audit_log`: one row per event with who, from where and a readable summary, indexed for the
//! helpdesk's filters. The summary is also what `spse-totp history` prints.

use chrono::{DateTime, Utc};
use spse_totp_commands::RecordedEvent;
use spse_totp_domain::access::AccessEvent;
use spse_totp_domain::account::{cancel_reason_str, LoginStage, RejectReason, ResetBy};
use spse_totp_domain::apikey::ApiKeyEvent;
use spse_totp_domain::reset_log::ResetLogEvent;
use spse_totp_domain::{AccountEvent, AccountKey};
use sqlx::AnyPool;

use crate::event::Decoded;
use crate::projector::Projector;
use crate::sql;
use crate::statement::Statement;
use crate::time::{from_db, to_db};

pub struct AuditLogProjector;

impl Projector for AuditLogProjector {
    fn name(&self) -> &'static str {
        "audit_log"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["audit_log"]
    }

    fn project(&self, recorded: &RecordedEvent, decoded: &Decoded) -> Vec<Statement> {
        let (user_type, user_id) = match decoded {
            Decoded::Account(key, _) => (
                Some(key.user_type.as_str()),
                Some(key.user_id.as_str().to_owned()),
            ),
            // A read is listed under the account it read, so a search for the account shows
            // who looked at it as well as what happened to it.
            Decoded::Access(AccessEvent::AuditRecordRead { subject, .. }) => {
                match AccountKey::from_stream_name(subject) {
                    Some(key) => (
                        Some(key.user_type.as_str()),
                        Some(key.user_id.as_str().to_owned()),
                    ),
                    None => (None, None),
                }
            }
            _ => (None, None),
        };
        let meta = &recorded.metadata;
        vec![sql!(
            "INSERT INTO audit_log (position, stream, user_type, user_id, event_type, actor_kind, actor, client_ip, \
             user_agent, correlation_id, recorded_at, summary) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            i64::try_from(recorded.position).unwrap_or(i64::MAX),
            recorded.stream.as_str(),
            user_type,
            user_id,
            recorded.event_type.as_str(),
            meta.actor.kind(),
            meta.actor.display_name(),
            meta.client_ip.clone(),
            meta.user_agent.clone(),
            meta.correlation_id.clone(),
            to_db(recorded.recorded_at),
            summary(decoded, &recorded.event_type),
        )]
    }
}

/// One line a helpdesk operator or an auditor can read. Names no secret: events hold none.
pub fn summary(decoded: &Decoded, event_type: &str) -> String {
    match decoded {
        Decoded::Account(key, event) => account_summary(&key.user_id.to_string(), event),
        Decoded::ApiKey(ApiKeyEvent::ApiKeyCreated { name, role, .. }) => {
            format!("API key \"{name}\" created with role {role}")
        }
        Decoded::Access(AccessEvent::AuditRecordRead {
            subject,
            endpoint,
            purpose,
            ..
        }) => {
            let what = AccountKey::from_stream_name(subject)
                .map(|key| format!("account {key}"))
                .unwrap_or_else(|| "records across accounts".to_owned());
            format!("Read {what} via {endpoint}; purpose: {purpose}")
        }
        Decoded::ResetLog(ResetLogEvent::ResetRequestUnmatched {
            user_type,
            user_id,
            client_ip,
            ..
        }) => format!(
            "Reset requested for unknown account {user_id} ({user_type}) from {}",
            client_ip.as_deref().unwrap_or("an unknown address")
        ),
        Decoded::ResetLog(ResetLogEvent::ResetRequestThrottled {
            client_ip, limit, ..
        }) => format!(
            "Reset request from {} ignored: over {limit} an hour",
            client_ip.as_deref().unwrap_or("an unknown address")
        ),
        Decoded::Other => format!("{event_type} (not projected by this version)"),
    }
}

fn account_summary(user: &str, event: &AccountEvent) -> String {
    match event {
        AccountEvent::AccountRegistered { user_type, .. } => {
            format!("Account {user} ({user_type}) registered")
        }
        AccountEvent::ProfileUpdated { email, name } => {
            let mut changed = Vec::new();
            if email.is_some() {
                changed.push("email");
            }
            if name.is_some() {
                changed.push("name");
            }
            format!("Profile updated: {}", changed.join(", "))
        }
        AccountEvent::EnrollmentStarted {
            enrollment_id,
            expires_at,
            ..
        } => {
            format!(
                "Activation QR code {enrollment_id} issued, valid until {}",
                expires_at.to_rfc3339()
            )
        }
        AccountEvent::TotpActivated {
            device_label,
            method,
            ..
        } => {
            format!(
                "TOTP activated on \"{device_label}\" (by {})",
                method.as_str()
            )
        }
        AccountEvent::LoginStarted {
            login_id,
            stage,
            client_ip,
            ..
        } => {
            let waits = match stage {
                LoginStage::Activation => "activation",
                LoginStage::Approval => "approval",
            };
            let from = client_ip
                .as_deref()
                .map(|ip| format!(" from {ip}"))
                .unwrap_or_default();
            format!("Login {login_id} started{from}, awaiting {waits}")
        }
        AccountEvent::LoginApproved {
            login_id, method, ..
        } => {
            format!("Login {login_id} approved by {}", method.as_str())
        }
        AccountEvent::LoginDenied { login_id, .. } => {
            format!("Login {login_id} denied on the device")
        }
        AccountEvent::LoginExpired { login_id, .. } => format!("Login {login_id} expired"),
        AccountEvent::LoginCancelled {
            login_id, reason, ..
        } => {
            format!(
                "Login {login_id} cancelled ({})",
                cancel_reason_str(*reason)
            )
        }
        AccountEvent::CodeRejected {
            reason,
            failed_attempts,
            method,
            ..
        } => {
            let why = match reason {
                RejectReason::WrongCode => "wrong code",
                RejectReason::Replayed => "code already used",
                RejectReason::NumberMismatch => "wrong approval number",
            };
            format!(
                "Code rejected by {}: {why} ({failed_attempts} failed in a row)",
                method.as_str()
            )
        }
        AccountEvent::AccountLocked {
            until, lock_number, ..
        } => {
            format!(
                "Account locked until {} (lock {lock_number} in a row)",
                until.to_rfc3339()
            )
        }
        AccountEvent::TotpDisabled { .. } => "TOTP disabled by the user".to_owned(),
        AccountEvent::AccountUnlocked { reason, .. } => format!("Account unlocked: {reason}"),
        AccountEvent::ResetRequested {
            email, client_ip, ..
        } => {
            let from = client_ip
                .as_deref()
                .map(|ip| format!(" from {ip}"))
                .unwrap_or_default();
            format!("Reset link requested{from}, mailed to {email}")
        }
        AccountEvent::ResetRequestDeclined {
            reason, client_ip, ..
        } => {
            let from = client_ip
                .as_deref()
                .map(|ip| format!(" from {ip}"))
                .unwrap_or_default();
            format!("Reset request{from} declined ({})", reason.as_str())
        }
        AccountEvent::ResetEmailSent { .. } => "Reset link email sent".to_owned(),
        AccountEvent::ResetEmailFailed {
            attempt,
            error,
            retry_at,
            ..
        } => match retry_at {
            Some(at) => format!(
                "Reset link email attempt {attempt} failed ({error}); retry at {}",
                at.to_rfc3339()
            ),
            None => format!("Reset link email given up after attempt {attempt} ({error})"),
        },
        AccountEvent::TotpReset {
            by, device_label, ..
        } => {
            let device = device_label
                .as_deref()
                .map(|d| format!(", device \"{d}\" removed"))
                .unwrap_or_default();
            match by {
                ResetBy::Link { .. } => format!("TOTP reset by the emailed link{device}"),
                ResetBy::Helpdesk { reason, ticket } => {
                    format!("TOTP reset by the helpdesk (ticket {ticket}: {reason}){device}")
                }
            }
        }
        AccountEvent::NoticeEmailSent { notice, .. } => {
            format!("Security notice ({}) emailed", notice.as_str())
        }
        AccountEvent::NoticeEmailFailed {
            notice,
            attempt,
            error,
            retry_at,
            ..
        } => {
            let next = if retry_at.is_some() {
                "will retry"
            } else {
                "given up"
            };
            format!(
                "Security notice ({}) attempt {attempt} failed ({error}); {next}",
                notice.as_str()
            )
        }
    }
}

/// The helpdesk's filters. Every one is optional; together they narrow (AND).
#[derive(Debug, Clone, Default)]
pub struct AuditSearch {
    pub user_type: Option<String>,
    /// Canonical (upper-case) prefix of the User ID.
    pub user_id_prefix: Option<String>,
    pub event_type: Option<String>,
    pub actor_kind: Option<String>,
    /// The actor's name (operator, key name, device id); only with `actor_kind`.
    pub actor_name: Option<String>,
    pub client_ip: Option<String>,
    /// Recorded at or after.
    pub from: Option<DateTime<Utc>>,
    /// Recorded at or before.
    pub to: Option<DateTime<Utc>>,
    /// Only rows older than this position (the cursor): pages run newest first.
    pub before_position: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub position: u64,
    pub stream: String,
    pub user_type: Option<String>,
    pub user_id: Option<String>,
    pub event_type: String,
    pub actor_kind: String,
    pub actor: String,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub correlation_id: Option<String>,
    pub recorded_at: DateTime<Utc>,
    pub summary: String,
}

type SearchRow = (
    i64,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    String,
);

/// The smallest string greater than every string starting with `prefix`, for a range condition
/// an index serves (`LIKE 'P%'` is not portable to an index on every engine). User IDs are
/// printable ASCII, so bumping the last byte stays ASCII.
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0x7f {
            bytes.push(last + 1);
            return String::from_utf8(bytes).ok();
        }
    }
    None
}

/// Whether the account filters match so many rows that reading the log newest first fills a
/// page sooner than collecting and sorting every matching row from the index.
///
/// Collecting costs about the number of matches M (index entries, then a sort); scanning costs
/// about the page size times N / M rows (N the log's size). They cross near M = sqrt(c * N);
/// c = 250 was measured on a million-row log. The matches are counted on the index and only up
/// to that point, so the question itself stays cheap.
async fn account_filters_dense(pool: &AnyPool, filter: &AuditSearch) -> Result<bool, sqlx::Error> {
    let Some(prefix) = &filter.user_id_prefix else {
        // A bare user type matches about half the log.
        return Ok(true);
    };
    let size: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM audit_log")
        .fetch_one(pool)
        .await?;
    let cap = ((250.0 * size.max(0) as f64).sqrt() as i64).clamp(2_000, 100_000);
    let mut sql = "SELECT COUNT(*) FROM (SELECT 1 FROM audit_log WHERE user_id >= $1".to_owned();
    let end = prefix_upper_bound(prefix);
    if end.is_some() {
        sql.push_str(" AND user_id < $2");
    }
    if filter.user_type.is_some() {
        sql.push_str(if end.is_some() {
            " AND user_type = $3"
        } else {
            " AND user_type = $2"
        });
    }
    sql.push_str(&format!(" LIMIT {cap}) AS capped"));
    let mut query = sqlx::query_scalar::<_, i64>(&sql).bind(prefix.clone());
    if let Some(end) = end {
        query = query.bind(end);
    }
    if let Some(user_type) = &filter.user_type {
        query = query.bind(user_type.clone());
    }
    Ok(query.fetch_one(pool).await? >= cap)
}

/// A page of matching rows, newest first.
///
/// Every filter has an index (migration `..._audit.sql`); what remains is choosing well between
/// them, since the page is ordered by position and a range (a User ID prefix, a time window) is
/// not. Two rules, both portable SQL:
/// - The account filters use their index only when they match few rows (counted on the index,
///   capped). A prefix matching many rows (`VENDOR2`), or a bare user type, is applied as a
///   filter (`column || ''` keeps any engine's planner off the index) while the log is read
///   newest first: a dense match fills a page after a short scan.
/// - Positions are chosen first, on indexes alone where they cover the filters, and only the
///   page's rows are read in full.
pub async fn search(
    pool: &AnyPool,
    filter: &AuditSearch,
    limit: usize,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    enum Arg {
        Text(String),
        Int(i64),
    }
    let (user_type_column, user_id_column) = if account_filters_dense(pool, filter).await? {
        ("user_type || ''", "user_id || ''")
    } else {
        ("user_type", "user_id")
    };
    let mut conditions: Vec<String> = Vec::new();
    let mut args: Vec<Arg> = Vec::new();
    let mut add = |condition: &str, arg: Arg| {
        args.push(arg);
        conditions.push(format!("{condition} ${}", args.len()));
    };
    if let Some(v) = &filter.user_type {
        add(&format!("{user_type_column} ="), Arg::Text(v.clone()));
    }
    if let Some(prefix) = &filter.user_id_prefix {
        add(&format!("{user_id_column} >="), Arg::Text(prefix.clone()));
        if let Some(end) = prefix_upper_bound(prefix) {
            add(&format!("{user_id_column} <"), Arg::Text(end));
        }
    }
    if let Some(v) = &filter.event_type {
        add("event_type =", Arg::Text(v.clone()));
    }
    if let Some(v) = &filter.actor_kind {
        add("actor_kind =", Arg::Text(v.clone()));
    }
    if let Some(v) = &filter.actor_name {
        add("actor =", Arg::Text(v.clone()));
    }
    if let Some(v) = &filter.client_ip {
        add("client_ip =", Arg::Text(v.clone()));
    }
    if let Some(v) = filter.from {
        add("recorded_at >=", Arg::Int(to_db(v)));
    }
    if let Some(v) = filter.to {
        add("recorded_at <=", Arg::Int(to_db(v)));
    }
    if let Some(v) = filter.before_position {
        add("position <", Arg::Int(i64::try_from(v).unwrap_or(i64::MAX)));
    }
    let mut page = "SELECT position FROM audit_log".to_owned();
    if !conditions.is_empty() {
        page.push_str(" WHERE ");
        page.push_str(&conditions.join(" AND "));
    }
    page.push_str(&format!(
        " ORDER BY position DESC LIMIT {}",
        limit.min(10_000)
    ));
    let sql = format!(
        "SELECT position, stream, user_type, user_id, event_type, actor_kind, actor, client_ip, \
         user_agent, correlation_id, recorded_at, summary FROM audit_log \
         WHERE position IN ({page}) ORDER BY position DESC"
    );
    let mut query = sqlx::query_as::<_, SearchRow>(&sql);
    for arg in args {
        query = match arg {
            Arg::Text(v) => query.bind(v),
            Arg::Int(v) => query.bind(v),
        };
    }
    let rows = query.fetch_all(pool).await?;
    Ok(rows
        .into_iter()
        .map(|r| AuditRow {
            position: u64::try_from(r.0).unwrap_or(0),
            stream: r.1,
            user_type: r.2,
            user_id: r.3,
            event_type: r.4,
            actor_kind: r.5,
            actor: r.6,
            client_ip: r.7,
            user_agent: r.8,
            correlation_id: r.9,
            recorded_at: from_db(r.10),
            summary: r.11,
        })
        .collect())
}

#[cfg(test)]
mod search_tests {
    use super::prefix_upper_bound;

    #[test]
    fn the_prefix_range_covers_exactly_the_prefix() {
        assert_eq!(prefix_upper_bound("PPK").as_deref(), Some("PPL"));
        assert_eq!(prefix_upper_bound("A9").as_deref(), Some("A:"));
        assert!("PPK1" >= "PPK" && "PPK1" < "PPL");
        assert!("PPL" >= "PPL");
    }
}
