//! Signed checkpoints of the log's head against a real SQLite file and a real PostgreSQL schema
//! (when `SPSE_TOTP_TEST_DATABASE_URL` is set): the writer signs the head only when it moved and
//! the interval passed by the clock it is given; the verifier reports a log cut short, a forged
//! checkpoint, an event replaced at a checkpoint's position, and passes a clean log.

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;
use spse_totp_projections::audit::{verify_signed, CheckpointCheck, CheckpointProblem};
use spse_totp_projections::audit_checkpoints::{write_if_moved, AuditKey};
use spse_totp_store::test_database::{fresh_postgres_url, skipped};
use spse_totp_store::{Database, EventMetadata, ExpectedVersion, NewEvent};
use tempfile::TempDir;
use uuid::Uuid;

fn event(n: u32) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "Tested".to_owned(),
        schema_version: 1,
        payload: json!({"n": n}),
        metadata: EventMetadata::system(),
        recorded_at: Utc::now(),
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 6, 9, 0, 0).single().unwrap()
}

/// A fresh database of each engine at hand, named for the messages.
async fn databases(dir: &TempDir, test: &str) -> Vec<(Database, &'static str)> {
    let mut dbs = vec![(
        Database::open(&format!("sqlite://{}/{test}.db", dir.path().display()))
            .await
            .expect("sqlite"),
        "sqlite",
    )];
    match fresh_postgres_url().await.expect("a test schema") {
        Some(url) => dbs.push((Database::open(&url).await.expect("postgres"), "postgres")),
        None => skipped(test),
    }
    dbs
}

async fn append(db: &Database, stream: &str, from: u32, n: u32) {
    let version = db.events.stream_version(stream).await.unwrap();
    db.events
        .append(
            stream,
            ExpectedVersion::at(version),
            (from..from + n).map(event).collect(),
        )
        .await
        .unwrap();
}

async fn count(db: &Database) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM audit_checkpoints")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_head_is_signed_when_it_moved_and_the_interval_passed_only() {
    let dir = TempDir::new().unwrap();
    let key = AuditKey::new([3; 32]);
    for (db, engine) in databases(&dir, "writer").await {
        // An empty log has nothing to sign.
        assert_eq!(write_if_moved(&db, &key, t0()).await.unwrap(), None);
        append(&db, "s", 1, 3).await;
        let head = db.events.head_position().await.unwrap();
        let first = write_if_moved(&db, &key, t0())
            .await
            .unwrap()
            .expect("the first checkpoint");
        assert_eq!(first.position, head, "{engine}");
        assert!(key.verifies(&first), "{engine}");
        // Not moved: nothing new, however much time passes.
        assert_eq!(
            write_if_moved(&db, &key, t0() + Duration::minutes(5))
                .await
                .unwrap(),
            None,
            "{engine}"
        );
        // Moved, but within the interval: next time.
        append(&db, "t", 1, 2).await;
        assert_eq!(
            write_if_moved(&db, &key, t0() + Duration::seconds(10))
                .await
                .unwrap(),
            None,
            "{engine}"
        );
        assert_eq!(count(&db).await, 1, "{engine}");
        let second = write_if_moved(&db, &key, t0() + Duration::seconds(21))
            .await
            .unwrap()
            .expect("the head moved");
        assert_eq!(
            second.position,
            db.events.head_position().await.unwrap(),
            "{engine}"
        );
        assert_eq!(
            write_if_moved(&db, &key, t0() + Duration::minutes(10))
                .await
                .unwrap(),
            None,
            "{engine}"
        );
        assert_eq!(count(&db).await, 2, "{engine}");
        // The table refuses what the service never does.
        assert!(sqlx::query("DELETE FROM audit_checkpoints")
            .execute(&db.pool)
            .await
            .is_err());
        assert!(sqlx::query("UPDATE audit_checkpoints SET mac = 'x'")
            .execute(&db.pool)
            .await
            .is_err());
    }
}

#[tokio::test]
async fn truncation_forgery_and_a_replaced_event_are_reported_and_a_clean_log_verifies() {
    let dir = TempDir::new().unwrap();
    let key = AuditKey::new([5; 32]);
    for (db, engine) in databases(&dir, "verifier").await {
        let check = CheckpointCheck {
            pool: &db.pool,
            key: &key,
        };
        append(&db, "s", 1, 4).await;
        write_if_moved(&db, &key, t0())
            .await
            .unwrap()
            .expect("signed");
        append(&db, "t", 1, 3).await;
        let signed = write_if_moved(&db, &key, t0() + Duration::minutes(1))
            .await
            .unwrap()
            .expect("signed");
        let head = signed.position;

        let report = verify_signed(db.log_source(), Some(check)).await.unwrap();
        assert!(report.ok, "{engine}: {report:?}");
        assert_eq!(report.head, head, "{engine}");
        assert_eq!(report.checkpoints, 2, "{engine}");
        assert_eq!(report.checkpoint_key, Some(key.fingerprint()));
        assert_eq!(
            report.newest_checkpoint.map(|c| c.position),
            Some(head),
            "{engine}"
        );
        assert!(!report.truncated);

        // Under another key the checkpoints are counted, not checked, and not called forged.
        let other = AuditKey::new([6; 32]);
        let report = verify_signed(
            db.log_source(),
            Some(CheckpointCheck {
                pool: &db.pool,
                key: &other,
            }),
        )
        .await
        .unwrap();
        assert!(report.ok, "{engine}: {report:?}");
        assert_eq!(
            (report.checkpoints, report.checkpoints_other_key),
            (0, 2),
            "{engine}"
        );

        // The insider drops the guard and deletes the log's last two events: every stream's
        // chain still holds, the checkpoint does not.
        spse_totp_store::test_database::drop_append_only_guard(&db)
            .await
            .unwrap();
        sqlx::query("DELETE FROM events WHERE position > $1")
            .bind(i64::try_from(head).unwrap() - 2)
            .execute(&db.pool)
            .await
            .unwrap();
        assert!(
            spse_totp_projections::audit::verify(db.log_source())
                .await
                .unwrap()
                .ok,
            "{engine}: the chain alone cannot tell"
        );
        let report = verify_signed(db.log_source(), Some(check)).await.unwrap();
        assert!(!report.ok, "{engine}: {report:?}");
        assert!(report.truncated, "{engine}: {report:?}");
        assert_eq!(report.head, head - 2, "{engine}");
        let broken = report.broken_checkpoint.expect("the checkpoint");
        assert_eq!(
            (broken.problem, broken.position),
            (CheckpointProblem::Truncated, head),
            "{engine}"
        );
        assert!(report.broken.is_none());

        // The service goes on appending past the cut: on SQLite an event takes the freed
        // position and its hash is not the one signed; on PostgreSQL positions go on from the
        // old head, and the signed head's event is gone.
        append(&db, "t", 10, 3).await;
        let report = verify_signed(db.log_source(), Some(check)).await.unwrap();
        assert!(!report.ok, "{engine}: {report:?}");
        let broken = report.broken_checkpoint.expect("the checkpoint");
        assert!(
            matches!(
                broken.problem,
                CheckpointProblem::HashMismatch | CheckpointProblem::Truncated
            ),
            "{engine}: {broken:?}"
        );
        assert_eq!(broken.position, head, "{engine}");
    }
}

#[tokio::test]
async fn a_forged_checkpoint_is_reported() {
    let dir = TempDir::new().unwrap();
    let key = AuditKey::new([9; 32]);
    for (db, engine) in databases(&dir, "forged").await {
        let check = CheckpointCheck {
            pool: &db.pool,
            key: &key,
        };
        append(&db, "s", 1, 3).await;
        let signed = write_if_moved(&db, &key, t0())
            .await
            .unwrap()
            .expect("signed");
        spse_totp_store::test_database::drop_append_only_guard(&db)
            .await
            .unwrap();
        // The MAC changed (one digit): forged.
        let mut mac = signed.mac.clone().into_bytes();
        mac[0] = if mac[0] == b'0' { b'1' } else { b'0' };
        sqlx::query("UPDATE audit_checkpoints SET mac = $1")
            .bind(String::from_utf8(mac).unwrap())
            .execute(&db.pool)
            .await
            .unwrap();
        let report = verify_signed(db.log_source(), Some(check)).await.unwrap();
        assert!(!report.ok, "{engine}: {report:?}");
        let broken = report.broken_checkpoint.expect("the checkpoint");
        assert_eq!(
            (broken.problem, broken.position),
            (CheckpointProblem::MacInvalid, signed.position),
            "{engine}"
        );
        assert!(!report.truncated);

        // A checkpoint made up past the head, without the key, is forged, not a truncation.
        sqlx::query("UPDATE audit_checkpoints SET mac = $1")
            .bind(&signed.mac)
            .execute(&db.pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO audit_checkpoints (position, chain_hash, signed_at, key_fingerprint, mac) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(i64::try_from(signed.position).unwrap() + 10)
        .bind(&signed.chain_hash)
        .bind(signed.signed_at.timestamp_micros())
        .bind(key.fingerprint())
        .bind(&signed.mac)
        .execute(&db.pool)
        .await
        .unwrap();
        let report = verify_signed(db.log_source(), Some(check)).await.unwrap();
        let broken = report.broken_checkpoint.expect("the made-up checkpoint");
        assert_eq!(
            (broken.problem, broken.position),
            (CheckpointProblem::MacInvalid, signed.position + 10),
            "{engine}"
        );
        assert!(!report.truncated, "{engine}");
    }
}

/// The log as a walk that began before the last events committed sees it: pages stop at `seen`,
/// while a read of one position (as the verifier does for a checkpoint past its walk) sees all.
struct SeenUpTo {
    inner: std::sync::Arc<dyn spse_totp_store::EventStore>,
    seen: u64,
}

#[async_trait::async_trait]
impl spse_totp_store::EventStore for SeenUpTo {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<spse_totp_store::Appended, spse_totp_store::StoreError> {
        self.inner.append(stream, expected, events).await
    }
    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<spse_totp_store::RecordedEvent>, spse_totp_store::StoreError> {
        self.inner.read_stream(stream, from_version, limit).await
    }
    async fn read_all(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<spse_totp_store::RecordedEvent>, spse_totp_store::StoreError> {
        let mut events = self.inner.read_all(after, limit).await?;
        if limit > 1 {
            events.retain(|e| e.position <= self.seen);
        }
        Ok(events)
    }
    async fn stream_version(&self, stream: &str) -> Result<u64, spse_totp_store::StoreError> {
        self.inner.stream_version(stream).await
    }
    async fn head_position(&self) -> Result<u64, spse_totp_store::StoreError> {
        self.inner.head_position().await
    }
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.subscribe()
    }
}

/// A checkpoint signed while a verification ran, past the events its walk read, names events
/// that are there: it is checked against them, not taken for a log cut short.
#[tokio::test]
async fn a_checkpoint_signed_during_the_walk_is_not_a_truncation() {
    let dir = TempDir::new().unwrap();
    let key = AuditKey::new([4; 32]);
    for (db, engine) in databases(&dir, "during").await {
        append(&db, "s", 1, 3).await;
        let walked = db.events.head_position().await.unwrap();
        append(&db, "s", 4, 2).await;
        let signed = write_if_moved(&db, &key, t0())
            .await
            .unwrap()
            .expect("signed");
        assert!(signed.position > walked);
        let log = SeenUpTo {
            inner: std::sync::Arc::clone(&db.events),
            seen: walked,
        };
        let check = CheckpointCheck {
            pool: &db.pool,
            key: &key,
        };
        let report = verify_signed(spse_totp_store::LogSource::Store(&log), Some(check))
            .await
            .unwrap();
        assert!(report.ok, "{engine}: {report:?}");
        assert_eq!(report.head, walked, "{engine}");
        assert_eq!(
            report.newest_checkpoint.map(|c| c.position),
            Some(signed.position),
            "{engine}"
        );
        // The same walk with the signed event gone is a cut.
        spse_totp_store::test_database::drop_append_only_guard(&db)
            .await
            .unwrap();
        sqlx::query("DELETE FROM events WHERE position = $1")
            .bind(i64::try_from(signed.position).unwrap())
            .execute(&db.pool)
            .await
            .unwrap();
        let report = verify_signed(spse_totp_store::LogSource::Store(&log), Some(check))
            .await
            .unwrap();
        assert!(report.truncated, "{engine}: {report:?}");
    }
}
