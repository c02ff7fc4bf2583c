//! The operator's command line, driven as a real process: `spse-totp migrate | apikey create |
//! serve | history | projections rebuild`, each in a fresh temporary folder as its working
//! directory, with the defaults (`./data/...`) the README promises.
//!
//! They live in the binary's own package so that Cargo builds `spse-totp` before running them.

use serde_json::{json, Value};
use tempfile::TempDir;

mod support;

use support::{create_key, run, text, Served};

async fn start_login(client: &reqwest::Client, base: &str, key: &str) -> (u16, Value) {
    let response = client
        .post(format!("{base}/v1/logins"))
        .bearer_auth(key)
        // English: the tests read why a key is refused.
        .header(reqwest::header::ACCEPT_LANGUAGE, "en")
        .json(&json!({"user_type": "non_penyedia", "user_id": "ppk1"}))
        .send()
        .await
        .expect("an answer");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

#[test]
fn migrate_creates_the_database_under_data() {
    let dir = TempDir::new().unwrap();
    let output = run(dir.path(), &["migrate"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(dir.path().join("data/spse-totp.db").is_file());
    // Migrating again is harmless.
    let output = run(dir.path(), &["migrate"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
}

#[test]
fn apikey_create_prints_one_key_on_stdout() {
    let dir = TempDir::new().unwrap();
    let output = run(
        dir.path(),
        &["apikey", "create", "--role", "portal", "--name", "x"],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "only the key on stdout: {stdout:?}");
    assert!(lines[0].starts_with("spse_key_"), "{stdout:?}");
    assert!(lines[0].len() > "spse_key_".len() + 20, "a long key");
    // The key is not echoed on stderr (logs are kept; the key is shown once).
    assert!(!text(&output.stderr).contains(lines[0]));
    assert!(dir.path().join("data/spse-totp.db").is_file());

    // Each call makes a different key.
    let second = create_key(dir.path(), "helpdesk", "y");
    assert!(second.starts_with("spse_key_"));
    assert_ne!(second, lines[0]);
}

#[test]
fn apikey_create_with_an_unknown_role_fails() {
    let dir = TempDir::new().unwrap();
    let output = run(
        dir.path(),
        &["apikey", "create", "--role", "admin", "--name", "x"],
    );
    assert!(!output.status.success());
    assert!(text(&output.stdout).trim().is_empty(), "no key printed");
    assert!(!text(&output.stderr).is_empty(), "an explanation on stderr");
}

#[tokio::test]
async fn serve_creates_a_master_key_answers_with_a_created_key_and_stops_on_sigterm() {
    let dir = TempDir::new().unwrap();
    let key = create_key(dir.path(), "portal", "portal");
    let mut served = Served::start(dir.path());
    let client = reqwest::Client::new();
    served.wait_until_healthy(&client).await;

    assert!(dir.path().join("data/master.key").is_file());
    let stderr = served.stderr();
    assert!(
        stderr.contains("WARN") && stderr.contains("master key"),
        "a warning about the new master key: {stderr}"
    );

    let (status, login) = start_login(&client, &served.base, &key).await;
    assert_eq!(status, 201, "{login}");
    assert_eq!(login["status"], "awaiting_activation");
    assert_eq!(login["account"]["user_id"], "PPK1");
    let uri = login["activation"]["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(
        uri.contains(&url_encoded(&served.base)),
        "the callback is the public URL: {uri}"
    );

    // A made-up key is refused.
    let (status, body) = start_login(&client, &served.base, "spse_key_made_up").await;
    assert_eq!(status, 401, "{body}");

    assert!(served.terminate(), "stopped cleanly: {}", served.stderr());

    // The key file is reused, not replaced, on the next start.
    let before = std::fs::read(dir.path().join("data/master.key")).unwrap();
    let mut again = Served::start(dir.path());
    again.wait_until_healthy(&client).await;
    assert_eq!(
        std::fs::read(dir.path().join("data/master.key")).unwrap(),
        before
    );
    assert!(again.terminate(), "stopped cleanly: {}", again.stderr());
}

fn url_encoded(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn history_prints_the_accounts_timeline_and_projections_rebuild_succeeds() {
    let dir = TempDir::new().unwrap();
    let key = create_key(dir.path(), "portal", "portal");
    let mut served = Served::start(dir.path());
    let client = reqwest::Client::new();
    served.wait_until_healthy(&client).await;
    let (status, login) = start_login(&client, &served.base, &key).await;
    assert_eq!(status, 201, "{login}");

    // While the server runs: the database is shared (WAL).
    let output = run(dir.path(), &["history", "non_penyedia", "PPK1"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("LoginStarted"));
    assert!(served.terminate(), "stopped cleanly: {}", served.stderr());

    let output = run(dir.path(), &["history", "non_penyedia", "ppk1"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let registered = lines
        .iter()
        .position(|l| l.contains("AccountRegistered"))
        .unwrap_or_else(|| panic!("AccountRegistered in {stdout}"));
    let started = lines
        .iter()
        .position(|l| l.contains("LoginStarted"))
        .unwrap_or_else(|| panic!("LoginStarted in {stdout}"));
    assert!(registered < started, "in order: {stdout}");
    assert!(stdout.contains("EnrollmentStarted"), "{stdout}");
    // The QR's secret never reaches the log.
    let secret = login["activation"]["otpauth_uri"]
        .as_str()
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "secret")
                .map(|(_, v)| v.into_owned())
        })
        .expect("a secret in the QR");
    assert!(!stdout.contains(&secret));

    let output = run(dir.path(), &["history", "penyedia", "ppk1"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(!text(&output.stdout).contains("LoginStarted"));

    let output = run(dir.path(), &["projections", "rebuild"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(!text(&output.stdout).is_empty());

    // The rebuilt read side still knows the key and the login.
    let mut served = Served::start(dir.path());
    served.wait_until_healthy(&client).await;
    let id = login["login_id"].as_str().unwrap();
    let response = client
        .get(format!("{}/v1/logins/{id}", served.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let view: Value = response.json().await.unwrap();
    assert_eq!(view["status"], "awaiting_activation");
    assert!(served.terminate(), "stopped cleanly: {}", served.stderr());
}

#[test]
fn projections_rebuild_works_on_a_fresh_folder() {
    let dir = TempDir::new().unwrap();
    let output = run(dir.path(), &["projections", "rebuild"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(dir.path().join("data/spse-totp.db").is_file());
}

#[test]
fn history_of_an_unknown_account_says_so() {
    let dir = TempDir::new().unwrap();
    // `history` only reads: the database must exist (issue 13).
    assert!(run(dir.path(), &["migrate"]).status.success());
    let output = run(dir.path(), &["history", "non_penyedia", "nobody"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("no history"));
    let output = run(dir.path(), &["history", "admin", "nobody"]);
    assert!(!output.status.success(), "an unknown user type is an error");
}

#[tokio::test]
async fn audit_verify_exits_non_zero_naming_the_altered_event_and_history_folds_as_of() {
    let dir = TempDir::new().unwrap();
    let key = create_key(dir.path(), "portal", "portal");
    let mut served = Served::start(dir.path());
    let client = reqwest::Client::new();
    served.wait_until_healthy(&client).await;
    let (status, login) = start_login(&client, &served.base, &key).await;
    assert_eq!(status, 201, "{login}");
    assert!(served.terminate(), "stopped cleanly: {}", served.stderr());

    let output = run(
        dir.path(),
        &[
            "history",
            "non_penyedia",
            "ppk1",
            "--as-of",
            "2000-01-01T00:00:00Z",
        ],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        !stdout.contains("LoginStarted"),
        "nothing before then: {stdout}"
    );
    assert!(stdout.contains("\"events\": 0"), "{stdout}");
    let now = chrono::Utc::now().to_rfc3339();
    let output = run(
        dir.path(),
        &["history", "non_penyedia", "ppk1", "--as-of", &now],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("LoginStarted"), "{stdout}");
    assert!(stdout.contains("\"totp_status\": \"inactive\""), "{stdout}");
    assert!(stdout.contains("\"pending_logins\""), "{stdout}");

    let output = run(dir.path(), &["audit", "verify"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    assert_eq!(report["ok"], true, "{report}");

    // Someone edits the login's event in the file.
    let db = dir.path().join("data/spse-totp.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let position: i64 =
        sqlx::query_scalar("SELECT position FROM event_rows WHERE event_type = 'LoginStarted'")
            .fetch_one(&pool)
            .await
            .unwrap();
    // The event log refuses UPDATE: an insider drops the guard first.
    for trigger in ["events_no_update", "events_no_delete"] {
        sqlx::query(&format!("DROP TRIGGER {trigger}"))
            .execute(&pool)
            .await
            .unwrap();
    }
    sqlx::query("UPDATE events SET recorded_at = recorded_at + 1 WHERE position = $1")
        .bind(position)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let output = run(dir.path(), &["audit", "verify"]);
    assert!(!output.status.success(), "a broken chain fails the command");
    let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    assert_eq!(report["broken"]["position"], position, "{report}");
    assert_eq!(report["broken"]["stream"], "account-non_penyedia-PPK1");
    assert!(text(&output.stderr).contains(&format!("position {position}")));
}

#[test]
fn demo_add_user_writes_an_argon2id_hash_readable_by_its_owner_only() {
    use std::io::Write as _;
    let dir = TempDir::new().unwrap();
    let mut child = support::command(
        dir.path(),
        &[
            "demo",
            "add-user",
            "--user-type",
            "non_penyedia",
            "--user-id",
            "ppk1",
            "--name",
            "PPK Satu",
            "--email",
            "ppk1@example.go.id",
        ],
    )
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"rahasia-123\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let path = dir.path().join("data/demo-users.toml");
    let file = std::fs::read_to_string(&path).unwrap();
    assert!(file.contains("user_id = \"ppk1\""), "{file}");
    assert!(file.contains("$argon2id$"), "{file}");
    assert!(!file.contains("rahasia-123"), "no password in clear");
    let users = spse_totp_api::demo::users::load(&path).unwrap();
    assert!(spse_totp_api::demo::users::authenticate(
        &users,
        "non_penyedia",
        "PPK1",
        "rahasia-123"
    )
    .is_some());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

/// The id `apikey list --json` gives the key named `name`.
fn key_id_named(dir: &std::path::Path, name: &str) -> String {
    let output = run(dir, &["apikey", "list", "--json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("one JSON object a line"))
        .find(|key| key["name"] == name)
        .and_then(|key| key["id"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("{name} is listed"))
}

#[tokio::test]
async fn apikey_list_and_revoke_a_revoked_key_is_refused_by_the_running_server_within_2_s() {
    let dir = TempDir::new().unwrap();
    let key = create_key(dir.path(), "portal", "portal-old");
    let output = run(
        dir.path(),
        &[
            "apikey",
            "create",
            "--role",
            "auditor",
            "--name",
            "siem",
            "--expires-in-days",
            "30",
        ],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let mut served = Served::start(dir.path());
    let client = reqwest::Client::new();
    served.wait_until_healthy(&client).await;
    let (status, body) = start_login(&client, &served.base, &key).await;
    assert_eq!(status, 201, "{body}");

    // The table: a header and one aligned line a key, newest first; never the key itself.
    let output = run(dir.path(), &["apikey", "list"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let table = text(&output.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    for column in [
        "ID",
        "ROLE",
        "NAME",
        "CREATED",
        "LAST USED",
        "EXPIRES",
        "STATUS",
    ] {
        assert!(lines[0].contains(column), "{table}");
    }
    let column = |name: &str| lines[0].find(name).unwrap();
    assert!(
        lines[1].contains("siem") && lines[2].contains("portal-old"),
        "{table}"
    );
    // Aligned: each line's cells start under their headings.
    assert_eq!(&lines[2][column("ROLE")..column("ROLE") + 6], "portal");
    assert_eq!(&lines[1][column("ROLE")..column("ROLE") + 7], "auditor");
    // The portal key was used just now and never expires; the SIEM's key was never used and
    // expires in 30 days.
    assert!(lines[2][column("LAST USED")..].starts_with("20"), "{table}");
    assert!(lines[2][column("EXPIRES")..].starts_with("- "), "{table}");
    assert!(lines[1][column("LAST USED")..].starts_with("- "), "{table}");
    let in_30_days = (chrono::Utc::now() + chrono::Duration::days(30))
        .format("%Y-%m-%d")
        .to_string();
    assert!(
        lines[1][column("EXPIRES")..].starts_with(&in_30_days),
        "{table}"
    );
    assert!(!table.contains(&key));

    // Revoked at the shell: the running server refuses the key within 2 seconds.
    let id = key_id_named(dir.path(), "portal-old");
    let output = run(dir.path(), &["apikey", "revoke", &id]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let revoked_at = std::time::Instant::now();
    loop {
        let (status, body) = start_login(&client, &served.base, &key).await;
        if status == 401 {
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("revoked"),
                "{body}"
            );
            break;
        }
        assert_eq!(status, 201, "{body}");
        assert!(
            revoked_at.elapsed() < std::time::Duration::from_secs(2),
            "the revoked key still works after {:?}",
            revoked_at.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let output = run(dir.path(), &["apikey", "list"]);
    let table = text(&output.stdout);
    let line = table.lines().find(|l| l.contains("portal-old")).unwrap();
    assert!(line.trim_end().ends_with("revoked"), "{table}");

    // Again, or an id no key has: refused, saying why, and nothing written.
    let output = run(dir.path(), &["apikey", "revoke", &id]);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("already revoked"),
        "{}",
        text(&output.stderr)
    );
    let unknown = "01900000-0000-7000-8000-000000000000";
    let output = run(dir.path(), &["apikey", "revoke", unknown]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("no API key") && stderr.contains(unknown),
        "{stderr}"
    );
    assert!(served.terminate(), "stopped cleanly: {}", served.stderr());

    // A rebuild keeps both the revocation (from the log) and the last use (kept outside it).
    let before = text(&run(dir.path(), &["apikey", "list"]).stdout);
    assert!(run(dir.path(), &["projections", "rebuild"])
        .status
        .success());
    assert_eq!(text(&run(dir.path(), &["apikey", "list"]).stdout), before);
}

#[test]
fn apikey_create_expires_in_days_is_bounded_and_the_error_names_the_flag() {
    let dir = TempDir::new().unwrap();
    for days in ["0", "3651", "-1", "soon"] {
        let output = run(
            dir.path(),
            &[
                "apikey",
                "create",
                "--role",
                "portal",
                "--name",
                "x",
                "--expires-in-days",
                days,
            ],
        );
        assert!(!output.status.success(), "{days} is refused");
        assert!(text(&output.stdout).trim().is_empty(), "no key printed");
        let stderr = text(&output.stderr);
        assert!(stderr.contains("--expires-in-days"), "{days}: {stderr}");
    }
    // Refused before anything is written.
    assert!(!dir.path().join("data/spse-totp.db").exists());
    let output = run(
        dir.path(),
        &[
            "apikey",
            "create",
            "--role",
            "portal",
            "--name",
            "x",
            "--expires-in-days",
            "3650",
        ],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
}

#[test]
fn apikey_list_and_revoke_never_create_a_database() {
    let dir = TempDir::new().unwrap();
    for args in [
        &["apikey", "list"][..],
        &["apikey", "revoke", "01900000-0000-7000-8000-000000000000"][..],
    ] {
        let output = run(dir.path(), args);
        assert!(!output.status.success(), "{args:?}");
        assert!(
            text(&output.stderr).contains("spse-totp.db"),
            "{args:?}: {}",
            text(&output.stderr)
        );
    }
    assert!(!dir.path().join("data/spse-totp.db").exists());
}

/// `audit verify` checks the signed checkpoints with `SPSE_TOTP_AUDIT_KEY`: a log whose last
/// event was deleted is reported truncated and fails the command; without any key it says the
/// checkpoints were not checked.
#[tokio::test]
async fn audit_verify_reports_a_log_cut_short_after_its_checkpoint() {
    let dir = TempDir::new().unwrap();
    for name in ["a", "b", "c"] {
        create_key(dir.path(), "portal", name);
    }
    let key_text = "2a".repeat(32);
    let key = spse_totp_projections::audit_checkpoints::AuditKey::parse(&key_text).unwrap();
    let url = format!("sqlite://{}/data/spse-totp.db", dir.path().display());
    let db = spse_totp_store::Database::open(&url).await.unwrap();
    let signed =
        spse_totp_projections::audit_checkpoints::write_if_moved(&db, &key, chrono::Utc::now())
            .await
            .unwrap()
            .expect("a checkpoint");
    let verify = || {
        support::command(dir.path(), &["audit", "verify"])
            .env("SPSE_TOTP_AUDIT_KEY", &key_text)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("spse-totp runs")
    };
    let output = verify();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    assert_eq!(
        report["newest_checkpoint"]["position"], signed.position,
        "{report}"
    );
    assert_eq!(report["checkpoint_key"], key.fingerprint(), "{report}");

    spse_totp_store::test_database::drop_append_only_guard(&db)
        .await
        .unwrap();
    sqlx::query("DELETE FROM events WHERE position = $1")
        .bind(i64::try_from(signed.position).unwrap())
        .execute(&db.pool)
        .await
        .unwrap();
    db.pool.close().await;
    let output = verify();
    assert!(
        !output.status.success(),
        "a log cut short fails the command"
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    assert_eq!(report["truncated"], true, "{report}");
    assert_eq!(
        report["broken_checkpoint"]["problem"], "truncated",
        "{report}"
    );
    assert!(
        text(&output.stderr).contains("TRUNCATED"),
        "{}",
        text(&output.stderr)
    );

    // With no key at hand (no audit key, no master key file) the chain alone is checked, and
    // the command says what it could not see.
    if !dir.path().join("data/master.key").exists() {
        let output = run(dir.path(), &["audit", "verify"]);
        assert!(output.status.success(), "{}", text(&output.stderr));
        assert!(
            text(&output.stderr).contains("NOT checked"),
            "{}",
            text(&output.stderr)
        );
    }
}
