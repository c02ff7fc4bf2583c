//! What a user types or taps: the six-digit code and the two-digit approval number.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("code must be exactly 6 ASCII digits")]
    Code,
    #[error("number must be a two-digit number from 10 to 99")]
    ApprovalNumber,
}

/// A six-digit TOTP code as typed. Only ASCII digits count: a code of Arabic-Indic or full-width
/// digits is refused here rather than normalised, so what is verified is what the app showed.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpCode(String);

impl TotpCode {
    pub const DIGITS: usize = 6;

    pub fn parse(raw: &str) -> Result<Self, CodeError> {
        if raw.len() == Self::DIGITS && raw.bytes().all(|b| b.is_ascii_digit()) {
            Ok(TotpCode(raw.to_owned()))
        } else {
            Err(CodeError::Code)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// A code is a credential for thirty seconds: keep it out of logs and debug output.
impl fmt::Debug for TotpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpCode(******)")
    }
}

/// The number the portal shows beside a pending login and the user must pick on the device
/// (number matching): it stops a user approving a login they did not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct ApprovalNumber(u8);

impl ApprovalNumber {
    pub fn new(n: u8) -> Result<Self, CodeError> {
        if (10..=99).contains(&n) {
            Ok(ApprovalNumber(n))
        } else {
            Err(CodeError::ApprovalNumber)
        }
    }

    /// The 90 two-digit numbers, each as likely as the others, drawn from the caller's random
    /// bytes. A byte mod 90 would favour 10 to 85 (256 is not a multiple of 90), so a byte of
    /// 180 or more is thrown away and the next one taken: 180 is two whole rounds of 90.
    pub fn draw(mut random_byte: impl FnMut() -> u8) -> Self {
        loop {
            if let Some(number) = Self::from_random(random_byte()) {
                return number;
            }
        }
    }

    /// The number one random byte gives, or `None` for a byte that would bias the draw.
    pub fn from_random(byte: u8) -> Option<Self> {
        (byte < 180).then(|| ApprovalNumber(10 + byte % 90))
    }

    pub fn value(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for ApprovalNumber {
    type Error = CodeError;
    fn try_from(n: u8) -> Result<Self, Self::Error> {
        ApprovalNumber::new(n)
    }
}

impl From<ApprovalNumber> for u8 {
    fn from(n: ApprovalNumber) -> u8 {
        n.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_six_ascii_digits_make_a_code() {
        assert!(TotpCode::parse("123456").is_ok());
        for bad in [
            "12345",
            "1234567",
            "12345a",
            "١٢٣٤٥٦",
            "１２３４５６",
            " 12345",
            "",
        ] {
            assert!(TotpCode::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn codes_do_not_print() {
        let code = TotpCode::parse("987654").unwrap();
        assert!(!format!("{code:?}").contains("987654"));
    }

    #[test]
    fn approval_numbers_have_two_digits() {
        assert!(ApprovalNumber::new(9).is_err());
        assert!(ApprovalNumber::new(100).is_err());
        for byte in 0..=255u8 {
            if let Some(n) = ApprovalNumber::from_random(byte) {
                assert!((10..=99).contains(&n.value()));
            }
        }
    }

    #[test]
    fn every_number_is_drawn_from_as_many_bytes_as_every_other() {
        let mut counts = [0u32; 100];
        for byte in 0..=255u8 {
            if let Some(n) = ApprovalNumber::from_random(byte) {
                counts[usize::from(n.value())] += 1;
            }
        }
        assert!(counts[10..].iter().all(|c| *c == 2), "{counts:?}");
        // Bytes that would bias the draw are skipped, not folded.
        let mut bytes = [250u8, 180, 255, 7].into_iter();
        let n = ApprovalNumber::draw(|| bytes.next().unwrap_or(0));
        assert_eq!(n.value(), 17);
    }
}
