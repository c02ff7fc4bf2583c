//! The SPSE TOTP write side.
//!
//! Commands come in here and leave as events in the event store: [`accounts::AccountService`]
//! loads an account, opens the secret a code is checked against from the [`vault`], asks the
//! domain to decide, and appends with optimistic concurrency. The [`store`] module is the event
//! store port with its adapters and the conformance suite every adapter must pass.
//!
//! Depends on `spse-totp-domain` only; it knows SQL and crypto but nothing of HTTP or projections.

pub mod accounts;
pub mod apikeys;
pub mod audit;
pub mod captcha;
pub mod clock;
pub mod database;
pub mod enrollment;
pub mod mail;
pub mod rate_limits;
pub mod resets;
pub mod snapshots;
pub mod store;
#[cfg(feature = "testing")]
pub mod test_database;
pub mod tokens;
pub mod transfer;
pub mod vault;

pub use clock::{Clock, ManualClock, SystemClock};
pub use database::{Database, DatabaseError, Engine, WriteGate};
pub use store::{
    Actor, Appended, EventMetadata, EventStore, ExpectedVersion, NewEvent, RecordedEvent,
    StoreError,
};
