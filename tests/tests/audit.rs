//! Auditors over HTTP: an account's history in order and complete, its state as of instants of
//! a scripted life, the subject export, the hash chain naming exactly the row altered in the
//! file, auditor keys that can change nothing, and every read recorded with its purpose.

use chrono::{DateTime, Duration, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use spse_totp_store::chain::{event_digest, ChainedFields};
use spse_totp_store::Engine;
use spse_totp_tests::{wrong_code, TestServer};

const P: &str = "penyedia";

fn enc(at: DateTime<Utc>) -> String {
    url::form_urlencoded::byte_serialize(at.to_rfc3339().as_bytes()).collect()
}

fn next_step(server: &TestServer) {
    server.advance(Duration::seconds(30));
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

/// Every event of the account's history, following cursors `limit` at a time.
async fn all_history(server: &TestServer, user_id: &str, extra: &str, limit: usize) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!(
            "/v1/audit/accounts/{P}/{user_id}/events?purpose=audit-2026-17&limit={limit}{extra}"
        );
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, body) = server.get(&path, &server.auditor_key).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let page = body["events"].as_array().expect("events").clone();
        assert!(page.len() <= limit);
        events.extend(page);
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    events
}

#[tokio::test]
async fn history_is_the_accounts_events_in_order_complete_with_metadata() {
    let server = TestServer::start().await;
    let (phone, _) = server.activate_by_code(P, "ppk1").await;
    for _ in 0..3 {
        next_step(&server);
        let (_, login) = server.start_login(P, "ppk1").await;
        let id = login["login_id"].as_str().expect("id").to_owned();
        let (status, body) = server
            .post(
                &format!("/v1/logins/{id}/code"),
                &server.portal_key,
                json!({"code": phone.code_at(server.now())}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // Another account's events must not appear.
    server.activate_by_code(P, "other").await;

    let stored = server
        .services
        .db
        .events
        .read_stream("account-penyedia-PPK1", 1, 10_000)
        .await
        .expect("stream");
    assert!(stored.len() >= 8, "{}", stored.len());

    let history = all_history(&server, "ppk1", "", 3).await;
    assert_eq!(history.len(), stored.len());
    for (seen, event) in history.iter().zip(&stored) {
        assert_eq!(seen["position"], event.position);
        assert_eq!(seen["version"], event.version);
        assert_eq!(seen["type"], event.event_type.as_str());
        assert_eq!(seen["schema_version"], 1);
        assert_eq!(seen["actor"]["kind"], event.metadata.actor.kind());
        assert_eq!(
            seen["client_ip"].as_str(),
            event.metadata.client_ip.as_deref()
        );
        assert_eq!(
            seen["correlation_id"].as_str(),
            event.metadata.correlation_id.as_deref()
        );
        assert_eq!(seen["hash"].as_str(), event.hash.as_deref());
        assert!(!seen["summary"].as_str().unwrap_or("").is_empty(), "{seen}");
        let at: DateTime<Utc> = seen["recorded_at"]
            .as_str()
            .expect("at")
            .parse()
            .expect("rfc3339");
        assert_eq!(at, event.recorded_at);
    }
    assert_eq!(history[0]["type"], "AccountRegistered");
    assert_eq!(history[0]["actor"]["kind"], "portal");
    assert_eq!(history[0]["actor"]["name"], "test-portal");

    // Filters: by type, and by time.
    let approved = all_history(&server, "ppk1", "&type=LoginApproved", 50).await;
    let stored_approved = stored
        .iter()
        .filter(|e| e.event_type == "LoginApproved")
        .count();
    assert_eq!(approved.len(), stored_approved);
    assert!(approved.len() >= 3);
    assert!(approved.iter().all(|e| e["type"] == "LoginApproved"));
    let second: DateTime<Utc> = approved[1]["recorded_at"]
        .as_str()
        .expect("at")
        .parse()
        .expect("t");
    let since = all_history(
        &server,
        "ppk1",
        &format!("&type=LoginApproved&from={}", enc(second)),
        50,
    )
    .await;
    assert_eq!(since.len(), approved.len() - 1);
    let until = all_history(&server, "ppk1", &format!("&to={}", enc(second)), 50).await;
    assert_eq!(
        until.last().expect("some")["position"],
        approved[1]["position"]
    );
}

#[tokio::test]
async fn reads_need_a_purpose_an_auditor_key_and_an_existing_account() {
    let server = TestServer::start().await;
    server.activate_by_code(P, "ppk1").await;
    let before = head(&server).await;
    let (status, body) = server
        .get(
            "/v1/audit/accounts/penyedia/ppk1/events",
            &server.auditor_key,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "purpose_required");
    for bad in [
        "&cursor=nonsense",
        "&limit=0",
        "&from=yesterday",
        "&type=a%20b",
        "&colour=red",
    ] {
        let (status, body) = server
            .get(
                &format!("/v1/audit/accounts/penyedia/ppk1/events?purpose=x{bad}"),
                &server.auditor_key,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    assert_eq!(
        head(&server).await,
        before,
        "a refused read records nothing"
    );

    for key in [&server.portal_key, &server.helpdesk_key] {
        let (status, body) = server
            .get("/v1/audit/accounts/penyedia/ppk1/events?purpose=x", key)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    let (status, _) = server
        .call(reqwest::Method::GET, "/v1/audit/verify", None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    for what in ["events", "state", "export"] {
        let (status, body) = server
            .get(
                &format!("/v1/audit/accounts/penyedia/nobody/{what}?purpose=x"),
                &server.auditor_key,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{what}: {body}");
        assert_eq!(body["error"]["code"], "account_not_found");
    }
}

#[tokio::test]
async fn each_read_is_recorded_with_reader_subject_and_purpose_but_not_the_data() {
    let server = TestServer::start().await;
    server.activate_by_code(P, "ppk1").await;
    let before = head(&server).await;
    let (status, _) = server
        .get(
            "/v1/audit/accounts/penyedia/ppk1/state?purpose=KPK%20case%2012",
            &server.auditor_key,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let recorded = server
        .services
        .db
        .events
        .read_all(before, 100)
        .await
        .expect("read");
    assert_eq!(recorded.len(), 1, "one read, one record");
    let read = &recorded[0];
    assert!(read.stream.starts_with("access-"), "{}", read.stream);
    assert_eq!(read.event_type, "AuditRecordRead");
    assert_eq!(read.payload["subject"], "account-penyedia-PPK1");
    assert_eq!(read.payload["purpose"], "KPK case 12");
    assert_eq!(
        read.payload["endpoint"],
        "GET /v1/audit/accounts/{user_type}/{user_id}/state"
    );
    assert_eq!(read.metadata.actor.kind(), "auditor");
    assert_eq!(read.metadata.actor.display_name(), "test-auditor");
    assert!(
        read.payload.get("totp_status").is_none(),
        "the data read is not copied"
    );

    // The read shows in the helpdesk's search, listed under the account read.
    server
        .services
        .projections
        .catch_up()
        .await
        .expect("catch up");
    let response = server
        .client
        .get(server.url("/v1/helpdesk/events?purpose=t1&type=AuditRecordRead&user_id=ppk1"))
        .bearer_auth(&server.helpdesk_key)
        .header("X-Operator", "Budi")
        .send()
        .await
        .expect("answer");
    let body: Value = response.json().await.expect("json");
    let rows = body["events"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{body}");
    assert_eq!(rows[0]["actor_kind"], "auditor");
    assert_eq!(rows[0]["user_id"], "PPK1");
    assert!(
        rows[0]["summary"]
            .as_str()
            .expect("s")
            .contains("KPK case 12"),
        "{body}"
    );
}

/// The life of one account, with the instants an auditor will ask about.
#[tokio::test]
async fn state_as_of_follows_a_scripted_life() {
    let server = TestServer::start().await;
    let registered = server.now();
    let (_, login) = server.start_login(P, "ppk1").await;
    assert!(login["activation"].is_object(), "{login}");
    let before_activation = server.now();

    server.advance(Duration::minutes(1));
    let (phone, _) = {
        // Activate with the QR of a fresh login.
        let (status, login) = server.start_login(P, "ppk1").await;
        assert_eq!(status, StatusCode::CREATED);
        let phone = spse_totp_tests::Authenticator::scan(&login);
        let id = login["login_id"].as_str().expect("id").to_owned();
        let (status, body) = server
            .post(
                &format!("/v1/logins/{id}/code"),
                &server.portal_key,
                json!({"code": phone.code_at(server.now())}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (phone, id)
    };
    let activated = server.now();

    // A login waits for approval; five wrong codes lock the account.
    server.advance(Duration::minutes(1));
    let (_, waiting) = server.start_login(P, "ppk1").await;
    let waiting = waiting["login_id"].as_str().expect("id").to_owned();
    let login_pending = server.now();
    server.advance(Duration::seconds(5));
    let mut locked = false;
    for _ in 0..5 {
        let (status, _) = server
            .post(
                &format!("/v1/logins/{waiting}/code"),
                &server.portal_key,
                json!({"code": wrong_code(&phone, server.now())}),
            )
            .await;
        locked |= status == StatusCode::LOCKED;
    }
    assert!(locked, "the fifth failure locks");
    let during_lock = server.now() + Duration::minutes(1);

    // The lock runs out; a login is approved; TOTP is disabled.
    server.advance(Duration::minutes(20));
    next_step(&server);
    let (_, login) = server.start_login(P, "ppk1").await;
    let approved = login["login_id"].as_str().expect("id").to_owned();
    let (status, body) = server
        .post(
            &format!("/v1/logins/{approved}/code"),
            &server.portal_key,
            json!({"code": phone.code_at(server.now())}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let after_lock = server.now();
    next_step(&server);
    let (status, body) = server
        .post(
            "/v1/accounts/penyedia/ppk1/disable",
            &server.portal_key,
            json!({"login_id": approved, "code": phone.code_at(server.now())}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let disabled_at = server.now();

    // Re-activated on another phone.
    server.advance(Duration::minutes(5));
    let (second_phone, _) = server.activate_by_code(P, "ppk1").await;
    let reactivated = server.now();
    assert_ne!(second_phone.secret, phone.secret);

    let state = |at: DateTime<Utc>| {
        let server = &server;
        async move {
            let (status, body) = server
                .get(
                    &format!(
                        "/v1/audit/accounts/penyedia/ppk1/state?purpose=audit&as_of={}",
                        enc(at)
                    ),
                    &server.auditor_key,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body
        }
    };

    let s = state(before_activation).await;
    assert_eq!(s["totp_status"], "inactive", "{s}");
    assert_eq!(s["user_id"], "PPK1");
    assert!(
        s["device"].is_null() && s["devices"].as_array().expect("d").is_empty(),
        "{s}"
    );
    assert!(
        s["pending_enrollment"].is_object(),
        "the QR code is still valid: {s}"
    );
    assert_eq!(state(registered - Duration::seconds(1)).await["events"], 0);

    let s = state(activated).await;
    assert_eq!(s["totp_status"], "active", "{s}");
    assert_eq!(
        s["device"]["activated_at"]
            .as_str()
            .map(|t| t.parse::<DateTime<Utc>>().ok()),
        Some(Some(activated))
    );

    let s = state(login_pending).await;
    assert_eq!(s["pending_logins"].as_array().expect("p").len(), 1, "{s}");
    assert_eq!(s["pending_logins"][0]["login_id"], waiting.as_str());
    assert!(s["locked_until"].is_null());

    let s = state(during_lock).await;
    assert!(s["locked_until"].is_string(), "{s}");
    assert_eq!(s["totp_status"], "active");

    let s = state(after_lock).await;
    assert!(s["locked_until"].is_null(), "{s}");
    assert_eq!(s["failed_attempts"], 0);
    assert!(
        s["pending_logins"].as_array().expect("p").is_empty(),
        "the waiting login has expired: {s}"
    );

    let s = state(disabled_at).await;
    assert_eq!(s["totp_status"], "disabled", "{s}");
    assert!(s["device"].is_null());
    let devices = s["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["ended_by"], "disabled");
    assert_eq!(
        devices[0]["ended_at"]
            .as_str()
            .map(|t| t.parse::<DateTime<Utc>>().ok()),
        Some(Some(disabled_at))
    );

    let s = state(reactivated).await;
    assert_eq!(s["totp_status"], "active", "{s}");
    let devices = s["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 2, "{s}");
    assert!(devices[1]["ended_at"].is_null());
    assert_eq!(s["device"]["device_id"], devices[1]["device_id"]);

    // Omitted as_of is now.
    let (status, now_state) = server
        .get(
            "/v1/audit/accounts/penyedia/ppk1/state?purpose=audit",
            &server.auditor_key,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(now_state["devices"], s["devices"]);
}

#[tokio::test]
async fn the_export_holds_profile_state_devices_sessions_and_every_event_but_no_secret() {
    let server = TestServer::start().await;
    let (phone, _) = server.activate_by_device(P, "ppk1").await;
    let (status, body) = server
        .get(
            "/v1/audit/accounts/penyedia/ppk1/export?purpose=PDP%20request%209",
            &server.auditor_key,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stored = server
        .services
        .db
        .events
        .read_stream("account-penyedia-PPK1", 1, 1000)
        .await
        .expect("stream");
    assert_eq!(
        body["events"].as_array().expect("events").len(),
        stored.len()
    );
    assert_eq!(body["account"]["totp_status"], "active");
    assert_eq!(body["account"]["devices"].as_array().expect("d").len(), 1);
    assert!(!body["login_sessions"].as_array().expect("s").is_empty());
    let reads = body["reads"].as_array().expect("reads");
    assert_eq!(reads.len(), 1, "this export is the one read so far: {body}");
    assert!(reads[0]["summary"]
        .as_str()
        .expect("s")
        .contains("PDP request 9"));
    let text = body.to_string();
    let token = phone.token();
    assert!(!text.contains(token), "no device token");
    assert!(
        !text.contains(&spse_totp_commands::tokens::sha256_hex(token)),
        "no token digest"
    );
    assert!(!text.contains("device_token_sha256"));
    let secret_b32 = totp_rs::Secret::Raw(phone.secret.clone())
        .to_encoded()
        .to_string();
    assert!(!text.contains(&secret_b32), "no TOTP secret");
}

async fn verify(server: &TestServer) -> Value {
    let (status, body) = server
        .get("/v1/audit/verify?purpose=nightly", &server.auditor_key)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn alter(server: &TestServer, sql: &str, position: u64) {
    // Straight into the database, past the service, as someone with access to it would: first
    // dropping the triggers that refuse any UPDATE or DELETE of an event.
    spse_totp_store::test_database::drop_append_only_guard(&server.services.db)
        .await
        .expect("drop the guard");
    let pool = server.services.db.pool.clone();
    let done = sqlx::query(sql)
        .bind(i64::try_from(position).expect("i64"))
        .execute(&pool)
        .await
        .expect("edit");
    assert_eq!(done.rows_affected(), 1);
}

#[tokio::test]
async fn every_event_is_chained_and_verification_names_the_altered_row() {
    let server = TestServer::start().await;
    server.activate_by_code(P, "ppk1").await;
    server.activate_by_code(P, "ppk2").await;
    let body = verify(&server).await;
    assert_eq!(body["ok"], true, "{body}");
    assert!(body["checked"].as_u64().expect("n") >= 8);
    assert_eq!(body["legacy"], 0);
    assert!(body.get("broken").is_none());

    let stream = server
        .services
        .db
        .events
        .read_stream("account-penyedia-PPK1", 1, 100)
        .await
        .expect("stream");
    assert!(stream
        .iter()
        .all(|e| e.hash.as_deref().is_some_and(|h| h.len() == 64)));
    let target = &stream[2];

    // Someone edits the failed login's IP in the file: the chain breaks exactly there. On SQLite
    // the address lives in the row's metadata head, a term shared with other events: the editor
    // writes this row's metadata whole, head and rest, with the address changed.
    let edit = match server.services.db.engine {
        Engine::Postgres => {
            "UPDATE events SET metadata = replace(metadata, '127.0.0.1', '10.9.9.9') \
             WHERE position = $1"
        }
        Engine::Sqlite => {
            "UPDATE events SET context_id = NULL, metadata = replace( \
                 (SELECT CASE events.metadata WHEN '[]' THEN t.term \
                         ELSE substr(t.term, 1, length(t.term) - 1) || ',' \
                              || substr(events.metadata, 2) END \
                  FROM terms t WHERE t.id = events.context_id), \
                 '127.0.0.1', '10.9.9.9') \
             WHERE position = $1"
        }
    };
    alter(&server, edit, target.position).await;
    let body = verify(&server).await;
    assert_eq!(body["ok"], false, "{body}");
    assert_eq!(body["broken"]["stream"], "account-penyedia-PPK1");
    assert_eq!(body["broken"]["position"], target.position);
    assert_eq!(body["broken"]["version"], target.version);
}

#[tokio::test]
async fn a_forger_who_recomputes_the_hash_breaks_the_next_link() {
    let server = TestServer::start().await;
    server.activate_by_code(P, "ppk1").await;
    let stream = server
        .services
        .db
        .events
        .read_stream("account-penyedia-PPK1", 1, 100)
        .await
        .expect("stream");
    let (forged, next) = (&stream[1], &stream[2]);
    let mut metadata = serde_json::to_value(&forged.metadata).expect("json");
    metadata["client_ip"] = json!("10.9.9.9");
    let hash = event_digest(
        stream[0].hash.as_deref(),
        &ChainedFields {
            stream: &forged.stream,
            version: forged.version,
            event_id: forged.event_id,
            event_type: &forged.event_type,
            schema_version: forged.schema_version,
            payload: &forged.payload,
            metadata: &metadata,
            recorded_at_micros: forged.recorded_at.timestamp_micros(),
        },
    );
    // Straight into the database, past the service, as someone with access to it would.
    spse_totp_store::test_database::drop_append_only_guard(&server.services.db)
        .await
        .expect("drop the guard");
    let pool = server.services.db.pool.clone();
    // On SQLite the metadata written whole replaces its head term as well.
    let forge = match server.services.db.engine {
        Engine::Postgres => "UPDATE events SET metadata = $1, hash = $2 WHERE position = $3",
        Engine::Sqlite => {
            "UPDATE events SET metadata = $1, hash = $2, context_id = NULL WHERE position = $3"
        }
    };
    sqlx::query(forge)
        .bind(metadata.to_string())
        .bind(hash.to_vec())
        .bind(i64::try_from(forged.position).expect("i64"))
        .execute(&pool)
        .await
        .expect("forge");
    let body = verify(&server).await;
    assert_eq!(body["ok"], false, "{body}");
    assert_eq!(body["broken"]["position"], next.position, "{body}");
}

#[tokio::test]
async fn a_deleted_event_leaves_a_gap_the_verification_names() {
    let server = TestServer::start().await;
    server.activate_by_code(P, "ppk1").await;
    let stream = server
        .services
        .db
        .events
        .read_stream("account-penyedia-PPK1", 1, 100)
        .await
        .expect("stream");
    alter(
        &server,
        "DELETE FROM events WHERE position = $1",
        stream[1].position,
    )
    .await;
    let body = verify(&server).await;
    assert_eq!(body["broken"]["position"], stream[2].position, "{body}");
    assert!(
        body["broken"]["reason"]
            .as_str()
            .expect("reason")
            .contains("missing"),
        "{body}"
    );
}

/// Every endpoint that changes anything, taken from the OpenAPI document so a route added later
/// is covered too, refuses an auditor key, and the log does not move.
#[tokio::test]
async fn an_auditor_key_can_change_nothing_anywhere() {
    let server = TestServer::start().await;
    let (phone, _) = server.activate_by_code(P, "ppk1").await;
    next_step(&server);
    let (_, login) = server.start_login(P, "ppk1").await;
    let login_id = login["login_id"].as_str().expect("id").to_owned();
    let (status, doc) = server
        .call(reqwest::Method::GET, "/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    for route in [
        "/v1/audit/accounts/{user_type}/{user_id}/events",
        "/v1/audit/accounts/{user_type}/{user_id}/state",
        "/v1/audit/accounts/{user_type}/{user_id}/export",
        "/v1/audit/verify",
        "/v1/helpdesk/events",
    ] {
        assert!(doc["paths"][route]["get"].is_object(), "{route} documented");
    }
    let before = head(&server).await;
    let mut tried = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            tried += 1;
            let concrete = path
                .replace("{user_type}", P)
                .replace("{user_id}", "ppk1")
                .replace("{login_id}", &login_id);
            let code = phone.code_at(server.now());
            // Bodies of every shape the endpoints take, so the role check is reached whichever
            // shape this endpoint wants: each must be refused, at least one for the key.
            let bodies = [
                json!({}),
                json!({"code": code}),
                json!({"login_id": login_id, "code": code}),
                json!({"user_type": P, "user_id": "ppk1"}),
                json!({"enrollment_id": phone.enrollment_id, "code": code, "device_label": "x"}),
            ];
            let mut refused_for_the_key = false;
            for body in bodies {
                let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("m");
                let (status, answer) = server
                    .call(m, &concrete, Some(&server.auditor_key), Some(body))
                    .await;
                assert!(
                    status.is_client_error(),
                    "{method} {path} answered {status}: {answer}"
                );
                refused_for_the_key |=
                    status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED;
            }
            // Activation is authorised by the enrollment's code, and a reset's confirmation by
            // the emailed link's token, not by a key.
            assert!(
                refused_for_the_key
                    || path == "/v1/device/activations"
                    || path == "/v1/resets/confirm",
                "{method} {path} never checked the key"
            );
        }
    }
    assert!(tried >= 7, "every mutating endpoint tried ({tried})");
    assert_eq!(head(&server).await, before, "nothing was appended");
    let (_, status) = server
        .get(&format!("/v1/logins/{login_id}"), &server.portal_key)
        .await;
    assert_eq!(status["status"], "awaiting_approval");
}
