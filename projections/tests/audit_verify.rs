//! The verifier against a real SQLite file: chains written by the store verify; a row without a
//! hash is a break, at a stream's start as after it; a changed payload is named; read through
//! the event store port instead of the table, every answer is the same.

use chrono::Utc;
use serde_json::json;
use spse_totp_projections::audit::{history_page, verify, HistoryFilter};
use spse_totp_store::LogSource;
use spse_totp_store::{Database, EventMetadata, ExpectedVersion, NewEvent};
use tempfile::TempDir;
use uuid::Uuid;

fn event(n: u32) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "Tested".to_owned(),
        schema_version: 1,
        payload: json!({"n": n, "nested": {"b": [1, 2], "a": "é"}}),
        metadata: EventMetadata::system(),
        recorded_at: Utc::now(),
    }
}

/// A database whose event log an insider may edit: the triggers that refuse UPDATE and DELETE
/// of events are dropped, so these tests can check what the hash chain alone detects.
async fn open(dir: &TempDir) -> Database {
    let db = Database::open(&format!("sqlite://{}/verify.db", dir.path().display()))
        .await
        .expect("open");
    spse_totp_store::test_database::drop_append_only_guard(&db)
        .await
        .expect("drop the guard");
    db
}

/// Before issue 13 a stream whose first rows had no hash passed as "legacy"; no supported path
/// writes such a row (the store and `import` hash every event), so now it is a break.
#[tokio::test]
async fn a_row_without_a_hash_is_a_break_at_a_streams_start_as_after_it() {
    let dir = TempDir::new().unwrap();
    let db = open(&dir).await;
    // A row written past the service: no hash.
    sqlx::query(
        "INSERT INTO event_rows (position, stream, version, event_id, event_type, schema_version, payload, metadata, recorded_at) \
         VALUES (1, 's', 1, $1, 'Tested', 1, '{}', '{\"actor\":{\"kind\":\"system\"}}', 0)",
    )
    .bind(Uuid::now_v7().as_bytes().to_vec())
    .execute(&db.pool)
    .await
    .unwrap();
    db.events
        .append("s", ExpectedVersion::Exact(1), vec![event(1), event(2)])
        .await
        .unwrap();
    let report = verify(db.log_source()).await.unwrap();
    assert!(!report.ok, "{report:?}");
    assert_eq!(report.legacy, 0);
    let broken = report.broken.expect("broken");
    assert_eq!(
        (broken.stream.as_str(), broken.position, broken.version),
        ("s", 1, 1)
    );
    assert!(broken.reason.contains("missing"), "{}", broken.reason);

    // Removing a hash after the chain began is a break too.
    let dir = TempDir::new().unwrap();
    let db = open(&dir).await;
    db.events
        .append("t", ExpectedVersion::NoStream, vec![event(3)])
        .await
        .unwrap();
    db.events
        .append("s", ExpectedVersion::NoStream, vec![event(1), event(2)])
        .await
        .unwrap();
    assert!(verify(db.log_source()).await.unwrap().ok);
    sqlx::query("UPDATE events SET hash = NULL WHERE position = 3")
        .execute(&db.pool)
        .await
        .unwrap();
    let report = verify(db.log_source()).await.unwrap();
    let broken = report.broken.expect("broken");
    assert_eq!(
        (broken.stream.as_str(), broken.position, broken.version),
        ("s", 3, 2)
    );
    assert!(broken.reason.contains("missing"), "{}", broken.reason);
}

#[tokio::test]
async fn a_changed_payload_is_named_even_when_its_json_is_reformatted_elsewhere() {
    let dir = TempDir::new().unwrap();
    let db = open(&dir).await;
    db.events
        .append(
            "s",
            ExpectedVersion::NoStream,
            vec![event(1), event(2), event(3)],
        )
        .await
        .unwrap();
    // Reformatting JSON without changing it (as another engine may store it) still verifies. The
    // payload is written whole, so the row no longer names its keys apart.
    sqlx::query("UPDATE events SET payload = '{ \"nested\": {\"a\": \"é\", \"b\": [1,2]}, \"n\": 2 }', shape_id = NULL WHERE position = 2")
        .execute(&db.pool)
        .await
        .unwrap();
    assert!(verify(db.log_source()).await.unwrap().ok);
    sqlx::query("UPDATE events SET payload = '{\"n\": 20, \"nested\": {\"a\": \"é\", \"b\": [1, 2]}}' WHERE position = 2")
        .execute(&db.pool)
        .await
        .unwrap();
    let report = verify(db.log_source()).await.unwrap();
    assert!(!report.ok);
    assert_eq!(report.checked, 2, "it stops at the first broken link");
    assert_eq!(report.broken.expect("broken").position, 2);
}

/// An event store other than the SQL table (EventStoreDB) is read through its port: history
/// pages, their filters and the verifier answer exactly as they do from the table.
#[tokio::test]
async fn through_the_event_store_port_the_answers_are_the_same() {
    let dir = TempDir::new().unwrap();
    let db = open(&dir).await;
    let start = Utc::now();
    let timed = |n: u32, event_type: &str| NewEvent {
        event_type: event_type.to_owned(),
        recorded_at: start + chrono::Duration::seconds(i64::from(n)),
        ..event(n)
    };
    let events: Vec<NewEvent> = (1..=7)
        .map(|n| timed(n, if n % 2 == 0 { "Even" } else { "Odd" }))
        .collect();
    db.events
        .append("s", ExpectedVersion::NoStream, events)
        .await
        .unwrap();
    db.events
        .append("t", ExpectedVersion::NoStream, vec![timed(8, "Odd")])
        .await
        .unwrap();
    let table = LogSource::Table(&db.pool);
    let port = LogSource::Store(db.events.as_ref());
    let filters = [
        HistoryFilter::default(),
        HistoryFilter {
            after_version: 3,
            ..HistoryFilter::default()
        },
        HistoryFilter {
            event_type: Some("Even".to_owned()),
            ..HistoryFilter::default()
        },
        HistoryFilter {
            from: Some(start + chrono::Duration::seconds(2)),
            to: Some(start + chrono::Duration::seconds(5)),
            event_type: Some("Odd".to_owned()),
            ..HistoryFilter::default()
        },
    ];
    let expected_versions: [&[u64]; 4] =
        [&[1, 2, 3, 4, 5, 6, 7], &[4, 5, 6, 7], &[2, 4, 6], &[3, 5]];
    for (filter, expected) in filters.iter().zip(expected_versions) {
        for limit in [2, 10] {
            let from_table = history_page(table, "s", filter, limit).await.unwrap();
            let from_port = history_page(port, "s", filter, limit).await.unwrap();
            let versions: Vec<u64> = from_port.iter().map(|e| e.version).collect();
            assert_eq!(
                versions,
                expected[..expected.len().min(limit)],
                "{filter:?}"
            );
            assert_eq!(from_port, from_table, "{filter:?} limit {limit}");
        }
    }

    let report = verify(port).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!((report.checked, report.streams), (8, 2));
    assert_eq!(report, verify(table).await.unwrap());
    sqlx::query("UPDATE events SET payload = '{\"n\": 40}', shape_id = NULL WHERE position = 4")
        .execute(&db.pool)
        .await
        .unwrap();
    let broken = verify(port).await.unwrap().broken.expect("broken");
    assert_eq!((broken.stream.as_str(), broken.position), ("s", 4));
    assert_eq!(verify(table).await.unwrap().broken, Some(broken));
}
