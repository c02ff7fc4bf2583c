//! FAQ 5: the helpdesk looks an account up, resets it with a reason and a ticket, lifts a lock;
//! each is recorded with the operator. A portal key is refused; nothing secret is ever shown.

use reqwest::StatusCode;
use serde_json::{json, Value};
use spse_totp_tests::resets::{email_of, server_with_outbox, USER_IP};
use spse_totp_tests::{wrong_code, TestServer};

const OPERATOR: &str = "Siti (helpdesk LPSE)";

async fn helpdesk(
    s: &TestServer,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = s
        .client
        .request(method, s.url(path))
        .bearer_auth(key)
        .header("x-operator", OPERATOR);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

const ACCOUNT: &str = "/v1/helpdesk/accounts/non_penyedia/ppk1";

async fn recorded(s: &TestServer, event_type: &str) -> Vec<spse_totp_store::RecordedEvent> {
    s.services
        .db
        .events
        .read_stream("account-non_penyedia-PPK1", 1, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event_type == event_type)
        .collect()
}

#[tokio::test]
async fn the_lookup_shows_status_device_lock_logins_and_reset_requests_but_no_secret() {
    let s = server_with_outbox().await;
    let phone = s.activate_with_email("non_penyedia", "ppk1").await;
    s.request_reset("non_penyedia", "ppk1", &email_of("ppk1"), USER_IP)
        .await;
    let (status, view) = helpdesk(&s, reqwest::Method::GET, ACCOUNT, &s.helpdesk_key, None).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["totp_status"], "active");
    assert_eq!(view["email"], email_of("ppk1"));
    assert_eq!(view["device"]["method"], "code");
    assert_eq!(view["failed_attempts"], 0);
    assert_eq!(view["last_logins"][0]["status"], "approved");
    assert_eq!(view["last_logins"][0]["client_ip"], USER_IP);
    assert_eq!(view["reset_requests"][0]["status"], "pending");
    assert_eq!(view["reset_requests"][0]["client_ip"], USER_IP);
    let text = view.to_string();
    assert!(!text.contains("secret") && !text.contains("token") && !text.contains("otpauth"));
    let base32 = totp_rs::Secret::Raw(phone.secret.clone())
        .to_encoded()
        .to_string();
    assert!(!text.contains(&base32));
    let (status, missing) = helpdesk(
        &s,
        reqwest::Method::GET,
        "/v1/helpdesk/accounts/penyedia/nobody",
        &s.helpdesk_key,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
}

#[tokio::test]
async fn a_helpdesk_reset_is_recorded_with_operator_reason_and_ticket_and_takes_effect() {
    let s = server_with_outbox().await;
    let phone = s.activate_with_email("non_penyedia", "ppk1").await;
    let (status, view) = helpdesk(
        &s,
        reqwest::Method::POST,
        &format!("{ACCOUNT}/reset"),
        &s.helpdesk_key,
        Some(json!({"reason": "HP hilang, email dari alamat terdaftar", "ticket": "HD-2026-0042"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["totp_status"], "inactive");
    assert!(view.get("device").is_none());

    let reset = recorded(&s, "TotpReset").await;
    assert_eq!(reset.len(), 1);
    assert_eq!(reset[0].payload["by"]["kind"], "helpdesk");
    assert_eq!(
        reset[0].payload["by"]["reason"],
        "HP hilang, email dari alamat terdaftar"
    );
    assert_eq!(reset[0].payload["by"]["ticket"], "HD-2026-0042");
    assert_eq!(reset[0].metadata.actor.kind(), "helpdesk");
    assert_eq!(reset[0].metadata.actor.display_name(), OPERATOR);

    // A second reset of an account with nothing active is refused.
    let (status, _) = helpdesk(
        &s,
        reqwest::Method::POST,
        &format!("{ACCOUNT}/reset"),
        &s.helpdesk_key,
        Some(json!({"reason": "again", "ticket": "HD-2"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // The old phone's code no longer approves anything: the next login is an activation.
    let (_, login) = s.start_login("non_penyedia", "ppk1").await;
    assert_eq!(login["status"], "awaiting_activation");
    let login_id = login["login_id"].as_str().unwrap();
    let (status, _) = s
        .post(
            &format!("/v1/logins/{login_id}/code"),
            &s.portal_key,
            json!({"code": phone.code_at(s.now())}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn reason_and_ticket_are_required() {
    let s = server_with_outbox().await;
    s.activate_with_email("non_penyedia", "ppk1").await;
    for body in [
        json!({"reason": "lost phone"}),
        json!({"reason": "lost phone", "ticket": "  "}),
        json!({"reason": "", "ticket": "HD-1"}),
    ] {
        let (status, answer) = helpdesk(
            &s,
            reqwest::Method::POST,
            &format!("{ACCOUNT}/reset"),
            &s.helpdesk_key,
            Some(body),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    }
    assert!(recorded(&s, "TotpReset").await.is_empty());
}

#[tokio::test]
async fn unlock_lifts_the_lock_and_is_recorded_with_operator_and_reason() {
    let s = server_with_outbox().await;
    let phone = s.activate_with_email("non_penyedia", "ppk1").await;
    let (_, login) = s.start_login("non_penyedia", "ppk1").await;
    let login_id = login["login_id"].as_str().unwrap();
    for _ in 0..5 {
        s.post(
            &format!("/v1/logins/{login_id}/code"),
            &s.portal_key,
            json!({"code": wrong_code(&phone, s.now())}),
        )
        .await;
    }
    let (_, view) = helpdesk(&s, reqwest::Method::GET, ACCOUNT, &s.helpdesk_key, None).await;
    assert!(view["locked_until"].is_string(), "{view}");

    let (status, view) = helpdesk(
        &s,
        reqwest::Method::POST,
        &format!("{ACCOUNT}/unlock"),
        &s.helpdesk_key,
        Some(json!({"reason": "verified by phone call"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert!(view.get("locked_until").is_none());
    assert_eq!(view["failed_attempts"], 0);
    let unlocked = recorded(&s, "AccountUnlocked").await;
    assert_eq!(unlocked[0].payload["reason"], "verified by phone call");
    assert_eq!(unlocked[0].metadata.actor.display_name(), OPERATOR);

    // The user can log in again at once.
    s.advance(chrono::Duration::seconds(30));
    let (status, _) = s
        .post(
            &format!("/v1/logins/{login_id}/code"),
            &s.portal_key,
            json!({"code": phone.code_at(s.now())}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, _) = helpdesk(
        &s,
        reqwest::Method::POST,
        &format!("{ACCOUNT}/unlock"),
        &s.helpdesk_key,
        Some(json!({"reason": "again"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "not locked");
}

#[tokio::test]
async fn portal_and_auditor_keys_and_calls_without_an_operator_are_refused() {
    let s = server_with_outbox().await;
    s.activate_with_email("non_penyedia", "ppk1").await;
    for key in [&s.portal_key, &s.auditor_key] {
        for (method, path, body) in [
            (reqwest::Method::GET, ACCOUNT.to_owned(), None),
            (
                reqwest::Method::POST,
                format!("{ACCOUNT}/reset"),
                Some(json!({"reason": "r", "ticket": "t"})),
            ),
            (
                reqwest::Method::POST,
                format!("{ACCOUNT}/unlock"),
                Some(json!({"reason": "r"})),
            ),
        ] {
            let (status, answer) = helpdesk(&s, method, &path, key, body).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {answer}");
        }
    }
    let (status, answer) = s.get(ACCOUNT, &s.helpdesk_key).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["code"], "operator_required");
    assert!(recorded(&s, "TotpReset").await.is_empty());
}

/// The lookup's failure count is the `accounts` table's: two wrong codes show, and the right
/// code after them clears it, while another account's count, left alone, stays.
#[tokio::test]
async fn a_right_code_clears_the_failures_the_lookup_shows() {
    let s = server_with_outbox().await;
    let phone = s.activate_with_email("non_penyedia", "ppk1").await;
    let other = s.activate_with_email("non_penyedia", "ppk2").await;
    let wrong_twice = |user: &'static str, phone: spse_totp_tests::Authenticator| {
        let s = &s;
        async move {
            let (_, login) = s.start_login("non_penyedia", user).await;
            let login_id = login["login_id"].as_str().expect("a login").to_owned();
            for _ in 0..2 {
                let (status, _) = s
                    .post(
                        &format!("/v1/logins/{login_id}/code"),
                        &s.portal_key,
                        json!({"code": wrong_code(&phone, s.now())}),
                    )
                    .await;
                assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
            }
            login_id
        }
    };
    let login_id = wrong_twice("ppk1", phone.clone()).await;
    wrong_twice("ppk2", other).await;
    let failures = |account: &'static str| {
        let s = &s;
        async move {
            let (_, view) = helpdesk(s, reqwest::Method::GET, account, &s.helpdesk_key, None).await;
            view["failed_attempts"].clone()
        }
    };
    assert_eq!(failures(ACCOUNT).await, 2);

    s.advance(chrono::Duration::seconds(30));
    let (status, body) = s
        .post(
            &format!("/v1/logins/{login_id}/code"),
            &s.portal_key,
            json!({"code": phone.code_at(s.now())}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(failures(ACCOUNT).await, 0);
    assert_eq!(failures("/v1/helpdesk/accounts/non_penyedia/ppk2").await, 2);
}
