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
