//! Issue 13, section 7: crash safety on the embedded default. The real `spse-totp serve` on a
//! SQLite folder takes a concurrent load (logins approved by typed codes, logins approved on the
//! device, reset requests mailed to an SMTP sink), is killed with SIGKILL in the middle of it, and
//! is started again on the same folder. Then: every request that got a 2xx is in the log, the
//! projections equal a rebuild (`spse-totp projections rebuild`), `spse-totp audit verify`
//! passes, and each reset request's link reached the sink as one message, none lost.

mod support;

// The end-to-end suite's SMTP sink, compiled in here: this crate cannot depend on the tests
// crate (which depends on it), and the sink is plain std + tokio.
#[path = "../../tests/src/smtp_sink.rs"]
#[allow(dead_code)]
mod smtp_sink;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use serde_json::{json, Value};
use smtp_sink::SmtpSink;
use spse_totp_commands::vault::MasterKey;
use spse_totp_domain::totp::{code_for_step, step_at, TotpSecret};
use spse_totp_domain::{AccountEvent, LoginId, ResetRequestId};
use spse_totp_projections::all_projectors;
use spse_totp_store::{Database, RecordedEvent};
use sqlx::Row;
use support::{create_key_with, secret_of, text, Served};
use tokio::task::JoinSet;

const CODE_ACCOUNTS: usize = 48;
const DEVICE_ACCOUNTS: usize = 16;
const RESET_ACCOUNTS: usize = 32;
/// Concurrent virtual users of the load.
const WORKERS: usize = 12;
const CAPTCHA: &str = "CRASHTEST";

fn email(user_id: &str) -> String {
    format!("{}@lpse.example.go.id", user_id.to_ascii_lowercase())
}

fn code(secret: &TotpSecret, steps_back: u64) -> String {
    code_for_step(secret, step_at(Utc::now()) - steps_back)
}

/// What the service acknowledged with a 2xx during the load.
#[derive(Debug, Clone)]
enum Acked {
    LoginStarted { user_id: String, login_id: String },
    LoginApproved { user_id: String, login_id: String },
    ResetAccepted { user_id: String, client_ip: String },
}

/// One account's part of the load: a login approved by typed code or on the device, or a reset
/// request with its captcha.
enum Flow {
    Login {
        user: String,
        secret: TotpSecret,
        device_token: Option<String>,
    },
    Reset {
        user: String,
        client_ip: String,
    },
}

impl Flow {
    /// Runs the flow's two requests; one entry per 2xx answer, with what it acknowledged (a
    /// captcha is not an event).
    async fn run(self, portal: &Portal) -> Vec<Option<Acked>> {
        let mut answers = Vec::new();
        match self {
            Flow::Login {
                user,
                secret,
                device_token,
            } => {
                let Some((201, login)) = portal
                    .post(
                        "/v1/logins",
                        json!({"user_type": "non_penyedia", "user_id": user, "client_ip": "203.0.113.9"}),
                    )
                    .await
                else {
                    return answers;
                };
                let login_id = login["login_id"].as_str().unwrap_or_default().to_owned();
                answers.push(Some(Acked::LoginStarted {
                    user_id: user.clone(),
                    login_id: login_id.clone(),
                }));
                let (path, bearer, body) = match &device_token {
                    None => (
                        format!("/v1/logins/{login_id}/code"),
                        portal.key.as_str(),
                        json!({"code": code(&secret, 0)}),
                    ),
                    Some(token) => (
                        format!("/v1/device/logins/{login_id}/approve"),
                        token.as_str(),
                        json!({"code": code(&secret, 0), "number": login["approval_number"]}),
                    ),
                };
                if let Some((200, _)) = portal.post_as(bearer, &path, body).await {
                    answers.push(Some(Acked::LoginApproved {
                        user_id: user,
                        login_id,
                    }));
                }
            }
            Flow::Reset { user, client_ip } => {
                let Some((200, captcha)) =
                    portal.send(reqwest::Method::GET, "/v1/captcha", None).await
                else {
                    return answers;
                };
                answers.push(None);
                // One address per request, so the per-address limit declines none.
                let body = json!({"user_type": "non_penyedia", "user_id": user, "email": email(&user),
                                  "captcha_id": captcha["captcha_id"], "captcha_answer": CAPTCHA,
                                  "client_ip": client_ip});
                if let Some((202, _)) = portal.post("/v1/resets", body).await {
                    answers.push(Some(Acked::ResetAccepted {
                        user_id: user,
                        client_ip,
                    }));
                }
            }
        }
        answers
    }
}

#[derive(Clone)]
struct Portal {
    client: reqwest::Client,
    base: String,
    key: String,
}

impl Portal {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Option<(u16, Value)> {
        self.send_as(&self.key, method, path, body).await
    }

    async fn post_as(&self, bearer: &str, path: &str, body: Value) -> Option<(u16, Value)> {
        self.send_as(bearer, reqwest::Method::POST, path, Some(body))
            .await
    }

    async fn send_as(
        &self,
        bearer: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Option<(u16, Value)> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(bearer)
            .timeout(Duration::from_secs(10));
        if let Some(body) = body {
            request = request.json(&body);
        }
        // A request cut off by the kill has no answer: it was never acknowledged.
        let response = request.send().await.ok()?;
        let status = response.status().as_u16();
        let body = response.json().await.ok()?;
        Some((status, body))
    }

    async fn post(&self, path: &str, body: Value) -> Option<(u16, Value)> {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn start_login(&self, user_id: &str) -> (u16, Value) {
        self.post(
            "/v1/logins",
            json!({"user_type": "non_penyedia", "user_id": user_id, "email": email(user_id),
                   "client_ip": "203.0.113.9", "user_agent": "crash-test"}),
        )
        .await
        .expect("an answer before the kill")
    }
}

/// Flow 1 by typed code (with a code one step old, so the load's code of the current step is
/// never a replay) or by the device; returns the secret and the device token.
async fn activate(portal: &Portal, user_id: &str, by_device: bool) -> (TotpSecret, Option<String>) {
    let (status, login) = portal.start_login(user_id).await;
    assert_eq!(status, 201, "{login}");
    let secret = secret_of(&login);
    let enrollment_id = url::Url::parse(login["activation"]["otpauth_uri"].as_str().unwrap())
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "enrollment_id")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let login_id = login["login_id"].as_str().unwrap();
    // A code one step old stops matching when the step turns before the server checks it (the
    // setup is busy): then a fresh one-step-old code is tried. A failure only counts one of five.
    for _ in 0..3 {
        let (status, body) = if by_device {
            let response = portal
                .client
                .post(format!("{}/v1/device/activations", portal.base))
                .json(
                    &json!({"enrollment_id": enrollment_id, "code": code(&secret, 1),
                              "device_label": "crash phone", "platform": "android"}),
                )
                .send()
                .await
                .unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        } else {
            portal
                .post(
                    &format!("/v1/logins/{login_id}/code"),
                    json!({"code": code(&secret, 1)}),
                )
                .await
                .unwrap()
        };
        match status {
            200 | 201 => return (secret, body["device_token"].as_str().map(str::to_owned)),
            422 => continue,
            _ => panic!("{user_id}: activation answered {status}: {body}"),
        }
    }
    panic!("{user_id}: no activation in three tries");
}

/// Every event of the log, in order.
async fn all_events(db: &Database) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = db
            .events
            .read_all(after, 1000)
            .await
            .expect("the log reads");
        let Some(last) = page.last() else {
            return events;
        };
        after = last.position;
        events.extend(page);
    }
}

fn decoded(e: &RecordedEvent) -> Option<AccountEvent> {
    AccountEvent::from_stored(&e.event_type, e.schema_version, e.payload.clone()).ok()
}

/// Every projection table, each row as JSON text, sorted: what a rebuild must give again.
async fn projection_dump(database_file: &std::path::Path) -> BTreeMap<String, Vec<String>> {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(database_file)
        .read_only(true);
    let pool = sqlx::SqlitePool::connect_with(options)
        .await
        .expect("the database opens");
    let mut dump = BTreeMap::new();
    for projector in all_projectors() {
        for table in projector.tables() {
            let columns: Vec<String> = sqlx::query(&format!("PRAGMA table_info({table})"))
                .fetch_all(&pool)
                .await
                .expect("columns")
                .iter()
                .map(|row| row.get::<String, _>("name"))
                .collect();
            // JSON holds no BLOB: a bytes column (a login id) is dumped as its hex.
            let list = columns
                .iter()
                .map(|c| format!("iif(typeof({c}) = 'blob', hex({c}), {c})"))
                .collect::<Vec<_>>()
                .join(", ");
            let mut rows: Vec<String> =
                sqlx::query_scalar(&format!("SELECT json_array({list}) FROM {table}"))
                    .fetch_all(&pool)
                    .await
                    .expect("rows");
            rows.sort();
            dump.insert((*table).to_owned(), rows);
        }
    }
    pool.close().await;
    dump
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_load_loses_nothing_acknowledged_and_mails_each_link_once() {
    let sink = SmtpSink::start().await;
    let dir = tempfile::TempDir::new().expect("a temporary folder");
    let master_key = MasterKey::generate().to_base64();
    let port = sink.port().to_string();
    let envs = [
        ("SPSE_TOTP_MASTER_KEY", master_key.as_str()),
        ("SPSE_TOTP_SMTP_HOST", "127.0.0.1"),
        ("SPSE_TOTP_SMTP_PORT", port.as_str()),
        ("SPSE_TOTP_SMTP_TLS", "none"),
        ("SPSE_TOTP_CAPTCHA_TEST_ANSWER", CAPTCHA),
        ("RUST_LOG", "warn"),
    ];
    let key = create_key_with(dir.path(), "portal", "crash-test", &envs);
    let client = reqwest::Client::new();
    let mut first = Served::start_with(dir.path(), &envs);
    first.wait_until_healthy(&client).await;
    let portal = Portal {
        client: client.clone(),
        base: first.base.clone(),
        key,
    };

    // Accounts with an active second factor: typed-code ones, device ones, ones to reset.
    let code_users: Vec<String> = (0..CODE_ACCOUNTS).map(|i| format!("CODE{i:03}")).collect();
    let device_users: Vec<String> = (0..DEVICE_ACCOUNTS).map(|i| format!("DEV{i:03}")).collect();
    let reset_users: Vec<String> = (0..RESET_ACCOUNTS)
        .map(|i| format!("RESET{i:03}"))
        .collect();
    let mut setup = JoinSet::new();
    for (user, by_device) in code_users
        .iter()
        .map(|u| (u, false))
        .chain(device_users.iter().map(|u| (u, true)))
        .chain(reset_users.iter().map(|u| (u, false)))
    {
        let (portal, user) = (portal.clone(), user.clone());
        setup.spawn(async move {
            let activated = activate(&portal, &user, by_device).await;
            (user, activated)
        });
    }
    let mut phones: HashMap<String, (TotpSecret, Option<String>)> = HashMap::new();
    while let Some(done) = setup.join_next().await {
        let (user, activated) = done.expect("an activation");
        phones.insert(user, activated);
    }

    // The load: workers take the accounts' flows in turn, typed codes, device approvals and
    // reset requests interleaved; the server is killed when about half of it is acknowledged.
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let answered = Arc::new(AtomicUsize::new(0));
    let planned = 2 * (CODE_ACCOUNTS + DEVICE_ACCOUNTS + RESET_ACCOUNTS);
    let mut flows = VecDeque::new();
    let longest = CODE_ACCOUNTS.max(DEVICE_ACCOUNTS).max(RESET_ACCOUNTS);
    for i in 0..longest {
        for user in [code_users.get(i), device_users.get(i)]
            .into_iter()
            .flatten()
        {
            let (secret, device_token) = phones[user].clone();
            flows.push_back(Flow::Login {
                user: user.clone(),
                secret,
                device_token,
            });
        }
        if let Some(user) = reset_users.get(i) {
            flows.push_back(Flow::Reset {
                user: user.clone(),
                client_ip: format!("198.51.100.{}", i + 1),
            });
        }
    }
    let flows = Arc::new(Mutex::new(flows));
    let mut load = JoinSet::new();
    for _ in 0..WORKERS {
        let (portal, flows, acked, answered) = (
            portal.clone(),
            flows.clone(),
            acked.clone(),
            answered.clone(),
        );
        load.spawn(async move {
            loop {
                let Some(flow) = flows.lock().unwrap().pop_front() else {
                    return;
                };
                for ack in flow.run(&portal).await {
                    answered.fetch_add(1, Ordering::SeqCst);
                    acked.lock().unwrap().extend(ack);
                }
            }
        });
    }
    let threshold = planned / 2;
    while answered.load(Ordering::SeqCst) < threshold {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let killed = Command::new("kill")
        .args(["-KILL", &first.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = first.child.wait().expect("the child's status");
    let answered_at_kill = answered.load(Ordering::SeqCst);
    while load.join_next().await.is_some() {}
    let acked = acked.lock().unwrap().clone();
    assert!(
        answered_at_kill < planned,
        "the kill came before the load ended ({answered_at_kill} of {planned})"
    );

    // Started again on the same folder.
    let mut second = Served::start_with(dir.path(), &envs);
    second.wait_until_healthy(&client).await;
    let db = Database::open(&format!(
        "sqlite://{}",
        dir.path().join("data/spse-totp.db").display()
    ))
    .await
    .expect("the database opens");

    // Every acknowledged request is in the log.
    let events = all_events(&db).await;
    let mut started = HashSet::new();
    let mut approved = HashSet::new();
    let mut reset_requests: HashMap<ResetRequestId, (String, Option<String>)> = HashMap::new();
    for recorded in &events {
        let user = recorded
            .stream
            .rsplit('-')
            .next()
            .unwrap_or_default()
            .to_owned();
        match decoded(recorded) {
            Some(AccountEvent::LoginStarted { login_id, .. }) => {
                started.insert(login_id);
            }
            Some(AccountEvent::LoginApproved { login_id, .. }) => {
                approved.insert(login_id);
            }
            Some(AccountEvent::ResetRequested {
                request_id,
                client_ip,
                ..
            }) => {
                reset_requests.insert(request_id, (user, client_ip));
            }
            _ => {}
        }
    }
    let login = |id: &str| id.parse::<LoginId>().expect("a login id");
    for ack in &acked {
        match ack {
            Acked::LoginStarted { user_id, login_id } => {
                assert!(
                    started.contains(&login(login_id)),
                    "{user_id}: login {login_id} lost"
                )
            }
            Acked::LoginApproved { user_id, login_id } => {
                assert!(
                    approved.contains(&login(login_id)),
                    "{user_id}: approval of {login_id} lost"
                )
            }
            Acked::ResetAccepted { user_id, client_ip } => assert!(
                reset_requests
                    .values()
                    .any(|(u, ip)| u == user_id && ip.as_deref() == Some(client_ip)),
                "{user_id}: reset request lost"
            ),
        }
    }

    // Every reset request's link goes out, and every activation's notice (most were still owed
    // when the server was killed): wait until each has its outcome in the log.
    let activations: Vec<String> = events
        .iter()
        .filter(|e| e.event_type == "TotpActivated")
        .map(|e| e.event_id.to_string())
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (outcomes, notices_sent) = loop {
        let mut sent = HashSet::new();
        let mut notices = HashSet::new();
        for e in all_events(&db).await {
            match decoded(&e) {
                Some(AccountEvent::ResetEmailSent { request_id, .. }) => {
                    sent.insert(request_id);
                }
                Some(AccountEvent::NoticeEmailSent { cause_event_id, .. }) => {
                    notices.insert(cause_event_id.to_string());
                }
                _ => {}
            }
        }
        let done = reset_requests.keys().all(|r| sent.contains(r))
            && activations.iter().all(|a| notices.contains(a));
        if done || std::time::Instant::now() > deadline {
            break (sent, notices);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // A moment more, so a second copy would have time to arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mails = sink.messages();
    let mut per_request: HashMap<ResetRequestId, Vec<String>> = HashMap::new();
    for mail in &mails {
        if let Some(token) = mail.reset_token() {
            let bytes = URL_SAFE_NO_PAD.decode(&token).expect("a base64url token");
            let id: [u8; 16] = bytes[..16].try_into().expect("a request id first");
            per_request
                .entry(ResetRequestId::from_random(id))
                .or_default()
                .push(mail.header("Message-ID").unwrap_or_default());
        }
    }
    let mut resent = 0;
    for request in reset_requests.keys() {
        assert!(outcomes.contains(request), "{request:?}: no ResetEmailSent");
        let copies = per_request.get(request).cloned().unwrap_or_default();
        assert!(!copies.is_empty(), "{request:?}: the link was lost");
        let ids: HashSet<&String> = copies.iter().collect();
        // The one repeat the design admits (killed between the server's acceptance and the
        // record) carries the same Message-ID, so mail systems see one message.
        assert_eq!(
            ids.len(),
            1,
            "{request:?}: sent as {} different messages",
            ids.len()
        );
        resent += copies.len() - 1;
    }
    assert_eq!(
        per_request.len(),
        reset_requests.len(),
        "no link for a request the log does not hold"
    );
    let mut notices_resent = 0;
    for activation in &activations {
        assert!(
            notices_sent.contains(activation),
            "{activation}: no NoticeEmailSent"
        );
        let message_id = format!("<{activation}@spse-totp>");
        let copies = mails
            .iter()
            .filter(|m| m.header("Message-ID").as_deref() == Some(message_id.as_str()))
            .count();
        assert!(copies >= 1, "{activation}: the activation notice was lost");
        notices_resent += copies - 1;
    }
    let head = events.len();
    drop(db);

    // The projections equal a rebuild from the log.
    assert!(
        second.terminate(),
        "the restarted server stops cleanly: {}",
        second.stderr()
    );
    let database_file = dir.path().join("data/spse-totp.db");
    let before = projection_dump(&database_file).await;
    let cli = |args: &[&str]| {
        support::command(dir.path(), args)
            .envs(envs.iter().copied())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("spse-totp runs")
    };
    let rebuilt = cli(&["projections", "rebuild"]);
    assert!(rebuilt.status.success(), "{}", text(&rebuilt.stderr));
    let after = projection_dump(&database_file).await;
    for (table, rows) in &before {
        assert_eq!(rows, &after[table], "{table} differs from its rebuild");
    }
    let verified = cli(&["audit", "verify"]);
    assert!(
        verified.status.success(),
        "audit verify: {}{}",
        text(&verified.stdout),
        text(&verified.stderr)
    );

    let count = |f: fn(&Acked) -> bool| acked.iter().filter(|a| f(a)).count();
    eprintln!(
        "crash test: killed by {status} after {answered_at_kill} of {planned} planned requests answered; \
         acknowledged: {} logins started, {} logins approved, {} reset requests (captchas aside); \
         log after restart: {head} events, {} reset requests, {} activations; sink: {} messages, {} reset links \
         ({} resent with the same Message-ID), {} activation notices ({} resent), projections: {} tables equal to their rebuild",
        count(|a| matches!(a, Acked::LoginStarted { .. })),
        count(|a| matches!(a, Acked::LoginApproved { .. })),
        count(|a| matches!(a, Acked::ResetAccepted { .. })),
        reset_requests.len(),
        activations.len(),
        mails.len(),
        per_request.values().map(Vec::len).sum::<usize>(),
        resent,
        activations.len() + notices_resent,
        notices_resent,
        before.len(),
    );
}
