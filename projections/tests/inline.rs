//! On SQLite the event writer projects each group of appends in the transaction that appends it.
//! These tests hold the runner's loop still (they never call `run`), so whatever the tables show
//! right after an append was written by the writer itself, and check the three ways that path
//! can go: projected with the events, left to the runner when the checkpoints stand elsewhere,
//! and rolled back (events kept, the failing event parked) when a statement fails.

use std::sync::Arc;

use chrono::Utc;
use spse_totp_commands::apikeys;
use spse_totp_domain::apikey::Role;
use spse_totp_projections::api_keys::ApiKeysProjector;
use spse_totp_projections::statement::Statement;
use spse_totp_projections::{all_projectors, Decoded, ProjectionRunner, Projector};
use spse_totp_store::Database;
use spse_totp_store::RecordedEvent;
use tempfile::TempDir;

async fn open(dir: &TempDir) -> Database {
    let url = format!("sqlite://{}", dir.path().join("inline.db").display());
    Database::open(&url).await.expect("open database")
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
    let db = open(&dir).await;
    let runner = ProjectionRunner::new(&db, all_projectors()).unwrap();
    runner.catch_up().await.unwrap();

    let position = create_key(&db, "portal-a").await;

    assert_eq!(key_names(&db).await, ["portal-a"]);
    assert!(
        runner.position() >= position,
        "read-your-writes waits would block: progress {} < {position}",
        runner.position()
    );
    for (projector, at) in checkpoints(&db).await {
        if projector != "mail_dispatcher" {
            assert_eq!(at, i64::try_from(position).unwrap(), "{projector}");
        }
    }
    // The runner, when it looks, finds nothing left to do.
    assert_eq!(runner.catch_up().await.unwrap(), position);
    assert_eq!(key_names(&db).await, ["portal-a"]);
}

#[tokio::test]
async fn checkpoints_behind_the_log_leave_the_group_to_the_runner() {
    let dir = TempDir::new().unwrap();
    let db = open(&dir).await;
    // Appended before any runner exists: the read models are behind from the start.
    create_key(&db, "portal-early").await;
    let runner = ProjectionRunner::new(&db, all_projectors()).unwrap();

    let position = create_key(&db, "portal-late").await;

    // Projecting the later event alone would skip the earlier one: the writer must not.
    assert!(key_names(&db).await.is_empty());
    assert!(runner.position() < position);
    assert_eq!(runner.catch_up().await.unwrap(), position);
    assert_eq!(key_names(&db).await, ["portal-early", "portal-late"]);

    // From here on the writer projects again.
    let next = create_key(&db, "portal-next").await;
    assert_eq!(
        key_names(&db).await,
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
    let db = open(&dir).await;
    let projectors: Vec<Arc<dyn Projector>> =
        vec![Arc::new(ApiKeysProjector), Arc::new(BrokenProjector)];
    let runner = ProjectionRunner::new(&db, projectors).unwrap();
    runner.catch_up().await.unwrap();

    let position = create_key(&db, "portal-b").await;

    // The append stands; the writer rolled its projection back rather than half-write it.
    assert_eq!(db.events.head_position().await.unwrap(), position);
    assert!(key_names(&db).await.is_empty());
    assert!(runner.position() < position);

    // The runner applies what it can and parks the event for the projector that cannot.
    assert_eq!(runner.catch_up().await.unwrap(), position);
    assert_eq!(key_names(&db).await, ["portal-b"]);
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
