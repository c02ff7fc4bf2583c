//! `decide`: given the account, a command, the time and the policy, which events happen.
//! Every rule of DESIGN.md that concerns one account is decided here, and nowhere else.

use chrono::{DateTime, Utc};

use super::command::{AccountCommand, OpenedSecret};
use super::error::{DomainError, Rejection};
use super::events::{
    AccountEvent, CancelReason, DeclineReason, LoginStage, MailOutcome, Method, RejectReason,
    ResetBy,
};
use super::state::{Account, Login, LoginStatus, ResetStatus, TotpStatus};
use crate::code::TotpCode;
use crate::ids::{EnrollmentId, LoginId};
use crate::policy::Policy;
use crate::totp;

pub type Decision = Result<Vec<AccountEvent>, Rejection>;

/// Which enrollment's secret the caller must open from the vault before deciding `command`.
/// `None` when the command checks no code, or when it will be refused before any code is checked.
pub fn secret_needed(account: &Account, command: &AccountCommand) -> Option<EnrollmentId> {
    match command {
        AccountCommand::SubmitCode { login_id, .. } => match account.login(*login_id)?.stage {
            LoginStage::Activation => account
                .pending_enrollment
                .as_ref()
                .filter(|e| e.login_id == *login_id)
                .map(|e| e.enrollment_id),
            LoginStage::Approval => account.device.as_ref().map(|d| d.enrollment_id),
        },
        AccountCommand::ActivateDevice { enrollment_id, .. } => account
            .pending_enrollment
            .as_ref()
            .filter(|e| e.enrollment_id == *enrollment_id)
            .map(|e| e.enrollment_id),
        AccountCommand::ApproveOnDevice { .. } | AccountCommand::Disable { .. } => {
            account.device.as_ref().map(|d| d.enrollment_id)
        }
        _ => None,
    }
}

/// Whether starting a login now hands out a QR code, so the caller must seal a new secret first.
pub fn needs_enrollment(account: &Account) -> bool {
    account.totp_status != TotpStatus::Active
}

pub fn decide(
    account: &Account,
    command: &AccountCommand,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Decision {
    match command {
        AccountCommand::StartLogin {
            user_type,
            user_id,
            email,
            name,
            login_id,
            client_ip,
            user_agent,
            enrollment,
            approval_number,
        } => {
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
                let enrollment_id = enrollment.ok_or(DomainError::StalePreparation)?;
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

        AccountCommand::SubmitCode {
            login_id,
            code,
            secret,
        } => {
            let login = pending_login(account, *login_id, now)?;
            ensure_unlocked(account, now)?;
            match login.stage {
                LoginStage::Activation => {
                    let enrollment = account
                        .pending_enrollment
                        .as_ref()
                        .filter(|e| e.login_id == *login_id)
                        .ok_or(DomainError::EnrollmentNotFound)?;
                    if enrollment.expires_at <= now {
                        return Err(DomainError::EnrollmentExpired.into());
                    }
                    let secret = opened(secret, enrollment.enrollment_id)?;
                    match totp::matching_step(&secret.secret, code, now, policy.window_back_steps) {
                        Some(step) => Ok(vec![
                            AccountEvent::TotpActivated {
                                enrollment_id: enrollment.enrollment_id,
                                // A typed-code app never calls back, so its enrollment names it.
                                device_id: crate::ids::DeviceId(enrollment.enrollment_id.0),
                                device_label: "authenticator app".to_owned(),
                                platform: None,
                                method: Method::Code,
                                step,
                                device_token_sha256: None,
                                at: now,
                            },
                            approved(*login_id, Method::Code, step, now),
                        ]),
                        None => Err(failure(
                            account,
                            Some(*login_id),
                            Method::Code,
                            RejectReason::WrongCode,
                            now,
                            policy,
                        )),
                    }
                }
                LoginStage::Approval => {
                    let device = account.device.as_ref().ok_or(DomainError::NotActive)?;
                    let step = verify_fresh(
                        account,
                        secret,
                        device.enrollment_id,
                        code,
                        Some(*login_id),
                        Method::Code,
                        now,
                        policy,
                    )?;
                    Ok(vec![approved(*login_id, Method::Code, step, now)])
                }
            }
        }

        AccountCommand::ActivateDevice {
            enrollment_id,
            code,
            secret,
            device_id,
            device_label,
            platform,
            device_token_sha256,
        } => {
            // FAQ 1: one device per account; a second scan is refused until a reset.
            if account.totp_status == TotpStatus::Active {
                return Err(DomainError::AlreadyActive.into());
            }
            let enrollment = account
                .pending_enrollment
                .as_ref()
                .filter(|e| e.enrollment_id == *enrollment_id)
                .ok_or(DomainError::EnrollmentNotFound)?;
            if enrollment.expires_at <= now {
                let record = expire_overdue(account, now);
                return Err(Rejection::recorded(DomainError::EnrollmentExpired, record));
            }
            ensure_unlocked(account, now)?;
            let secret = opened(secret, *enrollment_id)?;
            let Some(step) =
                totp::matching_step(&secret.secret, code, now, policy.window_back_steps)
            else {
                return Err(failure(
                    account,
                    Some(enrollment.login_id),
                    Method::Device,
                    RejectReason::WrongCode,
                    now,
                    policy,
                ));
            };
            let mut events = vec![AccountEvent::TotpActivated {
                enrollment_id: *enrollment_id,
                device_id: *device_id,
                device_label: device_label.clone(),
                platform: platform.clone(),
                method: Method::Device,
                step,
                device_token_sha256: Some(device_token_sha256.clone()),
                at: now,
            }];
            // Activation completes the login that showed the QR (flow 1, step 5).
            if account
                .login(enrollment.login_id)
                .is_some_and(|l| l.is_pending() && !l.is_overdue(now))
            {
                events.push(approved(enrollment.login_id, Method::Device, step, now));
            }
            Ok(events)
        }

        AccountCommand::ApproveOnDevice {
            login_id,
            device_token_sha256,
            code,
            number,
            secret,
        } => {
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
                if *number != Some(shown) {
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

        AccountCommand::DenyOnDevice {
            login_id,
            device_token_sha256,
        } => {
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

        AccountCommand::CancelLogin { login_id } => {
            pending_login(account, *login_id, now)?;
            Ok(vec![cancelled(*login_id, CancelReason::Portal, now)])
        }

        AccountCommand::ExpireStaleLogins => Ok(expire_overdue(account, now)),

        AccountCommand::Disable {
            login_id,
            code,
            secret,
        } => {
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

        AccountCommand::RequestReset {
            request_id,
            email,
            client_ip,
        } => {
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

        AccountCommand::ConfirmReset { request_id } => {
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

        AccountCommand::HelpdeskReset { reason, ticket } => {
            if account.profile.is_none() {
                return Err(DomainError::AccountNotFound.into());
            }
            let reason = required("reason", reason)?;
            let ticket = required("ticket", ticket)?;
            if !account.has_totp_to_reset(now) {
                return Err(DomainError::NotActive.into());
            }
            Ok(reset(account, ResetBy::Helpdesk { reason, ticket }, now))
        }

        AccountCommand::Unlock { reason } => {
            if account.profile.is_none() {
                return Err(DomainError::AccountNotFound.into());
            }
            let reason = required("reason", reason)?;
            if account.lockout.locked_at(now).is_none() && account.lockout.failed_attempts == 0 {
                return Err(DomainError::NotLocked.into());
            }
            Ok(vec![AccountEvent::AccountUnlocked { reason, at: now }])
        }

        AccountCommand::RecordResetEmail {
            request_id,
            outcome,
        } => {
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

        AccountCommand::RecordNotice {
            notice,
            cause_event_id,
            outcome,
        } => {
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
    }
}

/// Emails compare without surrounding blanks and without case, as mail systems treat them.
fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

fn required(field: &'static str, value: &str) -> Result<String, DomainError> {
    let value = value.trim();
    if value.is_empty() {
        Err(DomainError::Required(field))
    } else {
        Ok(value.to_owned())
    }
}

/// A reset takes effect at once (DESIGN.md): the binding and any QR code in flight go, and every
/// pending login is cancelled so the old device cannot approve one afterwards.
fn reset(account: &Account, by: ResetBy, now: DateTime<Utc>) -> Vec<AccountEvent> {
    let mut events = vec![AccountEvent::TotpReset {
        by,
        enrollment_id: account.device.as_ref().map(|d| d.enrollment_id),
        pending_enrollment_id: account.pending_enrollment.as_ref().map(|e| e.enrollment_id),
        device_label: account.device.as_ref().map(|d| d.label.clone()),
        at: now,
    }];
    events.extend(
        account
            .pending_logins()
            .map(|l| cancelled(l.login_id, CancelReason::Reset, now)),
    );
    events
}

fn ensure_unlocked(account: &Account, now: DateTime<Utc>) -> Result<(), DomainError> {
    match account.lockout.locked_at(now) {
        Some(until) => Err(DomainError::AccountLocked { until }),
        None => Ok(()),
    }
}

/// The login, if it can still be acted on. A login past its time is refused and recorded as
/// expired in the same breath, so the audit trail shows when the service noticed.
fn pending_login(
    account: &Account,
    login_id: LoginId,
    now: DateTime<Utc>,
) -> Result<&Login, Rejection> {
    let login = account.login(login_id).ok_or(DomainError::LoginNotFound)?;
    if login.status == LoginStatus::Expired {
        return Err(DomainError::LoginExpired.into());
    }
    if !login.is_pending() {
        return Err(DomainError::LoginNotPending {
            status: login.status,
        }
        .into());
    }
    if login.is_overdue(now) {
        return Err(Rejection::recorded(
            DomainError::LoginExpired,
            vec![AccountEvent::LoginExpired { login_id, at: now }],
        ));
    }
    Ok(login)
}

fn recognised_device<'a>(
    account: &'a Account,
    token_sha256: &str,
) -> Result<&'a super::state::BoundDevice, DomainError> {
    account
        .device
        .as_ref()
        .filter(|d| d.token_sha256.as_deref() == Some(token_sha256))
        .ok_or(DomainError::DeviceNotRecognised)
}

fn opened(
    secret: &Option<OpenedSecret>,
    enrollment_id: EnrollmentId,
) -> Result<&OpenedSecret, DomainError> {
    secret
        .as_ref()
        .filter(|s| s.enrollment_id == enrollment_id)
        .ok_or(DomainError::StalePreparation)
}

/// Checks a code against the active secret and the replay rule: a step at or before the last
/// accepted one is refused even when the code is right (RFC 6238 section 5.2), so a code seen
/// over a shoulder or in a proxy log is worth nothing once used.
#[allow(clippy::too_many_arguments)]
fn verify_fresh(
    account: &Account,
    secret: &Option<OpenedSecret>,
    enrollment_id: EnrollmentId,
    code: &TotpCode,
    login_id: Option<LoginId>,
    method: Method,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Result<u64, Rejection> {
    let secret = opened(secret, enrollment_id)?;
    match totp::matching_step(&secret.secret, code, now, policy.window_back_steps) {
        None => Err(failure(
            account,
            login_id,
            method,
            RejectReason::WrongCode,
            now,
            policy,
        )),
        Some(step) if account.last_accepted_step.is_some_and(|last| step <= last) => Err(failure(
            account,
            login_id,
            method,
            RejectReason::Replayed,
            now,
            policy,
        )),
        Some(step) => Ok(step),
    }
}

/// One more consecutive failure: recorded, and a lock when it reaches the limit. The count lives
/// in the account's stream, so optimistic concurrency makes it exact across requests and instances.
fn failure(
    account: &Account,
    login_id: Option<LoginId>,
    method: Method,
    reason: RejectReason,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Rejection {
    let failed_attempts = account.lockout.failed_attempts + 1;
    let mut record = vec![AccountEvent::CodeRejected {
        login_id,
        method,
        reason,
        failed_attempts,
        at: now,
    }];
    if failed_attempts >= policy.max_failed_attempts {
        let lock_number = account.lockout.locks_in_a_row + 1;
        let until = now + policy.lock_duration(lock_number);
        record.push(AccountEvent::AccountLocked {
            until,
            lock_number,
            at: now,
        });
        Rejection::recorded(DomainError::AccountLocked { until }, record)
    } else {
        let attempts_left = policy.max_failed_attempts - failed_attempts;
        Rejection::recorded(DomainError::InvalidCode { attempts_left }, record)
    }
}

fn expire_overdue(account: &Account, now: DateTime<Utc>) -> Vec<AccountEvent> {
    account
        .pending_logins()
        .filter(|l| l.is_overdue(now))
        .map(|l| AccountEvent::LoginExpired {
            login_id: l.login_id,
            at: now,
        })
        .collect()
}

fn approved(login_id: LoginId, method: Method, step: u64, at: DateTime<Utc>) -> AccountEvent {
    AccountEvent::LoginApproved {
        login_id,
        method,
        step,
        at,
    }
}

fn cancelled(login_id: LoginId, reason: CancelReason, at: DateTime<Utc>) -> AccountEvent {
    AccountEvent::LoginCancelled {
        login_id,
        reason,
        at,
    }
}
