//! The one error shape: `{"error": {"code": "...", "message": "..."}}`, with extra fields where a
//! client can act on them (`attempts_left`, `locked_until`, `status`, `field`). Extractor
//! rejections use it too, so malformed input never answers in another format. Internals are
//! logged, not returned. [`ErrorBody`] is what is serialised and what the OpenAPI document
//! describes, so the two cannot drift; every code and its status are listed once, in [`ErrorCode`].

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use spse_totp_commands::accounts::CommandError;
use spse_totp_commands::captcha::CaptchaError;
use spse_totp_commands::vault::VaultError;
use spse_totp_domain::DomainError;
use spse_totp_projections::ProjectionError;
use spse_totp_store::StoreError;
use utoipa::ToSchema;

use crate::state::AppState;

/// Declares every error code once: its wire name and the status it always answers with. The name
/// is taken as a `tt`, not a `literal`: utoipa reads a `serde(rename)` only from a plain literal
/// token, and would otherwise list the variants' Rust names.
macro_rules! error_codes {
    ($($variant:ident = $text:tt => $status:ident,)*) => {
        /// Stable, machine-readable reason of a 4xx or 5xx answer.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
        pub enum ErrorCode {
            $(#[serde(rename = $text)] $variant,)*
        }

        impl ErrorCode {
            /// Every code, in the order declared: the README's error table is checked against it.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $text,)*
                }
            }

            pub fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status,)*
                }
            }
        }
    };
}

error_codes! {
    // The request itself.
    MalformedJson = "malformed_json" => BAD_REQUEST,
    InvalidRequest = "invalid_request" => BAD_REQUEST,
    InvalidQuery = "invalid_query" => BAD_REQUEST,
    InvalidCursor = "invalid_cursor" => BAD_REQUEST,
    InvalidCodeFormat = "invalid_code_format" => BAD_REQUEST,
    PurposeRequired = "purpose_required" => BAD_REQUEST,
    OperatorRequired = "operator_required" => BAD_REQUEST,
    UnsupportedMediaType = "unsupported_media_type" => UNSUPPORTED_MEDIA_TYPE,
    PayloadTooLarge = "payload_too_large" => PAYLOAD_TOO_LARGE,
    NotFound = "not_found" => NOT_FOUND,
    MethodNotAllowed = "method_not_allowed" => METHOD_NOT_ALLOWED,
    // Who calls.
    Unauthorized = "unauthorized" => UNAUTHORIZED,
    Forbidden = "forbidden" => FORBIDDEN,
    DeviceNotRecognised = "device_not_recognised" => UNAUTHORIZED,
    TooManyRequests = "too_many_requests" => TOO_MANY_REQUESTS,
    // What the domain refused.
    AccountNotFound = "account_not_found" => NOT_FOUND,
    AccountLocked = "account_locked" => LOCKED,
    LockedUntilUnlock = "locked_until_unlock" => LOCKED,
    NotLocked = "not_locked" => CONFLICT,
    LoginNotFound = "login_not_found" => NOT_FOUND,
    LoginNotPending = "login_not_pending" => CONFLICT,
    LoginExpired = "login_expired" => GONE,
    InvalidCode = "invalid_code" => UNPROCESSABLE_ENTITY,
    CodeAlreadyUsed = "code_already_used" => UNPROCESSABLE_ENTITY,
    NumberRequired = "number_required" => BAD_REQUEST,
    TotpAlreadyActive = "totp_already_active" => CONFLICT,
    TotpNotActive = "totp_not_active" => CONFLICT,
    EnrollmentNotFound = "enrollment_not_found" => NOT_FOUND,
    EnrollmentExpired = "enrollment_expired" => GONE,
    WrongStage = "wrong_stage" => CONFLICT,
    RecentLoginRequired = "recent_login_required" => FORBIDDEN,
    InvalidToken = "invalid_token" => NOT_FOUND,
    TokenUsed = "token_used" => GONE,
    TokenSuperseded = "token_superseded" => GONE,
    TokenExpired = "token_expired" => GONE,
    CaptchaInvalid = "captcha_invalid" => UNPROCESSABLE_ENTITY,
    // The service.
    Busy = "busy" => SERVICE_UNAVAILABLE,
    NotReady = "not_ready" => SERVICE_UNAVAILABLE,
    RequestTimeout = "request_timeout" => SERVICE_UNAVAILABLE,
    TooManyLongPolls = "too_many_long_polls" => SERVICE_UNAVAILABLE,
    Internal = "internal" => INTERNAL_SERVER_ERROR,
}

/// The error shape of every 4xx and 5xx answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// For people; may change.
    pub message: String,
    /// With `invalid_code` and `code_already_used`: failures left before the account locks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts_left: Option<u32>,
    /// With `account_locked`: when codes are checked again (also in `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<String>,
    /// With `login_not_pending`: the login's status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// With `invalid_request`, when one field is missing or empty: its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// With `not_ready`: what is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub detail: Option<Value>,
}

/// When a client may try again. A lock's end is an instant on the service's clock, which only
/// the application state holds: [`retry_after`] turns it into seconds on the way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    Seconds(i64),
    At(DateTime<Utc>),
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Boxed: every fallible handler step returns this, and the happy path should not pay for
    /// moving the whole body around.
    pub body: Box<ErrorDetail>,
    pub retry_after: Option<RetryAfter>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status: code.status(),
            body: Box::new(ErrorDetail {
                code,
                message: message.into(),
                attempts_left: None,
                locked_until: None,
                status: None,
                field: None,
                detail: None,
            }),
            retry_after: None,
        }
    }

    pub fn code(&self) -> ErrorCode {
        self.body.code
    }

    /// Names the one field that is missing or empty.
    pub fn field(mut self, field: &str) -> Self {
        self.body.field = Some(field.to_owned());
        self
    }

    pub fn detail(mut self, detail: Value) -> Self {
        self.body.detail = Some(detail);
        self
    }

    pub fn retry_after_seconds(mut self, seconds: i64) -> Self {
        self.retry_after = Some(RetryAfter::Seconds(seconds));
        self
    }

    /// A failure the client cannot fix: logged in full here, answered without detail.
    pub fn internal(error: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %error, "internal error");
        Self::new(ErrorCode::Internal, "internal error; it has been logged")
    }

    fn locked(until: DateTime<Utc>) -> Self {
        let mut e = Self::new(
            ErrorCode::AccountLocked,
            "the account is locked after too many failed attempts",
        );
        e.body.locked_until = Some(until.to_rfc3339_opts(SecondsFormat::AutoSi, true));
        e.retry_after = Some(RetryAfter::At(until));
        e
    }

    fn busy() -> Self {
        Self::new(ErrorCode::Busy, "the account is busy; try again").retry_after_seconds(1)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(ErrorBody { error: *self.body })).into_response();
        match self.retry_after {
            Some(RetryAfter::Seconds(seconds)) => set_retry_after(&mut response, seconds),
            Some(RetryAfter::At(at)) => {
                response.extensions_mut().insert(RetryAfter::At(at));
            }
            None => {}
        }
        response
    }
}

fn set_retry_after(response: &mut Response, seconds: i64) {
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
}

/// Turns a refusal's "try again at" into `Retry-After` seconds by the service's clock, so the
/// header and `locked_until` agree even when tests move time.
pub async fn retry_after(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if let Some(RetryAfter::At(at)) = response.extensions_mut().remove::<RetryAfter>() {
        set_retry_after(&mut response, (at - app.now()).num_seconds().max(1));
    }
    response
}

/// Maps a refusal to its answer: 4xx for what the user or the portal can act on.
impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        use ErrorCode as C;
        let message = error.to_string();
        match error {
            DomainError::AccountNotFound => ApiError::new(C::AccountNotFound, message),
            DomainError::AccountLocked { until } => ApiError::locked(until),
            DomainError::LockedUntilUnlock => ApiError::new(C::LockedUntilUnlock, message),
            DomainError::LoginNotFound => ApiError::new(C::LoginNotFound, message),
            DomainError::LoginNotPending { status } => {
                let mut e = ApiError::new(C::LoginNotPending, message);
                e.body.status = Some(status.as_str().to_owned());
                e
            }
            DomainError::LoginExpired => ApiError::new(C::LoginExpired, message),
            DomainError::InvalidCode { attempts_left } => {
                let mut e = ApiError::new(C::InvalidCode, message);
                e.body.attempts_left = Some(attempts_left);
                e
            }
            DomainError::CodeAlreadyUsed { attempts_left } => {
                let mut e = ApiError::new(C::CodeAlreadyUsed, message);
                e.body.attempts_left = Some(attempts_left);
                e
            }
            DomainError::NumberRequired => {
                ApiError::new(C::NumberRequired, message).field("number")
            }
            DomainError::AlreadyActive => ApiError::new(C::TotpAlreadyActive, message),
            DomainError::NotActive => ApiError::new(C::TotpNotActive, message),
            DomainError::EnrollmentNotFound => ApiError::new(C::EnrollmentNotFound, message),
            DomainError::EnrollmentExpired => ApiError::new(C::EnrollmentExpired, message),
            DomainError::DeviceNotRecognised => ApiError::new(C::DeviceNotRecognised, message),
            DomainError::WrongStage { .. } => ApiError::new(C::WrongStage, message),
            DomainError::RecentLoginRequired { .. } => {
                ApiError::new(C::RecentLoginRequired, message)
            }
            DomainError::ResetLinkUnknown => ApiError::new(C::InvalidToken, message),
            DomainError::ResetLinkUsed => ApiError::new(C::TokenUsed, message),
            DomainError::ResetLinkSuperseded => ApiError::new(C::TokenSuperseded, message),
            DomainError::ResetLinkExpired => ApiError::new(C::TokenExpired, message),
            DomainError::NotLocked => ApiError::new(C::NotLocked, message),
            DomainError::Required(field) => ApiError::new(C::InvalidRequest, message).field(field),
            DomainError::StalePreparation => ApiError::busy(),
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::Rejected { error, .. } => error.into(),
            CommandError::Contention => ApiError::busy(),
            other => ApiError::internal(&other),
        }
    }
}

/// Failures of the service's own parts: nothing the client can fix.
macro_rules! internal_from {
    ($($error:ty),*) => {
        $(impl From<$error> for ApiError {
            fn from(error: $error) -> Self {
                ApiError::internal(&error)
            }
        })*
    };
}

internal_from!(
    StoreError,
    VaultError,
    CaptchaError,
    ProjectionError,
    sqlx::Error
);

/// `Json` with this service's error shape for every rejection.
pub struct ApiJson<T>(pub T);

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

fn not_json() -> ApiError {
    ApiError::new(
        ErrorCode::UnsupportedMediaType,
        "send the body as Content-Type: application/json",
    )
}

async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                "the body is larger than this service accepts",
            )
        } else {
            ApiError::new(ErrorCode::InvalidRequest, rejection.body_text())
        }
    })
}

/// Two steps, so the error code says what is wrong: text that is not JSON at all is
/// `malformed_json`; JSON of the wrong shape (unknown or missing fields, wrong types, invalid
/// values) is `invalid_request`.
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            ErrorCode::MalformedJson,
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    serde_json::from_value(value).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("the body does not fit this endpoint: {e}"),
        )
    })
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(not_json());
        }
        let bytes = body_bytes(req, state).await?;
        decode(&bytes).map(ApiJson)
    }
}

/// [`ApiJson`] for an endpoint whose body may be left out altogether: no body is `None`, any
/// body is held to the same rules.
pub struct OptionalApiJson<T>(pub Option<T>);

impl<S, T> FromRequest<S> for OptionalApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = is_json(req.headers());
        let bytes = body_bytes(req, state).await?;
        if bytes.is_empty() {
            return Ok(OptionalApiJson(None));
        }
        if !json {
            return Err(not_json());
        }
        decode(&bytes).map(|v| OptionalApiJson(Some(v)))
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
                Err(ApiError::new(ErrorCode::NotFound, e.body_text()))
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
                Err(ApiError::new(ErrorCode::InvalidQuery, e.body_text()))
            }
            Err(other) => Err(ApiError::new(ErrorCode::InvalidQuery, other.body_text())),
        }
    }
}
