//! The rules more than one command applies: the lock, a login that can still be acted on, a code
//! checked against its secret and the replay rule, a counted failure, a reset taking effect.

use chrono::{DateTime, Utc};

use super::OpenedSecret;
use crate::account::error::{DomainError, Rejection};
use crate::account::events::{AccountEvent, CancelReason, Method, RejectReason, ResetBy};
use crate::account::state::{Account, BoundDevice, Login, LoginStatus};
use crate::code::TotpCode;
use crate::ids::{EnrollmentId, LoginId};
use crate::policy::Policy;
use crate::totp;

pub(super) fn required(field: &'static str, value: &str) -> Result<String, DomainError> {
    let value = value.trim();
    if value.is_empty() {
        Err(DomainError::Required(field))
    } else {
        Ok(value.to_owned())
    }
}

/// A reset takes effect at once (DESIGN.md): the binding and any QR code in flight go, and every
/// pending login is cancelled so the old device cannot approve one afterwards.
pub(super) fn reset(account: &Account, by: ResetBy, now: DateTime<Utc>) -> Vec<AccountEvent> {
    let mut events = vec![AccountEvent::TotpReset {
        by,
        enrollment_id: account.device.as_ref().map(|d| d.enrollment_id),
        pending_enrollment_id: account.pending_enrollment.as_ref().map(|e| e.enrollment_id),
        device_label: account.device.as_ref().map(|d| d.label.clone()),
        at: now,
    }];
    events.extend(
        account
            .pending_logins()
            .map(|l| cancelled(l.login_id, CancelReason::Reset, now)),
    );
    events
}

pub(super) fn ensure_unlocked(account: &Account, now: DateTime<Utc>) -> Result<(), DomainError> {
    if account.lockout.until_unlock {
        return Err(DomainError::LockedUntilUnlock);
    }
    match account.lockout.locked_at(now) {
        Some(until) => Err(DomainError::AccountLocked { until }),
        None => Ok(()),
    }
}

/// The login, if it can still be acted on. A login past its time is refused and recorded as
/// expired in the same breath, so the audit trail shows when the service noticed.
pub(super) fn pending_login(
    account: &Account,
    login_id: LoginId,
    now: DateTime<Utc>,
) -> Result<&Login, Rejection> {
    let login = account.login(login_id).ok_or(DomainError::LoginNotFound)?;
    if login.status == LoginStatus::Expired {
        return Err(DomainError::LoginExpired.into());
    }
    if !login.is_pending() {
        return Err(DomainError::LoginNotPending {
            status: login.status,
        }
        .into());
    }
    if login.is_overdue(now) {
        return Err(Rejection::recorded(
            DomainError::LoginExpired,
            vec![AccountEvent::LoginExpired { login_id, at: now }],
        ));
    }
    Ok(login)
}

pub(super) fn recognised_device<'a>(
    account: &'a Account,
    token_sha256: &str,
) -> Result<&'a BoundDevice, DomainError> {
    account
        .device
        .as_ref()
        .filter(|d| d.token_sha256.as_deref() == Some(token_sha256))
        .ok_or(DomainError::DeviceNotRecognised)
}

/// The secret the caller opened, if it is the one this state checks codes against.
pub(super) fn opened(
    secret: Option<&OpenedSecret>,
    enrollment_id: EnrollmentId,
) -> Result<&OpenedSecret, DomainError> {
    secret
        .filter(|s| s.enrollment_id == enrollment_id)
        .ok_or(DomainError::StalePreparation)
}

/// Checks a code against the active secret and the replay rule: a step at or before the last
/// accepted one is refused even when the code is right (RFC 6238 section 5.2), so a code seen
/// over a shoulder or in a proxy log is worth nothing once used.
#[allow(clippy::too_many_arguments)]
pub(super) fn verify_fresh(
    account: &Account,
    secret: Option<&OpenedSecret>,
    enrollment_id: EnrollmentId,
    code: &TotpCode,
    login_id: Option<LoginId>,
    method: Method,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Result<u64, Rejection> {
    let secret = opened(secret, enrollment_id)?;
    match totp::matching_step(&secret.secret, code, now, policy.window_back_steps) {
        None => Err(failure(
            account,
            login_id,
            method,
            RejectReason::WrongCode,
            now,
            policy,
        )),
        Some(step) if account.last_accepted_step.is_some_and(|last| step <= last) => Err(failure(
            account,
            login_id,
            method,
            RejectReason::Replayed,
            now,
            policy,
        )),
        Some(step) => Ok(step),
    }
}

/// One more consecutive failure: recorded, and a lock when it reaches the limit. The count lives
/// in the account's stream, so optimistic concurrency makes it exact across requests and instances.
pub(super) fn failure(
    account: &Account,
    login_id: Option<LoginId>,
    method: Method,
    reason: RejectReason,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Rejection {
    let failed_attempts = account.lockout.failed_attempts + 1;
    let mut record = vec![AccountEvent::CodeRejected {
        login_id,
        method,
        reason,
        failed_attempts,
        at: now,
    }];
    if failed_attempts >= policy.max_failed_attempts {
        let lock_number = account.lockout.locks_in_a_row + 1;
        let until = now + policy.lock_duration(lock_number);
        let until_unlock = lock_number >= policy.max_locks;
        record.push(AccountEvent::AccountLocked {
            until,
            lock_number,
            until_unlock,
            at: now,
        });
        let error = if until_unlock {
            DomainError::LockedUntilUnlock
        } else {
            DomainError::AccountLocked { until }
        };
        Rejection::recorded(error, record)
    } else {
        let attempts_left = policy.max_failed_attempts - failed_attempts;
        let error = match reason {
            RejectReason::Replayed => DomainError::CodeAlreadyUsed { attempts_left },
            RejectReason::WrongCode | RejectReason::NumberMismatch => {
                DomainError::InvalidCode { attempts_left }
            }
        };
        Rejection::recorded(error, record)
    }
}

pub(super) fn expire_overdue(account: &Account, now: DateTime<Utc>) -> Vec<AccountEvent> {
    account
        .pending_logins()
        .filter(|l| l.is_overdue(now))
        .map(|l| AccountEvent::LoginExpired {
            login_id: l.login_id,
            at: now,
        })
        .collect()
}

pub(super) fn approved(
    login_id: LoginId,
    method: Method,
    step: u64,
    at: DateTime<Utc>,
) -> AccountEvent {
    AccountEvent::LoginApproved {
        login_id,
        method,
        step,
        at,
    }
}

pub(super) fn cancelled(
    login_id: LoginId,
    reason: CancelReason,
    at: DateTime<Utc>,
) -> AccountEvent {
    AccountEvent::LoginCancelled {
        login_id,
        reason,
        at,
    }
}
