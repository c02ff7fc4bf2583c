//! Flow 1 and 2, step 1: the portal checked the password and starts the second factor.

use super::rules::{cancelled, ensure_unlocked, expire_overdue};
use super::{Context, Decision};
use crate::account::error::DomainError;
use crate::account::events::{AccountEvent, CancelReason, LoginStage};
use crate::account::state::{Account, Login, TotpStatus};
use crate::code::ApprovalNumber;
use crate::ids::{LoginId, UserId, UserType};

/// The portal checked the password: start the second factor. `login_id` and `approval_number`
/// are fresh and random, made by the caller when it builds the command.
#[derive(Debug, Clone)]
pub struct StartLogin {
    pub user_type: UserType,
    pub user_id: UserId,
    pub email: Option<String>,
    pub name: Option<String>,
    pub login_id: LoginId,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub approval_number: ApprovalNumber,
}

/// Whether starting a login now hands out a QR code, so the caller must seal a new secret first.
pub(super) fn needs_enrollment(account: &Account) -> bool {
    account.totp_status != TotpStatus::Active
}

pub(super) fn decide(account: &Account, command: &StartLogin, context: Context<'_>) -> Decision {
    let StartLogin {
        user_type,
        user_id,
        email,
        name,
        login_id,
        client_ip,
        user_agent,
        approval_number,
    } = command;
    let Context { now, policy, .. } = context;
    ensure_unlocked(account, now)?;
    let mut events = Vec::new();
    match &account.profile {
        None => events.push(AccountEvent::AccountRegistered {
            user_type: *user_type,
            user_id: user_id.clone(),
            email: email.clone(),
            name: name.clone(),
        }),
        Some(profile) => {
            let changed_email = email
                .as_ref()
                .filter(|e| profile.email.as_ref() != Some(*e));
            let changed_name = name.as_ref().filter(|n| profile.name.as_ref() != Some(*n));
            if changed_email.is_some() || changed_name.is_some() {
                events.push(AccountEvent::ProfileUpdated {
                    email: changed_email.cloned(),
                    name: changed_name.cloned(),
                });
            }
        }
    }
    events.extend(expire_overdue(account, now));
    let expires_at = now + policy.login_ttl;
    let live: Vec<&Login> = account
        .pending_logins()
        .filter(|l| !l.is_overdue(now))
        .collect();
    if needs_enrollment(account) {
        let enrollment_id = context.enrollment.ok_or(DomainError::StalePreparation)?;
        // A new QR code replaces the old one: the old login's code could never activate.
        for old in live.iter().filter(|l| l.stage == LoginStage::Activation) {
            events.push(cancelled(old.login_id, CancelReason::Superseded, now));
        }
        events.push(AccountEvent::EnrollmentStarted {
            enrollment_id,
            login_id: *login_id,
            expires_at: now + policy.enrollment_ttl.min(policy.login_ttl),
        });
        events.push(AccountEvent::LoginStarted {
            login_id: *login_id,
            stage: LoginStage::Activation,
            expires_at,
            approval_number: None,
            client_ip: client_ip.clone(),
            user_agent: user_agent.clone(),
            at: now,
        });
    } else {
        let waiting = live.len();
        let excess = (waiting + 1).saturating_sub(policy.max_pending_logins);
        for old in live.iter().take(excess) {
            events.push(cancelled(old.login_id, CancelReason::Superseded, now));
        }
        events.push(AccountEvent::LoginStarted {
            login_id: *login_id,
            stage: LoginStage::Approval,
            expires_at,
            approval_number: policy.number_matching.then_some(*approval_number),
            client_ip: client_ip.clone(),
            user_agent: user_agent.clone(),
            at: now,
        });
    }
    Ok(events)
}
