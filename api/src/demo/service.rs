//! The portal's side of the TOTP service's REST API: every call the reference portal makes, over
//! HTTP with its portal key, exactly as the SPSE portal's server would. Read this module with
//! `docs/portal-integration.md`: nothing here reaches into the service's internals.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A call that did not get an answer (the service is down, or answered something not JSON).
#[derive(Debug, thiserror::Error)]
#[error("calling the TOTP service: {0}")]
pub struct ServiceError(#[from] reqwest::Error);

/// An answer: the HTTP status and the JSON body. Refusals (4xx) are answers, not errors: each
/// page decides what to show for its codes (`invalid_code`, `account_locked`, ...).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// The stable error code of a refusal (`{"error": {"code": ...}}`).
    pub fn error_code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }

    pub fn str(&self, field: &str) -> Option<&str> {
        self.body[field].as_str()
    }
}

/// Who the user is and where they are: what `POST /v1/logins` records and shows on the device.
pub struct LoginStart<'a> {
    pub user_type: &'a str,
    pub user_id: &'a str,
    pub email: &'a str,
    pub name: &'a str,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Clone)]
pub struct TotpService {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl TotpService {
    pub fn new(base: &str, key: String) -> Result<Self, ServiceError> {
        // Longer than the longest long-poll (30 s), so a wait is never cut short here.
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(40))
            .build()?;
        Ok(TotpService {
            http,
            base: base.trim_end_matches('/').to_owned(),
            key,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, ServiceError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        Ok(Answer { status, body })
    }

    /// After the password check: `POST /v1/logins`. `201` with `status` `awaiting_activation`
    /// (and `activation.qr_svg`) or `awaiting_approval` (and `approval_number`); `423` when locked.
    pub async fn start_login(&self, login: LoginStart<'_>) -> Result<Answer, ServiceError> {
        let mut body = json!({
            "user_type": login.user_type,
            "user_id": login.user_id,
            "email": login.email,
            "name": login.name,
        });
        if let Some(ip) = login.client_ip {
            body["client_ip"] = json!(ip);
        }
        if let Some(agent) = login.user_agent {
            body["user_agent"] = json!(agent);
        }
        self.call(Method::POST, "/v1/logins", Some(body)).await
    }

    /// `GET /v1/logins/{id}?wait_seconds=N`: returns as soon as the status changes, or after N
    /// seconds (at most 30) with the status unchanged.
    pub async fn login_status(
        &self,
        login_id: &str,
        wait_seconds: u8,
    ) -> Result<Answer, ServiceError> {
        self.call(
            Method::GET,
            &format!("/v1/logins/{login_id}?wait_seconds={wait_seconds}"),
            None,
        )
        .await
    }

    /// The code the user typed: `POST /v1/logins/{id}/code`. `200` approved (activating TOTP
    /// when the login showed a QR code); `422 invalid_code` with `attempts_left`; `423`; `410`.
    pub async fn submit_code(&self, login_id: &str, code: &str) -> Result<Answer, ServiceError> {
        self.call(
            Method::POST,
            &format!("/v1/logins/{login_id}/code"),
            Some(json!({ "code": code })),
        )
        .await
    }

    /// The user left the page (signed out before approving): `POST /v1/logins/{id}/cancel`.
    pub async fn cancel_login(&self, login_id: &str) -> Result<Answer, ServiceError> {
        self.call(Method::POST, &format!("/v1/logins/{login_id}/cancel"), None)
            .await
    }

    /// FAQ 4: `POST /v1/accounts/{type}/{id}/disable` with the login approved in the last 10
    /// minutes and a fresh code.
    pub async fn disable(
        &self,
        user_type: &str,
        user_id: &str,
        login_id: &str,
        code: &str,
    ) -> Result<Answer, ServiceError> {
        self.call(
            Method::POST,
            &format!("/v1/accounts/{user_type}/{user_id}/disable"),
            Some(json!({ "login_id": login_id, "code": code })),
        )
        .await
    }

    /// The reset form's "Kode Keamanan": `GET /v1/captcha` (`captcha_id`, `image_png` as base64).
    pub async fn captcha(&self) -> Result<Answer, ServiceError> {
        self.call(Method::GET, "/v1/captcha", None).await
    }

    /// The reset form's "Kirim": `POST /v1/resets`. `202` whatever the account and email
    /// (the answer never tells whether they match); `422 captcha_invalid`.
    pub async fn request_reset(
        &self,
        form: &ResetForm,
        client_ip: Option<String>,
    ) -> Result<Answer, ServiceError> {
        let mut body = json!({
            "user_type": form.user_type,
            "user_id": form.user_id.trim(),
            "email": form.email.trim(),
            "captcha_id": form.captcha_id,
            "captcha_answer": form.captcha_answer.trim(),
        });
        if let Some(ip) = client_ip {
            body["client_ip"] = json!(ip);
        }
        self.call(Method::POST, "/v1/resets", Some(body)).await
    }
}

/// What the reset form posts.
#[derive(Debug, serde::Deserialize)]
pub struct ResetForm {
    pub csrf: String,
    pub user_type: String,
    pub user_id: String,
    pub email: String,
    pub captcha_id: String,
    pub captcha_answer: String,
}
