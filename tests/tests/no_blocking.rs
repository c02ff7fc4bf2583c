//! Issue 13, section 2: no one can block or impersonate another user. A valid reset link always
//! resets, whatever junk came from the same address; the client address is taken from trusted
//! proxies only; the portal's relayed calls record the user's address, not the portal's.

use std::time::{Duration as StdDuration, Instant};

use reqwest::StatusCode;
use spse_totp_tests::resets::{email_of, server_with_outbox, USER_IP};
use spse_totp_tests::smtp_sink::ReceivedMail;
use spse_totp_tests::TestServer;

/// The reset token mailed to the outbox, waiting for it.
async fn mailed_token(s: &TestServer) -> String {
    let deadline = Instant::now() + StdDuration::from_secs(10);
    loop {
        let token = s.outbox().into_iter().find_map(|data| {
            ReceivedMail {
                from: String::new(),
                to: Vec::new(),
                data: data.replace('\n', "\r\n").replace("\r\r\n", "\r\n"),
            }
            .reset_token()
        });
        if let Some(token) = token {
            return token;
        }
        assert!(Instant::now() < deadline, "no reset link in the outbox");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn junk_from_a_shared_address_never_blocks_a_valid_reset_link() {
    let s = server_with_outbox().await;
    s.activate_with_email("non_penyedia", "ppk1").await;
    let (status, _) = s
        .request_reset("non_penyedia", "ppk1", &email_of("ppk1"), USER_IP)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let token = mailed_token(&s).await;

    // Every call of this test comes from 127.0.0.1, as every user's does behind one proxy.
    let mut statuses = Vec::new();
    for i in 0..70 {
        let (status, body) = s.confirm_reset(&format!("junk-{i}")).await;
        statuses.push((status, body["error"]["code"].as_str().map(str::to_owned)));
    }
    assert!(statuses[..60]
        .iter()
        .all(|(s, c)| *s == StatusCode::NOT_FOUND && c.as_deref() == Some("invalid_token")));
    assert!(statuses[60..]
        .iter()
        .all(|(s, c)| *s == StatusCode::TOO_MANY_REQUESTS
            && c.as_deref() == Some("too_many_requests")));

    let (status, body) = s.confirm_reset(&token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["totp_status"], "inactive");
}

/// The metadata `client_ip` of each event of the account's stream, by event type.
async fn recorded_addresses(s: &TestServer, stream: &str) -> Vec<(String, Option<String>)> {
    s.services
        .db
        .events
        .read_stream(stream, 1, 10_000)
        .await
        .expect("stream")
        .into_iter()
        .map(|e| (e.event_type, e.metadata.client_ip))
        .collect()
}

/// Starts a login for `user` with `X-Forwarded-For: forwarded`; the address recorded for it.
async fn address_seen(s: &TestServer, user: &str, forwarded: &str) -> Option<String> {
    let response = s
        .client
        .post(s.url("/v1/logins"))
        .bearer_auth(&s.portal_key)
        .header("X-Forwarded-For", forwarded)
        .json(&serde_json::json!({"user_type": "penyedia", "user_id": user}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::CREATED);
    recorded_addresses(
        s,
        &format!("account-penyedia-{}", user.to_ascii_uppercase()),
    )
    .await
    .into_iter()
    .find(|(t, _)| t == "LoginStarted")
    .and_then(|(_, ip)| ip)
}

#[tokio::test]
async fn the_client_is_the_rightmost_address_no_trusted_proxy_wrote() {
    let s = TestServer::start_with(|c| {
        c.trusted_proxies =
            spse_totp_api::client_address::TrustedProxies::parse_list("127.0.0.1, 10.0.0.0/8")
                .expect("networks");
    })
    .await;
    // The client forged the leftmost entry; the proxies appended what they saw.
    assert_eq!(
        address_seen(&s, "v1", "6.6.6.6, 198.51.100.9, 10.1.2.3").await,
        Some("198.51.100.9".to_owned())
    );
    // Only trusted hops: the leftmost is the client.
    assert_eq!(
        address_seen(&s, "v2", "10.9.9.9, 10.1.2.3").await,
        Some("10.9.9.9".to_owned())
    );

    // Without trusted proxies the header is nobody's word.
    let plain = TestServer::start().await;
    assert_eq!(
        address_seen(&plain, "v3", "198.51.100.9").await,
        Some("127.0.0.1".to_owned())
    );
}

/// The outbox's messages with this subject, waiting for one.
async fn mailed(s: &TestServer, subject: &str) -> Vec<String> {
    let deadline = Instant::now() + StdDuration::from_secs(10);
    loop {
        let found: Vec<String> = s
            .outbox()
            .into_iter()
            .map(|data| ReceivedMail {
                from: String::new(),
                to: Vec::new(),
                data: data.replace('\n', "\r\n").replace("\r\r\n", "\r\n"),
            })
            .filter(|m| m.header("Subject").as_deref() == Some(subject))
            .map(|m| m.readable())
            .collect();
        if !found.is_empty() || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn relayed_calls_record_the_users_address_not_the_portals() {
    let s = server_with_outbox().await;
    // The login records the user's address; the code is relayed without one.
    s.activate_with_email("non_penyedia", "ppk1").await;
    let stream = "account-non_penyedia-PPK1";
    let seen = recorded_addresses(&s, stream).await;
    for kind in ["TotpActivated", "LoginApproved"] {
        assert!(
            seen.iter()
                .any(|(t, ip)| t == kind && ip.as_deref() == Some(USER_IP)),
            "{kind}: {seen:?}"
        );
    }
    let notices = mailed(
        &s,
        spse_totp_projections::mail::message::ACTIVATION_NOTICE_SUBJECT,
    )
    .await;
    assert_eq!(notices.len(), 1);
    assert!(notices[0].contains(USER_IP), "{}", notices[0]);
    assert!(!notices[0].contains("127.0.0.1"), "{}", notices[0]);

    // A value the call gives wins; a cancel relays one too, or falls back to the login's.
    let start = |ua: &'static str| {
        let s = &s;
        async move {
            let (status, login) = s
                .post(
                    "/v1/logins",
                    &s.portal_key,
                    serde_json::json!({"user_type": "non_penyedia", "user_id": "ppk1",
                        "client_ip": USER_IP, "user_agent": ua}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{login}");
            login["login_id"].as_str().expect("id").to_owned()
        }
    };
    let first = start("Firefox/128").await;
    let (status, body) = s
        .post(
            &format!("/v1/logins/{first}/cancel"),
            &s.portal_key,
            serde_json::json!({"client_ip": "198.51.100.20", "user_agent": "Chrome/131"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = start("Firefox/128").await;
    let (status, body) = s
        .call(
            reqwest::Method::POST,
            &format!("/v1/logins/{second}/cancel"),
            Some(&s.portal_key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let cancels: Vec<(Option<String>, Option<String>)> = s
        .services
        .db
        .events
        .read_stream(stream, 1, 10_000)
        .await
        .expect("stream")
        .into_iter()
        .filter(|e| e.event_type == "LoginCancelled")
        .map(|e| (e.metadata.client_ip, e.metadata.user_agent))
        .collect();
    assert_eq!(
        cancels,
        vec![
            (
                Some("198.51.100.20".to_owned()),
                Some("Chrome/131".to_owned())
            ),
            (Some(USER_IP.to_owned()), Some("Firefox/128".to_owned())),
        ]
    );
    let (status, body) = s
        .post(
            &format!("/v1/logins/{}/cancel", start("x").await),
            &s.portal_key,
            serde_json::json!({"client_ip": "not-an-address"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
}

/// Another instance started this login: this one has no memory of it, reads its row, and
/// records a cancel that relays no address with the address and browser the login began with.
#[tokio::test]
async fn a_login_this_instance_did_not_start_keeps_the_address_it_began_with() {
    let s = server_with_outbox().await;
    s.activate_with_email("non_penyedia", "ppk1").await;
    let key = spse_totp_domain::AccountKey::new(
        spse_totp_domain::UserType::NonPenyedia,
        spse_totp_domain::UserId::parse("ppk1").expect("a user id"),
    );
    let started = s
        .services
        .accounts
        .start_login(
            &key,
            None,
            None,
            Some(USER_IP.to_owned()),
            Some("Firefox/128".to_owned()),
            spse_totp_store::EventMetadata::system(),
        )
        .await
        .expect("started, as by another instance");
    s.services.caught_up(started.position).await;
    let cancel = format!("/v1/logins/{}/cancel", started.login_id);
    let (status, body) = s
        .call(reqwest::Method::POST, &cancel, Some(&s.portal_key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "cancelled", "{body}");
    let recorded: Vec<(Option<String>, Option<String>)> = s
        .services
        .db
        .events
        .read_stream(&key.stream_name(), 1, 10_000)
        .await
        .expect("stream")
        .into_iter()
        .filter(|e| e.event_type == "LoginCancelled")
        .map(|e| (e.metadata.client_ip, e.metadata.user_agent))
        .collect();
    assert_eq!(
        recorded,
        vec![(Some(USER_IP.to_owned()), Some("Firefox/128".to_owned()))]
    );
    // Remembered now, and the account still decides: a second cancel is refused.
    let (status, body) = s
        .call(reqwest::Method::POST, &cancel, Some(&s.portal_key), None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("login_not_pending")),
        "{body}"
    );
}
