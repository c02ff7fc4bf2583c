//! The operator console (issue 15), mounted at `/console`: helpdesk staff, auditors and admins
//! sign in as themselves (password and TOTP), and each action they take runs the same command as
//! the API, recorded under their own name.
//!
//! Server-rendered HTML from askama templates compiled into the binary; every page works
//! without JavaScript, every asset is embedded, and every answer carries a strict
//! Content-Security-Policy. Sessions and CSRF tokens live in the database (see
//! `spse_totp_commands::operators::ConsoleSessions`), so a sign-out or a disabled operator ends
//! the session on every instance.

// A page handler returns early with the page that refuses (403, 404, an expired form); boxing
// every such `Response` would only add noise to each handler.
#![allow(clippy::result_large_err)]

mod admin;
mod auditor;
mod auditor_log;

pub mod cli;
mod helpdesk;
mod i18n;
mod session;
mod setup;
mod sign_in;

use axum::extract::Request;
use axum::http::header::{self, HeaderValue};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use spse_totp_projections::mail::message::LocalZone;

pub use i18n::{Lang, Texts};
pub use session::Signed;

use crate::state::AppState;

/// The console's stylesheet, embedded: no request leaves for another host.
const STYLESHEET: &str = include_str!("../../templates/console/console.css");
/// The waiting page's script, the same the reference portal serves.
const SCRIPT: &str = include_str!("../../assets/wait.js");

/// No script at all, styles only from this origin, forms only to it, never framed. The QR code
/// is inline SVG markup, which needs no source.
// Scripts only from this service (the waiting page's long-poll), and it may only call here.
const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self' data:; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/console.css", get(stylesheet))
        .route("/console.js", get(script))
        .route("/sign-in", get(sign_in::page).post(sign_in::submit))
        .route(
            "/sign-in/wait",
            get(sign_in::wait_page).post(sign_in::wait_submit),
        )
        .route("/sign-in/wait/poll", get(sign_in::wait_poll))
        .route("/sign-out", post(sign_in::sign_out))
        .route("/setup", get(setup::page))
        .route("/setup/password", post(setup::password))
        .route("/setup/qr", post(setup::qr))
        .route("/setup/activate", post(setup::activate))
        .route("/accounts", get(helpdesk::search))
        .route("/accounts/{user_type}/{user_id}", get(helpdesk::account))
        .route(
            "/accounts/{user_type}/{user_id}/reset/confirm",
            post(helpdesk::confirm_reset),
        )
        .route(
            "/accounts/{user_type}/{user_id}/reset",
            post(helpdesk::reset),
        )
        .route(
            "/accounts/{user_type}/{user_id}/unlock",
            post(helpdesk::unlock),
        )
        .route("/audit", get(auditor::home))
        .route("/audit/account", get(auditor::account))
        .route("/audit/export", get(auditor_log::export))
        .route(
            "/audit/chain",
            get(auditor_log::chain).post(auditor_log::run_chain),
        )
        .route("/audit/search", get(auditor_log::search))
        .route("/audit/search.csv", get(auditor_log::search_csv))
        .route("/admin", get(admin::home))
        .route(
            "/admin/operators",
            get(admin::operators).post(admin::create_operator),
        )
        .route(
            "/admin/operators/{username}/disable",
            post(admin::disable_operator),
        )
        .route(
            "/admin/operators/{username}/reset-totp",
            post(admin::reset_operator_totp),
        )
        .route("/admin/keys", get(admin::keys).post(admin::create_key))
        .route(
            "/admin/keys/{key_id}/revoke/confirm",
            post(admin::confirm_revoke_key),
        )
        .route("/admin/keys/{key_id}/revoke", post(admin::revoke_key))
        .layer(middleware::from_fn(headers))
}

/// Every console answer: the strict CSP, never cached (pages hold personal data and CSRF
/// tokens), never framed, and no referrer (a setup link's token is in its URL).
async fn headers(request: Request, next: Next) -> Response {
    // The language switch (`?lang=`) on any page is remembered for the pages after it.
    let switched = request.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("lang="))
            .filter(|lang| matches!(*lang, "id" | "en"))
            .map(str::to_owned)
    });
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    if let Some(lang) = switched {
        let cookie = format!(
            "{}={lang}; Path=/; Max-Age=31536000; SameSite=Strict; HttpOnly",
            i18n::LANG_COOKIE
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            h.append(header::SET_COOKIE, value);
        }
    }
    crate::page_headers::protect_page(h, CSP);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
        .into_response()
}

async fn home(signed: Option<Signed>) -> Redirect {
    match signed {
        None => Redirect::to("/console/sign-in"),
        Some(s) => Redirect::to(s.home()),
    }
}

/// A rendered template as an HTML answer; a template that fails to render is a 500 with a
/// plain page, never a stack trace.
pub fn html(status: StatusCode, rendered: Result<String, askama::Error>) -> Response {
    match rendered {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a console template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "internal error",
            )
                .into_response()
        }
    }
}

/// An instant as the console shows it: in the LPSE's zone (`SPSE_TOTP_TIME_ZONE`), labelled
/// WIB, WITA or WIT. Everything is stored in UTC.
pub fn local(zone: LocalZone, at: DateTime<Utc>) -> String {
    format!(
        "{} {}",
        at.with_timezone(&zone.offset()).format("%Y-%m-%d %H:%M:%S"),
        zone.label()
    )
}

/// Equal without leaking where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A link in the navigation or under a message.
pub struct Link {
    pub href: String,
    pub label: String,
}

/// The signed-in operator's bar.
pub struct Nav {
    pub name: String,
    pub role: &'static str,
    pub csrf: String,
    pub links: Vec<Link>,
}

/// What the base template needs on every page.
pub struct Frame {
    pub t: &'static Texts,
    pub lang: &'static str,
    pub nav: Option<Nav>,
}

impl Frame {
    pub fn new(lang: Lang, signed: Option<&Signed>) -> Frame {
        let t = lang.texts();
        let nav = signed.map(|s| {
            use spse_totp_domain::operator::OperatorRole;
            let link = |href: &str, label: &str| Link {
                href: href.to_owned(),
                label: label.to_owned(),
            };
            let links = match s.session.role {
                OperatorRole::Helpdesk => vec![link("/console/accounts", t.accounts)],
                OperatorRole::Auditor => vec![
                    link("/console/audit", t.audit),
                    link("/console/audit/search", t.log_search),
                    link("/console/audit/chain", t.chain),
                ],
                OperatorRole::Admin => vec![
                    link("/console/admin/operators", t.operators),
                    link("/console/admin/keys", t.api_keys),
                ],
            };
            Nav {
                name: s.session.name.clone(),
                role: s.session.role.as_str(),
                csrf: s.csrf().to_owned(),
                links,
            }
        });
        Frame {
            t,
            lang: lang.code(),
            nav,
        }
    }
}

#[derive(askama::Template)]
#[template(path = "console/message.html")]
struct MessagePage<'a> {
    page: Frame,
    kind: &'a str,
    message: &'a str,
    next: Option<Link>,
}

/// A page that only says something: a refusal, an expired form, a done action.
pub fn message_page(
    status: StatusCode,
    lang: Lang,
    signed: Option<&Signed>,
    message: &str,
) -> Response {
    use askama::Template as _;
    let kind = if status.is_success() { "ok" } else { "error" };
    html(
        status,
        MessagePage {
            page: Frame::new(lang, signed),
            kind,
            message,
            next: None,
        }
        .render(),
    )
}

/// A page with a link to go on from.
pub fn message_with_link(
    lang: Lang,
    signed: Option<&Signed>,
    message: &str,
    next: Link,
) -> Response {
    use askama::Template as _;
    html(
        StatusCode::OK,
        MessagePage {
            page: Frame::new(lang, signed),
            kind: "ok",
            message,
            next: Some(next),
        }
        .render(),
    )
}

/// The answer to a POST whose CSRF token is missing or wrong: nothing was changed.
pub fn csrf_refused(lang: Lang, signed: Option<&Signed>) -> Response {
    message_page(
        StatusCode::FORBIDDEN,
        lang,
        signed,
        lang.texts().form_expired,
    )
}
