//! Why the account said no. Each variant is something a portal developer can act on.

use chrono::{DateTime, Utc};

use super::state::LoginStatus;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("the account does not exist")]
    AccountNotFound,
    #[error("the account is locked after too many failed attempts until {until}")]
    AccountLocked { until: DateTime<Utc> },
    #[error(
        "the account is locked after too many locks in a row: only the helpdesk can unlock it"
    )]
    LockedUntilUnlock,
    #[error("no such login for this account")]
    LoginNotFound,
    #[error("the login is no longer pending (it is {status})")]
    LoginNotPending { status: LoginStatus },
    #[error("the login expired")]
    LoginExpired,
    #[error("the code is not valid")]
    InvalidCode { attempts_left: u32 },
    /// The right code, but its 30-second step was already used (RFC 6238 section 5.2): wait for
    /// the app's next code. Counted like a wrong code, since a replay is what an attacker does.
    #[error("this code was already used: wait for the next code")]
    CodeAlreadyUsed { attempts_left: u32 },
    /// A device approval without the number the portal shows, while number matching is on: the
    /// app's mistake, not a guess, so it is not counted.
    #[error("number is required: send the two-digit number the portal shows")]
    NumberRequired,
    #[error(
        "TOTP is already active on a device: reset it before activating another (FAQ 1 and 2)"
    )]
    AlreadyActive,
    #[error("TOTP is not active on this account")]
    NotActive,
    #[error("no pending activation with this enrollment id")]
    EnrollmentNotFound,
    #[error("the activation QR code expired: start a new login to get a new one")]
    EnrollmentExpired,
    #[error("this device is not the account's active device")]
    DeviceNotRecognised,
    #[error("the login waits for {expected}, not for this action")]
    WrongStage { expected: &'static str },
    #[error(
        "disabling TOTP needs an approved login of this account from the last {minutes} minutes"
    )]
    RecentLoginRequired { minutes: i64 },
    #[error("this reset link is not valid")]
    ResetLinkUnknown,
    #[error("this reset link was already used")]
    ResetLinkUsed,
    #[error("this reset link was replaced by a newer request, an activation or a reset")]
    ResetLinkSuperseded,
    #[error("this reset link expired")]
    ResetLinkExpired,
    #[error("the account is not locked")]
    NotLocked,
    #[error("{0} is required")]
    Required(&'static str),
    /// The caller prepared the command against an older state (a secret for another enrollment,
    /// no enrollment where one is now needed). Not the user's fault: reload and decide again.
    #[error("the command was prepared against an older state of the account")]
    StalePreparation,
}

/// A refusal, with the events that record it. Most refusals change nothing; a wrong code still
/// counts toward the lock and an expired login is still marked expired, so those carry events
/// that must be appended before the error is returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub error: DomainError,
    pub record: Vec<super::AccountEvent>,
}

impl Rejection {
    pub fn recorded(error: DomainError, record: Vec<super::AccountEvent>) -> Self {
        Rejection { error, record }
    }
}

impl From<DomainError> for Rejection {
    fn from(error: DomainError) -> Self {
        Rejection {
            error,
            record: Vec::new(),
        }
    }
}
