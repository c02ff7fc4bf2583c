//! Issue 13, section 2: the lockout ends somewhere, and each refusal says what happened.

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{json, Value};
use spse_totp_tests::{wrong_code, Authenticator, TestServer};

const NP: &str = "non_penyedia";

fn code_of(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

async fn type_code(s: &TestServer, login_id: &str, code: &str) -> reqwest::Response {
    s.client
        .post(s.url(&format!("/v1/logins/{login_id}/code")))
        .bearer_auth(&s.portal_key)
        .json(&json!({ "code": code }))
        .send()
        .await
        .expect("answered")
}

/// A new login for ppk1 and five wrong codes: the last answer.
async fn five_wrong(s: &TestServer, phone: &Authenticator) -> reqwest::Response {
    let (status, login) = s.start_login(NP, "ppk1").await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    let id = login["login_id"].as_str().expect("id").to_owned();
    for _ in 0..4 {
        let response = type_code(s, &id, &wrong_code(phone, s.now())).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    type_code(s, &id, &wrong_code(phone, s.now())).await
}

async fn helpdesk(
    s: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = s
        .client
        .request(method, s.url(path))
        .bearer_auth(&s.helpdesk_key)
        .header("x-operator", "Siti (helpdesk LPSE)");
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("answered");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn after_max_locks_in_a_row_only_a_helpdesk_unlock_ends_the_lock() {
    let s = TestServer::start_with(|c| c.policy.max_locks = 2).await;
    let (phone, _) = s.activate_by_code(NP, "ppk1").await;
    s.advance(Duration::seconds(30));

    let first = five_wrong(&s, &phone).await;
    assert_eq!(first.status(), StatusCode::LOCKED);
    let body: Value = first.json().await.expect("json");
    assert_eq!(code_of(&body), "account_locked");

    s.advance(Duration::minutes(16));
    let second = five_wrong(&s, &phone).await;
    assert_eq!(second.status(), StatusCode::LOCKED);
    assert!(second.headers().get("retry-after").is_none());
    let body: Value = second.json().await.expect("json");
    assert_eq!(code_of(&body), "locked_until_unlock", "{body}");

    // Long after the second lock would have ended, nothing gets in.
    s.advance(Duration::days(3));
    let (status, body) = s.start_login(NP, "ppk1").await;
    assert_eq!(
        (status, code_of(&body)),
        (StatusCode::LOCKED, "locked_until_unlock")
    );
    let (_, account) = s.get("/v1/accounts/non_penyedia/ppk1", &s.portal_key).await;
    assert_eq!(account["locked_until_unlock"], true, "{account}");
    let path = "/v1/helpdesk/accounts/non_penyedia/ppk1";
    let (_, view) = helpdesk(&s, reqwest::Method::GET, path, None).await;
    assert_eq!(view["locked_until_unlock"], true, "{view}");

    let (status, view) = helpdesk(
        &s,
        reqwest::Method::POST,
        &format!("{path}/unlock"),
        Some(json!({"reason": "owner verified by phone"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert!(view.get("locked_until_unlock").is_none(), "{view}");
    let (status, login) = s.start_login(NP, "ppk1").await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    let id = login["login_id"].as_str().expect("id").to_owned();
    let response = type_code(&s, &id, &phone.code_at(s.now())).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_used_code_is_told_apart_and_counted() {
    let s = TestServer::start().await;
    let (phone, _) = s.activate_by_code(NP, "ppk1").await;
    s.advance(Duration::seconds(30));
    let code = phone.code_at(s.now());
    let (_, first) = s.start_login(NP, "ppk1").await;
    let first = first["login_id"].as_str().expect("id").to_owned();
    assert_eq!(type_code(&s, &first, &code).await.status(), StatusCode::OK);
    let (_, second) = s.start_login(NP, "ppk1").await;
    let second = second["login_id"].as_str().expect("id").to_owned();
    let response = type_code(&s, &second, &code).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.expect("json");
    assert_eq!(code_of(&body), "code_already_used", "{body}");
    assert_eq!(body["error"]["attempts_left"], 4, "counted as a failure");
    let response = type_code(&s, &second, &wrong_code(&phone, s.now())).await;
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        (code_of(&body), &body["error"]["attempts_left"]),
        ("invalid_code", &json!(3))
    );
}

#[tokio::test]
async fn an_approval_without_the_number_is_a_400_and_not_counted() {
    let s = TestServer::start().await;
    let (phone, _) = s.activate_by_device(NP, "ppk1").await;
    s.advance(Duration::seconds(30));
    let (_, login) = s.start_login(NP, "ppk1").await;
    let id = login["login_id"].as_str().expect("id").to_owned();
    let shown = login["approval_number"].clone();
    let approve = |body: Value| {
        let s = &s;
        let path = format!("/v1/device/logins/{id}/approve");
        let token = phone.token().to_owned();
        async move { s.post(&path, &token, body).await }
    };
    for _ in 0..6 {
        let (status, body) = approve(json!({"code": phone.code_at(s.now())})).await;
        assert_eq!(
            (status, code_of(&body)),
            (StatusCode::BAD_REQUEST, "number_required"),
            "{body}"
        );
    }
    let (_, account) = s.get("/v1/accounts/non_penyedia/ppk1", &s.portal_key).await;
    assert!(
        account.get("locked_until").is_none(),
        "not counted: {account}"
    );
    let (status, body) = approve(json!({"code": phone.code_at(s.now()), "number": shown})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn an_expired_qr_code_answers_410_also_after_the_sweeps() {
    let s = TestServer::start().await;
    let (status, login) = s.start_login(NP, "ppk1").await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    let phone = Authenticator::scan(&login);
    s.advance(Duration::minutes(11));
    // The sweeps record the login as expired and destroy the QR code's secret.
    spse_totp_api::housekeeping::sweep(&s.services)
        .await
        .expect("sweep");
    let secrets: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM vault_secrets")
        .fetch_one(&s.services.db.pool)
        .await
        .expect("count");
    assert_eq!(secrets, 0, "the sweep destroyed the secret");
    for _ in 0..2 {
        let (status, body) = s
            .call(
                reqwest::Method::POST,
                "/v1/device/activations",
                None,
                Some(json!({
                    "enrollment_id": phone.enrollment_id,
                    "code": phone.code_at(s.now()),
                    "device_label": "Late phone",
                })),
            )
            .await;
        assert_eq!(
            (status, code_of(&body)),
            (StatusCode::GONE, "enrollment_expired"),
            "{body}"
        );
        s.advance(Duration::days(30));
    }
    // An id never handed out is still unknown.
    let (status, body) = s
        .call(
            reqwest::Method::POST,
            "/v1/device/activations",
            None,
            Some(json!({
                "enrollment_id": uuid::Uuid::now_v7().to_string(),
                "code": "123456",
                "device_label": "Stranger",
            })),
        )
        .await;
    assert_eq!(
        (status, code_of(&body)),
        (StatusCode::NOT_FOUND, "enrollment_not_found"),
        "{body}"
    );
}

#[tokio::test]
async fn the_openapi_document_carries_the_new_contract() {
    let s = TestServer::start().await;
    let (status, doc) = s
        .call(reqwest::Method::GET, "/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let text = doc.to_string();
    for code in [
        "code_already_used",
        "number_required",
        "locked_until_unlock",
        "enrollment_expired",
    ] {
        assert!(
            text.contains(&format!("\"{code}\"")),
            "{code} is not listed"
        );
    }
    let schemas = &doc["components"]["schemas"];
    for field in ["client_ip", "user_agent"] {
        assert!(
            schemas["CodeRequest"]["properties"].get(field).is_some(),
            "CodeRequest.{field}"
        );
        assert!(
            schemas["CancelRequest"]["properties"].get(field).is_some(),
            "CancelRequest.{field}"
        );
    }
    assert!(schemas["AccountView"]["properties"]
        .get("locked_until_unlock")
        .is_some());
}
