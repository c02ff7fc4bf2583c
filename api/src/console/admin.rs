//! The admin's pages: operators (create, showing the setup link once; disable; reset TOTP,
//! showing the new link once) and API keys (list; create, showing the key once; revoke, after a
//! confirmation). The same commands as `spse-totp operator ...` and `spse-totp apikey ...`, with
//! the signed-in admin as the actor of each event.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use spse_totp_commands::apikeys;
use spse_totp_commands::operators::OperatorCommandError;
use spse_totp_domain::apikey::{self, KeyRefusal, Role, MAX_EXPIRES_IN_DAYS};
use spse_totp_domain::operator::{OperatorRole, Username};
use spse_totp_projections::{api_keys, operators};
use spse_totp_store::EventMetadata;

use super::cli::setup_link;
use super::session::Signed;
use super::{html, local, message_with_link, Frame, Link};
use crate::state::{AppState, RequestContext};

const NAME_MAX: usize = 200;

fn unavailable(e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "console admin page");
    (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
}

fn field(value: &str, max: usize) -> Option<String> {
    let value = value.trim();
    (!value.is_empty() && value.chars().count() <= max && !value.chars().any(char::is_control))
        .then(|| value.to_owned())
}

pub async fn home(signed: Signed) -> Response {
    if let Err(page) = signed.require(OperatorRole::Admin) {
        return page;
    }
    Redirect::to("/console/admin/operators").into_response()
}

// ---- Operators ----

pub struct OperatorLine {
    username: String,
    name: String,
    email: String,
    role: String,
    status: String,
    last_sign_in: String,
    disabled: bool,
    /// The signed-in admin: no buttons that would lock them out of the console.
    is_me: bool,
    base: String,
}

#[derive(Template)]
#[template(path = "console/admin_operators.html")]
struct OperatorsPage {
    page: Frame,
    csrf: String,
    error: Option<String>,
    operators: Vec<OperatorLine>,
    form: OperatorForm,
}

#[derive(Debug, Default, Deserialize)]
pub struct OperatorForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
}

async fn render_operators(
    app: &AppState,
    signed: &Signed,
    status: StatusCode,
    form: OperatorForm,
    error: Option<String>,
) -> Response {
    let zone = app.config.lpse.time_zone;
    let t = signed.lang.texts();
    let rows = match operators::list(&app.db.pool).await {
        Ok(rows) => rows,
        Err(e) => return unavailable(&e),
    };
    let now = app.now();
    let lines = rows
        .into_iter()
        .map(|op| {
            let status = match op.locked_at(now) {
                Some(until) if op.status == "active" => {
                    format!("locked ({} {})", t.to, local(zone, until))
                }
                _ => op.status.clone(),
            };
            OperatorLine {
                base: format!("/console/admin/operators/{}", op.username),
                disabled: op.status == "disabled",
                is_me: op.username == signed.session.username.as_str(),
                last_sign_in: op
                    .last_sign_in_at
                    .map(|at| local(zone, at))
                    .unwrap_or_else(|| t.none.to_owned()),
                role: op.role.as_str().to_owned(),
                username: op.username,
                name: op.name,
                email: op.email,
                status,
            }
        })
        .collect();
    html(
        status,
        OperatorsPage {
            page: Frame::new(signed.lang, Some(signed)),
            csrf: signed.csrf().to_owned(),
            error,
            operators: lines,
            form,
        }
        .render(),
    )
}

pub async fn operators(State(app): State<AppState>, signed: Signed) -> Response {
    if let Err(page) = signed.require(OperatorRole::Admin) {
        return page;
    }
    let form = OperatorForm {
        role: "helpdesk".to_owned(),
        ..OperatorForm::default()
    };
    render_operators(&app, &signed, StatusCode::OK, form, None).await
}

#[derive(Template)]
#[template(path = "console/shown_once.html")]
struct ShownOnce<'a> {
    page: Frame,
    message: &'a str,
    hint: &'a str,
    secret: &'a str,
    next: Link,
}

/// A page that shows a setup link or a key this once: it is not stored anywhere it could be
/// shown from again.
fn shown_once(signed: &Signed, message: &str, hint: &str, secret: &str, next: Link) -> Response {
    html(
        StatusCode::OK,
        ShownOnce {
            page: Frame::new(signed.lang, Some(signed)),
            message,
            hint,
            secret,
            next,
        }
        .render(),
    )
}

fn back_to_operators(signed: &Signed) -> Link {
    Link {
        href: "/console/admin/operators".to_owned(),
        label: signed.lang.texts().operators.to_owned(),
    }
}

/// A refusal by the domain (an existing username, an unknown operator) as words for the page.
fn refusal(signed: &Signed, e: &OperatorCommandError) -> Option<String> {
    e.rejected()
        .map(|error| format!("{} {error}", signed.lang.texts().action_refused))
}

pub async fn create_operator(
    State(app): State<AppState>,
    signed: Signed,
    ctx: RequestContext,
    Form(form): Form<OperatorForm>,
) -> Response {
    if let Err(page) = signed.may_post(OperatorRole::Admin, &form.csrf) {
        return page;
    }
    let t = signed.lang.texts();
    let role = form.role.parse::<OperatorRole>();
    let username = Username::parse(&form.username);
    let (Ok(role), Ok(username), Some(name), Some(email)) = (
        role,
        username,
        field(&form.name, NAME_MAX),
        field(&form.email, NAME_MAX).filter(|e| e.contains('@')),
    ) else {
        let error = Some(t.required_fields.to_owned());
        return render_operators(&app, &signed, StatusCode::BAD_REQUEST, form, error).await;
    };
    let metadata = ctx.metadata(signed.actor());
    match app
        .operators
        .create(&username, &name, &email, role, &metadata)
        .await
    {
        Ok((token, position)) => {
            app.caught_up(position).await;
            let link = setup_link(&app.config.public_base_url, &token);
            shown_once(
                &signed,
                &format!("{} {username} ({role})", t.operator_created),
                t.setup_link_once,
                &link,
                back_to_operators(&signed),
            )
        }
        Err(e) => match refusal(&signed, &e) {
            Some(error) => {
                render_operators(&app, &signed, StatusCode::CONFLICT, form, Some(error)).await
            }
            None => unavailable(&e),
        },
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// The operator a path names, or the list again with why not. An admin does not disable or
/// reset themselves here (they would lose the console mid-action); another admin or the command
/// line can.
async fn named(app: &AppState, signed: &Signed, username: &str) -> Result<Username, Response> {
    let (status, error) = match Username::parse(username) {
        Ok(username) if username != signed.session.username => return Ok(username),
        Ok(_) => (
            StatusCode::CONFLICT,
            signed.lang.texts().forbidden.to_owned(),
        ),
        Err(e) => (StatusCode::NOT_FOUND, e.to_string()),
    };
    Err(render_operators(app, signed, status, OperatorForm::default(), Some(error)).await)
}

/// What an action on one operator shares: the admin's right to post, the operator the path
/// names, running the command as the signed-in admin, and waiting for the list to show it. A
/// refusal by the domain shows the list again with why.
async fn act_on_operator<T, Act, Acting>(
    app: &AppState,
    signed: &Signed,
    ctx: &RequestContext,
    username: &str,
    csrf: &str,
    act: Act,
) -> Result<(Username, T), Response>
where
    Act: FnOnce(Username, EventMetadata) -> Acting,
    Acting: std::future::Future<Output = Result<(T, Option<u64>), OperatorCommandError>>,
{
    signed.may_post(OperatorRole::Admin, csrf)?;
    let username = named(app, signed, username).await?;
    match act(username.clone(), ctx.metadata(signed.actor())).await {
        Ok((done, position)) => {
            app.caught_up(position).await;
            Ok((username, done))
        }
        Err(e) => Err(match refusal(signed, &e) {
            Some(error) => {
                let form = OperatorForm::default();
                render_operators(app, signed, StatusCode::CONFLICT, form, Some(error)).await
            }
            None => unavailable(&e),
        }),
    }
}

pub async fn disable_operator(
    State(app): State<AppState>,
    signed: Signed,
    ctx: RequestContext,
    Path(username): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let acted = act_on_operator(
        &app,
        &signed,
        &ctx,
        &username,
        &form.csrf,
        |username, meta| {
            let operators = &app.operators;
            async move { Ok(((), operators.disable(&username, &meta).await?)) }
        },
    )
    .await;
    match acted {
        Ok((username, ())) => message_with_link(
            signed.lang,
            Some(&signed),
            &format!("{username}: {}", signed.lang.texts().operator_disabled),
            back_to_operators(&signed),
        ),
        Err(page) => page,
    }
}

pub async fn reset_operator_totp(
    State(app): State<AppState>,
    signed: Signed,
    ctx: RequestContext,
    Path(username): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let acted = act_on_operator(
        &app,
        &signed,
        &ctx,
        &username,
        &form.csrf,
        |username, meta| {
            let operators = &app.operators;
            async move { operators.reset_totp(&username, &meta).await }
        },
    )
    .await;
    match acted {
        Ok((username, token)) => {
            let t = signed.lang.texts();
            shown_once(
                &signed,
                &format!("{username}: {}", t.operator_totp_reset),
                t.setup_link_once,
                &setup_link(&app.config.public_base_url, &token),
                back_to_operators(&signed),
            )
        }
        Err(page) => page,
    }
}

// ---- API keys ----

pub struct KeyLine {
    key_id: String,
    name: String,
    role: String,
    status: String,
    created: String,
    last_used: String,
    expires: String,
    revoked: bool,
}

#[derive(Template)]
#[template(path = "console/admin_keys.html")]
struct KeysPage {
    page: Frame,
    csrf: String,
    error: Option<String>,
    keys: Vec<KeyLine>,
    name: String,
    role: String,
    expires_in_days: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    /// Empty for a key that works until revoked.
    #[serde(default)]
    expires_in_days: String,
}

async fn render_keys(
    app: &AppState,
    signed: &Signed,
    status: StatusCode,
    form: KeyForm,
    error: Option<String>,
) -> Response {
    let zone = app.config.lpse.time_zone;
    let t = signed.lang.texts();
    let now = app.now();
    let keys = match api_keys::list(&app.db.pool).await {
        Ok(keys) => keys,
        Err(e) => return unavailable(&e),
    };
    html(
        status,
        KeysPage {
            page: Frame::new(signed.lang, Some(signed)),
            csrf: signed.csrf().to_owned(),
            error,
            keys: keys
                .into_iter()
                .map(|k| KeyLine {
                    key_id: k.key_id.to_string(),
                    status: match apikey::check(k.expires_at, k.revoked_at, now) {
                        Ok(()) => t.key_active,
                        Err(KeyRefusal::Expired) => t.key_expired,
                        Err(KeyRefusal::Revoked) => t.key_revoked_status,
                    }
                    .to_owned(),
                    revoked: k.revoked_at.is_some(),
                    name: k.name,
                    role: k.role,
                    created: local(zone, k.created_at),
                    last_used: k
                        .last_used_at
                        .map(|at| local(zone, at))
                        .unwrap_or_else(|| t.never.to_owned()),
                    expires: k
                        .expires_at
                        .map(|at| local(zone, at))
                        .unwrap_or_else(|| t.never.to_owned()),
                })
                .collect(),
            name: form.name,
            role: form.role,
            expires_in_days: form.expires_in_days,
        }
        .render(),
    )
}

pub async fn keys(State(app): State<AppState>, signed: Signed) -> Response {
    if let Err(page) = signed.require(OperatorRole::Admin) {
        return page;
    }
    let form = KeyForm {
        role: "portal".to_owned(),
        ..KeyForm::default()
    };
    render_keys(&app, &signed, StatusCode::OK, form, None).await
}

pub async fn create_key(
    State(app): State<AppState>,
    signed: Signed,
    ctx: RequestContext,
    Form(form): Form<KeyForm>,
) -> Response {
    if let Err(page) = signed.may_post(OperatorRole::Admin, &form.csrf) {
        return page;
    }
    let t = signed.lang.texts();
    let (Ok(role), Some(name)) = (form.role.parse::<Role>(), field(&form.name, NAME_MAX)) else {
        let error = Some(t.required_fields.to_owned());
        return render_keys(&app, &signed, StatusCode::BAD_REQUEST, form, error).await;
    };
    let now = app.now();
    // The same bounds as `--expires-in-days`.
    let expires_at = match form.expires_in_days.trim() {
        "" => None,
        days => match days.parse::<u32>().map(|days| apikey::expiry(now, days)) {
            Ok(Ok(at)) => Some(at),
            _ => {
                let error = Some(format!("{}: 1 - {MAX_EXPIRES_IN_DAYS}", t.expires_in_days));
                return render_keys(&app, &signed, StatusCode::BAD_REQUEST, form, error).await;
            }
        },
    };
    let created = match apikeys::create_expiring_as(
        app.db.events.as_ref(),
        &name,
        role,
        expires_at,
        ctx.metadata(signed.actor()),
        now,
    )
    .await
    {
        Ok(created) => created,
        Err(e) => return unavailable(&e),
    };
    // Usable at once: the key table is a projection.
    app.caught_up(Some(created.position)).await;
    shown_once(
        &signed,
        &format!("{} \"{name}\" ({role}, {})", t.key_created, created.key_id),
        t.key_once,
        &created.key,
        Link {
            href: "/console/admin/keys".to_owned(),
            label: t.api_keys.to_owned(),
        },
    )
}

#[derive(Template)]
#[template(path = "console/revoke_key_confirm.html")]
struct RevokeConfirmPage {
    page: Frame,
    csrf: String,
    key_id: String,
    name: String,
    role: String,
}

/// The key a path names, if it is listed; otherwise the list again, saying why not.
async fn listed_key(
    app: &AppState,
    signed: &Signed,
    key_id: &str,
) -> Result<api_keys::ApiKeyListing, Response> {
    let t = signed.lang.texts();
    let found = match key_id.parse::<uuid::Uuid>() {
        Ok(key_id) => match api_keys::list(&app.db.pool).await {
            Ok(keys) => keys.into_iter().find(|k| k.key_id == key_id),
            Err(e) => return Err(unavailable(&e)),
        },
        Err(_) => None,
    };
    match found {
        Some(key) => Ok(key),
        None => {
            let error = Some(format!(
                "{} {}",
                t.action_refused,
                apikey::ApiKeyError::Unknown
            ));
            Err(render_keys(
                app,
                signed,
                StatusCode::NOT_FOUND,
                KeyForm::default(),
                error,
            )
            .await)
        }
    }
}

/// The confirmation step: what revoking this key will do, and the button that does it.
pub async fn confirm_revoke_key(
    State(app): State<AppState>,
    signed: Signed,
    Path(key_id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(page) = signed.may_post(OperatorRole::Admin, &form.csrf) {
        return page;
    }
    let key = match listed_key(&app, &signed, &key_id).await {
        Ok(key) => key,
        Err(page) => return page,
    };
    html(
        StatusCode::OK,
        RevokeConfirmPage {
            page: Frame::new(signed.lang, Some(&signed)),
            csrf: signed.csrf().to_owned(),
            key_id: key.key_id.to_string(),
            name: key.name,
            role: key.role,
        }
        .render(),
    )
}

pub async fn revoke_key(
    State(app): State<AppState>,
    signed: Signed,
    ctx: RequestContext,
    Path(key_id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(page) = signed.may_post(OperatorRole::Admin, &form.csrf) {
        return page;
    }
    let key = match listed_key(&app, &signed, &key_id).await {
        Ok(key) => key,
        Err(page) => return page,
    };
    let t = signed.lang.texts();
    match apikeys::revoke_as(
        app.db.events.as_ref(),
        key.key_id,
        ctx.metadata(signed.actor()),
        app.now(),
    )
    .await
    {
        Ok(position) => {
            app.caught_up(Some(position)).await;
            // Other instances drop the key from their caches within a second; this one at once.
            app.api_keys.forget(key.key_id);
            message_with_link(
                signed.lang,
                Some(&signed),
                &format!("{} \"{}\" ({})", t.key_revoked, key.name, key.key_id),
                Link {
                    href: "/console/admin/keys".to_owned(),
                    label: t.api_keys.to_owned(),
                },
            )
        }
        Err(e) => match e.rejected() {
            Some(error) => {
                let error = Some(format!("{} {error}", t.action_refused));
                render_keys(
                    &app,
                    &signed,
                    StatusCode::CONFLICT,
                    KeyForm::default(),
                    error,
                )
                .await
            }
            None => unavailable(&e),
        },
    }
}
