//! Who is signed in: the session cookie, the CSRF token of its forms, and the cookie a form
//! shown before sign-in carries its token in.

use axum::extract::FromRequestParts;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use spse_totp_commands::operators::{ConsoleSession, SessionLimits};
use spse_totp_commands::tokens::random_token;
use spse_totp_domain::operator::OperatorRole;
use spse_totp_store::Actor;

use super::i18n::{Chosen, Lang};
use super::same_secret;
use crate::state::AppState;

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Whether cookies get `Secure` and the `__Host-` prefix: when the service is reached over https.
fn secure(app: &AppState) -> bool {
    app.config.public_base_url.starts_with("https://")
}

pub fn cookie_name(app: &AppState, base: &str) -> String {
    if secure(app) {
        format!("__Host-{base}")
    } else {
        base.to_owned()
    }
}

pub fn session_cookie_name(app: &AppState) -> String {
    cookie_name(app, "spse_console")
}

pub fn pre_cookie_name(app: &AppState) -> String {
    cookie_name(app, "spse_console_pre")
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Strict`, path `/` (as `__Host-` needs), and
/// `Secure` over https. `max_age` 0 removes it.
pub fn set_cookie(app: &AppState, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
    let mut text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if secure(app) {
        text.push_str("; Secure");
    }
    if let Some(age) = max_age {
        text.push_str(&format!("; Max-Age={age}"));
    }
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

/// The token a form shown before sign-in (sign-in, setup) carries, double-submitted: the same
/// value in a `SameSite=Strict` cookie and in the form. Returns it and, when it is new, the
/// cookie to set.
pub fn pre_token(app: &AppState, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match cookie(headers, &pre_cookie_name(app)).filter(|v| v.len() >= 20 && v.len() <= 100) {
        Some(token) => (token, None),
        None => {
            let token = random_token("pre");
            let set = set_cookie(app, &pre_cookie_name(app), &token, None);
            (token, Some(set))
        }
    }
}

/// Whether a form posted before sign-in carries the token its cookie holds.
pub fn pre_token_matches(app: &AppState, headers: &HeaderMap, posted: &str) -> bool {
    cookie(headers, &pre_cookie_name(app))
        .is_some_and(|c| !posted.is_empty() && same_secret(&c, posted))
}

/// A signed-in operator, checked on every request against the database.
#[derive(Debug, Clone)]
pub struct Signed {
    pub session: ConsoleSession,
    pub lang: Lang,
    pub cookie: String,
}

impl Signed {
    pub fn home(&self) -> &'static str {
        match self.session.role {
            OperatorRole::Helpdesk => "/console/accounts",
            OperatorRole::Auditor => "/console/audit",
            OperatorRole::Admin => "/console/admin/operators",
        }
    }

    pub fn actor(&self) -> Actor {
        Actor::Console {
            username: self.session.username.to_string(),
            role: self.session.role.as_str().to_owned(),
        }
    }

    pub fn csrf(&self) -> &str {
        &self.session.csrf_token
    }

    /// Whether a posted form carries this session's CSRF token.
    pub fn csrf_ok(&self, posted: &str) -> bool {
        !posted.is_empty() && same_secret(&self.session.csrf_token, posted)
    }

    /// A form post that may change something: the operator has `role` (else 403) and the form
    /// carries this session's CSRF token (else the "form expired" page); either refusal changes
    /// nothing.
    pub fn may_post(&self, role: OperatorRole, posted_csrf: &str) -> Result<(), Response> {
        self.require(role)?;
        if self.csrf_ok(posted_csrf) {
            Ok(())
        } else {
            Err(super::csrf_refused(self.lang, Some(self)))
        }
    }

    /// The operator has `role`, or the page answers 403.
    pub fn require(&self, role: OperatorRole) -> Result<(), Response> {
        if self.session.role == role {
            Ok(())
        } else {
            Err(super::message_page(
                StatusCode::FORBIDDEN,
                self.lang,
                Some(self),
                self.lang.texts().forbidden,
            ))
        }
    }
}

impl FromRequestParts<AppState> for Signed {
    /// No live session: to the sign-in page.
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let to_sign_in = || Redirect::to("/console/sign-in").into_response();
        let Ok(chosen) = Chosen::from_request_parts(parts, app).await;
        let Some(value) = cookie(&parts.headers, &session_cookie_name(app)) else {
            return Err(to_sign_in());
        };
        match app
            .console_sessions
            .find(&value, app.now(), SessionLimits::default())
            .await
        {
            Ok(Some(session)) => Ok(Signed {
                session,
                lang: chosen.lang,
                cookie: value,
            }),
            Ok(None) => Err(to_sign_in()),
            Err(e) => {
                tracing::error!(error = %e, "reading a console session");
                Err((StatusCode::SERVICE_UNAVAILABLE, "try again").into_response())
            }
        }
    }
}

impl axum::extract::OptionalFromRequestParts<AppState> for Signed {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(
            <Signed as FromRequestParts<AppState>>::from_request_parts(parts, app)
                .await
                .ok(),
        )
    }
}
