//! The account aggregate: one per user type and User ID, one event stream each.

mod command;
mod decide;
mod error;
mod events;
mod history;
mod state;

#[cfg(test)]
mod tests;

pub use command::{
    AccountCommand, ActivateDevice, ApproveOnDevice, CancelLogin, ConfirmReset, DenyOnDevice,
    Disable, HelpdeskReset, RecordNotice, RecordResetEmail, RequestReset, StartLogin, SubmitCode,
    Unlock,
};
pub use decide::{decide, needs, Context, Decision, Needs, OpenedSecret};
pub use error::{DomainError, Rejection};
pub use events::{
    AccountEvent, CancelReason, DeclineReason, EventDecodeError, LoginStage, MailOutcome, Method,
    NoticeKind, RejectReason, ResetBy,
};
pub use history::{AccountHistory, DeviceEnd, DeviceRecord, StateAsOf};
pub use state::{
    cancel_reason_str, Account, BoundDevice, Lockout, Login, LoginStatus, PendingEnrollment,
    Profile, ResetRequest, ResetStatus, TotpStatus,
};
