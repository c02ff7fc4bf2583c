//! The operator console in a real headless Chromium (issue 15): an operator's setup from the
//! one-time link, sign-in with password and code, a wrong code, a form posted without its CSRF
//! token, the helpdesk's unlock and reset (after which the user's next login asks for
//! activation and the events name the operator), the auditor's state as of three instants, a
//! helpdesk operator refused on an auditor page, and session expiry on the test clock.
//! Screenshots of the main pages go to `docs/console/`.

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::json;
use spse_totp_domain::operator::{OperatorRole, Username};
use spse_totp_projections::mail::message::LocalZone;
use spse_totp_store::{Actor, EventMetadata};
use spse_totp_tests::browser::{Browser, PHONE};
use spse_totp_tests::console::{
    create_operator, events_of, session_cookie, set_up, shots, submit_sign_in,
};
use spse_totp_tests::{wrong_code, TestServer};

/// Signs in with the form (no check of the outcome).
async fn sign_in(b: &Browser, s: &TestServer, username: &str, code: &str) {
    submit_sign_in(b, s, username, code).await;
}

/// An operator of `role`, named after the username.
async fn create(s: &TestServer, role: OperatorRole, username: &str) -> String {
    create_operator(s, role, username, &format!("Operator {username}")).await
}

#[tokio::test]
async fn a_helpdesk_operator_sets_up_signs_in_unlocks_and_resets_a_user() {
    let Some(b) = Browser::start().await.expect("the browser starts") else {
        return;
    };
    let s = TestServer::start().await;
    std::fs::create_dir_all(shots()).unwrap();

    // A user with TOTP active, then locked by five wrong codes.
    let (user_phone, _) = s.activate_by_code("penyedia", "vendor77").await;
    let (_, login) = s.start_login("penyedia", "vendor77").await;
    let login_id = login["login_id"].as_str().unwrap().to_owned();
    for _ in 0..5 {
        s.post(
            &format!("/v1/logins/{login_id}/code"),
            &s.portal_key,
            json!({"code": wrong_code(&user_phone, s.now())}),
        )
        .await;
    }

    let link = create(&s, OperatorRole::Helpdesk, "siti.hd").await;
    let phone = set_up(&b, &s, &link, true).await;

    // The link is used up.
    b.goto(&link).await.unwrap();
    b.wait_for("#message.error")
        .await
        .expect("a used link is refused");

    // A wrong code is refused, recorded, and counts toward the lock.
    sign_in(&b, &s, "siti.hd", &wrong_code(&phone, s.now())).await;
    b.wait_for("#error").await.expect("the sign-in is refused");
    b.screenshot(&shots().join("sign-in-refused.png"))
        .await
        .unwrap();
    let stream = "operator-siti.hd";
    let failed: Vec<_> = events_of(&s, stream)
        .await
        .into_iter()
        .filter(|e| e.event_type == "OperatorSignInFailed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].payload["reason"], "wrong_code");

    sign_in(&b, &s, "siti.hd", &phone.code_at(s.now())).await;
    assert_eq!(b.text_of("#operator").await.unwrap(), "Operator siti.hd");
    assert!(events_of(&s, stream)
        .await
        .iter()
        .any(|e| e.event_type == "OperatorSignedIn"));

    // Search by User ID prefix; the result shows the lock.
    b.goto(&s.url("/console/accounts?user_id=vend&lang=id"))
        .await
        .unwrap();
    let results = b.text_of("#results").await.unwrap();
    assert!(results.contains("VENDOR77"), "{results}");
    b.screenshot(&shots().join("helpdesk-search.png"))
        .await
        .unwrap();
    b.client
        .find(fantoccini::Locator::LinkText("VENDOR77"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let timeline = b.text_of("#timeline").await.unwrap();
    assert!(timeline.contains("Kode salah"), "{timeline}");
    assert!(timeline.contains("Akun terkunci"), "{timeline}");
    b.screenshot(&shots().join("helpdesk-account.png"))
        .await
        .unwrap();

    // A form posted without its CSRF token changes nothing.
    let cookie = session_cookie(&b).await;
    let answer = s
        .client
        .post(s.url("/console/accounts/penyedia/VENDOR77/unlock"))
        .header("cookie", &cookie)
        .form(&[("reason", "no token")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    let (_, account) = s.get("/v1/accounts/penyedia/vendor77", &s.portal_key).await;
    assert!(
        account["locked_until"].is_string(),
        "still locked: {account}"
    );

    // Unlock, with a reason.
    b.fill("#unlock-reason", "Pengguna menelepon, identitas dicek")
        .await
        .unwrap();
    b.click("#unlock").await.unwrap();
    b.wait_for("#done").await.expect("unlocked");
    let (_, account) = s.get("/v1/accounts/penyedia/vendor77", &s.portal_key).await;
    assert!(
        account.get("locked_until").is_none_or(|v| v.is_null()),
        "{account}"
    );

    // Reset: reason and ticket, then the confirmation says what will happen.
    b.fill("#reset-reason", "HP hilang").await.unwrap();
    b.fill("#reset-ticket", "HD-2026-0077").await.unwrap();
    b.click("#reset").await.unwrap();
    let confirm = b.text_of("#confirm").await.unwrap();
    assert!(confirm.contains("HD-2026-0077"), "{confirm}");
    b.screenshot(&shots().join("helpdesk-reset-confirm.png"))
        .await
        .unwrap();
    assert_eq!(
        account_status(&s).await,
        "active",
        "nothing happens before the confirmation"
    );
    b.click("#confirm-reset").await.unwrap();
    b.wait_for("#done").await.expect("reset");
    b.screenshot(&shots().join("helpdesk-reset-done.png"))
        .await
        .unwrap();
    assert_eq!(account_status(&s).await, "inactive");

    // The user's next login asks for activation, and the reset names the operator.
    let (_, next) = s.start_login("penyedia", "vendor77").await;
    assert_eq!(next["status"], "awaiting_activation");
    let events = events_of(&s, "account-penyedia-VENDOR77").await;
    for kind in ["TotpReset", "AccountUnlocked"] {
        let event = events.iter().find(|e| e.event_type == kind).expect(kind);
        assert_eq!(
            event.metadata.actor,
            Actor::Console {
                username: "siti.hd".into(),
                role: "helpdesk".into()
            },
            "{kind}"
        );
    }

    // A helpdesk operator may not open the auditor's pages.
    b.goto(&s.url("/console/audit")).await.unwrap();
    b.wait_for("#message.error").await.expect("refused");
    let answer = s
        .client
        .get(s.url("/console/audit"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);

    // Sign out ends the session: the cookie no longer opens a page.
    b.goto(&s.url("/console/accounts")).await.unwrap();
    b.click("#sign-out").await.unwrap();
    b.wait_for("#username").await.expect("back at the sign-in");
    let answer = s
        .client
        .get(s.url("/console/accounts"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert!(answer.url().path().ends_with("/console/sign-in"));
    assert!(events_of(&s, stream)
        .await
        .iter()
        .any(|e| e.event_type == "OperatorSignedOut"));
    b.close().await.unwrap();
}

/// Whether the browser's session still opens a helpdesk page.
async fn signed_in(b: &Browser, s: &TestServer) -> bool {
    b.goto(&s.url("/console/accounts")).await.unwrap();
    b.client.current_url().await.unwrap().path() == "/console/accounts"
}

async fn account_status(s: &TestServer) -> String {
    let (status, body) = s.get("/v1/accounts/penyedia/vendor77", &s.portal_key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["totp_status"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn sessions_end_after_15_idle_minutes_8_hours_or_when_the_operator_is_disabled() {
    let Some(b) = Browser::start().await.expect("the browser starts") else {
        return;
    };
    let s = TestServer::start().await;
    let link = create(&s, OperatorRole::Helpdesk, "budi.hd").await;
    let phone = set_up(&b, &s, &link, false).await;

    sign_in(&b, &s, "budi.hd", &phone.code_at(s.now())).await;
    b.wait_for("#operator").await.unwrap();
    s.advance(Duration::minutes(14));
    assert!(signed_in(&b, &s).await, "14 idle minutes keep the session");
    s.advance(Duration::minutes(15));
    assert!(!signed_in(&b, &s).await, "15 idle minutes end it");

    // Busy all day: the session still ends at 8 hours.
    s.advance(Duration::seconds(30));
    sign_in(&b, &s, "budi.hd", &phone.code_at(s.now())).await;
    b.wait_for("#operator").await.unwrap();
    for _ in 0..47 {
        s.advance(Duration::minutes(10));
        assert!(signed_in(&b, &s).await);
    }
    s.advance(Duration::minutes(10));
    assert!(!signed_in(&b, &s).await, "8 hours end it");

    // Disabled: the open session ends at its next request.
    s.advance(Duration::seconds(30));
    sign_in(&b, &s, "budi.hd", &phone.code_at(s.now())).await;
    b.wait_for("#operator").await.unwrap();
    s.services
        .operators
        .disable(
            &Username::parse("budi.hd").unwrap(),
            &EventMetadata {
                actor: Actor::Operator {
                    name: "root".into(),
                },
                ..EventMetadata::system()
            },
        )
        .await
        .unwrap();
    s.services.projections.catch_up().await.unwrap();
    assert!(
        !signed_in(&b, &s).await,
        "a disabled operator is signed out"
    );
    s.advance(Duration::seconds(30));
    sign_in(&b, &s, "budi.hd", &phone.code_at(s.now())).await;
    b.wait_for("#error")
        .await
        .expect("and cannot sign in again");
    b.close().await.unwrap();
}

#[tokio::test]
async fn the_auditor_sees_the_state_as_of_three_instants() {
    let Some(b) = Browser::start().await.expect("the browser starts") else {
        return;
    };
    // An LPSE in Papua: the console shows and reads times in WIT (UTC+9), not the default WIB.
    let s = TestServer::start_with(|config| config.lpse.time_zone = LocalZone::Wit).await;
    // A scripted life: registered and activated, then reset by the helpdesk, then activated again.
    let (_, _) = s.activate_by_code("non_penyedia", "ppk9").await;
    let t1 = s.now() + Duration::minutes(1);
    s.advance(Duration::hours(1));
    let (status, body) = s
        .client
        .post(s.url("/v1/helpdesk/accounts/non_penyedia/ppk9/reset"))
        .bearer_auth(&s.helpdesk_key)
        .header("x-operator", "api-operator")
        .json(&json!({"reason": "lost phone", "ticket": "HD-9"}))
        .send()
        .await
        .map(|r| (r.status(), r))
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{:?}", body.text().await);
    let t2 = s.now() + Duration::minutes(1);
    s.advance(Duration::hours(1));
    s.activate_by_code("non_penyedia", "ppk9").await;
    let t3 = s.now() + Duration::minutes(1);
    s.advance(Duration::hours(1));

    let link = create(&s, OperatorRole::Auditor, "rina.audit").await;
    let phone = set_up(&b, &s, &link, false).await;
    sign_in(&b, &s, "rina.audit", &phone.code_at(s.now())).await;
    let form = b.text_of("#audit-form").await.unwrap();
    assert!(form.contains("(WIT)") && !form.contains("WIB"), "{form}");

    let wit = chrono::FixedOffset::east_opt(9 * 3600).unwrap();
    let mut devices_seen = Vec::new();
    for (at, status) in [(t1, "active"), (t2, "inactive"), (t3, "active")] {
        let local = at.with_timezone(&wit).format("%Y-%m-%dT%H:%M:%S");
        b.goto(&s.url(&format!(
            "/console/audit/account?user_type=non_penyedia&user_id=ppk9&purpose=AUD-2026-9&at={local}"
        )))
        .await
        .unwrap();
        assert_eq!(b.text_of("#state-status").await.unwrap(), status, "at {at}");
        devices_seen.push(b.text_of("#state-devices").await.unwrap());
    }
    b.screenshot(&shots().join("auditor-state-as-of.png"))
        .await
        .unwrap();
    assert_eq!(devices_seen[0].lines().count(), 1, "{devices_seen:?}");
    assert_eq!(devices_seen[2].lines().count(), 2, "{devices_seen:?}");

    // Each read is recorded with its purpose under the auditor.
    let day = spse_totp_domain::access::AccessEvent::stream_name(s.now());
    let reads: Vec<_> = events_of(&s, &day)
        .await
        .into_iter()
        .filter(|e| e.payload["purpose"] == "AUD-2026-9")
        .collect();
    assert_eq!(reads.len(), 3);
    assert_eq!(reads[0].metadata.actor.display_name(), "rina.audit");

    // Without a purpose nothing is read.
    b.goto(&s.url("/console/audit/account?user_type=non_penyedia&user_id=ppk9&purpose="))
        .await
        .unwrap();
    b.wait_for("#error").await.expect("a purpose is required");

    // Readable on a phone too.
    b.close().await.unwrap();
    let Some(phone_browser) = Browser::start_sized(PHONE).await.unwrap() else {
        return;
    };
    phone_browser
        .goto(&s.url("/console/sign-in?lang=id"))
        .await
        .unwrap();
    phone_browser.wait_for("#username").await.unwrap();
    assert!(phone_browser.text_of("h1").await.unwrap().contains("Masuk"));
    phone_browser
        .screenshot(&shots().join("sign-in-phone.png"))
        .await
        .unwrap();
    phone_browser.close().await.unwrap();
}
