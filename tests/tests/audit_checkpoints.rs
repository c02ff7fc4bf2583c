//! Issue 13, section 4, over the real server (SQLite, or PostgreSQL with
//! `SPSE_TOTP_TEST_BACKEND=postgres`): the sweeps sign the log's head when it moved, by the
//! server's clock, and `GET /v1/audit/verify` reports a log cut short, a forged checkpoint and a
//! row without a hash, and passes a clean log after load with its checkpoint.

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::Value;
use spse_totp_tests::TestServer;

const P: &str = "penyedia";

async fn verify(server: &TestServer) -> Value {
    let (status, body) = server
        .get("/v1/audit/verify?purpose=nightly", &server.auditor_key)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// One round of the sweeps leader's work, as the follower runs it every 30 s.
async fn sweep(server: &TestServer) {
    spse_totp_api::housekeeping::sweep(&server.services)
        .await
        .expect("sweep");
}

async fn checkpoints(server: &TestServer) -> Vec<(i64, i64)> {
    sqlx::query_as("SELECT position, signed_at FROM audit_checkpoints ORDER BY position")
        .fetch_all(&server.services.db.pool)
        .await
        .expect("checkpoints")
}

async fn head(server: &TestServer) -> u64 {
    server
        .services
        .db
        .events
        .head_position()
        .await
        .expect("head")
}

/// Past the checkpoint interval by the server's clock.
fn later(server: &TestServer) {
    server.advance(Duration::seconds(30));
}

/// Straight into the database, past the service, as an insider would: the guard first.
async fn insider(server: &TestServer, sql: &str) -> u64 {
    spse_totp_store::test_database::drop_append_only_guard(&server.services.db)
        .await
        .expect("drop the guard");
    sqlx::query(sql)
        .execute(&server.services.db.pool)
        .await
        .expect("edit")
        .rows_affected()
}

#[tokio::test]
async fn the_follower_signs_the_head_after_appends_when_time_moves_and_not_without_new_events() {
    let server = TestServer::start().await;
    // The keys the test server made are the first events: signed at the first sweep.
    sweep(&server).await;
    let first = checkpoints(&server).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].0 as u64, head(&server).await);
    assert_eq!(
        first[0].1,
        server.now().timestamp_micros(),
        "the server's clock"
    );

    server.activate_by_code(P, "ppk1").await;
    assert!(head(&server).await > first[0].0 as u64);
    // The head moved, but the clock did not: nothing yet.
    sweep(&server).await;
    assert_eq!(checkpoints(&server).await, first);
    later(&server);
    sweep(&server).await;
    let second = checkpoints(&server).await;
    assert_eq!(second.len(), 2, "{second:?}");
    assert_eq!(second[1].0 as u64, head(&server).await);

    // No new events: no new checkpoint, however long.
    later(&server);
    sweep(&server).await;
    server.advance(Duration::hours(1));
    sweep(&server).await;
    assert_eq!(checkpoints(&server).await, second);
}

#[tokio::test]
async fn a_clean_log_after_load_verifies_with_its_checkpoint() {
    let server = TestServer::start().await;
    for i in 0..6 {
        let (phone, _) = server.activate_by_code(P, &format!("ppk{i}")).await;
        server.advance(Duration::seconds(30));
        let (_, login) = server.start_login(P, &format!("ppk{i}")).await;
        let login_id = login["login_id"].as_str().expect("id");
        let (status, body) = server
            .post(
                &format!("/v1/logins/{login_id}/code"),
                &server.portal_key,
                serde_json::json!({"code": phone.code_at(server.now())}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        server.settle_mail().await;
    }
    later(&server);
    sweep(&server).await;
    let signed = head(&server).await;
    let body = verify(&server).await;
    assert_eq!(body["ok"], true, "{body}");
    assert_eq!(body["truncated"], false, "{body}");
    assert_eq!(body["legacy"], 0, "{body}");
    assert_eq!(body["checkpoints"], 1, "{body}");
    assert_eq!(body["newest_checkpoint"]["position"], signed, "{body}");
    assert!(body["head"].as_u64().expect("head") >= signed, "{body}");
    assert_eq!(
        body["checkpoint_key"],
        server.services.audit_key.fingerprint(),
        "{body}"
    );
    assert!(body.get("broken_checkpoint").is_none(), "{body}");

    // The OpenAPI document describes every field the answer can hold.
    let (_, doc) = server
        .call(reqwest::Method::GET, "/openapi.json", None, None)
        .await;
    let schemas = &doc["components"]["schemas"];
    let answer = &schemas["VerifyAnswer"]["properties"];
    for field in [
        "ok",
        "checked",
        "legacy",
        "streams",
        "broken",
        "head",
        "checkpoint_key",
        "checkpoints",
        "checkpoints_other_key",
        "newest_checkpoint",
        "truncated",
        "broken_checkpoint",
    ] {
        assert!(answer.get(field).is_some(), "{field}: {answer}");
    }
    assert_eq!(
        schemas["CheckpointProblemAnswer"]["enum"],
        serde_json::json!(["truncated", "mac_invalid", "hash_mismatch"])
    );
}

#[tokio::test]
async fn a_log_whose_last_rows_are_deleted_is_reported_truncated() {
    let server = TestServer::start().await;
    server.activate_by_code(P, "ppk1").await;
    server.activate_by_code(P, "ppk2").await;
    later(&server);
    sweep(&server).await;
    let signed = head(&server).await;
    // The last three events go, and with them the chain's only witness but the checkpoint.
    let deleted = insider(
        &server,
        &format!("DELETE FROM events WHERE position > {}", signed - 3),
    )
    .await;
    assert_eq!(deleted, 3);
    let body = verify(&server).await;
    assert_eq!(body["ok"], false, "{body}");
    assert_eq!(body["truncated"], true, "{body}");
    assert!(
        body.get("broken").is_none(),
        "every chain still holds: {body}"
    );
    assert_eq!(body["broken_checkpoint"]["problem"], "truncated", "{body}");
    assert_eq!(body["broken_checkpoint"]["position"], signed, "{body}");
    // (The verification's own read record is appended first: on SQLite it takes a freed
    // position, on PostgreSQL the next one past the old head, where the signed head is gone.)
    // The next sweep does not cover the cut with a fresh signature.
    later(&server);
    sweep(&server).await;
    assert_eq!(verify(&server).await["truncated"], true);
}

#[tokio::test]
async fn a_forged_checkpoint_is_reported() {
    let server = TestServer::start().await;
    server.activate_by_code(P, "ppk1").await;
    later(&server);
    sweep(&server).await;
    let signed = head(&server).await;
    // Whoever lacks the key can change the MAC but not make it verify.
    let changed = insider(
        &server,
        "UPDATE audit_checkpoints SET mac = replace(replace(replace(mac, '0', 'x'), '1', '0'), 'x', '1')",
    )
    .await;
    assert_eq!(changed, 1);
    let body = verify(&server).await;
    assert_eq!(body["ok"], false, "{body}");
    assert_eq!(body["truncated"], false, "{body}");
    assert_eq!(
        body["broken_checkpoint"]["problem"], "mac_invalid",
        "{body}"
    );
    assert_eq!(body["broken_checkpoint"]["position"], signed, "{body}");
}

#[tokio::test]
async fn a_nulled_hash_is_a_break() {
    let server = TestServer::start().await;
    server.activate_by_code(P, "ppk1").await;
    let stream = server
        .services
        .db
        .events
        .read_stream("account-penyedia-PPK1", 1, 100)
        .await
        .expect("stream");
    // Every hash of the stream goes, its first event's included: once "legacy", now a break.
    let nulled = insider(
        &server,
        "UPDATE events SET hash = NULL WHERE position IN \
         (SELECT position FROM event_rows WHERE stream = 'account-penyedia-PPK1')",
    )
    .await;
    assert_eq!(nulled, stream.len() as u64);
    let body = verify(&server).await;
    assert_eq!(body["ok"], false, "{body}");
    assert_eq!(body["legacy"], 0, "{body}");
    assert_eq!(body["broken"]["stream"], "account-penyedia-PPK1", "{body}");
    assert_eq!(body["broken"]["position"], stream[0].position, "{body}");
    assert_eq!(body["broken"]["version"], 1, "{body}");
    assert!(
        body["broken"]["reason"]
            .as_str()
            .expect("reason")
            .contains("hash is missing"),
        "{body}"
    );
}
