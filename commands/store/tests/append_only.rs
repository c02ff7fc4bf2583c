//! The event log is append-only in the database itself (issue 13, section 4): on both engines an
//! UPDATE or DELETE of an event is refused (on PostgreSQL a TRUNCATE too), while appends go on.

use chrono::Utc;
use spse_totp_store::test_database::{fresh_postgres_url, skipped};
use spse_totp_store::{Database, Engine, EventMetadata, ExpectedVersion, NewEvent};
use tempfile::TempDir;
use uuid::Uuid;

fn event() -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "Tested".to_owned(),
        schema_version: 1,
        payload: serde_json::json!({"n": 1}),
        metadata: EventMetadata::system(),
        recorded_at: Utc::now(),
    }
}

async fn refuses_rewrites(db: &Database) {
    db.events
        .append("s", ExpectedVersion::NoStream, vec![event(), event()])
        .await
        .expect("append");
    let mut statements = vec![
        "UPDATE events SET payload = '{\"n\": 2}' WHERE position = 1",
        "UPDATE events SET hash = NULL",
        "DELETE FROM events WHERE position = 2",
        "DELETE FROM events",
    ];
    if db.engine == Engine::Postgres {
        statements.push("TRUNCATE events");
    }
    for statement in statements {
        let refused = sqlx::query(statement)
            .execute(&db.pool)
            .await
            .expect_err(statement);
        assert!(
            refused.to_string().contains("append-only"),
            "{statement}: {refused}"
        );
    }
    let stored = db.events.read_all(0, 10).await.expect("read");
    assert_eq!(stored.len(), 2, "both events are still there");
    assert!(stored
        .iter()
        .all(|e| e.payload["n"] == 1 && e.hash.is_some()));
    db.events
        .append("s", ExpectedVersion::Exact(2), vec![event()])
        .await
        .expect("appends go on");
}

#[tokio::test]
async fn sqlite_refuses_update_and_delete_of_events() {
    let dir = TempDir::new().expect("a folder");
    let db = Database::open(&format!("sqlite://{}/log.db", dir.path().display()))
        .await
        .expect("open");
    refuses_rewrites(&db).await;
}

#[tokio::test]
async fn postgres_refuses_update_delete_and_truncate_of_events() {
    let Some(url) = fresh_postgres_url().await.expect("a test schema") else {
        return skipped("postgres_refuses_update_delete_and_truncate_of_events");
    };
    let db = Database::open(&url).await.expect("open");
    refuses_rewrites(&db).await;
}
