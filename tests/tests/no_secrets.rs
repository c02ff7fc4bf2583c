//! Secrets never leave the vault: after activations (typed and by device), approvals, failures,
//! a deny, a cancel and a disable, no TOTP secret (raw, base32, hex, base64), device token, API
//! key, master key or typed code appears in the database file, its WAL, the event log, any table,
//! or anything the service logged.

use std::io;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{json, Value};
use spse_totp_tests::{wrong_code, Authenticator, TestServer};
use tracing_subscriber::fmt::format::FmtSpan;

/// Everything every thread of this test binary logged, at TRACE for every target.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = SharedBuffer(Arc::clone(&buffer));
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_span_events(FmtSpan::FULL)
            .with_ansi(false)
            // No timestamps: their microseconds are six digits, like a code.
            .without_time()
            .with_writer(move || writer.clone())
            .try_init()
            .expect("the only global subscriber of this test binary");
        buffer
    })
    .clone()
}

#[derive(Clone)]
struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for SharedBuffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What must not be found, and how it is named in a failure.
struct Needle {
    name: String,
    bytes: Vec<u8>,
    /// A six-digit code only counts when it stands alone (not inside a longer number).
    digits_bounded: bool,
}

#[derive(Default)]
struct Needles(Vec<Needle>);

impl Needles {
    fn add(&mut self, name: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        self.0.push(Needle {
            name: name.into(),
            bytes: bytes.into(),
            digits_bounded: false,
        });
    }

    fn code(&mut self, name: &str, code: &str) {
        self.0.push(Needle {
            name: format!("{name} code {code}"),
            bytes: code.as_bytes().to_vec(),
            digits_bounded: true,
        });
    }

    /// Every way a TOTP secret could be written down.
    fn secret(&mut self, name: &str, phone: &Authenticator, login: &Value) {
        let uri = login["activation"]["otpauth_uri"].as_str().unwrap();
        let base32 = url::Url::parse(uri)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "secret")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        assert!(base32.len() >= 26, "{base32}");
        let hex: String = phone.secret.iter().map(|b| format!("{b:02x}")).collect();
        self.add(format!("{name} secret (raw bytes)"), phone.secret.clone());
        self.add(
            format!("{name} secret (base32)"),
            base32.to_ascii_uppercase(),
        );
        self.add(
            format!("{name} secret (base32, lower case)"),
            base32.to_ascii_lowercase(),
        );
        self.add(format!("{name} secret (hex)"), hex.clone());
        self.add(format!("{name} secret (HEX)"), hex.to_ascii_uppercase());
        self.add(format!("{name} secret (base64)"), base64(&phone.secret));
        // The otpauth URI itself would leak it too, but also carries the whole secret above.
    }

    /// The needles found in `haystack`, named with `place`. One pass over the haystack, trying
    /// only the needles that start with the byte at hand.
    fn found_in(&self, place: &str, haystack: &[u8]) -> Vec<String> {
        let mut by_first_byte: Vec<Vec<&Needle>> = vec![Vec::new(); 256];
        for needle in &self.0 {
            if let Some(&first) = needle.bytes.first() {
                by_first_byte[usize::from(first)].push(needle);
            }
        }
        let mut found: Vec<String> = Vec::new();
        for (i, &byte) in haystack.iter().enumerate() {
            for needle in &by_first_byte[usize::from(byte)] {
                if matches_at(haystack, i, needle) {
                    found.push(format!("{} in {place}", needle.name));
                }
            }
        }
        found.sort();
        found.dedup();
        found
    }
}

fn matches_at(haystack: &[u8], i: usize, needle: &Needle) -> bool {
    let end = i + needle.bytes.len();
    if end > haystack.len() || haystack[i..end] != needle.bytes[..] {
        return false;
    }
    if !needle.digits_bounded {
        return true;
    }
    let before = i.checked_sub(1).map(|j| haystack[j]);
    let after = haystack.get(end).copied();
    !before.is_some_and(|b| b.is_ascii_digit()) && !after.is_some_and(|b| b.is_ascii_digit())
}

/// Whether `needle` occurs anywhere in `haystack` (for the checks that the search is real).
fn occurs(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// A portal call that must answer `expected`.
async fn post_ok(
    server: &TestServer,
    path: &str,
    bearer: &str,
    body: Value,
    expected: u16,
) -> Value {
    let (status, answer) = server.post(path, bearer, body).await;
    assert_eq!(status.as_u16(), expected, "{path}: {answer}");
    answer
}

/// The content of every table, one line per row, every cell through SQLite's `quote()` (so a
/// BLOB shows as upper-case hex).
async fn dump_tables(server: &TestServer) -> Vec<(String, String)> {
    let pool = &server.services.db.pool;
    let tables: Vec<(String,)> =
        sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .fetch_all(pool)
            .await
            .unwrap();
    let mut dump = Vec::new();
    for (table,) in tables {
        let columns: Vec<(String,)> =
            sqlx::query_as(&format!("SELECT name FROM pragma_table_info('{table}')"))
                .fetch_all(pool)
                .await
                .unwrap();
        let cells: Vec<String> = columns
            .iter()
            .map(|(c,)| format!("quote(\"{c}\")"))
            .collect();
        let rows: Vec<(String,)> = sqlx::query_as(&format!(
            "SELECT {} FROM \"{table}\"",
            cells.join(" || ' | ' || ")
        ))
        .fetch_all(pool)
        .await
        .unwrap();
        let text: String = rows.into_iter().map(|(r,)| r + "\n").collect();
        dump.push((table, text));
    }
    dump
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_token_key_or_code_reaches_the_database_the_event_log_or_the_logs() {
    if spse_totp_tests::on_postgres() {
        // The check reads every byte of the SQLite files; on PostgreSQL there are none to read.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED on PostgreSQL: this test searches the SQLite database files"
        );
        return;
    }
    let logs = captured_logs();
    let server = TestServer::start().await;
    let portal = server.portal_key.clone();
    let mut needles = Needles::default();
    needles.add("portal API key", server.portal_key.clone());
    needles.add("helpdesk API key", server.helpdesk_key.clone());
    needles.add("auditor API key", server.auditor_key.clone());
    let master_key = server.services.config.master_key.clone().unwrap();
    needles.add("master key", master_key);

    // Account 1, a standard authenticator: activation by typed code (after one wrong code).
    let (status, login) = server.start_login("non_penyedia", "ppk1").await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    let phone1 = Authenticator::scan(&login);
    needles.secret("first", &phone1, &login);
    let enrollment1 = phone1.enrollment_id.clone();
    let id = login["login_id"].as_str().unwrap().to_owned();
    let wrong = wrong_code(&phone1, server.now());
    needles.code("wrong activation", &wrong);
    post_ok(
        &server,
        &format!("/v1/logins/{id}/code"),
        &portal,
        json!({ "code": wrong }),
        422,
    )
    .await;
    let code = phone1.code_at(server.now());
    needles.code("activation", &code);
    post_ok(
        &server,
        &format!("/v1/logins/{id}/code"),
        &portal,
        json!({ "code": code }),
        200,
    )
    .await;

    // A login approved by typed code, after a wrong one.
    server.advance(Duration::seconds(30));
    let (status, login) = server.start_login("non_penyedia", "ppk1").await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    let approved = login["login_id"].as_str().unwrap().to_owned();
    let wrong = wrong_code(&phone1, server.now());
    needles.code("wrong approval", &wrong);
    post_ok(
        &server,
        &format!("/v1/logins/{approved}/code"),
        &portal,
        json!({ "code": wrong }),
        422,
    )
    .await;
    let code = phone1.code_at(server.now());
    needles.code("approval", &code);
    post_ok(
        &server,
        &format!("/v1/logins/{approved}/code"),
        &portal,
        json!({ "code": code }),
        200,
    )
    .await;
    let (status, _) = server
        .get(&format!("/v1/logins/{approved}?wait_seconds=1"), &portal)
        .await;
    assert_eq!(status, StatusCode::OK);

    // Disable (a wrong code first), then activate again with a new secret.
    server.advance(Duration::seconds(30));
    let wrong = wrong_code(&phone1, server.now());
    needles.code("wrong disable", &wrong);
    post_ok(
        &server,
        "/v1/accounts/non_penyedia/ppk1/disable",
        &portal,
        json!({ "login_id": approved, "code": wrong }),
        422,
    )
    .await;
    let code = phone1.code_at(server.now());
    needles.code("disable", &code);
    let view = post_ok(
        &server,
        "/v1/accounts/non_penyedia/ppk1/disable",
        &portal,
        json!({ "login_id": approved, "code": code }),
        200,
    )
    .await;
    assert_eq!(view["totp_status"], "disabled");
    server.advance(Duration::seconds(30));
    let (status, login) = server.start_login("non_penyedia", "ppk1").await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    let phone1b = Authenticator::scan(&login);
    needles.secret("second", &phone1b, &login);
    let id = login["login_id"].as_str().unwrap().to_owned();
    let code = phone1b.code_at(server.now());
    needles.code("re-activation", &code);
    post_ok(
        &server,
        &format!("/v1/logins/{id}/code"),
        &portal,
        json!({ "code": code }),
        200,
    )
    .await;
    // The old phone's code now fails.
    server.advance(Duration::seconds(30));
    let (_, login) = server.start_login("non_penyedia", "ppk1").await;
    let id = login["login_id"].as_str().unwrap().to_owned();
    let old = phone1.code_at(server.now());
    if old != phone1b.code_at(server.now())
        && old != phone1b.code_at(server.now() - Duration::seconds(30))
    {
        needles.code("old phone", &old);
        post_ok(
            &server,
            &format!("/v1/logins/{id}/code"),
            &portal,
            json!({ "code": old }),
            422,
        )
        .await;
    }
    post_ok(
        &server,
        &format!("/v1/logins/{id}/cancel"),
        &portal,
        json!({}),
        200,
    )
    .await;

    // Account 2, the push-capable app: a failed then a successful activation by device.
    let (status, login) = server.start_login("penyedia", "vendor1").await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    let mut phone2 = Authenticator::scan(&login);
    needles.secret("device", &phone2, &login);
    let wrong = wrong_code(&phone2, server.now());
    needles.code("wrong device activation", &wrong);
    let (status, body) = server
        .call(
            reqwest::Method::POST,
            "/v1/device/activations",
            None,
            Some(json!({ "enrollment_id": phone2.enrollment_id, "code": wrong, "device_label": "Pixel 7" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let code = phone2.code_at(server.now());
    needles.code("device activation", &code);
    let (status, body) = server
        .call(
            reqwest::Method::POST,
            "/v1/device/activations",
            None,
            Some(json!({
                "enrollment_id": phone2.enrollment_id, "code": code,
                "device_label": "Pixel 7", "platform": "android"
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["device_token"].as_str().unwrap().to_owned();
    needles.add("device token", token.clone());
    // The random part is base64url, which may itself hold `_`: cut the fixed prefix, not at the
    // last `_`, or a short tail of it would match unrelated text by chance.
    let random_part = token.strip_prefix("spse_dt_").unwrap();
    needles.add("device token (random part)", random_part);
    phone2.device_token = Some(token.clone());

    // Device approval: wrong number, wrong code, then right.
    server.advance(Duration::seconds(30));
    let (_, login) = server.start_login("penyedia", "vendor1").await;
    let id = login["login_id"].as_str().unwrap().to_owned();
    let number = login["approval_number"].as_u64().unwrap();
    let (status, pending) = server.get("/v1/device/logins", &token).await;
    assert_eq!(status, StatusCode::OK, "{pending}");
    let approve = format!("/v1/device/logins/{id}/approve");
    let code = phone2.code_at(server.now());
    needles.code("device approval", &code);
    let other_number = if number == 99 { 98 } else { number + 1 };
    post_ok(
        &server,
        &approve,
        &token,
        json!({ "code": code, "number": other_number }),
        422,
    )
    .await;
    let wrong = wrong_code(&phone2, server.now());
    needles.code("wrong device approval", &wrong);
    post_ok(
        &server,
        &approve,
        &token,
        json!({ "code": wrong, "number": number }),
        422,
    )
    .await;
    post_ok(
        &server,
        &approve,
        &token,
        json!({ "code": code, "number": number }),
        200,
    )
    .await;
    // A deny.
    let (_, login) = server.start_login("penyedia", "vendor1").await;
    let id = login["login_id"].as_str().unwrap().to_owned();
    post_ok(
        &server,
        &format!("/v1/device/logins/{id}/deny"),
        &token,
        json!({}),
        200,
    )
    .await;
    let (status, _) = server.get("/v1/accounts/penyedia/vendor1", &portal).await;
    assert_eq!(status, StatusCode::OK);

    // Account 3: a QR code handed out and never scanned: its secret waits, sealed, in the vault.
    let (status, login) = server.start_login("penyedia", "vendor2").await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    let phone3 = Authenticator::scan(&login);
    needles.secret("unscanned", &phone3, &login);
    let (sealed,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM vault_secrets WHERE enrollment_id = $1")
            .bind(&phone3.enrollment_id)
            .fetch_one(&server.services.db.pool)
            .await
            .unwrap();
    assert_eq!(sealed, 1, "the unscanned secret is in the vault, sealed");

    server.services.projections.catch_up().await.unwrap();
    let mut found = Vec::new();

    // (a) Every byte of the database files.
    let mut database = Vec::new();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(server.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("spse-totp.db") {
            let bytes = std::fs::read(&path).unwrap();
            found.extend(needles.found_in(&name, &bytes));
            database.extend(bytes);
            files.push(name);
        }
    }
    assert!(files.iter().any(|f| f == "spse-totp.db"), "{files:?}");
    assert!(files.iter().any(|f| f == "spse-totp.db-wal"), "{files:?}");
    assert!(occurs(&database, b"PPK1"), "the search reads the database");
    assert!(
        occurs(&database, enrollment1.as_bytes()),
        "the search reads the events"
    );

    // (b) Every event's payload and metadata.
    let events = server
        .services
        .db
        .events
        .read_all(0, 1_000_000)
        .await
        .unwrap();
    assert!(events.iter().any(|e| e.event_type == "TotpActivated"));
    assert!(events.iter().any(|e| e.event_type == "TotpDisabled"));
    assert!(events.iter().any(|e| e.event_type == "CodeRejected"));
    for event in &events {
        let text = format!(
            "{} {} {} {}",
            event.stream,
            event.event_type,
            serde_json::to_string(&event.payload).unwrap(),
            serde_json::to_string(&event.metadata).unwrap()
        );
        found.extend(needles.found_in(
            &format!("event {} {}", event.position, event.event_type),
            text.as_bytes(),
        ));
    }
    assert!(events
        .iter()
        .any(|e| e.payload.to_string().contains("PPK1")));

    // (c) Every table: the projections, and the vault, snapshots and keys beside them.
    let tables = dump_tables(&server).await;
    for (table, text) in &tables {
        found.extend(needles.found_in(&format!("table {table}"), text.as_bytes()));
    }
    for projection in ["accounts", "device_bindings", "login_sessions", "audit_log"] {
        let (_, text) = tables.iter().find(|(t, _)| t == projection).unwrap();
        assert!(!text.is_empty(), "{projection} is empty");
    }
    assert!(tables.iter().any(|(_, text)| text.contains("PPK1")));

    // (d) Everything logged.
    let logs = logs.lock().unwrap().clone();
    assert!(
        !logs.is_empty(),
        "nothing was logged: the capture does not work"
    );
    assert!(
        occurs(&logs, b"/v1/logins") && occurs(&logs, b"/v1/device/activations"),
        "the service's request logs were not captured"
    );
    found.extend(needles.found_in("the logs", &logs));

    found.sort();
    found.dedup();
    assert!(found.is_empty(), "secrets found:\n{}", found.join("\n"));
}

/// The search itself: it finds what is planted, and a code only where it stands alone.
#[test]
fn the_search_finds_planted_secrets_and_codes_only_where_they_stand_alone() {
    let mut needles = Needles::default();
    needles.add("raw", vec![0u8, 159, 146, 150]);
    needles.add("token", "spse_dt_abc");
    needles.code("typed", "012345");
    let haystack = b"xx\x00\x9f\x92\x96yy {\"code\":\"012345\"} token=spse_dt_abc";
    assert_eq!(
        needles.found_in("here", haystack),
        vec![
            "raw in here".to_owned(),
            "token in here".to_owned(),
            "typed code 012345 in here".to_owned()
        ]
    );
    assert!(needles
        .found_in("a step", b"\"step\":590123456, x9012345")
        .is_empty());
    assert_eq!(base64(b"Man"), "TWFu");
    assert_eq!(base64(b"Ma"), "TWE");
}
