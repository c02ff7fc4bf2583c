//! What the portal shows to start an activation: the `otpauth://` URI and its QR code.
//!
//! The URI is the standard one (SHA1, 6 digits, 30 s) so any RFC 6238 app can scan it; two extra
//! parameters, which standard apps ignore, tell a push-capable app where to call back. The label
//! names the user type beside the User ID, and the issuer is the LPSE's, so one person's penyedia
//! and non-penyedia accounts, or accounts at two LPSEs, are told apart in an authenticator app.

use qrcode::render::svg;
use qrcode::QrCode;
use spse_totp_domain::totp::{TotpSecret, ALGORITHM, DIGITS, PERIOD_SECONDS};
use spse_totp_domain::{AccountKey, EnrollmentId, UserType};
use totp_rs::TOTP;

/// The issuer when none is configured (`SPSE_TOTP_ISSUER`).
pub const ISSUER: &str = "SPSE";

#[derive(Debug, thiserror::Error)]
pub enum EnrollmentError {
    #[error("cannot build the otpauth URI: {0}")]
    Uri(String),
    #[error("cannot draw the QR code: {0}")]
    Qr(#[from] qrcode::types::QrError),
}

/// What an authenticator app shows under the issuer: `PPK1 (Non Penyedia)`.
pub fn account_label(account: &AccountKey) -> String {
    let kind = match account.user_type {
        UserType::Penyedia => "Penyedia",
        UserType::NonPenyedia => "Non Penyedia",
    };
    format!("{} ({kind})", account.user_id)
}

pub fn otpauth_uri(
    secret: &TotpSecret,
    issuer: &str,
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
        Some(issuer.to_owned()),
        account_label(account),
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
    use spse_totp_domain::UserId;

    #[test]
    fn the_uri_is_standard_and_carries_the_callback() {
        let secret = TotpSecret::from_bytes(vec![1; 20]);
        let account = AccountKey::new(UserType::NonPenyedia, UserId::parse("ppk1").unwrap());
        let enrollment = EnrollmentId::generate();
        let uri = otpauth_uri(
            &secret,
            ISSUER,
            &account,
            enrollment,
            "https://spse.example.go.id",
        )
        .unwrap();
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

    #[test]
    fn the_label_tells_the_user_types_and_the_issuer_the_lpse() {
        let secret = TotpSecret::from_bytes(vec![1; 20]);
        let id = UserId::parse("budi").unwrap();
        let label = |user_type, issuer| {
            let account = AccountKey::new(user_type, id.clone());
            let uri = otpauth_uri(
                &secret,
                issuer,
                &account,
                EnrollmentId::generate(),
                "http://x",
            )
            .unwrap();
            let parsed = url::Url::parse(&uri).unwrap();
            let path = parsed.path().trim_start_matches('/').to_owned();
            let issuer_param = parsed
                .query_pairs()
                .find(|(k, _)| k == "issuer")
                .map(|(_, v)| v.into_owned());
            (urlencoding_decode(&path), issuer_param.unwrap_or_default())
        };
        let (penyedia, _) = label(UserType::Penyedia, "SPSE");
        let (non_penyedia, _) = label(UserType::NonPenyedia, "SPSE");
        assert_eq!(penyedia, "SPSE:BUDI (Penyedia)");
        assert_eq!(non_penyedia, "SPSE:BUDI (Non Penyedia)");
        let (other_lpse, issuer) = label(UserType::Penyedia, "LPSE Kota Bogor");
        assert_eq!(other_lpse, "LPSE Kota Bogor:BUDI (Penyedia)");
        assert_eq!(issuer, "LPSE Kota Bogor");
    }

    fn urlencoding_decode(text: &str) -> String {
        url::form_urlencoded::parse(text.as_bytes())
            .map(|(k, v)| {
                if v.is_empty() {
                    k.into_owned()
                } else {
                    format!("{k}={v}")
                }
            })
            .collect()
    }
}
