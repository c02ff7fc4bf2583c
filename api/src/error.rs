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

use crate::language::Lang;
use crate::state::AppState;

/// Declares every error code once: its wire name and the status it always answers with. The name
/// is taken as a `tt`, not a `literal`: utoipa reads a `serde(rename)` only from a plain literal
/// token, and would otherwise list the variants' Rust names.
macro_rules! error_codes {
    ($($variant:ident = $text:tt => $status:ident, $indonesian:literal,)*) => {
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

            /// What the code means, in Bahasa Indonesia: the message of every answer in `id`.
            pub fn indonesian(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $indonesian,)*
                }
            }
        }
    };
}

// Each code: its wire name, its status, and its message in Bahasa Indonesia. The English message
// is the one the refusal is made with, which says the particulars (which limit, which parameter).
error_codes! {
    // The request itself.
    MalformedJson = "malformed_json" => BAD_REQUEST,
        "Isi permintaan bukan JSON yang sah.",
    InvalidRequest = "invalid_request" => BAD_REQUEST,
        "Isi permintaan tidak sesuai dengan layanan ini.",
    InvalidQuery = "invalid_query" => BAD_REQUEST,
        "Parameter kueri tidak sah.",
    InvalidCursor = "invalid_cursor" => BAD_REQUEST,
        "Kursor bukan yang diberikan oleh layanan ini.",
    InvalidCodeFormat = "invalid_code_format" => BAD_REQUEST,
        "Kode harus terdiri dari 6 angka.",
    PurposeRequired = "purpose_required" => BAD_REQUEST,
        "Sebutkan alasan membaca data ini di parameter purpose (1 sampai 200 karakter, misalnya nomor tiket).",
    OperatorRequired = "operator_required" => BAD_REQUEST,
        "Sebutkan nama operator di header X-Operator.",
    UnsupportedMediaType = "unsupported_media_type" => UNSUPPORTED_MEDIA_TYPE,
        "Kirim isi permintaan dengan Content-Type: application/json.",
    PayloadTooLarge = "payload_too_large" => PAYLOAD_TOO_LARGE,
        "Isi permintaan melebihi batas yang diterima layanan ini.",
    NotFound = "not_found" => NOT_FOUND,
        "Tidak ditemukan.",
    MethodNotAllowed = "method_not_allowed" => METHOD_NOT_ALLOWED,
        "Metode HTTP ini tidak didukung untuk alamat ini.",
    // Who calls.
    Unauthorized = "unauthorized" => UNAUTHORIZED,
        "Kunci API atau token tidak ada atau tidak sah.",
    Forbidden = "forbidden" => FORBIDDEN,
        "Kunci API ini tidak berhak atas permintaan ini.",
    DeviceNotRecognised = "device_not_recognised" => UNAUTHORIZED,
        "Perangkat tidak dikenali; aktifkan ulang TOTP.",
    TooManyRequests = "too_many_requests" => TOO_MANY_REQUESTS,
        "Terlalu banyak permintaan; coba lagi nanti.",
    ForwardingRefused = "forwarding_refused" => FORBIDDEN,
        "Permintaan ini mengaku diteruskan oleh instans layanan, tetapi tidak membawa tandanya.",
    // What the domain refused.
    AccountNotFound = "account_not_found" => NOT_FOUND,
        "Akun tidak ditemukan.",
    AccountLocked = "account_locked" => LOCKED,
        "Akun terkunci karena terlalu banyak percobaan gagal.",
    LockedUntilUnlock = "locked_until_unlock" => LOCKED,
        "Akun terkunci sampai dibuka oleh helpdesk.",
    NotLocked = "not_locked" => CONFLICT,
        "Akun tidak sedang terkunci.",
    LoginNotFound = "login_not_found" => NOT_FOUND,
        "Login tidak ditemukan.",
    LoginNotPending = "login_not_pending" => CONFLICT,
        "Login ini sudah tidak menunggu konfirmasi.",
    LoginExpired = "login_expired" => GONE,
        "Waktu konfirmasi login sudah habis.",
    InvalidCode = "invalid_code" => UNPROCESSABLE_ENTITY,
        "Kode salah.",
    CodeAlreadyUsed = "code_already_used" => UNPROCESSABLE_ENTITY,
        "Kode ini sudah pernah dipakai; tunggu kode berikutnya.",
    NumberRequired = "number_required" => BAD_REQUEST,
        "Pilih angka yang ditampilkan di portal.",
    TotpAlreadyActive = "totp_already_active" => CONFLICT,
        "TOTP sudah aktif pada perangkat lain; reset terlebih dahulu.",
    TotpNotActive = "totp_not_active" => CONFLICT,
        "TOTP tidak aktif.",
    EnrollmentNotFound = "enrollment_not_found" => NOT_FOUND,
        "Kode QR tidak ditemukan.",
    EnrollmentExpired = "enrollment_expired" => GONE,
        "Kode QR sudah kedaluwarsa; login ulang untuk kode baru.",
    WrongStage = "wrong_stage" => CONFLICT,
        "Langkah ini tidak berlaku untuk login ini.",
    RecentLoginRequired = "recent_login_required" => FORBIDDEN,
        "Diperlukan login yang disetujui dalam 10 menit terakhir.",
    InvalidToken = "invalid_token" => NOT_FOUND,
        "Tautan reset ini tidak sah.",
    TokenUsed = "token_used" => GONE,
        "Tautan reset ini sudah dipakai.",
    TokenSuperseded = "token_superseded" => GONE,
        "Tautan reset ini sudah digantikan oleh permintaan yang lebih baru.",
    TokenExpired = "token_expired" => GONE,
        "Tautan reset ini sudah kedaluwarsa.",
    CaptchaInvalid = "captcha_invalid" => UNPROCESSABLE_ENTITY,
        "Kode keamanan salah, sudah dipakai, atau kedaluwarsa; minta yang baru.",
    // The service.
    Busy = "busy" => SERVICE_UNAVAILABLE,
        "Akun sedang sibuk; coba lagi.",
    NotReady = "not_ready" => SERVICE_UNAVAILABLE,
        "Layanan belum siap.",
    RequestTimeout = "request_timeout" => SERVICE_UNAVAILABLE,
        "Permintaan melebihi batas waktu; coba lagi.",
    TooManyLongPolls = "too_many_long_polls" => SERVICE_UNAVAILABLE,
        "Terlalu banyak permintaan yang menunggu; coba lagi nanti.",
    InstanceUnavailable = "instance_unavailable" => SERVICE_UNAVAILABLE,
        "Instans layanan yang menjalankan permintaan ini tidak menjawab; coba lagi.",
    Standby = "standby" => SERVICE_UNAVAILABLE,
        "Instans ini meneruskan permintaan tulis ke instans aktif.",
    Internal = "internal" => INTERNAL_SERVER_ERROR,
        "Terjadi kesalahan internal; sudah dicatat.",
}

/// The error shape of every 4xx and 5xx answer. `message` follows the request's
/// `Accept-Language`: Bahasa Indonesia by default, English with `en` (q-values honoured, other
/// languages fall back to Bahasa Indonesia); `code` and the other fields never change with it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// For people; may change. In Bahasa Indonesia unless the request's `Accept-Language`
    /// prefers English (`en`); the code is the same in both.
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

    /// The message as a person reading `lang` sees it (the console shows refusals on its pages).
    pub fn message_in(&self, lang: Lang) -> String {
        self.body.in_language(lang).message
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

impl ErrorDetail {
    /// The detail as a person reading `lang` sees it. The code and every other field stay as
    /// they are: clients act on those, people read the message. In Bahasa Indonesia the message
    /// is the code's own, naming the field where one is known; in English it is the particular
    /// message the refusal was made with.
    pub fn in_language(&self, lang: Lang) -> ErrorDetail {
        let mut detail = self.clone();
        if lang == Lang::Id {
            detail.message = match &self.field {
                Some(field) => format!("{} (isian: {field})", self.code.indonesian()),
                None => self.code.indonesian().to_owned(),
            };
        }
        detail
    }
}

/// An error answer's detail before its language is chosen, for [`localize`].
#[derive(Clone)]
struct Unlocalized(ErrorDetail);

/// Chooses the language of an error answer's message from the request's `Accept-Language`
/// (Bahasa Indonesia unless English is preferred); the code and status never change. Errors
/// are answered in Bahasa Indonesia already, so only an English answer is written again.
pub async fn localize(request: Request, next: Next) -> Response {
    let lang = Lang::from_accept_language(
        request
            .headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    );
    let mut response = next.run(request).await;
    if let Some(Unlocalized(detail)) = response.extensions_mut().remove::<Unlocalized>() {
        response
            .headers_mut()
            .append(header::VARY, HeaderValue::from_static("accept-language"));
        if lang != Lang::Id {
            if let Ok(body) = serde_json::to_vec(&ErrorBody {
                error: detail.in_language(lang),
            }) {
                response.headers_mut().remove(header::CONTENT_LENGTH);
                *response.body_mut() = axum::body::Body::from(body);
            }
        }
    }
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.body.in_language(Lang::Id),
        };
        let mut response = (self.status, Json(body)).into_response();
        response.extensions_mut().insert(Unlocalized(*self.body));
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

/// The whole body, within `SPSE_TOTP_MAX_BODY_BYTES`: an error says which limit or fault.
pub(crate) async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
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
