//! The reset form's "Kode Keamanan" (flow 3, step 2).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::PortalCaller;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct CaptchaView {
    /// Send back with the answer in `POST /v1/resets`; works once, for 5 minutes.
    pub captcha_id: String,
    /// A PNG of the distorted code, base64.
    pub image_png: String,
    pub expires_at: DateTime<Utc>,
}

/// A new security code image for the reset form.
#[utoipa::path(get, path = "/v1/captcha", tag = "resets", security(("api_key" = [])),
    responses((status = 200, body = CaptchaView), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)))]
pub async fn issue(
    State(app): State<AppState>,
    _caller: PortalCaller,
) -> Result<Response, ApiError> {
    let captcha = app.resets.captchas.issue(app.now()).await?;
    let view = CaptchaView {
        captcha_id: captcha.captcha_id.to_string(),
        image_png: captcha.image_base64(),
        expires_at: captcha.expires_at,
    };
    Ok((
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        Json(view),
    )
        .into_response())
}
