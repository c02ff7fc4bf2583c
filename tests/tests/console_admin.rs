//! The console's admin and auditor tools in a real headless Chromium (issue 15): an admin lands on
//! the admin pages, creates an operator (the setup link shown once) who then completes setup and
//! signs in, creates an API key (shown once, usable at once), resets an operator's TOTP and
//! disables one, each event naming the admin; an admin revokes a key after a confirmation, and
//! the key's next call is refused. The auditor runs the chain's verification (and
//! sees it fail after a row is altered), downloads a subject export, and searches the whole log
//! with filters and downloads the CSV; every read is recorded with its purpose.
//! Screenshots go to `docs/console/`.

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{json, Value};
use spse_totp_domain::access::AccessEvent;
use spse_totp_domain::operator::OperatorRole;
use spse_totp_store::{Actor, RecordedEvent};
use spse_totp_tests::browser::Browser;
use spse_totp_tests::console::{
    create_operator, events_of, session_cookie, set_up, shots, submit_sign_in, PASSWORD,
};
use spse_totp_tests::{wrong_code, Authenticator, TestServer};

/// The first admin, made at the server's shell (`spse-totp operator create --role admin`).
async fn first_admin(s: &TestServer, username: &str) -> String {
    create_operator(s, OperatorRole::Admin, username, "Ani Admin").await
}

async fn sign_in(b: &Browser, s: &TestServer, username: &str, phone: &Authenticator) {
    submit_sign_in(b, s, username, &phone.code_at(s.now())).await;
    b.wait_for("#operator").await.expect("signed in");
    s.advance(Duration::seconds(30));
}

async fn sign_out(b: &Browser) {
    b.click("#sign-out").await.unwrap();
    b.wait_for("#username").await.expect("signed out");
}

async fn path(b: &Browser) -> String {
    b.client.current_url().await.unwrap().path().to_owned()
}

async fn all_events(s: &TestServer) -> Vec<RecordedEvent> {
    s.services.db.events.read_all(0, 100_000).await.unwrap()
}

fn console_actor(username: &str, role: &str) -> Actor {
    Actor::Console {
        username: username.into(),
        role: role.into(),
    }
}

/// Today's recorded reads with this purpose.
async fn reads_with_purpose(s: &TestServer, purpose: &str) -> Vec<RecordedEvent> {
    events_of(s, &AccessEvent::stream_name(s.now()))
        .await
        .into_iter()
        .filter(|e| e.event_type == "AuditRecordRead" && e.payload["purpose"] == purpose)
        .collect()
}

#[tokio::test]
async fn an_admin_manages_operators_and_keys_and_an_auditor_uses_the_chain_export_and_search() {
    let Some(b) = Browser::start().await.expect("the browser starts") else {
        return;
    };
    let s = TestServer::start().await;
    std::fs::create_dir_all(shots()).unwrap();

    // A user with TOTP active and two wrong codes, and another user, for the auditor to find.
    let (user_phone, _) = s.activate_by_code("penyedia", "vendor88").await;
    s.activate_by_code("penyedia", "other1").await;
    let (_, login) = s.start_login("penyedia", "vendor88").await;
    let login_id = login["login_id"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        s.post(
            &format!("/v1/logins/{login_id}/code"),
            &s.portal_key,
            json!({"code": wrong_code(&user_phone, s.now())}),
        )
        .await;
    }

    // The first admin signs in and lands on the admin pages.
    let admin_link = first_admin(&s, "ani.admin").await;
    let admin_phone = set_up(&b, &s, &admin_link, false).await;
    sign_in(&b, &s, "ani.admin", &admin_phone).await;
    assert_eq!(path(&b).await, "/console/admin/operators");
    assert!(b.text_of("#operators").await.unwrap().contains("ani.admin"));

    // Creating an operator shows the setup link once.
    b.wait_for("#op-role")
        .await
        .unwrap()
        .select_by_value("auditor")
        .await
        .unwrap();
    b.fill("#op-username", "rina.audit").await.unwrap();
    b.fill("#op-name", "Rina Auditor").await.unwrap();
    b.fill("#op-email", "rina@lpse.example").await.unwrap();
    b.screenshot(&shots().join("admin-operators.png"))
        .await
        .unwrap();
    b.click("#create").await.unwrap();
    let rina_link = b.text_of("#secret").await.unwrap();
    assert!(
        rina_link.starts_with(&s.url("/console/setup?token=")),
        "{rina_link}"
    );
    b.screenshot(&shots().join("admin-operator-created.png"))
        .await
        .unwrap();
    let created = events_of(&s, "operator-rina.audit").await;
    assert_eq!(created[0].event_type, "OperatorCreated");
    assert_eq!(created[0].payload["role"], "auditor");
    assert_eq!(
        created[0].metadata.actor,
        console_actor("ani.admin", "admin")
    );
    // Shown once: the list does not show it again.
    b.goto(&s.url("/console/admin/operators")).await.unwrap();
    let listed = b.text_of("#operators").await.unwrap();
    assert!(listed.contains("rina.audit"), "{listed}");
    assert!(!b.client.source().await.unwrap().contains(&rina_link));

    // A username taken is refused and creates nothing.
    b.fill("#op-username", "rina.audit").await.unwrap();
    b.fill("#op-name", "Someone Else").await.unwrap();
    b.fill("#op-email", "else@lpse.example").await.unwrap();
    b.click("#create").await.unwrap();
    b.wait_for("#error").await.expect("refused");
    assert_eq!(
        events_of(&s, "operator-rina.audit").await.len(),
        created.len()
    );

    // A helpdesk operator to disable.
    b.fill("#op-username", "budi.hd").await.unwrap();
    b.fill("#op-name", "Budi Helpdesk").await.unwrap();
    b.fill("#op-email", "budi@lpse.example").await.unwrap();
    b.click("#create").await.unwrap();
    b.wait_for("#secret").await.unwrap();
    b.goto(&s.url("/console/admin/operators")).await.unwrap();
    b.click("form[action='/console/admin/operators/budi.hd/disable'] button")
        .await
        .unwrap();
    b.wait_for("#message.ok").await.expect("disabled");
    let budi = events_of(&s, "operator-budi.hd").await;
    let disabled = budi.last().unwrap();
    assert_eq!(disabled.event_type, "OperatorDisabled");
    assert_eq!(disabled.metadata.actor, console_actor("ani.admin", "admin"));

    // An API key: shown once, usable at once, listed by name, created by the admin.
    b.goto(&s.url("/console/admin/keys")).await.unwrap();
    b.fill("#key-name", "siem-prod").await.unwrap();
    b.wait_for("#key-role")
        .await
        .unwrap()
        .select_by_value("auditor")
        .await
        .unwrap();
    b.click("#create").await.unwrap();
    let key = b.text_of("#secret").await.unwrap();
    assert!(key.starts_with("spse_key"), "{key}");
    b.screenshot(&shots().join("admin-key-created.png"))
        .await
        .unwrap();
    let (status, body) = s.get("/v1/audit/verify?purpose=siem-check", &key).await;
    assert_eq!(status, StatusCode::OK, "the new key works at once: {body}");
    b.goto(&s.url("/console/admin/keys")).await.unwrap();
    assert!(b.text_of("#keys").await.unwrap().contains("siem-prod"));
    assert!(!b.client.source().await.unwrap().contains(&key));
    let key_event = all_events(&s)
        .await
        .into_iter()
        .find(|e| e.event_type == "ApiKeyCreated" && e.payload["name"] == "siem-prod")
        .expect("the key's event");
    assert_eq!(key_event.payload["role"], "auditor");
    assert_eq!(
        key_event.metadata.actor,
        console_actor("ani.admin", "admin")
    );

    // The admin's forms need their token.
    let admin_cookie = session_cookie(&b).await;
    let answer = s
        .client
        .post(s.url("/console/admin/keys"))
        .header("cookie", &admin_cookie)
        .form(&[("name", "no-token"), ("role", "portal")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    assert!(!all_events(&s)
        .await
        .iter()
        .any(|e| e.payload["name"] == "no-token"));
    // Nor does an admin disable themselves here.
    let csrf = b
        .wait_for("#create-key input[name=csrf]")
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    let answer = s
        .client
        .post(s.url("/console/admin/operators/ani.admin/disable"))
        .header("cookie", &admin_cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::CONFLICT);
    assert_eq!(
        events_of(&s, "operator-ani.admin")
            .await
            .last()
            .unwrap()
            .event_type,
        "OperatorSignedIn"
    );
    sign_out(&b).await;

    // The new auditor completes setup from the link and signs in; the admin pages refuse her.
    let rina_phone = set_up(&b, &s, &rina_link, false).await;
    sign_in(&b, &s, "rina.audit", &rina_phone).await;
    assert_eq!(path(&b).await, "/console/audit");
    b.goto(&s.url("/console/admin/operators")).await.unwrap();
    b.wait_for("#message.error").await.expect("refused");
    let cookie = session_cookie(&b).await;

    // The chain: never verified from the console yet; the button runs it and records it.
    b.goto(&s.url("/console/audit/chain?lang=id"))
        .await
        .unwrap();
    b.wait_for("#chain-never").await.unwrap();
    // The sweeps sign the log's head; the verification checks that signature too.
    spse_totp_api::housekeeping::sweep(&s.services)
        .await
        .unwrap();
    // (A sweep of the server's own may have signed first: the newest is shown either way.)
    let signed: i64 = sqlx::query_scalar("SELECT MAX(position) FROM audit_checkpoints")
        .fetch_one(&s.services.db.pool)
        .await
        .unwrap();
    b.fill("#purpose", "AUD-7 integritas").await.unwrap();
    b.click_to_load("#verify").await.unwrap();
    assert_eq!(b.text_of("#chain-result").await.unwrap(), "Utuh");
    assert!(b
        .text_of("#chain-who")
        .await
        .unwrap()
        .contains("rina.audit"));
    let checked: u64 = b.text_of("#chain-checked").await.unwrap().parse().unwrap();
    assert!(checked > 10, "{checked}");
    assert_eq!(
        b.text_of("#chain-checkpoint").await.unwrap(),
        signed.to_string()
    );
    b.screenshot(&shots().join("auditor-chain.png"))
        .await
        .unwrap();
    let reads = reads_with_purpose(&s, "AUD-7 integritas").await;
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0].payload["endpoint"], "POST /console/audit/chain");
    assert_eq!(
        reads[0].metadata.actor,
        console_actor("rina.audit", "auditor")
    );
    // Without its token the form runs nothing and records nothing.
    let verified_before = count(&s, "ChainVerified").await;
    let answer = s
        .client
        .post(s.url("/console/audit/chain"))
        .header("cookie", &cookie)
        .form(&[("purpose", "no token")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    assert_eq!(count(&s, "ChainVerified").await, verified_before);

    // The subject export, downloaded with the browser's session.
    let answer = s
        .client
        .get(s.url("/console/audit/export?user_type=penyedia&user_id=vendor88&purpose=PDP-2026-5"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let disposition = answer.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        disposition.starts_with("attachment; filename=\"export-penyedia-VENDOR88-"),
        "{disposition}"
    );
    let export: Value = answer.json().await.unwrap();
    assert_eq!(export["account"]["user_id"], "VENDOR88");
    assert!(export["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "TotpActivated"));
    assert!(export["reads"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("PDP-2026-5")));
    assert_eq!(reads_with_purpose(&s, "PDP-2026-5").await.len(), 1);
    // No purpose, no export, nothing recorded.
    let answer = s
        .client
        .get(s.url("/console/audit/export?user_type=penyedia&user_id=vendor88&purpose="))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    assert!(answer.headers().get("content-disposition").is_none());

    // The log-wide search with filters, then its CSV.
    b.goto(&s.url("/console/audit/search")).await.unwrap();
    b.fill("#purpose", "AUD-8 kode salah").await.unwrap();
    b.fill("#user_id", "vendor8").await.unwrap();
    b.fill("#event_type", "CodeRejected").await.unwrap();
    b.click_to_load("#search").await.unwrap();
    let table = b.text_of("#log").await.unwrap();
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(rows
        .iter()
        .all(|r| r.contains("CodeRejected") && r.contains("VENDOR88")));
    b.screenshot(&shots().join("auditor-log-search.png"))
        .await
        .unwrap();
    let csv_href = b
        .wait_for("#csv")
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .expect("a CSV link");
    let answer = s
        .client
        .get(s.url(&csv_href))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(answer.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert!(answer.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment; filename=\"audit-log-"));
    let csv = answer.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("position,recorded_at,user_type,user_id,type,actor_kind,actor"),
        "{csv}"
    );
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[1..]
        .iter()
        .all(|l| l.contains(",VENDOR88,CodeRejected,")));
    let reads = reads_with_purpose(&s, "AUD-8 kode salah").await;
    let endpoints: Vec<_> = reads
        .iter()
        .map(|r| r.payload["endpoint"].clone())
        .collect();
    assert_eq!(
        endpoints,
        [
            json!("GET /console/audit/search"),
            json!("GET /console/audit/search.csv")
        ]
    );
    for read in &reads {
        assert_eq!(read.payload["query"], "user_id=VENDOR8* type=CodeRejected");
        assert_eq!(read.metadata.actor, console_actor("rina.audit", "auditor"));
    }

    // What the admin did, found by actor.
    b.fill("#user_id", "").await.unwrap();
    b.fill("#event_type", "").await.unwrap();
    b.fill("#actor", "console:ani.admin").await.unwrap();
    b.click_to_load("#search").await.unwrap();
    let table = b.text_of("#log").await.unwrap();
    for kind in ["OperatorCreated", "OperatorDisabled", "ApiKeyCreated"] {
        assert!(table.contains(kind), "{kind}: {table}");
    }
    // A search without a purpose reads nothing.
    let answer = s
        .client
        .get(s.url("/console/audit/search.csv?purpose=&user_id=vendor8"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);

    // An event altered in the database by an insider who first drops the append-only guard: the
    // next verification names it.
    spse_totp_store::test_database::drop_append_only_guard(&s.services.db)
        .await
        .unwrap();
    let target = events_of(&s, "account-penyedia-OTHER1")
        .await
        .into_iter()
        .find(|e| e.event_type == "TotpActivated")
        .unwrap();
    let altered =
        sqlx::query("UPDATE events SET recorded_at = recorded_at + 1000000 WHERE position = $1")
            .bind(i64::try_from(target.position).unwrap())
            .execute(&s.services.db.pool)
            .await
            .unwrap();
    assert_eq!(altered.rows_affected(), 1);
    b.goto(&s.url("/console/audit/chain")).await.unwrap();
    assert_eq!(b.text_of("#chain-result").await.unwrap(), "Utuh");
    b.fill("#purpose", "AUD-9").await.unwrap();
    b.click_to_load("#verify").await.unwrap();
    assert_eq!(b.text_of("#chain-result").await.unwrap(), "RUSAK");
    let broken = b.text_of("#chain-broken").await.unwrap();
    assert!(broken.contains("account-penyedia-OTHER1"), "{broken}");
    sign_out(&b).await;

    // The admin resets the auditor's TOTP: a new link, shown once; her old device no longer signs in.
    sign_in(&b, &s, "ani.admin", &admin_phone).await;
    b.click("form[action='/console/admin/operators/rina.audit/reset-totp'] button")
        .await
        .unwrap();
    let new_link = b.text_of("#secret").await.unwrap();
    assert!(new_link.starts_with(&s.url("/console/setup?token=")));
    assert_ne!(new_link, rina_link);
    let reset = events_of(&s, "operator-rina.audit").await;
    let reset = reset.last().unwrap();
    assert_eq!(reset.event_type, "OperatorTotpReset");
    assert_eq!(reset.metadata.actor, console_actor("ani.admin", "admin"));
    sign_out(&b).await;
    b.goto(&s.url("/console/sign-in")).await.unwrap();
    b.fill("#username", "rina.audit").await.unwrap();
    b.fill("#password", PASSWORD).await.unwrap();
    b.fill("#code", &rina_phone.code_at(s.now())).await.unwrap();
    b.click("#submit").await.unwrap();
    b.wait_for("#error")
        .await
        .expect("the old device is refused");
    b.close().await.unwrap();
}

async fn count(s: &TestServer, event_type: &str) -> usize {
    all_events(s)
        .await
        .iter()
        .filter(|e| e.event_type == event_type)
        .count()
}

/// The id of the test server's key named `name`.
async fn key_id(s: &TestServer, name: &str) -> String {
    spse_totp_projections::api_keys::list(&s.services.db.pool)
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.name == name)
        .expect("the key is listed")
        .key_id
        .to_string()
}

#[tokio::test]
async fn an_admin_revokes_an_api_key_in_the_console_and_its_next_call_is_refused() {
    let Some(b) = Browser::start().await.expect("the browser starts") else {
        return;
    };
    let s = TestServer::start().await;
    std::fs::create_dir_all(shots()).unwrap();
    let admin_link = first_admin(&s, "ani.admin").await;
    let admin_phone = set_up(&b, &s, &admin_link, false).await;
    sign_in(&b, &s, "ani.admin", &admin_phone).await;

    // The portal's key works, so this instance knows it (and caches it).
    let (status, body) = s.start_login("penyedia", "vendor1").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let portal = key_id(&s, "test-portal").await;
    let row = format!("#key-{portal}");

    // Listed as active, with its last use, and a revoke button.
    b.goto(&s.url("/console/admin/keys")).await.unwrap();
    assert_eq!(b.text_of(&format!("{row} .status")).await.unwrap(), "aktif");
    let last_used = b.text_of(&format!("{row} .last-used")).await.unwrap();
    assert!(last_used.starts_with("2026-11-30 16:"), "{last_used}");
    b.screenshot(&shots().join("admin-keys.png")).await.unwrap();

    // "Cabut" asks for a confirmation first; nothing is written yet.
    b.click(&format!("{row} button.revoke")).await.unwrap();
    b.wait_for("#confirm-revoke")
        .await
        .expect("a confirmation step");
    assert!(b.text_of("#confirm").await.unwrap().contains(&portal));
    b.screenshot(&shots().join("admin-key-revoke.png"))
        .await
        .unwrap();
    let revoked = |events: Vec<RecordedEvent>| {
        events
            .into_iter()
            .filter(|e| e.event_type == "ApiKeyRevoked")
            .collect::<Vec<_>>()
    };
    assert!(revoked(all_events(&s).await).is_empty());

    // Without the form's token the revocation changes nothing.
    let answer = s
        .client
        .post(s.url(&format!("/console/admin/keys/{portal}/revoke")))
        .header("cookie", session_cookie(&b).await)
        .form(&[("confirm", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    assert!(revoked(all_events(&s).await).is_empty());
    let (status, body) = s.start_login("penyedia", "vendor2").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Confirmed: the key's very next call is refused, with the usual error shape.
    b.click("#confirm-revoke").await.unwrap();
    b.wait_for("#message.ok").await.expect("revoked");
    let (status, body) = s
        .post_in_english(
            "/v1/logins",
            &s.portal_key,
            json!({"user_type": "penyedia", "user_id": "vendor3"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{body}"
    );
    let events = revoked(all_events(&s).await);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].stream, format!("apikey-{portal}"));
    assert_eq!(
        events[0].metadata.actor,
        console_actor("ani.admin", "admin")
    );
    // Other keys still work.
    let (status, body) = s
        .get("/v1/audit/verify?purpose=after-revoke", &s.auditor_key)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The list shows it revoked, with no button; a stale form to revoke it again is refused.
    b.goto(&s.url("/console/admin/keys")).await.unwrap();
    assert_eq!(
        b.text_of(&format!("{row} .status")).await.unwrap(),
        "dicabut"
    );
    assert!(b
        .client
        .find_all(fantoccini::Locator::Css(&format!("{row} button.revoke")))
        .await
        .unwrap()
        .is_empty());
    let csrf = b
        .wait_for("#create-key input[name=csrf]")
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    let answer = s
        .client
        .post(s.url(&format!("/console/admin/keys/{portal}/revoke")))
        .header("cookie", session_cookie(&b).await)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::CONFLICT);
    assert_eq!(revoked(all_events(&s).await).len(), 1);
    b.close().await.unwrap();
}
