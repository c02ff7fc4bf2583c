//! The tunable numbers of the rules, with the defaults DESIGN.md sets.

use chrono::Duration;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// Consecutive failures (typed codes and device approvals together) that lock the account.
    pub max_failed_attempts: u32,
    /// The first lock's length; each further lock without a success in between doubles it.
    pub base_lock: Duration,
    /// The doubling stops here, so a forgotten account is never locked for years.
    pub max_lock: Duration,
    /// Locks in a row without a success after which the account stays locked until a helpdesk
    /// unlock (NIST SP 800-63B-4: throttling must bound the guesses an attacker gets in total).
    #[serde(default = "default_max_locks")]
    pub max_locks: u32,
    /// How long a login waits for approval or activation. The guide's acceptor page counts down
    /// from about 17 minutes; DESIGN.md sets 10 by default.
    pub login_ttl: Duration,
    /// How long a QR code can be activated.
    pub enrollment_ttl: Duration,
    /// How many 30-second steps before the current one a code may come from (RFC 6238 section 5.2
    /// recommends at most one step of network delay).
    pub window_back_steps: u8,
    /// Whether the device must echo the two-digit number the portal shows.
    pub number_matching: bool,
    /// How recent the approved login behind a self-service disable must be.
    pub disable_login_max_age: Duration,
    /// Pending logins kept per account; starting one more cancels the oldest. Bounds the state an
    /// attacker who knows a password can make the service hold.
    pub max_pending_logins: usize,
    /// How long an emailed reset link works.
    #[serde(default = "default_reset_ttl")]
    pub reset_ttl: Duration,
    /// Reset requests that send an email, per account per hour; more are recorded and ignored,
    /// so nobody can flood a user's inbox.
    #[serde(default = "default_reset_max_per_hour")]
    pub reset_max_per_hour: u32,
}

fn default_max_locks() -> u32 {
    10
}

fn default_reset_ttl() -> Duration {
    Duration::minutes(60)
}

fn default_reset_max_per_hour() -> u32 {
    3
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_failed_attempts: 5,
            base_lock: Duration::minutes(15),
            max_lock: Duration::hours(24),
            max_locks: default_max_locks(),
            login_ttl: Duration::minutes(10),
            enrollment_ttl: Duration::minutes(10),
            window_back_steps: 1,
            number_matching: true,
            disable_login_max_age: Duration::minutes(10),
            max_pending_logins: 10,
            reset_ttl: default_reset_ttl(),
            reset_max_per_hour: default_reset_max_per_hour(),
        }
    }
}

impl Policy {
    /// The length of the `lock_number`-th lock in a row (1-based): base, 2x base, 4x base, ...
    pub fn lock_duration(&self, lock_number: u32) -> Duration {
        let doublings = lock_number.saturating_sub(1).min(20);
        let factor = 1i32 << doublings;
        self.base_lock
            .checked_mul(factor)
            .map_or(self.max_lock, |d| d.min(self.max_lock))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_double_and_stop_at_the_cap() {
        let p = Policy::default();
        assert_eq!(p.lock_duration(1), Duration::minutes(15));
        assert_eq!(p.lock_duration(2), Duration::minutes(30));
        assert_eq!(p.lock_duration(3), Duration::minutes(60));
        assert_eq!(p.lock_duration(40), Duration::hours(24));
    }
}
