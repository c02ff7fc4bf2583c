//! Error messages follow `Accept-Language` (issue 13, section 6): Bahasa Indonesia by default
//! and for languages the service does not speak, English when preferred (q-values honoured),
//! and the code, status and every other field the same whatever the language.

use reqwest::StatusCode;
use serde_json::{json, Value};
use spse_totp_tests::TestServer;

/// The same refused request (a start of login whose `client_ip` is not an address), with the
/// given `Accept-Language`, or none.
async fn refused(server: &TestServer, accept_language: Option<&str>) -> (StatusCode, Value) {
    let mut request = server
        .client
        .post(server.url("/v1/logins"))
        .bearer_auth(&server.portal_key)
        .json(
            &json!({"user_type": "penyedia", "user_id": "vendor1", "client_ip": "not an address"}),
        );
    if let Some(value) = accept_language {
        request = request.header("Accept-Language", value);
    }
    let response = request.send().await.expect("the request is answered");
    let status = response.status();
    assert!(
        response
            .headers()
            .get_all("vary")
            .iter()
            .any(|v| v.to_str().unwrap_or_default().contains("accept-language")),
        "an error answer varies with Accept-Language"
    );
    (status, response.json().await.expect("a JSON body"))
}

const ENGLISH: &str = "client_ip is not an IP address";
const INDONESIAN: &str = "Isi permintaan tidak sesuai dengan layanan ini.";

#[tokio::test]
async fn error_messages_are_indonesian_unless_english_is_preferred() {
    let server = TestServer::start().await;
    for (accept_language, message) in [
        (None, INDONESIAN),
        (Some("id"), INDONESIAN),
        (Some("en"), ENGLISH),
        (Some("en-US,en;q=0.9"), ENGLISH),
        (Some("fr"), INDONESIAN),
        (Some("fr-FR, en;q=0.5"), ENGLISH),
        (Some("en;q=0.2, id;q=0.8"), INDONESIAN),
    ] {
        let (status, body) = refused(&server, accept_language).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{accept_language:?}: {body}"
        );
        assert_eq!(
            body["error"]["code"], "invalid_request",
            "{accept_language:?}: {body}"
        );
        assert_eq!(
            body["error"]["message"], message,
            "{accept_language:?}: {body}"
        );
    }
}

#[tokio::test]
async fn the_indonesian_message_names_the_field_and_keeps_every_other_field() {
    let server = TestServer::start().await;
    let path = "/v1/helpdesk/accounts/penyedia/vendor1/reset";
    let body = json!({"reason": "lost phone", "ticket": " "});
    let answer = |lang: &'static str| {
        server
            .client
            .post(server.url(path))
            .bearer_auth(&server.helpdesk_key)
            .header("X-Operator", "budi")
            .header("Accept-Language", lang)
            .json(&body)
            .send()
    };
    let indonesian: Value = answer("id").await.unwrap().json().await.unwrap();
    let english: Value = answer("en").await.unwrap().json().await.unwrap();
    assert_eq!(
        indonesian["error"]["message"],
        "Isi permintaan tidak sesuai dengan layanan ini. (isian: ticket)",
        "{indonesian}"
    );
    assert_eq!(
        english["error"]["message"], "ticket is required",
        "{english}"
    );
    let without_message = |mut v: Value| {
        v["error"].as_object_mut().unwrap().remove("message");
        v
    };
    assert_eq!(without_message(indonesian), without_message(english));
}

#[tokio::test]
async fn errors_outside_the_handlers_follow_the_language_too() {
    let server = TestServer::start().await;
    for (lang, message) in [("en", None), ("id", Some("Tidak ditemukan."))] {
        let response = server
            .client
            .get(server.url("/v1/nothing-here"))
            .header("Accept-Language", lang)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{body}");
        match message {
            Some(m) => assert_eq!(body["error"]["message"], m, "{body}"),
            None => assert_ne!(body["error"]["message"], "Tidak ditemukan.", "{body}"),
        }
    }
}
