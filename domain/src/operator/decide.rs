//! The operator's commands and the one pure function that decides them. What needs IO (the
//! password hash checked, the secret opened, a new secret sealed) is done by the caller first
//! and handed in through [`OperatorContext`].

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::events::{OperatorEvent, SignInFailure};
use super::state::{DeviceSignIn, Operator, OperatorStatus};
use super::{OperatorError, OperatorRejection, OperatorRole, Username, MIN_PASSWORD_CHARS};
use crate::account::OpenedSecret;
use crate::code::{ApprovalNumber, TotpCode};
use crate::ids::EnrollmentId;
use crate::policy::Policy;
use crate::totp;

/// How long a setup link works (issue 15).
pub const SETUP_LINK_TTL_HOURS: i64 = 24;

#[derive(Debug, Clone, PartialEq)]
pub enum OperatorCommand {
    Create {
        username: Username,
        name: String,
        email: String,
        role: OperatorRole,
        setup_id: Uuid,
    },
    /// On the setup link: the chosen password's length (the hash is the caller's business).
    SetPassword {
        setup_id: Uuid,
        password_chars: usize,
    },
    /// On the setup link, after the password: a QR code for the caller's newly sealed secret.
    StartEnrollment {
        setup_id: Uuid,
        enrollment_id: EnrollmentId,
    },
    ActivateTotp {
        setup_id: Uuid,
        code: TotpCode,
    },
    /// Username, password and code on the sign-in form.
    SignIn {
        code: TotpCode,
    },
    /// The device API's activation with the scanned QR code's first code: activates TOTP like
    /// `ActivateTotp` and binds the device that holds `device_token_sha256`'s token.
    BindDevice {
        enrollment_id: EnrollmentId,
        code: TotpCode,
        device_id: Uuid,
        label: String,
        platform: Option<String>,
        device_token_sha256: String,
    },
    /// Username and password without a code: the device is asked to approve.
    StartDeviceSignIn {
        sign_in_id: Uuid,
        number: ApprovalNumber,
        browser_sha256: String,
    },
    ApproveOnDevice {
        sign_in_id: Uuid,
        device_token_sha256: String,
        code: TotpCode,
        number: Option<ApprovalNumber>,
    },
    DenyOnDevice {
        sign_in_id: Uuid,
        device_token_sha256: String,
    },
    /// The waiting browser asks how its sign-in went: approved becomes signed in (once),
    /// past the login time becomes expired.
    FinishDeviceSignIn {
        sign_in_id: Uuid,
        browser_sha256: String,
    },
    /// Nobody finished the sign-in within the login time (the browser was closed, the device
    /// never answered): the sweep records that it expired, so its end is in the stream too.
    ExpireDeviceSignIn {
        sign_in_id: Uuid,
    },
    /// The waiting browser types a code instead: the password was checked when it started.
    CodeForDeviceSignIn {
        sign_in_id: Uuid,
        browser_sha256: String,
        code: TotpCode,
    },
    SignOut,
    Disable,
    ResetTotp {
        setup_id: Uuid,
    },
}

/// What the decision is made with besides the state and the command.
#[derive(Debug, Clone, Copy)]
pub struct OperatorContext<'a> {
    pub now: DateTime<Utc>,
    pub policy: &'a Policy,
    /// The secret of the enrollment the command checks a code against, opened by the caller.
    pub secret: Option<&'a OpenedSecret>,
    /// For a sign-in: whether the password matched the stored hash.
    pub password_matches: bool,
}

fn required(field: &'static str, value: &str) -> Result<String, OperatorError> {
    let value = value.trim();
    if value.is_empty() {
        Err(OperatorError::Required(field))
    } else {
        Ok(value.to_owned())
    }
}

/// The setup link, if it works at `now`: a replaced or used link is unknown, an old one expired.
fn setup_link(op: &Operator, setup_id: Uuid, now: DateTime<Utc>) -> Result<(), OperatorError> {
    if op.status != OperatorStatus::Pending {
        return Err(OperatorError::SetupLinkUnknown);
    }
    let link = op
        .setup_link(setup_id)
        .ok_or(OperatorError::SetupLinkUnknown)?;
    if link.expires_at <= now {
        return Err(OperatorError::SetupLinkExpired);
    }
    Ok(())
}

/// A failed sign-in counts exactly as a user's wrong code does: the same limit, the same
/// doubling lock (DESIGN.md), kept in the operator's own stream so it is exact across instances.
fn failure(op: &Operator, reason: SignInFailure, ctx: &OperatorContext) -> OperatorRejection {
    failure_after(op, reason, ctx, Vec::new())
}

/// A failure recorded after `before` (a denial's own event).
fn failure_after(
    op: &Operator,
    reason: SignInFailure,
    ctx: &OperatorContext,
    mut record: Vec<OperatorEvent>,
) -> OperatorRejection {
    let failed_attempts = op.lockout.failed_attempts + 1;
    record.push(OperatorEvent::OperatorSignInFailed {
        reason,
        failed_attempts,
        at: ctx.now,
    });
    if failed_attempts >= ctx.policy.max_failed_attempts {
        let lock_number = op.lockout.locks_in_a_row + 1;
        let until = ctx.now + ctx.policy.lock_duration(lock_number);
        record.push(OperatorEvent::OperatorLocked {
            until,
            lock_number,
            at: ctx.now,
        });
        OperatorRejection {
            error: OperatorError::Locked { until },
            record,
        }
    } else {
        OperatorRejection {
            error: OperatorError::SignInRefused {
                attempts_left: ctx.policy.max_failed_attempts - failed_attempts,
            },
            record,
        }
    }
}

/// The step of `code` under the opened secret of `enrollment_id`, if fresh (RFC 6238 5.2).
fn fresh_step(
    op: &Operator,
    enrollment_id: EnrollmentId,
    code: &TotpCode,
    ctx: &OperatorContext,
) -> Result<Result<u64, SignInFailure>, OperatorError> {
    let secret = ctx
        .secret
        .filter(|s| s.enrollment_id == enrollment_id)
        .ok_or(OperatorError::StalePreparation)?;
    Ok(
        match totp::matching_step(&secret.secret, code, ctx.now, ctx.policy.window_back_steps) {
            None => Err(SignInFailure::WrongCode),
            Some(step) if op.last_accepted_step.is_some_and(|last| step <= last) => {
                Err(SignInFailure::ReplayedCode)
            }
            Some(step) => Ok(step),
        },
    )
}

/// An active operator, not locked: who may sign in at all.
fn may_sign_in(op: &Operator, now: DateTime<Utc>) -> Result<(), OperatorError> {
    match op.status {
        OperatorStatus::Absent => return Err(OperatorError::NotFound),
        OperatorStatus::Disabled => return Err(OperatorError::Disabled),
        OperatorStatus::Pending => return Err(OperatorError::NotActive),
        OperatorStatus::Active => {}
    }
    match op.lockout.locked_at(now) {
        Some(until) => Err(OperatorError::Locked { until }),
        None => Ok(()),
    }
}

/// The waiting sign-in `sign_in_id`; past its time it ends as expired (the record says so).
fn waiting(
    op: &Operator,
    sign_in_id: Uuid,
    now: DateTime<Utc>,
) -> Result<&DeviceSignIn, OperatorRejection> {
    let sign_in = op
        .sign_in
        .as_ref()
        .filter(|s| s.sign_in_id == sign_in_id)
        .ok_or(OperatorError::SignInUnknown)?;
    if sign_in.expires_at <= now {
        return Err(OperatorRejection {
            error: OperatorError::SignInExpired,
            record: vec![OperatorEvent::OperatorSignInExpired {
                sign_in_id,
                at: now,
            }],
        });
    }
    Ok(sign_in)
}

/// The device behind `token_sha256`, if it is the operator's bound device.
fn bound_device(op: &Operator, token_sha256: &str) -> Result<(), OperatorError> {
    match &op.device {
        Some(device) if device.token_sha256 == token_sha256 => Ok(()),
        _ => Err(OperatorError::WrongDevice),
    }
}

pub fn decide(
    op: &Operator,
    command: &OperatorCommand,
    ctx: OperatorContext,
) -> Result<Vec<OperatorEvent>, OperatorRejection> {
    let now = ctx.now;
    let exists = op.status != OperatorStatus::Absent;
    match command {
        OperatorCommand::Create {
            username,
            name,
            email,
            role,
            setup_id,
        } => {
            if exists {
                return Err(OperatorError::AlreadyExists.into());
            }
            Ok(vec![OperatorEvent::OperatorCreated {
                username: username.clone(),
                name: required("name", name)?,
                email: required("email", email)?,
                role: *role,
                setup_id: *setup_id,
                setup_expires_at: now + Duration::hours(SETUP_LINK_TTL_HOURS),
                at: now,
            }])
        }
        OperatorCommand::SetPassword {
            setup_id,
            password_chars,
        } => {
            setup_link(op, *setup_id, now)?;
            if *password_chars < MIN_PASSWORD_CHARS {
                return Err(OperatorError::PasswordTooShort(MIN_PASSWORD_CHARS).into());
            }
            Ok(vec![OperatorEvent::OperatorPasswordSet { at: now }])
        }
        OperatorCommand::StartEnrollment {
            setup_id,
            enrollment_id,
        } => {
            setup_link(op, *setup_id, now)?;
            if !op.password_set {
                return Err(OperatorError::PasswordNotSet.into());
            }
            Ok(vec![OperatorEvent::OperatorEnrollmentStarted {
                enrollment_id: *enrollment_id,
                expires_at: now + ctx.policy.enrollment_ttl,
                at: now,
            }])
        }
        OperatorCommand::ActivateTotp { setup_id, code } => {
            setup_link(op, *setup_id, now)?;
            let enrollment = op
                .pending_enrollment
                .as_ref()
                .ok_or(OperatorError::EnrollmentExpired)?;
            if enrollment.expires_at <= now {
                return Err(OperatorError::EnrollmentExpired.into());
            }
            match fresh_step(op, enrollment.enrollment_id, code, &ctx)? {
                Ok(step) => Ok(vec![OperatorEvent::OperatorTotpActivated {
                    enrollment_id: enrollment.enrollment_id,
                    step,
                    at: now,
                }]),
                Err(_) => Err(OperatorError::InvalidCode.into()),
            }
        }
        OperatorCommand::SignIn { code } => {
            match op.status {
                OperatorStatus::Absent => return Err(OperatorError::NotFound.into()),
                OperatorStatus::Disabled => return Err(OperatorError::Disabled.into()),
                OperatorStatus::Pending => return Err(OperatorError::NotActive.into()),
                OperatorStatus::Active => {}
            }
            if let Some(until) = op.lockout.locked_at(now) {
                return Err(OperatorError::Locked { until }.into());
            }
            if !ctx.password_matches {
                return Err(failure(op, SignInFailure::WrongPassword, &ctx));
            }
            let enrollment_id = op.enrollment_id.ok_or(OperatorError::NotActive)?;
            match fresh_step(op, enrollment_id, code, &ctx)? {
                Ok(step) => Ok(vec![OperatorEvent::OperatorSignedIn {
                    step,
                    sign_in_id: None,
                    at: now,
                }]),
                Err(reason) => Err(failure(op, reason, &ctx)),
            }
        }
        OperatorCommand::BindDevice {
            enrollment_id,
            code,
            device_id,
            label,
            platform,
            device_token_sha256,
        } => {
            // The setup link must still work: a device binds only while the operator sets up.
            let link = op.setup.as_ref().ok_or(OperatorError::SetupLinkUnknown)?;
            setup_link(op, link.setup_id, now)?;
            let enrollment = op
                .pending_enrollment
                .as_ref()
                .filter(|e| e.enrollment_id == *enrollment_id)
                .ok_or(OperatorError::EnrollmentExpired)?;
            if enrollment.expires_at <= now {
                return Err(OperatorError::EnrollmentExpired.into());
            }
            match fresh_step(op, enrollment.enrollment_id, code, &ctx)? {
                Ok(step) => Ok(vec![
                    OperatorEvent::OperatorTotpActivated {
                        enrollment_id: enrollment.enrollment_id,
                        step,
                        at: now,
                    },
                    OperatorEvent::OperatorDeviceBound {
                        device_id: *device_id,
                        label: required("device_label", label)?,
                        platform: platform.clone(),
                        device_token_sha256: device_token_sha256.clone(),
                        at: now,
                    },
                ]),
                Err(_) => Err(OperatorError::InvalidCode.into()),
            }
        }
        OperatorCommand::StartDeviceSignIn {
            sign_in_id,
            number,
            browser_sha256,
        } => {
            may_sign_in(op, now)?;
            if !ctx.password_matches {
                return Err(failure(op, SignInFailure::WrongPassword, &ctx));
            }
            if op.device.is_none() {
                return Err(OperatorError::NoDevice.into());
            }
            Ok(vec![OperatorEvent::OperatorSignInStarted {
                sign_in_id: *sign_in_id,
                number: *number,
                browser_sha256: browser_sha256.clone(),
                expires_at: now + ctx.policy.login_ttl,
                at: now,
            }])
        }
        OperatorCommand::ApproveOnDevice {
            sign_in_id,
            device_token_sha256,
            code,
            number,
        } => {
            bound_device(op, device_token_sha256)?;
            may_sign_in(op, now)?;
            let sign_in = waiting(op, *sign_in_id, now)?;
            if sign_in.approved_step.is_some() {
                return Ok(Vec::new());
            }
            let Some(number) = number else {
                return Err(OperatorError::NumberRequired.into());
            };
            if *number != sign_in.number {
                return Err(failure(op, SignInFailure::WrongNumber, &ctx));
            }
            let enrollment_id = op.enrollment_id.ok_or(OperatorError::NotActive)?;
            match fresh_step(op, enrollment_id, code, &ctx)? {
                Ok(step) => Ok(vec![OperatorEvent::OperatorSignInApproved {
                    sign_in_id: *sign_in_id,
                    step,
                    at: now,
                }]),
                Err(reason) => Err(failure(op, reason, &ctx)),
            }
        }
        OperatorCommand::DenyOnDevice {
            sign_in_id,
            device_token_sha256,
        } => {
            bound_device(op, device_token_sha256)?;
            let sign_in = waiting(op, *sign_in_id, now)?;
            if sign_in.approved_step.is_some() {
                return Err(OperatorError::SignInUnknown.into());
            }
            let denied = vec![OperatorEvent::OperatorSignInDenied {
                sign_in_id: *sign_in_id,
                at: now,
            }];
            Err(failure_after(
                op,
                SignInFailure::DeniedOnDevice,
                &ctx,
                denied,
            ))
        }
        OperatorCommand::FinishDeviceSignIn {
            sign_in_id,
            browser_sha256,
        } => {
            let sign_in = waiting(op, *sign_in_id, now)?;
            if sign_in.browser_sha256 != *browser_sha256 {
                return Err(OperatorError::SignInUnknown.into());
            }
            may_sign_in(op, now)?;
            match sign_in.approved_step {
                Some(step) => Ok(vec![OperatorEvent::OperatorSignedIn {
                    step,
                    sign_in_id: Some(*sign_in_id),
                    at: now,
                }]),
                None => Err(OperatorError::SignInWaiting.into()),
            }
        }
        OperatorCommand::ExpireDeviceSignIn { sign_in_id } => {
            match op.sign_in.as_ref().filter(|s| s.sign_in_id == *sign_in_id) {
                Some(sign_in) if sign_in.expires_at <= now => {
                    Ok(vec![OperatorEvent::OperatorSignInExpired {
                        sign_in_id: *sign_in_id,
                        at: now,
                    }])
                }
                Some(_) => Err(OperatorError::SignInWaiting.into()),
                None => Err(OperatorError::SignInUnknown.into()),
            }
        }
        OperatorCommand::CodeForDeviceSignIn {
            sign_in_id,
            browser_sha256,
            code,
        } => {
            let sign_in = waiting(op, *sign_in_id, now)?;
            if sign_in.browser_sha256 != *browser_sha256 {
                return Err(OperatorError::SignInUnknown.into());
            }
            may_sign_in(op, now)?;
            let enrollment_id = op.enrollment_id.ok_or(OperatorError::NotActive)?;
            match fresh_step(op, enrollment_id, code, &ctx)? {
                Ok(step) => Ok(vec![OperatorEvent::OperatorSignedIn {
                    step,
                    sign_in_id: Some(*sign_in_id),
                    at: now,
                }]),
                Err(reason) => Err(failure(op, reason, &ctx)),
            }
        }
        OperatorCommand::SignOut => {
            if !exists {
                return Err(OperatorError::NotFound.into());
            }
            Ok(vec![OperatorEvent::OperatorSignedOut { at: now }])
        }
        OperatorCommand::Disable => match op.status {
            OperatorStatus::Absent => Err(OperatorError::NotFound.into()),
            OperatorStatus::Disabled => Ok(Vec::new()),
            _ => Ok(vec![OperatorEvent::OperatorDisabled { at: now }]),
        },
        OperatorCommand::ResetTotp { setup_id } => match op.status {
            OperatorStatus::Absent => Err(OperatorError::NotFound.into()),
            OperatorStatus::Disabled => Err(OperatorError::Disabled.into()),
            _ => Ok(vec![OperatorEvent::OperatorTotpReset {
                enrollment_id: op.enrollment_id,
                setup_id: *setup_id,
                setup_expires_at: now + Duration::hours(SETUP_LINK_TTL_HOURS),
                at: now,
            }]),
        },
    }
}
