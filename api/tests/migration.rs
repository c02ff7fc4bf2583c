//! Moving a deployment: `spse-totp export` from a SQLite folder, `spse-totp import` into another
//! database (PostgreSQL when `SPSE_TOTP_TEST_DATABASE_URL` is set, else a second SQLite file),
//! and the service carries on there: the same API key works, the bound device still approves
//! (its sealed secret moved with it), and the history is whole.

mod support;

use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use spse_totp_domain::totp::{code_for_step, step_at};
use spse_totp_store::test_database::fresh_postgres_url;
use support::{command, create_key, secret_of, text, Served};
use tempfile::TempDir;

async fn post(client: &reqwest::Client, key: &str, url: String, body: Value) -> (u16, Value) {
    let response = client
        .post(url)
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("an answer");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_sqlite_deployment_carries_on_after_import() {
    let source = TempDir::new().expect("a folder");
    let client = reqwest::Client::new();
    let key = create_key(source.path(), "portal", "portal");

    // Activate a user on the SQLite deployment, by a code from the step before (still in the
    // window), which leaves this step's code for the login after the move.
    let mut served = Served::start(source.path());
    served.wait_until_healthy(&client).await;
    let (status, login) = post(
        &client,
        &key,
        format!("{}/v1/logins", served.base),
        json!({"user_type": "penyedia", "user_id": "vendor-9"}),
    )
    .await;
    assert_eq!(status, 201, "{login}");
    let secret = secret_of(&login);
    if Utc::now().timestamp().rem_euclid(30) > 20 {
        tokio::time::sleep(Duration::from_secs(11)).await;
    }
    let step = step_at(Utc::now());
    let (status, body) = post(
        &client,
        &key,
        format!(
            "{}/v1/logins/{}/code",
            served.base,
            login["login_id"].as_str().unwrap()
        ),
        json!({"code": code_for_step(&secret, step - 1)}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(served.terminate(), "the source stops cleanly");

    let export = source.path().join("export.jsonl");
    let output = command(
        source.path(),
        &["export", "--output", export.to_str().unwrap()],
    )
    .output()
    .expect("export runs");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let exported = std::fs::read_to_string(&export).expect("the export");
    assert!(exported.starts_with("{\"kind\":\"header\""), "{exported}");
    assert!(exported.contains("\"kind\":\"sealed_secret\""));
    assert!(exported.trim_end().ends_with('}'));

    // The target: PostgreSQL if the tests have one, else another SQLite file. Same master key.
    let target = TempDir::new().expect("a folder");
    let url = match fresh_postgres_url().await.expect("a test schema") {
        Some(url) => url,
        None => format!("sqlite://{}/moved.db", target.path().display()),
    };
    let master_key_file = source.path().join("data/master.key");
    let envs = [
        ("SPSE_TOTP_DATABASE_URL", url.as_str()),
        (
            "SPSE_TOTP_MASTER_KEY_FILE",
            master_key_file.to_str().unwrap(),
        ),
    ];
    let output = command(target.path(), &["import", export.to_str().unwrap()])
        .envs(envs)
        .output()
        .expect("import runs");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("projections rebuilt"));

    // Importing twice is refused: the target is no longer empty.
    let again = command(target.path(), &["import", export.to_str().unwrap()])
        .envs(envs)
        .output()
        .expect("import runs");
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("empty database"),
        "{}",
        text(&again.stderr)
    );

    let mut moved = Served::start_with(target.path(), &envs);
    moved.wait_until_healthy(&client).await;
    let (status, login) = post(
        &client,
        &key,
        format!("{}/v1/logins", moved.base),
        json!({"user_type": "penyedia", "user_id": "VENDOR-9"}),
    )
    .await;
    assert_eq!(status, 201, "the old key works: {login}");
    assert_eq!(
        login["status"], "awaiting_approval",
        "the device is still bound: {login}"
    );
    let (status, body) = post(
        &client,
        &key,
        format!(
            "{}/v1/logins/{}/code",
            moved.base,
            login["login_id"].as_str().unwrap()
        ),
        json!({"code": code_for_step(&secret, step - 1)}),
    )
    .await;
    assert_eq!(
        status, 422,
        "the step used before the move is still used: {body}"
    );
    let (status, body) = post(
        &client,
        &key,
        format!(
            "{}/v1/logins/{}/code",
            moved.base,
            login["login_id"].as_str().unwrap()
        ),
        json!({"code": code_for_step(&secret, step)}),
    )
    .await;
    assert_eq!(status, 200, "the phone's next code approves: {body}");
    assert!(moved.terminate());
}

/// The migrations before lean rows (`20261205000002_lean_rows.sql`), applied alone: a database
/// as a deployment of the previous version holds it.
async fn migrate_to_the_old_format(url: &str, engine: &str) -> sqlx::AnyPool {
    migrate_to_before(url, engine, "20261205000002").await
}

/// A database at the schema every migration before `first_not_run` leaves.
async fn migrate_to_before(url: &str, engine: &str, first_not_run: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    let old = TempDir::new().expect("a folder");
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../migrations")
        .join(engine);
    for entry in std::fs::read_dir(&all).expect("the migrations") {
        let path = entry.expect("an entry").path();
        let name = path
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        if name.as_str() < first_not_run {
            std::fs::copy(&path, old.path().join(&name)).expect("copied");
        }
    }
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("connect");
    sqlx::migrate::Migrator::new(old.path())
        .await
        .expect("the old migrations")
        .run(&pool)
        .await
        .expect("migrated to the old format");
    pool
}

/// One event as the previous version stored it: text id, metadata as a JSON object, hex hash.
struct OldRow {
    position: i64,
    stream: String,
    version: u64,
    event_id: uuid::Uuid,
    event_type: String,
    payload: Value,
    metadata: String,
    recorded_at: i64,
    hash: Option<String>,
}

/// Events of every actor and optional field, in three streams: an account's, an API key's and
/// a stream whose first event predates the chain; one metadata object carries a key no decoder
/// knows and an id in capitals (as if from another tool), which the conversion must leave as it
/// is.
fn old_rows() -> Vec<OldRow> {
    use spse_totp_store::{Actor, EventMetadata};
    let id = |n: u128| uuid::Uuid::from_u128(0x0193_c000_0000_7000_8000_0000_0000_0000 + n);
    let full = |actor: Actor| EventMetadata {
        actor,
        client_ip: Some("10.1.2.3".into()),
        user_agent: Some("Mozilla/5.0 \"quoted\" é".into()),
        correlation_id: Some(id(90).to_string()),
        causation_id: Some("req-1".into()),
    };
    let actors = [
        Actor::Portal {
            key_id: id(1),
            key_name: "spse-portal".into(),
        },
        Actor::Device { device_id: id(2) },
        Actor::Helpdesk {
            operator: "Siti".into(),
            key_id: id(3),
        },
        Actor::System,
        Actor::Operator {
            name: "root".into(),
        },
        Actor::Auditor {
            key_id: id(4),
            key_name: "siem".into(),
        },
        Actor::User,
    ];
    let mut metadata: Vec<String> = actors
        .iter()
        .cloned()
        .map(|a| serde_json::to_string(&full(a)).unwrap())
        .collect();
    metadata.extend(actors.iter().cloned().map(|actor| {
        serde_json::to_string(&EventMetadata {
            actor,
            client_ip: None,
            user_agent: None,
            correlation_id: Some("c".into()),
            causation_id: None,
        })
        .unwrap()
    }));
    metadata.push(format!(
        r#"{{"actor": {{"kind": "device", "device_id": "{}"}}, "client_ip": "10.0.0.9", "via": "another tool"}}"#,
        id(5).to_string().to_uppercase()
    ));
    let registered =
        json!({"user_type": "penyedia", "user_id": "VENDOR-1", "email": null, "name": null});
    let streams = ["account-penyedia-VENDOR-1", "apikey-x", "legacy-start"];
    let mut heads: std::collections::HashMap<&str, (u64, Option<String>)> = Default::default();
    let mut rows = Vec::new();
    for (i, metadata) in metadata.into_iter().enumerate() {
        let stream = streams[i % streams.len()];
        let (version, previous) = heads.get(stream).cloned().unwrap_or((0, None));
        let version = version + 1;
        let (event_type, payload) = if stream.starts_with("account-") && version == 1 {
            ("AccountRegistered".to_owned(), registered.clone())
        } else {
            (format!("Tested{i}"), json!({"n": i, "text": "é \"x\""}))
        };
        let event_id = id(100 + i as u128);
        let recorded_at = 1_764_000_000_000_000 + i as i64;
        let hash = (!(stream == "legacy-start" && version == 1)).then(|| {
            spse_totp_store::chain::event_hash(
                previous.as_deref(),
                &spse_totp_store::chain::ChainedFields {
                    stream,
                    version,
                    event_id,
                    event_type: &event_type,
                    schema_version: 1,
                    payload: &payload,
                    metadata: &serde_json::from_str(&metadata).unwrap(),
                    recorded_at_micros: recorded_at,
                },
            )
        });
        heads.insert(stream, (version, hash.clone()));
        rows.push(OldRow {
            position: i as i64 + 1,
            stream: stream.to_owned(),
            version,
            event_id,
            event_type,
            payload,
            metadata,
            recorded_at,
            hash,
        });
    }
    rows
}

/// An existing deployment upgrading to lean rows keeps every event, hash and audit row: a
/// database in the previous format, written as that version wrote it, is migrated in place; every
/// event reads back the same, the chain verifies (and goes on from where it was), and the audit
/// rows are all there with what the helpdesk sees of them.
#[tokio::test]
async fn an_old_format_database_is_converted_in_place_and_verifies() {
    let dir = TempDir::new().expect("a folder");
    let mut targets = vec![(
        format!("sqlite://{}/old.db?mode=rwc", dir.path().display()),
        "sqlite",
    )];
    if let Some(url) = fresh_postgres_url().await.expect("a test schema") {
        targets.push((url, "postgres"));
    }
    for (url, engine) in targets {
        let pool = migrate_to_the_old_format(&url, engine).await;
        let rows = old_rows();
        for row in &rows {
            sqlx::query(
                "INSERT INTO events (position, stream, version, event_id, event_type, \
                 schema_version, payload, metadata, recorded_at, hash) \
                 VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $8, $9)",
            )
            .bind(row.position)
            .bind(&row.stream)
            .bind(row.version as i64)
            .bind(row.event_id.to_string())
            .bind(&row.event_type)
            .bind(row.payload.to_string())
            .bind(&row.metadata)
            .bind(row.recorded_at)
            .bind(row.hash.clone())
            .execute(&pool)
            .await
            .expect("an old row");
            sqlx::query(
                "INSERT INTO audit_log (position, stream, user_type, user_id, event_type, \
                 actor_kind, actor, client_ip, user_agent, correlation_id, recorded_at, summary) \
                 VALUES ($1, $2, 'penyedia', 'VENDOR-1', $3, 'portal', 'spse-portal', '10.1.2.3', \
                 'ua', 'c', $4, 'old summary')",
            )
            .bind(row.position)
            .bind(&row.stream)
            .bind(&row.event_type)
            .bind(row.recorded_at)
            .execute(&pool)
            .await
            .expect("an old audit row");
        }
        if engine == "postgres" {
            // As the previous version's appender left it.
            sqlx::query("UPDATE event_log_head SET position = (SELECT MAX(position) FROM events)")
                .execute(&pool)
                .await
                .expect("the log's head");
        }
        pool.close().await;

        let db = spse_totp_store::Database::open(&url)
            .await
            .expect("upgraded");
        let stored = db.events.read_all(0, 1000).await.expect("read");
        assert_eq!(stored.len(), rows.len(), "{engine}: every event kept");
        for (row, event) in rows.iter().zip(&stored) {
            assert_eq!(event.position, row.position as u64, "{engine}");
            assert_eq!(event.stream, row.stream, "{engine}");
            assert_eq!(event.version, row.version, "{engine}");
            assert_eq!(event.event_id, row.event_id, "{engine}");
            assert_eq!(event.payload, row.payload, "{engine}");
            assert_eq!(event.hash, row.hash, "{engine}: the hash is the same value");
            assert_eq!(
                event.metadata,
                serde_json::from_str(&row.metadata).expect("old metadata"),
                "{engine}"
            );
        }
        let forms: Vec<String> =
            sqlx::query_scalar("SELECT metadata FROM events ORDER BY position")
                .fetch_all(&db.pool)
                .await
                .expect("stored metadata");
        let (last, converted) = forms.split_last().expect("rows");
        assert!(
            converted
                .iter()
                .all(|m| m.starts_with('[') && !m.contains("\"actor\"")),
            "{engine}: {converted:?}"
        );
        assert!(
            last.starts_with('{') && last.contains("another tool"),
            "{engine}: {last}"
        );
        let ids: Vec<Vec<u8>> = sqlx::query_scalar("SELECT event_id FROM events ORDER BY position")
            .fetch_all(&db.pool)
            .await
            .expect("stored ids");
        assert!(ids.iter().all(|id| id.len() == 16), "{engine}");

        // The row written before the chain existed kept its missing hash, and is a break
        // (issue 13: no row is exempt from the chain); the rest verifies up to it.
        let legacy = rows
            .iter()
            .find(|r| r.hash.is_none())
            .expect("the row without a hash");
        let report = spse_totp_projections::audit::verify(db.log_source())
            .await
            .expect("verify");
        assert!(!report.ok, "{engine}: {report:?}");
        let broken = report.broken.clone().expect("the unhashed row");
        assert_eq!(
            (broken.stream.as_str(), broken.position, broken.version),
            ("legacy-start", legacy.position as u64, 1),
            "{engine}"
        );
        assert_eq!(report.legacy, 0, "{engine}");
        // The way out the operations guide gives: export, then import into a new database,
        // which chains every event as it appends it; that copy verifies whole.
        let mut exported = Vec::new();
        spse_totp_store::transfer::export(&db, &mut exported, Utc::now())
            .await
            .expect("export");
        let copy_dir = TempDir::new().expect("a folder");
        let copy = spse_totp_store::Database::open(&format!(
            "sqlite://{}/copy.db?mode=rwc",
            copy_dir.path().display()
        ))
        .await
        .expect("a new database");
        spse_totp_store::transfer::import(&copy, exported.as_slice())
            .await
            .expect("import");
        let report = spse_totp_projections::audit::verify(copy.log_source())
            .await
            .expect("verify the copy");
        assert!(report.ok, "{engine}: {report:?}");
        assert_eq!(report.checked, rows.len() as u64, "{engine}");

        // The chains go on from the converted hashes.
        for stream in ["account-penyedia-VENDOR-1", "legacy-start"] {
            let version = db.events.stream_version(stream).await.expect("version");
            db.events
                .append(
                    stream,
                    spse_totp_store::ExpectedVersion::Exact(version),
                    vec![spse_totp_store::NewEvent {
                        event_id: uuid::Uuid::now_v7(),
                        event_type: "TestedAfter".into(),
                        schema_version: 1,
                        payload: json!({}),
                        metadata: spse_totp_store::EventMetadata::system(),
                        recorded_at: Utc::now(),
                    }],
                )
                .await
                .expect("append after the upgrade");
        }
        let report = spse_totp_projections::audit::verify(db.log_source())
            .await
            .expect("verify");
        assert_eq!(
            report.broken,
            Some(broken),
            "{engine}: still named, nothing else"
        );
        // The verifier stops at that row, so each appended event's link is checked here: its
        // hash chains to the converted hash of its stream's last old row.
        for stream in ["account-penyedia-VENDOR-1", "legacy-start"] {
            let events = db.events.read_stream(stream, 1, 100).await.expect("read");
            let [.., before, after] = events.as_slice() else {
                panic!("{engine}: {stream} has an appended event");
            };
            assert_eq!(after.event_type, "TestedAfter");
            let metadata = serde_json::to_value(&after.metadata).expect("metadata");
            let expected = spse_totp_store::chain::event_hash(
                before.hash.as_deref(),
                &spse_totp_store::chain::ChainedFields {
                    stream,
                    version: after.version,
                    event_id: after.event_id,
                    event_type: &after.event_type,
                    schema_version: after.schema_version,
                    payload: &after.payload,
                    metadata: &metadata,
                    recorded_at_micros: after.recorded_at.timestamp_micros(),
                },
            );
            assert_eq!(
                after.hash.as_deref(),
                Some(expected.as_str()),
                "{engine}: {stream}"
            );
        }

        // Every audit row is kept, and a search shows it with what the event row holds.
        let found = spse_totp_projections::audit_log::search(
            &db.pool,
            &spse_totp_projections::audit_log::AuditSearch::default(),
            1000,
        )
        .await
        .expect("search");
        assert_eq!(found.len(), rows.len(), "{engine}: every audit row kept");
        let first = found.last().expect("the first row");
        assert_eq!(first.position, 1);
        assert_eq!(first.stream, "account-penyedia-VENDOR-1");
        assert_eq!(first.summary, "Account VENDOR-1 (penyedia) registered");
        assert_eq!(
            first.user_agent.as_deref(),
            Some("Mozilla/5.0 \"quoted\" é")
        );
        assert_eq!(first.actor, "spse-portal");
    }
}

/// Rows as the lean-rows format stored them (stream and type as text, the payload whole, the
/// metadata a compact array or a legacy object), each with the hash its values chain to: every
/// actor kind with and without its optional fields, payloads with every kind of JSON value (and
/// numbers, escapes and spacing as another tool might write them), and the payloads the
/// conversion must keep whole (an empty object, not an object, a key that is not a plain name,
/// a key twice).
fn lean_rows() -> Vec<spse_totp_store::StoredRow> {
    use spse_totp_store::{stored_metadata, Actor, EventMetadata};
    let id = |n: u128| uuid::Uuid::from_u128(0x0193_c000_0000_7000_8000_0000_0000_0000 + n);
    let actors = [
        Actor::Portal {
            key_id: id(1),
            key_name: "spse-portal".into(),
        },
        Actor::Device { device_id: id(2) },
        Actor::Helpdesk {
            operator: "Siti \"S\" Ñ".into(),
            key_id: id(3),
        },
        Actor::System,
        Actor::Operator {
            name: "root".into(),
        },
        Actor::Auditor {
            key_id: id(4),
            key_name: "siem".into(),
        },
        Actor::User,
        Actor::Console {
            username: "siti.helpdesk".into(),
            role: "helpdesk".into(),
        },
    ];
    let mut metadata: Vec<String> = Vec::new();
    for actor in actors {
        for (ip, agent, correlation, causation) in [
            (
                Some("10.1.2.3"),
                Some("Mozilla/5.0 \"quoted\" é"),
                Some("c-1"),
                Some("c-1"),
            ),
            (None, None, None, None),
            (Some("10.1.2.3"), None, None, None),
            (None, Some("ua"), Some("c-2"), Some("other")),
            (None, None, Some("c-3"), None),
            (None, None, None, Some("cause")),
        ] {
            metadata.push(stored_metadata::encode(&EventMetadata {
                actor: actor.clone(),
                client_ip: ip.map(str::to_owned),
                user_agent: agent.map(str::to_owned),
                correlation_id: correlation.map(str::to_owned),
                causation_id: causation.map(str::to_owned),
            }));
        }
    }
    metadata
        .push(r#"{"actor":{"kind":"system"},"client_ip":"10.0.0.9","via":"another tool"}"#.into());
    let payloads = [
        r#"{"at":"2026-11-30T09:00:10Z","client_ip":"10.0.0.1","login_id":"01a2","stage":"activation"}"#,
        r#"{ "b": true, "f": false, "n": null, "real": 1.50, "exp": 1e5, "neg": -0.0,
             "big": 123456789012345678901234567890, "int": 9007199254740993,
             "s": "é \"x\" \u00e9 \n", "o": {"k": [1, false, {"z": null}]}, "a": [] }"#,
        r#"{"user_type":"penyedia","user_id":"VENDOR-1","email":null,"name":null}"#,
        r#"{"only":{"nested":true}}"#,
        r#"{}"#,
        r#"[1,{"a":true}]"#,
        r#""text""#,
        r#"{"a-b":1,"c":2}"#,
        r#"{"1st":1}"#,
        r#"{"a":1,"a":2}"#,
    ];
    let streams = [
        "account-penyedia-VENDOR-1",
        "apikey-x",
        "account-nonpenyedia-A",
    ];
    let mut heads: std::collections::HashMap<&str, (i64, Option<String>)> = Default::default();
    let mut rows = Vec::new();
    for (i, metadata) in metadata.into_iter().enumerate() {
        let stream = streams[i % streams.len()];
        let (version, previous) = heads.get(stream).cloned().unwrap_or((0, None));
        let version = version + 1;
        let payload = payloads[i % payloads.len()];
        let event_type = format!("Tested{}", i % 4);
        let event_id = id(100 + i as u128);
        let recorded_at = 1_764_000_000_000_000 + i as i64;
        let value: Value = serde_json::from_str(payload).expect("a payload");
        let chained_metadata = stored_metadata::chained_value(&metadata).expect("metadata");
        let fields = spse_totp_store::chain::ChainedFields {
            stream,
            version: version as u64,
            event_id,
            event_type: &event_type,
            schema_version: 1,
            payload: &value,
            metadata: &chained_metadata,
            recorded_at_micros: recorded_at,
        };
        let digest = spse_totp_store::chain::event_digest(previous.as_deref(), &fields);
        let hash = spse_totp_store::chain::event_hash(previous.as_deref(), &fields);
        heads.insert(stream, (version, Some(hash)));
        rows.push(spse_totp_store::StoredRow {
            position: i as i64 + 1,
            stream: stream.to_owned(),
            version,
            event_id: event_id.as_bytes().to_vec(),
            event_type,
            schema_version: 1,
            payload: payload.to_owned(),
            metadata,
            recorded_at,
            hash: Some(digest.to_vec()),
            payload_keys: None,
            metadata_context: None,
        });
    }
    rows
}

/// A database of the lean-rows format moves its stream names, event types, payload keys and
/// metadata heads into `terms`: every event reads back exactly as it did before (the same
/// `RecordedEvent`, field for field), the chain verifies, appends go on from it, and the rows
/// hold the ids.
#[tokio::test]
async fn lean_rows_move_what_recurs_into_terms_and_read_back_the_same() {
    let dir = TempDir::new().expect("a folder");
    let url = format!("sqlite://{}/lean.db?mode=rwc", dir.path().display());
    let pool = migrate_to_before(&url, "sqlite", "20261207000010").await;
    let rows = lean_rows();
    // What this version read from them, before the conversion.
    let before: Vec<spse_totp_store::RecordedEvent> = rows
        .iter()
        .cloned()
        .map(|row| row.decode().expect("decodes as stored"))
        .collect();
    for row in &rows {
        sqlx::query(
            "INSERT INTO events (position, stream, version, event_id, event_type, \
             schema_version, payload, metadata, recorded_at, hash) \
             VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $8, $9)",
        )
        .bind(row.position)
        .bind(&row.stream)
        .bind(row.version)
        .bind(row.event_id.clone())
        .bind(&row.event_type)
        .bind(&row.payload)
        .bind(&row.metadata)
        .bind(row.recorded_at)
        .bind(row.hash.clone())
        .execute(&pool)
        .await
        .expect("a lean row");
    }
    pool.close().await;

    let db = spse_totp_store::Database::open(&url)
        .await
        .expect("upgraded");
    let after = db.events.read_all(0, 1000).await.expect("read");
    assert_eq!(after.len(), before.len());
    for (was, is) in before.iter().zip(&after) {
        assert_eq!(was, is);
    }
    for stream in [
        "account-penyedia-VENDOR-1",
        "apikey-x",
        "account-nonpenyedia-A",
    ] {
        let read = db.events.read_stream(stream, 1, 1000).await.expect("read");
        let expected: Vec<_> = before
            .iter()
            .filter(|e| e.stream == stream)
            .cloned()
            .collect();
        assert_eq!(read, expected, "{stream}");
    }
    let report = spse_totp_projections::audit::verify(db.log_source())
        .await
        .expect("verify");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.checked, rows.len() as u64);

    // What the rows hold now: ids, the payload's values, the metadata's rest.
    let plain_objects = rows
        .iter()
        .filter(|r| {
            matches!(serde_json::from_str::<Value>(&r.payload), Ok(Value::Object(m))
                if !m.is_empty()
                    && m.keys().all(|k| k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && !k.starts_with(|c: char| c.is_ascii_digit()))
                    && !r.payload.contains(r#""a":1,"a":2"#))
        })
        .count() as i64;
    let shaped: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE shape_id IS NOT NULL")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(shaped, plain_objects);
    let whole: Vec<String> =
        sqlx::query_scalar("SELECT payload FROM events WHERE shape_id IS NULL ORDER BY position")
            .fetch_all(&db.pool)
            .await
            .expect("whole payloads");
    assert!(whole.iter().any(|p| p.contains("\"a-b\"")), "{whole:?}");
    assert!(
        whole.iter().any(|p| p.contains(r#""a":1,"a":2"#)),
        "{whole:?}"
    );
    let headless: Vec<String> =
        sqlx::query_scalar("SELECT metadata FROM events WHERE context_id IS NULL")
            .fetch_all(&db.pool)
            .await
            .expect("whole metadata");
    assert_eq!(headless.len(), 1, "only the legacy object: {headless:?}");
    assert!(headless[0].contains("another tool"));
    let rests: Vec<String> =
        sqlx::query_scalar("SELECT metadata FROM events WHERE context_id IS NOT NULL")
            .fetch_all(&db.pool)
            .await
            .expect("rests");
    assert!(
        rests
            .iter()
            .all(|m| !m.contains("10.1.2.3") && !m.contains("spse-portal")),
        "{rests:?}"
    );
    // Each stream name and event type is stored once, whatever the number of its events.
    let names: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM terms WHERE term LIKE 'account-%' OR term = 'apikey-x' \
         OR term LIKE 'Tested%'",
    )
    .fetch_one(&db.pool)
    .await
    .expect("terms");
    assert_eq!(names, 3 + 4);

    // The chains go on, and what the writer interns reads the same way.
    for stream in ["account-penyedia-VENDOR-1", "a-new-stream"] {
        let version = db.events.stream_version(stream).await.expect("version");
        db.events
            .append(
                stream,
                spse_totp_store::ExpectedVersion::Exact(version),
                vec![spse_totp_store::NewEvent {
                    event_id: uuid::Uuid::now_v7(),
                    event_type: "Tested0".into(),
                    schema_version: 1,
                    payload: json!({"user_type": "penyedia", "user_id": "VENDOR-1", "email": null, "name": null}),
                    metadata: spse_totp_store::EventMetadata::system(),
                    recorded_at: Utc::now(),
                }],
            )
            .await
            .expect("append after the upgrade");
    }
    let report = spse_totp_projections::audit::verify(db.log_source())
        .await
        .expect("verify");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.checked, rows.len() as u64 + 2);
}
