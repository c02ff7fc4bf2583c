//! The SPSE TOTP read side.
//!
//! Projectors turn the event log into the tables the API reads (`accounts`, `device_bindings`,
//! `login_sessions`, `audit_log`, `api_keys`, `reset_requests`, `operators`, `enrollments`), and each
//! module holds both the projector and the
//! queries of its table. The [`runner::ProjectionRunner`] feeds them from the event store and
//! advances each projector's checkpoint in the same transaction as its writes, so a crash
//! repeats nothing and loses nothing; `rebuild` replays the log from zero into the same tables.
//!
//! Every background reaction to the log runs under the one [`follower`]: the runner, the mail
//! sender ([`mail`], one outbox row per message owed) and the [`sweeps`], which also sign the
//! log's head ([`audit_checkpoints`]) for the verifier. The reactions record
//! their outcomes as events through the store's port ([`reaction`]), never the command handlers.
//!
//! Depends on `spse-totp-domain` for the events and rules and on `spse-totp-store` for the port;
//! never on `spse-totp-commands` (only its tests do).

pub mod accounts;
pub mod api_keys;
pub mod audit;
pub mod audit_checkpoints;
pub mod audit_log;
pub mod device_bindings;
pub mod enrollments;
pub mod event;
pub mod follower;
mod inline;
pub mod leadership;
pub mod login_sessions;
pub mod mail;
pub mod operators;
pub mod projector;
pub mod reaction;
pub mod reset_requests;
pub mod runner;
pub mod sink;
pub mod statement;
pub mod sweeps;
mod time;

pub use event::Decoded;
pub use projector::Projector;
pub use runner::{ProjectionError, ProjectionRunner};

/// Every projector of the service, in the order they apply an event.
pub fn all_projectors() -> Vec<std::sync::Arc<dyn Projector>> {
    vec![
        std::sync::Arc::new(accounts::AccountsProjector),
        std::sync::Arc::new(device_bindings::DeviceBindingsProjector),
        std::sync::Arc::new(login_sessions::LoginSessionsProjector),
        std::sync::Arc::new(audit_log::AuditLogProjector),
        std::sync::Arc::new(api_keys::ApiKeysProjector),
        std::sync::Arc::new(reset_requests::ResetRequestsProjector),
        std::sync::Arc::new(operators::OperatorsProjector),
        std::sync::Arc::new(enrollments::EnrollmentsProjector),
    ]
}
