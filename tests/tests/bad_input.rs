//! Bad input: every malformed, unauthorised or misdirected request gets a precise 4xx in the one
//! error shape `{"error":{"code","message"}}`, never a 5xx, and changes nothing (the event store's
//! head does not move) unless the contract says the failure is recorded.

use chrono::Duration;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use spse_totp_tests::{wrong_code, Authenticator, TestServer};
use uuid::Uuid;

/// A request with full control over headers and body: what a broken client would send.
struct Raw<'a> {
    method: Method,
    path: &'a str,
    bearer: Option<&'a str>,
    content_type: Option<&'a str>,
    body: Option<Vec<u8>>,
}

impl<'a> Raw<'a> {
    fn new(method: Method, path: &'a str) -> Self {
        Raw {
            method,
            path,
            bearer: None,
            content_type: None,
            body: None,
        }
    }

    fn bearer(mut self, key: &'a str) -> Self {
        self.bearer = Some(key);
        self
    }

    fn json_text(mut self, text: impl Into<Vec<u8>>) -> Self {
        self.content_type = Some("application/json");
        self.body = Some(text.into());
        self
    }

    fn content_type(mut self, value: Option<&'a str>) -> Self {
        self.content_type = value;
        self
    }

    async fn send(self, server: &TestServer) -> (StatusCode, Value) {
        let mut headers = HeaderMap::new();
        if let Some(key) = self.bearer {
            headers.insert(
                AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {key}")).unwrap(),
            );
        }
        if let Some(content_type) = self.content_type {
            headers.insert(CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        }
        let mut request = server
            .client
            .request(self.method, server.url(self.path))
            .headers(headers);
        if let Some(body) = self.body {
            request = request.body(body);
        }
        let response = request.send().await.expect("the request is answered");
        let status = response.status();
        let text = response.text().await.expect("a body");
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{status}: the body is not JSON: {text:?}"));
        (status, value)
    }
}

/// The answer is `status` with error `code`, in the one error shape.
#[track_caller]
fn assert_error(answer: &(StatusCode, Value), status: StatusCode, code: &str, what: &str) {
    let (actual, body) = answer;
    assert!(!actual.is_server_error(), "{what}: {actual} {body}");
    assert_eq!(*actual, status, "{what}: {body}");
    assert_eq!(body["error"]["code"], code, "{what}: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{what}: no message in {body}");
}

async fn head(server: &TestServer) -> u64 {
    server.services.db.events.head_position().await.unwrap()
}

async fn count_events(server: &TestServer, event_type: &str) -> usize {
    server
        .services
        .db
        .events
        .read_all(0, 1_000_000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event_type == event_type)
        .count()
}

/// An account activated by the push-capable app, with a login waiting for its approval (and one
/// step after the activation, so its code is fresh). Returns the phone, login id, approval number.
async fn pending_approval(server: &TestServer) -> (Authenticator, String, u64) {
    let (phone, _) = server.activate_by_device("penyedia", "vendor1").await;
    server.advance(Duration::seconds(30));
    let (status, login) = server.start_login("penyedia", "vendor1").await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    assert_eq!(login["status"], "awaiting_approval");
    (
        phone,
        login["login_id"].as_str().unwrap().to_owned(),
        login["approval_number"].as_u64().unwrap(),
    )
}

/// The login is still waiting for approval (nothing above decided it).
async fn assert_still_pending(server: &TestServer, login_id: &str) {
    let (status, view) = server
        .get(&format!("/v1/logins/{login_id}"), &server.portal_key)
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["status"], "awaiting_approval", "{view}");
}

fn start_body(user_id: &str) -> Value {
    json!({ "user_type": "penyedia", "user_id": user_id })
}

#[tokio::test]
async fn malformed_json_is_400_malformed_json_and_changes_nothing() {
    let server = TestServer::start().await;
    let (phone, id, _) = pending_approval(&server).await;
    let before = head(&server).await;
    let code_path = format!("/v1/logins/{id}/code");
    let approve_path = format!("/v1/device/logins/{id}/approve");
    let key = server.portal_key.as_str();
    for text in [
        "{\"user_type\": \"penyedia\",",
        "not json",
        "",
        "{'user_type': 'penyedia'}",
        "{\"user_type\": \"penyedia\", \"user_id\": \"ppk1\"} trailing",
    ] {
        let answer = Raw::new(Method::POST, "/v1/logins")
            .bearer(key)
            .json_text(text)
            .send(&server)
            .await;
        assert_error(
            &answer,
            StatusCode::BAD_REQUEST,
            "malformed_json",
            &format!("start login with {text:?}"),
        );
    }
    let answer = Raw::new(Method::POST, &code_path)
        .bearer(key)
        .json_text("{\"code\": ")
        .send(&server)
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "malformed_json", "code");
    let answer = Raw::new(Method::POST, &approve_path)
        .bearer(phone.token())
        .json_text("{\"code\"")
        .send(&server)
        .await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "malformed_json",
        "approve",
    );
    let answer = Raw::new(Method::POST, "/v1/device/activations")
        .json_text("{\"enrollment_id\": ")
        .send(&server)
        .await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "malformed_json",
        "activation",
    );
    assert_eq!(head(&server).await, before);
    assert_still_pending(&server, &id).await;
}

#[tokio::test]
async fn unknown_field_is_400_invalid_request_and_changes_nothing() {
    let server = TestServer::start().await;
    let (phone, id, number) = pending_approval(&server).await;
    let before = head(&server).await;
    let code = phone.code_at(server.now());
    let cases = [
        (
            "/v1/logins".to_owned(),
            server.portal_key.as_str(),
            json!({ "user_type": "penyedia", "user_id": "ppk2", "password": "hunter2" }),
        ),
        (
            format!("/v1/logins/{id}/code"),
            server.portal_key.as_str(),
            json!({ "code": code, "remember_me": true }),
        ),
        (
            format!("/v1/device/logins/{id}/approve"),
            phone.token(),
            json!({ "code": code, "number": number, "trust": true }),
        ),
    ];
    for (path, bearer, body) in &cases {
        let answer = server.post(path, bearer, body.clone()).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_request", path);
    }
    let answer = server
        .call(
            Method::POST,
            "/v1/device/activations",
            None,
            Some(json!({
                "enrollment_id": Uuid::new_v4(), "code": code, "device_label": "x", "admin": true
            })),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "activation",
    );
    assert_eq!(head(&server).await, before);
    assert_still_pending(&server, &id).await;
}

#[tokio::test]
async fn wrong_json_type_is_400_invalid_request_and_changes_nothing() {
    let server = TestServer::start().await;
    let (phone, id, number) = pending_approval(&server).await;
    let before = head(&server).await;
    let code: u64 = phone.code_at(server.now()).parse().unwrap();
    let key = server.portal_key.as_str();
    let cases = [
        (
            "/v1/logins".to_owned(),
            key,
            json!({ "user_type": "penyedia", "user_id": 123 }),
        ),
        (
            "/v1/logins".to_owned(),
            key,
            json!({ "user_type": "penyedia", "user_id": "ppk2", "email": false }),
        ),
        ("/v1/logins".to_owned(), key, json!(["penyedia", "ppk2"])),
        ("/v1/logins".to_owned(), key, json!("penyedia/ppk2")),
        // The code as a JSON number, not a string: leading zeros would be lost.
        (
            format!("/v1/logins/{id}/code"),
            key,
            json!({ "code": code }),
        ),
        (
            format!("/v1/logins/{id}/code"),
            key,
            json!({ "code": null }),
        ),
        (
            format!("/v1/device/logins/{id}/approve"),
            phone.token(),
            json!({ "code": code.to_string(), "number": number.to_string() }),
        ),
    ];
    for (path, bearer, body) in &cases {
        let answer = server.post(path, bearer, body.clone()).await;
        assert_error(
            &answer,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("{path} {body}"),
        );
    }
    assert_eq!(head(&server).await, before);
    assert_still_pending(&server, &id).await;
}

#[tokio::test]
async fn missing_field_is_400_invalid_request_and_changes_nothing() {
    let server = TestServer::start().await;
    let (phone, id, number) = pending_approval(&server).await;
    let before = head(&server).await;
    let key = server.portal_key.as_str();
    let cases = [
        (
            "/v1/logins".to_owned(),
            key,
            json!({ "user_type": "penyedia" }),
        ),
        ("/v1/logins".to_owned(), key, json!({ "user_id": "ppk2" })),
        ("/v1/logins".to_owned(), key, json!({})),
        (format!("/v1/logins/{id}/code"), key, json!({})),
        (
            format!("/v1/device/logins/{id}/approve"),
            phone.token(),
            json!({ "number": number }),
        ),
    ];
    for (path, bearer, body) in &cases {
        let answer = server.post(path, bearer, body.clone()).await;
        assert_error(
            &answer,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("{path} {body}"),
        );
    }
    let answer = server
        .call(
            Method::POST,
            "/v1/device/activations",
            None,
            Some(json!({ "enrollment_id": Uuid::new_v4(), "code": "123456" })),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "activation without device_label",
    );
    assert_eq!(head(&server).await, before);
    assert_still_pending(&server, &id).await;
}

#[tokio::test]
async fn invalid_user_type_or_user_id_is_400_and_registers_nobody() {
    let server = TestServer::start().await;
    let before = head(&server).await;
    let long = "x".repeat(65);
    let cases = [
        json!({ "user_type": "admin", "user_id": "ppk1" }),
        json!({ "user_type": "Penyedia", "user_id": "ppk1" }),
        json!({ "user_type": "", "user_id": "ppk1" }),
        json!({ "user_type": "penyedia", "user_id": "a b" }),
        json!({ "user_type": "penyedia", "user_id": long }),
        json!({ "user_type": "penyedia", "user_id": "" }),
        json!({ "user_type": "penyedia", "user_id": "   " }),
        json!({ "user_type": "penyedia", "user_id": "ppk/1" }),
        json!({ "user_type": "penyedia", "user_id": "ppk\n1" }),
        json!({ "user_type": "penyedia", "user_id": "ppk1ß" }),
    ];
    for body in &cases {
        let answer = server
            .post("/v1/logins", &server.portal_key, body.clone())
            .await;
        assert_error(
            &answer,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &body.to_string(),
        );
    }
    // The longest allowed User ID is fine: the limit is 64, not less.
    let (status, body) = server
        .post(
            "/v1/logins",
            &server.portal_key,
            start_body(&"x".repeat(64)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let after_valid = head(&server).await;
    assert!(after_valid > before);
    // In a path, an account that cannot exist is simply not found.
    for path in [
        "/v1/accounts/admin/PPK1".to_owned(),
        format!("/v1/accounts/penyedia/{long}"),
        "/v1/accounts/penyedia/a%20b".to_owned(),
    ] {
        let answer = server.get(&path, &server.portal_key).await;
        assert_error(&answer, StatusCode::NOT_FOUND, "not_found", &path);
    }
    let answer = server
        .get("/v1/accounts/penyedia/nobody", &server.portal_key)
        .await;
    assert_error(
        &answer,
        StatusCode::NOT_FOUND,
        "account_not_found",
        "unknown account",
    );
    assert_eq!(head(&server).await, after_valid);
}

#[tokio::test]
async fn body_without_json_content_type_is_415_and_changes_nothing() {
    let server = TestServer::start().await;
    let (_, id, _) = pending_approval(&server).await;
    let before = head(&server).await;
    let valid = start_body("ppk2").to_string();
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let answer = Raw::new(Method::POST, "/v1/logins")
            .bearer(&server.portal_key)
            .json_text(valid.clone())
            .content_type(content_type)
            .send(&server)
            .await;
        assert_error(
            &answer,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            &format!("{content_type:?}"),
        );
    }
    let answer = Raw::new(Method::POST, &format!("/v1/logins/{id}/code"))
        .bearer(&server.portal_key)
        .json_text("{\"code\":\"123456\"}")
        .content_type(None)
        .send(&server)
        .await;
    assert_error(
        &answer,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "code without content type",
    );
    assert_eq!(head(&server).await, before);
    assert_still_pending(&server, &id).await;
}

#[tokio::test]
async fn huge_body_is_413_payload_too_large_and_changes_nothing() {
    let server = TestServer::start().await;
    let (_, id, _) = pending_approval(&server).await;
    let before = head(&server).await;
    let mebibyte = "a".repeat(1024 * 1024);
    let body = json!({ "user_type": "penyedia", "user_id": "ppk2", "name": mebibyte }).to_string();
    let answer = Raw::new(Method::POST, "/v1/logins")
        .bearer(&server.portal_key)
        .json_text(body)
        .send(&server)
        .await;
    assert_error(
        &answer,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "1 MiB start login",
    );
    let body = json!({ "code": "123456", "padding": mebibyte }).to_string();
    let answer = Raw::new(Method::POST, &format!("/v1/logins/{id}/code"))
        .bearer(&server.portal_key)
        .json_text(body)
        .send(&server)
        .await;
    assert_error(
        &answer,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "1 MiB code",
    );
    assert_eq!(head(&server).await, before);
    assert_still_pending(&server, &id).await;
}

#[tokio::test]
async fn malformed_codes_are_400_invalid_code_format_and_not_counted_as_failures() {
    let server = TestServer::start().await;
    let (phone, id, number) = pending_approval(&server).await;
    let before = head(&server).await;
    let malformed = [
        "12345",
        "1234567",
        "١٢٣٤٥٦",
        "１２３４５６",
        "abcdef",
        "12345a",
        "12 345",
        " 12345",
        "",
        "-12345",
        "+12345",
    ];
    for code in malformed {
        let answer = server
            .post(
                &format!("/v1/logins/{id}/code"),
                &server.portal_key,
                json!({ "code": code }),
            )
            .await;
        assert_error(
            &answer,
            StatusCode::BAD_REQUEST,
            "invalid_code_format",
            &format!("typed {code:?}"),
        );
        let answer = server
            .post(
                &format!("/v1/device/logins/{id}/approve"),
                phone.token(),
                json!({ "code": code, "number": number }),
            )
            .await;
        assert_error(
            &answer,
            StatusCode::BAD_REQUEST,
            "invalid_code_format",
            &format!("device {code:?}"),
        );
    }
    assert_eq!(head(&server).await, before, "a malformed code was recorded");
    assert_eq!(count_events(&server, "CodeRejected").await, 0);
    let (failed,): (i64,) =
        sqlx::query_as("SELECT failed_attempts FROM accounts WHERE stream = $1")
            .bind("account-penyedia-VENDOR1")
            .fetch_one(&server.services.db.pool)
            .await
            .unwrap();
    assert_eq!(failed, 0);
    // The count is untouched: the first real wrong code leaves four attempts.
    let (status, body) = server
        .post(
            &format!("/v1/logins/{id}/code"),
            &server.portal_key,
            json!({ "code": wrong_code(&phone, server.now()) }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["attempts_left"], 4, "{body}");
}

#[tokio::test]
async fn malformed_codes_at_activation_and_disable_are_400_invalid_code_format() {
    let server = TestServer::start().await;
    // Activation by device and by typed code.
    let (status, login) = server.start_login("penyedia", "vendor2").await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    let fresh = Authenticator::scan(&login);
    let fresh_login = login["login_id"].as_str().unwrap().to_owned();
    // Disable of an active account.
    let (phone, approved_login) = server.activate_by_code("penyedia", "vendor3").await;
    server.advance(Duration::seconds(30));
    let before = head(&server).await;
    for code in ["12345", "1234567", "١٢٣٤٥٦", "abcdef"] {
        let answer = server
            .call(
                Method::POST,
                "/v1/device/activations",
                None,
                Some(json!({
                    "enrollment_id": fresh.enrollment_id, "code": code, "device_label": "Phone"
                })),
            )
            .await;
        assert_error(
            &answer,
            StatusCode::BAD_REQUEST,
            "invalid_code_format",
            &format!("activation {code:?}"),
        );
        let answer = server
            .post(
                &format!("/v1/logins/{fresh_login}/code"),
                &server.portal_key,
                json!({ "code": code }),
            )
            .await;
        assert_error(
            &answer,
            StatusCode::BAD_REQUEST,
            "invalid_code_format",
            &format!("typed activation {code:?}"),
        );
        let answer = server
            .post(
                "/v1/accounts/penyedia/vendor3/disable",
                &server.portal_key,
                json!({ "login_id": approved_login, "code": code }),
            )
            .await;
        assert_error(
            &answer,
            StatusCode::BAD_REQUEST,
            "invalid_code_format",
            &format!("disable {code:?}"),
        );
    }
    assert_eq!(head(&server).await, before);
    assert_eq!(count_events(&server, "CodeRejected").await, 0);
    // Both still work with a proper code.
    let (status, body) = server
        .post(
            "/v1/accounts/penyedia/vendor3/disable",
            &server.portal_key,
            json!({ "login_id": approved_login, "code": phone.code_at(server.now()) }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["totp_status"], "disabled");
}

#[tokio::test]
async fn unknown_login_id_is_404_login_not_found_and_changes_nothing() {
    let server = TestServer::start().await;
    let (phone, id, number) = pending_approval(&server).await;
    let before = head(&server).await;
    let unknown = Uuid::new_v4();
    let code = phone.code_at(server.now());
    let answer = server
        .get(&format!("/v1/logins/{unknown}"), &server.portal_key)
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "login_not_found", "status");
    let answer = server
        .get(
            &format!("/v1/logins/{unknown}?wait_seconds=1"),
            &server.portal_key,
        )
        .await;
    assert_error(
        &answer,
        StatusCode::NOT_FOUND,
        "login_not_found",
        "long poll",
    );
    let answer = server
        .post(
            &format!("/v1/logins/{unknown}/code"),
            &server.portal_key,
            json!({ "code": code }),
        )
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "login_not_found", "code");
    let answer = server
        .post(
            &format!("/v1/logins/{unknown}/cancel"),
            &server.portal_key,
            json!({}),
        )
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "login_not_found", "cancel");
    let answer = server
        .post(
            &format!("/v1/device/logins/{unknown}/approve"),
            phone.token(),
            json!({ "code": code, "number": number }),
        )
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "login_not_found", "approve");
    let answer = server
        .post(
            &format!("/v1/device/logins/{unknown}/deny"),
            phone.token(),
            json!({}),
        )
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "login_not_found", "deny");
    let answer = server
        .post(
            "/v1/accounts/penyedia/vendor1/disable",
            &server.portal_key,
            json!({ "login_id": unknown, "code": code }),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::FORBIDDEN,
        "recent_login_required",
        "disable naming an unknown login",
    );
    assert_eq!(head(&server).await, before);
    assert_eq!(count_events(&server, "CodeRejected").await, 0);
    // The code was not used up by any of the above.
    let (status, body) = server
        .post(
            &format!("/v1/logins/{id}/code"),
            &server.portal_key,
            json!({ "code": code }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn non_uuid_login_id_in_the_path_is_404_and_changes_nothing() {
    let server = TestServer::start().await;
    let (phone, id, number) = pending_approval(&server).await;
    let before = head(&server).await;
    let code = phone.code_at(server.now());
    for bad in [
        "not-a-uuid",
        "12345",
        "00000000-0000-0000-0000-00000000000g",
    ] {
        let answer = server
            .get(&format!("/v1/logins/{bad}"), &server.portal_key)
            .await;
        assert_error(&answer, StatusCode::NOT_FOUND, "not_found", bad);
        let answer = server
            .post(
                &format!("/v1/logins/{bad}/code"),
                &server.portal_key,
                json!({ "code": code }),
            )
            .await;
        assert_error(&answer, StatusCode::NOT_FOUND, "not_found", bad);
        let answer = server
            .post(
                &format!("/v1/logins/{bad}/cancel"),
                &server.portal_key,
                json!({}),
            )
            .await;
        assert_error(&answer, StatusCode::NOT_FOUND, "not_found", bad);
        let answer = server
            .post(
                &format!("/v1/device/logins/{bad}/approve"),
                phone.token(),
                json!({ "code": code, "number": number }),
            )
            .await;
        assert_error(&answer, StatusCode::NOT_FOUND, "not_found", bad);
        let answer = server
            .post(
                &format!("/v1/device/logins/{bad}/deny"),
                phone.token(),
                json!({}),
            )
            .await;
        assert_error(&answer, StatusCode::NOT_FOUND, "not_found", bad);
    }
    // In a body, a login id that is not one is a bad request.
    let answer = server
        .post(
            "/v1/accounts/penyedia/vendor1/disable",
            &server.portal_key,
            json!({ "login_id": "not-a-uuid", "code": code }),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "disable",
    );
    assert_eq!(head(&server).await, before);
    assert_still_pending(&server, &id).await;
}

#[tokio::test]
async fn unknown_enrollment_is_404_enrollment_not_found_and_changes_nothing() {
    let server = TestServer::start().await;
    let (status, login) = server.start_login("penyedia", "vendor1").await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    let phone = Authenticator::scan(&login);
    let before = head(&server).await;
    let answer = server
        .call(
            Method::POST,
            "/v1/device/activations",
            None,
            Some(json!({
                "enrollment_id": Uuid::new_v4(),
                "code": phone.code_at(server.now()),
                "device_label": "Phone"
            })),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::NOT_FOUND,
        "enrollment_not_found",
        "unknown enrollment",
    );
    let answer = server
        .call(
            Method::POST,
            "/v1/device/activations",
            None,
            Some(json!({
                "enrollment_id": "not-an-enrollment",
                "code": phone.code_at(server.now()),
                "device_label": "Phone"
            })),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "non-UUID enrollment",
    );
    for label in ["", "   ", "tab\there", &"x".repeat(101)] {
        let answer = server
            .call(
                Method::POST,
                "/v1/device/activations",
                None,
                Some(json!({
                    "enrollment_id": phone.enrollment_id,
                    "code": phone.code_at(server.now()),
                    "device_label": label
                })),
            )
            .await;
        assert_error(
            &answer,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("device_label {label:?}"),
        );
    }
    assert_eq!(head(&server).await, before);
    // The real enrollment still activates.
    let (status, body) = server
        .call(
            Method::POST,
            "/v1/device/activations",
            None,
            Some(json!({
                "enrollment_id": phone.enrollment_id,
                "code": phone.code_at(server.now()),
                "device_label": "Phone"
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn missing_or_bogus_api_key_is_401_unauthorized_and_changes_nothing() {
    let server = TestServer::start().await;
    let (phone, id, _) = pending_approval(&server).await;
    let before = head(&server).await;
    let code = phone.code_at(server.now());
    let code_path = format!("/v1/logins/{id}/code");
    let status_path = format!("/v1/logins/{id}");
    let long_key = "k".repeat(200);
    let bogus: [Option<&str>; 5] = [
        None,
        Some("bogus"),
        Some("spse_pk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        Some(&long_key),
        // A device token is not an API key.
        Some(phone.token()),
    ];
    for bearer in bogus {
        let what = format!("{:?}", bearer.map(|b| &b[..b.len().min(10)]));
        let answer = server
            .call(Method::POST, "/v1/logins", bearer, Some(start_body("ppk2")))
            .await;
        assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized", &what);
        let answer = server
            .call(
                Method::POST,
                &code_path,
                bearer,
                Some(json!({ "code": code })),
            )
            .await;
        assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized", &what);
        let answer = server.call(Method::GET, &status_path, bearer, None).await;
        assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized", &what);
        let answer = server
            .call(Method::GET, "/v1/accounts/penyedia/vendor1", bearer, None)
            .await;
        assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized", &what);
    }
    // Not a bearer scheme at all.
    let answer = server
        .client
        .get(server.url(&status_path))
        .basic_auth("portal", Some(&server.portal_key))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(head(&server).await, before);
    assert_still_pending(&server, &id).await;
}

#[tokio::test]
async fn wrong_role_key_on_portal_endpoints_is_403_forbidden_and_changes_nothing() {
    let server = TestServer::start().await;
    let (phone, id, _) = pending_approval(&server).await;
    server.advance(Duration::seconds(30));
    let before = head(&server).await;
    let code = phone.code_at(server.now());
    for key in [&server.helpdesk_key, &server.auditor_key] {
        let answer = server.post("/v1/logins", key, start_body("newcomer")).await;
        assert_error(&answer, StatusCode::FORBIDDEN, "forbidden", "start login");
        let answer = server.get(&format!("/v1/logins/{id}"), key).await;
        assert_error(&answer, StatusCode::FORBIDDEN, "forbidden", "status");
        let answer = server
            .post(
                &format!("/v1/logins/{id}/code"),
                key,
                json!({ "code": code }),
            )
            .await;
        assert_error(&answer, StatusCode::FORBIDDEN, "forbidden", "code");
        let answer = server
            .post(&format!("/v1/logins/{id}/cancel"), key, json!({}))
            .await;
        assert_error(&answer, StatusCode::FORBIDDEN, "forbidden", "cancel");
        let answer = server.get("/v1/accounts/penyedia/vendor1", key).await;
        assert_error(&answer, StatusCode::FORBIDDEN, "forbidden", "account");
        let answer = server
            .post(
                "/v1/accounts/penyedia/vendor1/disable",
                key,
                json!({ "login_id": id, "code": code }),
            )
            .await;
        assert_error(&answer, StatusCode::FORBIDDEN, "forbidden", "disable");
        // The key is checked before the body is read: a wrong key hears so whatever it sent.
        let answer = server
            .post("/v1/logins", key, json!({ "user_id": 7 }))
            .await;
        assert_error(
            &answer,
            StatusCode::FORBIDDEN,
            "forbidden",
            "start, bad body",
        );
        let answer = server
            .post(&format!("/v1/logins/{id}/code"), key, json!([]))
            .await;
        assert_error(
            &answer,
            StatusCode::FORBIDDEN,
            "forbidden",
            "code, bad body",
        );
        let answer = server
            .get(&format!("/v1/logins/{id}?wait_seconds=x"), key)
            .await;
        assert_error(
            &answer,
            StatusCode::FORBIDDEN,
            "forbidden",
            "status, bad query",
        );
    }
    assert_eq!(head(&server).await, before);
    let answer = server
        .get("/v1/accounts/penyedia/newcomer", &server.portal_key)
        .await;
    assert_error(
        &answer,
        StatusCode::NOT_FOUND,
        "account_not_found",
        "nobody was registered",
    );
    assert_still_pending(&server, &id).await;
    // The code the forbidden calls carried was not used up.
    let (status, body) = server
        .post(
            &format!("/v1/logins/{id}/code"),
            &server.portal_key,
            json!({ "code": code }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn bogus_device_token_is_401_device_not_recognised_and_changes_nothing() {
    let server = TestServer::start().await;
    let (phone, id, number) = pending_approval(&server).await;
    let before = head(&server).await;
    let code = phone.code_at(server.now());
    let approve = format!("/v1/device/logins/{id}/approve");
    let deny = format!("/v1/device/logins/{id}/deny");
    let bogus: [Option<&str>; 4] = [
        None,
        Some("spse_dt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        Some("bogus"),
        // An API key is not a device token.
        Some(&server.portal_key),
    ];
    for bearer in bogus {
        let what = format!("{:?}", bearer.map(|b| &b[..b.len().min(10)]));
        let answer = server
            .call(Method::GET, "/v1/device/logins", bearer, None)
            .await;
        assert_error(
            &answer,
            StatusCode::UNAUTHORIZED,
            "device_not_recognised",
            &what,
        );
        let answer = server
            .call(
                Method::POST,
                &approve,
                bearer,
                Some(json!({ "code": code, "number": number })),
            )
            .await;
        assert_error(
            &answer,
            StatusCode::UNAUTHORIZED,
            "device_not_recognised",
            &what,
        );
        let answer = server
            .call(Method::POST, &deny, bearer, Some(json!({})))
            .await;
        assert_error(
            &answer,
            StatusCode::UNAUTHORIZED,
            "device_not_recognised",
            &what,
        );
    }
    assert_eq!(head(&server).await, before);
    assert_eq!(count_events(&server, "CodeRejected").await, 0);
    assert_still_pending(&server, &id).await;
}

#[tokio::test]
async fn approval_number_out_of_range_is_400_and_not_counted() {
    let server = TestServer::start().await;
    let (phone, id, _) = pending_approval(&server).await;
    let before = head(&server).await;
    let code = phone.code_at(server.now());
    let path = format!("/v1/device/logins/{id}/approve");
    for number in [
        json!(0),
        json!(9),
        json!(100),
        json!(255),
        json!(256),
        json!(-1),
        json!(12.5),
    ] {
        let answer = server
            .post(
                &path,
                phone.token(),
                json!({ "code": code, "number": number }),
            )
            .await;
        assert_error(
            &answer,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("number {number}"),
        );
    }
    assert_eq!(head(&server).await, before);
    assert_eq!(count_events(&server, "CodeRejected").await, 0);
    assert_still_pending(&server, &id).await;
}

#[tokio::test]
async fn wait_seconds_over_thirty_or_not_a_number_is_400_invalid_query() {
    let server = TestServer::start().await;
    let (_, id, _) = pending_approval(&server).await;
    let before = head(&server).await;
    for query in [
        "wait_seconds=31",
        "wait_seconds=3600",
        "wait_seconds=-1",
        "wait_seconds=abc",
        "wait_seconds=1.5",
        "wait=5",
    ] {
        let answer = server
            .get(&format!("/v1/logins/{id}?{query}"), &server.portal_key)
            .await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_query", query);
    }
    // The limit itself is allowed (answered at once here: nothing changes while it waits, so use 0).
    let (status, body) = server
        .get(
            &format!("/v1/logins/{id}?wait_seconds=0"),
            &server.portal_key,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(head(&server).await, before);
}

#[tokio::test]
async fn unknown_path_is_404_not_found_in_json() {
    let server = TestServer::start().await;
    let before = head(&server).await;
    for path in [
        "/",
        "/v1",
        "/v1/nope",
        "/v2/logins",
        "/v1/logins/x/y/z",
        "/v1/device",
    ] {
        let answer = server.get(path, &server.portal_key).await;
        assert_error(&answer, StatusCode::NOT_FOUND, "not_found", path);
        let answer = Raw::new(Method::POST, path)
            .json_text("{}")
            .send(&server)
            .await;
        assert_error(&answer, StatusCode::NOT_FOUND, "not_found", path);
    }
    assert_eq!(head(&server).await, before);
}

#[tokio::test]
async fn wrong_method_is_405_method_not_allowed_in_json() {
    let server = TestServer::start().await;
    let (_, id, _) = pending_approval(&server).await;
    let before = head(&server).await;
    let cases = [
        (Method::GET, "/v1/logins".to_owned()),
        (Method::PUT, "/v1/logins".to_owned()),
        (Method::DELETE, format!("/v1/logins/{id}")),
        (Method::POST, format!("/v1/logins/{id}")),
        (Method::GET, format!("/v1/logins/{id}/code")),
        (Method::GET, "/v1/device/activations".to_owned()),
        (Method::POST, "/v1/device/logins".to_owned()),
        (Method::PATCH, "/v1/accounts/penyedia/vendor1".to_owned()),
        (
            Method::GET,
            "/v1/accounts/penyedia/vendor1/disable".to_owned(),
        ),
        (Method::POST, "/healthz".to_owned()),
    ];
    for (method, path) in &cases {
        let answer = Raw::new(method.clone(), path)
            .bearer(&server.portal_key)
            .json_text("{}")
            .send(&server)
            .await;
        assert_error(
            &answer,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            &format!("{method} {path}"),
        );
    }
    assert_eq!(head(&server).await, before);
    assert_still_pending(&server, &id).await;
}

#[tokio::test]
async fn invalid_client_ip_is_400_invalid_request_and_registers_nobody() {
    let server = TestServer::start().await;
    let before = head(&server).await;
    for ip in [
        "999.1.1.1",
        "not-an-ip",
        "10.0.0.1:8080",
        "10.0.0.1/24",
        "::g",
    ] {
        let answer = server
            .post(
                "/v1/logins",
                &server.portal_key,
                json!({ "user_type": "penyedia", "user_id": "ppk2", "client_ip": ip }),
            )
            .await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_request", ip);
    }
    assert_eq!(head(&server).await, before);
    // Both IP versions are accepted.
    for ip in ["10.1.2.3", "2001:db8::1"] {
        let (status, body) = server
            .post(
                "/v1/logins",
                &server.portal_key,
                json!({ "user_type": "penyedia", "user_id": "ppk2", "client_ip": ip }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{ip}: {body}");
    }
}

#[tokio::test]
async fn email_without_at_sign_is_400_invalid_request_and_registers_nobody() {
    let server = TestServer::start().await;
    let before = head(&server).await;
    let long_email = format!("{}@example.com", "a".repeat(250));
    for email in [
        "ppk1.example.com",
        "ppk1 @example.com",
        "ppk1@exa mple.com",
        long_email.as_str(),
    ] {
        let answer = server
            .post(
                "/v1/logins",
                &server.portal_key,
                json!({ "user_type": "penyedia", "user_id": "ppk2", "email": email }),
            )
            .await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_request", email);
    }
    assert_eq!(head(&server).await, before);
    let answer = server
        .get("/v1/accounts/penyedia/ppk2", &server.portal_key)
        .await;
    assert_error(
        &answer,
        StatusCode::NOT_FOUND,
        "account_not_found",
        "nobody was registered",
    );
}

/// Which of the two 400 codes a broken body gets must depend on whether it is JSON at all, not on
/// how serde_json happens to classify the first error it meets while deserialising straight into
/// the request type.
#[tokio::test]
async fn json_error_code_depends_on_syntax_not_on_the_first_deserialisation_error() {
    let server = TestServer::start().await;
    let before = head(&server).await;
    // Valid JSON, wrong types: invalid_request.
    for body in [
        json!({ "user_type": ["penyedia"], "user_id": "ppk2" }),
        json!({ "user_type": 5, "user_id": "ppk2" }),
        json!({ "user_type": null, "user_id": "ppk2" }),
    ] {
        let answer = server
            .post("/v1/logins", &server.portal_key, body.clone())
            .await;
        assert_error(
            &answer,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &body.to_string(),
        );
    }
    // Not JSON at all: malformed_json.
    for (path, text) in [
        ("/v1/logins", "{\"user_id\": 5, "),
        ("/v1/logins", "[\"penyedia\", 5"),
        ("/v1/device/activations", "[1, 2"),
        ("/v1/device/activations", "{\"enrollment_id\": 1, "),
    ] {
        let answer = Raw::new(Method::POST, path)
            .bearer(&server.portal_key)
            .json_text(text)
            .send(&server)
            .await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "malformed_json", text);
    }
    assert_eq!(head(&server).await, before);
}

/// The schema a `$ref` in the OpenAPI document points to.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("a component reference: {reference}"));
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

fn names(value: &Value) -> std::collections::BTreeSet<String> {
    match value {
        Value::Object(map) => map.keys().cloned().collect(),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().expect("a name").to_owned())
            .collect(),
        _ => Default::default(),
    }
}

/// What the served OpenAPI document says an error answer holds is what error answers hold: every
/// field an answer carries is documented, every documented field is carried by some answer (one
/// per optional field is provoked here), the required ones always are, and every code is listed.
#[tokio::test]
async fn the_documented_error_schema_is_what_error_answers_carry() {
    let server = TestServer::start().await;
    let (status, doc) = server.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let body_schema = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(
        names(&body_schema["properties"]),
        ["error".to_owned()].into(),
        "{body_schema}"
    );
    let detail = resolve(&doc, &body_schema["properties"]["error"]);
    let documented = names(&detail["properties"]);
    let required = names(&detail["required"]);
    let codes = names(&resolve(&doc, &detail["properties"]["code"])["enum"]);
    assert!(
        required.contains("code") && required.contains("message"),
        "{detail}"
    );

    let mut answers = Vec::new();
    // code and message only.
    answers.push((
        "not_found",
        server.get("/v1/nowhere", &server.portal_key).await,
    ));
    // attempts_left, then locked_until.
    let (phone, login_id, _) = pending_approval(&server).await;
    let code_path = format!("/v1/logins/{login_id}/code");
    let mut locked = false;
    for _ in 0..10 {
        let answer = server
            .post(
                &code_path,
                &server.portal_key,
                json!({"code": wrong_code(&phone, server.now())}),
            )
            .await;
        locked = answer.1["error"]["code"] == "account_locked";
        let expected = if locked {
            "account_locked"
        } else {
            "invalid_code"
        };
        answers.push((expected, answer));
        if locked {
            break;
        }
    }
    assert!(locked, "wrong codes lock the account");
    // status.
    server.advance(Duration::hours(2));
    let (_, login) = server.start_login("penyedia", "vendor1").await;
    let login_id = login["login_id"].as_str().expect("a login").to_owned();
    let cancel = format!("/v1/logins/{login_id}/cancel");
    let (status, _) = server.post(&cancel, &server.portal_key, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    answers.push((
        "login_not_pending",
        server.post(&cancel, &server.portal_key, json!({})).await,
    ));
    // field.
    let response = server
        .client
        .post(server.url("/v1/helpdesk/accounts/penyedia/vendor1/unlock"))
        .bearer_auth(&server.helpdesk_key)
        .header("x-operator", "Budi")
        .json(&json!({"reason": "  "}))
        .send()
        .await
        .expect("answered");
    let status = response.status();
    answers.push((
        "invalid_request",
        (status, response.json::<Value>().await.expect("JSON")),
    ));
    // detail: the database gone.
    server.services.db.pool.close().await;
    answers.push((
        "not_ready",
        server.call(Method::GET, "/readyz", None, None).await,
    ));

    let mut carried = std::collections::BTreeSet::new();
    for (expected, (status, body)) in &answers {
        assert!(
            status.is_client_error() || status.is_server_error(),
            "{body}"
        );
        assert_eq!(body["error"]["code"], *expected, "{status} {body}");
        assert_eq!(names(body), ["error".to_owned()].into(), "{body}");
        let fields = names(&body["error"]);
        assert!(
            fields.is_subset(&documented),
            "{body} carries fields the schema does not document: {documented:?}"
        );
        assert!(required.is_subset(&fields), "{body} lacks {required:?}");
        let code = body["error"]["code"].as_str().expect("a code");
        assert!(codes.contains(code), "{code} is not in {codes:?}");
        carried.extend(fields);
    }
    assert_eq!(
        carried, documented,
        "every documented field is carried by some answer"
    );
}
