//! The emailed reset link opened in a real browser (flow 3, step 5): the page names the account,
//! resets only when its button is pressed, and says so in the guide's words.

use fantoccini::Locator;
use reqwest::StatusCode;
use spse_totp_tests::browser::Browser;
use spse_totp_tests::resets::{email_of, server_with_sink, wait_for_links, USER_IP};
use spse_totp_tests::smtp_sink::SmtpSink;

#[tokio::test]
async fn the_link_opened_in_a_browser_resets_only_when_the_button_is_pressed() {
    let Some(browser) = Browser::start().await.expect("the browser starts") else {
        return;
    };
    let sink = SmtpSink::start().await;
    let s = server_with_sink(&sink).await;
    s.activate_with_email("penyedia", "vendor41").await;
    let (status, _) = s
        .request_reset("penyedia", "vendor41", &email_of("vendor41"), USER_IP)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let mail = wait_for_links(&sink, 1).await;
    let token = mail[0].reset_token().expect("a reset link in the mail");

    browser
        .goto(&format!("{}/reset-totp?token={token}", s.base))
        .await
        .expect("the page opens");
    let page = browser.text_of("body").await.expect("the page's text");
    assert!(
        page.contains("VENDOR41"),
        "the page names the account: {page}"
    );
    assert_eq!(
        account_status(&s).await,
        "active",
        "opening the page resets nothing"
    );

    browser.click("#go").await.expect("the button");
    let question = browser.accept_dialog().await.expect("a confirmation");
    assert!(question.contains("reset TOTP"), "{question}");
    let done = browser
        .text_when_shown("#done .ok")
        .await
        .expect("the outcome");
    assert_eq!(done, "TOTP berhasil di reset");
    browser
        .screenshot(&screenshots().join("reset-link-done.png"))
        .await
        .expect("a screenshot");
    assert_eq!(account_status(&s).await, "inactive");

    // The link is single-use: opened again, it says so, and offers no button.
    browser
        .goto(&format!("{}/reset-totp?token={token}", s.base))
        .await
        .expect("the page opens again");
    let page = browser.text_of("body").await.expect("the page's text");
    assert!(page.contains("sudah digunakan"), "{page}");
    assert!(browser.client.find(Locator::Css("#go")).await.is_err());
    browser
        .screenshot(&screenshots().join("reset-link-used.png"))
        .await
        .expect("a screenshot");
    browser.close().await.expect("the browser closes");
}

async fn account_status(s: &spse_totp_tests::TestServer) -> String {
    let (status, body) = s.get("/v1/accounts/penyedia/vendor41", &s.portal_key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["totp_status"].as_str().unwrap_or_default().to_owned()
}

/// Looked at by whoever changes the page; not committed.
fn screenshots() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
}
