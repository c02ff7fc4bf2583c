//! The SPSE TOTP write side.
//!
//! Commands come in here and leave as events in the event store: [`accounts::AccountService`]
//! loads an account, opens the secret a code is checked against from the [`vault`], asks the
//! domain to decide, and appends with optimistic concurrency.
//!
//! Depends on `spse-totp-domain` and on the event store (`spse-totp-store`); it knows SQL and
//! crypto but nothing of HTTP or projections.

pub mod accounts;
pub mod apikeys;
pub mod captcha;
pub mod enrollment;
pub mod operators;
pub mod rate_limits;
pub mod resets;
pub mod rotation;
pub mod snapshots;
pub mod tokens;
pub mod vault;

/// The clock lives with the store, so that the reactions to events (in the read side) share it.
pub mod clock {
    pub use spse_totp_store::clock::*;
}
pub use clock::{Clock, ManualClock, SystemClock};
