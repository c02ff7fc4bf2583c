//! Console operators: the helpdesk staff, auditors and admins who sign in to the console as
//! themselves. Each operator is an aggregate with its own stream (`operator-{username}`): created
//! with a one-time setup link, activated by choosing a password and a TOTP device, then signing in
//! and out; every sign-in, failed sign-in, sign-out and change by an admin is an event there, so
//! an auditor sees who could act, and when.
//!
//! The password hash and the TOTP secret are not in the stream (secrets never enter the log):
//! the hash sits in a credentials table, the secret in the vault, and the commands handler checks
//! them and tells `decide` the outcome through the context.

mod decide;
mod events;
mod state;
#[cfg(test)]
mod tests;

pub use decide::{decide, OperatorCommand, OperatorContext};
pub use events::{OperatorEvent, SignInFailure};
pub use state::{DeviceSignIn, Operator, OperatorDevice, OperatorStatus};

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What an operator may do in the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorRole {
    /// Looks accounts up, resets TOTP, lifts locks.
    Helpdesk,
    /// Reads histories, states as of an instant, the chain; changes nothing.
    Auditor,
    /// Manages operators and API keys.
    Admin,
}

impl OperatorRole {
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorRole::Helpdesk => "helpdesk",
            OperatorRole::Auditor => "auditor",
            OperatorRole::Admin => "admin",
        }
    }
}

impl fmt::Display for OperatorRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("role must be one of helpdesk, auditor, admin")]
pub struct UnknownOperatorRole;

impl FromStr for OperatorRole {
    type Err = UnknownOperatorRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "helpdesk" => Ok(OperatorRole::Helpdesk),
            "auditor" => Ok(OperatorRole::Auditor),
            "admin" => Ok(OperatorRole::Admin),
            _ => Err(UnknownOperatorRole),
        }
    }
}

impl TryFrom<String> for OperatorRole {
    type Error = UnknownOperatorRole;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// An operator's sign-in name: 3 to 32 of `a-z 0-9 . _ -`, stored lower-case, so `Siti` and
/// `siti` are one operator and the name is safe in a stream name, a URL and a log line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a username is 3 to 32 characters of a-z, 0-9, '.', '_' and '-'")]
pub struct InvalidUsername;

impl Username {
    pub fn parse(text: &str) -> Result<Self, InvalidUsername> {
        let name = text.trim().to_ascii_lowercase();
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c);
        if (3..=32).contains(&name.len()) && name.chars().all(allowed) {
            Ok(Username(name))
        } else {
            Err(InvalidUsername)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Username {
    type Error = InvalidUsername;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Username::parse(&s)
    }
}

impl From<Username> for String {
    fn from(u: Username) -> String {
        u.0
    }
}

/// The operator's stream.
pub const STREAM_PREFIX: &str = "operator-";

pub fn stream_name(username: &Username) -> String {
    format!("{STREAM_PREFIX}{username}")
}

/// Why an operator command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorError {
    #[error("an operator with this username already exists")]
    AlreadyExists,
    #[error("no such operator")]
    NotFound,
    #[error("this setup link is not valid or was replaced")]
    SetupLinkUnknown,
    #[error("this setup link expired")]
    SetupLinkExpired,
    #[error("a password has at least {0} characters")]
    PasswordTooShort(usize),
    #[error("set a password first")]
    PasswordNotSet,
    #[error("the activation QR code expired: open the setup link again")]
    EnrollmentExpired,
    #[error("the code is not valid")]
    InvalidCode,
    #[error("the username, password or code is wrong")]
    SignInRefused { attempts_left: u32 },
    #[error("the operator is locked after too many failed sign-ins until {until}")]
    Locked {
        until: chrono::DateTime<chrono::Utc>,
    },
    #[error("the operator is disabled")]
    Disabled,
    #[error("the operator has not finished setting up")]
    NotActive,
    #[error("{0} is required")]
    Required(&'static str),
    /// A sign-in through the device needs a device bound through the device API.
    #[error("no device is bound to this operator")]
    NoDevice,
    /// The device token is not the one bound to this operator now.
    #[error("this device is not bound to the operator")]
    WrongDevice,
    /// Not the operator's waiting sign-in (replaced, finished, or never started here).
    #[error("no such sign-in is waiting")]
    SignInUnknown,
    #[error("the sign-in was not approved in time")]
    SignInExpired,
    /// Not approved yet: keep waiting.
    #[error("the sign-in waits for the device")]
    SignInWaiting,
    #[error("the approval number is required")]
    NumberRequired,
    /// Prepared against an older state (a secret for another enrollment): reload and decide again.
    #[error("the command was prepared against an older state of the operator")]
    StalePreparation,
}

/// A refusal and the events that still record it (a failed sign-in counts towards the lock).
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorRejection {
    pub error: OperatorError,
    pub record: Vec<OperatorEvent>,
}

impl From<OperatorError> for OperatorRejection {
    fn from(error: OperatorError) -> Self {
        OperatorRejection {
            error,
            record: Vec::new(),
        }
    }
}

/// Shortest password an operator may choose (issue 15).
pub const MIN_PASSWORD_CHARS: usize = 12;
