//! End-to-end flows over real HTTP: the user guide's flow 1 (activation) and flow 2 (login
//! approval), FAQ rules 1-4, and the rules of DESIGN.md that a user or the portal relies on.
//! Every test runs its own service (own SQLite file, own test clock) on an ephemeral port.

use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use spse_totp_tests::{wrong_code, Authenticator, TestServer};

const NP: &str = "non_penyedia";

// ---------------------------------------------------------------------------------------------
// Helpers: each one is a single call of the contract, so the tests read as the flows do.
// ---------------------------------------------------------------------------------------------

fn login_id(login: &Value) -> String {
    login["login_id"]
        .as_str()
        .unwrap_or_else(|| panic!("a login_id in {login}"))
        .to_owned()
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("an error body, got {body}"))
}

/// Moves the clock to the next 30-second step, so a fresh code is not a replay.
fn next_step(server: &TestServer) {
    server.advance(Duration::seconds(30));
}

/// A number shown by the portal that is certainly not the one shown (numbers are 10..=99).
fn other_number(shown: u64) -> u64 {
    if shown >= 99 {
        10
    } else {
        shown + 1
    }
}

async fn status_of(server: &TestServer, id: &str) -> Value {
    let (status, body) = server
        .get(&format!("/v1/logins/{id}"), &server.portal_key)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn account(server: &TestServer, user_type: &str, user_id: &str) -> Value {
    let (status, body) = server
        .get(
            &format!("/v1/accounts/{user_type}/{user_id}"),
            &server.portal_key,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The portal relays a code the user typed.
async fn type_code(server: &TestServer, id: &str, code: &str) -> (StatusCode, Value) {
    server
        .post(
            &format!("/v1/logins/{id}/code"),
            &server.portal_key,
            json!({ "code": code }),
        )
        .await
}

/// The push-capable app scans a QR code and calls back.
async fn activate_device(
    server: &TestServer,
    enrollment_id: &str,
    code: &str,
) -> (StatusCode, Value) {
    server
        .call(
            reqwest::Method::POST,
            "/v1/device/activations",
            None,
            Some(json!({
                "enrollment_id": enrollment_id,
                "code": code,
                "device_label": "Pixel 7",
                "platform": "android"
            })),
        )
        .await
}

async fn device_logins(server: &TestServer, token: &str) -> (StatusCode, Value) {
    server.get("/v1/device/logins", token).await
}

/// "Deny" on the device: the user did not start this login.
async fn device_deny(server: &TestServer, phone: &Authenticator, id: &str) -> (StatusCode, Value) {
    server
        .post(
            &format!("/v1/device/logins/{id}/deny"),
            phone.token(),
            json!({}),
        )
        .await
}

/// "Authorize Login" on the device, with the number read off the portal.
async fn device_approve(
    server: &TestServer,
    phone: &Authenticator,
    id: &str,
    body: Value,
) -> (StatusCode, Value) {
    server
        .post(
            &format!("/v1/device/logins/{id}/approve"),
            phone.token(),
            body,
        )
        .await
}

/// Starts a login of an active account and approves it from the device, as in flow 2.
async fn login_approved_on_device(
    server: &TestServer,
    phone: &Authenticator,
    user_id: &str,
) -> String {
    let (status, login) = server.start_login(NP, user_id).await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    assert_eq!(login["status"], "awaiting_approval", "{login}");
    let id = login_id(&login);
    let (status, body) = device_approve(
        server,
        phone,
        &id,
        json!({"code": phone.code_at(server.now()), "number": login["approval_number"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "approved");
    id
}

/// Full response, for the headers (`Retry-After`).
async fn post_raw(server: &TestServer, path: &str, body: Value) -> reqwest::Response {
    server
        .client
        .post(server.url(path))
        .bearer_auth(&server.portal_key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn retry_after(response: &reqwest::Response) -> i64 {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn instant(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .unwrap_or_else(|| panic!("an RFC 3339 instant, got {value}"))
        .parse()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Flow 1: activation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn activation_by_typed_code_shows_a_standard_qr_and_completes_the_login() {
    let server = TestServer::start().await;
    let (status, login) = server.start_login(NP, "ppk1").await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    assert_eq!(login["status"], "awaiting_activation");
    assert_eq!(login["account"]["user_type"], NP);
    assert_eq!(login["account"]["user_id"], "PPK1");
    assert_eq!(login["account"]["totp_status"], "inactive");
    assert!(login.get("approval_number").is_none(), "{login}");
    assert!(instant(&login["expires_at"]) > server.now());

    let activation = &login["activation"];
    let enrollment_id = activation["enrollment_id"].as_str().unwrap();
    let uri = url::Url::parse(activation["otpauth_uri"].as_str().unwrap()).unwrap();
    assert_eq!(uri.scheme(), "otpauth");
    assert_eq!(uri.host_str(), Some("totp"));
    assert!(uri.path().contains("PPK1"), "{uri}");
    let param = |name: &str| {
        uri.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let secret = param("secret").expect("a secret parameter");
    let secret_bytes = totp_rs::Secret::Encoded(secret).to_bytes().unwrap();
    assert_eq!(secret_bytes.len(), 20, "a 160-bit secret by default");
    assert_eq!(param("issuer").as_deref(), Some("SPSE"));
    if let Some(algorithm) = param("algorithm") {
        assert_eq!(algorithm, "SHA1");
    }
    if let Some(digits) = param("digits") {
        assert_eq!(digits, "6");
    }
    if let Some(period) = param("period") {
        assert_eq!(period, "30");
    }
    assert_eq!(param("enrollment_id").as_deref(), Some(enrollment_id));
    assert_eq!(param("server").as_deref(), Some(server.base.as_str()));
    let svg = activation["qr_svg"].as_str().unwrap();
    assert!(svg.contains("<svg"), "an SVG QR code");

    // The user types the app's first code into the portal.
    let phone = Authenticator::scan(&login);
    let id = login_id(&login);
    let (status, body) = type_code(&server, &id, &phone.code_at(server.now())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "approved");
    assert_eq!(body["method"], "code");

    let view = status_of(&server, &id).await;
    assert_eq!(view["status"], "approved");
    assert_eq!(view["method"], "code");
    assert_eq!(instant(&view["decided_at"]), server.now());

    let acc = account(&server, NP, "ppk1").await;
    assert_eq!(acc["totp_status"], "active");
    assert_eq!(acc["user_id"], "PPK1");
    assert_eq!(acc["device"]["method"], "code");
    assert!(acc.get("locked_until").is_none(), "{acc}");
}

#[tokio::test]
async fn activation_by_device_returns_a_token_and_approves_the_login_that_showed_the_qr() {
    let server = TestServer::start().await;
    let (status, login) = server.start_login(NP, "ppk1").await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    let phone = Authenticator::scan(&login);
    let id = login_id(&login);
    assert_eq!(phone.enrollment_id, login["activation"]["enrollment_id"]);
    assert_eq!(phone.server, server.base);

    let (status, body) =
        activate_device(&server, &phone.enrollment_id, &phone.code_at(server.now())).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["device_token"].as_str().unwrap();
    assert!(!token.is_empty());
    assert_eq!(body["account"]["user_type"], NP);
    assert_eq!(body["account"]["user_id"], "PPK1");
    assert_eq!(body["account"]["totp_status"], "active");
    assert_eq!(body["device"]["label"], "Pixel 7");

    let view = status_of(&server, &id).await;
    assert_eq!(view["status"], "approved", "activation completes the login");
    assert_eq!(view["method"], "device");

    let acc = account(&server, NP, "PPK1").await;
    assert_eq!(acc["totp_status"], "active");
    assert_eq!(acc["device"]["label"], "Pixel 7");
    assert_eq!(acc["device"]["platform"], "android");
    assert_eq!(acc["device"]["method"], "device");
    assert_eq!(instant(&acc["device"]["activated_at"]), server.now());

    // The token works on the device endpoints at once.
    let (status, list) = device_logins(&server, token).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["user_id"], "PPK1");
    assert_eq!(list["logins"], json!([]));
}

// ---------------------------------------------------------------------------------------------
// Flow 2: login after activation
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_approved_on_device_is_listed_without_the_number_and_wakes_a_waiting_poll() {
    let server = TestServer::start().await;
    let (phone, _) = server.activate_by_device(NP, "ppk1").await;
    next_step(&server);

    let (status, login) = server.start_login(NP, "ppk1").await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    assert_eq!(login["status"], "awaiting_approval");
    assert_eq!(login["account"]["totp_status"], "active");
    assert!(login.get("activation").is_none(), "no QR code: {login}");
    let number = login["approval_number"]
        .as_u64()
        .expect("an approval number");
    assert!((10..=99).contains(&number), "two digits: {number}");
    let id = login_id(&login);

    // The phone lists it, with where it came from, but not the number the user must read.
    let (status, list) = device_logins(&server, phone.token()).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let logins = list["logins"].as_array().unwrap();
    assert_eq!(logins.len(), 1, "{list}");
    assert_eq!(logins[0]["login_id"], id.as_str());
    assert_eq!(logins[0]["client_ip"], "10.20.30.40");
    assert_eq!(logins[0]["user_agent"], "Firefox/128");
    assert!(logins[0].get("approval_number").is_none(), "{list}");
    assert!(logins[0].get("number").is_none(), "{list}");

    // The portal's page long-polls before the user taps "yes".
    let client = server.client.clone();
    let url = server.url(&format!("/v1/logins/{id}?wait_seconds=10"));
    let key = server.portal_key.clone();
    let poll = tokio::spawn(async move {
        let started = Instant::now();
        let response = client.get(url).bearer_auth(key).send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        (status, body, started.elapsed())
    });
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    assert!(!poll.is_finished(), "the poll waits while nothing changes");

    let (status, body) = device_approve(
        &server,
        &phone,
        &id,
        json!({"code": phone.code_at(server.now()), "number": number}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "approved");
    assert_eq!(body["method"], "device");

    let (status, polled, waited) = tokio::time::timeout(StdDuration::from_secs(15), poll)
        .await
        .expect("the poll answers")
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{polled}");
    assert_eq!(polled["status"], "approved");
    assert_eq!(polled["method"], "device");
    assert!(
        waited < StdDuration::from_secs(5),
        "the poll returned when the device approved, not at its deadline: {waited:?}"
    );

    // Nothing is left waiting on the phone.
    let (_, list) = device_logins(&server, phone.token()).await;
    assert_eq!(list["logins"], json!([]));
}

#[tokio::test]
async fn login_approved_by_typed_code_reports_method_code() {
    let server = TestServer::start().await;
    let (phone, _) = server.activate_by_device(NP, "ppk1").await;
    next_step(&server);
    let (_, login) = server.start_login(NP, "ppk1").await;
    let id = login_id(&login);
    let (status, body) = type_code(&server, &id, &phone.code_at(server.now())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "approved");
    assert_eq!(body["method"], "code");
    assert!(body.get("approval_number").is_none(), "{body}");
    let view = status_of(&server, &id).await;
    assert_eq!(view["status"], "approved");
    assert_eq!(view["method"], "code");
}

#[tokio::test]
async fn a_login_denied_on_the_device_is_denied_and_cannot_be_approved_afterwards() {
    let server = TestServer::start().await;
    let (phone, _) = server.activate_by_device(NP, "ppk1").await;
    next_step(&server);
    let (_, login) = server.start_login(NP, "ppk1").await;
    let id = login_id(&login);

    let (status, body) = device_deny(&server, &phone, &id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "denied");
    let view = status_of(&server, &id).await;
    assert_eq!(view["status"], "denied");
    assert!(view.get("decided_at").is_some(), "{view}");

    let (status, body) = type_code(&server, &id, &phone.code_at(server.now())).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "login_not_pending");
    assert_eq!(body["error"]["status"], "denied");
    let (status, body) = device_approve(
        &server,
        &phone,
        &id,
        json!({"code": phone.code_at(server.now()), "number": login["approval_number"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(status_of(&server, &id).await["status"], "denied");
}

#[tokio::test]
async fn a_login_cancelled_by_the_portal_refuses_a_later_code() {
    let server = TestServer::start().await;
    let (phone, _) = server.activate_by_code(NP, "ppk1").await;
    next_step(&server);
    let (_, login) = server.start_login(NP, "ppk1").await;
    let id = login_id(&login);

    let (status, body) = server
        .post(
            &format!("/v1/logins/{id}/cancel"),
            &server.portal_key,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "cancelled");
    assert_eq!(status_of(&server, &id).await["status"], "cancelled");

    let (status, body) = type_code(&server, &id, &phone.code_at(server.now())).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "login_not_pending");
    assert_eq!(body["error"]["status"], "cancelled");
    assert_eq!(status_of(&server, &id).await["status"], "cancelled");

    // The refused code was not spent: the next login accepts it.
    let (_, next) = server.start_login(NP, "ppk1").await;
    let (status, body) = type_code(&server, &login_id(&next), &phone.code_at(server.now())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_wrong_approval_number_is_refused_and_counted_a_missing_one_refused_uncounted() {
    let server = TestServer::start().await;
    let (phone, _) = server.activate_by_device(NP, "ppk1").await;
    next_step(&server);
    let (_, login) = server.start_login(NP, "ppk1").await;
    let id = login_id(&login);
    let shown = login["approval_number"].as_u64().unwrap();
    let code = phone.code_at(server.now());

    let (status, body) = device_approve(
        &server,
        &phone,
        &id,
        json!({"code": code, "number": other_number(shown)}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_code(&body), "invalid_code");
    assert_eq!(body["error"]["attempts_left"], 4);

    // Issue 13: a missing number is the app's mistake, not a guess: 400, not counted.
    let (status, body) = device_approve(&server, &phone, &id, json!({"code": code})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "number_required");
    let (status, body) = device_approve(
        &server,
        &phone,
        &id,
        json!({"code": code, "number": other_number(shown)}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["attempts_left"], 3);

    assert_eq!(status_of(&server, &id).await["status"], "awaiting_approval");
    // The right number with the same code still works: a refusal spends no code.
    let (status, body) =
        device_approve(&server, &phone, &id, json!({"code": code, "number": shown})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "approved");
}

// ---------------------------------------------------------------------------------------------
// Expiry (test clock)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_pending_login_expires_after_ten_minutes_and_the_sweep_records_it() {
    let server = TestServer::start().await;
    let (phone, _) = server.activate_by_device(NP, "ppk1").await;
    next_step(&server);
    let (_, first) = server.start_login(NP, "ppk1").await;
    let (_, second) = server.start_login(NP, "ppk1").await;
    let (first, second) = (login_id(&first), login_id(&second));
    let (_, list) = device_logins(&server, phone.token()).await;
    assert_eq!(list["logins"].as_array().unwrap().len(), 2, "{list}");

    server.advance(Duration::minutes(11));
    let view = status_of(&server, &first).await;
    assert_eq!(view["status"], "expired");
    assert!(view.get("approval_number").is_none(), "{view}");
    let (status, list) = device_logins(&server, phone.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["logins"], json!([]), "expired logins are not offered");

    // A code for an expired login: 410, whether or not the sweep has run.
    let (status, body) = type_code(&server, &second, &phone.code_at(server.now())).await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert_eq!(error_code(&body), "login_expired");

    // The sweep records the one nobody touched.
    let swept = spse_totp_api::housekeeping::sweep(&server.services)
        .await
        .unwrap();
    assert_eq!(swept, 1, "one account had an overdue login");
    let mut stored: Vec<(String, String)> = Vec::new();
    for id in [&first, &second] {
        // The stored status, not the one read as of now (which says expired without the sweep).
        if let Some(row) = spse_totp_projections::login_sessions::get(
            &server.services.db.pool,
            id.parse().unwrap(),
        )
        .await
        .unwrap()
        {
            stored.push((row.login_id, row.status));
        }
    }
    assert_eq!(stored.len(), 2);
    assert!(
        stored.iter().all(|(_, s)| s == "expired"),
        "both recorded as expired: {stored:?}"
    );
    let expired_events: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM event_rows WHERE event_type = 'LoginExpired'")
            .fetch_one(&server.services.db.pool)
            .await
            .unwrap();
    assert_eq!(expired_events, 2, "each expiry recorded exactly once");
    assert_eq!(status_of(&server, &first).await["status"], "expired");
    assert_eq!(status_of(&server, &second).await["status"], "expired");
    let (_, list) = device_logins(&server, phone.token()).await;
    assert_eq!(list["logins"], json!([]));
    let (status, body) = type_code(&server, &first, &phone.code_at(server.now())).await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert_eq!(error_code(&body), "login_expired");
    let (status, body) = device_approve(
        &server,
        &phone,
        &first,
        json!({"code": phone.code_at(server.now()), "number": 10}),
    )
    .await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert_eq!(error_code(&body), "login_expired");

    // A second sweep finds nothing more to do.
    let again = spse_totp_api::housekeeping::sweep(&server.services)
        .await
        .unwrap();
    assert_eq!(again, 0);
}

#[tokio::test]
async fn a_qr_code_scanned_after_it_expired_does_not_activate() {
    let server = TestServer::start().await;
    let (_, login) = server.start_login(NP, "ppk1").await;
    let phone = Authenticator::scan(&login);
    server.advance(Duration::minutes(11));
    let (status, body) =
        activate_device(&server, &phone.enrollment_id, &phone.code_at(server.now())).await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert_eq!(error_code(&body), "enrollment_expired");
    assert_eq!(
        account(&server, NP, "ppk1").await["totp_status"],
        "inactive"
    );
    assert_eq!(
        status_of(&server, &login_id(&login)).await["status"],
        "expired"
    );
    // A new login gives a new QR code that works.
    let (phone, _) = server.activate_by_device(NP, "ppk1").await;
    assert_ne!(phone.enrollment_id, login["activation"]["enrollment_id"]);
    assert_eq!(account(&server, NP, "ppk1").await["totp_status"], "active");
}

// ---------------------------------------------------------------------------------------------
// Replay and lockout
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_code_that_approved_one_login_cannot_approve_another_in_the_same_step() {
    let server = TestServer::start().await;
    let (phone, _) = server.activate_by_code(NP, "ppk1").await;
    next_step(&server);
    let code = phone.code_at(server.now());
    let (_, first) = server.start_login(NP, "ppk1").await;
    let (status, body) = type_code(&server, &login_id(&first), &code).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (_, second) = server.start_login(NP, "ppk1").await;
    let second = login_id(&second);
    let (status, body) = type_code(&server, &second, &code).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_code(&body), "code_already_used");
    assert_eq!(body["error"]["attempts_left"], 4);
    assert_eq!(
        status_of(&server, &second).await["status"],
        "awaiting_approval"
    );

    // The code of the step before is refused too: its step is before the last accepted one.
    let earlier = phone.code_at(server.now() - Duration::seconds(30));
    let (status, body) = type_code(&server, &second, &earlier).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    next_step(&server);
    let fresh = phone.code_at(server.now());
    let (status, body) = type_code(&server, &second, &fresh).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "approved");
}

#[tokio::test]
async fn five_wrong_codes_lock_the_account_for_fifteen_minutes_then_thirty() {
    let server = TestServer::start().await;
    let (phone, _) = server.activate_by_device(NP, "ppk1").await;
    next_step(&server);
    let (_, login) = server.start_login(NP, "ppk1").await;
    let id = login_id(&login);
    let path = format!("/v1/logins/{id}/code");

    for attempts_left in (1..=4).rev() {
        let (status, body) = type_code(&server, &id, &wrong_code(&phone, server.now())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(error_code(&body), "invalid_code");
        assert_eq!(body["error"]["attempts_left"], attempts_left);
    }
    let response = post_raw(
        &server,
        &path,
        json!({"code": wrong_code(&phone, server.now())}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::LOCKED);
    assert_eq!(retry_after(&response), 15 * 60);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "account_locked");
    let until = instant(&body["error"]["locked_until"]);
    assert_eq!(until, server.now() + Duration::minutes(15));
    assert_eq!(
        instant(&account(&server, NP, "ppk1").await["locked_until"]),
        until
    );

    // While locked even the right code is refused, and no login can start.
    let (status, body) = type_code(&server, &id, &phone.code_at(server.now())).await;
    assert_eq!(status, StatusCode::LOCKED, "{body}");
    let response = post_raw(
        &server,
        "/v1/logins",
        json!({"user_type": NP, "user_id": "ppk1"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::LOCKED);
    assert!(retry_after(&response) > 0);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "account_locked");
    let (status, body) = device_approve(
        &server,
        &phone,
        &id,
        json!({"code": phone.code_at(server.now()), "number": login["approval_number"]}),
    )
    .await;
    assert_eq!(status, StatusCode::LOCKED, "{body}");

    // The lock lifts by itself.
    server.advance(Duration::minutes(15) + Duration::seconds(1));
    let acc = account(&server, NP, "ppk1").await;
    assert!(acc.get("locked_until").is_none(), "{acc}");
    let (status, login) = server.start_login(NP, "ppk1").await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    let id = login_id(&login);

    // Without a success in between, the next lock is twice as long.
    for attempts_left in (1..=4).rev() {
        let (status, body) = type_code(&server, &id, &wrong_code(&phone, server.now())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["attempts_left"], attempts_left);
    }
    let response = post_raw(
        &server,
        &format!("/v1/logins/{id}/code"),
        json!({"code": wrong_code(&phone, server.now())}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::LOCKED);
    assert_eq!(retry_after(&response), 30 * 60);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        instant(&body["error"]["locked_until"]),
        server.now() + Duration::minutes(30)
    );

    server.advance(Duration::minutes(15) + Duration::seconds(1));
    let (status, _) = server.start_login(NP, "ppk1").await;
    assert_eq!(status, StatusCode::LOCKED, "still locked after 15 minutes");
    server.advance(Duration::minutes(15));
    let id = login_approved_on_device(&server, &phone, "ppk1").await;
    assert_eq!(status_of(&server, &id).await["status"], "approved");
}

// ---------------------------------------------------------------------------------------------
// FAQ 1: one device per account
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_active_account_gets_no_new_qr_and_an_old_qr_cannot_bind_a_second_device() {
    let server = TestServer::start().await;
    let (_, login) = server.start_login(NP, "ppk1").await;
    let first_phone = Authenticator::scan(&login);
    let (status, body) = activate_device(
        &server,
        &first_phone.enrollment_id,
        &first_phone.code_at(server.now()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    next_step(&server);
    let (status, login) = server.start_login(NP, "ppk1").await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    assert_eq!(login["status"], "awaiting_approval");
    assert!(login.get("activation").is_none(), "no QR code: {login}");

    // A second phone that photographed the same QR code.
    let (status, body) = server
        .call(
            reqwest::Method::POST,
            "/v1/device/activations",
            None,
            Some(json!({
                "enrollment_id": first_phone.enrollment_id,
                "code": first_phone.code_at(server.now()),
                "device_label": "Second phone"
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "totp_already_active");
    let acc = account(&server, NP, "ppk1").await;
    assert_eq!(acc["device"]["label"], "Pixel 7", "the first device stays");
}

#[tokio::test]
async fn an_account_activated_by_typed_code_refuses_a_device_activation() {
    let server = TestServer::start().await;
    let (phone, _) = server.activate_by_code(NP, "ppk1").await;
    next_step(&server);
    let (status, body) =
        activate_device(&server, &phone.enrollment_id, &phone.code_at(server.now())).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "totp_already_active");
    assert_eq!(
        account(&server, NP, "ppk1").await["device"]["method"],
        "code"
    );
}

// ---------------------------------------------------------------------------------------------
// FAQ 4 and 2: disable, re-activation, the old device
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn disable_after_a_recent_login_turns_totp_off_and_the_next_login_asks_for_activation() {
    let server = TestServer::start().await;
    let (phone, _) = server.activate_by_device(NP, "ppk1").await;
    next_step(&server);
    let approved = login_approved_on_device(&server, &phone, "ppk1").await;
    // Another login left waiting: disable cancels it.
    let (_, waiting) = server.start_login(NP, "ppk1").await;
    let waiting = login_id(&waiting);

    // The code that approved the login is spent; disable needs a fresh one.
    let (status, body) = server
        .post(
            "/v1/accounts/non_penyedia/ppk1/disable",
            &server.portal_key,
            json!({"login_id": approved, "code": phone.code_at(server.now())}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(account(&server, NP, "ppk1").await["totp_status"], "active");

    next_step(&server);
    let (status, body) = server
        .post(
            "/v1/accounts/non_penyedia/ppk1/disable",
            &server.portal_key,
            json!({"login_id": approved, "code": phone.code_at(server.now())}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["totp_status"], "disabled");
    assert!(body.get("device").is_none(), "{body}");

    let acc = account(&server, NP, "ppk1").await;
    assert_eq!(acc["totp_status"], "disabled");
    assert!(acc.get("device").is_none(), "{acc}");
    assert_eq!(status_of(&server, &waiting).await["status"], "cancelled");

    let (status, body) = device_logins(&server, phone.token()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(error_code(&body), "device_not_recognised");

    let (status, login) = server.start_login(NP, "ppk1").await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    assert_eq!(login["status"], "awaiting_activation");
    assert_eq!(login["account"]["totp_status"], "disabled");
    assert!(login["activation"]["otpauth_uri"].is_string(), "{login}");
}

#[tokio::test]
async fn disable_with_a_login_older_than_ten_minutes_is_refused() {
    let server = TestServer::start().await;
    let (phone, _) = server.activate_by_device(NP, "ppk1").await;
    next_step(&server);
    let approved = login_approved_on_device(&server, &phone, "ppk1").await;
    server.advance(Duration::minutes(10) + Duration::seconds(30));
    let (status, body) = server
        .post(
            "/v1/accounts/non_penyedia/ppk1/disable",
            &server.portal_key,
            json!({"login_id": approved, "code": phone.code_at(server.now())}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(error_code(&body), "recent_login_required");
    let acc = account(&server, NP, "ppk1").await;
    assert_eq!(acc["totp_status"], "active");
    assert_eq!(acc["device"]["label"], "Test phone");

    // A login that was never approved does not count either.
    let (_, pending) = server.start_login(NP, "ppk1").await;
    let (status, body) = server
        .post(
            "/v1/accounts/non_penyedia/ppk1/disable",
            &server.portal_key,
            json!({"login_id": login_id(&pending), "code": phone.code_at(server.now())}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(account(&server, NP, "ppk1").await["totp_status"], "active");
}

#[tokio::test]
async fn after_disable_and_reactivation_the_old_device_fails_and_the_new_one_works() {
    let server = TestServer::start().await;
    let (old_phone, _) = server.activate_by_device(NP, "ppk1").await;
    next_step(&server);
    let approved = login_approved_on_device(&server, &old_phone, "ppk1").await;
    next_step(&server);
    let (status, body) = server
        .post(
            "/v1/accounts/non_penyedia/ppk1/disable",
            &server.portal_key,
            json!({"login_id": approved, "code": old_phone.code_at(server.now())}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    next_step(&server);
    let (new_phone, activated_login) = server.activate_by_device(NP, "ppk1").await;
    assert_ne!(new_phone.secret, old_phone.secret, "a new secret");
    assert_eq!(
        status_of(&server, &activated_login).await["status"],
        "approved"
    );
    let acc = account(&server, NP, "ppk1").await;
    assert_eq!(acc["totp_status"], "active");
    assert_eq!(acc["device"]["label"], "Test phone");

    next_step(&server);
    let (_, login) = server.start_login(NP, "ppk1").await;
    let id = login_id(&login);
    let (status, body) = type_code(&server, &id, &old_phone.code_at(server.now())).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_code(&body), "invalid_code");
    let (status, body) = device_logins(&server, old_phone.token()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = device_approve(
        &server,
        &old_phone,
        &id,
        json!({"code": old_phone.code_at(server.now()), "number": login["approval_number"]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(error_code(&body), "device_not_recognised");
    // The service had seen the old token bound when it approved before the disable; that memory
    // must not let it deny either.
    let (status, body) = device_deny(&server, &old_phone, &id).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(error_code(&body), "device_not_recognised");
    assert_eq!(status_of(&server, &id).await["status"], "awaiting_approval");

    let (status, body) = device_approve(
        &server,
        &new_phone,
        &id,
        json!({"code": new_phone.code_at(server.now()), "number": login["approval_number"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "approved");
}

// ---------------------------------------------------------------------------------------------
// Accounts
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn user_ids_are_case_insensitive_and_user_types_are_separate_accounts() {
    let server = TestServer::start().await;
    let (_, _) = server.activate_by_code(NP, "ppk1").await;
    for spelled in ["PPK1", "ppk1", "Ppk1"] {
        let acc = account(&server, NP, spelled).await;
        assert_eq!(acc["user_id"], "PPK1");
        assert_eq!(acc["user_type"], NP);
        assert_eq!(acc["totp_status"], "active");
    }

    // The same User ID as a Penyedia is another account, still without TOTP.
    let (status, login) = server.start_login("penyedia", "PPK1").await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    assert_eq!(login["status"], "awaiting_activation");
    assert_eq!(login["account"]["user_type"], "penyedia");
    assert_eq!(login["account"]["user_id"], "PPK1");
    let vendor = account(&server, "penyedia", "ppk1").await;
    assert_eq!(vendor["totp_status"], "inactive");
    assert!(vendor.get("device").is_none(), "{vendor}");
    assert_eq!(account(&server, NP, "ppk1").await["totp_status"], "active");

    // Starting a login with another spelling reaches the active account.
    next_step(&server);
    let (_, login) = server.start_login(NP, "pPk1").await;
    assert_eq!(login["status"], "awaiting_approval");

    let (status, body) = server
        .get("/v1/accounts/non_penyedia/nobody", &server.portal_key)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(error_code(&body), "account_not_found");
}

#[tokio::test]
async fn a_second_login_before_activation_supersedes_the_first_qr_code() {
    let server = TestServer::start().await;
    let (_, first) = server.start_login(NP, "ppk1").await;
    let (status, second) = server.start_login(NP, "ppk1").await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    assert_eq!(second["status"], "awaiting_activation");
    assert_ne!(
        first["activation"]["enrollment_id"],
        second["activation"]["enrollment_id"]
    );
    let first_phone = Authenticator::scan(&first);
    let second_phone = Authenticator::scan(&second);
    assert_ne!(first_phone.secret, second_phone.secret, "a new secret");
    let (first_id, second_id) = (login_id(&first), login_id(&second));
    assert_eq!(status_of(&server, &first_id).await["status"], "cancelled");

    let (status, body) = type_code(&server, &first_id, &first_phone.code_at(server.now())).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "login_not_pending");
    assert_eq!(body["error"]["status"], "cancelled");
    // Nor can a push-capable app use the old QR code.
    let (status, body) = activate_device(
        &server,
        &first_phone.enrollment_id,
        &first_phone.code_at(server.now()),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(error_code(&body), "enrollment_not_found");
    assert_eq!(
        account(&server, NP, "ppk1").await["totp_status"],
        "inactive"
    );

    let (status, body) = type_code(&server, &second_id, &second_phone.code_at(server.now())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "approved");
    assert_eq!(account(&server, NP, "ppk1").await["totp_status"], "active");
}

// ---------------------------------------------------------------------------------------------
// Read side: rebuild, read-your-writes
// ---------------------------------------------------------------------------------------------

/// Every row of every projection table, as text, in primary-key order.
async fn dump_projections(server: &TestServer) -> Vec<String> {
    use sqlx::{Column, Row};
    let tables = [
        ("accounts", "stream"),
        ("device_bindings", "stream"),
        ("login_sessions", "login_id"),
        ("audit_log", "position"),
        ("api_keys", "key_id"),
    ];
    let mut lines = Vec::new();
    for (table, key) in tables {
        let rows = sqlx::query(&format!("SELECT * FROM {table} ORDER BY {key}"))
            .fetch_all(&server.services.db.pool)
            .await
            .unwrap();
        for row in rows {
            let cells: Vec<String> = row
                .columns()
                .iter()
                .enumerate()
                .map(|(i, column)| {
                    let value = if let Ok(v) = row.try_get::<Option<String>, _>(i) {
                        format!("{v:?}")
                    } else if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                        format!("{v:?}")
                    } else if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
                        format!("{v:?}")
                    } else if let Ok(v) = row.try_get::<Option<Vec<u8>>, _>(i) {
                        format!("{v:?}")
                    } else {
                        panic!("{table}.{} has a type this dump cannot read", column.name())
                    };
                    format!("{}={value}", column.name())
                })
                .collect();
            lines.push(format!("{table}: {}", cells.join(" | ")));
        }
    }
    lines
}

#[tokio::test]
async fn rebuilding_the_projections_gives_the_same_tables() {
    let server = TestServer::start().await;
    // A scripted life over three accounts.
    let (ppk, _) = server.activate_by_device(NP, "ppk1").await;
    let (vendor, _) = server.activate_by_code("penyedia", "vendor1").await;
    let (pokja, _) = server.activate_by_device(NP, "pokja7").await;
    next_step(&server);
    let approved = login_approved_on_device(&server, &ppk, "ppk1").await;
    let (_, denied) = server.start_login(NP, "ppk1").await;
    let (status, _) = device_deny(&server, &ppk, &login_id(&denied)).await;
    assert_eq!(status, StatusCode::OK);
    let (_, cancelled) = server.start_login("penyedia", "vendor1").await;
    let (status, _) = server
        .post(
            &format!("/v1/logins/{}/cancel", login_id(&cancelled)),
            &server.portal_key,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, vendor_login) = server.start_login("penyedia", "vendor1").await;
    let (status, _) = type_code(
        &server,
        &login_id(&vendor_login),
        &wrong_code(&vendor, server.now()),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = type_code(
        &server,
        &login_id(&vendor_login),
        &vendor.code_at(server.now()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // Pokja7 is locked.
    let (_, pokja_login) = server.start_login(NP, "pokja7").await;
    for _ in 0..5 {
        type_code(
            &server,
            &login_id(&pokja_login),
            &wrong_code(&pokja, server.now()),
        )
        .await;
    }
    assert!(account(&server, NP, "pokja7").await["locked_until"].is_string());
    // PPK1 disables TOTP, then starts activating again; an old login of vendor1 expires.
    next_step(&server);
    let (status, body) = server
        .post(
            "/v1/accounts/non_penyedia/ppk1/disable",
            &server.portal_key,
            json!({"login_id": approved, "code": ppk.code_at(server.now())}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, _) = server.start_login(NP, "ppk1").await;
    server.start_login("penyedia", "vendor1").await;
    server.advance(Duration::minutes(11));
    spse_totp_api::housekeeping::sweep(&server.services)
        .await
        .unwrap();
    server.services.projections.catch_up().await.unwrap();

    let before = dump_projections(&server).await;
    let count = |table: &str| {
        before
            .iter()
            .filter(|l| l.starts_with(&format!("{table}: ")))
            .count()
    };
    assert_eq!(count("accounts"), 3, "{before:#?}");
    assert_eq!(count("device_bindings"), 2, "{before:#?}");
    assert!(count("login_sessions") >= 9, "{before:#?}");
    assert!(count("audit_log") >= 30, "{before:#?}");
    assert_eq!(count("api_keys"), 3, "{before:#?}");

    server.services.projections.rebuild().await.unwrap();
    let after = dump_projections(&server).await;
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b, a);
    }

    // And the API still reads them.
    assert_eq!(
        account(&server, NP, "ppk1").await["totp_status"],
        "disabled"
    );
    assert_eq!(
        account(&server, "penyedia", "vendor1").await["totp_status"],
        "active"
    );
}

#[tokio::test]
async fn every_command_is_visible_to_the_next_read() {
    let server = TestServer::start().await;
    for round in 0..3 {
        let user = format!("ryw{round}");
        let (status, login) = server.start_login(NP, &user).await;
        assert_eq!(status, StatusCode::CREATED);
        let first = login_id(&login);
        assert_eq!(
            status_of(&server, &first).await["status"],
            "awaiting_activation"
        );
        assert_eq!(account(&server, NP, &user).await["totp_status"], "inactive");

        let mut phone = Authenticator::scan(&login);
        let (status, body) =
            activate_device(&server, &phone.enrollment_id, &phone.code_at(server.now())).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        phone.device_token = body["device_token"].as_str().map(str::to_owned);
        assert_eq!(status_of(&server, &first).await["status"], "approved");
        assert_eq!(account(&server, NP, &user).await["totp_status"], "active");
        let (status, _) = device_logins(&server, phone.token()).await;
        assert_eq!(status, StatusCode::OK, "the new token works at once");

        next_step(&server);
        let (_, login) = server.start_login(NP, &user).await;
        let id = login_id(&login);
        let (_, list) = device_logins(&server, phone.token()).await;
        assert_eq!(list["logins"][0]["login_id"], id.as_str(), "{list}");
        let (status, _) = device_approve(
            &server,
            &phone,
            &id,
            json!({"code": phone.code_at(server.now()), "number": login["approval_number"]}),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(status_of(&server, &id).await["status"], "approved");
        let (_, list) = device_logins(&server, phone.token()).await;
        assert_eq!(list["logins"], json!([]));

        let (_, login) = server.start_login(NP, &user).await;
        let id = login_id(&login);
        device_deny(&server, &phone, &id).await;
        assert_eq!(status_of(&server, &id).await["status"], "denied");

        let (_, login) = server.start_login(NP, &user).await;
        let id = login_id(&login);
        server
            .post(
                &format!("/v1/logins/{id}/cancel"),
                &server.portal_key,
                json!({}),
            )
            .await;
        assert_eq!(status_of(&server, &id).await["status"], "cancelled");

        let (_, login) = server.start_login(NP, &user).await;
        let id = login_id(&login);
        for _ in 0..5 {
            type_code(&server, &id, &wrong_code(&phone, server.now())).await;
        }
        assert!(
            account(&server, NP, &user).await["locked_until"].is_string(),
            "the lock shows at once"
        );
        server.advance(Duration::minutes(16));
        let approved = login_approved_on_device(&server, &phone, &user).await;
        next_step(&server);
        let (status, _) = server
            .post(
                &format!("/v1/accounts/non_penyedia/{user}/disable"),
                &server.portal_key,
                json!({"login_id": approved, "code": phone.code_at(server.now())}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(account(&server, NP, &user).await["totp_status"], "disabled");
        let (status, _) = device_logins(&server, phone.token()).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "the token is dead at once"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn health_readiness_metrics_and_openapi_answer() {
    let server = TestServer::start().await;
    server.activate_by_code(NP, "ppk1").await;
    // The activation notice's outcome is appended by the mailer after the request returned: let
    // the projections take it in, so the lag below is the service's, not this race's.
    server.settle_mail().await;
    server
        .services
        .projections
        .catch_up()
        .await
        .expect("projections");

    let response = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let (status, body) = server
        .call(reqwest::Method::GET, "/readyz", None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["projection_lag"], 0, "{body}");
    assert_eq!(body["database"], true, "{body}");

    // One instance, in no election, runs every write request sent to it.
    let (status, body) = server
        .call(reqwest::Method::GET, "/activez", None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "active", "{body}");

    let response = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(text.contains("spse_totp_http_requests_total"), "{text}");

    let (status, doc) = server
        .call(reqwest::Method::GET, "/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/v1/logins",
        "/v1/logins/{login_id}",
        "/v1/device/activations",
        "/v1/device/logins",
        "/v1/accounts/{user_type}/{user_id}/disable",
    ] {
        assert!(paths.contains_key(path), "{path} is documented");
    }
}

// ---------------------------------------------------------------------------------------------
// More of the rules a user relies on
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_code_from_the_previous_step_is_accepted_but_not_older_or_future_ones() {
    let server = TestServer::start().await;
    let (phone, _) = server.activate_by_device(NP, "ppk1").await;
    server.advance(Duration::minutes(2));
    let (_, login) = server.start_login(NP, "ppk1").await;
    let id = login_id(&login);
    for (label, at) in [
        ("two steps back", server.now() - Duration::seconds(60)),
        ("the next step", server.now() + Duration::seconds(30)),
    ] {
        let (status, body) = type_code(&server, &id, &phone.code_at(at)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{label}: {body}");
    }
    let previous = phone.code_at(server.now() - Duration::seconds(30));
    let (status, body) = type_code(&server, &id, &previous).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "one step of delay is allowed: {body}"
    );
}

#[tokio::test]
async fn a_start_login_answer_says_when_it_expires_and_a_decided_poll_returns_at_once() {
    let server = TestServer::start().await;
    let (_, first) = server.activate_by_code(NP, "ppk1").await;
    let started = Instant::now();
    let (status, view) = server
        .get(
            &format!("/v1/logins/{first}?wait_seconds=10"),
            &server.portal_key,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["status"], "approved");
    assert!(started.elapsed() < StdDuration::from_secs(5), "no wait");

    next_step(&server);
    let (_, login) = server.start_login(NP, "ppk1").await;
    assert_eq!(
        instant(&login["expires_at"]),
        server.now() + Duration::minutes(10),
        "ten minutes by default"
    );
    let view = status_of(&server, &login_id(&login)).await;
    assert_eq!(view["approval_number"], login["approval_number"]);
    assert_eq!(view["user_id"], "PPK1");

    let (status, body) = server
        .get(
            &format!("/v1/logins/{}?wait_seconds=31", login_id(&login)),
            &server.portal_key,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn an_activation_login_left_too_long_refuses_the_typed_code() {
    let server = TestServer::start().await;
    let (_, login) = server.start_login(NP, "ppk1").await;
    let phone = Authenticator::scan(&login);
    server.advance(Duration::minutes(10) + Duration::seconds(1));
    let (status, body) = type_code(&server, &login_id(&login), &phone.code_at(server.now())).await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert_eq!(error_code(&body), "login_expired");
    assert_eq!(
        account(&server, NP, "ppk1").await["totp_status"],
        "inactive"
    );
}

#[tokio::test]
async fn a_device_cannot_see_approve_or_deny_another_accounts_login() {
    let server = TestServer::start().await;
    let (ppk, _) = server.activate_by_device(NP, "ppk1").await;
    let (other, _) = server.activate_by_device(NP, "ppk2").await;
    next_step(&server);
    let (_, login) = server.start_login(NP, "ppk1").await;
    let id = login_id(&login);

    let (status, list) = device_logins(&server, other.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["user_id"], "PPK2");
    assert_eq!(list["logins"], json!([]), "{list}");

    let (status, body) = device_approve(
        &server,
        &other,
        &id,
        json!({"code": other.code_at(server.now()), "number": login["approval_number"]}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(error_code(&body), "login_not_found");
    let (status, body) = device_deny(&server, &other, &id).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(error_code(&body), "login_not_found");
    assert_eq!(status_of(&server, &id).await["status"], "awaiting_approval");

    // The owner's device still decides it.
    let (status, body) = device_approve(
        &server,
        &ppk,
        &id,
        json!({"code": ppk.code_at(server.now()), "number": login["approval_number"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn disable_with_another_accounts_login_is_refused() {
    let server = TestServer::start().await;
    let (ppk, _) = server.activate_by_device(NP, "ppk1").await;
    let (other, _) = server.activate_by_device(NP, "ppk2").await;
    next_step(&server);
    let others_login = login_approved_on_device(&server, &other, "ppk2").await;
    next_step(&server);
    let (status, body) = server
        .post(
            "/v1/accounts/non_penyedia/ppk1/disable",
            &server.portal_key,
            json!({"login_id": others_login, "code": ppk.code_at(server.now())}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(error_code(&body), "recent_login_required");
    assert_eq!(account(&server, NP, "ppk1").await["totp_status"], "active");
    assert_eq!(account(&server, NP, "ppk2").await["totp_status"], "active");
}

#[tokio::test]
async fn typed_codes_and_device_approvals_count_towards_one_lock() {
    let server = TestServer::start().await;
    let (phone, _) = server.activate_by_device(NP, "ppk1").await;
    next_step(&server);
    let (_, login) = server.start_login(NP, "ppk1").await;
    let id = login_id(&login);
    let shown = login["approval_number"].as_u64().unwrap();
    for attempts_left in [4, 3, 2] {
        let (status, body) = type_code(&server, &id, &wrong_code(&phone, server.now())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["attempts_left"], attempts_left);
    }
    let (status, body) = device_approve(
        &server,
        &phone,
        &id,
        json!({"code": wrong_code(&phone, server.now()), "number": shown}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["attempts_left"], 1);
    let (status, body) = device_approve(
        &server,
        &phone,
        &id,
        json!({"code": phone.code_at(server.now()), "number": other_number(shown)}),
    )
    .await;
    assert_eq!(status, StatusCode::LOCKED, "{body}");
    assert_eq!(error_code(&body), "account_locked");
}

#[tokio::test]
async fn a_success_resets_the_failure_count_and_the_lock_escalation() {
    let server = TestServer::start().await;
    let (phone, _) = server.activate_by_device(NP, "ppk1").await;
    next_step(&server);
    let (_, login) = server.start_login(NP, "ppk1").await;
    let id = login_id(&login);
    for _ in 0..4 {
        type_code(&server, &id, &wrong_code(&phone, server.now())).await;
    }
    let (status, _) = type_code(&server, &id, &phone.code_at(server.now())).await;
    assert_eq!(status, StatusCode::OK);

    // Four more failures do not lock: the count started again.
    next_step(&server);
    let (_, login) = server.start_login(NP, "ppk1").await;
    let id = login_id(&login);
    for attempts_left in (1..=4).rev() {
        let (status, body) = type_code(&server, &id, &wrong_code(&phone, server.now())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["attempts_left"], attempts_left);
    }
    let (status, body) = type_code(&server, &id, &wrong_code(&phone, server.now())).await;
    assert_eq!(status, StatusCode::LOCKED, "{body}");
    assert_eq!(
        instant(&body["error"]["locked_until"]),
        server.now() + Duration::minutes(15)
    );

    // After the lock, a success; the next lock is 15 minutes again, not 30.
    server.advance(Duration::minutes(15) + Duration::seconds(1));
    login_approved_on_device(&server, &phone, "ppk1").await;
    next_step(&server);
    let (_, login) = server.start_login(NP, "ppk1").await;
    let id = login_id(&login);
    for _ in 0..4 {
        type_code(&server, &id, &wrong_code(&phone, server.now())).await;
    }
    let (status, body) = type_code(&server, &id, &wrong_code(&phone, server.now())).await;
    assert_eq!(status, StatusCode::LOCKED, "{body}");
    assert_eq!(
        instant(&body["error"]["locked_until"]),
        server.now() + Duration::minutes(15)
    );
}

#[tokio::test]
async fn a_locked_account_says_how_long_is_left() {
    let server = TestServer::start().await;
    let (phone, _) = server.activate_by_code(NP, "ppk1").await;
    next_step(&server);
    let (_, login) = server.start_login(NP, "ppk1").await;
    for _ in 0..5 {
        type_code(
            &server,
            &login_id(&login),
            &wrong_code(&phone, server.now()),
        )
        .await;
    }
    server.advance(Duration::minutes(5));
    let response = post_raw(
        &server,
        "/v1/logins",
        json!({"user_type": NP, "user_id": "PPK1"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::LOCKED);
    assert_eq!(retry_after(&response), 10 * 60);
}

#[tokio::test]
async fn disable_right_after_activation_uses_the_login_that_activated() {
    let server = TestServer::start().await;
    let (phone, activated) = server.activate_by_code("penyedia", "vendor1").await;
    next_step(&server);
    let (status, body) = server
        .post(
            "/v1/accounts/penyedia/VENDOR1/disable",
            &server.portal_key,
            json!({"login_id": activated, "code": phone.code_at(server.now())}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["totp_status"], "disabled");
    assert_eq!(body["user_id"], "VENDOR1");

    // Disabling twice: TOTP is not active any more.
    next_step(&server);
    let (status, body) = server
        .post(
            "/v1/accounts/penyedia/vendor1/disable",
            &server.portal_key,
            json!({"login_id": activated, "code": phone.code_at(server.now())}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "totp_not_active");
}
