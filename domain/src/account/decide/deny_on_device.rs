//! The account's device denies a login its user did not start. No failure is counted.

use super::rules::{pending_login, recognised_device};
use super::{Context, Decision};
use crate::account::error::DomainError;
use crate::account::events::{AccountEvent, LoginStage};
use crate::account::state::Account;
use crate::ids::LoginId;

#[derive(Debug, Clone)]
pub struct DenyOnDevice {
    pub login_id: LoginId,
    pub device_token_sha256: String,
}

pub(super) fn decide(account: &Account, command: &DenyOnDevice, context: Context<'_>) -> Decision {
    let DenyOnDevice {
        login_id,
        device_token_sha256,
    } = command;
    let now = context.now;
    let device = recognised_device(account, device_token_sha256)?;
    let login = pending_login(account, *login_id, now)?;
    if login.stage != LoginStage::Approval {
        return Err(DomainError::WrongStage {
            expected: "activation",
        }
        .into());
    }
    Ok(vec![AccountEvent::LoginDenied {
        login_id: *login_id,
        device_id: device.device_id,
        at: now,
    }])
}
