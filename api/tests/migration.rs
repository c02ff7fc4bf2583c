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
