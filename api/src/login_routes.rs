//! Where the logins this instance started belong: each one's account, and the address and
//! browser the portal relayed when it started.
//!
//! None of these change once a login has started, so the typed code or the cancel that follows
//! goes straight to the account instead of reading the login's row first; on PostgreSQL that
//! read is a round trip on every login. What the account then decides is unchanged: it still
//! refuses a decided, expired or superseded login. A login this instance does not remember
//! (started on another instance, or pushed out by newer ones) is read from `login_sessions`,
//! as before, and remembered from then on.

use spse_totp_domain::{AccountKey, LoginId};

use crate::remembered::Remembered;

/// Logins remembered. A login lives for minutes (`SPSE_TOTP_LOGIN_TTL`), so this covers every
/// login still pending at well over fifty starts a second, in about 4 MB; a login forgotten
/// early costs one read.
pub const REMEMBERED: usize = 16_384;

/// What a request about a login needs to know before it runs a command on the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRoute {
    pub account: AccountKey,
    /// The user's address and browser as the portal relayed them at the start: a later request
    /// that relays none is recorded with these.
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

pub type LoginRoutes = Remembered<LoginId, LoginRoute>;
