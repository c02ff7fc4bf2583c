//! The operator console (issue 15), mounted at `/console`: helpdesk staff, auditors and admins
//! sign in as themselves (password and TOTP), and each action they take runs the same command as
//! the API, recorded under their own name.
//!
//! Server-rendered HTML from askama templates compiled into the binary; every page works
//! without JavaScript, every asset is embedded, and every answer carries a strict
//! Content-Security-Policy. Sessions and CSRF tokens live in the database (see
//! `spse_totp_commands::operators::ConsoleSessions`), so a sign-out or a disabled operator ends
//! the session on every instance.

pub mod cli;
