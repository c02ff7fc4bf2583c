//! Issue 13, section 3: users hear about every change to their second factor. Over the real
//! server and a real SMTP conversation on 127.0.0.1: a notice in Bahasa Indonesia on activation
//! (typed code and device), each lock, unlock and reset by the helpdesk, and disable, each with
//! the time in the LPSE's zone and the user's address (the browser the portal relayed, never the
//! portal's own); the QR's issuer and label; and a notice waiting out a mail server that is down.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use spse_totp_api::config::Config;
use spse_totp_domain::AccountEvent;
use spse_totp_projections::mail::message::LocalZone;
use spse_totp_projections::mail::{SmtpSettings, SmtpTls};
use spse_totp_tests::resets::{email_of, CAPTCHA_ANSWER, USER_IP};
use spse_totp_tests::smtp_sink::{ReceivedMail, SmtpSink};
use spse_totp_tests::{wrong_code, Authenticator, TestServer};

const OPERATOR: &str = "Siti (helpdesk LPSE)";
/// The address `TestServer::start_login` relays for the user's browser.
const BROWSER_IP: &str = "10.20.30.40";

async fn server(sink: &SmtpSink, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let port = sink.port();
    TestServer::start_with(move |config| {
        config.reset.captcha_test_answer = Some(CAPTCHA_ANSWER.to_owned());
        config.mail.smtp = Some(SmtpSettings {
            host: "127.0.0.1".to_owned(),
            port,
            tls: SmtpTls::None,
            username: None,
            password: None,
            timeout: StdDuration::from_secs(5),
        });
        tweak(config);
    })
    .await
}

async fn helpdesk(s: &TestServer, path: &str, body: Value) -> (StatusCode, Value) {
    let response = s
        .client
        .post(s.url(&format!("/v1/helpdesk/accounts/non_penyedia/ppk1/{path}")))
        .bearer_auth(&s.helpdesk_key)
        .header("x-operator", OPERATOR)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The messages with this subject, after the mailer has handled everything in the log.
async fn with_subject(s: &TestServer, sink: &SmtpSink, subject: &str) -> Vec<ReceivedMail> {
    s.settle_mail().await;
    sink.messages()
        .into_iter()
        .filter(|m| m.header("Subject").as_deref() == Some(subject))
        .collect()
}

/// What a notice must say in both parts: the account, the time in the zone, the address.
fn assert_notice(mail: &ReceivedMail, to: &str, at: &str, address: &str, says: &[&str]) {
    assert_eq!(mail.to, vec![format!("<{to}>")]);
    let text = mail.readable();
    assert!(
        text.contains("text/plain") && text.contains("text/html"),
        "{text}"
    );
    for needle in ["Yth.", "User ID", "PPK1", "Non Penyedia", at, address]
        .iter()
        .chain(says)
    {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    assert!(
        !text.contains("127.0.0.1"),
        "the portal's own address is not the user's:\n{text}"
    );
}

async fn five_wrong_codes(s: &TestServer, phone: &Authenticator) -> String {
    let (status, login) = s.start_login("non_penyedia", "ppk1").await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    let login_id = login["login_id"].as_str().unwrap().to_owned();
    let mut last = StatusCode::OK;
    for _ in 0..5 {
        last = s
            .post(
                &format!("/v1/logins/{login_id}/code"),
                &s.portal_key,
                json!({"code": wrong_code(phone, s.now())}),
            )
            .await
            .0;
    }
    assert_eq!(last, StatusCode::LOCKED);
    login_id
}

fn next_step(s: &TestServer) {
    s.advance(Duration::seconds(30));
}

#[tokio::test]
async fn every_change_to_the_second_factor_is_mailed_with_the_time_and_the_users_address() {
    let sink = SmtpSink::start().await;
    let s = server(&sink, |_| {}).await;
    let to = email_of("ppk1");
    let wib = |at: DateTime<Utc>| LocalZone::Wib.format(at);

    // Activation by a code the portal relays: the user's browser, not the portal's address.
    let activated_at = s.now();
    let phone = s.activate_with_email("non_penyedia", "ppk1").await;
    let mails = with_subject(
        &s,
        &sink,
        "Pemberitahuan: TOTP akun SPSE Anda telah diaktifkan",
    )
    .await;
    assert_eq!(mails.len(), 1);
    assert_notice(&mails[0], &to, &wib(activated_at), USER_IP, &["diaktifkan"]);

    // Each lock is a notice, with the lock's end and its number.
    next_step(&s);
    let locked_at = s.now();
    five_wrong_codes(&s, &phone).await;
    let subject = "Pemberitahuan: akun SPSE Anda dikunci sementara";
    let mails = with_subject(&s, &sink, subject).await;
    assert_eq!(mails.len(), 1, "one notice for one lock");
    let until = wib(locked_at + Duration::minutes(15));
    assert_notice(
        &mails[0],
        &to,
        &wib(locked_at),
        BROWSER_IP,
        &[
            "dikunci sementara",
            &format!("sampai {until}"),
            "Kunci ke- : 1",
        ],
    );

    // The helpdesk lifts it: a notice.
    s.advance(Duration::minutes(1));
    let unlocked_at = s.now();
    let (status, body) = helpdesk(&s, "unlock", json!({"reason": "verified by phone"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mails = with_subject(
        &s,
        &sink,
        "Pemberitahuan: kunci akun SPSE Anda telah dibuka",
    )
    .await;
    assert_eq!(mails.len(), 1);
    // The helpdesk's request carries no user's address of a login: the caller's is shown.
    let unlock_text = mails[0].readable();
    assert!(unlock_text.contains(&wib(unlocked_at)), "{unlock_text}");
    assert!(unlock_text.contains("helpdesk LPSE"), "{unlock_text}");

    // A second lock is a second notice.
    next_step(&s);
    five_wrong_codes(&s, &phone).await;
    assert_eq!(with_subject(&s, &sink, subject).await.len(), 2, "each lock");
    helpdesk(&s, "unlock", json!({"reason": "verified again"})).await;

    // Reset by the helpdesk.
    let reset_at = s.now();
    let (status, body) = helpdesk(
        &s,
        "reset",
        json!({"reason": "lost phone", "ticket": "LPSE-42"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mails = with_subject(
        &s,
        &sink,
        "Pemberitahuan: TOTP akun SPSE Anda telah di-reset",
    )
    .await;
    assert_eq!(mails.len(), 1);
    let text = mails[0].readable();
    assert!(
        text.contains(&wib(reset_at)) && text.contains("helpdesk"),
        "{text}"
    );

    // Activation on the push-capable device: the browser that showed the QR code.
    next_step(&s);
    let device_at = s.now();
    let (phone, _) = s.activate_by_device("non_penyedia", "ppk1").await;
    let mails = with_subject(
        &s,
        &sink,
        "Pemberitahuan: TOTP akun SPSE Anda telah diaktifkan",
    )
    .await;
    assert_eq!(mails.len(), 2);
    assert_notice(&mails[1], &to, &wib(device_at), BROWSER_IP, &["Test phone"]);

    // Disable, relayed by the portal after a fresh approval.
    next_step(&s);
    let (_, login) = s.start_login("non_penyedia", "ppk1").await;
    let login_id = login["login_id"].as_str().unwrap();
    let (status, body) = s
        .post(
            &format!("/v1/logins/{login_id}/code"),
            &s.portal_key,
            json!({"code": phone.code_at(s.now())}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    next_step(&s);
    let disabled_at = s.now();
    let (status, body) = s
        .post(
            "/v1/accounts/non_penyedia/ppk1/disable",
            &s.portal_key,
            json!({"login_id": login_id, "code": phone.code_at(s.now())}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mails = with_subject(
        &s,
        &sink,
        "Pemberitahuan: TOTP akun SPSE Anda telah dinonaktifkan",
    )
    .await;
    assert_eq!(mails.len(), 1);
    assert_notice(
        &mails[0],
        &to,
        &wib(disabled_at),
        BROWSER_IP,
        &["dinonaktifkan"],
    );

    // Each notice is sent once, and its outcome is recorded.
    let sent: Vec<String> = s
        .services
        .db
        .events
        .read_stream("account-non_penyedia-PPK1", 1, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| {
            match AccountEvent::from_stored(&e.event_type, e.schema_version, e.payload).ok()? {
                AccountEvent::NoticeEmailSent { notice, .. } => Some(notice.as_str().to_owned()),
                _ => None,
            }
        })
        .collect();
    let mut sorted = sent.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "activated",
            "activated",
            "disabled",
            "locked",
            "locked",
            "reset",
            "unlocked",
            "unlocked"
        ],
        "{sent:?}"
    );
    assert_eq!(
        sink.messages().len(),
        sent.len(),
        "nothing else, nothing twice"
    );
}

#[tokio::test]
async fn times_are_told_in_the_lpse_zone_and_the_qr_names_the_issuer_and_user_type() {
    let sink = SmtpSink::start().await;
    let s = server(&sink, |config| {
        config.lpse.time_zone = LocalZone::Wita;
        config.lpse.issuer = "LPSE Kota Makassar".to_owned();
    })
    .await;

    // One person with a penyedia and a non-penyedia account: two entries an app tells apart.
    let mut labels = Vec::new();
    for user_type in ["penyedia", "non_penyedia"] {
        let (status, login) = s.start_login(user_type, "budi").await;
        assert_eq!(status, StatusCode::CREATED, "{login}");
        let uri = url::Url::parse(login["activation"]["otpauth_uri"].as_str().unwrap()).unwrap();
        let issuer = uri
            .query_pairs()
            .find(|(k, _)| k == "issuer")
            .map(|(_, v)| v.into_owned());
        assert_eq!(issuer.as_deref(), Some("LPSE Kota Makassar"));
        let label: String = url::form_urlencoded::parse(&uri.path().as_bytes()[1..])
            .map(|(k, v)| {
                if v.is_empty() {
                    k.into_owned()
                } else {
                    format!("{k}={v}")
                }
            })
            .collect();
        labels.push(label);
    }
    assert_eq!(
        labels,
        [
            "LPSE Kota Makassar:BUDI (Penyedia)",
            "LPSE Kota Makassar:BUDI (Non Penyedia)"
        ]
    );

    // 09:00:10 UTC is 17.00 WITA.
    s.activate_with_email("non_penyedia", "ppk1").await;
    let mails = with_subject(
        &s,
        &sink,
        "Pemberitahuan: TOTP akun SPSE Anda telah diaktifkan",
    )
    .await;
    assert_eq!(mails.len(), 1);
    let text = mails[0].readable();
    assert!(text.contains("30 November 2026 pukul 17.00 WITA"), "{text}");
    assert!(!text.contains("WIB"), "{text}");
}

#[tokio::test]
async fn a_lock_notice_waits_out_a_mail_server_that_is_down_and_arrives_once() {
    let sink = SmtpSink::start().await;
    let s = server(&sink, |_| {}).await;
    let phone = s.activate_with_email("non_penyedia", "ppk1").await;
    s.settle_mail().await;
    sink.stop().await;

    // The request answers 423 at once; the notice is the mailer's to send, and it fails.
    next_step(&s);
    five_wrong_codes(&s, &phone).await;
    let failed = |s: &TestServer| {
        let events = s.services.db.events.clone();
        async move {
            events
                .read_stream("account-non_penyedia-PPK1", 1, 10_000)
                .await
                .unwrap()
                .into_iter()
                .filter_map(|e| {
                    match AccountEvent::from_stored(&e.event_type, e.schema_version, e.payload)
                        .ok()?
                    {
                        AccountEvent::NoticeEmailFailed {
                            notice, retry_at, ..
                        } if notice.as_str() == "locked" => Some(retry_at),
                        _ => None,
                    }
                })
                .collect::<Vec<_>>()
        }
    };
    let deadline = std::time::Instant::now() + StdDuration::from_secs(10);
    while failed(&s).await.is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    let failures = failed(&s).await;
    assert!(
        !failures.is_empty() && failures.iter().all(Option::is_some),
        "a failure with a retry: {failures:?}"
    );

    sink.resume().await;
    s.advance(Duration::minutes(1));
    let subject = "Pemberitahuan: akun SPSE Anda dikunci sementara";
    let arrived = |sink: &SmtpSink| {
        sink.messages()
            .iter()
            .filter(|m| m.header("Subject").as_deref() == Some(subject))
            .count()
    };
    let deadline = std::time::Instant::now() + StdDuration::from_secs(10);
    while arrived(&sink) == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    assert_eq!(
        arrived(&sink),
        1,
        "the notice arrives once the server is back"
    );
    s.advance(Duration::minutes(30));
    tokio::time::sleep(StdDuration::from_millis(500)).await;
    assert_eq!(with_subject(&s, &sink, subject).await.len(), 1, "once");
}
