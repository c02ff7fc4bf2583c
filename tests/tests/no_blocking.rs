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
