//! Random bearer tokens (device tokens, API keys) and the digests the service keeps instead.
//! The tokens carry 256 random bits, so a plain SHA-256 digest cannot be reversed or guessed
//! and needs no salt or slow hash.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
pub use hmac::Mac;
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

/// HMAC-SHA256 under a 32-byte key. HMAC pads a short key with zeros to the hash's block, so
/// padding it here first is the same MAC and needs no fallible constructor.
pub fn hmac_sha256(key: &[u8; 32]) -> hmac::Hmac<Sha256> {
    use hmac::digest::KeyInit;
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    <hmac::Hmac<Sha256> as KeyInit>::new(&block.into())
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

    #[test]
    fn the_padded_hmac_is_rfc_4231_hmac() {
        // RFC 4231 test case 2 uses a 4-byte key; padded to 32 bytes it is the same MAC.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let mut mac = hmac_sha256(&key);
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
