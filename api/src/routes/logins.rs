//! Logins, as the portal drives them: start after the password check, poll, relay a typed code,
//! cancel. Flow 1 (activation) and flow 2 (approval) of the user guide.

use std::net::IpAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use spse_totp_domain::account::{CancelLogin, SubmitCode};
use spse_totp_domain::account::{Login, LoginStage, LoginStatus};
use spse_totp_domain::{AccountCommand, AccountKey, LoginId, TotpCode, UserId, UserType};
use spse_totp_projections::login_sessions::{self, LoginRow};
use utoipa::{IntoParams, ToSchema};

use super::{clean_text, AccountRef};
use crate::auth::PortalCaller;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorCode, OptionalApiJson};
use crate::login_routes::LoginRoute;
use crate::state::{AppState, RequestContext};

/// The longest a status poll may wait.
pub const MAX_WAIT_SECONDS: u64 = 30;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartLoginRequest {
    #[schema(value_type = super::UserTypeName, example = "non_penyedia")]
    pub user_type: UserType,
    /// Case-insensitive; 1 to 64 of letters, digits, `.`, `_`, `-`, `@`.
    #[schema(value_type = String, example = "ppk1", pattern = "^[A-Za-z0-9._@-]{1,64}$")]
    pub user_id: UserId,
    /// The email registered in LPSE (used by resets): an address with `@` and no blanks, or
    /// empty for none.
    #[schema(
        max_length = 254,
        pattern = "^([^\\s\\u0000-\\u001F\\u007F-\\u009F]*@[^\\s\\u0000-\\u001F\\u007F-\\u009F]*)?$"
    )]
    pub email: Option<String>,
    /// The user's name, at most 200 characters, without control characters.
    #[schema(max_length = 200, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub name: Option<String>,
    #[schema(schema_with = start_client_ip)]
    pub client_ip: Option<String>,
    /// The user's browser, shown on the device before approval.
    pub user_agent: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActivationView {
    pub enrollment_id: String,
    /// Standard `otpauth://totp/...` URI (SHA1, 6 digits, 30 s). Holds the secret: show it once.
    pub otpauth_uri: String,
    /// The same URI as an SVG QR code.
    pub qr_svg: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StartLoginResponse {
    pub login_id: String,
    /// `awaiting_activation` or `awaiting_approval`.
    #[schema(value_type = super::LoginStatusName)]
    pub status: String,
    pub expires_at: DateTime<Utc>,
    pub account: AccountRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activation: Option<ActivationView>,
    /// Number matching: show it; the user picks it on the device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_number: Option<u8>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginView {
    pub login_id: String,
    #[schema(value_type = super::LoginStatusName)]
    pub status: String,
    pub expires_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
    /// How it was approved or denied: `code` (typed) or `device`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[schema(value_type = super::UserTypeName)]
    pub user_type: String,
    pub user_id: String,
    /// While awaiting approval with number matching on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_number: Option<i64>,
}

impl LoginView {
    /// The login as the command that just decided it left it: the same answer a read of the
    /// projection gives once it has caught up, without the read.
    pub fn decided(login: &Login, key: &AccountKey, now: DateTime<Utc>) -> Self {
        let pending = login.is_pending() && !login.is_overdue(now);
        let status = if login.is_overdue(now) {
            LoginStatus::Expired
        } else {
            login.status
        };
        LoginView {
            login_id: login.login_id.to_string(),
            status: status.as_str().to_owned(),
            expires_at: login.expires_at,
            decided_at: if login.is_overdue(now) {
                Some(login.expires_at)
            } else {
                login.decided_at
            },
            method: login.method.map(|m| m.as_str().to_owned()),
            user_type: key.user_type.as_str().to_owned(),
            user_id: key.user_id.to_string(),
            approval_number: login
                .approval_number
                .filter(|_| pending && login.stage == LoginStage::Approval)
                .map(|n| i64::from(n.value())),
        }
    }

    pub fn of(row: &LoginRow, now: DateTime<Utc>) -> Self {
        let status = row.status_at(now).to_owned();
        let pending = status == "awaiting_approval";
        LoginView {
            login_id: row.login_id.clone(),
            expires_at: row.expires_at,
            decided_at: row.decided_at_as_of(now),
            method: row.method.clone(),
            user_type: row.user_type.clone(),
            user_id: row.user_id.clone(),
            approval_number: row.approval_number.filter(|_| pending),
            status,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    /// Long-poll: wait up to this many seconds (at most 30) for the status to change.
    #[param(maximum = 30)]
    pub wait_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// The six digits the user typed.
    #[schema(pattern = "^[0-9]{6}$", example = "123456")]
    pub code: String,
    #[schema(schema_with = relayed_client_ip)]
    pub client_ip: Option<String>,
    /// The user's browser. Omitted: the login's recorded one.
    pub user_agent: Option<String>,
}

/// The optional body of a cancel: who the portal relays it for.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    #[schema(schema_with = relayed_client_ip)]
    pub client_ip: Option<String>,
    /// The user's browser. Omitted: the login's recorded one.
    pub user_agent: Option<String>,
}

fn start_client_ip() -> utoipa::openapi::Schema {
    super::ip_schema(
        true,
        "The user's browser address (IPv4 or IPv6), shown on the device before approval. Empty or omitted: none.",
    )
}

fn relayed_client_ip() -> utoipa::openapi::Schema {
    super::ip_schema(
        true,
        "The user's browser address (IPv4 or IPv6), as the portal sees it. Empty or omitted: the login's recorded one.",
    )
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn relayed_ip(value: Option<String>) -> Result<Option<String>, ApiError> {
    match clean_text("client_ip", value, 64)? {
        Some(ip) => Ok(Some(
            ip.parse::<IpAddr>()
                .map_err(|_| {
                    ApiError::new(ErrorCode::InvalidRequest, "client_ip is not an IP address")
                })?
                .to_string(),
        )),
        None => Ok(None),
    }
}

/// A browser's user agent can be long; what matters fits in 512 characters.
fn relayed_agent(value: Option<String>) -> Option<String> {
    value
        .map(|ua| {
            ua.chars()
                .filter(|c| !c.is_control())
                .take(512)
                .collect::<String>()
        })
        .filter(|ua| !ua.trim().is_empty())
}

/// The metadata of a call the portal relays for the user: the user's address and browser as the
/// call gives them, else as the login recorded them, so the log and the notice email name the
/// user and not the portal's own address.
fn on_behalf_of_user(
    ctx: &RequestContext,
    actor: spse_totp_store::Actor,
    route: &LoginRoute,
    client_ip: Option<String>,
    user_agent: Option<String>,
) -> Result<spse_totp_store::EventMetadata, ApiError> {
    let mut metadata = ctx.metadata(actor);
    if let Some(ip) = relayed_ip(client_ip)?.or_else(|| route.client_ip.clone()) {
        metadata.client_ip = Some(ip);
    }
    if let Some(agent) = relayed_agent(user_agent).or_else(|| route.user_agent.clone()) {
        metadata.user_agent = Some(agent);
    }
    Ok(metadata)
}

pub fn parse_code(raw: &str) -> Result<TotpCode, ApiError> {
    TotpCode::parse(raw).map_err(|e| ApiError::new(ErrorCode::InvalidCodeFormat, e.to_string()))
}

/// Start the second factor, after the portal has checked the password.
#[utoipa::path(post, path = "/v1/logins", tag = "logins", request_body = StartLoginRequest,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "Login started; activation holds the QR code when the account has no active device", body = StartLoginResponse),
        (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody),
        (status = 423, description = "account_locked (see Retry-After), or locked_until_unlock after SPSE_TOTP_MAX_LOCKS locks in a row (only a helpdesk unlock lifts it)", body = super::ErrorBody)))]
pub async fn start(
    State(app): State<AppState>,
    PortalCaller(caller): PortalCaller,
    ctx: RequestContext,
    ApiJson(body): ApiJson<StartLoginRequest>,
) -> Result<Response, ApiError> {
    let email = clean_text("email", body.email, 254)?;
    if email
        .as_deref()
        .is_some_and(|e| !e.contains('@') || e.contains(char::is_whitespace))
    {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "email is not an email address",
        ));
    }
    let name = clean_text("name", body.name, 200)?;
    let client_ip = relayed_ip(body.client_ip)?;
    let user_agent = relayed_agent(body.user_agent);
    let key = AccountKey::new(body.user_type, body.user_id);
    let metadata = ctx.metadata(caller.actor());
    let route = LoginRoute {
        account: key.clone(),
        client_ip: client_ip.clone(),
        user_agent: user_agent.clone(),
    };
    let started = app
        .command(
            "start_login",
            app.accounts
                .start_login(&key, email, name, client_ip, user_agent, metadata),
        )
        .await?;
    app.login_routes.remember(started.login_id, route);
    let status = match started.stage {
        LoginStage::Activation => "awaiting_activation",
        LoginStage::Approval => "awaiting_approval",
    };
    let body = StartLoginResponse {
        login_id: started.login_id.to_string(),
        status: status.to_owned(),
        expires_at: started.expires_at,
        account: AccountRef::new(&key, started.totp_status),
        activation: started.activation.map(|a| ActivationView {
            enrollment_id: a.enrollment_id.to_string(),
            otpauth_uri: a.otpauth_uri,
            qr_svg: a.qr_svg,
        }),
        approval_number: started.approval_number.map(|n| n.value()),
    };
    Ok(no_store((StatusCode::CREATED, Json(body)).into_response()))
}

async fn find(app: &AppState, login_id: LoginId) -> Result<LoginRow, ApiError> {
    login_sessions::get(&app.db.pool, login_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::LoginNotFound, "no such login"))
}

/// The login's account, and the address and browser it started from: remembered when this
/// instance started it, read from its row otherwise.
async fn route(app: &AppState, login_id: LoginId) -> Result<LoginRoute, ApiError> {
    if let Some(route) = app.login_routes.get(&login_id) {
        return Ok(route);
    }
    let row = find(app, login_id).await?;
    let route = LoginRoute {
        account: AccountKey::from_stream_name(&row.stream).ok_or_else(|| {
            ApiError::internal(&format!("login {} names no account", row.login_id))
        })?,
        client_ip: row.client_ip,
        user_agent: row.user_agent,
    };
    app.login_routes.remember(login_id, route.clone());
    Ok(route)
}

/// A login's status; with `wait_seconds`, waits for it to change (long-poll).
#[utoipa::path(get, path = "/v1/logins/{login_id}", tag = "logins", params(("login_id" = uuid::Uuid, Path), WaitQuery),
    security(("api_key" = [])),
    responses((status = 200, body = LoginView), (status = 404, body = super::ErrorBody)))]
pub async fn status(
    State(app): State<AppState>,
    _caller: PortalCaller,
    ApiPath(login_id): ApiPath<LoginId>,
    ApiQuery(query): ApiQuery<WaitQuery>,
) -> Result<Json<LoginView>, ApiError> {
    let wait = query.wait_seconds.unwrap_or(0);
    if wait > MAX_WAIT_SECONDS {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("wait_seconds is at most {MAX_WAIT_SECONDS}"),
        ));
    }
    let mut progress = app.projections.subscribe();
    let row = find(&app, login_id).await?;
    let first = LoginView::of(&row, app.now());
    if wait == 0 || !row.is_pending() || first.status == "expired" {
        return Ok(Json(first));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        // Wake for new projected events, or when the login runs out of time.
        let until_expiry = (row.expires_at - app.now()).to_std().unwrap_or_default();
        let wake = deadline.min(tokio::time::Instant::now() + until_expiry);
        tokio::select! {
            changed = progress.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep_until(wake) => {}
        }
        let view = LoginView::of(&find(&app, login_id).await?, app.now());
        if view.status != first.status || tokio::time::Instant::now() >= deadline {
            return Ok(Json(view));
        }
    }
    Ok(Json(LoginView::of(&find(&app, login_id).await?, app.now())))
}

/// The code the user typed into the portal: activates, or approves the login.
#[utoipa::path(post, path = "/v1/logins/{login_id}/code", tag = "logins", params(("login_id" = uuid::Uuid, Path)),
    request_body = CodeRequest, security(("api_key" = [])),
    responses(
        (status = 200, description = "Approved (and activated, if it was awaiting activation)", body = LoginView),
        (status = 400, description = "Not six ASCII digits", body = super::ErrorBody),
        (status = 404, body = super::ErrorBody),
        (status = 409, description = "No longer pending", body = super::ErrorBody),
        (status = 410, description = "Expired", body = super::ErrorBody),
        (status = 422, description = "invalid_code (wrong code) or code_already_used (its step was already accepted); both counted, attempts_left says how many remain", body = super::ErrorBody),
        (status = 423, description = "account_locked (see Retry-After), or locked_until_unlock after SPSE_TOTP_MAX_LOCKS locks in a row (only a helpdesk unlock lifts it)", body = super::ErrorBody)))]
pub async fn submit_code(
    State(app): State<AppState>,
    PortalCaller(caller): PortalCaller,
    ctx: RequestContext,
    ApiPath(login_id): ApiPath<LoginId>,
    ApiJson(body): ApiJson<CodeRequest>,
) -> Result<Json<LoginView>, ApiError> {
    let route = route(&app, login_id).await?;
    let code = parse_code(&body.code)?;
    let metadata = on_behalf_of_user(
        &ctx,
        caller.actor(),
        &route,
        body.client_ip,
        body.user_agent,
    )?;
    let command = AccountCommand::SubmitCode(SubmitCode { login_id, code });
    decided(
        &app,
        &route.account,
        command,
        "submit_code",
        metadata,
        login_id,
    )
    .await
}

/// The portal gives up on a login.
#[utoipa::path(post, path = "/v1/logins/{login_id}/cancel", tag = "logins", params(("login_id" = uuid::Uuid, Path)),
    request_body(content = Option<CancelRequest>, description = "Optional: the user's address and browser, as the portal relays them"),
    security(("api_key" = [])),
    responses((status = 200, body = LoginView), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody), (status = 410, body = super::ErrorBody)))]
pub async fn cancel(
    State(app): State<AppState>,
    PortalCaller(caller): PortalCaller,
    ctx: RequestContext,
    ApiPath(login_id): ApiPath<LoginId>,
    OptionalApiJson(body): OptionalApiJson<CancelRequest>,
) -> Result<Json<LoginView>, ApiError> {
    let route = route(&app, login_id).await?;
    let body = body.unwrap_or_default();
    let metadata = on_behalf_of_user(
        &ctx,
        caller.actor(),
        &route,
        body.client_ip,
        body.user_agent,
    )?;
    decided(
        &app,
        &route.account,
        AccountCommand::CancelLogin(CancelLogin { login_id }),
        "cancel_login",
        metadata,
        login_id,
    )
    .await
}

/// Runs a command that decides a login, then answers with the login as projected.
pub async fn decided(
    app: &AppState,
    key: &AccountKey,
    command: AccountCommand,
    name: &'static str,
    metadata: spse_totp_store::EventMetadata,
    login_id: LoginId,
) -> Result<Json<LoginView>, ApiError> {
    let executed = app.execute(name, key, command, metadata).await?;
    match executed.account.login(login_id) {
        Some(login) => Ok(Json(LoginView::decided(login, key, app.now()))),
        None => Ok(Json(LoginView::of(&find(app, login_id).await?, app.now()))),
    }
}
