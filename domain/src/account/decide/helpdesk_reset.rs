//! FAQ 5: the helpdesk resets TOTP on the user's written request.

use super::rules::{required, reset};
use super::{Context, Decision};
use crate::account::error::DomainError;
use crate::account::events::ResetBy;
use crate::account::state::Account;

/// FAQ 5: the helpdesk resets TOTP on the user's written request.
#[derive(Debug, Clone)]
pub struct HelpdeskReset {
    pub reason: String,
    pub ticket: String,
}

pub(super) fn decide(account: &Account, command: &HelpdeskReset, context: Context<'_>) -> Decision {
    let now = context.now;
    if account.profile.is_none() {
        return Err(DomainError::AccountNotFound.into());
    }
    let reason = required("reason", &command.reason)?;
    let ticket = required("ticket", &command.ticket)?;
    if !account.has_totp_to_reset(now) {
        return Err(DomainError::NotActive.into());
    }
    Ok(reset(account, ResetBy::Helpdesk { reason, ticket }, now))
}
