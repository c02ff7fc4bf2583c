//! Flow 3 end to end, with a real SMTP conversation on 127.0.0.1: the request, the email, the
//! page, the confirmation, and what a reset does to the old device; the token rules; the mail
//! server being down; enumeration; the rate limits under parallel requests.

use std::time::{Duration as StdDuration, Instant};

use chrono::Duration;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use spse_totp_tests::resets::{
    email_of, server_with_outbox, server_with_sink, wait_for_links, CAPTCHA_ANSWER, USER_IP,
};
use spse_totp_tests::smtp_sink::{ReceivedMail, SmtpSink};
use spse_totp_tests::{Authenticator, TestServer};

const ACCEPTED: &[u8] = br#"{"status":"accepted"}"#;

fn count(types: &[String], name: &str) -> usize {
    types.iter().filter(|t| *t == name).count()
}

/// The account's events other than mail outcomes, which the mailer appends on its own time.
async fn account_events(s: &TestServer, user: &str) -> Vec<String> {
    s.event_types("non_penyedia", user)
        .await
        .into_iter()
        .filter(|t| !t.ends_with("EmailSent") && !t.ends_with("EmailFailed"))
        .collect()
}

/// Waits (real time) until the account's stream holds `n` events of type `name`.
async fn wait_for_event(s: &TestServer, user: &str, name: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + StdDuration::from_secs(10);
    loop {
        let types = s.event_types("non_penyedia", user).await;
        if count(&types, name) >= n || Instant::now() > deadline {
            return types;
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

/// The reset links written to the outbox, waiting for `n` of them.
async fn outbox_links(s: &TestServer, n: usize) -> Vec<ReceivedMail> {
    let deadline = Instant::now() + StdDuration::from_secs(10);
    loop {
        let links: Vec<ReceivedMail> = s
            .outbox()
            .into_iter()
            .map(|data| ReceivedMail {
                from: String::new(),
                to: Vec::new(),
                data: data.replace('\n', "\r\n").replace("\r\r\n", "\r\n"),
            })
            .filter(|m| m.header("Subject").as_deref() == Some("Konfirmasi Permintaan Reset TOTP"))
            .collect();
        if links.len() >= n || Instant::now() > deadline {
            return links;
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

async fn account_status(s: &TestServer, user: &str) -> String {
    let (status, body) = s
        .get(&format!("/v1/accounts/non_penyedia/{user}"), &s.portal_key)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["totp_status"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn the_emailed_link_resets_totp_and_only_a_new_activation_works_afterwards() {
    let sink = SmtpSink::start().await;
    let s = server_with_sink(&sink).await;
    let old_phone = s.activate_with_email("non_penyedia", "ppk1").await;

    let (status, body) = s
        .request_reset("non_penyedia", "ppk1", &email_of("ppk1"), USER_IP)
        .await;
    assert_eq!((status, body.as_slice()), (StatusCode::ACCEPTED, ACCEPTED));

    let links = wait_for_links(&sink, 1).await;
    assert_eq!(links.len(), 1, "one reset email");
    let mail = &links[0];
    assert_eq!(mail.to, vec![format!("<{}>", email_of("ppk1"))]);
    let text = mail.readable();
    assert!(text.contains("PPK1") && text.contains(USER_IP) && text.contains("WIB"));
    assert!(text.contains(">Reset TOTP</a>"), "an HTML button");
    assert!(text.contains("text/plain") && text.contains("text/html"));
    assert!(
        text.contains(&format!("{}/reset-totp?token=", s.base)),
        "link on the configured base"
    );
    let token = mail.reset_token().expect("a token in the link");
    assert!(token.len() >= 43, "at least 256 bits of token: {token}");

    // Opening the page (as a mail scanner would) changes nothing.
    let (status, headers, html) = s.reset_page(&token, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("PPK1") && html.contains("Reset TOTP") && html.contains("confirm("));
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["cache-control"], "no-store");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'nonce-"));
    let (_, _, english) = s.reset_page(&token, Some("en-US,en;q=0.9,id;q=0.5")).await;
    assert!(english.contains("You are about to reset TOTP"));
    assert_eq!(account_status(&s, "ppk1").await, "active");

    let (status, body) = s.confirm_reset(&token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "reset");
    assert_eq!(body["totp_status"], "inactive");
    assert_eq!(account_status(&s, "ppk1").await, "inactive");

    // The next login asks for activation; the old phone's codes do not activate it.
    let (status, login) = s.start_login("non_penyedia", "ppk1").await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    assert_eq!(login["status"], "awaiting_activation");
    let login_id = login["login_id"].as_str().unwrap();
    let (status, body) = s
        .post(
            &format!("/v1/logins/{login_id}/code"),
            &s.portal_key,
            json!({"code": old_phone.code_at(s.now())}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // A new phone scanning the new QR activates.
    s.advance(Duration::seconds(30));
    let new_phone = Authenticator::scan(&login);
    let (status, body) = s
        .post(
            &format!("/v1/logins/{login_id}/code"),
            &s.portal_key,
            json!({"code": new_phone.code_at(s.now())}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(account_status(&s, "ppk1").await, "active");

    // Notices: the first activation, the reset, the second activation.
    let messages = sink.wait_for(4, StdDuration::from_secs(10)).await;
    let subjects: Vec<String> = messages
        .iter()
        .filter_map(|m| m.header("Subject"))
        .collect();
    assert_eq!(
        subjects
            .iter()
            .filter(|s| s.contains("telah diaktifkan"))
            .count(),
        2,
        "{subjects:?}"
    );
    assert_eq!(
        subjects.iter().filter(|s| s.contains("di-reset")).count(),
        1,
        "{subjects:?}"
    );
    let types = s.event_types("non_penyedia", "ppk1").await;
    assert_eq!(count(&types, "ResetEmailSent"), 1, "{types:?}");
    assert_eq!(count(&types, "TotpReset"), 1);
}

#[tokio::test]
async fn with_the_mail_server_down_the_link_is_retried_and_arrives_once() {
    let sink = SmtpSink::start().await;
    sink.stop().await;
    let s = server_with_sink(&sink).await;
    s.activate_with_email("non_penyedia", "ppk2").await;
    let (status, _) = s
        .request_reset("non_penyedia", "ppk2", &email_of("ppk2"), USER_IP)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // The activation notice fails first, and the link waits behind it.
    let types = wait_for_event(&s, "ppk2", "NoticeEmailFailed", 1).await;
    assert!(count(&types, "NoticeEmailFailed") >= 1, "{types:?}");
    // Time passes with the server still down: more failed attempts, each recorded.
    s.advance(Duration::seconds(3));
    let types = wait_for_event(&s, "ppk2", "NoticeEmailFailed", 2).await;
    assert!(count(&types, "NoticeEmailFailed") >= 2, "{types:?}");
    assert!(sink.messages().is_empty());

    sink.resume().await;
    s.advance(Duration::seconds(10));
    let links = wait_for_links(&sink, 1).await;
    assert_eq!(links.len(), 1);
    // Plenty of time and polling later, still exactly one of each.
    s.advance(Duration::minutes(5));
    tokio::time::sleep(StdDuration::from_millis(800)).await;
    let messages = sink.messages();
    assert_eq!(
        spse_totp_tests::resets::reset_links(&messages).len(),
        1,
        "the link arrives once"
    );
    assert_eq!(messages.len(), 2, "one notice and one link");
    let types = s.event_types("non_penyedia", "ppk2").await;
    assert_eq!(count(&types, "ResetEmailSent"), 1, "{types:?}");
    assert_eq!(count(&types, "NoticeEmailSent"), 1, "{types:?}");
    // The token in the late email still works.
    let token = links[0].reset_token().unwrap();
    assert_eq!(s.confirm_reset(&token).await.0, StatusCode::OK);
}

#[tokio::test]
async fn unknown_user_wrong_email_and_right_email_answer_byte_for_byte_alike() {
    let s = server_with_outbox().await;
    s.activate_with_email("non_penyedia", "ppk3").await;
    let cases = [
        ("ghost", email_of("ghost")),
        ("ppk3", "intruder@example.com".to_owned()),
        ("ppk3", email_of("ppk3")),
    ];
    let mut timings: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut bodies = Vec::new();
    for round in 0..12 {
        for (i, (user, email)) in cases.iter().enumerate() {
            let ip = format!("198.51.100.{}", round * 3 + i + 1);
            let captcha_id = s.captcha().await;
            let started = Instant::now();
            let (status, body) = s
                .request_reset_with(
                    json!({"user_type": "non_penyedia", "user_id": user, "email": email,
                    "captcha_id": captcha_id, "captcha_answer": CAPTCHA_ANSWER, "client_ip": ip}),
                )
                .await;
            timings[i].push(started.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(status, StatusCode::ACCEPTED);
            bodies.push(body);
        }
    }
    assert!(
        bodies.iter().all(|b| b.as_slice() == ACCEPTED),
        "byte-identical answers"
    );
    // Only the right email asked for a link (three an hour), and no link went elsewhere.
    let types = s.event_types("non_penyedia", "ppk3").await;
    assert_eq!(count(&types, "ResetRequested"), 3, "{types:?}");
    assert_eq!(count(&types, "ResetRequestDeclined"), 12 + 9);
    // Every path does one durable append, so the timings overlap: each group's middle half
    // meets every other group's range.
    let quartiles = |t: &mut Vec<f64>| {
        t.sort_by(|a, b| a.total_cmp(b));
        (
            t[t.len() / 4],
            t[t.len() / 2],
            t[3 * t.len() / 4],
            t[0],
            t[t.len() - 1],
        )
    };
    let stats: Vec<_> = timings.iter_mut().map(quartiles).collect();
    println!(
        "timings ms (q1, median, q3, min, max): unknown {:?}, wrong email {:?}, right email {:?}",
        stats[0], stats[1], stats[2]
    );
    for a in &stats {
        for b in &stats {
            assert!(
                a.0 <= b.4 && b.0 <= a.4,
                "distributions do not overlap: {stats:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_used_link_stays_used_after_a_new_activation() {
    let s = server_with_outbox().await;
    s.activate_with_email("non_penyedia", "ppk4").await;
    s.request_reset("non_penyedia", "ppk4", &email_of("ppk4"), USER_IP)
        .await;
    let token = outbox_links(&s, 1).await[0].reset_token().unwrap();
    assert_eq!(s.confirm_reset(&token).await.0, StatusCode::OK);
    s.activate_with_email("non_penyedia", "ppk4").await;
    let before = account_events(&s, "ppk4").await;
    let (status, body) = s.confirm_reset(&token).await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert_eq!(body["error"]["code"], "token_used");
    let (status, _, html) = s.reset_page(&token, None).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(html.contains("sudah digunakan"));
    assert_eq!(account_events(&s, "ppk4").await, before);
    assert_eq!(account_status(&s, "ppk4").await, "active");
}

#[tokio::test]
async fn a_link_used_twice_is_refused_the_second_time() {
    let s = server_with_outbox().await;
    s.activate_with_email("non_penyedia", "ppk5").await;
    s.request_reset("non_penyedia", "ppk5", &email_of("ppk5"), USER_IP)
        .await;
    let token = outbox_links(&s, 1).await[0].reset_token().unwrap();
    assert_eq!(s.confirm_reset(&token).await.0, StatusCode::OK);
    let before = account_events(&s, "ppk5").await;
    let (status, body) = s.confirm_reset(&token).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::GONE, Some("token_used"))
    );
    let (_, _, html) = s.reset_page(&token, None).await;
    assert!(html.contains("sudah digunakan"));
    assert_eq!(account_events(&s, "ppk5").await, before);
}

#[tokio::test]
async fn an_expired_link_is_refused_and_changes_nothing() {
    let s = server_with_outbox().await;
    s.activate_with_email("non_penyedia", "ppk6").await;
    s.request_reset("non_penyedia", "ppk6", &email_of("ppk6"), USER_IP)
        .await;
    let token = outbox_links(&s, 1).await[0].reset_token().unwrap();
    s.advance(Duration::minutes(61));
    let before = account_events(&s, "ppk6").await;
    let (status, body) = s.confirm_reset(&token).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::GONE, Some("token_expired"))
    );
    let (status, _, html) = s.reset_page(&token, None).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(html.contains("kedaluwarsa"));
    assert_eq!(account_events(&s, "ppk6").await, before);
    assert_eq!(account_status(&s, "ppk6").await, "active");
}

#[tokio::test]
async fn a_newer_request_supersedes_the_older_link() {
    let s = server_with_outbox().await;
    s.activate_with_email("non_penyedia", "ppk7").await;
    s.request_reset("non_penyedia", "ppk7", &email_of("ppk7"), USER_IP)
        .await;
    let first = outbox_links(&s, 1).await[0].reset_token().unwrap();
    s.advance(Duration::minutes(1));
    s.request_reset("non_penyedia", "ppk7", &email_of("ppk7"), USER_IP)
        .await;
    let links = outbox_links(&s, 2).await;
    let second = links
        .iter()
        .filter_map(ReceivedMail::reset_token)
        .find(|t| *t != first)
        .expect("a second link");
    let before = account_events(&s, "ppk7").await;
    let (status, body) = s.confirm_reset(&first).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::GONE, Some("token_superseded"))
    );
    assert_eq!(account_events(&s, "ppk7").await, before);
    assert_eq!(s.confirm_reset(&second).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_tampered_token_is_refused_and_changes_nothing() {
    let s = server_with_outbox().await;
    s.activate_with_email("non_penyedia", "ppk8").await;
    s.request_reset("non_penyedia", "ppk8", &email_of("ppk8"), USER_IP)
        .await;
    let token = outbox_links(&s, 1).await[0].reset_token().unwrap();
    let before = account_events(&s, "ppk8").await;
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for bad in [
        tampered.as_str(),
        &token[..token.len() - 2],
        "",
        "x' OR 1=1 --",
    ] {
        let (status, body) = s.confirm_reset(bad).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_token");
        let (status, _, html) = s.reset_page(bad, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(html.contains("tidak valid"));
    }
    assert_eq!(account_events(&s, "ppk8").await, before);
    assert_eq!(account_status(&s, "ppk8").await, "active");
}

#[tokio::test]
async fn the_per_account_limit_holds_under_fifty_parallel_requests() {
    let s = server_with_outbox().await;
    s.activate_with_email("non_penyedia", "ppk9").await;
    let mut captchas = Vec::new();
    for _ in 0..50 {
        captchas.push(s.captcha().await);
    }
    let answers = join_all(captchas.iter().enumerate().map(|(i, captcha_id)| {
        s.request_reset_with(json!({"user_type": "non_penyedia", "user_id": "ppk9",
            "email": email_of("ppk9"), "captcha_id": captcha_id, "captcha_answer": CAPTCHA_ANSWER,
            "client_ip": format!("192.0.2.{}", i + 1)}))
    }))
    .await;
    assert!(answers
        .iter()
        .all(|(status, body)| *status == StatusCode::ACCEPTED && body.as_slice() == ACCEPTED));
    let types = s.event_types("non_penyedia", "ppk9").await;
    assert_eq!(count(&types, "ResetRequested"), 3, "three an hour, exactly");
    assert_eq!(count(&types, "ResetRequestDeclined"), 47);
    // Each newer link replaces the one before; a link replaced before its turn is not mailed.
    let mailed = outbox_links(&s, 1).await.len();
    assert!((1..=3).contains(&mailed), "{mailed} links mailed");
}

#[tokio::test]
async fn the_per_address_limit_holds_under_fifty_parallel_requests() {
    let s = TestServer::start_with(|c| {
        c.reset.captcha_test_answer = Some(CAPTCHA_ANSWER.to_owned());
        c.reset.max_per_ip_per_hour = 5;
    })
    .await;
    let mut captchas = Vec::new();
    for _ in 0..50 {
        captchas.push(s.captcha().await);
    }
    let answers = join_all(captchas.iter().enumerate().map(|(i, captcha_id)| {
        s.request_reset_with(
            json!({"user_type": "penyedia", "user_id": format!("vendor{i}"),
            "email": "a@b.example", "captcha_id": captcha_id, "captcha_answer": CAPTCHA_ANSWER,
            "client_ip": "192.0.2.99"}),
        )
    }))
    .await;
    assert!(answers
        .iter()
        .all(|(status, _)| *status == StatusCode::ACCEPTED));
    let log = s
        .services
        .db
        .events
        .read_stream("reset-requests", 1, 1000)
        .await
        .unwrap();
    let throttled = log
        .iter()
        .filter(|e| e.event_type == "ResetRequestThrottled")
        .count();
    let unmatched = log
        .iter()
        .filter(|e| e.event_type == "ResetRequestUnmatched")
        .count();
    assert_eq!((unmatched, throttled), (5, 45));
}

#[tokio::test]
async fn a_get_of_the_page_never_resets_and_the_openapi_lists_the_routes() {
    let s = server_with_outbox().await;
    let (status, doc) = s.get("/openapi.json", &s.portal_key).await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/v1/captcha",
        "/v1/resets",
        "/v1/resets/confirm",
        "/reset-totp",
        "/v1/helpdesk/accounts/{user_type}/{user_id}",
        "/v1/helpdesk/accounts/{user_type}/{user_id}/reset",
        "/v1/helpdesk/accounts/{user_type}/{user_id}/unlock",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    s.activate_with_email("non_penyedia", "ppk10").await;
    s.request_reset("non_penyedia", "ppk10", &email_of("ppk10"), USER_IP)
        .await;
    let token = outbox_links(&s, 1).await[0].reset_token().unwrap();
    for _ in 0..3 {
        assert_eq!(s.reset_page(&token, None).await.0, StatusCode::OK);
    }
    assert_eq!(account_status(&s, "ppk10").await, "active");
    // The link is built on the configured base URL, whatever Host the request named.
    assert!(outbox_links(&s, 1).await[0]
        .readable()
        .contains(&format!("{}/reset-totp", s.base)));
}

#[tokio::test]
async fn a_restart_sends_the_pending_link_and_nothing_already_sent() {
    let sink = SmtpSink::start().await;
    let mut s = server_with_sink(&sink).await;
    s.activate_with_email("non_penyedia", "ppk11").await;
    s.request_reset("non_penyedia", "ppk11", &email_of("ppk11"), USER_IP)
        .await;
    assert_eq!(wait_for_links(&sink, 1).await.len(), 1);
    let notices = sink.messages().len() - 1;

    // The mail server goes down, a second request fails to go out, the service stops.
    sink.stop().await;
    s.advance(Duration::minutes(1));
    s.request_reset("non_penyedia", "ppk11", &email_of("ppk11"), USER_IP)
        .await;
    wait_for_event(&s, "ppk11", "ResetEmailFailed", 1).await;
    let config = s.services.config.clone();
    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
    s.stop().await;
    tokio::time::sleep(StdDuration::from_millis(500)).await;

    // Back up, on the same database and key: only the pending link goes out.
    sink.resume().await;
    let s = TestServer::start_in(dir, config).await;
    s.advance(Duration::minutes(2));
    let links = wait_for_links(&sink, 2).await;
    assert_eq!(links.len(), 2, "the pending link arrives after the restart");
    s.advance(Duration::minutes(1));
    tokio::time::sleep(StdDuration::from_millis(800)).await;
    let messages = sink.messages();
    assert_eq!(
        spse_totp_tests::resets::reset_links(&messages).len(),
        2,
        "nothing sent twice"
    );
    assert_eq!(messages.len(), 2 + notices);
    let types = s.event_types("non_penyedia", "ppk11").await;
    assert_eq!(count(&types, "ResetEmailSent"), 2, "{types:?}");
    // The link of the second request works.
    let token = links
        .iter()
        .rev()
        .find_map(ReceivedMail::reset_token)
        .unwrap();
    assert_eq!(s.confirm_reset(&token).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_second_mail_sender_on_one_database_sends_nothing_twice() {
    use spse_totp_commands::resets::ResetTokens;
    use spse_totp_projections::mail::{MailSender, MailSettings, MailTransport};
    let s = server_with_outbox().await;
    s.activate_with_email("non_penyedia", "ppk12").await;
    s.settle_mail().await;
    let key = spse_totp_api::app::master_key(&s.services.config).unwrap();
    let tokens = ResetTokens::new(&key);
    let second = MailSender::new(
        &s.services.db,
        MailTransport::outbox(s.dir.path().join("other-outbox")),
        std::sync::Arc::new(move |id| tokens.token(id)),
        s.clock.clone(),
        MailSettings::default(),
    );
    let (status, _) = s
        .request_reset(
            "non_penyedia",
            "ppk12",
            &spse_totp_tests::resets::email_of("ppk12"),
            USER_IP,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // Both senders work the same owed message; each claims it before sending.
    for _ in 0..5 {
        second.round().await.unwrap();
    }
    s.settle_mail().await;
    second.round().await.unwrap();
    let other: usize = std::fs::read_dir(s.dir.path().join("other-outbox"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .filter(|m| m.contains("Konfirmasi Permintaan Reset TOTP"))
                .count()
        })
        .unwrap_or(0);
    let own = s
        .outbox()
        .iter()
        .filter(|m| m.contains("Konfirmasi Permintaan Reset TOTP"))
        .count();
    assert_eq!(own + other, 1, "the link is sent once, by one of them");
    let types = s.event_types("non_penyedia", "ppk12").await;
    assert_eq!(count(&types, "ResetEmailSent"), 1, "{types:?}");
}

#[tokio::test]
async fn events_that_send_nothing_are_passed_without_a_write_each() {
    let s = server_with_outbox().await;
    s.activate_with_email("non_penyedia", "ppk13").await;
    s.settle_mail().await;
    let stored = || async {
        let position: i64 = sqlx::query_scalar(
            "SELECT position FROM projection_checkpoints WHERE projector = 'mail_dispatcher'",
        )
        .fetch_one(&s.services.db.pool)
        .await
        .unwrap();
        u64::try_from(position).unwrap()
    };
    let after_activation = stored().await;
    assert!(
        after_activation > 0,
        "the activation notice is recorded at once"
    );
    // Logins call for no message.
    for _ in 0..3 {
        let (status, _) = s.start_login("non_penyedia", "ppk13").await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let head = s.services.db.events.head_position().await.unwrap();
    s.settle_mail().await;
    assert!(*s.services.mail_handled.borrow() >= head);
    assert_eq!(
        stored().await,
        after_activation,
        "passing over a login is not a write"
    );
}
