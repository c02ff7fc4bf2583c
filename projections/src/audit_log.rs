//! `audit_log`: one row per event with what the helpdesk filters on (account, type, actor, client
//! address, time), indexed for those filters. Everything else a result shows (stream, user agent,
//! correlation id, the readable summary) is read from the event row itself by position, so the
//! projection copies none of it. The summary is also what `spse-totp history` prints.

use chrono::{DateTime, Utc};
use spse_totp_domain::access::AccessEvent;
use spse_totp_domain::account::{cancel_reason_str, LoginStage, RejectReason, ResetBy};
use spse_totp_domain::apikey::ApiKeyEvent;
use spse_totp_domain::masterkey::MasterKeyEvent;
use spse_totp_domain::reset_log::ResetLogEvent;
use spse_totp_domain::{AccountEvent, AccountKey, UserType};
use spse_totp_store::{RecordedEvent, StoredRow};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use crate::event::Decoded;
use crate::projector::Projector;
use crate::statement::{insert_with_terms, Column, SqlValue, Statement};
use crate::time::to_db;

pub struct AuditLogProjector;

impl Projector for AuditLogProjector {
    fn name(&self) -> &'static str {
        "audit_log"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["audit_log"]
    }

    fn project(&self, recorded: &RecordedEvent, decoded: &Decoded) -> Vec<Statement> {
        self.project_batch(&[(recorded, decoded)])
    }

    /// Every text the rows name gets its term id first, unless it has one, then the rows go in
    /// together: no row depends on another.
    fn project_batch(&self, events: &[(&RecordedEvent, &Decoded)]) -> Vec<Statement> {
        insert_with_terms(
            "audit_log",
            &[
                Column::Value("position"),
                Column::Term("user_type"),
                Column::Value("user_id"),
                Column::Term("event_type"),
                Column::Term("actor_kind"),
                Column::Term("actor"),
                Column::Term("client_ip"),
                Column::Value("recorded_at"),
            ],
            events
                .iter()
                .map(|(recorded, decoded)| NewAuditRow::of(recorded, decoded).values())
                .collect(),
        )
    }
}

/// What `audit_log` keeps of one event, its texts not yet term ids.
struct NewAuditRow {
    position: i64,
    user_type: Option<&'static str>,
    user_id: Option<String>,
    event_type: String,
    actor_kind: &'static str,
    actor: String,
    client_ip: Option<String>,
    recorded_at: i64,
}

impl NewAuditRow {
    fn of(recorded: &RecordedEvent, decoded: &Decoded) -> Self {
        let account = match decoded {
            Decoded::Account(key, _) => Some(key.clone()),
            // A read is listed under the account it read, so a search for the account shows
            // who looked at it as well as what happened to it.
            Decoded::Access(AccessEvent::AuditRecordRead { subject, .. }) => {
                AccountKey::from_stream_name(subject)
            }
            _ => None,
        };
        let meta = &recorded.metadata;
        NewAuditRow {
            position: i64::try_from(recorded.position).unwrap_or(i64::MAX),
            user_type: account.as_ref().map(|key| key.user_type.as_str()),
            user_id: account.map(|key| key.user_id.as_str().to_owned()),
            event_type: recorded.event_type.clone(),
            actor_kind: meta.actor.kind(),
            actor: meta.actor.display_name(),
            client_ip: meta.client_ip.clone(),
            recorded_at: to_db(recorded.recorded_at),
        }
    }

    /// The row's values, in the order of the insert's columns.
    fn values(self) -> Vec<SqlValue> {
        vec![
            SqlValue::Int(self.position),
            SqlValue::from(self.user_type),
            SqlValue::from(self.user_id),
            SqlValue::Text(self.event_type),
            SqlValue::from(self.actor_kind),
            SqlValue::Text(self.actor),
            SqlValue::from(self.client_ip),
            SqlValue::Int(self.recorded_at),
        ]
    }
}

/// One line a helpdesk operator or an auditor can read. Names no secret: events hold none.
pub fn summary(decoded: &Decoded, event_type: &str) -> String {
    match decoded {
        Decoded::Account(key, event) => account_summary(&key.user_id.to_string(), event),
        Decoded::ApiKey(ApiKeyEvent::ApiKeyCreated {
            name,
            role,
            expires_at,
            ..
        }) => match expires_at {
            None => format!("API key \"{name}\" created with role {role}"),
            Some(until) => format!(
                "API key \"{name}\" created with role {role}, expiring {}",
                until.to_rfc3339()
            ),
        },
        Decoded::ApiKey(ApiKeyEvent::ApiKeyRevoked { key_id, .. }) => {
            format!("API key {key_id} revoked")
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
        Decoded::Access(AccessEvent::ChainVerified {
            ok,
            checked,
            legacy,
            streams,
            broken,
            checkpoint,
        }) => match (ok, broken) {
            // Verifications recorded before checkpoints existed said how many rows had no hash.
            (true, _) if *legacy > 0 => format!(
                "Hash chain verified intact: {checked} events in {streams} streams ({legacy} older than the chain)"
            ),
            (true, _) => format!(
                "Hash chain verified intact: {checked} events in {streams} streams; {}",
                checkpoint.map_or("no signed checkpoint yet".to_owned(), |p| format!(
                    "the log reaches its newest signed checkpoint, position {p}"
                ))
            ),
            (false, broken) => format!(
                "Hash chain verified BROKEN after {checked} events: {}",
                broken.as_deref().unwrap_or("no detail")
            ),
        },
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
        Decoded::Operator(username, event) => crate::operators::summary(username, event),
        Decoded::MasterKey(MasterKeyEvent::MasterKeyRotationStarted { from, to, .. }) => {
            format!("Master key rotation started: re-sealing every secret from key {from} to key {to}")
        }
        Decoded::MasterKey(MasterKeyEvent::MasterKeyRotated {
            from, to, secrets, ..
        }) => format!(
            "Master key rotated from key {from} to key {to}: {secrets} secrets sealed under the new key only"
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
            lock_number,
            until_unlock: true,
            ..
        } => format!("Account locked until a helpdesk unlock (lock {lock_number} in a row)"),
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

/// The smallest string greater than every string starting with `prefix`. User IDs are
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

/// Rows per bucket of the log: `position / BUCKET_ROWS` leads the index
/// `audit_log_by_bucket_account` (migrations `..._audit_buckets.sql` and `..._audit_terms.sql`,
/// which must use the same number), so the rows of an account filter within one bucket are one
/// short index range.
const BUCKET_ROWS: i64 = 16_384;

/// The filters' texts as the term ids `audit_log` holds.
struct TermIds {
    /// The filter's user type, or every user type the log has seen when only a User ID prefix
    /// is given: the account indexes lead with the type.
    user_types: Vec<i64>,
    event_type: Option<i64>,
    actor_kind: Option<i64>,
    actor: Option<i64>,
    client_ip: Option<i64>,
}

impl TermIds {
    /// `None` when a filter names a text the log has never held: nothing can match it.
    async fn resolve(
        conn: &mut AnyConnection,
        filter: &AuditSearch,
    ) -> Result<Option<TermIds>, sqlx::Error> {
        let user_types: Vec<&str> = match &filter.user_type {
            Some(user_type) => vec![user_type.as_str()],
            None if filter.user_id_prefix.is_some() => UserType::ALL.map(UserType::as_str).to_vec(),
            None => Vec::new(),
        };
        let others = [
            filter.event_type.as_deref(),
            filter.actor_kind.as_deref(),
            filter.actor_name.as_deref(),
            filter.client_ip.as_deref(),
        ];
        let texts: Vec<&str> = user_types
            .iter()
            .copied()
            .chain(others.iter().flatten().copied())
            .collect();
        let known: Vec<(String, i64)> = if texts.is_empty() {
            Vec::new()
        } else {
            let params = (1..=texts.len())
                .map(|n| format!("${n}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!("SELECT term, id FROM terms WHERE term IN ({params})");
            texts
                .iter()
                .fold(sqlx::query_as(&sql), |query, text| query.bind(*text))
                .fetch_all(&mut *conn)
                .await?
        };
        let id = |text: &str| known.iter().find(|(term, _)| term == text).map(|t| t.1);
        let user_types: Vec<i64> = user_types.iter().filter_map(|t| id(t)).collect();
        let found = others.map(|text| text.map(id));
        let unknown = ((filter.user_type.is_some() || filter.user_id_prefix.is_some())
            && user_types.is_empty())
            || found.iter().any(|found| matches!(found, Some(None)));
        let [event_type, actor_kind, actor, client_ip] = found.map(Option::flatten);
        let ids = TermIds {
            user_types,
            event_type,
            actor_kind,
            actor,
            client_ip,
        };
        Ok((!unknown).then_some(ids))
    }
}

/// The WHERE clause of a search, with its numbered parameters.
#[derive(Default)]
struct Conditions {
    sql: Vec<String>,
    args: Vec<Arg>,
}

/// A bound value of a search condition.
enum Arg {
    Text(String),
    Int(i64),
}

impl Conditions {
    /// `condition` ends in an operator; the value becomes its next parameter.
    fn push(&mut self, condition: &str, arg: Arg) {
        self.args.push(arg);
        self.sql.push(format!("{condition} ${}", self.args.len()));
    }

    fn where_clause(&self) -> String {
        if self.sql.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.sql.join(" AND "))
        }
    }

    /// `column = id`, or `column IN (…)` over several ids, each its own parameter.
    fn push_in(&mut self, column: &str, values: &[i64]) {
        if let [value] = values {
            self.push(&format!("{column} ="), Arg::Int(*value));
            return;
        }
        let first = self.args.len() + 1;
        self.args.extend(values.iter().map(|v| Arg::Int(*v)));
        let params: Vec<String> = (first..=self.args.len()).map(|n| format!("${n}")).collect();
        self.sql
            .push(format!("{column} IN ({})", params.join(", ")));
    }

    /// `sql` (which ends in this WHERE clause's use) with every parameter bound.
    fn query<'q>(
        &'q self,
        sql: &'q str,
    ) -> sqlx::query::QueryScalar<'q, sqlx::Any, i64, sqlx::any::AnyArguments<'q>> {
        self.args
            .iter()
            .fold(sqlx::query_scalar(sql), |query, arg| match arg {
                Arg::Text(v) => query.bind(v.as_str()),
                Arg::Int(v) => query.bind(*v),
            })
    }

    async fn positions(
        &self,
        conn: &mut AnyConnection,
        limit: usize,
    ) -> Result<Vec<i64>, sqlx::Error> {
        let sql = format!(
            "SELECT position FROM audit_log{} ORDER BY position DESC LIMIT {limit}",
            self.where_clause()
        );
        self.query(&sql).fetch_all(conn).await
    }
}

/// The account filters (user type, User ID prefix) as plain conditions. A prefix without a
/// type is a range under each type, so that `audit_log_by_account` serves it.
fn account_conditions(filter: &AuditSearch, ids: &TermIds, conditions: &mut Conditions) {
    if filter.user_type.is_some() || filter.user_id_prefix.is_some() {
        conditions.push_in("user_type", &ids.user_types);
    }
    if let Some(prefix) = &filter.user_id_prefix {
        prefix_conditions(prefix, conditions);
    }
}

/// The conditions of every filter but the account's (user type, User ID prefix).
fn other_conditions(filter: &AuditSearch, ids: &TermIds, conditions: &mut Conditions) {
    if let Some(v) = ids.event_type {
        conditions.push("event_type =", Arg::Int(v));
    }
    if let Some(v) = ids.actor_kind {
        conditions.push("actor_kind =", Arg::Int(v));
    }
    if let Some(v) = ids.actor {
        conditions.push("actor =", Arg::Int(v));
    }
    if let Some(v) = ids.client_ip {
        conditions.push("client_ip =", Arg::Int(v));
    }
    if let Some(v) = filter.from {
        conditions.push("recorded_at >=", Arg::Int(to_db(v)));
    }
    if let Some(v) = filter.to {
        conditions.push("recorded_at <=", Arg::Int(to_db(v)));
    }
    if let Some(v) = filter.before_position {
        conditions.push("position <", Arg::Int(i64::try_from(v).unwrap_or(i64::MAX)));
    }
}

/// The User ID prefix as a range, which every engine's index serves (`LIKE 'P%'` is not
/// portable to an index).
fn prefix_conditions(prefix: &str, conditions: &mut Conditions) {
    conditions.push("user_id >=", Arg::Text(prefix.to_owned()));
    if let Some(end) = prefix_upper_bound(prefix) {
        conditions.push("user_id <", Arg::Text(end));
    }
}

/// Whether the User ID prefix matches few rows: few enough that collecting all of them from
/// its index and sorting them by position costs less than walking the log's buckets.
///
/// Collecting costs about the number of matches M; the walk costs a short index range per
/// bucket. They cross near M = sqrt(250 * N) (N the log's size), measured on a million-row log.
/// The matches are counted on the index and only up to that point, so the question stays cheap.
async fn prefix_is_sparse(
    conn: &mut AnyConnection,
    filter: &AuditSearch,
    ids: &TermIds,
    head: i64,
) -> Result<bool, sqlx::Error> {
    let cap = ((250.0 * head.max(0) as f64).sqrt() as i64).clamp(2_000, 100_000);
    let mut conditions = Conditions::default();
    account_conditions(filter, ids, &mut conditions);
    let sql = format!(
        "SELECT COUNT(*) FROM (SELECT 1 FROM audit_log{} LIMIT {cap}) AS capped",
        conditions.where_clause()
    );
    Ok(conditions.query(&sql).fetch_one(conn).await? < cap)
}

/// The page's positions, newest first, walking the log one bucket at a time from the newest:
/// in each bucket the account filters are one range of `audit_log_by_bucket_account`, so a
/// bucket without a match costs one index seek and a bucket full of them at most its own size.
/// Unlike reading the log newest first and filtering, the cost does not depend on how many
/// other accounts' events came last.
async fn walk_buckets(
    conn: &mut AnyConnection,
    filter: &AuditSearch,
    ids: &TermIds,
    head: i64,
    limit: usize,
) -> Result<Vec<i64>, sqlx::Error> {
    let newest = match filter.before_position {
        Some(before) => i64::try_from(before)
            .unwrap_or(i64::MAX)
            .saturating_sub(1)
            .min(head),
        None => head,
    };
    let mut conditions = Conditions::default();
    conditions.push(
        &format!("position / {BUCKET_ROWS} ="),
        Arg::Int(newest / BUCKET_ROWS),
    );
    let bucket_arg = conditions.args.len() - 1;
    // The index leads with the user type before the User ID: without a type filter, every
    // type keeps the User ID range usable on it.
    account_conditions(filter, ids, &mut conditions);
    other_conditions(filter, ids, &mut conditions);
    let mut positions = Vec::with_capacity(limit);
    let mut bucket = newest / BUCKET_ROWS;
    while bucket >= 0 && positions.len() < limit {
        conditions.args[bucket_arg] = Arg::Int(bucket);
        positions.extend(conditions.positions(conn, limit - positions.len()).await?);
        bucket -= 1;
    }
    Ok(positions)
}

/// A page of matching rows, newest first.
///
/// The filters' texts are term ids in `audit_log` (migration `..._audit_terms.sql`): they are
/// looked up first, and a text the log never held answers an empty page. Every filter has an
/// index ending in position, which serves the filter and the order together; a User ID prefix
/// or a bare user type is a range, which does not come ordered by position. Those go one of
/// two ways, both portable SQL:
/// - a prefix matching few rows: all of them from the account index, sorted (one statement);
/// - a prefix matching many rows, or a bare user type: the log's buckets newest first
///   ([`walk_buckets`]), stopping as soon as the page is full.
///
/// Positions are chosen first, on indexes alone where they cover the filters, and only the
/// page's rows are read in full.
pub async fn search(
    pool: &AnyPool,
    filter: &AuditSearch,
    limit: usize,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    let limit = limit.min(10_000);
    let mut conn = pool.acquire().await?;
    let Some(ids) = TermIds::resolve(&mut conn, filter).await? else {
        return Ok(Vec::new());
    };
    // Without account filters every other filter's index comes in position order.
    let walk = if filter.user_type.is_none() && filter.user_id_prefix.is_none() {
        None
    } else {
        let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM audit_log")
            .fetch_one(&mut *conn)
            .await?;
        // A bare user type matches about half the log.
        let sparse = filter.user_id_prefix.is_some()
            && prefix_is_sparse(&mut conn, filter, &ids, head).await?;
        (!sparse).then_some(head)
    };
    let positions = match walk {
        Some(head) => walk_buckets(&mut conn, filter, &ids, head, limit).await?,
        None => {
            let mut conditions = Conditions::default();
            account_conditions(filter, &ids, &mut conditions);
            other_conditions(filter, &ids, &mut conditions);
            conditions.positions(&mut conn, limit).await?
        }
    };
    if positions.is_empty() {
        return Ok(Vec::new());
    }
    // The positions are integers read from the table, so they are written into the statement.
    let list = positions
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    // The filtered columns from the projection, their texts from `terms`, the rest from the
    // event row itself.
    let sql = format!(
        "SELECT ut.term, a.user_id, ak.term, ac.term, {} \
         FROM audit_log a JOIN event_rows e ON e.position = a.position \
         LEFT JOIN terms ut ON ut.id = a.user_type \
         JOIN terms ak ON ak.id = a.actor_kind \
         JOIN terms ac ON ac.id = a.actor \
         WHERE a.position IN ({list}) ORDER BY a.position DESC",
        StoredRow::COLUMNS_OF_E
    );
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
    rows.iter().map(audit_row).collect()
}

/// One result row: the projection's columns (0 to 3) and the event's (4 on).
fn audit_row(row: &AnyRow) -> Result<AuditRow, sqlx::Error> {
    let stored = StoredRow {
        position: row.try_get(4)?,
        stream: row.try_get(5)?,
        version: row.try_get(6)?,
        event_id: row.try_get(7)?,
        event_type: row.try_get(8)?,
        schema_version: row.try_get(9)?,
        payload: row.try_get(10)?,
        metadata: row.try_get(11)?,
        recorded_at: row.try_get(12)?,
        hash: row.try_get(13)?,
        payload_keys: row.try_get(14)?,
        metadata_context: row.try_get(15)?,
    };
    let recorded = stored
        .decode()
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    // The projector wrote a row only for an event it could decode; should this build no longer
    // read it, the summary says so rather than failing the page.
    let decoded = Decoded::decode(&recorded).unwrap_or(Decoded::Other);
    Ok(AuditRow {
        position: recorded.position,
        summary: summary(&decoded, &recorded.event_type),
        user_type: row.try_get(0)?,
        user_id: row.try_get(1)?,
        actor_kind: row.try_get(2)?,
        actor: row.try_get(3)?,
        client_ip: recorded.metadata.client_ip,
        user_agent: recorded.metadata.user_agent,
        correlation_id: recorded.metadata.correlation_id,
        recorded_at: recorded.recorded_at,
        stream: recorded.stream,
        event_type: recorded.event_type,
    })
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
