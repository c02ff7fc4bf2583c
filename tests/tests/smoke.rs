use serde_json::json;
use spse_totp_tests::TestServer;

#[tokio::test]
async fn activation_by_typed_code_then_login_approved_by_typed_code() {
    let server = TestServer::start().await;
    let (phone, _) = server.activate_by_code("non_penyedia", "ppk1").await;
    let (status, account) = server
        .get("/v1/accounts/non_penyedia/PPK1", &server.portal_key)
        .await;
    assert_eq!(status, 200, "{account}");
    assert_eq!(account["totp_status"], "active");
    server.advance(chrono::Duration::seconds(30));
    let (status, login) = server.start_login("non_penyedia", "PPK1").await;
    assert_eq!(status, 201);
    assert_eq!(login["status"], "awaiting_approval");
    let id = login["login_id"].as_str().unwrap();
    let (status, body) = server
        .post(
            &format!("/v1/logins/{id}/code"),
            &server.portal_key,
            json!({"code": phone.code_at(server.now())}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "approved");
    assert_eq!(body["method"], "code");
}
