//! Flow 3, step 2: someone asks for a reset link to be mailed.

use super::{Context, Decision};
use crate::account::error::DomainError;
use crate::account::events::{AccountEvent, DeclineReason};
use crate::account::state::Account;
use crate::ids::ResetRequestId;

/// Flow 3, step 2: someone asks for a reset link to be mailed. `request_id` is fresh and random,
/// made by the caller when it builds the command.
#[derive(Debug, Clone)]
pub struct RequestReset {
    pub request_id: ResetRequestId,
    pub email: String,
    pub client_ip: Option<String>,
}

/// Emails compare without surrounding blanks and without case, as mail systems treat them.
fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

pub(super) fn decide(account: &Account, command: &RequestReset, context: Context<'_>) -> Decision {
    let RequestReset {
        request_id,
        email,
        client_ip,
    } = command;
    let Context { now, policy, .. } = context;
    let profile = account
        .profile
        .as_ref()
        .ok_or(DomainError::AccountNotFound)?;
    let declined = |reason| {
        Ok(vec![AccountEvent::ResetRequestDeclined {
            reason,
            client_ip: client_ip.clone(),
            at: now,
        }])
    };
    let on_record = profile.email.as_deref().map(normalise_email);
    if on_record.is_none() || on_record != Some(normalise_email(email)) {
        return declined(DeclineReason::EmailMismatch);
    }
    if !account.has_totp_to_reset(now) {
        return declined(DeclineReason::NothingToReset);
    }
    // Counted from the stream itself, so parallel requests on any instance meet one
    // count: the append's expected version makes the last one decide again.
    let hour_ago = now - chrono::Duration::hours(1);
    let recent = account
        .reset_requests
        .iter()
        .filter(|r| r.requested_at > hour_ago)
        .count();
    if recent >= policy.reset_max_per_hour as usize {
        return declined(DeclineReason::TooManyRequests);
    }
    Ok(vec![AccountEvent::ResetRequested {
        request_id: *request_id,
        email: profile.email.clone().unwrap_or_default(),
        client_ip: client_ip.clone(),
        expires_at: now + policy.reset_ttl,
        at: now,
    }])
}
