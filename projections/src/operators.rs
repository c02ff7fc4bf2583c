//! `operators`: one row per console operator (issue 15), what the console and
//! `spse-totp operator list` read.

use chrono::{DateTime, Utc};
use spse_totp_domain::operator::{OperatorEvent, OperatorRole, Username};
use spse_totp_store::RecordedEvent;
use sqlx::AnyPool;
use uuid::Uuid;

use crate::event::Decoded;
use crate::projector::Projector;
use crate::sql;
use crate::statement::Statement;
use crate::time::{to_db, MaybeMicros, Micros};

pub struct OperatorsProjector;

impl Projector for OperatorsProjector {
    fn name(&self) -> &'static str {
        "operators"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["operators"]
    }

    fn project(&self, recorded: &RecordedEvent, decoded: &Decoded) -> Vec<Statement> {
        let Decoded::Operator(username, event) = decoded else {
            return Vec::new();
        };
        let user = username.as_str();
        let at = to_db(recorded.recorded_at);
        let set = |assignments: &'static str| {
            sql!(
                format!("UPDATE operators SET {assignments}, updated_at = $1 WHERE username = $2"),
                at,
                user
            )
        };
        let statement = match event {
            OperatorEvent::OperatorCreated {
                name,
                email,
                role,
                setup_id,
                setup_expires_at,
                ..
            } => sql!(
                "INSERT INTO operators (username, name, email, role, status, setup_id, setup_expires_at, \
                 failed_attempts, locked_until, created_at, last_sign_in_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 'pending', $5, $6, 0, NULL, $7, NULL, $7)",
                user,
                name.as_str(),
                email.as_str(),
                role.as_str(),
                setup_id.to_string(),
                to_db(*setup_expires_at),
                at,
            ),
            OperatorEvent::OperatorTotpActivated { .. } => set(
                "status = 'active', setup_id = NULL, setup_expires_at = NULL, failed_attempts = 0, locked_until = NULL",
            ),
            OperatorEvent::OperatorSignedIn { .. } => sql!(
                "UPDATE operators SET failed_attempts = 0, locked_until = NULL, last_sign_in_at = $1, updated_at = $1, \
                 sign_in_id = NULL, sign_in_started_at = NULL, sign_in_expires_at = NULL, \
                 sign_in_client_ip = NULL, sign_in_user_agent = NULL WHERE username = $2",
                at,
                user,
            ),
            OperatorEvent::OperatorSignInFailed {
                failed_attempts, ..
            } => sql!(
                "UPDATE operators SET failed_attempts = $1, updated_at = $2 WHERE username = $3",
                i64::from(*failed_attempts),
                at,
                user,
            ),
            OperatorEvent::OperatorLocked { until, .. } => sql!(
                "UPDATE operators SET failed_attempts = 0, locked_until = $1, updated_at = $2 WHERE username = $3",
                to_db(*until),
                at,
                user,
            ),
            OperatorEvent::OperatorDisabled { .. } => set(
                "status = 'disabled', setup_id = NULL, setup_expires_at = NULL, sign_in_id = NULL, \
                 sign_in_started_at = NULL, sign_in_expires_at = NULL, sign_in_client_ip = NULL, sign_in_user_agent = NULL",
            ),
            OperatorEvent::OperatorDeviceBound {
                device_id,
                label,
                device_token_sha256,
                at: bound_at,
                ..
            } => sql!(
                "UPDATE operators SET device_id = $1, device_label = $2, device_token_sha256 = $3, \
                 device_bound_at = $4, updated_at = $5 WHERE username = $6",
                device_id.to_string(),
                label.as_str(),
                device_token_sha256.as_str(),
                to_db(*bound_at),
                at,
                user,
            ),
            OperatorEvent::OperatorSignInStarted {
                sign_in_id,
                expires_at,
                at: started_at,
                ..
            } => sql!(
                "UPDATE operators SET sign_in_id = $1, sign_in_started_at = $2, sign_in_expires_at = $3, \
                 sign_in_client_ip = $4, sign_in_user_agent = $5, updated_at = $6 WHERE username = $7",
                sign_in_id.to_string(),
                to_db(*started_at),
                to_db(*expires_at),
                recorded.metadata.client_ip.clone(),
                recorded.metadata.user_agent.clone(),
                at,
                user,
            ),
            // Approved: no longer waiting for the device, though the browser has yet to come.
            OperatorEvent::OperatorSignInApproved { .. }
            | OperatorEvent::OperatorSignInDenied { .. }
            | OperatorEvent::OperatorSignInExpired { .. } => set(
                "sign_in_id = NULL, sign_in_started_at = NULL, sign_in_expires_at = NULL, \
                 sign_in_client_ip = NULL, sign_in_user_agent = NULL",
            ),
            OperatorEvent::OperatorTotpReset {
                setup_id,
                setup_expires_at,
                ..
            } => sql!(
                "UPDATE operators SET status = CASE WHEN status = 'active' THEN 'pending' ELSE status END, \
                 setup_id = $1, setup_expires_at = $2, failed_attempts = 0, locked_until = NULL, updated_at = $3, \
                 device_id = NULL, device_label = NULL, device_token_sha256 = NULL, device_bound_at = NULL, \
                 sign_in_id = NULL, sign_in_started_at = NULL, sign_in_expires_at = NULL, \
                 sign_in_client_ip = NULL, sign_in_user_agent = NULL WHERE username = $4",
                setup_id.to_string(),
                to_db(*setup_expires_at),
                at,
                user,
            ),
            OperatorEvent::OperatorPasswordSet { .. }
            | OperatorEvent::OperatorEnrollmentStarted { .. }
            | OperatorEvent::OperatorSignedOut { .. } => return Vec::new(),
        };
        vec![statement]
    }
}

/// One line for the audit log's readers.
pub fn summary(username: &Username, event: &OperatorEvent) -> String {
    match event {
        OperatorEvent::OperatorCreated { role, .. } => {
            format!("Operator {username} created with role {role}")
        }
        OperatorEvent::OperatorPasswordSet { .. } => format!("Operator {username} set a password"),
        OperatorEvent::OperatorEnrollmentStarted { .. } => {
            format!("Operator {username} was shown a TOTP QR code")
        }
        OperatorEvent::OperatorTotpActivated { .. } => {
            format!("Operator {username} activated TOTP")
        }
        OperatorEvent::OperatorSignedIn { .. } => format!("Operator {username} signed in"),
        OperatorEvent::OperatorSignInFailed {
            reason,
            failed_attempts,
            ..
        } => format!(
            "Operator {username}: sign-in failed ({}), {failed_attempts} in a row",
            reason.as_str()
        ),
        OperatorEvent::OperatorLocked { until, .. } => {
            format!("Operator {username} locked until {}", until.to_rfc3339())
        }
        OperatorEvent::OperatorSignedOut { .. } => format!("Operator {username} signed out"),
        OperatorEvent::OperatorDisabled { .. } => format!("Operator {username} disabled"),
        OperatorEvent::OperatorTotpReset { .. } => {
            format!("Operator {username}: TOTP reset (device unbound), a new setup link issued")
        }
        OperatorEvent::OperatorDeviceBound { label, .. } => {
            format!("Operator {username} bound the device {label}")
        }
        OperatorEvent::OperatorSignInStarted { sign_in_id, .. } => {
            format!("Operator {username}: sign-in {sign_in_id} waits for the device")
        }
        OperatorEvent::OperatorSignInApproved { sign_in_id, .. } => {
            format!("Operator {username}: sign-in {sign_in_id} approved on the device")
        }
        OperatorEvent::OperatorSignInDenied { sign_in_id, .. } => {
            format!("Operator {username}: sign-in {sign_in_id} denied on the device")
        }
        OperatorEvent::OperatorSignInExpired { sign_in_id, .. } => {
            format!("Operator {username}: sign-in {sign_in_id} expired")
        }
    }
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OperatorRow {
    pub username: String,
    pub name: String,
    pub email: String,
    #[sqlx(try_from = "String")]
    pub role: OperatorRole,
    pub status: String,
    pub setup_id: Option<String>,
    #[sqlx(try_from = "MaybeMicros")]
    pub setup_expires_at: Option<DateTime<Utc>>,
    pub failed_attempts: i64,
    #[sqlx(try_from = "MaybeMicros")]
    pub locked_until: Option<DateTime<Utc>>,
    #[sqlx(try_from = "Micros")]
    pub created_at: DateTime<Utc>,
    #[sqlx(try_from = "MaybeMicros")]
    pub last_sign_in_at: Option<DateTime<Utc>>,
    pub device_label: Option<String>,
    #[sqlx(try_from = "MaybeMicros")]
    pub device_bound_at: Option<DateTime<Utc>>,
}

/// The operator's bound device, as a device token finds it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OperatorDeviceRow {
    pub username: String,
    pub device_id: String,
}

pub async fn by_device_token(
    pool: &AnyPool,
    token_sha256: &str,
) -> Result<Option<OperatorDeviceRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT username, device_id FROM operators WHERE device_token_sha256 = $1 AND status = 'active'",
    )
    .bind(token_sha256)
    .fetch_optional(pool)
    .await
}

/// The sign-in waiting for the operator's device, as the device lists it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct WaitingSignIn {
    pub sign_in_id: String,
    #[sqlx(try_from = "Micros")]
    pub started_at: DateTime<Utc>,
    #[sqlx(try_from = "Micros")]
    pub expires_at: DateTime<Utc>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

/// The sign-in waiting for `username`'s device at `now`, if any (one at most).
pub async fn waiting_sign_ins(
    pool: &AnyPool,
    username: &Username,
    now: DateTime<Utc>,
) -> Result<Vec<WaitingSignIn>, sqlx::Error> {
    sqlx::query_as(
        "SELECT sign_in_id, sign_in_started_at AS started_at, sign_in_expires_at AS expires_at, \
         sign_in_client_ip AS client_ip, sign_in_user_agent AS user_agent FROM operators \
         WHERE username = $1 AND sign_in_id IS NOT NULL AND sign_in_expires_at > $2",
    )
    .bind(username.as_str())
    .bind(to_db(now))
    .fetch_all(pool)
    .await
}

/// Up to `limit` device sign-ins whose time was over at `now` and that are still open in the
/// read model: the operator and the sign-in's id, for the sweep to record as expired.
pub async fn overdue_sign_ins(
    pool: &AnyPool,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(Username, Uuid)>, sqlx::Error> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT username, sign_in_id FROM operators \
         WHERE sign_in_id IS NOT NULL AND sign_in_expires_at <= $1 \
         ORDER BY sign_in_expires_at LIMIT $2",
    )
    .bind(to_db(now))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    // A row that does not parse was not written by this service; the sweep leaves it alone.
    Ok(rows
        .into_iter()
        .filter_map(|(username, id)| Some((Username::parse(&username).ok()?, id.parse().ok()?)))
        .collect())
}

impl OperatorRow {
    pub fn locked_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.locked_until.filter(|until| *until > now)
    }
}

const COLUMNS: &str = "username, name, email, role, status, setup_id, setup_expires_at, \
     failed_attempts, locked_until, created_at, last_sign_in_at, device_label, device_bound_at";

pub async fn get(pool: &AnyPool, username: &Username) -> Result<Option<OperatorRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM operators WHERE username = $1"
    ))
    .bind(username.as_str())
    .fetch_optional(pool)
    .await
}

/// The operator whose setup link is `setup_id`, while it works.
pub async fn by_setup_id(
    pool: &AnyPool,
    setup_id: &str,
) -> Result<Option<OperatorRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM operators WHERE setup_id = $1"
    ))
    .bind(setup_id)
    .fetch_optional(pool)
    .await
}

pub async fn list(pool: &AnyPool) -> Result<Vec<OperatorRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM operators ORDER BY username"
    ))
    .fetch_all(pool)
    .await
}
