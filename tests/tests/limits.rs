//! Bounded under load and abuse (issue 13, section 5), over real HTTP: the request time limit
//! and the long-polls it excepts, the cap on long-polls waiting at once, metrics labels a client
//! cannot multiply, and the vault sweep that removes secrets a failed delete left behind.

use std::collections::BTreeSet;
use std::time::{Duration as StdDuration, Instant};

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{json, Value};
use spse_totp_tests::{on_postgres, TestServer};

const NP: &str = "non_penyedia";

fn error_code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("an error body, got {body}"))
}

/// A request that waits on the database past its time limit is answered 503 `request_timeout`
/// with `Retry-After`, and promptly; a long-poll is given its `wait_seconds` on top.
#[tokio::test]
async fn a_request_past_its_time_limit_is_answered_503_but_a_long_poll_may_wait() {
    let server = TestServer::start_with(|c| {
        c.limits.request_timeout = StdDuration::from_secs(1);
    })
    .await;
    let (_, login) = server.start_login(NP, "ppk1").await;
    let id = login["login_id"].as_str().unwrap().to_owned();

    // A long-poll for 2 s outlives the 1 s limit and still answers 200.
    let started = Instant::now();
    let (status, body) = server
        .get(
            &format!("/v1/logins/{id}?wait_seconds=2"),
            &server.portal_key,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(started.elapsed() >= StdDuration::from_secs(2));
    let (status, body) = server
        .get(
            "/v1/audit/feed?after=999999&wait_seconds=2",
            &server.auditor_key,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The database's write turn is held elsewhere, so a command cannot commit.
    let pool = server.services.db.pool.clone();
    let blocker = if on_postgres() {
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("LOCK TABLE events IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .unwrap();
        Some(tx)
    } else {
        None
    };
    let turn = if on_postgres() {
        None
    } else {
        Some(server.services.db.write().await)
    };
    let started = Instant::now();
    let answer = server
        .client
        .post(server.url("/v1/logins"))
        .bearer_auth(&server.portal_key)
        .json(&json!({"user_type": NP, "user_id": "ppk2"}))
        // Without a limit the server would wait for the database for ever.
        .timeout(StdDuration::from_secs(10))
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        answer
            .headers()
            .get("retry-after")
            .unwrap()
            .to_str()
            .unwrap(),
        "1"
    );
    let body: Value = answer.json().await.unwrap();
    assert_eq!(error_code(&body), "request_timeout", "{body}");
    assert!(
        waited < StdDuration::from_secs(5),
        "answered at the limit, not when the database let go: {waited:?}"
    );
    drop(turn);
    drop(blocker);

    // With the database free again, the same call succeeds.
    let (status, body) = server.start_login(NP, "ppk2").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// Long-polls waiting at once are capped; one more is answered 503 with `Retry-After`, a plain
/// poll (no `wait_seconds`) is never turned away, and a freed place is taken again.
#[tokio::test]
async fn long_polls_over_the_cap_are_answered_503_with_retry_after() {
    let server = TestServer::start_with(|c| c.limits.max_long_polls = 2).await;
    let (_, login) = server.start_login(NP, "ppk1").await;
    let id = login["login_id"].as_str().unwrap().to_owned();
    let poll = |wait: u64| {
        let request = server
            .client
            .get(server.url(&format!("/v1/logins/{id}?wait_seconds={wait}")))
            .bearer_auth(&server.portal_key);
        async move { request.send().await.unwrap() }
    };
    let waiting = futures::future::join_all([poll(3), poll(3)]);
    let third = async {
        // Both have reached the server by then.
        tokio::time::sleep(StdDuration::from_millis(500)).await;
        let over = poll(3).await;
        let plain = server
            .get(&format!("/v1/logins/{id}"), &server.portal_key)
            .await;
        let feed = server
            .get("/v1/audit/feed?wait_seconds=1", &server.auditor_key)
            .await;
        (over, plain, feed)
    };
    let (done, (over, plain, feed)) = tokio::join!(waiting, third);
    for answer in done {
        assert_eq!(answer.status(), StatusCode::OK);
    }
    assert_eq!(over.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(over.headers().get("retry-after").is_some());
    let body: Value = over.json().await.unwrap();
    assert_eq!(error_code(&body), "too_many_long_polls", "{body}");
    assert_eq!(plain.0, StatusCode::OK, "a plain poll waits for nothing");
    assert_eq!(
        feed.0,
        StatusCode::SERVICE_UNAVAILABLE,
        "the feed's long-poll counts too: {}",
        feed.1
    );

    // The places are free again once the polls have answered.
    let again = poll(1).await;
    assert_eq!(again.status(), StatusCode::OK);
}

/// The `spse_totp_http_requests_total` series, one line each.
async fn series(server: &TestServer) -> BTreeSet<String> {
    let text = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("spse_totp_http_requests_total{"))
        .map(|l| {
            l.rsplit_once(' ')
                .map_or(l, |(labels, _)| labels)
                .to_owned()
        })
        .collect()
}

fn random_path(kind: usize, noise: &str) -> String {
    match kind % 4 {
        0 => format!("/{noise}"),
        1 => format!("/v1/{noise}/x"),
        2 => format!("/v1/logins/{noise}/nothing"),
        _ => format!("/console/{noise}"),
    }
}

async fn send(server: &TestServer, method: &str, path: &str) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let answer = server
        .client
        .request(method, server.url(path))
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_client_error(), "{path}");
}

/// Random paths with random methods add no series beyond the few that name "a path no route
/// matches" and "a method this service does not know".
#[tokio::test]
async fn random_paths_and_methods_add_no_metrics_series() {
    let server = TestServer::start().await;
    let methods = [
        "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "PROPFIND", "BREW",
    ];
    let noise = || uuid::Uuid::new_v4().simple().to_string();
    // The first scrape counts itself.
    series(&server).await;
    let before = series(&server).await;
    // Every method (and an invented one) on every kind of unknown path, once.
    for method in methods
        .iter()
        .map(|m| m.to_string())
        .chain([format!("X{}", &noise()[..8])])
    {
        for kind in 0..4 {
            send(
                &server,
                &method.to_ascii_uppercase(),
                &random_path(kind, &noise()),
            )
            .await;
        }
    }
    let covered = series(&server).await;
    let added: Vec<_> = covered.difference(&before).collect();
    // Known methods plus "other", on "unmatched" (and the console's own fallback): bounded by
    // the methods this service knows, not by what clients send.
    assert!(
        added.len() <= 16,
        "unknown paths added {} series: {added:#?}",
        added.len()
    );
    for line in &added {
        assert!(
            line.contains("route=\"unmatched\"") || line.contains("route=\"/console"),
            "{line}"
        );
        assert!(
            !line.contains("PROPFIND") && !line.contains("BREW"),
            "{line}"
        );
    }
    // Now fifty random ones: new paths, methods drawn at random or invented.
    for i in 0..50 {
        let draw = noise();
        let pick = usize::from_str_radix(&draw[..4], 16).unwrap();
        let method = if pick % 3 == 0 {
            format!("Z{}", &draw[4..12]).to_ascii_uppercase()
        } else {
            methods[pick % methods.len()].to_owned()
        };
        send(&server, &method, &random_path(pick / 7 + i, &draw)).await;
    }
    let after = series(&server).await;
    assert_eq!(
        after.difference(&covered).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "fifty random requests add no series"
    );
}

async fn vault_rows(server: &TestServer, enrollment_id: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM vault_secrets WHERE enrollment_id = $1")
        .bind(enrollment_id)
        .fetch_one(&server.services.db.pool)
        .await
        .unwrap()
}

/// Makes every delete from the vault fail, as a database error would, until `allow_deletes`.
async fn refuse_deletes(server: &TestServer) {
    let pool = &server.services.db.pool;
    if on_postgres() {
        sqlx::query(
            "CREATE FUNCTION refuse_vault_delete() RETURNS trigger AS $$ \
             BEGIN RAISE EXCEPTION 'deletes refused by the test'; END $$ LANGUAGE plpgsql",
        )
        .execute(pool)
        .await
        .unwrap();
        sqlx::query(
            "CREATE TRIGGER refuse_vault_delete BEFORE DELETE ON vault_secrets \
             FOR EACH ROW EXECUTE FUNCTION refuse_vault_delete()",
        )
        .execute(pool)
        .await
        .unwrap();
    } else {
        let _turn = server.services.db.write().await;
        sqlx::query(
            "CREATE TRIGGER refuse_vault_delete BEFORE DELETE ON vault_secrets \
             BEGIN SELECT RAISE(ABORT, 'deletes refused by the test'); END",
        )
        .execute(pool)
        .await
        .unwrap();
    }
}

async fn allow_deletes(server: &TestServer) {
    let pool = &server.services.db.pool;
    let drop = if on_postgres() {
        "DROP TRIGGER refuse_vault_delete ON vault_secrets"
    } else {
        "DROP TRIGGER refuse_vault_delete"
    };
    let _turn = server.services.db.write().await;
    sqlx::query(drop).execute(pool).await.unwrap();
}

/// A disable whose delete of the sealed secret fails still succeeds (the event is the truth),
/// and the next vault sweep removes the secret; another account's active secret stays.
#[tokio::test]
async fn a_secret_whose_first_delete_failed_is_removed_by_the_vault_sweep() {
    let server = TestServer::start().await;
    let (phone, approved) = server.activate_by_code(NP, "ppk1").await;
    let (other, _) = server.activate_by_code(NP, "ppk2").await;
    assert_eq!(vault_rows(&server, &phone.enrollment_id).await, 1);

    refuse_deletes(&server).await;
    server.advance(Duration::seconds(30));
    let (status, body) = server
        .post(
            "/v1/accounts/non_penyedia/ppk1/disable",
            &server.portal_key,
            json!({"login_id": approved, "code": phone.code_at(server.now())}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        vault_rows(&server, &phone.enrollment_id).await,
        1,
        "the first delete failed"
    );
    allow_deletes(&server).await;

    // The activated secret never expires by time: only the sweep's look at the log finds it.
    spse_totp_api::housekeeping::sweep(&server.services)
        .await
        .unwrap();
    assert_eq!(
        vault_rows(&server, &phone.enrollment_id).await,
        0,
        "the sweep destroyed the disabled account's secret"
    );
    assert_eq!(
        vault_rows(&server, &other.enrollment_id).await,
        1,
        "an active device's secret is kept"
    );
    // And the other account still logs in by code.
    server.advance(Duration::seconds(30));
    let (_, login) = server.start_login(NP, "ppk2").await;
    let id = login["login_id"].as_str().unwrap();
    let (status, body) = server
        .post(
            &format!("/v1/logins/{id}/code"),
            &server.portal_key,
            json!({"code": other.code_at(server.now())}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
