//! RFC 6238 codes, computed by `totp-rs`. This module only says which time step a typed code
//! belongs to; whether that step may still be used (replay) is the account's rule.

use std::fmt;

use chrono::{DateTime, Utc};
use totp_rs::{Algorithm, TOTP};

use crate::code::TotpCode;

/// The code parameters every standard authenticator understands: SHA1, 6 digits, 30 seconds.
pub const PERIOD_SECONDS: u64 = 30;
pub const DIGITS: usize = 6;
pub const ALGORITHM: Algorithm = Algorithm::SHA1;
/// 160 bits, the RFC 4226 recommendation and what the QR code carries.
pub const SECRET_BYTES: usize = 20;

/// A shared TOTP secret in the clear. It exists only between the vault and a verification or the
/// QR code, never in an event, and it never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Vec<u8>);

impl TotpSecret {
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        TotpSecret(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(<sealed>)")
    }
}

impl Drop for TotpSecret {
    // Best effort: wipe the bytes before the allocator reuses them, so a later heap dump or
    // uninitialised read is less likely to find a live secret.
    fn drop(&mut self) {
        self.0.fill(0);
    }
}

/// The time step a Unix instant falls in.
pub fn step_at(now: DateTime<Utc>) -> u64 {
    u64::try_from(now.timestamp()).unwrap_or(0) / PERIOD_SECONDS
}

fn generator(secret: &TotpSecret, algorithm: Algorithm, digits: usize) -> TOTP {
    // `new_unchecked` because the secret length is the vault's business and test vectors use
    // other lengths; skew 0 because the window is applied here, step by step.
    TOTP::new_unchecked(
        algorithm,
        digits,
        0,
        PERIOD_SECONDS,
        secret.as_bytes().to_vec(),
        None,
        String::new(),
    )
}

/// The step, from the current one back `window_back` steps, whose code equals `code`; the latest
/// wins. Comparison is constant-time (totp-rs compares with `constant_time_eq`).
pub fn matching_step(
    secret: &TotpSecret,
    code: &TotpCode,
    now: DateTime<Utc>,
    window_back: u8,
) -> Option<u64> {
    let totp = generator(secret, ALGORITHM, DIGITS);
    let current = step_at(now);
    (0..=u64::from(window_back))
        .filter_map(|back| current.checked_sub(back))
        .find(|step| totp.check(code.as_str(), step * PERIOD_SECONDS))
}

/// The code for a step, as an authenticator would show it. Used by tests and the benchmark,
/// which play the part of the user's phone.
pub fn code_for_step(secret: &TotpSecret, step: u64) -> String {
    generator(secret, ALGORITHM, DIGITS).generate(step * PERIOD_SECONDS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(unix: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(unix, 0).unwrap()
    }

    /// RFC 6238 Appendix B: the published 8-digit vectors for all three hash functions.
    #[test]
    fn rfc6238_appendix_b_vectors() {
        let sha1 = TotpSecret::from_bytes(b"12345678901234567890".to_vec());
        let sha256 = TotpSecret::from_bytes(b"12345678901234567890123456789012".to_vec());
        let sha512 = TotpSecret::from_bytes(
            b"1234567890123456789012345678901234567890123456789012345678901234".to_vec(),
        );
        let vectors: [(u64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for (time, c1, c256, c512) in vectors {
            assert_eq!(
                generator(&sha1, Algorithm::SHA1, 8).generate(time),
                c1,
                "SHA1 at {time}"
            );
            assert_eq!(
                generator(&sha256, Algorithm::SHA256, 8).generate(time),
                c256,
                "SHA256 at {time}"
            );
            assert_eq!(
                generator(&sha512, Algorithm::SHA512, 8).generate(time),
                c512,
                "SHA512 at {time}"
            );
        }
    }

    #[test]
    fn the_window_is_the_current_step_and_one_back() {
        let secret = TotpSecret::from_bytes(vec![7; SECRET_BYTES]);
        let now = at(1_700_000_015);
        let step = step_at(now);
        let code = |s| TotpCode::parse(&code_for_step(&secret, s)).unwrap();
        assert_eq!(matching_step(&secret, &code(step), now, 1), Some(step));
        assert_eq!(
            matching_step(&secret, &code(step - 1), now, 1),
            Some(step - 1)
        );
        assert_eq!(matching_step(&secret, &code(step - 2), now, 1), None);
        assert_eq!(matching_step(&secret, &code(step + 1), now, 1), None);
        assert_eq!(matching_step(&secret, &code(step - 1), now, 0), None);
    }

    #[test]
    fn secrets_do_not_print() {
        let secret = TotpSecret::from_bytes(b"sixteen byte key".to_vec());
        assert!(!format!("{secret:?}").contains("sixteen"));
    }
}
