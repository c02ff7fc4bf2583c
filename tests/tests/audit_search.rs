//! The helpdesk's search of the audit log: every filter, alone and combined, returns exactly the
//! rows an independent reading of the event log says it should, newest first, across pages; CSV
//! holds the same rows, quoted, with formulas defused.

use chrono::{DateTime, Duration, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use spse_totp_domain::AccountKey;
use spse_totp_store::RecordedEvent;
use spse_totp_tests::{wrong_code, TestServer};

const OPERATOR: &str = "Budi Santoso";

async fn portal_login(
    server: &TestServer,
    user_type: &str,
    user_id: &str,
    ip: &str,
    agent: &str,
) -> Value {
    let response = server
        .client
        .post(server.url("/v1/logins"))
        .bearer_auth(&server.portal_key)
        .header("X-Forwarded-For", ip)
        .header("User-Agent", agent)
        .json(&json!({"user_type": user_type, "user_id": user_id}))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.expect("json")
}

async fn search_raw(server: &TestServer, query: &str, accept: Option<&str>) -> reqwest::Response {
    let mut request = server
        .client
        .get(server.url(&format!("/v1/helpdesk/events?purpose=ticket-881&{query}")))
        .bearer_auth(&server.helpdesk_key)
        .header("X-Operator", OPERATOR);
    if let Some(accept) = accept {
        request = request.header("Accept", accept);
    }
    request.send().await.expect("answer")
}

/// All matching positions, page by page, checking the order.
async fn search_all(server: &TestServer, query: &str, limit: usize) -> Vec<u64> {
    let mut positions = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("{query}&limit={limit}&cursor={c}"),
            None => format!("{query}&limit={limit}"),
        };
        let response = search_raw(server, &q, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{query}");
        let body: Value = response.json().await.expect("json");
        let rows = body["events"].as_array().expect("events");
        assert!(rows.len() <= limit);
        positions.extend(
            rows.iter()
                .map(|r| r["position"].as_u64().expect("position")),
        );
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert!(
        positions.windows(2).all(|w| w[0] > w[1]),
        "newest first: {positions:?}"
    );
    positions
}

/// One event as the filters see it, read straight from the log.
struct Fact {
    position: u64,
    user_type: Option<String>,
    user_id: Option<String>,
    event_type: String,
    actor_kind: String,
    actor: String,
    client_ip: Option<String>,
    at: DateTime<Utc>,
}

fn fact(e: &RecordedEvent) -> Fact {
    let key = AccountKey::from_stream_name(&e.stream).or_else(|| {
        e.payload["subject"]
            .as_str()
            .and_then(AccountKey::from_stream_name)
    });
    Fact {
        position: e.position,
        user_type: key.as_ref().map(|k| k.user_type.as_str().to_owned()),
        user_id: key.as_ref().map(|k| k.user_id.to_string()),
        event_type: e.event_type.clone(),
        actor_kind: e.metadata.actor.kind().to_owned(),
        actor: e.metadata.actor.display_name(),
        client_ip: e.metadata.client_ip.clone(),
        at: e.recorded_at,
    }
}

fn enc(at: DateTime<Utc>) -> String {
    url::form_urlencoded::byte_serialize(at.to_rfc3339().as_bytes()).collect()
}

/// A minimal RFC 4180 reader, independent of the code under test.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => cell.push(c),
        }
    }
    rows
}

#[tokio::test]
async fn every_filter_returns_exactly_the_matching_rows_newest_first() {
    let server = TestServer::start_with(|c| c.trust_forwarded_for = true).await;
    let start = server.now();
    for (user_type, user_id, ip) in [
        ("penyedia", "ppk1", "10.0.0.7"),
        ("penyedia", "ppk2", "10.0.0.8"),
        ("penyedia", "ppkx", "10.0.0.7"),
        ("non_penyedia", "admin1", "10.0.0.9"),
        ("non_penyedia", "ppk1", "10.0.0.9"),
    ] {
        server.advance(Duration::minutes(3));
        let login = portal_login(&server, user_type, user_id, ip, "Mozilla/5.0").await;
        let phone = spse_totp_tests::Authenticator::scan(&login);
        let id = login["login_id"].as_str().expect("id");
        let (status, _) = server
            .post(
                &format!("/v1/logins/{id}/code"),
                &server.portal_key,
                json!({"code": wrong_code(&phone, server.now())}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let middle = server.now() - Duration::minutes(7);
    // A helpdesk search and an auditor read are in the log too.
    assert_eq!(
        search_raw(&server, "user_id=zzz", None).await.status(),
        StatusCode::OK
    );
    let (status, _) = server
        .get(
            "/v1/audit/accounts/penyedia/ppk1/events?purpose=audit",
            &server.auditor_key,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    server
        .services
        .projections
        .catch_up()
        .await
        .expect("catch up");
    let snapshot = server
        .services
        .db
        .events
        .head_position()
        .await
        .expect("head");
    let facts: Vec<Fact> = server
        .services
        .db
        .events
        .read_all(0, 100_000)
        .await
        .expect("log")
        .iter()
        .map(fact)
        .collect();

    type Pred = Box<dyn Fn(&Fact) -> bool>;
    let is = |v: Option<&String>, want: &str| v.is_some_and(|v| v == want);
    let cases: Vec<(String, Pred)> = vec![
        ("".into(), Box::new(|_| true)),
        (
            "user_id=ppk".into(),
            Box::new(move |f| f.user_id.as_deref().is_some_and(|u| u.starts_with("PPK"))),
        ),
        (
            "user_id=PpK1".into(),
            Box::new(move |f| f.user_id.as_deref().is_some_and(|u| u.starts_with("PPK1"))),
        ),
        (
            "user_type=non_penyedia".into(),
            Box::new(move |f| is(f.user_type.as_ref(), "non_penyedia")),
        ),
        (
            "user_type=penyedia&user_id=ppk1".into(),
            Box::new(move |f| {
                is(f.user_type.as_ref(), "penyedia") && is(f.user_id.as_ref(), "PPK1")
            }),
        ),
        (
            "type=CodeRejected".into(),
            Box::new(|f| f.event_type == "CodeRejected"),
        ),
        (
            "type=CodeRejected&user_id=ppk".into(),
            Box::new(move |f| {
                f.event_type == "CodeRejected"
                    && f.user_id.as_deref().is_some_and(|u| u.starts_with("PPK"))
            }),
        ),
        (
            "actor=portal".into(),
            Box::new(|f| f.actor_kind == "portal"),
        ),
        (
            "actor=portal:test-portal".into(),
            Box::new(|f| f.actor_kind == "portal" && f.actor == "test-portal"),
        ),
        (
            format!("actor=helpdesk:{}", OPERATOR.replace(' ', "%20")),
            Box::new(|f| f.actor_kind == "helpdesk" && f.actor == OPERATOR),
        ),
        (
            "actor=auditor".into(),
            Box::new(|f| f.actor_kind == "auditor"),
        ),
        (
            "client_ip=10.0.0.7".into(),
            Box::new(move |f| is(f.client_ip.as_ref(), "10.0.0.7")),
        ),
        (
            format!("from={}", enc(middle)),
            Box::new(move |f| f.at >= middle),
        ),
        (
            format!("to={}", enc(middle)),
            Box::new(move |f| f.at <= middle),
        ),
        (
            format!("client_ip=10.0.0.7&from={}&to={}", enc(start), enc(middle)),
            Box::new(move |f| {
                is(f.client_ip.as_ref(), "10.0.0.7") && f.at >= start && f.at <= middle
            }),
        ),
        (
            "type=AuditRecordRead".into(),
            Box::new(|f| f.event_type == "AuditRecordRead"),
        ),
    ];
    for (query, pred) in &cases {
        let expected: Vec<u64> = facts
            .iter()
            .rev()
            .filter(|f| pred(f))
            .map(|f| f.position)
            .collect();
        assert!(!expected.is_empty(), "{query}: the data exercises it");
        for limit in [2, 1000] {
            let seen: Vec<u64> = search_all(&server, query, limit)
                .await
                .into_iter()
                .filter(|p| *p <= snapshot)
                .collect();
            assert_eq!(seen, expected, "{query} (limit {limit})");
        }
    }
}

#[tokio::test]
async fn bad_filters_are_refused_and_the_operator_and_purpose_are_required() {
    let server = TestServer::start().await;
    for bad in [
        "user_type=vendor",
        "user_id=a%20b",
        "actor=boss",
        "actor=helpdesk:",
        "client_ip=ten",
        "from=soon",
        "limit=5000",
        "cursor=abc",
        "format=xml",
        "type=DROP%20TABLE",
    ] {
        let response = search_raw(&server, bad, None).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: Value = response.json().await.expect("json");
        assert!(body["error"]["code"].is_string(), "{bad}: {body}");
    }
    let response = server
        .client
        .get(server.url("/v1/helpdesk/events"))
        .bearer_auth(&server.helpdesk_key)
        .header("X-Operator", OPERATOR)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "purpose_required");
    let (status, body) = server
        .get("/v1/helpdesk/events?purpose=x", &server.helpdesk_key)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "operator_required");
    for key in [&server.portal_key, &server.auditor_key] {
        let (status, _) = server.get("/v1/helpdesk/events?purpose=x", key).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn csv_holds_the_same_rows_quoted_with_formulas_defused() {
    let server = TestServer::start_with(|c| c.trust_forwarded_for = true).await;
    let evil = "=HYPERLINK(\"http://evil.example\",\"click\")";
    for n in 0..3 {
        server.advance(Duration::minutes(1));
        portal_login(&server, "penyedia", &format!("ppk{n}"), "10.0.0.7", evil).await;
    }
    server
        .services
        .projections
        .catch_up()
        .await
        .expect("catch up");
    let query = "user_id=ppk&limit=1000";
    let json_rows: Value = search_raw(&server, query, None)
        .await
        .json()
        .await
        .expect("json");
    let json_rows = json_rows["events"].as_array().expect("rows").clone();
    for (how, accept) in [("format=csv&", None), ("", Some("text/csv"))] {
        let response = search_raw(&server, &format!("{how}{query}"), accept).await;
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers()["content-type"]
            .to_str()
            .expect("ct")
            .to_owned();
        assert!(content_type.starts_with("text/csv"), "{content_type}");
        let text = response.text().await.expect("text");
        let rows = parse_csv(&text);
        assert_eq!(rows[0][0], "position");
        assert_eq!(rows.len() - 1, json_rows.len(), "{text}");
        for (row, json) in rows[1..].iter().zip(&json_rows) {
            assert_eq!(row.len(), 11, "{row:?}");
            assert_eq!(row[0], json["position"].as_u64().expect("p").to_string());
            assert_eq!(row[3], json["user_id"].as_str().unwrap_or(""));
            assert_eq!(row[4], json["type"].as_str().expect("type"));
            assert_eq!(row[10], json["summary"].as_str().expect("summary"));
            if json["user_agent"].as_str() == Some(evil) {
                assert_eq!(row[8], format!("'{evil}"), "a formula is shown as text");
            }
        }
        assert!(
            rows[1..].iter().any(|r| r[8].starts_with("'=")),
            "the evil agent is in the data"
        );
    }
    // Pages of CSV carry the next cursor in a header.
    let response = search_raw(&server, "format=csv&user_id=ppk&limit=1", None).await;
    let cursor = response
        .headers()
        .get("x-next-cursor")
        .expect("cursor")
        .to_str()
        .expect("c")
        .to_owned();
    let text = response.text().await.expect("text");
    assert_eq!(parse_csv(&text).len(), 2);
    let next = search_raw(
        &server,
        &format!("format=csv&user_id=ppk&limit=1&cursor={cursor}"),
        None,
    )
    .await;
    let next_rows = parse_csv(&next.text().await.expect("text"));
    assert_ne!(next_rows[1][0], parse_csv(&text)[1][0]);
}

#[tokio::test]
async fn search_plans_use_an_index_for_every_filter() {
    let server = TestServer::start().await;
    if spse_totp_tests::on_postgres() {
        // EXPLAIN QUERY PLAN is SQLite's; the PostgreSQL indexes are the same columns.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED on PostgreSQL: this test reads SQLite query plans"
        );
        return;
    }
    let pool = &server.services.db.pool;
    // The texts the filters name are term ids in audit_log (the search looks them up first):
    // 1 and 2 stand for the user types, 3 for an event type, 4 and 5 for an actor, 6 for an
    // address.
    for condition in [
        "user_type = 1 AND user_id >= 'PPK' AND user_id < 'PPL'",
        "user_type IN (1, 2) AND user_id >= 'PPK' AND user_id < 'PPL'",
        "event_type = 3",
        "event_type = 3 AND user_type = 1 AND user_id >= 'P' AND user_id < 'Q'",
        "actor_kind = 4 AND actor = 5",
        "client_ip = 6",
        "recorded_at >= 0 AND recorded_at <= 10",
        "position / 16384 = 3 AND user_type IN (1, 2) AND user_id >= 'PPK' AND user_id < 'PPL'",
        "position / 16384 = 3 AND user_type = 1",
    ] {
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(&format!(
            "EXPLAIN QUERY PLAN SELECT position FROM audit_log WHERE {condition} ORDER BY position DESC LIMIT 51"
        ))
        .fetch_all(pool)
        .await
        .expect("plan");
        let text: Vec<&str> = plan.iter().map(|p| p.3.as_str()).collect();
        assert!(
            text.iter()
                .any(|t| t.contains("USING INDEX") || t.contains("USING COVERING INDEX")),
            "{condition}: {text:?}"
        );
    }
}

/// A prefix matching many rows, or a bare user type, is searched by walking the log's buckets
/// (16,384 positions each) newest first instead of sorting the prefix's index: the answer must
/// be the same rows, across bucket boundaries and past a stretch where only another account
/// wrote.
#[tokio::test]
async fn a_dense_prefix_returns_exactly_its_rows_too() {
    let server = TestServer::start().await;
    let pool = &server.services.db.pool;
    // 2,500 rows of BULK* users among 3,000, spread 13 positions apart over three buckets,
    // then 20,000 rows of one other account: dense enough for a log this size that the search
    // walks the buckets, and the newest bucket has none of them.
    const SPREAD: i64 = 13;
    const LONE: i64 = 20_000;
    let position = |i: i64| 1_000 + i * SPREAD;
    // `recorded_at` is stored in microseconds: row i was recorded i µs after the epoch.
    let instant = |micros: i64| DateTime::<Utc>::from_timestamp_micros(micros).expect("instant");
    let mut tx = pool.begin().await.expect("begin");
    for i in 0..3000 + LONE {
        let (user_type, user_id, at) = if i >= 3000 {
            ("penyedia", "LONE".to_owned(), 5_000 + i)
        } else if i % 6 == 5 {
            ("penyedia", format!("OTHER{i}"), i)
        } else {
            (
                if i % 2 == 0 {
                    "penyedia"
                } else {
                    "non_penyedia"
                },
                format!("BULK{}", i % 40),
                i,
            )
        };
        let at_position = if i >= 3000 {
            position(3000) + (i - 3000)
        } else {
            position(i)
        };
        // The event row the audit row stands for: a page reads its stream and summary there.
        sqlx::query(
            "INSERT INTO event_rows (position, stream, version, event_id, event_type, schema_version, \
             payload, metadata, recorded_at) VALUES ($1, $2, $1, $3, 'LoginStarted', 1, '{}', \
             '[\"system\"]', $4)",
        )
        .bind(at_position)
        .bind(format!("account-{user_type}-{user_id}"))
        .bind(
            uuid::Uuid::from_u128(at_position as u128)
                .as_bytes()
                .to_vec(),
        )
        .bind(at)
        .execute(&mut *tx)
        .await
        .expect("insert event");
        // The texts are term ids, as the projector writes them.
        sqlx::query(
            "INSERT INTO terms (term) SELECT v.column1 FROM (VALUES ($1), ('LoginStarted'), \
             ('portal'), ('p')) AS v WHERE NOT EXISTS (SELECT 1 FROM terms t WHERE t.term = v.column1)",
        )
        .bind(user_type)
        .execute(&mut *tx)
        .await
        .expect("insert terms");
        sqlx::query(
            "INSERT INTO audit_log (position, user_type, user_id, event_type, actor_kind, actor, \
             recorded_at) VALUES ($1, (SELECT id FROM terms WHERE term = $2), $3, \
             (SELECT id FROM terms WHERE term = 'LoginStarted'), \
             (SELECT id FROM terms WHERE term = 'portal'), (SELECT id FROM terms WHERE term = 'p'), $4)",
        )
        .bind(at_position)
        .bind(user_type)
        .bind(&user_id)
        .bind(at)
        .execute(&mut *tx)
        .await
        .expect("insert");
    }
    // The rows above stand projected already: the projectors carry on after them.
    for projector in spse_totp_projections::all_projectors() {
        sqlx::query(
            "INSERT INTO projection_checkpoints (projector, position, updated_at) \
             VALUES ($1, (SELECT MAX(position) FROM events), 0) \
             ON CONFLICT (projector) DO UPDATE SET position = excluded.position",
        )
        .bind(projector.name())
        .execute(&mut *tx)
        .await
        .expect("checkpoint");
    }
    sqlx::query("UPDATE projection_checkpoints SET position = (SELECT MAX(position) FROM events)")
        .execute(&mut *tx)
        .await
        .expect("checkpoints");
    tx.commit().await.expect("commit");
    let expected = |f: &dyn Fn(i64) -> bool| -> Vec<u64> {
        (0..3000i64)
            .rev()
            .filter(|i| f(*i))
            .map(|i| position(i) as u64)
            .collect()
    };
    let bulk = expected(&|i| i % 6 != 5);
    assert!(bulk.len() > 2000, "dense");
    assert!(
        bulk.first().copied().unwrap_or(0) / 16_384
            > bulk.last().copied().unwrap_or(0) / 16_384 + 1,
        "spread over three buckets"
    );
    assert_eq!(search_all(&server, "user_id=bulk", 1000).await, bulk);
    let penyedia_bulk = expected(&|i| i % 6 != 5 && i % 2 == 0);
    assert_eq!(
        search_all(&server, "user_type=penyedia&user_id=bulk", 1000).await,
        penyedia_bulk
    );
    let bulk1 = expected(&|i| i % 6 != 5 && (i % 40 == 1 || (10..20).contains(&(i % 40))));
    assert_eq!(search_all(&server, "user_id=BuLk1", 1000).await, bulk1);
    let window = expected(&|i| i % 6 != 5 && (1000..=1999).contains(&i));
    assert_eq!(
        search_all(
            &server,
            &format!(
                "user_id=bulk&from={}&to={}",
                enc(instant(1000)),
                enc(instant(1999))
            ),
            1000
        )
        .await,
        window
    );
    // A bare user type walks the buckets too; the log's own rows (below position 1,000) are
    // left out of the comparison.
    let non_penyedia: Vec<u64> = search_all(&server, "user_type=non_penyedia", 1000)
        .await
        .into_iter()
        .filter(|p| *p >= 1_000)
        .collect();
    assert_eq!(non_penyedia, expected(&|i| i % 6 != 5 && i % 2 == 1));
    let other: Vec<u64> = search_all(&server, "user_type=penyedia&type=LoginStarted", 200)
        .await
        .into_iter()
        .filter(|p| *p >= 1_000)
        .take(60)
        .collect();
    let lone: Vec<u64> = (0..LONE)
        .rev()
        .take(60)
        .map(|i| (position(3000) + i) as u64)
        .collect();
    assert_eq!(other, lone);
}
