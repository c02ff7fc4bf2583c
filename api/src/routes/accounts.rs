//! An account's TOTP state, and self-service disable (FAQ 4).

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use spse_totp_domain::account::Disable;
use spse_totp_domain::{AccountCommand, AccountKey, LoginId, UserId, UserType};
use spse_totp_projections::accounts;
use spse_totp_projections::device_bindings::{self, DeviceRow};
use utoipa::ToSchema;

use super::logins::parse_code;
use crate::auth::PortalCaller;
use crate::error::{ApiError, ApiJson, ApiPath, ErrorCode};
use crate::state::{AppState, RequestContext};

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountDevice {
    pub label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// `code` (a standard app, by typed code) or `device` (a push-capable app).
    pub method: String,
    pub activated_at: DateTime<Utc>,
}

impl From<DeviceRow> for AccountDevice {
    fn from(d: DeviceRow) -> Self {
        AccountDevice {
            label: d.label,
            platform: d.platform,
            method: d.method,
            activated_at: d.activated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    pub user_type: String,
    pub user_id: String,
    /// `inactive` (never activated, or reset), `active` or `disabled`.
    pub totp_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<AccountDevice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<DateTime<Utc>>,
    /// Present (true) while the account is locked until a helpdesk unlock, after
    /// `SPSE_TOTP_MAX_LOCKS` locks in a row.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub locked_until_unlock: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableRequest {
    /// The user's own login, approved in the last 10 minutes.
    #[schema(format = Uuid)]
    pub login_id: String,
    /// A fresh code.
    #[schema(pattern = "^[0-9]{6}$", example = "123456")]
    pub code: String,
}

type AccountPath = ApiPath<(UserType, UserId)>;

async fn view(app: &AppState, key: &AccountKey) -> Result<AccountView, ApiError> {
    let row = accounts::get(&app.db.pool, key)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::AccountNotFound, "the account does not exist"))?;
    let device = device_bindings::for_account(&app.db.pool, key).await?;
    Ok(AccountView {
        user_type: row.user_type.clone(),
        user_id: row.user_id.clone(),
        totp_status: row.totp_status.clone(),
        device: device.map(AccountDevice::from),
        locked_until: row.locked_at(app.now()),
        locked_until_unlock: row.is_locked_until_unlock(),
    })
}

/// An account's TOTP status, device and lock.
#[utoipa::path(get, path = "/v1/accounts/{user_type}/{user_id}", tag = "accounts",
    params(("user_type" = super::UserTypeName, Path), ("user_id" = String, Path)),
    security(("api_key" = [])),
    responses((status = 200, body = AccountView), (status = 404, body = super::ErrorBody)))]
pub async fn get(
    State(app): State<AppState>,
    _caller: PortalCaller,
    ApiPath((user_type, user_id)): AccountPath,
) -> Result<Json<AccountView>, ApiError> {
    Ok(Json(
        view(&app, &AccountKey::new(user_type, user_id)).await?,
    ))
}

/// Turn TOTP off (FAQ 4): the next login asks for activation again.
#[utoipa::path(post, path = "/v1/accounts/{user_type}/{user_id}/disable", tag = "accounts",
    params(("user_type" = super::UserTypeName, Path), ("user_id" = String, Path)), request_body = DisableRequest,
    security(("api_key" = [])),
    responses((status = 200, body = AccountView), (status = 400, body = super::ErrorBody),
        (status = 403, description = "No approved login of this account in the last 10 minutes", body = super::ErrorBody),
        (status = 409, description = "TOTP is not active", body = super::ErrorBody),
        (status = 422, body = super::ErrorBody), (status = 423, description = "account_locked (see Retry-After), or locked_until_unlock after SPSE_TOTP_MAX_LOCKS locks in a row (only a helpdesk unlock lifts it)", body = super::ErrorBody)))]
pub async fn disable(
    State(app): State<AppState>,
    PortalCaller(caller): PortalCaller,
    ctx: RequestContext,
    ApiPath((user_type, user_id)): AccountPath,
    ApiJson(body): ApiJson<DisableRequest>,
) -> Result<Json<AccountView>, ApiError> {
    let key = AccountKey::new(user_type, user_id);
    let login_id: LoginId = body
        .login_id
        .parse()
        .map_err(|_| ApiError::new(ErrorCode::InvalidRequest, "login_id is not a login id"))?;
    let code = parse_code(&body.code)?;
    let command = AccountCommand::Disable(Disable { login_id, code });
    app.execute("disable", &key, command, ctx.metadata(caller.actor()))
        .await?;
    Ok(Json(view(&app, &key).await?))
}
