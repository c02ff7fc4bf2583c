//! The account aggregate: one per user type and User ID, one event stream each.

mod command;
mod decide;
mod error;
mod events;
mod history;
mod state;

#[cfg(test)]
mod tests;

pub use command::{AccountCommand, OpenedSecret};
pub use decide::{decide, needs_enrollment, secret_needed, Decision};
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
