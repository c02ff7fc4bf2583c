//! The mailer reports what became of a security notice.

use super::{Context, Decision};
use crate::account::error::DomainError;
use crate::account::events::{AccountEvent, MailOutcome, NoticeKind};
use crate::account::state::Account;

/// The mailer reports on a security notice.
#[derive(Debug, Clone)]
pub struct RecordNotice {
    pub notice: NoticeKind,
    pub cause_event_id: uuid::Uuid,
    pub outcome: MailOutcome,
}

pub(super) fn decide(account: &Account, command: &RecordNotice, context: Context<'_>) -> Decision {
    let RecordNotice {
        notice,
        cause_event_id,
        outcome,
    } = command;
    let now = context.now;
    if account.profile.is_none() {
        return Err(DomainError::AccountNotFound.into());
    }
    Ok(vec![match outcome.clone() {
        MailOutcome::Sent { message_id } => AccountEvent::NoticeEmailSent {
            notice: *notice,
            cause_event_id: *cause_event_id,
            message_id,
            at: now,
        },
        MailOutcome::Failed {
            attempt,
            error,
            retry_at,
        } => AccountEvent::NoticeEmailFailed {
            notice: *notice,
            cause_event_id: *cause_event_id,
            attempt,
            error,
            retry_at,
            at: now,
        },
    }])
}
