//! The one-time setup link: the operator chooses a password, then activates TOTP with a QR code
//! and a first code. Nothing changes on a GET; each step is a POST carrying the token and the
//! double-submitted CSRF token.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::header::{self, HeaderMap};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;
use spse_totp_commands::operators::OperatorCommandError;
use spse_totp_domain::operator::{OperatorError, Username};
use spse_totp_domain::TotpCode;
use spse_totp_projections::operators::{self, OperatorRow};
use spse_totp_store::Actor;
use uuid::Uuid;

use super::i18n::{Chosen, Lang};
use super::session::{pre_token, pre_token_matches};
use super::{csrf_refused, html, message_page, message_with_link, Frame, Link};
use crate::state::{AppState, RequestContext};

#[derive(Template)]
#[template(path = "console/setup.html")]
struct SetupPage {
    page: Frame,
    who: String,
    csrf: String,
    token: String,
    step: &'static str,
    error: Option<String>,
    qr_svg: String,
    otpauth: String,
}

struct Found {
    row: OperatorRow,
    username: Username,
    setup_id: Uuid,
}

/// The operator a token opens, or the page that says the link does not work.
async fn find(app: &AppState, lang: Lang, token: &str) -> Result<Found, Response> {
    let t = lang.texts();
    let invalid = || message_page(StatusCode::NOT_FOUND, lang, None, t.setup_link_invalid);
    let setup_id = app.operators.setup_id_of(token).ok_or_else(invalid)?;
    let row = operators::by_setup_id(&app.db.pool, &setup_id.to_string())
        .await
        .map_err(|e| unavailable(&e))?
        .ok_or_else(invalid)?;
    if row.setup_expires_at.is_none_or(|at| at <= app.now()) {
        return Err(message_page(
            StatusCode::GONE,
            lang,
            None,
            t.setup_link_expired,
        ));
    }
    let username = Username::parse(&row.username).map_err(|_| invalid())?;
    Ok(Found {
        row,
        username,
        setup_id,
    })
}

fn unavailable(e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "console setup");
    (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
}

#[allow(clippy::too_many_arguments)]
fn render(
    app: &AppState,
    headers: &HeaderMap,
    lang: Lang,
    found: &Found,
    token: &str,
    step: &'static str,
    error: Option<String>,
    qr: Option<(String, String)>,
) -> Response {
    let (csrf, set) = pre_token(app, headers);
    let (qr_svg, otpauth) = qr.unwrap_or_default();
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let mut response = html(
        status,
        SetupPage {
            page: Frame::new(lang, None),
            who: format!(
                "{} ({}, {})",
                found.row.name, found.row.username, found.row.role
            ),
            csrf,
            token: token.to_owned(),
            step,
            error,
            // The renderer's XML prolog is not allowed inside HTML.
            qr_svg: qr_svg
                .find("<svg")
                .map(|i| qr_svg[i..].to_owned())
                .unwrap_or_default(),
            otpauth,
        }
        .render(),
    );
    if let Some(set) = set {
        response.headers_mut().append(header::SET_COOKIE, set);
    }
    response
}

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

pub async fn page(
    State(app): State<AppState>,
    chosen: Chosen,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Response {
    let found = match find(&app, chosen.lang, &query.token).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let password_set = match app.operators.load(&found.username).await {
        Ok((op, _)) => op.password_set,
        Err(e) => return unavailable(&e),
    };
    let step = if password_set { "show_qr" } else { "password" };
    render(
        &app,
        &headers,
        chosen.lang,
        &found,
        &query.token,
        step,
        None,
        None,
    )
}

fn actor(found: &Found) -> Actor {
    Actor::Console {
        username: found.row.username.clone(),
        role: found.row.role.as_str().to_owned(),
    }
}

async fn show_qr(
    app: &AppState,
    headers: &HeaderMap,
    lang: Lang,
    ctx: &RequestContext,
    found: &Found,
    token: &str,
    error: Option<String>,
) -> Response {
    match app
        .operators
        .start_enrollment(
            &found.username,
            found.setup_id,
            &app.config.public_base_url,
            &ctx.metadata(actor(found)),
        )
        .await
    {
        Ok(qr) => render(
            app,
            headers,
            lang,
            found,
            token,
            "activate",
            error,
            Some((qr.qr_svg, qr.otpauth_uri)),
        ),
        Err(OperatorCommandError::Rejected { error, .. }) => refused(lang, &error),
        Err(e) => unavailable(&e),
    }
}

fn refused(lang: Lang, error: &OperatorError) -> Response {
    let t = lang.texts();
    let message = match error {
        OperatorError::SetupLinkExpired => t.setup_link_expired,
        _ => t.setup_link_invalid,
    };
    message_page(StatusCode::CONFLICT, lang, None, message)
}

#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password2: String,
}

pub async fn password(
    State(app): State<AppState>,
    chosen: Chosen,
    ctx: RequestContext,
    headers: HeaderMap,
    Form(form): Form<PasswordForm>,
) -> Response {
    let lang = chosen.lang;
    let t = lang.texts();
    if !pre_token_matches(&app, &headers, &form.csrf) {
        return csrf_refused(lang, None);
    }
    let found = match find(&app, lang, &form.token).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    if form.password != form.password2 {
        return render(
            &app,
            &headers,
            lang,
            &found,
            &form.token,
            "password",
            Some(t.setup_passwords_differ.to_owned()),
            None,
        );
    }
    match app
        .operators
        .set_password(
            &found.username,
            found.setup_id,
            &form.password,
            &ctx.metadata(actor(&found)),
        )
        .await
    {
        Ok(_) => show_qr(&app, &headers, lang, &ctx, &found, &form.token, None).await,
        Err(OperatorCommandError::Rejected {
            error: OperatorError::PasswordTooShort(_),
            ..
        }) => render(
            &app,
            &headers,
            lang,
            &found,
            &form.token,
            "password",
            Some(t.setup_password_short.to_owned()),
            None,
        ),
        Err(OperatorCommandError::Rejected { error, .. }) => refused(lang, &error),
        Err(e) => unavailable(&e),
    }
}

#[derive(Debug, Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    code: String,
}

pub async fn qr(
    State(app): State<AppState>,
    chosen: Chosen,
    ctx: RequestContext,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    if !pre_token_matches(&app, &headers, &form.csrf) {
        return csrf_refused(chosen.lang, None);
    }
    match find(&app, chosen.lang, &form.token).await {
        Ok(found) => show_qr(&app, &headers, chosen.lang, &ctx, &found, &form.token, None).await,
        Err(page) => page,
    }
}

pub async fn activate(
    State(app): State<AppState>,
    chosen: Chosen,
    ctx: RequestContext,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let lang = chosen.lang;
    let t = lang.texts();
    if !pre_token_matches(&app, &headers, &form.csrf) {
        return csrf_refused(lang, None);
    }
    let found = match find(&app, lang, &form.token).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let wrong = Some(t.code_wrong.to_owned());
    let Ok(code) = TotpCode::parse(form.code.trim()) else {
        return show_qr(&app, &headers, lang, &ctx, &found, &form.token, wrong).await;
    };
    match app
        .operators
        .activate(
            &found.username,
            found.setup_id,
            code,
            &ctx.metadata(actor(&found)),
        )
        .await
    {
        Ok(_) => message_with_link(
            lang,
            None,
            t.setup_done,
            Link {
                href: "/console/sign-in".to_owned(),
                label: t.sign_in.to_owned(),
            },
        ),
        Err(OperatorCommandError::Rejected {
            error: OperatorError::InvalidCode | OperatorError::EnrollmentExpired,
            ..
        }) => show_qr(&app, &headers, lang, &ctx, &found, &form.token, wrong).await,
        Err(OperatorCommandError::Rejected { error, .. }) => refused(lang, &error),
        Err(e) => unavailable(&e),
    }
}
