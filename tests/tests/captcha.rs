//! The "Kode Keamanan": a PNG, its real answer accepted once, wrong, reused and expired answers
//! refused (422) and nothing recorded; only portal keys get one.

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::json;
use spse_totp_tests::resets::{email_of, server_with_outbox, CAPTCHA_ANSWER, USER_IP};
use spse_totp_tests::TestServer;

fn body(captcha_id: &str, answer: &str) -> serde_json::Value {
    json!({"user_type": "non_penyedia", "user_id": "ppk1", "email": email_of("ppk1"),
           "captcha_id": captcha_id, "captcha_answer": answer, "client_ip": USER_IP})
}

async fn requests_recorded(s: &TestServer) -> usize {
    s.event_types("non_penyedia", "ppk1")
        .await
        .iter()
        .filter(|t| t.starts_with("ResetRequest"))
        .count()
}

#[tokio::test]
async fn a_captcha_is_a_png_and_its_own_answer_works_once() {
    let s = TestServer::start().await;
    s.activate_with_email("non_penyedia", "ppk1").await;
    let (status, view) = s.get("/v1/captcha", &s.portal_key).await;
    assert_eq!(status, StatusCode::OK);
    use base64::Engine as _;
    let png = base64::engine::general_purpose::STANDARD
        .decode(view["image_png"].as_str().unwrap())
        .unwrap();
    assert_eq!(&png[1..4], b"PNG");

    // The drawn answer is known only in-process; ask the service for one directly.
    let issued = s.services.resets.captchas.issue(s.now()).await.unwrap();
    let id = issued.captcha_id.to_string();
    let (status, _) = s
        .request_reset_with(body(&id, &issued.answer.to_lowercase()))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "answers ignore case");
    assert_eq!(requests_recorded(&s).await, 1);
    let (status, answer) = s.request_reset_with(body(&id, &issued.answer)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "reused");
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["error"]["code"], "captcha_invalid");
    assert_eq!(requests_recorded(&s).await, 1);
}

#[tokio::test]
async fn wrong_reused_and_expired_answers_are_refused_and_record_nothing() {
    let s = server_with_outbox().await;
    s.activate_with_email("non_penyedia", "ppk1").await;

    let wrong = s.captcha().await;
    assert_eq!(
        s.request_reset_with(body(&wrong, "NOPE1")).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // A wrong try uses the captcha up: the right answer afterwards is too late.
    assert_eq!(
        s.request_reset_with(body(&wrong, CAPTCHA_ANSWER)).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    let used = s.captcha().await;
    assert_eq!(
        s.request_reset_with(body(&used, CAPTCHA_ANSWER)).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        s.request_reset_with(body(&used, CAPTCHA_ANSWER)).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    let late = s.captcha().await;
    s.advance(Duration::minutes(5) + Duration::seconds(1));
    assert_eq!(
        s.request_reset_with(body(&late, CAPTCHA_ANSWER)).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    for bad_id in ["not-a-uuid", "00000000-0000-0000-0000-000000000000", ""] {
        assert_eq!(
            s.request_reset_with(body(bad_id, CAPTCHA_ANSWER)).await.0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
    assert_eq!(
        requests_recorded(&s).await,
        1,
        "only the one good captcha counted"
    );
}

#[tokio::test]
async fn only_a_portal_key_gets_a_captcha_and_the_test_answer_is_off_by_default() {
    let s = TestServer::start().await;
    assert_eq!(
        s.get("/v1/captcha", &s.helpdesk_key).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.call(reqwest::Method::GET, "/v1/captcha", None, None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert!(s.services.config.reset.captcha_test_answer.is_none());
    let id = s.captcha().await;
    assert_eq!(
        s.request_reset_with(body(&id, CAPTCHA_ANSWER)).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[tokio::test]
async fn a_captcha_works_on_another_instance_of_the_same_database() {
    let s = server_with_outbox().await;
    s.activate_with_email("non_penyedia", "ppk1").await;
    // A second service on the same database: a captcha from one is redeemed by the other.
    let other = spse_totp_commands::captcha::Captchas::new(
        &s.services.db,
        &spse_totp_api::app::master_key(&s.services.config).unwrap(),
        None,
    );
    let issued = other.issue(s.now()).await.unwrap();
    let (status, _) = s
        .request_reset_with(body(&issued.captcha_id.to_string(), &issued.answer))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
}
