//! FAQ 4: the user turns TOTP off, proving it with a recent approved login and a fresh code.

use super::rules::{cancelled, ensure_unlocked, verify_fresh};
use super::{Context, Decision};
use crate::account::error::DomainError;
use crate::account::events::{AccountEvent, CancelReason, Method};
use crate::account::state::{Account, LoginStatus};
use crate::code::TotpCode;
use crate::ids::{EnrollmentId, LoginId};

#[derive(Debug, Clone)]
pub struct Disable {
    pub login_id: LoginId,
    pub code: TotpCode,
}

/// The bound device's secret.
pub(super) fn secret_needed(account: &Account) -> Option<EnrollmentId> {
    account.device.as_ref().map(|d| d.enrollment_id)
}

pub(super) fn decide(account: &Account, command: &Disable, context: Context<'_>) -> Decision {
    let Disable { login_id, code } = command;
    let Context {
        now,
        policy,
        secret,
        ..
    } = context;
    let device = account.device.as_ref().ok_or(DomainError::NotActive)?;
    let recent = DomainError::RecentLoginRequired {
        minutes: policy.disable_login_max_age.num_minutes(),
    };
    let login = account.login(*login_id).ok_or(recent.clone())?;
    let fresh = login.status == LoginStatus::Approved
        && login
            .decided_at
            .is_some_and(|at| now - at <= policy.disable_login_max_age);
    if !fresh {
        return Err(recent.into());
    }
    ensure_unlocked(account, now)?;
    verify_fresh(
        account,
        secret,
        device.enrollment_id,
        code,
        Some(*login_id),
        Method::Code,
        now,
        policy,
    )?;
    let mut events = vec![AccountEvent::TotpDisabled {
        enrollment_id: device.enrollment_id,
        login_id: *login_id,
        at: now,
    }];
    // Disabling takes effect at once: nothing still waiting may be approved afterwards.
    events.extend(
        account
            .pending_logins()
            .map(|l| cancelled(l.login_id, CancelReason::Disabled, now)),
    );
    Ok(events)
}
