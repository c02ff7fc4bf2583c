//! The SQLite adapter against the event store conformance suite: one fresh database file per
//! check, in a temporary folder, opened the way the service opens it (`Database::open`, which
//! migrates). The suite is compiled in through this crate's dev-dependency on itself with the
//! `conformance` feature, so a plain `cargo test` runs it.

use std::path::Path;
use std::sync::Arc;

use spse_totp_commands::store::conformance;
use spse_totp_commands::{Database, DatabaseError, EventStore};
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
