//! Issue 13, section 1: `spse-totp masterkey rotate`, driven as real processes on one database
//! (a SQLite file, and PostgreSQL when `SPSE_TOTP_TEST_DATABASE_URL` is set): an instance with the
//! old key and one started with the new key both keep logging users in while the rotation is
//! interrupted half-way; the rerun finishes it; then only the new key opens the vault and the old
//! one is refused at start with exit code 2.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};
use spse_totp_commands::vault::MasterKey;
use spse_totp_domain::totp::{code_for_step, step_at, TotpSecret};
use spse_totp_store::test_database::{fresh_postgres_url, skipped};
use support::{command, create_key_with, secret_of, text, Served};
use tempfile::TempDir;

struct Lpse {
    portal_key: String,
    client: reqwest::Client,
}

impl Lpse {
    async fn post(&self, base: &str, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{base}{path}"))
            .bearer_auth(&self.portal_key)
            .json(&body)
            .send()
            .await
            .expect("answered");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A new account's first login: the QR code, then the code of the step before now (the
    /// window accepts it), so the account's next login can use the step now.
    async fn activate(&self, base: &str, user_id: &str) -> TotpSecret {
        let (status, login) = self
            .post(
                base,
                "/v1/logins",
                json!({"user_type": "penyedia", "user_id": user_id}),
            )
            .await;
        assert_eq!(status, 201, "{login}");
        let secret = secret_of(&login);
        let code = code_for_step(&secret, step_at(Utc::now()) - 1);
        let (status, body) = self
            .post(
                base,
                &format!("/v1/logins/{}/code", login["login_id"].as_str().unwrap()),
                json!({"code": code}),
            )
            .await;
        assert_eq!(status, 200, "activation of {user_id} at {base}: {body}");
        secret
    }

    /// A login of an active account with the code of the step now: its status and body.
    async fn log_in(&self, base: &str, user_id: &str, secret: &TotpSecret) -> (u16, Value) {
        let (status, login) = self
            .post(
                base,
                "/v1/logins",
                json!({"user_type": "penyedia", "user_id": user_id}),
            )
            .await;
        assert_eq!(status, 201, "{login}");
        assert_eq!(login["status"], "awaiting_approval", "{login}");
        let code = code_for_step(secret, step_at(Utc::now()));
        self.post(
            base,
            &format!("/v1/logins/{}/code", login["login_id"].as_str().unwrap()),
            json!({"code": code}),
        )
        .await
    }
}

/// Waits out the last seconds of a step, so the codes of "the step before" and "the step now"
/// stay accepted while the next steps of the test run.
async fn settled() {
    let into_step = Utc::now().timestamp().rem_euclid(30);
    if into_step > 18 {
        tokio::time::sleep(Duration::from_secs((31 - into_step) as u64)).await;
    }
}

fn write_key(path: &Path) -> String {
    let key = MasterKey::generate();
    std::fs::write(path, key.to_base64()).unwrap();
    key.key_id()
}

/// `spse-totp ARGS` in `dir` with `envs`: exit code, stdout, stderr.
fn spse(dir: &Path, envs: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String, String) {
    let output = command(dir, args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("spse-totp runs");
    (
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr),
    )
}

/// `spse-totp serve` that must stop by itself (a refused key): its exit code and stderr.
fn serve_expecting_exit(dir: &Path, envs: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut child = command(dir, &["serve"])
        .envs(envs.iter().copied())
        .env(
            "SPSE_TOTP_LISTEN",
            format!("127.0.0.1:{}", support::free_port()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spse-totp runs");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("the child's status").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("spse-totp serve with the old key kept running after the rotation");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("its output");
    (output.status.code(), text(&output.stderr))
}

/// Each instance in a folder of its own (its log file), all on one database.
fn folder(root: &Path, name: &str) -> std::path::PathBuf {
    let path = root.join(name);
    std::fs::create_dir_all(&path).unwrap();
    path
}

async fn rotation_while_serving(database_url: &str) {
    let root = TempDir::new().unwrap();
    let root = root.path();
    let old_file = root.join("old.key");
    let new_file = root.join("new.key");
    let old = write_key(&old_file);
    let new = write_key(&new_file);
    let old_envs = [
        ("SPSE_TOTP_DATABASE_URL", database_url),
        ("SPSE_TOTP_MASTER_KEY_FILE", old_file.to_str().unwrap()),
    ];
    let new_envs = [
        ("SPSE_TOTP_DATABASE_URL", database_url),
        ("SPSE_TOTP_MASTER_KEY_FILE", new_file.to_str().unwrap()),
    ];
    let lpse = Lpse {
        portal_key: create_key_with(root, "portal", "portal", &old_envs),
        client: reqwest::Client::new(),
    };
    let mut a = Served::start_with(&folder(root, "a"), &old_envs);
    a.wait_until_healthy(&lpse.client).await;
    settled().await;

    // Accounts activated before the rotation, and a QR code still waiting to be scanned.
    let mut before = Vec::new();
    for user in ["before-1", "before-2", "before-3", "before-4"] {
        before.push(lpse.activate(&a.base, user).await);
    }

    // Interrupted after one batch of one secret: two sealings on one row, one on the others.
    let args = [
        "masterkey",
        "rotate",
        "--new-key-file",
        new_file.to_str().unwrap(),
        "--batch-size",
        "1",
        "--stop-after-batches",
        "1",
    ];
    let (code, _, stderr) = spse(root, &old_envs, &args);
    assert_eq!(code, Some(0), "{stderr}");
    let (_, fingerprints, _) = spse(root, &old_envs, &["masterkey", "fingerprint"]);
    assert!(
        fingerprints.contains(&format!("database:        {old}"))
            && fingerprints.contains(&format!("rotating to:     {new}")),
        "{fingerprints}"
    );

    // An instance started with the new key works during the rotation.
    let mut b = Served::start_with(&folder(root, "b"), &new_envs);
    b.wait_until_healthy(&lpse.client).await;

    // Logins on both: the old-key instance, and the new-key one, each for accounts sealed
    // before the rotation.
    let (status, body) = lpse.log_in(&a.base, "before-1", &before[0]).await;
    assert_eq!(
        status, 200,
        "the old-key instance during the rotation: {body}"
    );
    let (status, body) = lpse.log_in(&b.base, "before-2", &before[1]).await;
    assert_eq!(
        status, 200,
        "the new-key instance during the rotation: {body}"
    );
    // Secrets sealed during the rotation, by either instance, open on the other.
    let by_old = lpse.activate(&a.base, "during-old").await;
    let by_new = lpse.activate(&b.base, "during-new").await;
    let (status, body) = lpse.log_in(&a.base, "during-new", &by_new).await;
    assert_eq!(
        status, 200,
        "sealed by the new-key instance, opened by the old: {body}"
    );

    // The rerun finishes it.
    let resume = [
        "masterkey",
        "rotate",
        "--new-key-file",
        new_file.to_str().unwrap(),
    ];
    let (code, stdout, stderr) = spse(root, &old_envs, &resume);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains(&old) && stdout.contains(&new), "{stdout}");
    let (_, fingerprints, _) = spse(root, &new_envs, &["masterkey", "fingerprint"]);
    assert!(
        fingerprints.contains(&format!("database:        {new}"))
            && !fingerprints.contains("rotating to"),
        "{fingerprints}"
    );

    // The instance still on the old key notices within seconds: it reports itself not ready,
    // and opens no secret any more (not even those it keeps in memory), saying why.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = lpse
            .client
            .get(format!("{}/readyz", a.base))
            .send()
            .await
            .expect("answered");
        let status = ready.status().as_u16();
        let body: Value = ready.json().await.unwrap_or(Value::Null);
        if status == 503 {
            assert_eq!(body["error"]["detail"]["master_key"], false, "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "still ready: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, body) = lpse.log_in(&a.base, "before-3", &before[2]).await;
    assert_ne!(status, 200, "the old key after the rotation: {body}");
    assert!(
        a.stderr().contains(&new),
        "names the key it needs: {}",
        a.stderr()
    );
    assert!(a.terminate(), "stopped: {}", a.stderr());

    // A start with the old key is refused, naming the fingerprint expected.
    let (code, stderr) = serve_expecting_exit(&folder(root, "a2"), &old_envs);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&new), "{stderr}");

    // A fresh instance with the new key logs in every account: activated before the rotation,
    // and during it by either instance.
    assert!(b.terminate(), "stopped: {}", b.stderr());
    let mut c = Served::start_with(&folder(root, "c"), &new_envs);
    c.wait_until_healthy(&lpse.client).await;
    for (user, secret) in [
        ("before-3", &before[2]),
        ("before-4", &before[3]),
        ("during-old", &by_old),
    ] {
        let (status, body) = lpse.log_in(&c.base, user, secret).await;
        assert_eq!(status, 200, "{user} after the rotation: {body}");
    }
    // Auditors see the rotation in the log, as fingerprints.
    let auditor = create_key_with(root, "auditor", "auditor", &new_envs);
    let feed: Value = lpse
        .client
        .get(format!("{}/v1/audit/feed?limit=1000", c.base))
        .bearer_auth(&auditor)
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("a feed page");
    let summaries: Vec<&str> = feed["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["stream"] == "masterkey")
        .filter_map(|e| e["summary"].as_str())
        .collect();
    assert_eq!(summaries.len(), 2, "{feed}");
    assert!(
        summaries[1].contains(&format!("from key {old} to key {new}")),
        "{summaries:?}"
    );
    assert!(c.terminate(), "stopped: {}", c.stderr());

    // Rotating again to the key in use is refused; nothing else changes.
    let (code, _, stderr) = spse(root, &new_envs, &resume);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("already sealed"), "{stderr}");
    // Run with the old key still configured, it is refused like a start: exit code 2.
    let (code, _, stderr) = spse(root, &old_envs, &resume);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&new), "{stderr}");

    // The rotation is in the log, as fingerprints only, and the chain holds.
    let (code, export, stderr) = spse(root, &new_envs, &["export"]);
    assert_eq!(code, Some(0), "{stderr}");
    let events: Vec<Value> = export
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["kind"] == "event" && e["stream"] == "masterkey")
        .collect();
    let types: Vec<&str> = events
        .iter()
        .filter_map(|e| e["event_type"].as_str())
        .collect();
    assert_eq!(
        types,
        ["MasterKeyRotationStarted", "MasterKeyRotated"],
        "{events:?}"
    );
    assert_eq!(events[1]["payload"]["from"], old.as_str(), "{events:?}");
    assert_eq!(events[1]["payload"]["to"], new.as_str(), "{events:?}");
    for key_file in [&old_file, &new_file] {
        let key = std::fs::read_to_string(key_file).unwrap();
        assert!(!export.contains(key.trim()), "no key material in the log");
    }
    let (code, _, stderr) = spse(root, &new_envs, &["audit", "verify"]);
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_keeps_both_keys_working_until_it_finishes_on_sqlite() {
    let dir = TempDir::new().unwrap();
    let url = format!("sqlite://{}/spse-totp.db", dir.path().display());
    rotation_while_serving(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_keeps_both_keys_working_until_it_finishes_on_postgres() {
    let Some(url) = fresh_postgres_url().await.expect("a fresh test schema") else {
        return skipped("rotation_keeps_both_keys_working_until_it_finishes_on_postgres");
    };
    rotation_while_serving(&url).await;
}
