//! Issue 13, section 1: an operator's mistake never becomes an outage. Driven as a real process
//! in a fresh folder: the wrong master key, a read-only command run from the wrong folder, a
//! busy port, an out-of-range setting, logs read from a file.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use spse_totp_commands::vault::MasterKey;
use tempfile::TempDir;

mod support;

use support::{command, create_key, run, text, Served};

/// A login of a new account shows a QR code: its secret is sealed under the running key.
async fn seal_a_secret(dir: &Path, envs: &[(&str, &str)]) {
    let key = support::create_key_with(dir, "portal", "portal", envs);
    let mut served = Served::start_with(dir, envs);
    let client = reqwest::Client::new();
    served.wait_until_healthy(&client).await;
    let response = client
        .post(format!("{}/v1/logins", served.base))
        .bearer_auth(&key)
        .json(&json!({"user_type": "penyedia", "user_id": "vendor01"}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 201);
    assert!(served.terminate(), "stopped: {}", served.stderr());
}

/// `spse-totp serve` that must stop by itself: its exit code and what it wrote on stderr. One
/// still running after 20 s is killed and the test fails, rather than hang.
fn serve_expecting_exit(dir: &Path, envs: &[(&str, &str)]) -> (Option<i32>, String) {
    let port = support::free_port();
    let stderr_path = dir.join("expected-exit.stderr");
    let mut child = command(dir, &["serve"])
        .envs(envs.iter().copied())
        .env("SPSE_TOTP_LISTEN", format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).expect("a log file"))
        .spawn()
        .expect("spse-totp runs");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child's status") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "spse-totp serve kept running: {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let _ = std::fs::remove_file(&stderr_path);
    (status.code(), stderr)
}

fn fingerprint(key_file: &Path) -> String {
    MasterKey::parse(&std::fs::read_to_string(key_file).expect("the key file"))
        .expect("a key")
        .key_id()
}

#[tokio::test]
async fn a_master_key_that_is_not_the_databases_stops_the_start_with_exit_code_2() {
    let dir = TempDir::new().unwrap();
    seal_a_secret(dir.path(), &[]).await;
    let key_file = dir.path().join("data/master.key");
    let expected = fingerprint(&key_file);

    // Another key given outright.
    let other = MasterKey::generate();
    let (code, stderr) = serve_expecting_exit(
        dir.path(),
        &[("SPSE_TOTP_MASTER_KEY", other.to_base64().as_str())],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&expected),
        "names the expected fingerprint: {stderr}"
    );
    assert!(stderr.contains(&other.key_id()), "{stderr}");
    assert!(
        stderr.contains("SPSE_TOTP_MASTER_KEY") && stderr.contains("SPSE_TOTP_MASTER_KEY_FILE"),
        "{stderr}"
    );

    // The key file lost: no new one is made, since it would open none of the secrets.
    let kept = dir.path().join("kept.key");
    std::fs::rename(&key_file, &kept).unwrap();
    let (code, stderr) = serve_expecting_exit(dir.path(), &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("SPSE_TOTP_MASTER_KEY_FILE"), "{stderr}");
    assert!(
        !key_file.exists(),
        "no new key file while secrets are sealed"
    );

    // The right key starts as before.
    std::fs::rename(&kept, &key_file).unwrap();
    let mut served = Served::start(dir.path());
    served.wait_until_healthy(&reqwest::Client::new()).await;
    assert!(served.terminate(), "stopped: {}", served.stderr());
}

#[tokio::test]
async fn import_under_another_key_stops_with_exit_code_2_before_writing() {
    let source = TempDir::new().unwrap();
    seal_a_secret(source.path(), &[]).await;
    let expected = fingerprint(&source.path().join("data/master.key"));
    let export = source.path().join("export.jsonl");
    let output = run(
        source.path(),
        &["export", "--output", export.to_str().unwrap()],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));

    let target = TempDir::new().unwrap();
    let other = MasterKey::generate().to_base64();
    for envs in [vec![("SPSE_TOTP_MASTER_KEY", other.as_str())], vec![]] {
        let output = command(target.path(), &["import", export.to_str().unwrap()])
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("import runs");
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&expected), "{stderr}");
        assert!(
            !target.path().join("data").exists(),
            "nothing written, no key file made"
        );
    }
    // From standard input the check comes after the import, still with exit code 2.
    let output = command(target.path(), &["import", "-"])
        .env("SPSE_TOTP_MASTER_KEY", other.as_str())
        .stdin(std::fs::File::open(&export).unwrap())
        .output()
        .expect("import runs");
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
}

#[test]
fn read_only_commands_in_a_folder_without_a_database_fail_naming_the_path() {
    let dir = TempDir::new().unwrap();
    for args in [
        vec!["history", "non_penyedia", "ppk1"],
        vec!["audit", "verify"],
        vec!["export"],
    ] {
        let output = run(dir.path(), &args);
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{args:?}: {stderr}");
        let looked_at = dir.path().join("./data/spse-totp.db");
        assert!(
            stderr.contains(&looked_at.display().to_string()),
            "{args:?} names {}: {stderr}",
            looked_at.display()
        );
        assert!(
            text(&output.stdout).trim().is_empty(),
            "{args:?} reports nothing"
        );
        assert!(
            !dir.path().join("data").exists(),
            "{args:?} created nothing"
        );
    }
}

#[test]
fn a_busy_port_is_reported_before_any_file_is_created() {
    let dir = TempDir::new().unwrap();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = holder.local_addr().unwrap().to_string();
    let output = command(dir.path(), &["serve"])
        .env("SPSE_TOTP_LISTEN", &address)
        .stdin(Stdio::null())
        .output()
        .expect("spse-totp runs");
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains(&address), "{stderr}");
    assert!(stderr.contains("SPSE_TOTP_LISTEN"), "{stderr}");
    assert!(
        !dir.path().join("data").exists(),
        "no database, no key file"
    );
}

#[test]
fn out_of_range_settings_stop_the_start_naming_the_variable() {
    let dir = TempDir::new().unwrap();
    for (name, value) in [
        ("SPSE_TOTP_LOCK_MINUTES", "9223372036854775807"),
        ("SPSE_TOTP_LOGIN_TTL_SECONDS", "86400"),
        ("SPSE_TOTP_MAX_FAILED_ATTEMPTS", "0"),
        ("SPSE_TOTP_WINDOW_BACK_STEPS", "3"),
    ] {
        let (code, stderr) = serve_expecting_exit(dir.path(), &[(name, value)]);
        assert_eq!(code, Some(2), "{name}={value}: {stderr}");
        assert!(stderr.contains(name), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[tokio::test]
async fn logs_written_to_a_file_carry_no_colour_codes() {
    let dir = TempDir::new().unwrap();
    create_key(dir.path(), "portal", "portal");
    let mut served = Served::start(dir.path());
    served.wait_until_healthy(&reqwest::Client::new()).await;
    assert!(served.terminate());
    let stderr = served.stderr();
    assert!(stderr.contains("WARN"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "an escape code: {stderr:?}");
}
