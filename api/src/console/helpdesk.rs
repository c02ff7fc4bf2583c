//! The helpdesk's pages: search, an account with its recent history in plain words, reset
//! (reason, ticket, then a confirmation that says what will happen) and unlock. Each action is
//! the same command the API runs, recorded under the signed-in operator.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use spse_totp_domain::account::{HelpdeskReset, Unlock};
use spse_totp_domain::operator::OperatorRole;
use spse_totp_domain::{AccountCommand, AccountKey, UserId, UserType};
use spse_totp_projections::accounts;
use spse_totp_projections::audit::{self, HistoryFilter};

use super::i18n::{event_phrase, Lang};
use super::session::Signed;
use super::{csrf_refused, html, local, message_page, Frame};
use crate::routes::helpdesk::{view, HelpdeskAccountView};
use crate::state::{AppState, RequestContext};

const SEARCH_LIMIT: i64 = 50;
const TIMELINE: u64 = 30;
const TEXT_MAX: usize = 500;
const TICKET_MAX: usize = 100;

fn unavailable(e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "console helpdesk page");
    (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
}

pub struct Found {
    href: String,
    user_id: String,
    user_type: String,
    name: String,
    totp_status: String,
    lock: String,
    device: String,
}

#[derive(Template)]
#[template(path = "console/search.html")]
struct SearchPage {
    page: Frame,
    user_id: String,
    email: String,
    user_type: String,
    searched: bool,
    rows: Vec<Found>,
}

#[derive(Debug, Default, Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    user_type: String,
}

fn given(text: &str) -> Option<&str> {
    Some(text.trim()).filter(|t| !t.is_empty())
}

pub async fn search(
    State(app): State<AppState>,
    signed: Signed,
    Query(query): Query<SearchQuery>,
) -> Response {
    let zone = app.config.lpse.time_zone;
    if let Err(page) = signed.require(OperatorRole::Helpdesk) {
        return page;
    }
    let t = signed.lang.texts();
    let user_type = given(&query.user_type).and_then(|v| v.parse::<UserType>().ok());
    let searched =
        given(&query.user_id).is_some() || given(&query.email).is_some() || user_type.is_some();
    let mut rows = Vec::new();
    if searched {
        let found = accounts::search(
            &app.db.pool,
            given(&query.user_id),
            given(&query.email),
            user_type.map(|u| u.as_str()),
            SEARCH_LIMIT,
        )
        .await;
        let now = app.now();
        match found {
            Ok(found) => {
                rows = found
                    .into_iter()
                    .map(|a| Found {
                        href: format!("/console/accounts/{}/{}", a.user_type, a.user_id),
                        lock: a
                            .locked_until
                            .filter(|u| *u > now)
                            .map(|at| local(zone, at))
                            .unwrap_or_else(|| t.not_locked.to_owned()),
                        user_id: a.user_id,
                        user_type: a.user_type,
                        name: a.name.unwrap_or_default(),
                        totp_status: a.totp_status,
                        device: a.device_label.unwrap_or_else(|| t.none.to_owned()),
                    })
                    .collect();
            }
            Err(e) => return unavailable(&e),
        }
    }
    html(
        StatusCode::OK,
        SearchPage {
            page: Frame::new(signed.lang, Some(&signed)),
            user_id: query.user_id,
            email: query.email,
            user_type: user_type.map(|u| u.as_str().to_owned()).unwrap_or_default(),
            searched,
            rows,
        }
        .render(),
    )
}

pub struct Line {
    when: String,
    what: String,
    who: String,
}

#[derive(Template)]
#[template(path = "console/account.html")]
struct AccountPage {
    page: Frame,
    base: String,
    csrf: String,
    user_id: String,
    user_type: String,
    name: String,
    email: String,
    totp_status: String,
    device: String,
    lock: String,
    locked: bool,
    pending: usize,
    timeline: Vec<Line>,
    done: Option<String>,
    error: Option<String>,
}

/// The account's last events in plain words, newest first.
async fn timeline(app: &AppState, lang: Lang, key: &AccountKey) -> Result<Vec<Line>, Response> {
    let zone = app.config.lpse.time_zone;
    let stream = key.stream_name();
    let version = app
        .db
        .events
        .stream_version(&stream)
        .await
        .map_err(|e| unavailable(&e))?;
    let filter = HistoryFilter {
        after_version: version.saturating_sub(TIMELINE),
        ..HistoryFilter::default()
    };
    let events = audit::history_page(app.db.log_source(), &stream, &filter, TIMELINE as usize)
        .await
        .map_err(|e| unavailable(&e))?;
    Ok(events
        .iter()
        .rev()
        .map(|e| {
            let method = e.payload.get("method").and_then(|m| m.as_str());
            let what = match (e.event_type.as_str(), method, lang) {
                ("LoginApproved", Some("device"), Lang::Id) => "Login disetujui dari perangkat",
                ("LoginApproved", Some("code"), Lang::Id) => "Login disetujui dengan kode",
                ("LoginApproved", Some("device"), Lang::En) => "Login approved on the device",
                ("LoginApproved", Some("code"), Lang::En) => "Login approved by typed code",
                (other, _, _) => event_phrase(lang, other),
            };
            let actor = &e.metadata.actor;
            Line {
                when: local(zone, e.recorded_at),
                what: what.to_owned(),
                who: format!("{} {}", actor.kind(), actor.display_name()),
            }
        })
        .collect())
}

type AccountPath = Path<(String, String)>;

fn parse_key(
    lang: Lang,
    signed: &Signed,
    (user_type, user_id): (String, String),
) -> Result<AccountKey, Response> {
    match (user_type.parse::<UserType>(), UserId::parse(&user_id)) {
        (Ok(t), Ok(u)) => Ok(AccountKey::new(t, u)),
        _ => Err(message_page(
            StatusCode::NOT_FOUND,
            lang,
            Some(signed),
            lang.texts().account_not_found,
        )),
    }
}

async fn account_view(
    app: &AppState,
    signed: &Signed,
    key: &AccountKey,
) -> Result<HelpdeskAccountView, Response> {
    view(app, key).await.map_err(|e| {
        if e.status == StatusCode::NOT_FOUND {
            message_page(
                StatusCode::NOT_FOUND,
                signed.lang,
                Some(signed),
                signed.lang.texts().account_not_found,
            )
        } else {
            unavailable(&e.code().as_str())
        }
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct AccountQuery {
    #[serde(default)]
    done: String,
}

async fn render_account(
    app: &AppState,
    signed: &Signed,
    key: &AccountKey,
    done: Option<String>,
    error: Option<String>,
) -> Response {
    let zone = app.config.lpse.time_zone;
    let lang = signed.lang;
    let t = lang.texts();
    let v = match account_view(app, signed, key).await {
        Ok(v) => v,
        Err(page) => return page,
    };
    let lines = match timeline(app, lang, key).await {
        Ok(lines) => lines,
        Err(page) => return page,
    };
    let pending = v
        .last_logins
        .iter()
        .filter(|l| l.status.starts_with("awaiting"))
        .count();
    let status = if error.is_some() {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    html(
        status,
        AccountPage {
            page: Frame::new(lang, Some(signed)),
            base: format!("/console/accounts/{}/{}", v.user_type, v.user_id),
            csrf: signed.csrf().to_owned(),
            name: v.name.clone().unwrap_or_default(),
            email: v.email.clone().unwrap_or_default(),
            totp_status: v.totp_status.clone(),
            device: v
                .device
                .as_ref()
                .map(|d| {
                    format!(
                        "{} ({}, {} {})",
                        d.label,
                        d.method,
                        t.activated_at,
                        local(zone, d.activated_at)
                    )
                })
                .unwrap_or_else(|| t.none.to_owned()),
            lock: v
                .locked_until
                .map(|u| format!("{} {}", t.to, local(zone, u)))
                .unwrap_or_else(|| t.not_locked.to_owned()),
            locked: v.locked_until.is_some(),
            pending,
            timeline: lines,
            done,
            error,
            user_id: v.user_id,
            user_type: v.user_type,
        }
        .render(),
    )
}

/// An account as the helpdesk sees it. Every view is recorded as a read by this operator.
pub async fn account(
    State(app): State<AppState>,
    signed: Signed,
    ctx: RequestContext,
    path: AccountPath,
    Query(query): Query<AccountQuery>,
) -> Response {
    if let Err(page) = signed.require(OperatorRole::Helpdesk) {
        return page;
    }
    let key = match parse_key(signed.lang, &signed, path.0) {
        Ok(key) => key,
        Err(page) => return page,
    };
    let read = crate::routes::audit::account_read(
        &key,
        "GET /console/accounts",
        "helpdesk console".to_owned(),
    );
    if let Err(e) = crate::routes::audit::record(&app, &ctx, signed.actor(), read).await {
        return unavailable(&e.code().as_str());
    }
    let t = signed.lang.texts();
    let done = match query.done.as_str() {
        "reset" => Some(t.reset_done.to_owned()),
        "unlock" => Some(t.unlock_done.to_owned()),
        _ => None,
    };
    render_account(&app, &signed, &key, done, None).await
}

#[derive(Debug, Default, Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    ticket: String,
}

fn field(value: &str, max: usize) -> Option<String> {
    let value = value.trim();
    (!value.is_empty() && value.chars().count() <= max && !value.chars().any(char::is_control))
        .then(|| value.to_owned())
}

#[derive(Template)]
#[template(path = "console/reset_confirm.html")]
struct ConfirmPage {
    page: Frame,
    base: String,
    csrf: String,
    user_id: String,
    user_type: String,
    device: Option<String>,
    pending: usize,
    reason: String,
    ticket: String,
}

/// What both reset steps check first: a helpdesk operator, the form's CSRF token, the account,
/// and a reason and a ticket. The account page again, saying what is missing, when they lack.
async fn checked_reset(
    app: &AppState,
    signed: &Signed,
    path: AccountPath,
    form: &ResetForm,
) -> Result<(AccountKey, String, String), Response> {
    signed.require(OperatorRole::Helpdesk)?;
    if !signed.csrf_ok(&form.csrf) {
        return Err(csrf_refused(signed.lang, Some(signed)));
    }
    let key = parse_key(signed.lang, signed, path.0)?;
    match (
        field(&form.reason, TEXT_MAX),
        field(&form.ticket, TICKET_MAX),
    ) {
        (Some(reason), Some(ticket)) => Ok((key, reason, ticket)),
        _ => {
            let message = signed.lang.texts().required_fields.to_owned();
            Err(render_account(app, signed, &key, None, Some(message)).await)
        }
    }
}

/// The confirmation step: what the reset will do, with the reason and ticket carried along.
pub async fn confirm_reset(
    State(app): State<AppState>,
    signed: Signed,
    path: AccountPath,
    Form(form): Form<ResetForm>,
) -> Response {
    let (key, reason, ticket) = match checked_reset(&app, &signed, path, &form).await {
        Ok(checked) => checked,
        Err(page) => return page,
    };
    let v = match account_view(&app, &signed, &key).await {
        Ok(v) => v,
        Err(page) => return page,
    };
    html(
        StatusCode::OK,
        ConfirmPage {
            page: Frame::new(signed.lang, Some(&signed)),
            base: format!("/console/accounts/{}/{}", v.user_type, v.user_id),
            csrf: signed.csrf().to_owned(),
            device: v.device.as_ref().map(|d| d.label.clone()),
            pending: v
                .last_logins
                .iter()
                .filter(|l| l.status.starts_with("awaiting"))
                .count(),
            reason,
            ticket,
            user_id: v.user_id,
            user_type: v.user_type,
        }
        .render(),
    )
}

async fn run(
    app: &AppState,
    signed: &Signed,
    ctx: &RequestContext,
    key: &AccountKey,
    name: &'static str,
    command: AccountCommand,
    done: &str,
) -> Response {
    match app
        .execute(name, key, command, ctx.metadata(signed.actor()))
        .await
    {
        Ok(_) => Redirect::to(&format!(
            "/console/accounts/{}/{}?done={done}",
            key.user_type.as_str(),
            key.user_id.as_str()
        ))
        .into_response(),
        Err(e) if e.status.is_client_error() => {
            let message = format!(
                "{} {}",
                signed.lang.texts().action_refused,
                e.message_in(signed.lang)
            );
            render_account(app, signed, key, None, Some(message)).await
        }
        Err(e) => unavailable(&e.code().as_str()),
    }
}

pub async fn reset(
    State(app): State<AppState>,
    signed: Signed,
    ctx: RequestContext,
    path: AccountPath,
    Form(form): Form<ResetForm>,
) -> Response {
    let (key, reason, ticket) = match checked_reset(&app, &signed, path, &form).await {
        Ok(checked) => checked,
        Err(page) => return page,
    };
    let command = AccountCommand::HelpdeskReset(HelpdeskReset { reason, ticket });
    run(
        &app,
        &signed,
        &ctx,
        &key,
        "helpdesk_reset",
        command,
        "reset",
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
pub struct UnlockForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

pub async fn unlock(
    State(app): State<AppState>,
    signed: Signed,
    ctx: RequestContext,
    path: AccountPath,
    Form(form): Form<UnlockForm>,
) -> Response {
    if let Err(page) = signed.may_post(OperatorRole::Helpdesk, &form.csrf) {
        return page;
    }
    let key = match parse_key(signed.lang, &signed, path.0) {
        Ok(key) => key,
        Err(page) => return page,
    };
    let Some(reason) = field(&form.reason, TEXT_MAX) else {
        let message = signed.lang.texts().required_fields.to_owned();
        return render_account(&app, &signed, &key, None, Some(message)).await;
    };
    run(
        &app,
        &signed,
        &ctx,
        &key,
        "unlock",
        AccountCommand::Unlock(Unlock { reason }),
        "unlock",
    )
    .await
}
