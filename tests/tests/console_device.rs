//! An operator's device (issue 15): bound at setup with the `spse-totp-device` companion (the
//! real binary, playing the SPSE Authenticator app, as in `demo_portal.rs`), then sign-ins
//! approved on it while the page waits, one denied (refused, recorded, counted), one left to
//! expire, and a TOTP reset that unbinds the device. The service runs on a test clock; the
//! companion computes its codes at the server's time (`--at`). Screenshots go to
//! `docs/console/`, at the office size and a phone's.

use std::path::Path;

use chrono::Duration;
use reqwest::StatusCode;
use spse_totp_domain::operator::{OperatorRole, Username};
use spse_totp_store::{Actor, EventMetadata, RecordedEvent};
use spse_totp_tests::browser::{Browser, PHONE};
use spse_totp_tests::console::{create_operator, events_of, shots, PASSWORD};
use spse_totp_tests::{companion, TestServer};
use tempfile::TempDir;

/// Runs the companion with its state file at the server's test time: (succeeded, stdout+stderr).
async fn device(s: &TestServer, state: &Path, args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new(companion::binary())
        .arg("--state")
        .arg(state)
        .arg("--at")
        .arg(s.now().to_rfc3339())
        .args(args)
        .output()
        .await
        .expect("the companion runs");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

async fn device_ok(s: &TestServer, state: &Path, args: &[&str]) -> String {
    let (ok, out) = device(s, state, args).await;
    assert!(ok, "spse-totp-device {args:?}: {out}");
    out
}

/// The one sign-in waiting for the device, as the companion lists it.
async fn waiting_sign_in(s: &TestServer, state: &Path) -> String {
    let out = device_ok(s, state, &["pending", "--wait", "5"]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "one waiting sign-in: {out}");
    lines[0]
        .split_whitespace()
        .next()
        .expect("a sign-in id")
        .to_owned()
}

/// Username and password, no code: the page that waits for the device.
async fn sign_in_on_device(b: &Browser, s: &TestServer, username: &str) -> String {
    b.goto(&s.url("/console/sign-in"))
        .await
        .expect("sign-in page");
    b.fill("#username", username).await.expect("username");
    b.fill("#password", PASSWORD).await.expect("password");
    b.click("#submit").await.expect("sign in");
    match b.text_of("#number").await {
        Ok(number) => number,
        Err(e) => panic!(
            "{e}: {} {:?} {:?}",
            b.text_of("body").await.unwrap_or_default(),
            b.client.current_url().await,
            types(&events_of(s, "operator-dewi.hd").await)
        ),
    }
}

fn types(events: &[RecordedEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event_type.as_str()).collect()
}

fn is_device(actor: &Actor) -> bool {
    matches!(actor, Actor::Device { .. })
}

#[tokio::test]
async fn an_operator_binds_the_companion_and_signs_in_by_approving_on_it() {
    let Some(b) = Browser::start().await.expect("the browser starts") else {
        return;
    };
    let s = TestServer::start().await;
    std::fs::create_dir_all(shots()).unwrap();
    let work = TempDir::new().unwrap();
    let state = work.path().join("dewi.json");
    let stream = "operator-dewi.hd";

    // Setup: a password, then the QR code scanned by the companion instead of a typed code.
    let link = create_operator(&s, OperatorRole::Helpdesk, "dewi.hd", "Dewi Lestari").await;
    b.goto(&link).await.unwrap();
    b.fill("#password", PASSWORD).await.unwrap();
    b.fill("#password2", PASSWORD).await.unwrap();
    b.click("#submit").await.unwrap();
    b.wait_for("#qr svg").await.expect("the QR code");
    let qr = work.path().join("qr.png");
    b.screenshot_element("#qr", &qr).await.unwrap();
    let out = device_ok(
        &s,
        &state,
        &[
            "enroll",
            "--qr-image",
            qr.to_str().unwrap(),
            "--label",
            "Ponsel Dewi",
        ],
    )
    .await;
    assert!(out.contains("operator dewi.hd"), "{out}");
    let events = events_of(&s, stream).await;
    let bound = events
        .iter()
        .find(|e| e.event_type == "OperatorDeviceBound")
        .expect("the device is bound in the operator's stream");
    assert!(is_device(&bound.metadata.actor), "{:?}", bound.metadata);
    assert!(types(&events).contains(&"OperatorTotpActivated"));
    assert!(
        !bound.payload.to_string().contains("spse_odt_"),
        "only the token's hash is recorded"
    );
    b.click("#setup-device-done").await.unwrap();
    b.wait_for("#username").await.expect("the sign-in page");

    // A user's device sees none of the operator's sign-ins.
    let (user_phone, _) = s.activate_by_device("penyedia", "vendor31").await;
    let user_token = user_phone.token().to_owned();

    // Approved on the device: the waiting page moves on by itself.
    s.advance(Duration::seconds(30));
    let number = sign_in_on_device(&b, &s, "dewi.hd").await;
    let page = b.text_of("main").await.unwrap();
    assert!(page.contains("Lanjutkan"), "{page}");
    b.screenshot(&shots().join("sign-in-wait.png"))
        .await
        .unwrap();
    let sign_in_id = waiting_sign_in(&s, &state).await;
    let (status, body) = s.get("/v1/device/logins", &user_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["logins"].as_array().map(Vec::len), Some(0), "{body}");
    // The device's code must come from a later step than the activation's (RFC 6238 5.2).
    let wrong = if number == "11" { "12" } else { "11" };
    let (ok, out) = device(&s, &state, &["approve", &sign_in_id, "--number", wrong]).await;
    assert!(!ok, "a wrong number is refused: {out}");
    let out = device_ok(&s, &state, &["approve", &sign_in_id, "--number", &number]).await;
    assert_eq!(out.trim(), "approved");
    let who = b.text_of("#operator").await.expect("signed in, by itself");
    assert_eq!(who, "Dewi Lestari");
    let events = events_of(&s, stream).await;
    let approved = events
        .iter()
        .find(|e| e.event_type == "OperatorSignInApproved")
        .expect("the approval is recorded");
    assert!(is_device(&approved.metadata.actor));
    assert_eq!(
        events.last().map(|e| e.event_type.as_str()),
        Some("OperatorSignedIn")
    );
    b.click("#sign-out").await.unwrap();
    b.wait_for("#username").await.unwrap();

    // Denied on the device: refused, recorded by the device, and counted as a failed sign-in.
    s.advance(Duration::seconds(30));
    sign_in_on_device(&b, &s, "dewi.hd").await;
    let sign_in_id = waiting_sign_in(&s, &state).await;
    let out = device_ok(&s, &state, &["deny", &sign_in_id]).await;
    assert_eq!(out.trim(), "denied");
    let error = b.text_of("#error").await.expect("the refusal, by itself");
    assert!(error.contains("ditolak"), "{error}");
    let events = events_of(&s, stream).await;
    let denied = events
        .iter()
        .find(|e| e.event_type == "OperatorSignInDenied")
        .expect("the denial is recorded");
    assert!(is_device(&denied.metadata.actor));
    let failed = events
        .iter()
        .rev()
        .find(|e| e.event_type == "OperatorSignInFailed")
        .expect("the denial counts as a failed sign-in");
    assert_eq!(failed.payload["reason"], "denied_on_device");
    assert_eq!(failed.payload["failed_attempts"], 1);
    let row = spse_totp_projections::operators::get(
        &s.services.db.pool,
        &Username::parse("dewi.hd").unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(row.failed_attempts, 1);

    // Nobody answers: past the login time "Lanjutkan" ends it as expired.
    s.advance(Duration::seconds(30));
    sign_in_on_device(&b, &s, "dewi.hd").await;
    waiting_sign_in(&s, &state).await;
    s.advance(Duration::minutes(11));
    b.click("#continue-button").await.unwrap();
    let error = b.text_of("#error").await.expect("the expiry");
    assert!(error.contains("habis"), "{error}");
    assert_eq!(
        events_of(&s, stream)
            .await
            .last()
            .map(|e| e.event_type.clone()),
        Some("OperatorSignInExpired".to_owned())
    );
    let (_, out) = device(&s, &state, &["pending"]).await;
    assert!(out.contains("Tidak ada login"), "{out}");

    // Abandoned: the browser goes away and nobody answers. The sweep leaves the sign-in alone
    // while it has time, then records its expiry, once, as the system.
    s.advance(Duration::seconds(30));
    sign_in_on_device(&b, &s, "dewi.hd").await;
    waiting_sign_in(&s, &state).await;
    let expiries = |events: &[RecordedEvent]| {
        events
            .iter()
            .filter(|e| e.event_type == "OperatorSignInExpired")
            .count()
    };
    let before = expiries(&events_of(&s, stream).await);
    spse_totp_api::housekeeping::sweep(&s.services)
        .await
        .unwrap();
    assert_eq!(expiries(&events_of(&s, stream).await), before);
    s.advance(Duration::minutes(11));
    spse_totp_api::housekeeping::sweep(&s.services)
        .await
        .unwrap();
    spse_totp_api::housekeeping::sweep(&s.services)
        .await
        .unwrap();
    let events = events_of(&s, stream).await;
    assert_eq!(expiries(&events), before + 1, "{:?}", types(&events));
    let last = events.last().unwrap();
    assert_eq!(last.event_type, "OperatorSignInExpired");
    assert!(matches!(last.metadata.actor, Actor::System), "{last:?}");
    let (_, out) = device(&s, &state, &["pending"]).await;
    assert!(out.contains("Tidak ada login"), "{out}");

    // The typed code stays the alternative on the waiting page.
    s.advance(Duration::seconds(30));
    sign_in_on_device(&b, &s, "dewi.hd").await;
    let code = device_ok(&s, &state, &["code"]).await;
    b.fill("#code", code.trim()).await.unwrap();
    b.click("#submit-code").await.unwrap();
    match b.text_of("#operator").await {
        Ok(who) => assert_eq!(who, "Dewi Lestari"),
        Err(e) => panic!(
            "{e}: {} {:?} {:?}",
            b.text_of("body").await.unwrap_or_default(),
            b.client.current_url().await,
            types(&events_of(&s, stream).await)
        ),
    }

    // On a phone: the waiting page and the helpdesk's account page.
    b.close().await.unwrap();
    let Some(phone) = Browser::start_sized(PHONE).await.unwrap() else {
        return;
    };
    s.advance(Duration::seconds(30));
    let number = sign_in_on_device(&phone, &s, "dewi.hd").await;
    phone
        .screenshot(&shots().join("sign-in-wait-phone.png"))
        .await
        .unwrap();
    let sign_in_id = waiting_sign_in(&s, &state).await;
    device_ok(&s, &state, &["approve", &sign_in_id, "--number", &number]).await;
    phone.wait_for("#operator").await.unwrap();
    phone
        .goto(&s.url("/console/accounts/penyedia/vendor31"))
        .await
        .unwrap();
    phone.wait_for("main h1").await.unwrap();
    phone
        .screenshot(&shots().join("account-phone.png"))
        .await
        .unwrap();
    phone.close().await.unwrap();

    // A TOTP reset (as `operator reset-totp` and the admin page do) unbinds the device.
    let admin = EventMetadata {
        actor: Actor::Operator {
            name: "root".into(),
        },
        ..EventMetadata::system()
    };
    s.services
        .operators
        .reset_totp(&Username::parse("dewi.hd").unwrap(), &admin)
        .await
        .unwrap();
    s.services.projections.catch_up().await.unwrap();
    let (ok, out) = device(&s, &state, &["pending"]).await;
    assert!(!ok && out.contains("device_not_recognised"), "{out}");
}
