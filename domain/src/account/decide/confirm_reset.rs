//! Flow 3, step 6: the emailed link is followed, and TOTP is reset.

use super::rules::reset;
use super::{Context, Decision};
use crate::account::error::DomainError;
use crate::account::events::ResetBy;
use crate::account::state::{Account, ResetStatus};
use crate::ids::ResetRequestId;

/// Flow 3, step 6: the emailed link's token checked out (by the caller, with the server key) and
/// names this request.
#[derive(Debug, Clone)]
pub struct ConfirmReset {
    pub request_id: ResetRequestId,
}

pub(super) fn decide(account: &Account, command: &ConfirmReset, context: Context<'_>) -> Decision {
    let ConfirmReset { request_id } = command;
    let now = context.now;
    if account.profile.is_none() {
        return Err(DomainError::AccountNotFound.into());
    }
    let request = account
        .reset_request(*request_id)
        .ok_or(DomainError::ResetLinkUnknown)?;
    match request.status {
        ResetStatus::Used => return Err(DomainError::ResetLinkUsed.into()),
        ResetStatus::Superseded => return Err(DomainError::ResetLinkSuperseded.into()),
        ResetStatus::Pending if request.expires_at <= now => {
            return Err(DomainError::ResetLinkExpired.into())
        }
        ResetStatus::Pending => {}
    }
    Ok(reset(
        account,
        ResetBy::Link {
            request_id: *request_id,
        },
        now,
    ))
}
