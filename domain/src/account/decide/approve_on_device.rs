//! The account's device approves a login, with the number the portal shows and a fresh code.

use super::rules::{
    approved, ensure_unlocked, failure, pending_login, recognised_device, verify_fresh,
};
use super::{Context, Decision};
use crate::account::error::DomainError;
use crate::account::events::{LoginStage, Method, RejectReason};
use crate::account::state::Account;
use crate::code::{ApprovalNumber, TotpCode};
use crate::ids::{EnrollmentId, LoginId};

#[derive(Debug, Clone)]
pub struct ApproveOnDevice {
    pub login_id: LoginId,
    pub device_token_sha256: String,
    pub code: TotpCode,
    pub number: Option<ApprovalNumber>,
}

/// The bound device's secret.
pub(super) fn secret_needed(account: &Account) -> Option<EnrollmentId> {
    account.device.as_ref().map(|d| d.enrollment_id)
}

pub(super) fn decide(
    account: &Account,
    command: &ApproveOnDevice,
    context: Context<'_>,
) -> Decision {
    let ApproveOnDevice {
        login_id,
        device_token_sha256,
        code,
        number,
    } = command;
    let Context {
        now,
        policy,
        secret,
        ..
    } = context;
    let device = recognised_device(account, device_token_sha256)?;
    let login = pending_login(account, *login_id, now)?;
    if login.stage != LoginStage::Approval {
        return Err(DomainError::WrongStage {
            expected: "activation",
        }
        .into());
    }
    ensure_unlocked(account, now)?;
    if let Some(shown) = login.approval_number {
        let Some(number) = number else {
            return Err(DomainError::NumberRequired.into());
        };
        if *number != shown {
            return Err(failure(
                account,
                Some(*login_id),
                Method::Device,
                RejectReason::NumberMismatch,
                now,
                policy,
            ));
        }
    }
    let step = verify_fresh(
        account,
        secret,
        device.enrollment_id,
        code,
        Some(*login_id),
        Method::Device,
        now,
        policy,
    )?;
    Ok(vec![approved(*login_id, Method::Device, step, now)])
}
