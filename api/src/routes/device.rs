//! What the phone calls: activate by scanning the QR code, list logins waiting for it, approve or
//! deny one. A standard authenticator never calls these; it is used by typed codes instead.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use spse_totp_commands::accounts::CommandError;
use spse_totp_commands::operators::OperatorCommandError;
use spse_totp_domain::account::{ApproveOnDevice, DenyOnDevice};
use spse_totp_domain::operator::{OperatorError, Username};
use spse_totp_domain::DomainError;
use spse_totp_domain::{AccountCommand, ApprovalNumber, DeviceId, EnrollmentId, LoginId};
use spse_totp_projections::{enrollments, login_sessions, operators};
use spse_totp_store::Actor;
use utoipa::ToSchema;

use super::logins::{decided, parse_code, LoginView, WaitQuery, MAX_WAIT_SECONDS};
use super::{clean_text, AccountRef};
use crate::auth::{CommandingDevice, DeviceCaller, DeviceOwner};
use crate::device_routes::DeviceRoute;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorCode};
use crate::state::{AppState, RequestContext};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivationRequest {
    /// From the scanned `otpauth://` URI's `enrollment_id` parameter.
    #[schema(value_type = uuid::Uuid)]
    pub enrollment_id: EnrollmentId,
    /// The app's first code for the scanned secret: proof it holds it.
    #[schema(pattern = "^[0-9]{6}$", example = "123456")]
    pub code: String,
    /// How the user will recognise this device, e.g. "Pixel 7".
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub device_label: String,
    /// The device's system, e.g. "Android 14": at most 50 characters, without control characters.
    #[schema(max_length = 50, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub platform: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceView {
    pub device_id: String,
    pub label: String,
    pub activated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActivationResponse {
    /// Bearer token for the device endpoints. Shown once; keep it in the device's keystore.
    pub device_token: String,
    /// The account the device is now bound to; `user_type` is `operator` for a console
    /// operator's device, with the operator's username as `user_id`.
    #[schema(value_type = DeviceOwnerRef)]
    pub account: AccountRef,
    pub device: DeviceView,
}

/// Who a device belongs to: an SPSE account, or a console operator (schema only).
#[derive(ToSchema)]
#[schema(as = DeviceOwnerType)]
#[allow(dead_code)]
pub enum DeviceOwnerTypeName {
    #[schema(rename = "penyedia")]
    Penyedia,
    #[schema(rename = "non_penyedia")]
    NonPenyedia,
    #[schema(rename = "operator")]
    Operator,
}

/// The account (or operator) a device is bound to, as an activation answers it (schema only:
/// the same fields as `AccountRef`, with `operator` among the types).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DeviceOwnerRef {
    #[schema(value_type = DeviceOwnerTypeName)]
    user_type: String,
    /// Canonical (upper-case) User ID, or the operator's username.
    user_id: String,
    /// `inactive`, `active` or `disabled`; always `active` for an operator's device.
    #[schema(value_type = super::TotpStatusName)]
    totp_status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PendingLogin {
    pub login_id: String,
    pub started_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Where the login came from, as the portal relayed it: the user checks it before approving.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PendingLogins {
    #[schema(value_type = DeviceOwnerTypeName)]
    pub user_type: String,
    pub user_id: String,
    pub logins: Vec<PendingLogin>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// A fresh code from the device: it still holds the secret.
    #[schema(pattern = "^[0-9]{6}$", example = "123456")]
    pub code: String,
    /// The two-digit number the portal shows. Required while number matching is on: without it
    /// the answer is 400 `number_required`, not counted as a failed attempt.
    #[schema(minimum = 10, maximum = 99)]
    #[serde(default, deserialize_with = "whole_number")]
    pub number: Option<u8>,
}

/// JSON has one kind of number: `43.0` is the number `43` (JSON Schema's `integer` says so too),
/// whichever way the app's JSON library writes it. Anything else (a fraction, out of a byte) is
/// refused as before.
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let whole = number.as_u64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=255.0).contains(f))
            // In range and whole, so the cast is exact.
            .map(|f| f as u64)
    });
    whole
        .and_then(|n| u8::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "number {number} is not a whole number from 10 to 99"
            ))
        })
}

/// Activate TOTP from a push-capable app: possession of the QR code is the proof.
#[utoipa::path(post, path = "/v1/device/activations", tag = "device", request_body = ActivationRequest,
    responses(
        (status = 201, body = ActivationResponse),
        (status = 400, body = super::ErrorBody), (status = 404, description = "Unknown enrollment", body = super::ErrorBody),
        (status = 409, description = "TOTP is already active on a device (reset first)", body = super::ErrorBody),
        (status = 410, description = "The QR code expired (enrollment_expired), for as long as its id is known", body = super::ErrorBody),
        (status = 422, body = super::ErrorBody), (status = 423, description = "account_locked (see Retry-After), or locked_until_unlock after SPSE_TOTP_MAX_LOCKS locks in a row (only a helpdesk unlock lifts it)", body = super::ErrorBody)))]
pub async fn activate(
    State(app): State<AppState>,
    ctx: RequestContext,
    ApiJson(body): ApiJson<ActivationRequest>,
) -> Result<Response, ApiError> {
    let code = parse_code(&body.code)?;
    let label = clean_text("device_label", Some(body.device_label), 100)?.ok_or_else(|| {
        ApiError::new(ErrorCode::InvalidRequest, "device_label must not be empty")
    })?;
    let platform = clean_text("platform", body.platform, 50)?;
    let device_id = DeviceId::generate();
    let metadata = ctx.metadata(Actor::Device {
        device_id: device_id.0,
    });
    if let Some(username) = app
        .operators
        .enrollment_owner(body.enrollment_id)
        .await
        .map_err(|e| operator_refusal(&e))?
    {
        return bind_operator_device(
            &app,
            &username,
            body.enrollment_id,
            code,
            device_id,
            label,
            platform,
            &metadata,
        )
        .await;
    }
    let outcome = app
        .accounts
        .activate_device(
            body.enrollment_id,
            device_id,
            code,
            label,
            platform,
            metadata,
        )
        .await;
    let outcome = match outcome {
        // The vault destroys an expired QR code's secret and the account forgets the enrollment
        // once its login ends; the log still knows it was handed out and until when.
        Err(CommandError::Rejected {
            error: DomainError::EnrollmentNotFound,
            position,
        }) if enrollments::expires_at(&app.db.pool, body.enrollment_id)
            .await?
            .is_some_and(|until| until <= app.now()) =>
        {
            Err(CommandError::Rejected {
                error: DomainError::EnrollmentExpired,
                position,
            })
        }
        other => other,
    };
    let activated = app
        .command("activate_device", std::future::ready(outcome))
        .await?;
    let device = activated
        .account
        .device
        .as_ref()
        .ok_or_else(|| ApiError::internal(&"activation left no device"))?;
    if let Some(token_sha256) = &device.token_sha256 {
        app.device_routes.remember(
            token_sha256.clone(),
            DeviceRoute {
                account: activated.account_key.clone(),
                device_id: device.device_id.0,
            },
        );
    }
    let body = ActivationResponse {
        device_token: activated.device_token.clone(),
        account: AccountRef::new(&activated.account_key, activated.account.totp_status),
        device: DeviceView {
            device_id: device.device_id.to_string(),
            label: device.label.clone(),
            activated_at: device.activated_at,
        },
    };
    Ok(activated_answer(body))
}

/// The logins waiting for this device's approval; with `wait_seconds`, waits until there is one
/// (long-poll), so a phone need not ask every second.
#[utoipa::path(get, path = "/v1/device/logins", tag = "device", params(WaitQuery), security(("device_token" = [])),
    responses((status = 200, description = "The waiting logins; empty when none came within wait_seconds", body = PendingLogins),
        (status = 400, description = "wait_seconds over 30", body = super::ErrorBody), (status = 401, body = super::ErrorBody)))]
pub async fn pending(
    State(app): State<AppState>,
    device: DeviceCaller,
    ApiQuery(query): ApiQuery<WaitQuery>,
) -> Result<Json<PendingLogins>, ApiError> {
    let wait = query.wait_seconds.unwrap_or(0);
    if wait > MAX_WAIT_SECONDS {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("wait_seconds is at most {MAX_WAIT_SECONDS}"),
        ));
    }
    // Subscribed before the first read, so a login projected between the read and the wait
    // still wakes it.
    let progress = app.projections.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let account = match &device.owner {
        DeviceOwner::Account(account) => account,
        DeviceOwner::Operator(username) => {
            return operator_pending(&app, username, progress, deadline).await
        }
    };
    let stream = account.stream_name();
    let rows = until_some(progress, deadline, || {
        login_sessions::pending_approvals(&app.db.pool, &stream, app.now())
    })
    .await?;
    Ok(Json(PendingLogins {
        user_type: account.user_type.as_str().to_owned(),
        user_id: account.user_id.to_string(),
        // The approval number is deliberately absent: the user must read it off the portal.
        logins: rows
            .into_iter()
            .map(|r| PendingLogin {
                login_id: r.login_id,
                started_at: r.started_at,
                expires_at: r.expires_at,
                client_ip: r.client_ip,
                user_agent: r.user_agent,
            })
            .collect(),
    }))
}

/// Approve a login from the device ("Authorize Login").
#[utoipa::path(post, path = "/v1/device/logins/{login_id}/approve", tag = "device", params(("login_id" = uuid::Uuid, Path)),
    request_body = ApproveRequest, security(("device_token" = [])),
    responses((status = 200, body = LoginView), (status = 400, description = "invalid_code_format, invalid_request, or number_required (no number while number matching is on; not counted)", body = super::ErrorBody), (status = 401, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody), (status = 410, body = super::ErrorBody),
        (status = 422, body = super::ErrorBody), (status = 423, description = "account_locked (see Retry-After), or locked_until_unlock after SPSE_TOTP_MAX_LOCKS locks in a row (only a helpdesk unlock lifts it)", body = super::ErrorBody)))]
pub async fn approve(
    State(app): State<AppState>,
    CommandingDevice(device): CommandingDevice,
    ctx: RequestContext,
    ApiPath(login_id): ApiPath<LoginId>,
    ApiJson(body): ApiJson<ApproveRequest>,
) -> Result<Json<LoginView>, ApiError> {
    let code = parse_code(&body.code)?;
    let number = body
        .number
        .map(ApprovalNumber::new)
        .transpose()
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.to_string()))?;
    let account = match &device.owner {
        DeviceOwner::Account(account) => account,
        DeviceOwner::Operator(username) => {
            let outcome = app
                .operators
                .approve_on_device(
                    username,
                    login_id.0,
                    &device.token_sha256,
                    code,
                    number,
                    &ctx.metadata(device.actor()),
                )
                .await;
            return operator_answer(&app, username, login_id, "approved", outcome).await;
        }
    };
    let command = AccountCommand::ApproveOnDevice(ApproveOnDevice {
        login_id,
        device_token_sha256: device.token_sha256.clone(),
        code,
        number,
    });
    decided(
        &app,
        account,
        command,
        "approve_on_device",
        ctx.metadata(device.actor()),
        login_id,
    )
    .await
}

/// Deny a login from the device: the user did not start it.
#[utoipa::path(post, path = "/v1/device/logins/{login_id}/deny", tag = "device", params(("login_id" = uuid::Uuid, Path)),
    security(("device_token" = [])),
    responses((status = 200, body = LoginView), (status = 401, body = super::ErrorBody), (status = 404, body = super::ErrorBody),
        (status = 409, body = super::ErrorBody), (status = 410, body = super::ErrorBody)))]
pub async fn deny(
    State(app): State<AppState>,
    CommandingDevice(device): CommandingDevice,
    ctx: RequestContext,
    ApiPath(login_id): ApiPath<LoginId>,
) -> Result<Json<LoginView>, ApiError> {
    let account = match &device.owner {
        DeviceOwner::Account(account) => account,
        DeviceOwner::Operator(username) => {
            let outcome = app
                .operators
                .deny_on_device(
                    username,
                    login_id.0,
                    &device.token_sha256,
                    &ctx.metadata(device.actor()),
                )
                .await;
            return operator_answer(&app, username, login_id, "denied", outcome).await;
        }
    };
    let command = AccountCommand::DenyOnDevice(DenyOnDevice {
        login_id,
        device_token_sha256: device.token_sha256.clone(),
    });
    decided(
        &app,
        account,
        command,
        "deny_on_device",
        ctx.metadata(device.actor()),
        login_id,
    )
    .await
}

/// What an operator's device is told about a refused approval or denial, in the words the
/// device API uses for a user's login.
fn operator_refusal(error: &OperatorCommandError) -> ApiError {
    let Some(refused) = error.rejected() else {
        return ApiError::internal(error);
    };
    let code = match refused {
        OperatorError::WrongDevice | OperatorError::Disabled | OperatorError::NotFound => {
            ErrorCode::DeviceNotRecognised
        }
        OperatorError::SignInUnknown | OperatorError::SignInWaiting => ErrorCode::LoginNotFound,
        OperatorError::SignInExpired => ErrorCode::LoginExpired,
        OperatorError::Locked { .. } => ErrorCode::AccountLocked,
        OperatorError::NumberRequired => ErrorCode::NumberRequired,
        OperatorError::SignInRefused { .. } | OperatorError::InvalidCode => ErrorCode::InvalidCode,
        OperatorError::EnrollmentExpired
        | OperatorError::SetupLinkExpired
        | OperatorError::SetupLinkUnknown => ErrorCode::EnrollmentExpired,
        OperatorError::NotActive => ErrorCode::TotpNotActive,
        _ => ErrorCode::InvalidRequest,
    };
    let mut api = ApiError::new(code, refused.to_string());
    match refused {
        OperatorError::SignInRefused { attempts_left } => {
            api.body.attempts_left = Some(*attempts_left);
        }
        OperatorError::Locked { until } => {
            api.body.locked_until = Some(until.to_rfc3339());
        }
        _ => {}
    }
    api
}

/// The activation of an operator's QR code: the operator's TOTP is active and this device bound.
#[allow(clippy::too_many_arguments)]
async fn bind_operator_device(
    app: &AppState,
    username: &Username,
    enrollment_id: EnrollmentId,
    code: spse_totp_domain::TotpCode,
    device_id: DeviceId,
    label: String,
    platform: Option<String>,
    metadata: &spse_totp_store::EventMetadata,
) -> Result<Response, ApiError> {
    let (device_token, op) = app
        .operators
        .bind_device(
            username,
            enrollment_id,
            code,
            device_id.0,
            label,
            platform,
            metadata,
        )
        .await
        .map_err(|e| operator_refusal(&e))?;
    let device = op
        .device
        .as_ref()
        .ok_or_else(|| ApiError::internal(&"activation left no device"))?;
    let body = ActivationResponse {
        device_token,
        account: AccountRef {
            user_type: OPERATOR_USER_TYPE.to_owned(),
            user_id: username.to_string(),
            totp_status: "active".to_owned(),
        },
        device: DeviceView {
            device_id: device.device_id.to_string(),
            label: device.label.clone(),
            activated_at: device.bound_at,
        },
    };
    Ok(activated_answer(body))
}

/// How the device API names a console operator where it names a user's type.
pub const OPERATOR_USER_TYPE: &str = "operator";

/// The operator's waiting sign-in (at most one), long-polled as a user's logins are.
async fn operator_pending(
    app: &AppState,
    username: &Username,
    progress: tokio::sync::watch::Receiver<u64>,
    deadline: tokio::time::Instant,
) -> Result<Json<PendingLogins>, ApiError> {
    let rows = until_some(progress, deadline, || {
        operators::waiting_sign_ins(&app.db.pool, username, app.now())
    })
    .await?;
    Ok(Json(PendingLogins {
        user_type: OPERATOR_USER_TYPE.to_owned(),
        user_id: username.to_string(),
        logins: rows
            .into_iter()
            .map(|r| PendingLogin {
                login_id: r.sign_in_id,
                started_at: r.started_at,
                expires_at: r.expires_at,
                client_ip: r.client_ip,
                user_agent: r.user_agent,
            })
            .collect(),
    }))
}

/// The answer to an operator's device after approving or denying: the sign-in as it stands.
/// A denial is refused in the domain's terms (it counts as a failed sign-in) yet is what the
/// device asked for, so it answers 200 `denied`.
async fn operator_answer(
    app: &AppState,
    username: &Username,
    login_id: LoginId,
    status: &str,
    outcome: Result<Option<u64>, OperatorCommandError>,
) -> Result<Json<LoginView>, ApiError> {
    let position = match outcome {
        Ok(position) => position,
        Err(OperatorCommandError::Rejected {
            error: OperatorError::SignInRefused { .. } | OperatorError::Locked { .. },
            position,
        }) if status == "denied" => position,
        Err(e) => {
            if let OperatorCommandError::Rejected { position, .. } = &e {
                app.caught_up(*position).await;
            }
            return Err(operator_refusal(&e));
        }
    };
    app.caught_up(position).await;
    let now = app.now();
    Ok(Json(LoginView {
        login_id: login_id.to_string(),
        status: status.to_owned(),
        expires_at: now,
        decided_at: Some(now),
        method: Some("device".to_owned()),
        user_type: OPERATOR_USER_TYPE.to_owned(),
        user_id: username.to_string(),
        approval_number: None,
    }))
}

/// A device activation's answer: 201, and never cached, since it carries the device token.
fn activated_answer(body: ActivationResponse) -> Response {
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Reads with `read` until it finds something or `deadline` passes, waking whenever the
/// projections move (`progress`, subscribed before the first read, so a row projected between a
/// read and the wait still wakes it).
async fn until_some<T, F, Fut>(
    mut progress: tokio::sync::watch::Receiver<u64>,
    deadline: tokio::time::Instant,
    read: F,
) -> Result<Vec<T>, sqlx::Error>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, sqlx::Error>>,
{
    loop {
        let rows = read().await?;
        if !rows.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(rows);
        }
        tokio::select! {
            changed = progress.changed() => if changed.is_err() { return Ok(rows) },
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}
