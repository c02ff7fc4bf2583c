//! The SPSE TOTP account model.
//!
//! Everything that decides what happens to a user's second factor lives here: the identifiers and
//! codes the portal sends (parsed, never merely validated), the events that record an account's
//! whole TOTP life, the commands that ask for a change, and the pure `decide`/`evolve` functions
//! between them. This crate is synchronous and does no IO: no database, no clock, no network.
//! `decide` takes the state, the command as its sender built it, and a context the caller fills:
//! the time, the policy, and what it looked up by IO (an opened secret, a newly sealed
//! enrollment), so every rule in `DESIGN.md` is a unit test here.
//!
//! It may depend on nothing else in the workspace.

pub mod access;
pub mod account;
pub mod apikey;
pub mod code;
pub mod ids;
pub mod masterkey;
pub mod operator;
pub mod policy;
pub mod reset_log;
pub mod stored;
pub mod totp;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use account::{
    decide, Account, AccountCommand, AccountEvent, DomainError, Rejection, TotpStatus,
};
pub use code::{ApprovalNumber, TotpCode};
pub use ids::{AccountKey, DeviceId, EnrollmentId, LoginId, ResetRequestId, UserId, UserType};
pub use policy::Policy;
