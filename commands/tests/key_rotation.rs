//! The window cases of a master key rotation (`spse_totp_commands::rotation`), driven step by step
//! on a real database (a SQLite file; PostgreSQL when `SPSE_TOTP_TEST_DATABASE_URL` is set): a
//! secret sealed by an old-key instance after the last re-sealing pass holds the switch back; an
//! instance started with the new key during the rotation seals what the old one opens; after the
//! switch only the new key opens or seals; and creations racing a whole rotation all end up
//! sealed under the new key.

use chrono::{Duration, Utc};
use spse_totp_commands::rotation::{Begun, Rotation, RotationError, Switch};
use spse_totp_commands::vault::{
    check_key, key_ring, key_state, KeyRing, MasterKey, Vault, VaultError,
};
use spse_totp_domain::totp::TotpSecret;
use spse_totp_domain::EnrollmentId;
use spse_totp_store::test_database::{fresh_postgres_url, skipped};
use spse_totp_store::{Database, EventMetadata};

async fn sqlite() -> (Database, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&format!("sqlite://{}/v.db", dir.path().display()))
        .await
        .unwrap();
    (db, dir)
}

async fn postgres() -> Option<Database> {
    let url = fresh_postgres_url().await.expect("a fresh test schema")?;
    Some(Database::open(&url).await.unwrap())
}

async fn seal(vault: &Vault, stream: &str) -> Result<(EnrollmentId, TotpSecret), VaultError> {
    let id = EnrollmentId::generate();
    let now = Utc::now();
    let secret = vault
        .create(id, stream, now, now + Duration::days(1))
        .await?;
    Ok((id, secret))
}

async fn open(vault: &Vault, id: EnrollmentId) -> Result<TotpSecret, VaultError> {
    let sealed = vault.fetch(id).await?.expect("the row is there");
    vault.unseal(&sealed)
}

async fn begin(db: &Database, current: &MasterKey, to: &MasterKey) -> Rotation {
    match Rotation::begin(
        db,
        &KeyRing::single(current.clone()),
        to.clone(),
        EventMetadata::system(),
        Utc::now(),
    )
    .await
    .unwrap()
    {
        Begun::Rotation(rotation) => *rotation,
        Begun::Finished(_) => panic!("a rotation to a new key begins"),
    }
}

async fn reseal_all(rotation: &Rotation) {
    while rotation.reseal_batch(2).await.unwrap() > 0 {}
}

async fn window_cases(db: Database) {
    let old = MasterKey::generate();
    let new = MasterKey::generate();
    let old_vault = Vault::new(&db, &old);
    let mut sealed = vec![
        seal(&old_vault, "totp-penyedia-a").await.unwrap(),
        seal(&old_vault, "totp-penyedia-b").await.unwrap(),
        seal(&old_vault, "totp-penyedia-c").await.unwrap(),
    ];
    let rotation = begin(&db, &old, &new).await;

    // An instance started with the new key now holds the old one too, from the rotation record.
    let ring = key_ring(&db, &new).await.unwrap();
    assert_eq!(ring.derivation_key().key_id(), old.key_id());
    let new_instance = Vault::with_keys(&db, &ring);
    assert_eq!(open(&new_instance, sealed[0].0).await.unwrap(), sealed[0].1);
    let by_new = seal(&new_instance, "totp-penyedia-d").await.unwrap();
    assert_eq!(open(&old_vault, by_new.0).await.unwrap(), by_new.1);
    sealed.push(by_new);

    // Everything re-sealed; then the old instance seals one more: the switch must not happen.
    reseal_all(&rotation).await;
    let late = seal(&old_vault, "totp-penyedia-e").await.unwrap();
    sealed.push(late);
    assert_eq!(
        rotation.try_switch(Utc::now()).await.unwrap(),
        Switch::RowsLeft
    );
    assert_eq!(
        key_state(&db).await.unwrap().fingerprint,
        Some(old.key_id())
    );
    assert_eq!(open(&old_vault, sealed[4].0).await.unwrap(), sealed[4].1);
    reseal_all(&rotation).await;
    assert_eq!(
        rotation.try_switch(Utc::now()).await.unwrap(),
        Switch::Done(5)
    );

    // After the switch: every row under the new key only, and the record names it.
    let state = key_state(&db).await.unwrap();
    assert_eq!(state.fingerprint, Some(new.key_id()));
    assert_eq!(state.rotating_to, None);
    let (others, second): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM vault_secrets WHERE key_id <> $1), \
         (SELECT COUNT(*) FROM vault_secrets WHERE next_key_id IS NOT NULL)",
    )
    .bind(new.key_id())
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((others, second), (0, 0));
    let only_new = Vault::new(&db, &new);
    for (id, secret) in &sealed {
        assert_eq!(&open(&only_new, *id).await.unwrap(), secret);
    }

    // The old key opens nothing it reads and seals nothing; it is refused at start.
    let wrong = |e: VaultError| match e {
        VaultError::KeyMismatch { expected, .. } => expected,
        other => panic!("not a key mismatch: {other}"),
    };
    assert_eq!(
        wrong(open(&old_vault, sealed[0].0).await.unwrap_err()),
        new.key_id()
    );
    assert_eq!(
        wrong(seal(&old_vault, "totp-penyedia-f").await.unwrap_err()),
        new.key_id()
    );
    assert_eq!(wrong(check_key(&db, &old).await.unwrap_err()), new.key_id());
    // The instance started with the new key during the rotation seals under it alone now.
    let after = seal(&new_instance, "totp-penyedia-g").await.unwrap();
    assert_eq!(open(&only_new, after.0).await.unwrap(), after.1);

    // The switch committed but the run stopped before its event: the rerun records it; the
    // next rerun is refused, as is any rotation to the key in use.
    let single_new = KeyRing::single(new.clone());
    let rerun = || {
        Rotation::begin(
            &db,
            &single_new,
            new.clone(),
            EventMetadata::system(),
            Utc::now(),
        )
    };
    match rerun().await.unwrap() {
        Begun::Finished(done) => {
            assert_eq!((done.from, done.to), (old.key_id(), new.key_id()))
        }
        Begun::Rotation(_) => panic!("nothing left to rotate"),
    }
    assert!(matches!(rerun().await, Err(RotationError::SameKey(_))));
    let types: Vec<String> = db
        .events
        .read_stream("masterkey", 1, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(types, ["MasterKeyRotationStarted", "MasterKeyRotated"]);
}

/// An old-key instance sealing as fast as it can while a whole rotation runs: every secret it
/// managed to seal opens under the new key alone afterwards, and it is refused from the switch
/// on.
async fn creations_racing_a_rotation(db: Database) {
    let old = MasterKey::generate();
    let new = MasterKey::generate();
    let old_vault = Vault::new(&db, &old);
    for i in 0..20 {
        seal(&old_vault, &format!("totp-penyedia-{i}"))
            .await
            .unwrap();
    }
    let writer = {
        let old_vault = old_vault.clone();
        tokio::spawn(async move {
            let mut sealed = Vec::new();
            for i in 0..2000 {
                match seal(&old_vault, &format!("totp-penyedia-w{i}")).await {
                    Ok(s) => sealed.push(s),
                    Err(VaultError::KeyMismatch { .. }) => return (sealed, true),
                    Err(e) => panic!("{e}"),
                }
            }
            (sealed, false)
        })
    };
    let rotation = begin(&db, &old, &new).await;
    let done = rotation.run(3, Utc::now, |_| {}).await.unwrap();
    let (sealed, refused) = writer.await.unwrap();
    assert!(!sealed.is_empty());
    let only_new = Vault::new(&db, &new);
    for (id, secret) in &sealed {
        assert_eq!(&open(&only_new, *id).await.unwrap(), secret);
    }
    let (total, under_new): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN key_id = $1 AND next_key_id IS NULL THEN 1 ELSE 0 END), 0) \
         FROM vault_secrets",
    )
    .bind(new.key_id())
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(total, under_new, "every row under the new key only");
    if refused {
        assert_eq!(
            total as u64, done.secrets,
            "nothing sealed after the switch"
        );
    }
}

#[tokio::test]
async fn window_cases_on_sqlite() {
    let (db, _dir) = sqlite().await;
    window_cases(db).await;
}

#[tokio::test]
async fn window_cases_on_postgres() {
    let Some(db) = postgres().await else {
        return skipped("window_cases_on_postgres");
    };
    window_cases(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creations_racing_a_rotation_on_sqlite() {
    let (db, _dir) = sqlite().await;
    creations_racing_a_rotation(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creations_racing_a_rotation_on_postgres() {
    let Some(db) = postgres().await else {
        return skipped("creations_racing_a_rotation_on_postgres");
    };
    creations_racing_a_rotation(db).await;
}
