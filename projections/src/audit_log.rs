//! `audit_log`: one row per event with who, from where and a readable summary, indexed for the
//! helpdesk's filters. The summary is also what `spse-totp history` prints.

use spse_totp_commands::RecordedEvent;
use spse_totp_domain::account::{cancel_reason_str, LoginStage, RejectReason, ResetBy};
use spse_totp_domain::apikey::ApiKeyEvent;
use spse_totp_domain::reset_log::ResetLogEvent;
use spse_totp_domain::AccountEvent;

use crate::event::Decoded;
use crate::projector::Projector;
use crate::sql;
use crate::statement::Statement;
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
        let (user_type, user_id) = match decoded {
            Decoded::Account(key, _) => (
                Some(key.user_type.as_str()),
                Some(key.user_id.as_str().to_owned()),
            ),
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
