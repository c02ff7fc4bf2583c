//! The page the emailed link opens (flow 3, step 5): the account named, a "Reset TOTP" button,
//! a confirmation dialog, then `POST /v1/resets/confirm`. Opening the page changes nothing (mail
//! scanners follow links); only the button does.
//!
//! Bahasa Indonesia by default, English when the browser prefers it. No external assets; the one
//! inline script and style carry a per-response nonce that the Content-Security-Policy allows, and
//! the page sends no Referer (the URL holds the token) and is never cached.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use spse_totp_commands::tokens::random_bytes;
use spse_totp_domain::account::ResetStatus;
use spse_totp_domain::AccountKey;

use super::resets::account_of;
use crate::state::AppState;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lang {
    Id,
    En,
}

/// The browser's first language: English if it names English first, Indonesian otherwise.
fn language(headers: &HeaderMap) -> Lang {
    let first = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|tag| tag.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if first.starts_with("en") {
        Lang::En
    } else {
        Lang::Id
    }
}

struct Texts {
    title: &'static str,
    intro: &'static str,
    button: &'static str,
    confirm: &'static str,
    done: &'static str,
    next: &'static str,
    failed: &'static str,
    invalid: &'static str,
    used: &'static str,
    superseded: &'static str,
    expired: &'static str,
    again: &'static str,
    user_id: &'static str,
    user_type: &'static str,
}

const ID: Texts = Texts {
    title: "Reset TOTP",
    intro: "Anda akan me-reset TOTP untuk akun berikut. Perangkat lama tidak dapat digunakan lagi dan Anda perlu mengaktifkan TOTP kembali saat login berikutnya.",
    button: "Reset TOTP",
    confirm: "Yakin ingin me-reset TOTP akun ini?",
    done: "TOTP berhasil di reset",
    next: "Silakan login ke SPSE dan aktifkan kembali TOTP dengan memindai kode QR.",
    failed: "Reset TOTP gagal. Muat ulang halaman ini atau minta tautan baru.",
    invalid: "Tautan reset TOTP ini tidak valid.",
    used: "Tautan reset TOTP ini sudah digunakan.",
    superseded: "Tautan reset TOTP ini sudah tidak berlaku karena ada permintaan yang lebih baru, aktivasi, atau reset lain.",
    expired: "Tautan reset TOTP ini sudah kedaluwarsa.",
    again: "Jika Anda masih perlu me-reset TOTP, ajukan permintaan baru melalui halaman login SPSE (\"Reset TOTP?\").",
    user_id: "User ID",
    user_type: "Tipe User",
};

const EN: Texts = Texts {
    title: "Reset TOTP",
    intro: "You are about to reset TOTP for this account. The old device will stop working and you will activate TOTP again at your next login.",
    button: "Reset TOTP",
    confirm: "Reset TOTP for this account?",
    done: "TOTP has been reset",
    next: "Log in to SPSE and activate TOTP again by scanning the QR code.",
    failed: "The reset failed. Reload this page or ask for a new link.",
    invalid: "This TOTP reset link is not valid.",
    used: "This TOTP reset link has already been used.",
    superseded: "This TOTP reset link was replaced by a newer request, an activation or another reset.",
    expired: "This TOTP reset link has expired.",
    again: "If you still need to reset TOTP, ask again from the SPSE login page (\"Reset TOTP?\").",
    user_id: "User ID",
    user_type: "User type",
};

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

const STYLE: &str = "body{font-family:Arial,Helvetica,sans-serif;background:#f4f4f4;color:#222;margin:0}\
main{max-width:480px;margin:40px auto;background:#fff;padding:24px;border-radius:6px;box-shadow:0 1px 4px rgba(0,0,0,.15)}\
h1{font-size:22px;margin-top:0}table{margin:12px 0}td{padding:2px 12px 2px 0}\
button{background:#c0392b;color:#fff;border:0;padding:12px 24px;border-radius:4px;font-size:16px;cursor:pointer}\
button[disabled]{opacity:.6}.ok{color:#1e8449;font-weight:bold}.err{color:#c0392b}";

/// Clicking asks for confirmation, then posts the token; the answer replaces the form.
const SCRIPT: &str = "(function(){var f=document.getElementById('reset');var b=document.getElementById('go');\
var m=document.getElementById('msg');b.addEventListener('click',function(){if(!window.confirm(f.dataset.confirm)){return;}\
b.disabled=true;fetch('/v1/resets/confirm',{method:'POST',headers:{'Content-Type':'application/json'},\
body:JSON.stringify({token:f.dataset.token}),credentials:'omit',referrerPolicy:'no-referrer'})\
.then(function(r){if(r.ok){f.hidden=true;document.getElementById('done').hidden=false;}\
else{m.textContent=f.dataset.failed;b.disabled=false;}})\
.catch(function(){m.textContent=f.dataset.failed;b.disabled=false;});});})();";

fn respond(status: StatusCode, lang: Lang, title: &str, body: &str, nonce: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><meta name=\"referrer\" content=\"no-referrer\">\
         <title>{title}</title><style nonce=\"{nonce}\">{STYLE}</style></head><body><main>{body}</main></body></html>",
        lang = if lang == Lang::En { "en" } else { "id" },
        title = escape(title),
    );
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; \
         img-src 'none'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

fn refusal(status: StatusCode, lang: Lang, texts: &Texts, why: &str, nonce: &str) -> Response {
    let body = format!(
        "<h1>{}</h1><p class=\"err\">{}</p><p>{}</p>",
        escape(texts.title),
        escape(why),
        escape(texts.again)
    );
    respond(status, lang, texts.title, &body, nonce)
}

fn form(lang: Lang, texts: &Texts, key: &AccountKey, token: &str, nonce: &str) -> Response {
    let user_type = match (key.user_type, lang) {
        (spse_totp_domain::UserType::Penyedia, _) => "Penyedia",
        (spse_totp_domain::UserType::NonPenyedia, _) => "Non Penyedia",
    };
    let body = format!(
        "<h1>{title}</h1><div id=\"reset\" data-token=\"{token}\" data-confirm=\"{confirm}\" data-failed=\"{failed}\">\
         <p>{intro}</p><table><tr><td>{uid_label}</td><td><b>{user_id}</b></td></tr>\
         <tr><td>{type_label}</td><td><b>{user_type}</b></td></tr></table>\
         <button id=\"go\" type=\"button\">{button}</button><p id=\"msg\" class=\"err\" role=\"alert\"></p></div>\
         <div id=\"done\" hidden><p class=\"ok\">{done}</p><p>{next}</p></div>\
         <script nonce=\"{nonce}\">{SCRIPT}</script>",
        title = escape(texts.title),
        token = escape(token),
        confirm = escape(texts.confirm),
        failed = escape(texts.failed),
        intro = escape(texts.intro),
        uid_label = escape(texts.user_id),
        user_id = escape(key.user_id.as_str()),
        type_label = escape(texts.user_type),
        button = escape(texts.button),
        done = escape(texts.done),
        next = escape(texts.next),
    );
    respond(StatusCode::OK, lang, texts.title, &body, nonce)
}

/// The page the emailed link opens (HTML). Never resets by itself: its button does, after a
/// confirmation dialog, through `POST /v1/resets/confirm`.
#[utoipa::path(get, path = "/reset-totp", tag = "resets",
    params(("token" = String, Query, description = "The token of the emailed link")),
    responses((status = 200, description = "The reset page", content_type = "text/html"),
        (status = 404, description = "A page saying the link is not valid", content_type = "text/html"),
        (status = 410, description = "A page saying the link was used, replaced or expired", content_type = "text/html")))]
pub async fn page(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let lang = language(&headers);
    let texts = if lang == Lang::En { &EN } else { &ID };
    let nonce = STANDARD.encode(random_bytes::<16>());
    let token = query.get("token").map(String::as_str).unwrap_or_default();
    let invalid = || refusal(StatusCode::NOT_FOUND, lang, texts, texts.invalid, &nonce);
    let Some(request_id) = app.resets.tokens.verify(token) else {
        return invalid();
    };
    let key = match account_of(&app, request_id).await {
        Ok(Some(key)) => key,
        Ok(None) => return invalid(),
        Err(e) => return e.into_response(),
    };
    let account = match app.accounts.load(&key).await {
        Ok(account) => account,
        Err(e) => return crate::error::ApiError::from(e).into_response(),
    };
    let Some(request) = account.reset_request(request_id) else {
        return invalid();
    };
    match request.status {
        ResetStatus::Used => refusal(StatusCode::GONE, lang, texts, texts.used, &nonce),
        ResetStatus::Superseded => refusal(StatusCode::GONE, lang, texts, texts.superseded, &nonce),
        ResetStatus::Pending if request.expires_at <= app.now() => {
            refusal(StatusCode::GONE, lang, texts, texts.expired, &nonce)
        }
        ResetStatus::Pending => form(lang, texts, &key, token, &nonce),
    }
}
