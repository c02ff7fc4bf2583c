//! Test support: the real service on an ephemeral port with its own database and a test clock,
//! an HTTP client that speaks its API, and an authenticator that plays the user's phone.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use reqwest::StatusCode;
use serde_json::Value;
use spse_totp_api::state::AppState;
use spse_totp_api::{App, Config};
use spse_totp_commands::vault::MasterKey;
use spse_totp_commands::{apikeys, ManualClock};
use spse_totp_domain::apikey::Role;
use spse_totp_domain::totp::{code_for_step, step_at, TotpSecret};
use tempfile::TempDir;
use tokio::sync::oneshot;

pub mod browser;
pub mod companion;
pub mod console;
pub mod resets;
pub mod smtp_sink;

/// Mid-step, so a test that moves a few seconds stays in the same 30-second step.
pub fn start_instant() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 10)
        .single()
        .unwrap_or_default()
}

/// Set to `postgres` (with `SPSE_TOTP_TEST_DATABASE_URL`) to run the end-to-end suite on
/// PostgreSQL; otherwise it runs on a SQLite file in the test's temporary folder.
pub const TEST_BACKEND: &str = "SPSE_TOTP_TEST_BACKEND";

pub fn on_postgres() -> bool {
    std::env::var(TEST_BACKEND).is_ok_and(|backend| backend == "postgres")
}

/// A fresh, empty database for one test server: a new schema on the PostgreSQL test server, or a
/// new SQLite file in `dir`.
pub async fn test_database_url(dir: &std::path::Path) -> String {
    if on_postgres() {
        spse_totp_store::test_database::fresh_postgres_url()
            .await
            .expect("a fresh PostgreSQL schema")
            .unwrap_or_else(|| {
                panic!(
                    "{TEST_BACKEND}=postgres needs {}",
                    spse_totp_store::test_database::TEST_DATABASE_URL
                )
            })
    } else {
        format!("sqlite://{}/spse-totp.db", dir.display())
    }
}

pub struct TestServer {
    pub base: String,
    pub services: AppState,
    pub clock: Arc<ManualClock>,
    pub portal_key: String,
    pub helpdesk_key: String,
    pub auditor_key: String,
    pub client: reqwest::Client,
    pub dir: TempDir,
    stop: Option<oneshot::Sender<()>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts with the defaults changed by `tweak` (policy, body limit, ...).
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            database_url: test_database_url(dir.path()).await,
            master_key: Some(MasterKey::generate().to_base64()),
            master_key_file: dir.path().join("master.key"),
            ..Config::default()
        };
        config.mail.outbox = dir.path().join("outbox");
        tweak(&mut config);
        Self::start_in(dir, config).await
    }

    pub async fn start_in(dir: TempDir, mut config: Config) -> Self {
        let clock = Arc::new(ManualClock::starting_at(start_instant()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        config.public_base_url = base.clone();
        let app = App::start(config, clock.clone())
            .await
            .expect("the service starts");
        let services = Arc::clone(&app.services);
        let mut keys = Vec::new();
        for role in [Role::Portal, Role::Helpdesk, Role::Auditor] {
            let created = apikeys::create(
                services.db.events.as_ref(),
                &format!("test-{role}"),
                role,
                "test",
                clock_now(&clock),
            )
            .await
            .expect("api key");
            keys.push(created.key);
        }
        services.projections.catch_up().await.expect("projections");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(app.serve(listener, async move {
            let _ = stopped.await;
        }));
        let [portal_key, helpdesk_key, auditor_key]: [String; 3] =
            keys.try_into().expect("three keys");
        TestServer {
            base,
            services,
            clock,
            portal_key,
            helpdesk_key,
            auditor_key,
            client: reqwest::Client::new(),
            dir,
            stop: Some(stop),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        clock_now(&self.clock)
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        Self::answer(request).await
    }

    /// `POST` asking for English messages (`Accept-Language: en`), for tests that read the
    /// particular message of a refusal rather than its code.
    pub async fn post_in_english(
        &self,
        path: &str,
        bearer: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let request = self
            .client
            .post(self.url(path))
            .bearer_auth(bearer)
            .header(reqwest::header::ACCEPT_LANGUAGE, "en")
            .json(&body);
        Self::answer(request).await
    }

    async fn answer(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.expect("the request is answered");
        let status = response.status();
        let text = response.text().await.expect("a body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub async fn post(&self, path: &str, bearer: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(bearer), Some(body))
            .await
    }

    pub async fn get(&self, path: &str, bearer: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, Some(bearer), None)
            .await
    }

    /// `POST /v1/logins` as the portal, after its password check.
    pub async fn start_login(&self, user_type: &str, user_id: &str) -> (StatusCode, Value) {
        self.post(
            "/v1/logins",
            &self.portal_key,
            serde_json::json!({"user_type": user_type, "user_id": user_id, "client_ip": "10.20.30.40", "user_agent": "Firefox/128"}),
        )
        .await
    }

    /// Flow 1 with a standard authenticator: start a login, scan, type the first code.
    /// Returns the phone and the approved login.
    pub async fn activate_by_code(
        &self,
        user_type: &str,
        user_id: &str,
    ) -> (Authenticator, String) {
        let (status, login) = self.start_login(user_type, user_id).await;
        assert_eq!(status, StatusCode::CREATED, "{login}");
        let phone = Authenticator::scan(&login);
        let login_id = login["login_id"].as_str().expect("login_id").to_owned();
        let (status, body) = self
            .post(
                &format!("/v1/logins/{login_id}/code"),
                &self.portal_key,
                serde_json::json!({"code": phone.code_at(self.now())}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        self.settle_mail().await;
        (phone, login_id)
    }

    /// Flow 1 with the push-capable app: scan, call back with the first code.
    /// Returns the phone (with its device token) and the login that showed the QR.
    pub async fn activate_by_device(
        &self,
        user_type: &str,
        user_id: &str,
    ) -> (Authenticator, String) {
        let (status, login) = self.start_login(user_type, user_id).await;
        assert_eq!(status, StatusCode::CREATED, "{login}");
        let mut phone = Authenticator::scan(&login);
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/v1/device/activations",
                None,
                Some(serde_json::json!({
                    "enrollment_id": phone.enrollment_id,
                    "code": phone.code_at(self.now()),
                    "device_label": "Test phone",
                    "platform": "android"
                })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        phone.device_token = body["device_token"].as_str().map(str::to_owned);
        self.settle_mail().await;
        (
            phone,
            login["login_id"].as_str().expect("login_id").to_owned(),
        )
    }

    /// Waits until the mail dispatcher has handled everything in the log (the notices an
    /// activation calls for append their outcome events), so a test comparing the log before
    /// and after a request sees only what that request did.
    pub async fn settle_mail(&self) {
        settle_mail(&self.services).await;
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn clock_now(clock: &ManualClock) -> DateTime<Utc> {
    use spse_totp_commands::Clock;
    clock.now()
}

/// The user's phone: what it learnt by scanning the QR code.
#[derive(Debug, Clone)]
pub struct Authenticator {
    pub secret: Vec<u8>,
    pub enrollment_id: String,
    pub server: String,
    pub device_token: Option<String>,
}

impl Authenticator {
    /// Reads the `otpauth://` URI from a start-login answer, as a camera would from the QR code.
    pub fn scan(login: &Value) -> Self {
        let uri = login["activation"]["otpauth_uri"]
            .as_str()
            .expect("an activation QR code");
        let parsed = url::Url::parse(uri).expect("a URI");
        let param = |name: &str| {
            parsed
                .query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let secret = totp_rs::Secret::Encoded(param("secret"))
            .to_bytes()
            .expect("a base32 secret");
        Authenticator {
            secret,
            enrollment_id: param("enrollment_id"),
            server: param("server"),
            device_token: None,
        }
    }

    pub fn code_at(&self, at: DateTime<Utc>) -> String {
        code_for_step(&TotpSecret::from_bytes(self.secret.clone()), step_at(at))
    }

    pub fn token(&self) -> &str {
        self.device_token.as_deref().expect("a device token")
    }
}

/// A code valid for no step in the window at `at`: certainly wrong.
pub fn wrong_code(phone: &Authenticator, at: DateTime<Utc>) -> String {
    let now: u32 = phone.code_at(at).parse().expect("digits");
    let before: u32 = phone
        .code_at(at - Duration::seconds(30))
        .parse()
        .expect("digits");
    let wrong = (1..3u32)
        .map(|d| (now + d) % 1_000_000)
        .find(|c| *c != before)
        .unwrap_or(now ^ 1);
    format!("{wrong:06}")
}

/// Waits until the mail dispatcher of `services` has handled everything in the log, each
/// message's outcome event included; false when it did not within ten seconds (another instance
/// holds the dispatcher's lease, or the mail is stuck).
pub async fn settle_mail(services: &AppState) -> bool {
    let mut handled = services.mail_handled.clone();
    // Each message's outcome is itself an event: wait until nothing is left past the head.
    for _ in 0..100 {
        let head = services.db.events.head_position().await.expect("head");
        // The guard `wait_for` returns holds the watch's lock: drop it at once, or the
        // dispatcher's next publish would block this (single) runtime thread.
        let reached = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            handled.wait_for(|h| *h >= head),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        if !reached {
            return false;
        }
        if services.db.events.head_position().await.expect("head") == head {
            return true;
        }
    }
    false
}
