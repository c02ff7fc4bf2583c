//! Where the logins this instance started belong: each one's account, and the address and
//! browser the portal relayed when it started.
//!
//! None of these change once a login has started, so the typed code or the cancel that follows
//! goes straight to the account instead of reading the login's row first; on PostgreSQL that
//! read is a round trip on every login. What the account then decides is unchanged: it still
//! refuses a decided, expired or superseded login. A login this instance does not remember
//! (started on another instance, or pushed out by newer ones) is read from `login_sessions`,
//! as before, and remembered from then on.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;
use spse_totp_domain::{AccountKey, LoginId};

/// Logins remembered. A login lives for minutes (`SPSE_TOTP_LOGIN_TTL`), so this covers every
/// login still pending at well over fifty starts a second, in about 4 MB; a login forgotten
/// early costs one read.
const REMEMBERED: NonZeroUsize = match NonZeroUsize::new(16_384) {
    Some(n) => n,
    None => panic!("the capacity is not zero"),
};

/// What a request about a login needs to know before it runs a command on the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRoute {
    pub account: AccountKey,
    /// The user's address and browser as the portal relayed them at the start: a later request
    /// that relays none is recorded with these.
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

pub struct LoginRoutes {
    routes: Mutex<LruCache<LoginId, LoginRoute>>,
}

impl Default for LoginRoutes {
    fn default() -> Self {
        LoginRoutes {
            routes: Mutex::new(LruCache::new(REMEMBERED)),
        }
    }
}

impl LoginRoutes {
    pub fn get(&self, login_id: LoginId) -> Option<LoginRoute> {
        self.lock().get(&login_id).cloned()
    }

    pub fn remember(&self, login_id: LoginId, route: LoginRoute) {
        self.lock().put(login_id, route);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<LoginId, LoginRoute>> {
        // The map holds no invariant a panicking holder could break half-way.
        self.routes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spse_totp_domain::{UserId, UserType};

    fn route(user: &str) -> LoginRoute {
        LoginRoute {
            account: AccountKey::new(UserType::Penyedia, UserId::parse(user).expect("a user id")),
            client_ip: Some("203.0.113.7".to_owned()),
            user_agent: None,
        }
    }

    #[test]
    fn a_remembered_login_routes_to_its_account_and_an_unknown_one_to_none() {
        let routes = LoginRoutes::default();
        let started = LoginId::generate();
        routes.remember(started, route("VENDOR-1"));
        assert_eq!(routes.get(started), Some(route("VENDOR-1")));
        assert_eq!(routes.get(LoginId::generate()), None);
    }

    #[test]
    fn the_oldest_login_is_forgotten_first_when_full() {
        let routes = LoginRoutes::default();
        let first = LoginId::generate();
        routes.remember(first, route("FIRST"));
        for _ in 0..REMEMBERED.get() {
            routes.remember(LoginId::generate(), route("LATER"));
        }
        assert_eq!(routes.get(first), None);
    }
}
