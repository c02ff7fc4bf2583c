//! Self-service reset (flow 3): the portal relays the form, the user confirms from the emailed
//! link's page.

use std::net::IpAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Duration;
use serde::{Deserialize, Serialize};
use spse_totp_commands::resets::{self, RequestOutcome};
use spse_totp_domain::account::ConfirmReset;
use spse_totp_domain::{AccountCommand, AccountKey, ResetRequestId, UserId, UserType};
use spse_totp_projections::reset_requests;
use spse_totp_store::Actor;
use utoipa::ToSchema;

use crate::auth::PortalCaller;
use crate::error::{ApiError, ApiJson, ErrorCode};
use crate::state::{AppState, RequestContext};

/// Invalid tokens per client address per hour. A token cannot be guessed (it carries a MAC), so
/// this only keeps a flood of junk from costing database work. Only invalid tokens count: a valid,
/// unused link always resets, so junk sent from an address that many users share (the proxy)
/// cannot block anybody's confirmation.
const INVALID_CONFIRMS_PER_IP_PER_HOUR: i64 = 60;
const EMAIL_MAX: usize = 254;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequestBody {
    #[schema(value_type = super::UserTypeName)]
    pub user_type: String,
    /// Case-insensitive; 1 to 64 of letters, digits, `.`, `_`, `-`, `@`.
    #[schema(example = "ppk1", pattern = "^[A-Za-z0-9._@-]{1,64}$")]
    pub user_id: String,
    /// The address registered in LPSE; the link goes there only if it matches. Checked as
    /// typed: an address with `@`, without control characters.
    #[schema(
        max_length = 254,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*@[^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub email: String,
    /// `captcha_id` from `GET /v1/captcha`.
    #[schema(format = Uuid)]
    pub captcha_id: String,
    /// What the user read in the captcha's image.
    pub captcha_answer: String,
    #[serde(default)]
    #[schema(schema_with = reset_client_ip)]
    pub client_ip: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// Always `accepted`: whether an email goes out is not told (no enumeration).
    pub status: &'static str,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmBody {
    /// The `token` of the emailed link.
    pub token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConfirmedView {
    /// `reset`.
    pub status: &'static str,
    pub user_type: String,
    pub user_id: String,
    /// `inactive`: the next login asks for activation.
    pub totp_status: String,
}

fn parse_account(user_type: &str, user_id: &str) -> Result<AccountKey, ApiError> {
    let user_type: UserType = user_type
        .parse()
        .map_err(|e: spse_totp_domain::ids::IdError| {
            ApiError::new(ErrorCode::InvalidRequest, e.to_string())
        })?;
    let user_id = UserId::parse(user_id)
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.to_string()))?;
    Ok(AccountKey::new(user_type, user_id))
}

fn parse_ip(field: &'static str, value: Option<&str>) -> Result<Option<IpAddr>, ApiError> {
    value
        .map(|v| {
            v.trim().parse::<IpAddr>().map_err(|_| {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("{field} is not an IP address"),
                )
            })
        })
        .transpose()
}

fn reset_client_ip() -> utoipa::openapi::Schema {
    super::ip_schema(
        false,
        "The user's browser address (IPv4 or IPv6), as the portal sees it; the per-address limit counts it. Omitted: the caller's own address.",
    )
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, Json(Accepted { status: "accepted" })).into_response()
}

/// Ask for a reset link (flow 3, step 2). The answer is the same 202 whether or not the account
/// exists and the email matches; only a wrong or expired security code is told (422).
#[utoipa::path(post, path = "/v1/resets", tag = "resets", request_body = ResetRequestBody,
    security(("api_key" = [])),
    responses((status = 202, body = Accepted), (status = 400, body = super::ErrorBody),
        (status = 422, description = "Wrong, used or expired security code", body = super::ErrorBody)))]
pub async fn request(
    State(app): State<AppState>,
    PortalCaller(caller): PortalCaller,
    ctx: RequestContext,
    ApiJson(body): ApiJson<ResetRequestBody>,
) -> Result<Response, ApiError> {
    let key = parse_account(&body.user_type, &body.user_id)?;
    let email = body.email.trim();
    if email.is_empty()
        || email.chars().count() > EMAIL_MAX
        || !email.contains('@')
        || email.chars().any(char::is_control)
    {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "email must be an email address",
        ));
    }
    let client_ip = parse_ip("client_ip", body.client_ip.as_deref())?
        .map(|ip| ip.to_string())
        .or_else(|| ctx.client_ip.clone());
    let now = app.now();
    let solved = app
        .resets
        .captchas
        .redeem(&body.captcha_id, &body.captcha_answer, now)
        .await?;
    if !solved {
        return Err(ApiError::new(
            ErrorCode::CaptchaInvalid,
            "the security code is wrong, used or expired: get a new one",
        ));
    }
    let metadata = ctx.metadata(caller.actor());
    let bucket = format!("reset-ip:{}", client_ip.as_deref().unwrap_or("unknown"));
    let hits = app
        .resets
        .rate_limits
        .hit(&bucket, Duration::hours(1), now)
        .await?;
    let limit = app.config.reset.max_per_ip_per_hour;
    if hits > i64::from(limit) {
        resets::record_throttled(app.db.events.as_ref(), client_ip, limit, metadata, now).await?;
        app.succeeded("request_reset_throttled");
        return Ok(accepted());
    }
    let (outcome, position) = resets::request(
        &app.accounts,
        app.db.events.as_ref(),
        &key,
        email,
        client_ip,
        metadata,
    )
    .await
    // Not `?`: a reset request has no refusal to tell (it is accepted whatever the account), so
    // any failure of its command, a refusal or contention included, is the service's own.
    .map_err(|e| ApiError::internal(&e))?;
    // Every path waits for its own write to show, so the portal reads it back, and so no path
    // answers measurably sooner than another.
    app.caught_up(position).await;
    app.succeeded(match outcome {
        RequestOutcome::Requested(_) => "request_reset",
        RequestOutcome::Declined => "request_reset_declined",
        RequestOutcome::Unmatched => "request_reset_unmatched",
    });
    Ok(accepted())
}

/// The account a token's request belongs to. The projection may trail the request by a moment,
/// so a miss waits for it to catch up once before giving up.
pub async fn account_of(
    app: &AppState,
    request_id: ResetRequestId,
) -> Result<Option<AccountKey>, ApiError> {
    let id = request_id.to_string();
    if let Some(key) = reset_requests::account_of(&app.db.pool, &id).await? {
        return Ok(Some(key));
    }
    let head = app.db.events.head_position().await?;
    app.caught_up(Some(head)).await;
    Ok(reset_requests::account_of(&app.db.pool, &id).await?)
}

fn invalid_token() -> ApiError {
    ApiError::new(ErrorCode::InvalidToken, "this reset link is not valid")
}

/// Reset TOTP with the emailed link's token (flow 3, step 6). No API key: the token is the
/// credential. The binding goes, pending logins are cancelled, the next login asks for activation.
#[utoipa::path(post, path = "/v1/resets/confirm", tag = "resets", request_body = ConfirmBody,
    responses((status = 200, body = ConfirmedView), (status = 404, description = "Not a valid token", body = super::ErrorBody),
        (status = 410, description = "Used, replaced or expired", body = super::ErrorBody),
        (status = 429, description = "Too many invalid tokens from this address; a valid token is never refused so", body = super::ErrorBody)))]
pub async fn confirm(
    State(app): State<AppState>,
    ctx: RequestContext,
    ApiJson(body): ApiJson<ConfirmBody>,
) -> Result<Json<ConfirmedView>, ApiError> {
    // The MAC is checked before anything is counted or read: it costs no database work, and a
    // valid link must never wait behind someone else's junk.
    let Some(request_id) = app.resets.tokens.verify(&body.token) else {
        let bucket = format!(
            "reset-confirm-invalid-ip:{}",
            ctx.client_ip.as_deref().unwrap_or("unknown")
        );
        let hits = app
            .resets
            .rate_limits
            .hit(&bucket, Duration::hours(1), app.now())
            .await?;
        if hits > INVALID_CONFIRMS_PER_IP_PER_HOUR {
            return Err(ApiError::new(
                ErrorCode::TooManyRequests,
                "too many invalid reset links from this address; try again later",
            )
            .retry_after_seconds(3600));
        }
        return Err(invalid_token());
    };
    let key = account_of(&app, request_id)
        .await?
        .ok_or_else(invalid_token)?;
    let command = AccountCommand::ConfirmReset(ConfirmReset { request_id });
    let executed = app
        .execute("confirm_reset", &key, command, ctx.metadata(Actor::User))
        .await?;
    Ok(Json(ConfirmedView {
        status: "reset",
        user_type: key.user_type.as_str().to_owned(),
        user_id: key.user_id.to_string(),
        totp_status: executed.account.totp_status.as_str().to_owned(),
    }))
}
