//! An existing deployment upgrading to lean `login_sessions` rows (the login id as bytes, the
//! account, address and user agent as term ids, codes for stage, status and method) keeps every
//! login, and every reader answers what it answered before: a database holding the previous
//! format, written as that version wrote it, is migrated in place (SQLite, and PostgreSQL when
//! `SPSE_TOTP_TEST_DATABASE_URL` is set).

use chrono::{DateTime, TimeZone, Utc};
use spse_totp_domain::LoginId;
use spse_totp_projections::login_sessions::{self, LoginRow};
use spse_totp_store::{test_database, Database};
use tempfile::TempDir;

/// The first migration of the lean rows: everything before it is the previous format.
const LEAN: &str = "20261207000040";

async fn migrate_to_the_old_format(url: &str, engine: &str) -> sqlx::AnyPool {
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
        if name.as_str() < LEAN {
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

fn at(seconds: i64) -> DateTime<Utc> {
    // Microseconds in the instants: the conversion must keep them.
    Utc.timestamp_opt(1_796_000_000 + seconds, 123_456_000)
        .single()
        .expect("an instant")
}

fn login(n: u128) -> String {
    // UUID v7-shaped, in the lower-case form the service writes.
    uuid::Uuid::from_u128(0x0193_c000_0000_7000_8000_0000_0000_0000 + n).to_string()
}

#[allow(clippy::too_many_arguments)]
fn row(
    n: u128,
    user_type: &str,
    user_id: &str,
    stage: &str,
    status: &str,
    approval_number: Option<i64>,
    client: Option<(&str, &str)>,
    started: i64,
    decided: Option<(i64, Option<&str>)>,
) -> LoginRow {
    LoginRow {
        login_id: login(n),
        stream: format!("account-{user_type}-{user_id}"),
        user_type: user_type.to_owned(),
        user_id: user_id.to_owned(),
        stage: stage.to_owned(),
        status: status.to_owned(),
        approval_number,
        client_ip: client.map(|(ip, _)| ip.to_owned()),
        user_agent: client.map(|(_, agent)| agent.to_owned()),
        started_at: at(started),
        expires_at: at(started + 600),
        decided_at: decided.map(|(s, _)| at(s)),
        method: decided.and_then(|(_, m)| m.map(str::to_owned)),
    }
}

/// Every stage, status and method, with and without the optional columns, over two accounts (one
/// User ID with the characters a stream name splits on).
fn old_rows() -> Vec<LoginRow> {
    let browser = Some(("10.1.2.3", "Mozilla/5.0 \"quoted\" é"));
    let other = Some(("2001:db8::7", "curl/8"));
    vec![
        row(
            1,
            "penyedia",
            "VENDOR-1",
            "activation",
            "approved",
            None,
            browser,
            0,
            Some((20, Some("code"))),
        ),
        row(
            2,
            "penyedia",
            "VENDOR-1",
            "approval",
            "approved",
            Some(42),
            browser,
            100,
            Some((130, Some("device"))),
        ),
        row(
            3,
            "penyedia",
            "VENDOR-1",
            "approval",
            "denied",
            Some(7),
            other,
            200,
            Some((210, Some("device"))),
        ),
        row(
            4,
            "penyedia",
            "VENDOR-1",
            "approval",
            "expired",
            None,
            None,
            300,
            Some((900, None)),
        ),
        row(
            5,
            "penyedia",
            "VENDOR-1",
            "approval",
            "cancelled",
            None,
            browser,
            400,
            Some((401, None)),
        ),
        row(
            6,
            "penyedia",
            "VENDOR-1",
            "approval",
            "awaiting_approval",
            Some(11),
            browser,
            1000,
            None,
        ),
        row(
            7,
            "penyedia",
            "VENDOR-1",
            "approval",
            "awaiting_approval",
            None,
            None,
            1001,
            None,
        ),
        row(
            8,
            "non_penyedia",
            "PPK.1@X",
            "activation",
            "awaiting_activation",
            None,
            other,
            500,
            None,
        ),
        row(
            9,
            "non_penyedia",
            "PPK.1@X",
            "approval",
            "awaiting_approval",
            None,
            other,
            1002,
            None,
        ),
    ]
}

#[tokio::test]
async fn old_login_rows_are_converted_in_place_and_read_the_same() {
    let dir = TempDir::new().expect("a folder");
    let mut targets = vec![(
        format!("sqlite://{}/old.db?mode=rwc", dir.path().display()),
        "sqlite",
    )];
    match test_database::fresh_postgres_url()
        .await
        .expect("a test schema")
    {
        Some(url) => targets.push((url, "postgres")),
        None => test_database::skipped("login_sessions conversion on PostgreSQL"),
    }
    for (url, engine) in targets {
        let pool = migrate_to_the_old_format(&url, engine).await;
        // A term already there before the conversion keeps its id, and is used.
        sqlx::query("INSERT INTO terms (term) VALUES ('curl/8')")
            .execute(&pool)
            .await
            .expect("a term");
        let rows = old_rows();
        for row in &rows {
            sqlx::query(
                "INSERT INTO login_sessions (login_id, stream, user_type, user_id, stage, status, \
                 approval_number, client_ip, user_agent, started_at, expires_at, decided_at, method) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(&row.login_id)
            .bind(&row.stream)
            .bind(&row.user_type)
            .bind(&row.user_id)
            .bind(&row.stage)
            .bind(&row.status)
            .bind(row.approval_number)
            .bind(row.client_ip.clone())
            .bind(row.user_agent.clone())
            .bind(row.started_at.timestamp_micros())
            .bind(row.expires_at.timestamp_micros())
            .bind(row.decided_at.map(|d| d.timestamp_micros()))
            .bind(row.method.clone())
            .execute(&pool)
            .await
            .expect("an old row");
        }
        let curl: i64 = sqlx::query_scalar("SELECT id FROM terms WHERE term = 'curl/8'")
            .fetch_one(&pool)
            .await
            .expect("the term");
        pool.close().await;

        let db = Database::open(&url).await.expect("upgraded");
        let pool = &db.pool;
        for row in &rows {
            let id: LoginId = row.login_id.parse().expect("an id");
            let read = login_sessions::get(pool, id).await.expect("read");
            assert_eq!(read.as_ref(), Some(row), "{engine}");
        }
        let ids: Vec<Vec<u8>> = sqlx::query_scalar("SELECT login_id FROM login_sessions")
            .fetch_all(pool)
            .await
            .expect("stored ids");
        assert_eq!(ids.len(), rows.len(), "{engine}");
        assert!(ids.iter().all(|id| id.len() == 16), "{engine}");
        let agents: Vec<i64> =
            sqlx::query_scalar("SELECT user_agent FROM login_sessions WHERE login_id = $1")
                .bind(
                    uuid::Uuid::parse_str(&login(3))
                        .expect("uuid")
                        .as_bytes()
                        .to_vec(),
                )
                .fetch_all(pool)
                .await
                .expect("stored agent");
        assert_eq!(agents, vec![curl], "{engine}: the term kept its id");

        let vendor = "account-penyedia-VENDOR-1";
        let ids_of =
            |rows: Vec<LoginRow>| -> Vec<String> { rows.into_iter().map(|r| r.login_id).collect() };
        let all = login_sessions::for_account(pool, vendor)
            .await
            .expect("all");
        assert_eq!(
            ids_of(all),
            (1..=7).map(login).collect::<Vec<_>>(),
            "{engine}"
        );
        let recent = login_sessions::recent_for_account(pool, vendor, 3)
            .await
            .expect("recent");
        assert_eq!(
            ids_of(recent),
            vec![login(7), login(6), login(5)],
            "{engine}"
        );
        let pending = login_sessions::pending_approvals(pool, vendor, at(1500))
            .await
            .expect("pending");
        assert_eq!(ids_of(pending), vec![login(6), login(7)], "{engine}");
        let pending =
            login_sessions::pending_approvals(pool, "account-non_penyedia-PPK.1@X", at(1500))
                .await
                .expect("pending");
        assert_eq!(
            ids_of(pending),
            vec![login(9)],
            "{engine}: not the activation"
        );
        let none = login_sessions::pending_approvals(pool, "account-penyedia-NOBODY", at(1500))
            .await
            .expect("pending");
        assert!(none.is_empty(), "{engine}");

        // At 1,150 s only the activation (started at 500) is overdue; at 1,700 s all three
        // accounts' pending logins are, and each account is named once.
        let overdue = login_sessions::streams_with_overdue(pool, at(1150), 10)
            .await
            .expect("overdue");
        assert_eq!(
            overdue,
            vec!["account-non_penyedia-PPK.1@X".to_owned()],
            "{engine}"
        );
        let mut overdue = login_sessions::streams_with_overdue(pool, at(1700), 10)
            .await
            .expect("overdue");
        overdue.sort();
        assert_eq!(
            overdue,
            vec!["account-non_penyedia-PPK.1@X".to_owned(), vendor.to_owned()],
            "{engine}"
        );
    }
}
