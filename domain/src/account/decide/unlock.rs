//! The helpdesk lifts a lock, or clears failures short of one.

use super::rules::required;
use super::{Context, Decision};
use crate::account::error::DomainError;
use crate::account::events::AccountEvent;
use crate::account::state::Account;

/// The helpdesk lifts a lock.
#[derive(Debug, Clone)]
pub struct Unlock {
    pub reason: String,
}

pub(super) fn decide(account: &Account, command: &Unlock, context: Context<'_>) -> Decision {
    let now = context.now;
    if account.profile.is_none() {
        return Err(DomainError::AccountNotFound.into());
    }
    let reason = required("reason", &command.reason)?;
    if !account.lockout.is_locked(now) && account.lockout.failed_attempts == 0 {
        return Err(DomainError::NotLocked.into());
    }
    Ok(vec![AccountEvent::AccountUnlocked { reason, at: now }])
}
