//! The headers every HTML page of the service carries (the console, the reference portal): its
//! Content-Security-Policy, never framed (clickjacking), no MIME sniffing, and no referrer, since
//! some pages hold a token in their URL.

use axum::http::header::{self, HeaderMap, HeaderValue};

pub fn protect_page(headers: &mut HeaderMap, csp: &'static str) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}
