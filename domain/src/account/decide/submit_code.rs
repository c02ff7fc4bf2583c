//! The user typed a code into the portal: it activates or approves, as the login needs.

use super::rules::{approved, ensure_unlocked, failure, opened, pending_login, verify_fresh};
use super::{Context, Decision};
use crate::account::error::DomainError;
use crate::account::events::{AccountEvent, LoginStage, Method, RejectReason};
use crate::account::state::Account;
use crate::code::TotpCode;
use crate::ids::{DeviceId, EnrollmentId, LoginId};
use crate::totp;

/// The user typed a code into the portal: activates or approves, as the login needs.
#[derive(Debug, Clone)]
pub struct SubmitCode {
    pub login_id: LoginId,
    pub code: TotpCode,
}

/// The QR code's secret on an activation login, the device's on an approval login.
pub(super) fn secret_needed(account: &Account, command: &SubmitCode) -> Option<EnrollmentId> {
    match account.login(command.login_id)?.stage {
        LoginStage::Activation => account
            .pending_enrollment
            .as_ref()
            .filter(|e| e.login_id == command.login_id)
            .map(|e| e.enrollment_id),
        LoginStage::Approval => account.device.as_ref().map(|d| d.enrollment_id),
    }
}

pub(super) fn decide(account: &Account, command: &SubmitCode, context: Context<'_>) -> Decision {
    let SubmitCode { login_id, code } = command;
    let Context {
        now,
        policy,
        secret,
        ..
    } = context;
    let login = pending_login(account, *login_id, now)?;
    ensure_unlocked(account, now)?;
    match login.stage {
        LoginStage::Activation => {
            let enrollment = account
                .pending_enrollment
                .as_ref()
                .filter(|e| e.login_id == *login_id)
                .ok_or(DomainError::EnrollmentNotFound)?;
            if enrollment.expires_at <= now {
                return Err(DomainError::EnrollmentExpired.into());
            }
            let secret = opened(secret, enrollment.enrollment_id)?;
            match totp::matching_step(&secret.secret, code, now, policy.window_back_steps) {
                Some(step) => Ok(vec![
                    AccountEvent::TotpActivated {
                        enrollment_id: enrollment.enrollment_id,
                        // A typed-code app never calls back, so its enrollment names it.
                        device_id: DeviceId(enrollment.enrollment_id.0),
                        device_label: "authenticator app".to_owned(),
                        platform: None,
                        method: Method::Code,
                        step,
                        device_token_sha256: None,
                        at: now,
                    },
                    approved(*login_id, Method::Code, step, now),
                ]),
                None => Err(failure(
                    account,
                    Some(*login_id),
                    Method::Code,
                    RejectReason::WrongCode,
                    now,
                    policy,
                )),
            }
        }
        LoginStage::Approval => {
            let device = account.device.as_ref().ok_or(DomainError::NotActive)?;
            let step = verify_fresh(
                account,
                secret,
                device.enrollment_id,
                code,
                Some(*login_id),
                Method::Code,
                now,
                policy,
            )?;
            Ok(vec![approved(*login_id, Method::Code, step, now)])
        }
    }
}
