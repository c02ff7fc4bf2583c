//! Helpers for the reset and helpdesk tests: a server that mails through an SMTP sink (or its
//! outbox), accounts with an email on record, captchas and reset requests.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use spse_totp_projections::mail::{SmtpSettings, SmtpTls};

use crate::smtp_sink::{ReceivedMail, SmtpSink};
use crate::{Authenticator, TestServer};

/// The fixed captcha answer these test servers accept (`SPSE_TOTP_CAPTCHA_TEST_ANSWER`).
pub const CAPTCHA_ANSWER: &str = "TESTPASS";
pub const USER_IP: &str = "203.0.113.7";

pub fn email_of(user_id: &str) -> String {
    format!("{}@lpse.example.go.id", user_id.to_ascii_lowercase())
}

/// A server whose mail goes to `sink`, with a test captcha answer.
pub async fn server_with_sink(sink: &SmtpSink) -> TestServer {
    let port = sink.port();
    TestServer::start_with(move |config| {
        config.reset.captcha_test_answer = Some(CAPTCHA_ANSWER.to_owned());
        config.mail.smtp = Some(SmtpSettings {
            host: "127.0.0.1".to_owned(),
            port,
            tls: SmtpTls::None,
            username: None,
            password: None,
            timeout: Duration::from_secs(5),
        });
    })
    .await
}

/// A server that mails to its file outbox, with a test captcha answer.
pub async fn server_with_outbox() -> TestServer {
    TestServer::start_with(|config| {
        config.reset.captcha_test_answer = Some(CAPTCHA_ANSWER.to_owned());
    })
    .await
}

impl TestServer {
    /// Flow 1 by typed code, with the user's email on record.
    pub async fn activate_with_email(&self, user_type: &str, user_id: &str) -> Authenticator {
        let (status, login) = self
            .post(
                "/v1/logins",
                &self.portal_key,
                json!({"user_type": user_type, "user_id": user_id, "email": email_of(user_id),
                       "name": format!("Pengguna {user_id}"), "client_ip": USER_IP}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{login}");
        let phone = Authenticator::scan(&login);
        let login_id = login["login_id"].as_str().expect("login_id");
        let (status, body) = self
            .post(
                &format!("/v1/logins/{login_id}/code"),
                &self.portal_key,
                json!({"code": phone.code_at(self.now())}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        phone
    }

    pub async fn captcha(&self) -> String {
        let (status, body) = self.get("/v1/captcha", &self.portal_key).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["captcha_id"].as_str().expect("captcha_id").to_owned()
    }

    /// `POST /v1/resets` with a fresh captcha and the test answer: the status and the raw body.
    pub async fn request_reset(
        &self,
        user_type: &str,
        user_id: &str,
        email: &str,
        client_ip: &str,
    ) -> (StatusCode, Vec<u8>) {
        let captcha_id = self.captcha().await;
        self.request_reset_with(
            json!({"user_type": user_type, "user_id": user_id, "email": email,
            "captcha_id": captcha_id, "captcha_answer": CAPTCHA_ANSWER, "client_ip": client_ip}),
        )
        .await
    }

    pub async fn request_reset_with(&self, body: Value) -> (StatusCode, Vec<u8>) {
        let response = self
            .client
            .post(self.url("/v1/resets"))
            .bearer_auth(&self.portal_key)
            .json(&body)
            .send()
            .await
            .expect("answered");
        let status = response.status();
        (status, response.bytes().await.expect("body").to_vec())
    }

    /// `POST /v1/resets/confirm`, as the reset page's button does.
    pub async fn confirm_reset(&self, token: &str) -> (StatusCode, Value) {
        self.call(
            reqwest::Method::POST,
            "/v1/resets/confirm",
            None,
            Some(json!({"token": token})),
        )
        .await
    }

    /// `GET /reset-totp?token=...`: status, headers and the HTML.
    pub async fn reset_page(
        &self,
        token: &str,
        language: Option<&str>,
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let mut request = self
            .client
            .get(self.url("/reset-totp"))
            .query(&[("token", token)]);
        if let Some(language) = language {
            request = request.header("accept-language", language);
        }
        let response = request.send().await.expect("answered");
        let status = response.status();
        let headers = response.headers().clone();
        (status, headers, response.text().await.expect("html"))
    }

    /// Every event type of one account's stream, in order.
    pub async fn event_types(&self, user_type: &str, user_id: &str) -> Vec<String> {
        let stream = format!("account-{user_type}-{}", user_id.to_ascii_uppercase());
        self.services
            .db
            .events
            .read_stream(&stream, 1, 10_000)
            .await
            .expect("stream")
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }

    /// The files of the mail outbox, read.
    pub fn outbox(&self) -> Vec<String> {
        let folder = self.dir.path().join("outbox");
        let Ok(entries) = std::fs::read_dir(folder) else {
            return Vec::new();
        };
        let mut files: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect();
        files.sort();
        files
    }
}

/// The reset-link messages among `messages`.
pub fn reset_links(messages: &[ReceivedMail]) -> Vec<&ReceivedMail> {
    messages
        .iter()
        .filter(|m| m.header("Subject").as_deref() == Some("Konfirmasi Permintaan Reset TOTP"))
        .collect()
}

/// Waits until `count` reset-link messages arrived at `sink`.
pub async fn wait_for_links(sink: &SmtpSink, count: usize) -> Vec<ReceivedMail> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let messages = sink.messages();
        let links: Vec<ReceivedMail> = reset_links(&messages).into_iter().cloned().collect();
        if links.len() >= count || tokio::time::Instant::now() >= deadline {
            return links;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
