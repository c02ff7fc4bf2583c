//! A push-capable app scanned the QR code and proves it with its first code.

use super::rules::{approved, ensure_unlocked, expire_overdue, failure, opened};
use super::{Context, Decision};
use crate::account::error::{DomainError, Rejection};
use crate::account::events::{AccountEvent, Method, RejectReason};
use crate::account::state::{Account, TotpStatus};
use crate::code::TotpCode;
use crate::ids::{DeviceId, EnrollmentId};
use crate::totp;

/// A push-capable app scanned the QR code and proves it with its first code. The device token is
/// made by the caller, which keeps only its digest here and shows the token to the device once.
#[derive(Debug, Clone)]
pub struct ActivateDevice {
    pub enrollment_id: EnrollmentId,
    pub code: TotpCode,
    pub device_id: DeviceId,
    pub device_label: String,
    pub platform: Option<String>,
    pub device_token_sha256: String,
}

/// The QR code's secret, while the enrollment it names is the one pending.
pub(super) fn secret_needed(account: &Account, command: &ActivateDevice) -> Option<EnrollmentId> {
    account
        .pending_enrollment
        .as_ref()
        .filter(|e| e.enrollment_id == command.enrollment_id)
        .map(|e| e.enrollment_id)
}

pub(super) fn decide(
    account: &Account,
    command: &ActivateDevice,
    context: Context<'_>,
) -> Decision {
    let ActivateDevice {
        enrollment_id,
        code,
        device_id,
        device_label,
        platform,
        device_token_sha256,
    } = command;
    let Context {
        now,
        policy,
        secret,
        ..
    } = context;
    // FAQ 1: one device per account; a second scan is refused until a reset.
    if account.totp_status == TotpStatus::Active {
        return Err(DomainError::AlreadyActive.into());
    }
    let enrollment = account
        .pending_enrollment
        .as_ref()
        .filter(|e| e.enrollment_id == *enrollment_id)
        .ok_or(DomainError::EnrollmentNotFound)?;
    if enrollment.expires_at <= now {
        let record = expire_overdue(account, now);
        return Err(Rejection::recorded(DomainError::EnrollmentExpired, record));
    }
    ensure_unlocked(account, now)?;
    let secret = opened(secret, *enrollment_id)?;
    let Some(step) = totp::matching_step(&secret.secret, code, now, policy.window_back_steps)
    else {
        return Err(failure(
            account,
            Some(enrollment.login_id),
            Method::Device,
            RejectReason::WrongCode,
            now,
            policy,
        ));
    };
    let mut events = vec![AccountEvent::TotpActivated {
        enrollment_id: *enrollment_id,
        device_id: *device_id,
        device_label: device_label.clone(),
        platform: platform.clone(),
        method: Method::Device,
        step,
        device_token_sha256: Some(device_token_sha256.clone()),
        at: now,
    }];
    // Activation completes the login that showed the QR (flow 1, step 5).
    if account
        .login(enrollment.login_id)
        .is_some_and(|l| l.is_pending() && !l.is_overdue(now))
    {
        events.push(approved(enrollment.login_id, Method::Device, step, now));
    }
    Ok(events)
}
