//! Steps of the console's page tests: operators made as the command line makes them, the setup
//! link and the sign-in form filled in as a person would, and what the browser holds.

use chrono::Duration;
use serde_json::json;
use spse_totp_domain::operator::{OperatorRole, Username};
use spse_totp_store::{Actor, EventMetadata, RecordedEvent};

use crate::browser::{docs_dir, Browser};
use crate::{Authenticator, TestServer};

/// Every test operator's password.
pub const PASSWORD: &str = "kata-sandi-yang-panjang";

/// Where the console's screenshots go.
pub fn shots() -> std::path::PathBuf {
    docs_dir().join("console")
}

/// Creates an operator as `spse-totp operator create` does and returns the setup link.
pub async fn create_operator(
    s: &TestServer,
    role: OperatorRole,
    username: &str,
    full_name: &str,
) -> String {
    let metadata = EventMetadata {
        actor: Actor::Operator {
            name: "root".into(),
        },
        ..EventMetadata::system()
    };
    let (token, _) = s
        .services
        .operators
        .create(
            &Username::parse(username).expect("a valid username"),
            full_name,
            &format!("{username}@lpse.example"),
            role,
            &metadata,
        )
        .await
        .expect("the operator is created");
    s.services
        .projections
        .catch_up()
        .await
        .expect("projections");
    s.url(&format!("/console/setup?token={token}"))
}

/// The setup link in the browser: a password, then the QR code and its first code. Returns the
/// operator's authenticator, with the clock moved to the next step so its next code is fresh.
/// With `screenshot`, the two setup pages are kept in `docs/console/`.
pub async fn set_up(b: &Browser, s: &TestServer, link: &str, screenshot: bool) -> Authenticator {
    b.goto(link).await.expect("the setup link opens");
    b.fill("#password", PASSWORD).await.expect("password");
    b.fill("#password2", PASSWORD)
        .await
        .expect("password again");
    if screenshot {
        b.screenshot(&shots().join("setup-password.png"))
            .await
            .expect("a screenshot");
    }
    b.click("#submit").await.expect("the password is sent");
    let uri = b.text_of("#otpauth").await.expect("the otpauth URI");
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    b.wait_for("#qr svg")
        .await
        .expect("the QR code is drawn inline");
    let phone = Authenticator::scan(&json!({"activation": {"otpauth_uri": uri}}));
    if screenshot {
        b.screenshot(&shots().join("setup-qr.png"))
            .await
            .expect("a screenshot");
    }
    b.fill("#code", &phone.code_at(s.now()))
        .await
        .expect("the first code");
    b.click("#submit").await.expect("the code is sent");
    b.wait_for("#message.ok").await.expect("setup is done");
    s.advance(Duration::seconds(30));
    phone
}

/// The sign-in form filled in and sent; what follows is the caller's to check.
pub async fn submit_sign_in(b: &Browser, s: &TestServer, username: &str, code: &str) {
    b.goto(&s.url("/console/sign-in"))
        .await
        .expect("the sign-in page");
    b.fill("#username", username).await.expect("username");
    b.fill("#password", PASSWORD).await.expect("password");
    b.fill("#code", code).await.expect("code");
    b.click("#submit").await.expect("sign in");
}

/// The session cookie the browser holds, to send as it would (or without the form's token).
pub async fn session_cookie(b: &Browser) -> String {
    let cookie = b
        .client
        .get_named_cookie("spse_console")
        .await
        .expect("a session cookie");
    format!("spse_console={}", cookie.value())
}

/// Every event of one stream, in order.
pub async fn events_of(s: &TestServer, stream: &str) -> Vec<RecordedEvent> {
    s.services
        .db
        .events
        .read_stream(stream, 1, 10_000)
        .await
        .expect("the stream reads")
}
