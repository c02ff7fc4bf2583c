//! The SPSE TOTP REST API and the `spse-totp` command line.
//!
//! This crate is the composition root: it reads the configuration, opens the database, builds
//! the write side (`spse-totp-commands`) and the read side (`spse-totp-projections`), and serves
//! them over HTTP with axum. It holds no business rule of its own: handlers parse, authorise,
//! run a command or a query, and map the answer.

pub mod app;
pub mod auth;
pub mod cli;
pub mod client_address;
pub mod config;
pub mod console;
pub mod demo;
pub mod device_routes;
pub mod error;
pub mod forwarding;
pub mod housekeeping;
pub mod language;
pub mod limits;
pub mod login_routes;
pub mod metrics;
pub mod openapi;
pub mod page_headers;
pub mod remembered;
pub mod routes;
pub mod state;

pub use app::App;
pub use config::Config;
