//! Signing in (username, password, TOTP code) and out. A wrong password or code is an event in
//! the operator's stream and counts toward the same lock as a user's wrong codes.

use askama::Template;
use axum::extract::State;
use axum::http::header::{self, HeaderMap};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use spse_totp_commands::operators::OperatorCommandError;
use spse_totp_domain::operator::{OperatorError, Username};
use spse_totp_domain::TotpCode;
use spse_totp_projections::operators;
use spse_totp_store::Actor;

use super::i18n::{Chosen, Lang};
use super::session::{pre_token, pre_token_matches, session_cookie_name, set_cookie, Signed};
use super::{csrf_refused, html, local, Frame};
use crate::state::{AppState, RequestContext};

#[derive(Template)]
#[template(path = "console/sign_in.html")]
struct SignInPage {
    page: Frame,
    csrf: String,
    username: String,
    error: Option<String>,
}

fn render(
    app: &AppState,
    headers: &HeaderMap,
    lang: Lang,
    username: &str,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let (csrf, set) = pre_token(app, headers);
    let mut response = html(
        status,
        SignInPage {
            page: Frame::new(lang, None),
            csrf,
            username: username.to_owned(),
            error,
        }
        .render(),
    );
    if let Some(set) = set {
        response.headers_mut().append(header::SET_COOKIE, set);
    }
    response
}

pub async fn page(State(app): State<AppState>, chosen: Chosen, headers: HeaderMap) -> Response {
    render(&app, &headers, chosen.lang, "", None, StatusCode::OK)
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
}

pub async fn submit(
    State(app): State<AppState>,
    chosen: Chosen,
    ctx: RequestContext,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let zone = app.config.lpse.time_zone;
    let lang = chosen.lang;
    let t = lang.texts();
    if !pre_token_matches(&app, &headers, &form.csrf) {
        return csrf_refused(lang, None);
    }
    let refused = |error: String| {
        render(
            &app,
            &headers,
            lang,
            &form.username,
            Some(error),
            StatusCode::UNAUTHORIZED,
        )
    };
    let (Ok(username), Ok(code)) = (
        Username::parse(&form.username),
        TotpCode::parse(form.code.trim()),
    ) else {
        return refused(t.sign_in_refused.to_owned());
    };
    let role = match operators::get(&app.db.pool, &username).await {
        Ok(Some(row)) => row.role.as_str().to_owned(),
        Ok(None) => return refused(t.sign_in_refused.to_owned()),
        Err(e) => return unavailable(&e),
    };
    let metadata = ctx.metadata(Actor::Console {
        username: username.to_string(),
        role,
    });
    match app
        .operators
        .sign_in(&username, &form.password, code, &metadata)
        .await
    {
        Ok(_) => {}
        Err(OperatorCommandError::Rejected {
            error: OperatorError::Locked { until },
            ..
        }) => return refused(format!("{} {}.", t.locked_until, local(zone, until))),
        Err(OperatorCommandError::Rejected { .. }) => return refused(t.sign_in_refused.to_owned()),
        Err(e) => return unavailable(&e),
    }
    let session = match app.console_sessions.start(&username, app.now()).await {
        Ok(session) => session,
        Err(e) => return unavailable(&e),
    };
    let mut response = Redirect::to("/console").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&app, &session_cookie_name(&app), &session, None),
    );
    response
}

fn unavailable(e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "console sign-in");
    (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn sign_out(
    State(app): State<AppState>,
    signed: Signed,
    ctx: RequestContext,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !signed.csrf_ok(&form.csrf) {
        return csrf_refused(signed.lang, Some(&signed));
    }
    if let Err(e) = app.console_sessions.end(&signed.cookie).await {
        return unavailable(&e);
    }
    if let Err(e) = app
        .operators
        .sign_out(&signed.session.username, &ctx.metadata(signed.actor()))
        .await
    {
        tracing::warn!(error = %e, "recording a sign-out");
    }
    let mut response = Redirect::to("/console/sign-in").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&app, &session_cookie_name(&app), "", Some(0)),
    );
    response
}
