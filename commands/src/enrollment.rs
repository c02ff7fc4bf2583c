//! What the portal shows to start an activation: the `otpauth://` URI and its QR code.
//!
//! The URI is the standard one (SHA1, 6 digits, 30 s) so any RFC 6238 app can scan it; two extra
//! parameters, which standard apps ignore, tell a push-capable app where to call back.

use qrcode::render::svg;
use qrcode::QrCode;
use spse_totp_domain::totp::{TotpSecret, ALGORITHM, DIGITS, PERIOD_SECONDS};
use spse_totp_domain::{AccountKey, EnrollmentId};
use totp_rs::TOTP;

pub const ISSUER: &str = "SPSE";

#[derive(Debug, thiserror::Error)]
pub enum EnrollmentError {
    #[error("cannot build the otpauth URI: {0}")]
    Uri(String),
    #[error("cannot draw the QR code: {0}")]
    Qr(#[from] qrcode::types::QrError),
}

pub fn otpauth_uri(
    secret: &TotpSecret,
    account: &AccountKey,
    enrollment_id: EnrollmentId,
    public_base_url: &str,
) -> Result<String, EnrollmentError> {
    let totp = TOTP::new(
        ALGORITHM,
        DIGITS,
        1,
        PERIOD_SECONDS,
        secret.as_bytes().to_vec(),
        Some(ISSUER.to_owned()),
        account.user_id.to_string(),
    )
    .map_err(|e| EnrollmentError::Uri(e.to_string()))?;
    let mut uri =
        url::Url::parse(&totp.get_url()).map_err(|e| EnrollmentError::Uri(e.to_string()))?;
    uri.query_pairs_mut()
        .append_pair("period", &PERIOD_SECONDS.to_string())
        .append_pair("user_type", account.user_type.as_str())
        .append_pair("enrollment_id", &enrollment_id.to_string())
        .append_pair("server", public_base_url);
    Ok(uri.to_string())
}

pub fn qr_svg(uri: &str) -> Result<String, EnrollmentError> {
    let code = QrCode::new(uri.as_bytes())?;
    Ok(code
        .render::<svg::Color<'_>>()
        .min_dimensions(240, 240)
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use spse_totp_domain::{UserId, UserType};

    #[test]
    fn the_uri_is_standard_and_carries_the_callback() {
        let secret = TotpSecret::from_bytes(vec![1; 20]);
        let account = AccountKey::new(UserType::NonPenyedia, UserId::parse("ppk1").unwrap());
        let enrollment = EnrollmentId::generate();
        let uri = otpauth_uri(&secret, &account, enrollment, "https://spse.example.go.id").unwrap();
        let parsed = url::Url::parse(&uri).unwrap();
        assert_eq!(parsed.scheme(), "otpauth");
        assert_eq!(parsed.host_str(), Some("totp"));
        let pairs: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
        assert_eq!(
            pairs["secret"],
            totp_rs::Secret::Raw(vec![1; 20]).to_encoded().to_string()
        );
        assert_eq!(pairs["issuer"], "SPSE");
        assert_eq!(pairs["enrollment_id"], enrollment.to_string());
        assert_eq!(pairs["server"], "https://spse.example.go.id");
        assert!(parsed.path().contains("PPK1"));
        assert!(qr_svg(&uri).unwrap().starts_with("<?xml"));
    }
}
