//! The PostgreSQL adapter against the event store conformance suite, each check in a fresh schema
//! on the server named by `SPSE_TOTP_TEST_DATABASE_URL` (skipped, and saying so, without one),
//! plus the check the adapter's position scheme exists for: many appenders racing a reader that
//! follows the log must never make it skip or repeat an event.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use spse_totp_store::conformance;
use spse_totp_store::test_database::{fresh_postgres_url, skipped};
use spse_totp_store::{
    Database, DatabaseError, EventMetadata, EventStore, ExpectedVersion, NewEvent,
};
use uuid::Uuid;

async fn open(url: &str) -> Result<Arc<dyn EventStore>, DatabaseError> {
    Ok(Database::open(url).await?.events)
}

async fn fresh_url() -> Option<String> {
    fresh_postgres_url().await.expect("a fresh test schema")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_passes_the_conformance_suite() {
    if fresh_url().await.is_none() {
        return skipped("postgres_passes_the_conformance_suite");
    }
    conformance::run_all(|| async {
        let url = fresh_url().await.expect("a test server");
        open(&url).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_events_survive_reopening() {
    let Some(url) = fresh_url().await else {
        return skipped("postgres_events_survive_reopening");
    };
    conformance::survives_reopen(|| open(&url))
        .await
        .expect("the durability check hit a store error");
}

/// Several stores on one schema, as several instances on one database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_instances_on_one_database_share_one_log() {
    let Some(url) = fresh_url().await else {
        return skipped("postgres_instances_on_one_database_share_one_log");
    };
    conformance::handles_share_one_log(|| open(&url))
        .await
        .expect("the shared-database check hit a store error");
}

/// A writer that has appended alone for a while sends its next group on what it knows of the
/// log, checked under the head lock. When another instance has appended in between, or an event
/// id is already stored, the check or the insert stops that attempt and the group goes again the
/// usual way: versions, conflicts, duplicates and the hash chain come out exactly as if it had
/// read the log first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_that_knew_the_log_sees_what_another_instance_appended() {
    let Some(url) = fresh_url().await else {
        return skipped("a_writer_that_knew_the_log_sees_what_another_instance_appended");
    };
    let (a, b) = (open(&url).await.unwrap(), open(&url).await.unwrap());
    let first = event(0);
    let first_id = first.event_id;
    a.append("shared", ExpectedVersion::NoStream, vec![first])
        .await
        .unwrap();
    // Enough groups alone for the writer to stop reading the log before each.
    for n in 1..10 {
        a.append("shared", ExpectedVersion::Exact(n), vec![event(n as usize)])
            .await
            .unwrap();
    }
    // Another instance appends to the same stream and to another.
    b.append("shared", ExpectedVersion::Exact(10), vec![event(10)])
        .await
        .unwrap();
    b.append("other", ExpectedVersion::NoStream, vec![event(11)])
        .await
        .unwrap();
    // A request that read the stream after that expects more than `a` knows: the log decides.
    let appended = a
        .append("shared", ExpectedVersion::Exact(11), vec![event(12)])
        .await
        .unwrap();
    assert_eq!(appended.version, 12);
    assert_eq!(appended.first_position, 13, "after b's two events");

    // Alone again for a while; then `b` appends, and what `a` knows is stale: refused, with the
    // version as it now stands.
    for n in 12..20 {
        a.append("shared", ExpectedVersion::Exact(n), vec![event(n as usize)])
            .await
            .unwrap();
    }
    b.append("shared", ExpectedVersion::Exact(20), vec![event(20)])
        .await
        .unwrap();
    let stale = a
        .append("shared", ExpectedVersion::Exact(20), vec![event(21)])
        .await;
    assert!(
        matches!(
            stale,
            Err(spse_totp_store::StoreError::Conflict { actual: 21, .. })
        ),
        "{stale:?}"
    );

    // Alone again, then an event id already stored: refused as a duplicate, and the writer goes
    // on.
    for n in 21..30 {
        a.append("shared", ExpectedVersion::Exact(n), vec![event(n as usize)])
            .await
            .unwrap();
    }
    let mut repeated = event(99);
    repeated.event_id = first_id;
    let duplicate = a
        .append("shared", ExpectedVersion::Exact(30), vec![repeated])
        .await;
    assert!(
        matches!(duplicate, Err(spse_totp_store::StoreError::DuplicateEvent(id)) if id == first_id),
        "{duplicate:?}"
    );
    a.append("shared", ExpectedVersion::Exact(30), vec![event(30)])
        .await
        .unwrap();

    let versions: Vec<u64> = b
        .read_stream("shared", 1, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, (1..=31).collect::<Vec<_>>());
    conformance::assert_chained(b.as_ref(), "shared")
        .await
        .unwrap();
}

fn event(n: usize) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "Ticked".to_owned(),
        schema_version: 1,
        payload: serde_json::json!({ "n": n }),
        metadata: EventMetadata::system(),
        recorded_at: Utc::now(),
    }
}

/// Three instances (each with its own writer and pool) append from 48 tasks at once while a
/// reader on a fourth follows `read_all` page by page as fast as it can. If positions could
/// commit out of order, the reader would pass a position whose event had not committed yet and
/// never see it: the set it collects would miss events. It must collect every position exactly
/// once, in increasing order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_following_reader_never_skips_an_event_under_concurrent_appends() {
    let Some(url) = fresh_url().await else {
        return skipped("a_following_reader_never_skips_an_event_under_concurrent_appends");
    };
    const TASKS: usize = 48;
    const PER_TASK: usize = 40;
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(open(&url).await.expect("an instance"));
    }
    let reader = open(&url).await.expect("the reader's instance");

    let follow = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut after = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while seen.len() < TASKS * PER_TASK && tokio::time::Instant::now() < deadline {
            let page = reader.read_all(after, 37).await.expect("read_all");
            for recorded in &page {
                assert!(recorded.position > after, "positions go forward");
                after = recorded.position;
                seen.push(recorded.position);
            }
            if page.is_empty() {
                tokio::task::yield_now().await;
            }
        }
        seen
    });

    let mut appenders = Vec::new();
    for task in 0..TASKS {
        let store = Arc::clone(&instances[task % instances.len()]);
        appenders.push(tokio::spawn(async move {
            for n in 0..PER_TASK {
                // Half the tasks share streams, so conflicts and retries happen too.
                let stream = if task % 2 == 0 {
                    format!("race-{task}")
                } else {
                    format!("shared-{}", task % 5)
                };
                loop {
                    let version = store.stream_version(&stream).await.expect("version");
                    match store
                        .append(&stream, ExpectedVersion::at(version), vec![event(n)])
                        .await
                    {
                        Ok(_) => break,
                        Err(spse_totp_store::StoreError::Conflict { .. }) => continue,
                        Err(e) => panic!("append failed: {e}"),
                    }
                }
            }
        }));
    }
    for appender in appenders {
        appender.await.expect("an appender");
    }
    let seen = follow.await.expect("the reader");
    let distinct: BTreeSet<u64> = seen.iter().copied().collect();
    assert_eq!(distinct.len(), seen.len(), "no event is seen twice");
    assert_eq!(seen.len(), TASKS * PER_TASK, "no event is skipped");
    let expected: BTreeSet<u64> = (1..=(TASKS * PER_TASK) as u64).collect();
    assert_eq!(distinct, expected, "positions are 1..=N without gaps");
}
