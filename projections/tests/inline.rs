//! The event writer projects each group of appends in the transaction that appends it, on SQLite
//! and on PostgreSQL (each test runs on both; PostgreSQL when `SPSE_TOTP_TEST_DATABASE_URL` is
//! set). These tests hold the runner's loop still (they never call `run`), so whatever the tables
//! show right after an append was written by the writer itself, and check the three ways that
//! path can go: projected with the events, left to the runner when the checkpoints stand
//! elsewhere, and rolled back (events kept, the failing event parked) when a statement fails.

use std::sync::Arc;

use chrono::Utc;
use spse_totp_commands::apikeys;
use spse_totp_domain::apikey::Role;
use spse_totp_projections::api_keys::ApiKeysProjector;
use spse_totp_projections::statement::Statement;
use spse_totp_projections::{all_projectors, Decoded, ProjectionRunner, Projector};
use spse_totp_store::RecordedEvent;
use spse_totp_store::{test_database, Database};
use tempfile::TempDir;

/// The databases each test runs on: a SQLite file, and a fresh PostgreSQL schema when a test
/// server is configured.
async fn databases(dir: &TempDir) -> Vec<Database> {
    let sqlite = format!("sqlite://{}", dir.path().join("inline.db").display());
    let mut urls = vec![sqlite];
    match test_database::fresh_postgres_url()
        .await
        .expect("fresh schema")
    {
        Some(url) => urls.push(url),
        None => test_database::skipped("inline projection on PostgreSQL"),
    }
    let mut databases = Vec::new();
    for url in urls {
        databases.push(Database::open(&url).await.expect("open database"));
    }
    databases
}

async fn key_names(db: &Database) -> Vec<String> {
    sqlx::query_scalar("SELECT name FROM api_keys ORDER BY name")
        .fetch_all(&db.pool)
        .await
        .expect("api_keys")
}

async fn checkpoints(db: &Database) -> Vec<(String, i64)> {
    sqlx::query_as("SELECT projector, position FROM projection_checkpoints ORDER BY projector")
        .fetch_all(&db.pool)
        .await
        .expect("checkpoints")
}

async fn create_key(db: &Database, name: &str) -> u64 {
    apikeys::create(db.events.as_ref(), name, Role::Portal, "test", Utc::now())
        .await
        .expect("append");
    db.events.head_position().await.expect("head")
}

#[tokio::test]
async fn an_append_returns_with_its_read_models_written_and_published() {
    let dir = TempDir::new().unwrap();
    for db in databases(&dir).await {
        projected_with_the_events(&db).await;
    }
}

async fn projected_with_the_events(db: &Database) {
    let runner = ProjectionRunner::new(db, all_projectors()).unwrap();
    runner.catch_up().await.unwrap();

    let position = create_key(db, "portal-a").await;

    assert_eq!(key_names(db).await, ["portal-a"]);
    assert!(
        runner.position() >= position,
        "read-your-writes waits would block: progress {} < {position}",
        runner.position()
    );
    for (projector, at) in checkpoints(db).await {
        if projector != "mail_dispatcher" {
            assert_eq!(at, i64::try_from(position).unwrap(), "{projector}");
        }
    }
    // The runner, when it looks, finds nothing left to do.
    assert_eq!(runner.catch_up().await.unwrap(), position);
    assert_eq!(key_names(db).await, ["portal-a"]);
}

#[tokio::test]
async fn checkpoints_behind_the_log_leave_the_group_to_the_runner() {
    let dir = TempDir::new().unwrap();
    for db in databases(&dir).await {
        left_to_the_runner(&db).await;
    }
}

async fn left_to_the_runner(db: &Database) {
    // Appended before any runner exists: the read models are behind from the start.
    create_key(db, "portal-early").await;
    let runner = ProjectionRunner::new(db, all_projectors()).unwrap();

    let position = create_key(db, "portal-late").await;

    // Projecting the later event alone would skip the earlier one: the writer must not.
    assert!(key_names(db).await.is_empty());
    assert!(runner.position() < position);
    assert_eq!(runner.catch_up().await.unwrap(), position);
    assert_eq!(key_names(db).await, ["portal-early", "portal-late"]);

    // From here on the writer projects again.
    let next = create_key(db, "portal-next").await;
    assert_eq!(
        key_names(db).await,
        ["portal-early", "portal-late", "portal-next"]
    );
    assert!(runner.position() >= next);
}

/// Writes nothing it could: its one statement names a table that does not exist.
struct BrokenProjector;

impl Projector for BrokenProjector {
    fn name(&self) -> &'static str {
        "broken"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    fn project(&self, _recorded: &RecordedEvent, _decoded: &Decoded) -> Vec<Statement> {
        vec![Statement::new(
            "INSERT INTO no_such_table (x) VALUES (1)",
            Vec::new(),
        )]
    }
}

#[tokio::test]
async fn a_failing_statement_keeps_the_events_and_the_runner_parks_the_event() {
    let dir = TempDir::new().unwrap();
    for db in databases(&dir).await {
        rolled_back_and_parked(&db).await;
    }
}

async fn rolled_back_and_parked(db: &Database) {
    let projectors: Vec<Arc<dyn Projector>> =
        vec![Arc::new(ApiKeysProjector), Arc::new(BrokenProjector)];
    let runner = ProjectionRunner::new(db, projectors).unwrap();
    runner.catch_up().await.unwrap();

    let position = create_key(db, "portal-b").await;

    // The append stands; the writer rolled its projection back rather than half-write it.
    assert_eq!(db.events.head_position().await.unwrap(), position);
    assert!(key_names(db).await.is_empty());
    assert!(runner.position() < position);

    // The runner applies what it can and parks the event for the projector that cannot.
    assert_eq!(runner.catch_up().await.unwrap(), position);
    assert_eq!(key_names(db).await, ["portal-b"]);
    let parked: Vec<(String, i64)> =
        sqlx::query_as("SELECT projector, position FROM projection_failures")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        parked,
        [("broken".to_owned(), i64::try_from(position).unwrap())]
    );
}

#[tokio::test]
async fn after_a_failed_projection_the_writer_projects_the_next_group() {
    let dir = TempDir::new().unwrap();
    for db in databases(&dir).await {
        recovers_after_a_failed_projection(&db).await;
    }
}

async fn recovers_after_a_failed_projection(db: &Database) {
    // The broken statement comes first, so on PostgreSQL the script stops before it has
    // prepared the statement of the projector that works.
    let projectors: Vec<Arc<dyn Projector>> =
        vec![Arc::new(BrokenProjector), Arc::new(ApiKeysProjector)];
    let runner = ProjectionRunner::new(db, projectors).unwrap();
    runner.catch_up().await.unwrap();
    let failed = create_key(db, "portal-b").await;
    assert!(key_names(db).await.is_empty());
    assert_eq!(runner.catch_up().await.unwrap(), failed);

    // With projectors that can write, the next group is projected with its events: the
    // writer did not count on anything the failed script may not have done.
    let runner = ProjectionRunner::new(db, vec![Arc::new(ApiKeysProjector)]).unwrap();
    runner.catch_up().await.unwrap();
    let next = create_key(db, "portal-c").await;
    assert_eq!(key_names(db).await, ["portal-b", "portal-c"]);
    assert!(runner.position() >= next);
}

/// Two instances on one PostgreSQL schema append at once, each writer projecting its groups,
/// while one instance's runner catches up over and over: the checkpoint compare-and-sets must let
/// exactly one of them apply each event, none twice (`audit_log` is keyed by position: a second
/// application would fail and be parked) and none skipped.
#[tokio::test]
async fn two_instances_and_a_runner_apply_every_event_once() {
    let Some(url) = test_database::fresh_postgres_url()
        .await
        .expect("fresh schema")
    else {
        test_database::skipped("two_instances_and_a_runner_apply_every_event_once");
        return;
    };
    let first = Database::open(&url).await.expect("open first");
    let second = Database::open(&url).await.expect("open second");
    let runner = Arc::new(ProjectionRunner::new(&first, all_projectors()).unwrap());
    let _second_runner = ProjectionRunner::new(&second, all_projectors()).unwrap();
    runner.catch_up().await.unwrap();

    let catching_up = {
        let runner = Arc::clone(&runner);
        tokio::spawn(async move {
            for _ in 0..50 {
                runner.catch_up().await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let mut appends = Vec::new();
    for (n, db) in [&first, &second].into_iter().cycle().take(80).enumerate() {
        let db = db.clone();
        appends.push(tokio::spawn(async move {
            create_key(&db, &format!("portal-{n:03}")).await
        }));
    }
    for append in appends {
        append.await.unwrap();
    }
    catching_up.await.unwrap();
    let head = first.events.head_position().await.unwrap();
    assert_eq!(runner.catch_up().await.unwrap(), head);

    assert_eq!(key_names(&first).await.len(), 80);
    let parked: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM projection_failures")
        .fetch_one(&first.pool)
        .await
        .unwrap();
    assert_eq!(
        parked, 0,
        "an event was applied twice or could not be applied"
    );
    let audited: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
        .fetch_one(&first.pool)
        .await
        .unwrap();
    assert_eq!(u64::try_from(audited).unwrap(), head);
    for (projector, at) in checkpoints(&first).await {
        if projector != "mail_dispatcher" {
            assert_eq!(at, i64::try_from(head).unwrap(), "{projector}");
        }
    }
}
