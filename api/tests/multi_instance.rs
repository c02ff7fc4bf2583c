//! Two `spse-totp` processes on one PostgreSQL database, as behind a load balancer: whatever one
//! instance records, the other sees and enforces. Skipped (and saying so) without
//! `SPSE_TOTP_TEST_DATABASE_URL`.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use spse_totp_commands::vault::MasterKey;
use spse_totp_domain::totp::{code_for_step, step_at};
use spse_totp_store::test_database::{fresh_postgres_url, skipped};
use support::{create_key_with, enrollment_of, secret_of, Served};
use tempfile::TempDir;
use tokio::task::JoinSet;

struct Pair {
    /// Started first, so it holds the projection lease.
    first: Served,
    second: Served,
    key: String,
    url: String,
    master_key: String,
    client: reqwest::Client,
    dir: TempDir,
}

/// How the pair writes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Writes {
    /// Each instance appends for itself.
    EachItsOwn,
    /// Both take part in the election (`SPSE_TOTP_CLUSTER_URL`); the second forwards its write
    /// requests to the first, which it has found active by the time the pair is returned.
    Forwarded,
}

async fn start_pair(writes: Writes) -> Option<Pair> {
    let url = fresh_postgres_url().await.expect("a fresh test schema")?;
    let dir = TempDir::new().expect("a temporary folder");
    let master_key = MasterKey::generate().to_base64();
    let envs = [
        ("SPSE_TOTP_DATABASE_URL", url.as_str()),
        ("SPSE_TOTP_MASTER_KEY", master_key.as_str()),
        // The tests' own addresses (X-Forwarded-For) are believed from the local machine.
        ("SPSE_TOTP_TRUSTED_PROXIES", "127.0.0.1/32"),
    ];
    let key = create_key_with(dir.path(), "portal", "portal-test", &envs);
    let client = reqwest::Client::new();
    let start = |envs: &[(&str, &str)]| match writes {
        Writes::EachItsOwn => Served::start_with(dir.path(), envs),
        Writes::Forwarded => Served::start_in_cluster(dir.path(), envs),
    };
    let mut first = start(&envs);
    first.wait_until_healthy(&client).await;
    // Give the first instance the time to take the projection lease before the second asks.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut second = start(&envs);
    second.wait_until_healthy(&client).await;
    let pair = Pair {
        first,
        second,
        key,
        url,
        master_key,
        client,
        dir,
    };
    if writes == Writes::Forwarded {
        pair.await_forwarding().await;
    }
    Some(pair)
}

async fn call(
    client: &reqwest::Client,
    key: &str,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.request(method, url).bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        }
        // A killed instance answers nothing; callers treat that as "not acknowledged".
        Err(_) => (0, Value::Null),
    }
}

impl Pair {
    /// Until the second instance forwards: a write to no route is answered 404 by whichever
    /// instance runs it, and counted on the second once it went to the first.
    async fn await_forwarding(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while forwarded(&self.client, &self.second.base, "answered").await == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the second instance never found the first active"
            );
            let (status, _) = self.post(&self.second.base, "/v1/none", json!({})).await;
            assert_eq!(status, 404);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn post(&self, base: &str, path: &str, body: Value) -> (u16, Value) {
        call(
            &self.client,
            &self.key,
            reqwest::Method::POST,
            format!("{base}{path}"),
            Some(body),
        )
        .await
    }

    async fn get(&self, base: &str, path: &str) -> (u16, Value) {
        call(
            &self.client,
            &self.key,
            reqwest::Method::GET,
            format!("{base}{path}"),
            None,
        )
        .await
    }

    async fn start_login(&self, base: &str, user_id: &str) -> (u16, Value) {
        self.post(
            base,
            "/v1/logins",
            json!({"user_type": "penyedia", "user_id": user_id}),
        )
        .await
    }
}

/// What `/metrics` on `base` counts of the write requests it forwarded, with `outcome`.
async fn forwarded(client: &reqwest::Client, base: &str, outcome: &str) -> u64 {
    let series = format!("spse_totp_forwarded_requests_total{{outcome=\"{outcome}\"}}");
    metric(client, base, &series).await
}

/// The value of one series in `/metrics` on `base`; 0 when it has none yet.
async fn metric(client: &reqwest::Client, base: &str, series: &str) -> u64 {
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("the metrics")
        .text()
        .await
        .expect("their text");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |n| n.trim().parse().expect("a count"))
}

/// The step now, after waiting out the last seconds of a step, so that "this step" and "the
/// step before" stay in the window for the next few seconds of the test.
async fn settled_step() -> u64 {
    let seconds_into_step = Utc::now().timestamp().rem_euclid(30);
    if seconds_into_step > 22 {
        tokio::time::sleep(Duration::from_secs((31 - seconds_into_step) as u64)).await;
    }
    step_at(Utc::now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_share_activation_approval_long_polls_and_the_fail_counter() {
    let Some(pair) = start_pair(Writes::EachItsOwn).await else {
        return skipped("two_instances_share_activation_approval_long_polls_and_the_fail_counter");
    };
    share_activation_approval_long_polls_and_the_fail_counter(&Arc::new(pair)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standby_forwarding_its_writes_shares_activation_approval_long_polls_and_the_fail_counter(
) {
    let Some(pair) = start_pair(Writes::Forwarded).await else {
        return skipped(
            "a_standby_forwarding_its_writes_shares_activation_approval_long_polls_and_the_fail_counter",
        );
    };
    let forwarded_before = forwarded(&pair.client, &pair.second.base, "answered").await;
    let pair = Arc::new(pair);
    share_activation_approval_long_polls_and_the_fail_counter(&pair).await;
    // Every write sent to the second (10 racing codes, a typed code, a login, 15 wrong codes)
    // went to the first.
    assert!(
        forwarded(&pair.client, &pair.second.base, "answered").await >= forwarded_before + 27,
        "the second instance forwarded its writes"
    );
}

async fn share_activation_approval_long_polls_and_the_fail_counter(pair: &Arc<Pair>) {
    let (a, b) = (pair.first.base.clone(), pair.second.base.clone());

    // Activation QR from A; 20 parallel submissions of one code, split across A and B.
    let (status, login) = pair.start_login(&a, "vendor-1").await;
    assert_eq!(status, 201, "{login}");
    assert_eq!(login["status"], "awaiting_activation");
    let secret = secret_of(&login);
    let login_id = login["login_id"].as_str().expect("a login id").to_owned();
    let step = settled_step().await;
    // The step before: the window still accepts it, and it leaves this step for the next login.
    let code = code_for_step(&secret, step - 1);
    let mut racers = JoinSet::new();
    for i in 0..20 {
        let pair = Arc::clone(pair);
        let base = if i % 2 == 0 { a.clone() } else { b.clone() };
        let path = format!("/v1/logins/{login_id}/code");
        let code = code.clone();
        racers.spawn(async move { pair.post(&base, &path, json!({"code": code})).await });
    }
    let mut approved = 0;
    while let Some(outcome) = racers.join_next().await {
        let (status, body) = outcome.expect("a racer");
        match status {
            200 => approved += 1,
            409 | 422 => {}
            other => panic!("unexpected answer {other}: {body}"),
        }
    }
    assert_eq!(
        approved, 1,
        "exactly one of 20 parallel submissions activates"
    );
    let (_, seen_on_b) = pair.get(&b, &format!("/v1/logins/{login_id}")).await;
    assert_eq!(seen_on_b["status"], "approved", "{seen_on_b}");

    // A login started on A, long-polled on A, approved by a code typed through B.
    let (status, login) = pair.start_login(&a, "VENDOR-1").await;
    assert_eq!(status, 201, "{login}");
    assert_eq!(login["status"], "awaiting_approval", "{login}");
    let login_id = login["login_id"].as_str().expect("a login id").to_owned();
    let poll = {
        let pair = Arc::clone(pair);
        let path = format!("/v1/logins/{login_id}?wait_seconds=20");
        let a = a.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let answer = pair.get(&a, &path).await;
            (answer, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = pair
        .post(
            &b,
            &format!("/v1/logins/{login_id}/code"),
            json!({"code": code_for_step(&secret, step)}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let ((status, polled), waited) = poll.await.expect("the long-poll");
    assert_eq!(status, 200, "{polled}");
    assert_eq!(polled["status"], "approved", "{polled}");
    assert!(
        waited < Duration::from_secs(5),
        "the long-poll on A woke promptly after the approval on B ({waited:?})"
    );

    // 30 parallel wrong codes across both instances: exactly the limit (5) are counted, the
    // fifth locks the account, and every later one meets the lock.
    let (_, login) = pair.start_login(&b, "vendor-1").await;
    let login_id = login["login_id"].as_str().expect("a login id").to_owned();
    let wrong = code_for_step(&secret, step + 1000);
    let mut racers = JoinSet::new();
    for i in 0..30 {
        let pair = Arc::clone(pair);
        let base = if i % 2 == 0 { a.clone() } else { b.clone() };
        let path = format!("/v1/logins/{login_id}/code");
        let wrong = wrong.clone();
        racers.spawn(async move { pair.post(&base, &path, json!({"code": wrong})).await });
    }
    let (mut attempts_left, mut locked) = (Vec::new(), 0);
    while let Some(outcome) = racers.join_next().await {
        let (status, body) = outcome.expect("a racer");
        match (status, body["error"]["code"].as_str()) {
            (422, Some("invalid_code")) => {
                attempts_left.push(body["error"]["attempts_left"].clone())
            }
            (423, Some("account_locked")) => locked += 1,
            _ => panic!("unexpected answer {status}: {body}"),
        }
    }
    attempts_left.sort_by_key(|v| v.as_u64());
    assert_eq!(
        attempts_left,
        vec![json!(1), json!(2), json!(3), json!(4)],
        "each count before the lock answered once"
    );
    assert_eq!(locked, 26);
    let log = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&pair.url)
        .await
        .expect("the test schema");
    let count = |event_type: &'static str| {
        let log = log.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM event_rows WHERE stream = 'account-penyedia-VENDOR-1' AND event_type = $1",
            )
            .bind(event_type)
            .fetch_one(&log)
            .await
            .expect("a count")
        }
    };
    assert_eq!(
        count("CodeRejected").await,
        5,
        "the log counted exactly the limit"
    );
    assert_eq!(count("AccountLocked").await, 1);
    let (status, body) = pair.start_login(&a, "vendor-1").await;
    assert_eq!(status, 423, "A sees the lock B recorded: {body}");

    // Neither instance met an error on the way (a projection step failing and retrying would
    // still pass the checks above, only slowly).
    for served in [&pair.first, &pair.second] {
        let log = served.stderr();
        assert!(
            !log.contains("ERROR"),
            "an instance logged an error:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_one_instance_mid_load_loses_nothing_acknowledged() {
    let Some(pair) = start_pair(Writes::EachItsOwn).await else {
        return skipped("killing_one_instance_mid_load_loses_nothing_acknowledged");
    };
    kill_the_first_mid_load(pair).await;
}

/// The first instance is the active one: the second forwards to it until it is killed, then
/// runs its writes itself (the first's address refuses connections) and takes the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_active_instance_mid_load_loses_nothing_acknowledged() {
    let Some(pair) = start_pair(Writes::Forwarded).await else {
        return skipped("killing_the_active_instance_mid_load_loses_nothing_acknowledged");
    };
    kill_the_first_mid_load(pair).await;
}

async fn kill_the_first_mid_load(pair: Pair) {
    let pair = std::sync::Arc::new(tokio::sync::Mutex::new(pair));
    let (a, b, key, client, url) = {
        let p = pair.lock().await;
        (
            p.first.base.clone(),
            p.second.base.clone(),
            p.key.clone(),
            p.client.clone(),
            p.url.clone(),
        )
    };

    // Eight users keep starting logins, alternating instances. Once 20 are acknowledged the
    // first instance (the projection leader) is killed, and the users go on for another 40
    // acknowledgements, which only the survivor can give.
    let acknowledged_so_far = std::sync::Arc::new(AtomicUsize::new(0));
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let mut users = JoinSet::new();
    for user in 0..8 {
        let (a, b, key, client) = (a.clone(), b.clone(), key.clone(), client.clone());
        let (count, stop) = (acknowledged_so_far.clone(), stop.clone());
        users.spawn(async move {
            let mut acknowledged = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let base = if n % 2 == 0 { &a } else { &b };
                n += 1;
                let (status, body) = call(
                    &client,
                    &key,
                    reqwest::Method::POST,
                    format!("{base}/v1/logins"),
                    Some(json!({"user_type": "non_penyedia", "user_id": format!("ppk-{user}")})),
                )
                .await;
                if status == 201 {
                    acknowledged.push(body["login_id"].as_str().unwrap_or_default().to_owned());
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
            acknowledged
        });
    }
    let reached = |n: usize| {
        let count = acknowledged_so_far.clone();
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while count.load(Ordering::Relaxed) < n {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the load stalled at {} acknowledged logins",
                    count.load(Ordering::Relaxed)
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    reached(20).await;
    {
        let mut p = pair.lock().await;
        p.first.child.kill().expect("the first instance is killed");
        let _ = p.first.child.wait();
    }
    let at_kill = acknowledged_so_far.load(Ordering::Relaxed);
    reached(at_kill + 40).await;
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = HashSet::new();
    while let Some(outcome) = users.join_next().await {
        acknowledged.extend(outcome.expect("a user"));
    }

    // The survivor carries on: it takes over the projections and answers new logins.
    let (status, body) = call(
        &client,
        &key,
        reqwest::Method::POST,
        format!("{b}/v1/logins"),
        Some(json!({"user_type": "non_penyedia", "user_id": "after-the-kill"})),
    )
    .await;
    assert_eq!(status, 201, "the survivor serves: {body}");

    // Every acknowledged login is in the log...
    let log = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("the test schema");
    let logged: Vec<String> = sqlx::query_scalar(
        "SELECT payload::json->>'login_id' FROM events WHERE event_type = 'LoginStarted'",
    )
    .fetch_all(&log)
    .await
    .expect("the log");
    let logged: HashSet<String> = logged.into_iter().collect();
    let missing: Vec<&String> = acknowledged.difference(&logged).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not in the log: {missing:?}"
    );

    // ...and in the survivor's projections.
    for login_id in &acknowledged {
        let (status, body) = call(
            &client,
            &key,
            reqwest::Method::GET,
            format!("{b}/v1/logins/{login_id}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{login_id}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forwarded_write_keeps_the_callers_address_and_a_forged_forward_is_refused() {
    let Some(pair) = start_pair(Writes::Forwarded).await else {
        return skipped(
            "a_forwarded_write_keeps_the_callers_address_and_a_forged_forward_is_refused",
        );
    };
    let (a, b) = (pair.first.base.clone(), pair.second.base.clone());
    let login = |base: &str| {
        pair.client
            .post(format!("{base}/v1/logins"))
            .bearer_auth(&pair.key)
            .json(&json!({"user_type": "penyedia", "user_id": "vendor-7"}))
    };

    // The portal relays its user's address to the second instance, which believes it (a
    // trusted proxy) and forwards the login to the first.
    let answered_before = forwarded(&pair.client, &b, "answered").await;
    let response = login(&b)
        .header("x-forwarded-for", "198.51.100.23")
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 201);
    let started: Value = response.json().await.expect("a login");
    assert_eq!(
        forwarded(&pair.client, &b, "answered").await,
        answered_before + 1
    );
    assert_eq!(
        metric(&pair.client, &a, "spse_totp_active_instance").await,
        1
    );
    assert_eq!(
        metric(&pair.client, &b, "spse_totp_active_instance").await,
        0
    );
    let db = spse_totp_store::Database::open_existing(&pair.url, None)
        .await
        .expect("the test schema");
    let events = db.events.read_all(0, 10_000).await.expect("the log");
    let recorded = events
        .iter()
        .find(|e| e.event_type == "LoginStarted" && e.payload["login_id"] == started["login_id"])
        .expect("the login is in the log");
    assert_eq!(
        recorded.metadata.client_ip.as_deref(),
        Some("198.51.100.23"),
        "recorded with the user's address, not the second instance's"
    );

    // A caller that claims an instance forwarded its request, without the instances' token, is
    // refused by either, and nothing is recorded: else it could name any address it liked.
    let head = db.events.head_position().await.expect("the head");
    for base in [&a, &b] {
        let response = login(base)
            .header("spse-totp-forwarded-by", "0".repeat(64))
            .header("spse-totp-forwarded-for", "203.0.113.9")
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), 403);
        let body: Value = response.json().await.expect("the error shape");
        assert_eq!(body["error"]["code"], "forwarding_refused", "{body}");
    }
    assert_eq!(db.events.head_position().await.expect("the head"), head);
}

/// Instance A activated the phone and approved with it, so A remembers which account its token
/// belongs to; the helpdesk then resets the account through B. The old phone is refused by A
/// all the same, before and after A learns of the reset from the log: whether a token is still
/// bound is the account's decision, not A's memory's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_reset_through_one_instance_is_refused_by_the_other_that_remembers_it() {
    let Some(pair) = start_pair(Writes::EachItsOwn).await else {
        return skipped(
            "a_device_reset_through_one_instance_is_refused_by_the_other_that_remembers_it",
        );
    };
    let (a, b) = (pair.first.base.clone(), pair.second.base.clone());
    let (status, login) = pair.start_login(&a, "vendor-9").await;
    assert_eq!(status, 201, "{login}");
    let secret = secret_of(&login);
    let step = settled_step().await;
    let (status, activated) = call(
        &pair.client,
        "",
        reqwest::Method::POST,
        format!("{a}/v1/device/activations"),
        Some(json!({
            "enrollment_id": enrollment_of(&login),
            "code": code_for_step(&secret, step - 1),
            "device_label": "old phone",
        })),
    )
    .await;
    assert_eq!(status, 201, "{activated}");
    let token = activated["device_token"]
        .as_str()
        .expect("a device token")
        .to_owned();
    let approve = |base: &str, login: &Value, step: u64| {
        call(
            &pair.client,
            &token,
            reqwest::Method::POST,
            format!(
                "{base}/v1/device/logins/{}/approve",
                login["login_id"].as_str().unwrap_or_default()
            ),
            Some(json!({"code": code_for_step(&secret, step), "number": login["approval_number"]})),
        )
    };
    let (_, login) = pair.start_login(&a, "vendor-9").await;
    let (status, body) = approve(&a, &login, step).await;
    assert_eq!(status, 200, "the phone approves through A: {body}");

    let helpdesk = create_key_with(
        pair.dir.path(),
        "helpdesk",
        "helpdesk-test",
        &[
            ("SPSE_TOTP_DATABASE_URL", pair.url.as_str()),
            ("SPSE_TOTP_MASTER_KEY", pair.master_key.as_str()),
        ],
    );
    let response = pair
        .client
        .post(format!("{b}/v1/helpdesk/accounts/penyedia/vendor-9/reset"))
        .bearer_auth(&helpdesk)
        .header("x-operator", "helpdesk-1")
        .json(&json!({"reason": "phone lost", "ticket": "HD-1"}))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 200);

    // Started through B too, so A still holds the account as it was before the reset.
    let (_, login) = pair.start_login(&b, "vendor-9").await;
    assert_eq!(login["status"], "awaiting_activation", "{login}");
    let db = spse_totp_store::Database::open_existing(&pair.url, None)
        .await
        .expect("the test schema");
    let head = db.events.head_position().await.expect("the head");
    for base in [&a, &a, &b] {
        let (status, body) = approve(base, &login, step + 1).await;
        assert_eq!(status, 401, "{base}: {body}");
        assert_eq!(body["error"]["code"], "device_not_recognised", "{body}");
    }
    assert_eq!(
        db.events.head_position().await.expect("the head"),
        head,
        "a refused device records nothing"
    );
}

/// What `GET /activez` on `base` answers: its status and the error code, if any.
async fn activez(client: &reqwest::Client, base: &str) -> (u16, Value) {
    let response = client
        .get(format!("{base}/activez"))
        .send()
        .await
        .expect("an answer");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

/// A load balancer that checks `/activez` sends write requests to the active instance only, and
/// when that instance dies, finds the survivor answering 200 within its next checks; writes sent
/// to the survivor then run there, not forwarded to the dead one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_load_balancers_write_check_names_the_active_instance_and_moves_when_it_dies() {
    let Some(mut pair) = start_pair(Writes::Forwarded).await else {
        return skipped(
            "the_load_balancers_write_check_names_the_active_instance_and_moves_when_it_dies",
        );
    };
    let (a, b) = (pair.first.base.clone(), pair.second.base.clone());
    let (status, body) = activez(&pair.client, &a).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("active")),
        "{body}"
    );
    let (status, body) = activez(&pair.client, &b).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "standby", "{body}");
    // A standby still serves whatever reaches it.
    let (status, body) = pair.start_login(&b, "vendor-1").await;
    assert_eq!(status, 201, "{body}");

    pair.first
        .child
        .kill()
        .expect("the first instance is killed");
    let _ = pair.first.child.wait();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = activez(&pair.client, &b).await;
        if status == 200 {
            break;
        }
        assert_eq!(body["error"]["code"], "standby", "{body}");
        assert!(
            std::time::Instant::now() < deadline,
            "the survivor never said it runs write requests"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answered = forwarded(&pair.client, &b, "answered").await;
    let ran_here = forwarded(&pair.client, &b, "ran_here").await;
    for user in 0..5 {
        let (status, body) = pair.start_login(&b, &format!("vendor-{user}")).await;
        assert_eq!(status, 201, "{body}");
    }
    assert_eq!(forwarded(&pair.client, &b, "answered").await, answered);
    assert_eq!(forwarded(&pair.client, &b, "ran_here").await, ran_here);
}

/// The first instance is elected but recorded an address where nothing answers (a mistyped
/// `SPSE_TOTP_CLUSTER_URL`): the second runs its writes itself, and tries the address once per
/// while rather than making every request wait for a connection to fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standby_that_cannot_reach_the_active_instance_runs_its_writes_itself() {
    let Some(url) = fresh_postgres_url().await.expect("a fresh test schema") else {
        return skipped("a_standby_that_cannot_reach_the_active_instance_runs_its_writes_itself");
    };
    let dir = TempDir::new().expect("a temporary folder");
    let master_key = MasterKey::generate().to_base64();
    // Below the ephemeral range every test instance listens in, and served by nothing here:
    // connections to it are refused.
    let nowhere = "http://127.0.0.1:1".to_owned();
    let envs = [
        ("SPSE_TOTP_DATABASE_URL", url.as_str()),
        ("SPSE_TOTP_MASTER_KEY", master_key.as_str()),
    ];
    let key = create_key_with(dir.path(), "portal", "portal-test", &envs);
    let client = reqwest::Client::new();
    let mut mistyped = envs.to_vec();
    mistyped.push(("SPSE_TOTP_CLUSTER_URL", nowhere.as_str()));
    let mut first = Served::start_with(dir.path(), &mistyped);
    first.wait_until_healthy(&client).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut second = Served::start_in_cluster(dir.path(), &envs);
    second.wait_until_healthy(&client).await;

    // Once the second has read the first's address, its first write finds nothing there.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while forwarded(&client, &second.base, "ran_here").await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the second instance never tried the recorded address"
        );
        let (status, _) = call(
            &client,
            &key,
            reqwest::Method::POST,
            format!("{}/v1/none", second.base),
            Some(json!({})),
        )
        .await;
        assert_eq!(status, 404);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Both run the writes sent to them, so both tell a load balancer so.
    for base in [&first.base, &second.base] {
        let (status, body) = activez(&client, base).await;
        assert_eq!(status, 200, "{base}: {body}");
    }
    let before = forwarded(&client, &second.base, "ran_here").await;
    for user in 0..10 {
        let (status, body) = call(
            &client,
            &key,
            reqwest::Method::POST,
            format!("{}/v1/logins", second.base),
            Some(json!({"user_type": "penyedia", "user_id": format!("vendor-{user}")})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    assert_eq!(
        forwarded(&client, &second.base, "ran_here").await,
        before + 10
    );
    assert_eq!(forwarded(&client, &second.base, "answered").await, 0);
    let warnings = second
        .stderr()
        .matches("the active instance is unreachable")
        .count();
    assert_eq!(warnings, 1, "one warning, not one per request");
}
