//! Loading an account costs the same however long its history: the service folds from a
//! snapshot plus the events after it. These tests check that what it folds that way is exactly
//! what folding the whole stream gives, including after a restart with an empty cache.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use spse_totp_commands::accounts::{AccountService, ServiceSettings};
use spse_totp_commands::snapshots::SnapshotStore;
use spse_totp_commands::vault::{MasterKey, Vault};
use spse_totp_commands::ManualClock;
use spse_totp_domain::account::CancelLogin;
use spse_totp_domain::{Account, AccountCommand, AccountEvent, AccountKey, UserId, UserType};
use spse_totp_store::{Database, EventMetadata};

fn service(db: &Database, key: &MasterKey, clock: Arc<ManualClock>) -> AccountService {
    AccountService::new(
        Arc::clone(&db.events),
        Vault::new(db, key),
        SnapshotStore::new(db),
        clock,
        ServiceSettings {
            snapshot_every: 7,
            ..ServiceSettings::default()
        },
    )
}

/// A fresh database in `dir`, its master key, and a test clock.
async fn setup(dir: &tempfile::TempDir) -> (Database, MasterKey, Arc<ManualClock>) {
    let db = Database::open(&format!("sqlite://{}/s.db", dir.path().display()))
        .await
        .unwrap();
    let start = Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 10).unwrap();
    (
        db,
        MasterKey::generate(),
        Arc::new(ManualClock::starting_at(start)),
    )
}

async fn folded_from_the_log(db: &Database, key: &AccountKey) -> Account {
    let events = db
        .events
        .read_stream(&key.stream_name(), 1, usize::MAX)
        .await
        .unwrap();
    let events: Vec<AccountEvent> = events
        .into_iter()
        .map(|e| AccountEvent::from_stored(&e.event_type, e.schema_version, e.payload).unwrap())
        .collect();
    Account::from_events(&events)
}

#[tokio::test]
async fn a_state_loaded_from_a_snapshot_equals_the_whole_stream_folded() {
    let dir = tempfile::tempdir().unwrap();
    let (db, master, clock) = setup(&dir).await;
    let key = AccountKey::new(UserType::Penyedia, UserId::parse("vendor-1").unwrap());

    let first = service(&db, &master, Arc::clone(&clock));
    for _ in 0..30 {
        let started = first
            .start_login(&key, None, None, None, None, EventMetadata::system())
            .await
            .unwrap();
        let cancel = AccountCommand::CancelLogin(CancelLogin {
            login_id: started.login_id,
        });
        first
            .execute(&key, cancel, EventMetadata::system())
            .await
            .unwrap();
        clock.advance(chrono::Duration::seconds(1));
    }
    let expected = folded_from_the_log(&db, &key).await;
    assert_eq!(
        first.load(&key).await.unwrap(),
        expected,
        "the cached state drifted from the log"
    );

    // Snapshots were taken along the way, and not at the stream's very end.
    let (snapshot, version): (Account, u64) = SnapshotStore::new(&db)
        .load(&key.stream_name())
        .await
        .unwrap()
        .expect("a snapshot");
    let head = db.events.stream_version(&key.stream_name()).await.unwrap();
    assert!(
        version > 0 && version <= head,
        "snapshot at {version}, stream at {head}"
    );
    assert_ne!(snapshot, Account::default());

    // A new process: nothing cached, so the state comes from the snapshot plus the tail.
    let restarted = service(&db, &master, Arc::clone(&clock));
    assert_eq!(restarted.load(&key).await.unwrap(), expected);
}

#[tokio::test]
async fn an_unreadable_snapshot_only_costs_a_full_fold() {
    let dir = tempfile::tempdir().unwrap();
    let (db, master, clock) = setup(&dir).await;
    let key = AccountKey::new(UserType::NonPenyedia, UserId::parse("ppk1").unwrap());
    let first = service(&db, &master, Arc::clone(&clock));
    for _ in 0..10 {
        first
            .start_login(&key, None, None, None, None, EventMetadata::system())
            .await
            .unwrap();
    }
    sqlx::query("UPDATE snapshots SET state = 'not json'")
        .execute(&db.pool)
        .await
        .unwrap();
    let restarted = service(&db, &master, clock);
    assert_eq!(
        restarted.load(&key).await.unwrap(),
        folded_from_the_log(&db, &key).await
    );
}
