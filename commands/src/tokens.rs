//! Random bearer tokens (device tokens, API keys) and the digests the service keeps instead.
//! The tokens carry 256 random bits, so a plain SHA-256 digest cannot be reversed or guessed
//! and needs no salt or slow hash.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// `{prefix}_{43 base64url characters}`: the prefix tells a leaked token's kind at a glance
/// (and lets secret scanners find it).
pub fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}_{}", URL_SAFE_NO_PAD.encode(bytes))
}

pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_distinct_and_prefixed() {
        let a = random_token("dt");
        let b = random_token("dt");
        assert_ne!(a, b);
        assert!(a.starts_with("dt_"));
        assert_eq!(a.len(), 3 + 43);
        assert_eq!(sha256_hex(&a).len(), 64);
        assert_ne!(sha256_hex(&a), sha256_hex(&b));
    }
}
