//! The SQLite adapter against the event store conformance suite: one fresh database file per
//! check, in a temporary folder, opened the way the service opens it (`Database::open`, which
//! migrates). The suite is compiled in through this crate's dev-dependency on itself with the
//! `conformance` feature, so a plain `cargo test` runs it.

use std::path::Path;
use std::sync::Arc;

use spse_totp_store::conformance;
use spse_totp_store::{
    Appended, Database, DatabaseError, EventStore, ExpectedVersion, NewEvent, RecordedEvent,
    StoreError,
};
use tempfile::TempDir;

async fn open(path: &Path) -> Result<Arc<dyn EventStore>, DatabaseError> {
    let db = Database::open(&format!("sqlite://{}", path.display())).await?;
    Ok(db.events)
}

/// Runs the whole suite, each check on a fresh database file in a new temporary folder.
async fn run_suite() {
    let dir = TempDir::new().expect("a temporary folder");
    let mut n = 0;
    conformance::run_all(|| {
        n += 1;
        let path = dir.path().join(format!("check-{n}.db"));
        async move { open(&path).await }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_passes_the_conformance_suite() {
    run_suite().await;
}

/// The same suite with every task on one thread: the adapter must not rely on parallelism
/// (its writer task shares the thread with the callers it serves).
#[tokio::test(flavor = "current_thread")]
async fn sqlite_passes_the_conformance_suite_on_one_thread() {
    run_suite().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_events_survive_reopening_the_file() {
    let dir = TempDir::new().expect("a temporary folder");
    let path = dir.path().join("durable.db");
    conformance::survives_reopen(|| open(&path))
        .await
        .expect("the durability check hit a store error");
}

/// Three stores on one file, as when the command line appends while the server runs: each has
/// its own writer task, and SQLite's write lock is what orders them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_handles_on_one_file_share_one_log() {
    let dir = TempDir::new().expect("a temporary folder");
    let path = dir.path().join("shared.db");
    conformance::handles_share_one_log(|| open(&path))
        .await
        .expect("the shared-file check hit a store error");
}

/// A stand-in for an adapter with sparse positions (as EventStoreDB's byte offsets): SQLite's
/// positions, spread out as `7 p + 3`. Only here to prove the suite checks such adapters
/// properly, through ordinals; it is not an adapter anyone runs.
struct Spread(Arc<dyn EventStore>);

fn spread(p: u64) -> u64 {
    7 * p + 3
}

fn unspread(p: u64) -> u64 {
    p.saturating_sub(3) / 7
}

#[async_trait::async_trait]
impl EventStore for Spread {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        let a = self.0.append(stream, expected, events).await?;
        Ok(Appended {
            version: a.version,
            first_position: spread(a.first_position),
            last_position: spread(a.last_position),
        })
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut events = self.0.read_stream(stream, from_version, limit).await?;
        events
            .iter_mut()
            .for_each(|e| e.position = spread(e.position));
        Ok(events)
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut events = self.0.read_all(unspread(after), limit).await?;
        events
            .iter_mut()
            .for_each(|e| e.position = spread(e.position));
        Ok(events)
    }

    async fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        self.0.stream_version(stream).await
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        Ok(match self.0.head_position().await? {
            0 => 0,
            p => spread(p),
        })
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.subscribe()
    }

    fn dense_positions(&self) -> bool {
        false
    }
}

/// The suite, through its ordinal view, on an adapter whose positions are sparse.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sparse_positions_are_checked_through_ordinals() {
    let dir = TempDir::new().expect("a temporary folder");
    let mut n = 0;
    conformance::run_all(|| {
        n += 1;
        let path = dir.path().join(format!("sparse-{n}.db"));
        async move {
            let store: Arc<dyn EventStore> = Arc::new(Spread(open(&path).await?));
            Ok::<_, DatabaseError>(store)
        }
    })
    .await;
}

/// What "durable on commit" rests on, for every connection that writes: the pool's (vault,
/// snapshots, leases) and the event writer's. `synchronous` 2 is FULL: each commit syncs the WAL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_writing_connection_syncs_each_commit() {
    use spse_totp_store::database::WAL_AUTOCHECKPOINT_PAGES;
    use spse_totp_store::open_write_connection;

    let dir = TempDir::new().expect("a temporary folder");
    let path = dir.path().join("pragmas.db");
    let db = Database::open(&format!("sqlite://{}", path.display()))
        .await
        .expect("the database opens");
    let mut pooled = db.pool.acquire().await.expect("a pool connection");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut *pooled)
        .await
        .expect("journal_mode");
    let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(&mut *pooled)
        .await
        .expect("synchronous");
    let autocheckpoint: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
        .fetch_one(&mut *pooled)
        .await
        .expect("wal_autocheckpoint");
    assert_eq!(
        (mode.as_str(), synchronous, autocheckpoint),
        ("wal", 2, i64::from(WAL_AUTOCHECKPOINT_PAGES)),
        "a pool connection"
    );

    let writer = open_write_connection(&path).expect("a writing connection");
    let mode: String = writer
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .expect("journal_mode");
    let synchronous: i64 = writer
        .pragma_query_value(None, "synchronous", |row| row.get(0))
        .expect("synchronous");
    let autocheckpoint: i64 = writer
        .pragma_query_value(None, "wal_autocheckpoint", |row| row.get(0))
        .expect("wal_autocheckpoint");
    assert_eq!(
        (mode.as_str(), synchronous, autocheckpoint),
        ("wal", 2, i64::from(WAL_AUTOCHECKPOINT_PAGES)),
        "the event writer's connection"
    );
}
