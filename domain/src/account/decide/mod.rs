//! `decide`: given the account, a command exactly as the caller sent it, and a context (the time,
//! the policy, and what the caller looked up by IO for this decision), which events happen.
//! Every rule of DESIGN.md that concerns one account is decided here, one module per command, and
//! nowhere else.
//!
//! The caller asks [`needs`] what to look up on the state it decides on (the secret a code is
//! checked against, a newly sealed secret for a QR code), looks it up, and hands it in through
//! [`Context`]. The command is never filled in afterwards: it stays what its sender built.

mod activate_device;
mod approve_on_device;
mod cancel_login;
mod confirm_reset;
mod deny_on_device;
mod disable;
mod expire_stale_logins;
mod helpdesk_reset;
mod record_notice;
mod record_reset_email;
mod request_reset;
mod rules;
mod start_login;
mod submit_code;
mod unlock;

use chrono::{DateTime, Utc};

pub use activate_device::ActivateDevice;
pub use approve_on_device::ApproveOnDevice;
pub use cancel_login::CancelLogin;
pub use confirm_reset::ConfirmReset;
pub use deny_on_device::DenyOnDevice;
pub use disable::Disable;
pub use helpdesk_reset::HelpdeskReset;
pub use record_notice::RecordNotice;
pub use record_reset_email::RecordResetEmail;
pub use request_reset::RequestReset;
pub use start_login::StartLogin;
pub use submit_code::SubmitCode;
pub use unlock::Unlock;

use super::command::AccountCommand;
use super::error::Rejection;
use super::events::AccountEvent;
use super::state::Account;
use crate::ids::EnrollmentId;
use crate::policy::Policy;
use crate::totp::TotpSecret;

pub type Decision = Result<Vec<AccountEvent>, Rejection>;

/// The secret of one enrollment, opened from the vault for one verification.
#[derive(Debug, Clone)]
pub struct OpenedSecret {
    pub enrollment_id: EnrollmentId,
    pub secret: TotpSecret,
}

/// What a decision is made with besides the state and the command: the instant, the policy, and
/// what the caller looked up by IO because [`needs`] asked for it.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub now: DateTime<Utc>,
    pub policy: &'a Policy,
    /// The secret of the enrollment `needs` named, opened from the vault.
    pub secret: Option<&'a OpenedSecret>,
    /// A new enrollment whose secret the caller sealed, for a login that may show a QR code.
    pub enrollment: Option<EnrollmentId>,
}

impl<'a> Context<'a> {
    /// Nothing looked up: enough for every command that checks no code and shows no QR code.
    pub fn new(now: DateTime<Utc>, policy: &'a Policy) -> Self {
        Context {
            now,
            policy,
            secret: None,
            enrollment: None,
        }
    }

    pub fn with_secret(self, secret: Option<&'a OpenedSecret>) -> Self {
        Context { secret, ..self }
    }

    pub fn with_enrollment(self, enrollment: Option<EnrollmentId>) -> Self {
        Context { enrollment, ..self }
    }
}

/// What the caller must look up by IO before deciding a command on a given state. Handing in
/// something else (a secret of another enrollment, no enrollment where one is needed) is refused
/// as [`super::DomainError::StalePreparation`]: the caller decided on an older state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// The enrollment whose secret must be opened from the vault. `None` when the command checks
    /// no code, or when it will be refused before any code is checked.
    pub secret: Option<EnrollmentId>,
    /// Whether the decision may show a QR code, so a new secret must be sealed first.
    pub enrollment: bool,
}

/// What deciding `command` on `account` needs from outside.
pub fn needs(account: &Account, command: &AccountCommand) -> Needs {
    match command {
        AccountCommand::StartLogin(_) => Needs {
            secret: None,
            enrollment: start_login::needs_enrollment(account),
        },
        AccountCommand::SubmitCode(c) => Needs {
            secret: submit_code::secret_needed(account, c),
            enrollment: false,
        },
        AccountCommand::ActivateDevice(c) => Needs {
            secret: activate_device::secret_needed(account, c),
            enrollment: false,
        },
        AccountCommand::ApproveOnDevice(_) => Needs {
            secret: approve_on_device::secret_needed(account),
            enrollment: false,
        },
        AccountCommand::Disable(_) => Needs {
            secret: disable::secret_needed(account),
            enrollment: false,
        },
        _ => Needs::default(),
    }
}

pub fn decide(account: &Account, command: &AccountCommand, context: Context<'_>) -> Decision {
    match command {
        AccountCommand::StartLogin(c) => start_login::decide(account, c, context),
        AccountCommand::SubmitCode(c) => submit_code::decide(account, c, context),
        AccountCommand::ActivateDevice(c) => activate_device::decide(account, c, context),
        AccountCommand::ApproveOnDevice(c) => approve_on_device::decide(account, c, context),
        AccountCommand::DenyOnDevice(c) => deny_on_device::decide(account, c, context),
        AccountCommand::CancelLogin(c) => cancel_login::decide(account, c, context),
        AccountCommand::ExpireStaleLogins => expire_stale_logins::decide(account, context),
        AccountCommand::Disable(c) => disable::decide(account, c, context),
        AccountCommand::RequestReset(c) => request_reset::decide(account, c, context),
        AccountCommand::ConfirmReset(c) => confirm_reset::decide(account, c, context),
        AccountCommand::HelpdeskReset(c) => helpdesk_reset::decide(account, c, context),
        AccountCommand::Unlock(c) => unlock::decide(account, c, context),
        AccountCommand::RecordResetEmail(c) => record_reset_email::decide(account, c, context),
        AccountCommand::RecordNotice(c) => record_notice::decide(account, c, context),
    }
}
