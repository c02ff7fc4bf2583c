//! The one error shape: `{"error": {"code": "...", "message": "..."}}`, with extra fields where a
//! client can act on them (`attempts_left`, `locked_until`, `status`). Extractor rejections use
//! it too, so malformed input never answers in another format. Internals are logged, not returned.

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};
use spse_totp_commands::accounts::CommandError;
use spse_totp_domain::DomainError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Map<String, Value>,
    pub retry_after: Option<i64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Map::new(),
            retry_after: None,
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// A failure the client cannot fix: logged in full here, answered without detail.
    pub fn internal(error: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %error, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; it has been logged",
        )
    }

    pub fn locked(until: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        let mut e = Self::new(
            StatusCode::LOCKED,
            "account_locked",
            "the account is locked after too many failed attempts",
        )
        .with(
            "locked_until",
            until.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        );
        e.retry_after = Some((until - now).num_seconds().max(1));
        e
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("code".to_owned(), json!(self.code));
        body.insert("message".to_owned(), json!(self.message));
        body.extend(self.details);
        let mut response = (self.status, Json(json!({ "error": body }))).into_response();
        if let Some(seconds) = self.retry_after {
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::internal(&e)
    }
}

/// Maps a refusal to its status: 4xx for what the user or the portal can act on.
pub fn domain_error(error: &DomainError, now: DateTime<Utc>) -> ApiError {
    use StatusCode as S;
    let message = error.to_string();
    match error {
        DomainError::AccountNotFound => ApiError::new(S::NOT_FOUND, "account_not_found", message),
        DomainError::AccountLocked { until } => ApiError::locked(*until, now),
        DomainError::LoginNotFound => ApiError::new(S::NOT_FOUND, "login_not_found", message),
        DomainError::LoginNotPending { status } => {
            ApiError::new(S::CONFLICT, "login_not_pending", message).with("status", status.as_str())
        }
        DomainError::LoginExpired => ApiError::new(S::GONE, "login_expired", message),
        DomainError::InvalidCode { attempts_left } => {
            ApiError::new(S::UNPROCESSABLE_ENTITY, "invalid_code", message)
                .with("attempts_left", *attempts_left)
        }
        DomainError::AlreadyActive => ApiError::new(S::CONFLICT, "totp_already_active", message),
        DomainError::NotActive => ApiError::new(S::CONFLICT, "totp_not_active", message),
        DomainError::EnrollmentNotFound => {
            ApiError::new(S::NOT_FOUND, "enrollment_not_found", message)
        }
        DomainError::EnrollmentExpired => ApiError::new(S::GONE, "enrollment_expired", message),
        DomainError::DeviceNotRecognised => {
            ApiError::new(S::UNAUTHORIZED, "device_not_recognised", message)
        }
        DomainError::WrongStage { .. } => ApiError::new(S::CONFLICT, "wrong_stage", message),
        DomainError::RecentLoginRequired { .. } => {
            ApiError::new(S::FORBIDDEN, "recent_login_required", message)
        }
        DomainError::ResetLinkUnknown => ApiError::new(S::NOT_FOUND, "invalid_token", message),
        DomainError::ResetLinkUsed => ApiError::new(S::GONE, "token_used", message),
        DomainError::ResetLinkSuperseded => ApiError::new(S::GONE, "token_superseded", message),
        DomainError::ResetLinkExpired => ApiError::new(S::GONE, "token_expired", message),
        DomainError::NotLocked => ApiError::new(S::CONFLICT, "not_locked", message),
        DomainError::Required(field) => {
            ApiError::bad_request("invalid_request", message).with("field", *field)
        }
        DomainError::StalePreparation => busy(),
    }
}

fn busy() -> ApiError {
    let mut e = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        "the account is busy; try again",
    );
    e.retry_after = Some(1);
    e
}

pub fn command_error(error: &CommandError, now: DateTime<Utc>) -> ApiError {
    match error {
        CommandError::Rejected { error, .. } => domain_error(error, now),
        CommandError::Contention => busy(),
        other => ApiError::internal(other),
    }
}

/// `Json` with this service's error shape for every rejection.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    /// Two steps, so the error code says what is wrong: text that is not JSON at all is
    /// `malformed_json`; JSON of the wrong shape (unknown or missing fields, wrong types,
    /// invalid values) is `invalid_request`.
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json"
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the body is larger than this service accepts",
                )
            } else {
                ApiError::bad_request("invalid_request", rejection.body_text())
            }
        })?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}"))
        })?;
        serde_json::from_value(value).map(ApiJson).map_err(|e| {
            ApiError::bad_request(
                "invalid_request",
                format!("the body does not fit this endpoint: {e}"),
            )
        })
    }
}

/// Path parameters; one that does not parse names nothing that exists, so it is a 404.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                Err(ApiError::not_found("not_found", e.body_text()))
            }
            Err(other) => Err(ApiError::internal(&other.body_text())),
        }
    }
}

pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(ApiError::bad_request("invalid_query", e.body_text()))
            }
            Err(other) => Err(ApiError::bad_request("invalid_query", other.body_text())),
        }
    }
}
