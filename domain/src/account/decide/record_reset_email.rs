//! The mailer reports what became of a reset link's email.

use super::{Context, Decision};
use crate::account::error::DomainError;
use crate::account::events::{AccountEvent, MailOutcome};
use crate::account::state::Account;
use crate::ids::ResetRequestId;

/// The mailer reports on a reset link.
#[derive(Debug, Clone)]
pub struct RecordResetEmail {
    pub request_id: ResetRequestId,
    pub outcome: MailOutcome,
}

pub(super) fn decide(
    account: &Account,
    command: &RecordResetEmail,
    context: Context<'_>,
) -> Decision {
    let RecordResetEmail {
        request_id,
        outcome,
    } = command;
    let now = context.now;
    if account.profile.is_none() {
        return Err(DomainError::AccountNotFound.into());
    }
    Ok(vec![match outcome.clone() {
        MailOutcome::Sent { message_id } => AccountEvent::ResetEmailSent {
            request_id: *request_id,
            message_id,
            at: now,
        },
        MailOutcome::Failed {
            attempt,
            error,
            retry_at,
        } => AccountEvent::ResetEmailFailed {
            request_id: *request_id,
            attempt,
            error,
            retry_at,
            at: now,
        },
    }])
}
