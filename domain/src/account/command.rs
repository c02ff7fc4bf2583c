//! What a caller asks of an account: one type per command, each decided in its own module of
//! [`super::decide`]. A command holds only what its sender knew when it built it (fresh random ids
//! and digests included); whatever the service looks up by IO to decide it (a secret from the
//! vault, a newly sealed enrollment) goes into the decision's context instead, never in here.

pub use super::decide::{
    ActivateDevice, ApproveOnDevice, CancelLogin, ConfirmReset, DenyOnDevice, Disable,
    HelpdeskReset, RecordNotice, RecordResetEmail, RequestReset, StartLogin, SubmitCode, Unlock,
};

#[derive(Debug, Clone)]
pub enum AccountCommand {
    StartLogin(StartLogin),
    SubmitCode(SubmitCode),
    ActivateDevice(ActivateDevice),
    ApproveOnDevice(ApproveOnDevice),
    DenyOnDevice(DenyOnDevice),
    CancelLogin(CancelLogin),
    /// Housekeeping: mark every pending login past its time as expired.
    ExpireStaleLogins,
    Disable(Disable),
    RequestReset(RequestReset),
    ConfirmReset(ConfirmReset),
    HelpdeskReset(HelpdeskReset),
    Unlock(Unlock),
    RecordResetEmail(RecordResetEmail),
    RecordNotice(RecordNotice),
}

impl AccountCommand {
    /// The command's name in logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            AccountCommand::StartLogin(_) => "start_login",
            AccountCommand::SubmitCode(_) => "submit_code",
            AccountCommand::ActivateDevice(_) => "activate_device",
            AccountCommand::ApproveOnDevice(_) => "approve_on_device",
            AccountCommand::DenyOnDevice(_) => "deny_on_device",
            AccountCommand::CancelLogin(_) => "cancel_login",
            AccountCommand::ExpireStaleLogins => "expire_stale_logins",
            AccountCommand::Disable(_) => "disable",
            AccountCommand::RequestReset(_) => "request_reset",
            AccountCommand::ConfirmReset(_) => "confirm_reset",
            AccountCommand::HelpdeskReset(_) => "helpdesk_reset",
            AccountCommand::Unlock(_) => "unlock",
            AccountCommand::RecordResetEmail(_) => "record_reset_email",
            AccountCommand::RecordNotice(_) => "record_notice",
        }
    }
}

macro_rules! from_command {
    ($($name:ident),* $(,)?) => {
        $(impl From<$name> for AccountCommand {
            fn from(command: $name) -> Self {
                AccountCommand::$name(command)
            }
        })*
    };
}

from_command!(
    StartLogin,
    SubmitCode,
    ActivateDevice,
    ApproveOnDevice,
    DenyOnDevice,
    CancelLogin,
    Disable,
    RequestReset,
    ConfirmReset,
    HelpdeskReset,
    Unlock,
    RecordResetEmail,
    RecordNotice,
);
