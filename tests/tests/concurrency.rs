//! Concurrency over real HTTP: many requests for one account at the same instant must leave the
//! rules exact (a code is accepted once, the failure count locks at the limit, one device per
//! account), and requests for different accounts must not get in each other's way.

use std::collections::BTreeMap;

use chrono::Duration;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};
use spse_totp_store::RecordedEvent;
use spse_totp_tests::{wrong_code, Authenticator, TestServer};

/// The default `max_failed_attempts`.
const LIMIT: usize = 5;

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

async fn all_events(server: &TestServer) -> Vec<RecordedEvent> {
    server
        .services
        .db
        .events
        .read_all(0, 1_000_000)
        .await
        .unwrap()
}

/// Events of `event_type` in the account's stream.
async fn count_in_stream(server: &TestServer, stream: &str, event_type: &str) -> usize {
    all_events(server)
        .await
        .iter()
        .filter(|e| e.stream == stream && e.event_type == event_type)
        .count()
}

/// Events of `event_type` whose payload names `login_id`.
async fn count_for_login(server: &TestServer, login_id: &str, event_type: &str) -> usize {
    all_events(server)
        .await
        .iter()
        .filter(|e| e.event_type == event_type && e.payload["login_id"] == login_id)
        .count()
}

/// An account activated by the push-capable app, and a login (after the next step) waiting for
/// its approval: the phone, the login id and its approval number.
async fn pending_approval(server: &TestServer, user_id: &str) -> (Authenticator, String, u64) {
    let (phone, _) = server.activate_by_device("penyedia", user_id).await;
    server.advance(Duration::seconds(30));
    let (status, login) = server.start_login("penyedia", user_id).await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    assert_eq!(login["status"], "awaiting_approval");
    let id = login["login_id"].as_str().unwrap().to_owned();
    let number = login["approval_number"].as_u64().unwrap();
    (phone, id, number)
}

fn stream_of(user_type: &str, user_id: &str) -> String {
    format!("account-{user_type}-{}", user_id.to_ascii_uppercase())
}

/// Checks the answers to a burst of wrong codes against one account: exactly
/// `max_failed_attempts - 1` are 422 with attempts_left counting down 4, 3, 2, 1 (once each), the
/// rest are 423, and nothing is a 5xx.
fn assert_lock_answers(answers: &[(StatusCode, Value)]) {
    let mut attempts_left = Vec::new();
    let mut locked = 0;
    for (status, body) in answers {
        assert!(!status.is_server_error(), "{status} {body}");
        match *status {
            StatusCode::UNPROCESSABLE_ENTITY => {
                assert_eq!(error_code(body), "invalid_code", "{body}");
                attempts_left.push(body["error"]["attempts_left"].as_u64().unwrap());
            }
            StatusCode::LOCKED => {
                assert_eq!(error_code(body), "account_locked", "{body}");
                assert!(body["error"]["locked_until"].is_string(), "{body}");
                locked += 1;
            }
            other => panic!("unexpected answer {other}: {body}"),
        }
    }
    assert!(attempts_left.len() <= LIMIT, "{attempts_left:?}");
    attempts_left.sort_unstable();
    assert_eq!(attempts_left, vec![1, 2, 3, 4], "attempts_left values seen");
    assert_eq!(locked, answers.len() - attempts_left.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_parallel_submissions_of_one_valid_code_approve_exactly_once() {
    let server = TestServer::start().await;
    let (phone, _) = server.activate_by_code("non_penyedia", "ppk1").await;
    server.advance(Duration::seconds(30));
    let (status, login) = server.start_login("non_penyedia", "ppk1").await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    let id = login["login_id"].as_str().unwrap().to_owned();
    let code = phone.code_at(server.now());
    let path = format!("/v1/logins/{id}/code");

    let answers =
        join_all((0..20).map(|_| server.post(&path, &server.portal_key, json!({ "code": code }))))
            .await;

    let mut approved = 0;
    for (status, body) in &answers {
        assert!(!status.is_server_error(), "{status} {body}");
        match *status {
            StatusCode::OK => {
                assert_eq!(body["status"], "approved", "{body}");
                assert_eq!(body["method"], "code", "{body}");
                approved += 1;
            }
            StatusCode::CONFLICT => assert_eq!(error_code(body), "login_not_pending", "{body}"),
            StatusCode::UNPROCESSABLE_ENTITY => {
                assert_eq!(error_code(body), "invalid_code", "{body}")
            }
            other => panic!("unexpected answer {other}: {body}"),
        }
    }
    assert_eq!(approved, 1, "{answers:?}");
    assert_eq!(count_for_login(&server, &id, "LoginApproved").await, 1);
    let (status, view) = server
        .get(&format!("/v1/logins/{id}"), &server.portal_key)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["status"], "approved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_parallel_wrong_codes_lock_the_account_after_exactly_five_failures() {
    let server = TestServer::start().await;
    let (phone, _) = server.activate_by_code("non_penyedia", "ppk1").await;
    server.advance(Duration::seconds(30));
    let (status, login) = server.start_login("non_penyedia", "ppk1").await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    let id = login["login_id"].as_str().unwrap().to_owned();
    let wrong = wrong_code(&phone, server.now());
    let path = format!("/v1/logins/{id}/code");

    let answers =
        join_all((0..50).map(|_| server.post(&path, &server.portal_key, json!({ "code": wrong }))))
            .await;

    assert_lock_answers(&answers);
    let stream = stream_of("non_penyedia", "ppk1");
    assert_eq!(
        count_in_stream(&server, &stream, "CodeRejected").await,
        LIMIT
    );
    assert_eq!(count_in_stream(&server, &stream, "AccountLocked").await, 1);
    // Locked means locked: even the right code is refused now.
    let (status, body) = server
        .post(
            &path,
            &server.portal_key,
            json!({ "code": phone.code_at(server.now()) }),
        )
        .await;
    assert_eq!(status, StatusCode::LOCKED, "{body}");
    assert_eq!(count_for_login(&server, &id, "LoginApproved").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_codes_split_between_typed_code_and_device_approval_share_one_failure_count() {
    let server = TestServer::start().await;
    let (phone, id, number) = pending_approval(&server, "vendor1").await;
    let wrong = wrong_code(&phone, server.now());
    let typed_path = format!("/v1/logins/{id}/code");
    let device_path = format!("/v1/device/logins/{id}/approve");

    let requests = (0..50).map(|i| {
        let (path, bearer, body) = if i % 2 == 0 {
            (
                &typed_path,
                server.portal_key.as_str(),
                json!({ "code": wrong }),
            )
        } else {
            (
                &device_path,
                phone.token(),
                json!({ "code": wrong, "number": number }),
            )
        };
        server.post(path, bearer, body)
    });
    let answers = join_all(requests).await;

    assert_lock_answers(&answers);
    let stream = stream_of("penyedia", "vendor1");
    assert_eq!(
        count_in_stream(&server, &stream, "CodeRejected").await,
        LIMIT
    );
    assert_eq!(count_in_stream(&server, &stream, "AccountLocked").await, 1);
    assert_eq!(count_for_login(&server, &id, "LoginApproved").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_devices_racing_to_activate_one_enrollment_leave_exactly_one_binding() {
    let server = TestServer::start().await;
    let (status, login) = server.start_login("penyedia", "vendor1").await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    let phone = Authenticator::scan(&login);
    let code = phone.code_at(server.now());

    let answers = join_all((0..20).map(|i| {
        server.call(
            reqwest::Method::POST,
            "/v1/device/activations",
            None,
            Some(json!({
                "enrollment_id": phone.enrollment_id,
                "code": code,
                "device_label": format!("Phone {i}"),
                "platform": "android"
            })),
        )
    }))
    .await;

    let mut winners = Vec::new();
    for (status, body) in &answers {
        assert!(!status.is_server_error(), "{status} {body}");
        match *status {
            StatusCode::CREATED => winners.push(body.clone()),
            StatusCode::CONFLICT => assert_eq!(error_code(body), "totp_already_active", "{body}"),
            other => panic!("unexpected answer {other}: {body}"),
        }
    }
    assert_eq!(winners.len(), 1, "{answers:?}");
    let winner = &winners[0];

    let stream = stream_of("penyedia", "vendor1");
    let bindings: Vec<(String,)> =
        sqlx::query_as("SELECT label FROM device_bindings WHERE stream = $1")
            .bind(&stream)
            .fetch_all(&server.services.db.pool)
            .await
            .unwrap();
    assert_eq!(bindings.len(), 1, "{bindings:?}");
    assert_eq!(bindings[0].0, winner["device"]["label"].as_str().unwrap());
    assert_eq!(count_in_stream(&server, &stream, "TotpActivated").await, 1);

    // The winner's token is the account's device.
    let token = winner["device_token"].as_str().unwrap();
    let (status, body) = server.get("/v1/device/logins", token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "VENDOR1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_accounts_activate_and_approve_in_parallel_without_blocking_each_other() {
    const ACCOUNTS: usize = 30;
    let server = TestServer::start().await;
    let users: Vec<String> = (0..ACCOUNTS).map(|i| format!("user{i:02}")).collect();

    // Thirty logins start at once, each showing a QR code.
    let started = join_all(users.iter().map(|u| server.start_login("penyedia", u))).await;
    let phones: Vec<Authenticator> = started
        .iter()
        .map(|(status, login)| {
            assert_eq!(*status, StatusCode::CREATED, "{login}");
            assert_eq!(login["status"], "awaiting_activation", "{login}");
            Authenticator::scan(login)
        })
        .collect();

    // Thirty phones activate at once.
    let activations = join_all(phones.iter().enumerate().map(|(i, phone)| {
        server.call(
            reqwest::Method::POST,
            "/v1/device/activations",
            None,
            Some(json!({
                "enrollment_id": phone.enrollment_id,
                "code": phone.code_at(server.now()),
                "device_label": format!("Phone of user {i}"),
            })),
        )
    }))
    .await;
    let tokens: Vec<String> = activations
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, StatusCode::CREATED, "{body}");
            body["device_token"].as_str().unwrap().to_owned()
        })
        .collect();

    server.advance(Duration::seconds(30));
    let logins = join_all(users.iter().map(|u| server.start_login("penyedia", u))).await;
    let pending: Vec<(String, u64)> = logins
        .iter()
        .map(|(status, login)| {
            assert_eq!(*status, StatusCode::CREATED, "{login}");
            assert_eq!(login["status"], "awaiting_approval", "{login}");
            (
                login["login_id"].as_str().unwrap().to_owned(),
                login["approval_number"].as_u64().unwrap(),
            )
        })
        .collect();

    // Thirty approvals from thirty devices at once, on separate tasks.
    let now = server.now();
    let handles: Vec<_> = phones
        .iter()
        .zip(&tokens)
        .zip(&pending)
        .map(|((phone, token), (id, number))| {
            let request = server
                .client
                .post(server.url(&format!("/v1/device/logins/{id}/approve")))
                .bearer_auth(token)
                .json(&json!({ "code": phone.code_at(now), "number": number }));
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                let status = response.status();
                (status, response.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let approvals: Vec<(StatusCode, Value)> = join_all(handles)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    for (status, body) in &approvals {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "approved", "{body}");
        assert_eq!(body["method"], "device", "{body}");
    }

    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    for event in all_events(&server).await {
        *by_type.entry(event.event_type).or_default() += 1;
    }
    assert_eq!(by_type.get("TotpActivated"), Some(&ACCOUNTS), "{by_type:?}");
    // One approval completes each activation's login, one more each device approval.
    assert_eq!(
        by_type.get("LoginApproved"),
        Some(&(2 * ACCOUNTS)),
        "{by_type:?}"
    );
    assert_eq!(by_type.get("CodeRejected"), None, "{by_type:?}");
    let (bindings,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM device_bindings")
        .fetch_one(&server.services.db.pool)
        .await
        .unwrap();
    assert_eq!(bindings, ACCOUNTS as i64);
}
