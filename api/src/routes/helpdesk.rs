//! The helpdesk's account tools (FAQ 5): look an account up, reset TOTP on the user's written
//! request, lift a lock. A `helpdesk` key and the operator's name (`X-Operator`) on every call;
//! the operator is recorded as the actor. Nothing here shows or sets a secret.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use spse_totp_domain::account::{HelpdeskReset, Unlock};
use spse_totp_domain::{AccountCommand, AccountKey, UserId, UserType};
use spse_totp_projections::{accounts, device_bindings, login_sessions, reset_requests};
use utoipa::{IntoParams, ToSchema};

use super::accounts::AccountDevice;
use super::audit;
use super::clean_text;
use crate::auth::HelpdeskCaller;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorCode};
use crate::state::{AppState, RequestContext};

const LAST_LOGINS: i64 = 10;
const LAST_RESETS: i64 = 10;
const TEXT_MAX: usize = 500;
const TICKET_MAX: usize = 100;

#[derive(Debug, Serialize, ToSchema)]
pub struct HelpdeskLogin {
    pub login_id: String,
    /// `activation` or `approval`.
    pub stage: String,
    /// As of now: `awaiting_activation`, `awaiting_approval`, `approved`, `denied`, `expired`, `cancelled`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    pub started_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HelpdeskResetRequest {
    pub requested_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// As of now: `pending`, `used`, `superseded` or `expired`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    /// Where the link was mailed.
    pub email: String,
    /// `queued`, `sent`, `retrying` or `failed`.
    pub email_status: String,
    pub email_attempts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HelpdeskAccountView {
    pub user_type: String,
    pub user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `inactive`, `active` or `disabled`.
    pub totp_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<AccountDevice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<DateTime<Utc>>,
    /// Present (true) while the account is locked until a helpdesk unlock, after
    /// `SPSE_TOTP_MAX_LOCKS` locks in a row.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub locked_until_unlock: bool,
    pub failed_attempts: i64,
    /// Newest first.
    pub last_logins: Vec<HelpdeskLogin>,
    /// Newest first, with what became of each email.
    pub reset_requests: Vec<HelpdeskResetRequest>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HelpdeskResetBody {
    /// Why, as the user wrote it (FAQ 5).
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub reason: String,
    /// The helpdesk ticket's reference.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub ticket: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnlockBody {
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub reason: String,
}

type AccountPath = ApiPath<(UserType, UserId)>;

pub(crate) async fn view(
    app: &AppState,
    key: &AccountKey,
) -> Result<HelpdeskAccountView, ApiError> {
    let row = accounts::get(&app.db.pool, key)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::AccountNotFound, "the account does not exist"))?;
    let now = app.now();
    let device = device_bindings::for_account(&app.db.pool, key).await?;
    let logins =
        login_sessions::recent_for_account(&app.db.pool, &key.stream_name(), LAST_LOGINS).await?;
    let resets = reset_requests::recent_for_account(&app.db.pool, key, LAST_RESETS).await?;
    Ok(HelpdeskAccountView {
        user_type: row.user_type.clone(),
        user_id: row.user_id.clone(),
        name: row.name.clone(),
        email: row.email.clone(),
        totp_status: row.totp_status.clone(),
        device: device.map(AccountDevice::from),
        locked_until: row.locked_at(now),
        locked_until_unlock: row.is_locked_until_unlock(),
        failed_attempts: row.failed_attempts,
        last_logins: logins
            .iter()
            .map(|l| HelpdeskLogin {
                login_id: l.login_id.clone(),
                stage: l.stage.clone(),
                status: l.status_at(now).to_owned(),
                method: l.method.clone(),
                client_ip: l.client_ip.clone(),
                started_at: l.started_at,
                decided_at: l.decided_at_as_of(now),
            })
            .collect(),
        reset_requests: resets
            .iter()
            .map(|r| HelpdeskResetRequest {
                requested_at: r.requested_at,
                expires_at: r.expires_at,
                status: r.status_at(now).to_owned(),
                client_ip: r.client_ip.clone(),
                email: r.email.clone(),
                email_status: r.email_status.clone(),
                email_attempts: r.email_attempts,
                email_error: r.email_error.clone(),
                email_at: r.email_at,
            })
            .collect(),
    })
}

fn required(field: &'static str, value: String, max: usize) -> Result<String, ApiError> {
    clean_text(field, Some(value), max)?.ok_or_else(|| {
        ApiError::new(ErrorCode::InvalidRequest, format!("{field} is required")).field(field)
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LookupQuery {
    /// Why the operator looks (a ticket number, say); recorded with the lookup. When given, 1 to
    /// 200 characters without control characters.
    #[param(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub purpose: Option<String>,
}

/// What a lookup without a stated purpose is recorded as.
const DEFAULT_LOOKUP_PURPOSE: &str = "helpdesk lookup";

/// An account as the helpdesk sees it: status, device, lock, last logins, reset requests. Every
/// lookup is recorded (operator, account, purpose) before it is answered.
#[utoipa::path(get, path = "/v1/helpdesk/accounts/{user_type}/{user_id}", tag = "helpdesk",
    params(("user_type" = super::UserTypeName, Path), ("user_id" = String, Path), LookupQuery,
        ("X-Operator" = String, Header, description = "The operator's name")),
    security(("api_key" = [])),
    responses((status = 200, body = HelpdeskAccountView), (status = 403, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody)))]
pub async fn get(
    State(app): State<AppState>,
    caller: HelpdeskCaller,
    ctx: RequestContext,
    ApiPath((user_type, user_id)): AccountPath,
    ApiQuery(query): ApiQuery<LookupQuery>,
) -> Result<Json<HelpdeskAccountView>, ApiError> {
    let key = AccountKey::new(user_type, user_id);
    let purpose = match query.purpose {
        Some(stated) => audit::purpose(Some(&stated))?,
        None => DEFAULT_LOOKUP_PURPOSE.to_owned(),
    };
    let read = audit::account_read(&key, "/v1/helpdesk/accounts", purpose);
    audit::record(&app, &ctx, caller.actor(), read).await?;
    Ok(Json(view(&app, &key).await?))
}

/// Reset TOTP for the user (FAQ 5); reason and ticket are required and recorded.
#[utoipa::path(post, path = "/v1/helpdesk/accounts/{user_type}/{user_id}/reset", tag = "helpdesk",
    params(("user_type" = super::UserTypeName, Path), ("user_id" = String, Path),
        ("X-Operator" = String, Header, description = "The operator's name")),
    request_body = HelpdeskResetBody, security(("api_key" = [])),
    responses((status = 200, body = HelpdeskAccountView), (status = 400, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody),
        (status = 409, description = "TOTP is neither active nor pending", body = super::ErrorBody)))]
pub async fn reset(
    State(app): State<AppState>,
    caller: HelpdeskCaller,
    ctx: RequestContext,
    ApiPath((user_type, user_id)): AccountPath,
    ApiJson(body): ApiJson<HelpdeskResetBody>,
) -> Result<Json<HelpdeskAccountView>, ApiError> {
    let key = AccountKey::new(user_type, user_id);
    let command = AccountCommand::HelpdeskReset(HelpdeskReset {
        reason: required("reason", body.reason, TEXT_MAX)?,
        ticket: required("ticket", body.ticket, TICKET_MAX)?,
    });
    app.execute(
        "helpdesk_reset",
        &key,
        command,
        ctx.metadata(caller.actor()),
    )
    .await?;
    Ok(Json(view(&app, &key).await?))
}

/// Lift a lock and clear the failure count; the reason is recorded.
#[utoipa::path(post, path = "/v1/helpdesk/accounts/{user_type}/{user_id}/unlock", tag = "helpdesk",
    params(("user_type" = super::UserTypeName, Path), ("user_id" = String, Path),
        ("X-Operator" = String, Header, description = "The operator's name")),
    request_body = UnlockBody, security(("api_key" = [])),
    responses((status = 200, body = HelpdeskAccountView), (status = 400, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody),
        (status = 409, description = "The account is not locked", body = super::ErrorBody)))]
pub async fn unlock(
    State(app): State<AppState>,
    caller: HelpdeskCaller,
    ctx: RequestContext,
    ApiPath((user_type, user_id)): AccountPath,
    ApiJson(body): ApiJson<UnlockBody>,
) -> Result<Json<HelpdeskAccountView>, ApiError> {
    let key = AccountKey::new(user_type, user_id);
    let command = AccountCommand::Unlock(Unlock {
        reason: required("reason", body.reason, TEXT_MAX)?,
    });
    app.execute("unlock", &key, command, ctx.metadata(caller.actor()))
        .await?;
    Ok(Json(view(&app, &key).await?))
}
