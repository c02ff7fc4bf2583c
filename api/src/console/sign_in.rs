//! Signing in (username, password, TOTP code) and out. A wrong password or code is an event in
//! the operator's stream and counts toward the same lock as a user's wrong codes.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::header::{self, HeaderMap};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use serde::Deserialize;
use serde_json::json;
use spse_totp_commands::operators::OperatorCommandError;
use spse_totp_commands::tokens::sha256_hex;
use spse_totp_domain::operator::{DeviceSignIn, OperatorError, Username};
use spse_totp_domain::TotpCode;
use spse_totp_projections::operators;
use spse_totp_store::Actor;
use uuid::Uuid;

use super::i18n::{Chosen, Lang};
use super::session::{
    cookie, cookie_name, pre_token, pre_token_matches, session_cookie_name, set_cookie, Signed,
};
use super::{csrf_refused, html, local, same_secret, Frame};
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
    let Ok(username) = Username::parse(&form.username) else {
        return refused(t.sign_in_refused.to_owned());
    };
    let (role, has_device) = match operators::get(&app.db.pool, &username).await {
        Ok(Some(row)) => (row.role.as_str().to_owned(), row.device_label.is_some()),
        Ok(None) => return refused(t.sign_in_refused.to_owned()),
        Err(e) => return unavailable(&e),
    };
    let metadata = ctx.metadata(Actor::Console {
        username: username.to_string(),
        role,
    });
    // No code typed: the bound device is asked, and the page waits for its answer.
    if form.code.trim().is_empty() && has_device {
        return match app
            .operators
            .start_device_sign_in(&username, &form.password, &metadata)
            .await
        {
            Ok(started) => {
                app.caught_up(started.position).await;
                let value = format!(
                    "{}:{}:{}",
                    username,
                    started.sign_in_id.simple(),
                    started.browser_secret
                );
                let mut response = Redirect::to("/console/sign-in/wait").into_response();
                response.headers_mut().append(
                    header::SET_COOKIE,
                    set_cookie(&app, &wait_cookie_name(&app), &value, None),
                );
                response
            }
            Err(OperatorCommandError::Rejected {
                error: OperatorError::Locked { until },
                ..
            }) => refused(format!("{} {}.", t.locked_until, local(zone, until))),
            Err(OperatorCommandError::Rejected { .. }) => refused(t.sign_in_refused.to_owned()),
            Err(e) => unavailable(&e),
        };
    }
    let Ok(code) = TotpCode::parse(form.code.trim()) else {
        return refused(t.sign_in_refused.to_owned());
    };
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
    signed_in(&app, &username).await
}

/// A new session for `username` and the way into the console.
async fn signed_in(app: &AppState, username: &Username) -> Response {
    let session = match app.console_sessions.start(username, app.now()).await {
        Ok(session) => session,
        Err(e) => return unavailable(&e),
    };
    let mut response = Redirect::to("/console").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(app, &session_cookie_name(app), &session, None),
    );
    response
}

/// The waiting browser's cookie: `{username}:{sign-in id}:{secret}` (a username may hold dots); the stream holds only the
/// secret's SHA-256, so only this browser turns the device's approval into a session.
fn wait_cookie_name(app: &AppState) -> String {
    cookie_name(app, "spse_console_wait")
}

struct Waiting {
    username: Username,
    sign_in_id: Uuid,
    secret: String,
}

impl Waiting {
    /// Whether `sign_in` is the one this browser started: its id, and the secret only it holds.
    fn owns(&self, sign_in: &DeviceSignIn) -> bool {
        sign_in.sign_in_id == self.sign_in_id
            && same_secret(&sign_in.browser_sha256, &sha256_hex(&self.secret))
    }
}

fn waiting_of(app: &AppState, headers: &HeaderMap) -> Option<Waiting> {
    let value = cookie(headers, &wait_cookie_name(app))?;
    let mut parts = value.splitn(3, ':');
    let username = Username::parse(parts.next()?).ok()?;
    let sign_in_id = Uuid::try_parse(parts.next()?).ok()?;
    let secret = parts.next()?.to_owned();
    Some(Waiting {
        username,
        sign_in_id,
        secret,
    })
}

#[derive(Template)]
#[template(path = "console/sign_in_wait.html")]
struct WaitPage {
    page: Frame,
    csrf: String,
    number: String,
    seconds_left: i64,
    countdown: String,
    error: Option<String>,
}

/// The page that shows the approval number and waits. It only reads: what the device answered
/// is acted on when the "Lanjutkan" form (sent by the script, or by hand) is posted.
pub async fn wait_page(
    State(app): State<AppState>,
    chosen: Chosen,
    headers: HeaderMap,
) -> Response {
    render_wait(&app, &headers, chosen.lang, None, StatusCode::OK).await
}

async fn render_wait(
    app: &AppState,
    headers: &HeaderMap,
    lang: Lang,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let Some(waiting) = waiting_of(app, headers) else {
        return Redirect::to("/console/sign-in").into_response();
    };
    let op = match app.operators.load(&waiting.username).await {
        Ok((op, _)) => op,
        Err(e) => return unavailable(&e),
    };
    let now = app.now();
    let (number, seconds_left) = match op.sign_in.as_ref().filter(|s| waiting.owns(s)) {
        Some(s) => (
            s.number.value().to_string(),
            (s.expires_at - now).num_seconds().max(0),
        ),
        None => ("--".to_owned(), 0),
    };
    let (csrf, set) = pre_token(app, headers);
    let mut response = html(
        status,
        WaitPage {
            page: Frame::new(lang, None),
            csrf,
            number,
            seconds_left,
            countdown: format!("{:02}:{:02}", seconds_left / 60, seconds_left % 60),
            error,
        }
        .render(),
    );
    if let Some(set) = set {
        response.headers_mut().append(header::SET_COOKIE, set);
    }
    response
}

#[derive(Debug, Deserialize)]
pub struct WaitQuery {
    #[serde(default)]
    wait_seconds: u64,
}

/// Longest the waiting page's script is held (under the service's long-poll cap).
const WAIT_POLL_SECONDS: u64 = 25;

/// The script's long-poll: answers `{"done": true}` once the device has answered or the time is
/// over, `{"done": false}` after `wait_seconds` otherwise.
pub async fn wait_poll(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<WaitQuery>,
) -> Response {
    let Some(waiting) = waiting_of(&app, &headers) else {
        return Json(json!({ "done": true })).into_response();
    };
    let mut progress = app.projections.subscribe();
    let wait = query.wait_seconds.min(WAIT_POLL_SECONDS);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(wait);
    loop {
        let op = match app.operators.load(&waiting.username).await {
            Ok((op, _)) => op,
            Err(e) => return unavailable(&e),
        };
        let done = op
            .sign_in
            .as_ref()
            .filter(|s| waiting.owns(s))
            .is_none_or(|s| s.approved_step.is_some() || s.expires_at <= app.now());
        if done || tokio::time::Instant::now() >= deadline {
            return Json(json!({ "done": done })).into_response();
        }
        tokio::select! {
            changed = progress.changed() => if changed.is_err() {
                return Json(json!({ "done": false })).into_response();
            },
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct WaitForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
}

/// "Lanjutkan", or a typed code instead of the device: signed in once approved (or on a right
/// code); back to the sign-in form when denied or expired; the waiting page again otherwise.
pub async fn wait_submit(
    State(app): State<AppState>,
    chosen: Chosen,
    ctx: RequestContext,
    headers: HeaderMap,
    Form(form): Form<WaitForm>,
) -> Response {
    let lang = chosen.lang;
    let t = lang.texts();
    let zone = app.config.lpse.time_zone;
    if !pre_token_matches(&app, &headers, &form.csrf) {
        return csrf_refused(lang, None);
    }
    // No sign-in waits in this browser (any more): the console, or its sign-in page.
    let Some(waiting) = waiting_of(&app, &headers) else {
        return Redirect::to("/console").into_response();
    };
    let role = match operators::get(&app.db.pool, &waiting.username).await {
        Ok(Some(row)) => row.role.as_str().to_owned(),
        Ok(None) => return Redirect::to("/console/sign-in").into_response(),
        Err(e) => return unavailable(&e),
    };
    let metadata = ctx.metadata(Actor::Console {
        username: waiting.username.to_string(),
        role,
    });
    let code = form.code.trim();
    let outcome = if code.is_empty() {
        app.operators
            .finish_device_sign_in(
                &waiting.username,
                waiting.sign_in_id,
                &waiting.secret,
                &metadata,
            )
            .await
    } else {
        let Ok(code) = TotpCode::parse(code) else {
            return render_wait(
                &app,
                &headers,
                lang,
                Some(t.wait_code_wrong.to_owned()),
                StatusCode::UNAUTHORIZED,
            )
            .await;
        };
        app.operators
            .code_for_device_sign_in(
                &waiting.username,
                waiting.sign_in_id,
                &waiting.secret,
                code,
                &metadata,
            )
            .await
    };
    let ended = |message: String| {
        let mut response = render(
            &app,
            &headers,
            lang,
            waiting.username.as_str(),
            Some(message),
            StatusCode::UNAUTHORIZED,
        );
        response.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(&app, &wait_cookie_name(&app), "", Some(0)),
        );
        response
    };
    match outcome {
        Ok(_) => {
            let mut response = signed_in(&app, &waiting.username).await;
            response.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(&app, &wait_cookie_name(&app), "", Some(0)),
            );
            response
        }
        Err(OperatorCommandError::Rejected {
            error: OperatorError::SignInWaiting,
            ..
        }) => render_wait(&app, &headers, lang, None, StatusCode::OK).await,
        Err(OperatorCommandError::Rejected {
            error: OperatorError::SignInRefused { .. },
            ..
        }) => {
            render_wait(
                &app,
                &headers,
                lang,
                Some(t.wait_code_wrong.to_owned()),
                StatusCode::UNAUTHORIZED,
            )
            .await
        }
        Err(OperatorCommandError::Rejected {
            error: OperatorError::Locked { until },
            ..
        }) => ended(format!("{} {}.", t.locked_until, local(zone, until))),
        Err(OperatorCommandError::Rejected {
            error: OperatorError::SignInExpired,
            ..
        }) => ended(t.wait_expired.to_owned()),
        Err(OperatorCommandError::Rejected { .. }) => ended(t.wait_denied.to_owned()),
        Err(e) => unavailable(&e),
    }
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
