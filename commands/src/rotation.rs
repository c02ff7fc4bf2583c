//! Master key rotation, online: `spse-totp masterkey rotate --new-key-file FILE` re-seals every
//! secret in the vault under a new key while the service keeps running on the old one.
//!
//! The steps, each its own short write:
//! 1. **Begin.** The `master_key` row gets `rotating_to` (the new key's fingerprint) and the old
//!    key sealed under the new one; `MasterKeyRotationStarted` goes to the `masterkey` stream.
//! 2. **Re-seal** in batches: each row still without a second sealing is opened under the old key
//!    and sealed again under the new one, beside the first (`next_*`), one transaction a batch.
//! 3. **Switch over**, one transaction: it first updates the `master_key` row (current key := new,
//!    rotation record cleared), then counts the rows still without a second sealing; any left,
//!    it rolls back and step 2 runs again; none, it moves every second sealing into the first
//!    and commits. Then `MasterKeyRotated` is appended.
//!
//! Who can do what meanwhile:
//! - An instance with the old key opens every row (each keeps its first sealing, under the old
//!   key, until the switch) and seals new rows under the old key only. Those rows have no second
//!   sealing, so step 2 finds them on its next pass.
//! - An instance started with the new key during the rotation opens the old key from the
//!   rotation record (it is sealed under the new key), so it holds both: it opens every row, and
//!   seals new rows under the old key and the new one, which the old instances still open.
//!   Keys derived for other purposes (reset links, captchas) it derives from the old key, as the
//!   old instances do.
//! - After the switch, every row is sealed under the new key only and the record names the new
//!   key: an instance with the old key fails to open any row it reads (`KeyMismatch`, naming
//!   the new fingerprint), fails to seal, and refuses to start (exit code 2). A sealed secret it
//!   keeps in memory (the last one an account's approval opened) it stops opening once it reads
//!   the record again (`Vault::check_record`: every few seconds, and on each `/readyz`, which
//!   then answers 503 so a load balancer takes the instance out); until then it opens the same
//!   secret, so it gives no wrong answer meanwhile. Restart such instances with the new key.
//!
//! The window cases, where a write by another instance meets the switch:
//! - Every insert is one statement that inserts only while the record still names the key the
//!   row's first sealing is under (`INSERT ... SELECT ... FROM master_key WHERE fingerprint =`).
//!   On SQLite one statement holds the database's write lock from start to end, and the switch
//!   holds it from its first statement to its commit, so an insert is wholly before (the switch
//!   counts the row and rolls back) or wholly after (it sees the new record and inserts nothing;
//!   the vault reads the record again and seals under the new key, or, with the old key only,
//!   fails). On PostgreSQL (read committed) the insert share-locks the record row: an insert
//!   that locked it first makes the switch's first update wait until the insert commits, and the
//!   switch's count, a later statement, sees the row; an insert that comes after the switch's
//!   update waits for the switch to end and then re-checks the record's new version, so it
//!   inserts nothing if the switch committed.
//! - A row deleted (reset, disable, sweep) while a batch re-seals it: the batch's update finds
//!   nothing; a row whose expiry is extended meanwhile keeps both sealings (the update names
//!   only the sealing columns).
//! - A rotation interrupted at any step is resumed by running the command again with the same
//!   new key: begin finds its own record, re-sealing takes only the rows left, and a switch that
//!   committed before `MasterKeyRotated` was appended has that event appended by the rerun. A
//!   rotation to another key while one is under way is refused, naming the key it goes to.
//!
//! The switch updates every row in one transaction: for an LPSE's vault (some thousands of
//! rows) that is a short write; writers wait for it as for any other write.

use chrono::{DateTime, Utc};
use spse_totp_domain::masterkey::MasterKeyEvent;
use spse_totp_domain::EnrollmentId;
use uuid::Uuid;

use crate::vault::{key_state, KeyRing, MasterKey, SealedSecret, Vault, VaultError};
use spse_totp_store::{Database, EventMetadata, ExpectedVersion, NewEvent, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(
        "the database holds no sealed secret yet, so there is nothing to rotate: start the \
         service with the new key instead"
    )]
    NothingSealed,
    #[error(
        "the database's secrets are already sealed under the key with fingerprint {0}: give a \
         new key to rotate to"
    )]
    SameKey(String),
    #[error(
        "a rotation to the key with fingerprint {under_way} is under way: run `spse-totp \
         masterkey rotate` again with that key's file to finish it first (the key given has \
         fingerprint {given})"
    )]
    OtherRotation { under_way: String, given: String },
    #[error(
        "the sealed secret of enrollment {enrollment} is sealed under the key with fingerprint \
         {key_id}, which is neither the database's key nor the new one; it cannot be re-sealed"
    )]
    ForeignRow { enrollment: String, key_id: String },
    #[error("the key record changed while the rotation began (another rotation?); run it again")]
    Raced,
    #[error(
        "new secrets kept arriving faster than they could be re-sealed; run the command again"
    )]
    NoQuietMoment,
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("event store: {0}")]
    Store(#[from] StoreError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// What a finished rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    pub from: String,
    pub to: String,
    /// Rows this run sealed a second time.
    pub resealed: u64,
    /// Rows the database held at the switch.
    pub secrets: u64,
}

/// A rotation under way, holding both keys.
pub struct Rotation {
    db: Database,
    from: MasterKey,
    to: MasterKey,
    vault: Vault,
    metadata: EventMetadata,
}

/// Whether the switch-over happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// Every row is sealed under the new key only; this many rows.
    Done(u64),
    /// Rows without a second sealing arrived; re-seal again.
    RowsLeft,
}

/// The start of a rotation, or what is left of one.
pub enum Begun {
    Rotation(Box<Rotation>),
    /// The database is sealed under the new key already: a rerun after the switch (the event
    /// `MasterKeyRotated` is appended now if the earlier run stopped before it).
    Finished(Rotated),
}

impl Rotation {
    /// Begins (or resumes) the rotation of `db` to `to`. `keys` is what the process was
    /// configured with, already checked against the database ([`crate::vault::key_ring`]).
    pub async fn begin(
        db: &Database,
        keys: &KeyRing,
        to: MasterKey,
        metadata: EventMetadata,
        now: DateTime<Utc>,
    ) -> Result<Begun, RotationError> {
        let state = key_state(db).await?;
        let current = state.fingerprint.ok_or(RotationError::NothingSealed)?;
        if current == to.key_id() {
            return finish_recorded(db, &current, metadata, now).await;
        }
        let from = keys
            .get(&current)
            .cloned()
            .ok_or_else(|| VaultError::KeyMismatch {
                expected: current.clone(),
                actual: keys.configured().key_id(),
            })?;
        match state.rotating_to {
            Some(under_way) if under_way != to.key_id() => {
                return Err(RotationError::OtherRotation {
                    under_way,
                    given: to.key_id(),
                })
            }
            Some(_) => {}
            None => {
                let (nonce, sealed) = to.seal_key(&from)?;
                let pool = db.write().await;
                let started = sqlx::query(
                    "UPDATE master_key SET rotating_to = $1, rotation_started_at = $2, \
                     previous_key_nonce = $3, previous_key_sealed = $4 \
                     WHERE id = 1 AND fingerprint = $5 AND rotating_to IS NULL",
                )
                .bind(to.key_id())
                .bind(now.timestamp_micros())
                .bind(nonce)
                .bind(sealed)
                .bind(&current)
                .execute(&*pool)
                .await?
                .rows_affected();
                if started != 1 {
                    return Err(RotationError::Raced);
                }
            }
        }
        let started = MasterKeyEvent::MasterKeyRotationStarted {
            from: from.key_id(),
            to: to.key_id(),
            at: now,
        };
        let (version, last) = last_event(db).await?;
        let recorded = matches!(
            &last,
            Some(MasterKeyEvent::MasterKeyRotationStarted { from: f, to: t, .. })
                if *f == from.key_id() && *t == to.key_id()
        );
        if !recorded {
            append(db, &started, version, metadata.clone(), now).await?;
        }
        Ok(Begun::Rotation(Box::new(Rotation {
            db: db.clone(),
            vault: Vault::with_keys(db, &KeyRing::rotating(from.clone(), to.clone())),
            from,
            to,
            metadata,
        })))
    }

    pub fn from_fingerprint(&self) -> String {
        self.from.key_id()
    }

    pub fn to_fingerprint(&self) -> String {
        self.to.key_id()
    }

    /// Seals up to `limit` rows that lack it a second time, under the new key, in one
    /// transaction. Returns how many rows it sealed; 0 when none is left.
    pub async fn reseal_batch(&self, limit: usize) -> Result<u64, RotationError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT enrollment_id, key_id FROM vault_secrets WHERE next_key_id IS NULL \
             ORDER BY enrollment_id LIMIT $1",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.db.pool)
        .await?;
        let mut resealed = Vec::with_capacity(rows.len());
        for (enrollment, key_id) in rows {
            if key_id != self.from.key_id() {
                return Err(RotationError::ForeignRow { enrollment, key_id });
            }
            let Ok(enrollment_id) = enrollment.parse::<EnrollmentId>() else {
                return Err(RotationError::ForeignRow { enrollment, key_id });
            };
            // Deleted since the list was read: nothing to re-seal.
            let Some(sealed) = self.vault.fetch(enrollment_id).await? else {
                continue;
            };
            resealed.push((enrollment, self.sealed_again(&sealed)?));
        }
        if resealed.is_empty() {
            return Ok(0);
        }
        let pool = self.db.write().await;
        let mut tx = pool.begin().await?;
        let mut count = 0;
        for (enrollment, (key_id, nonce, sealed)) in resealed {
            count += sqlx::query(
                "UPDATE vault_secrets SET next_key_id = $1, next_nonce = $2, next_sealed = $3 \
                 WHERE enrollment_id = $4 AND next_key_id IS NULL",
            )
            .bind(key_id)
            .bind(nonce)
            .bind(sealed)
            .bind(enrollment)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(count)
    }

    fn sealed_again(
        &self,
        sealed: &SealedSecret,
    ) -> Result<(String, Vec<u8>, Vec<u8>), VaultError> {
        self.vault.reseal(sealed, &self.to)
    }

    /// The switch-over (see the module comment for why it is safe against concurrent inserts).
    pub async fn try_switch(&self, now: DateTime<Utc>) -> Result<Switch, RotationError> {
        let pool = self.db.write().await;
        let mut tx = pool.begin().await?;
        // First, so that on PostgreSQL an insert holding the record row share-locked commits
        // before the count below, and one arriving later waits for this transaction.
        let switched = sqlx::query(
            "UPDATE master_key SET fingerprint = $1, recorded_at = $2, rotating_to = NULL, \
             rotation_started_at = NULL, previous_key_nonce = NULL, previous_key_sealed = NULL \
             WHERE id = 1 AND fingerprint = $3 AND rotating_to = $4",
        )
        .bind(self.to.key_id())
        .bind(now.timestamp_micros())
        .bind(self.from.key_id())
        .bind(self.to.key_id())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if switched != 1 {
            tx.rollback().await?;
            return Err(RotationError::Raced);
        }
        let left: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM vault_secrets WHERE next_key_id IS NULL OR next_key_id <> $1",
        )
        .bind(self.to.key_id())
        .fetch_one(&mut *tx)
        .await?;
        if left > 0 {
            tx.rollback().await?;
            return Ok(Switch::RowsLeft);
        }
        let moved = sqlx::query(
            "UPDATE vault_secrets SET key_id = next_key_id, nonce = next_nonce, \
             sealed = next_sealed, next_key_id = NULL, next_nonce = NULL, next_sealed = NULL",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(Switch::Done(moved))
    }

    /// Re-seals in batches of `batch` and switches over once a pass leaves nothing, then records
    /// `MasterKeyRotated`. `progress` hears the running count of rows re-sealed.
    pub async fn run(
        self,
        batch: usize,
        now: impl Fn() -> DateTime<Utc>,
        mut progress: impl FnMut(u64),
    ) -> Result<Rotated, RotationError> {
        let mut resealed = 0;
        // Each pass only meets rows sealed since the previous one; under any plausible load
        // the passes shrink to nothing fast.
        for _ in 0..1000 {
            loop {
                let n = self.reseal_batch(batch.max(1)).await?;
                if n == 0 {
                    break;
                }
                resealed += n;
                progress(resealed);
            }
            if let Switch::Done(secrets) = self.try_switch(now()).await? {
                let at = now();
                let rotated = MasterKeyEvent::MasterKeyRotated {
                    from: self.from.key_id(),
                    to: self.to.key_id(),
                    secrets,
                    at,
                };
                let (version, _) = last_event(&self.db).await?;
                append(&self.db, &rotated, version, self.metadata.clone(), at).await?;
                return Ok(Rotated {
                    from: self.from.key_id(),
                    to: self.to.key_id(),
                    resealed,
                    secrets,
                });
            }
        }
        Err(RotationError::NoQuietMoment)
    }
}

/// The database is on the new key already: the rotation finished, maybe without its event.
async fn finish_recorded(
    db: &Database,
    current: &str,
    metadata: EventMetadata,
    now: DateTime<Utc>,
) -> Result<Begun, RotationError> {
    let (version, last) = last_event(db).await?;
    let Some(MasterKeyEvent::MasterKeyRotationStarted { from, to, .. }) = last else {
        return Err(RotationError::SameKey(current.to_owned()));
    };
    if to != current {
        return Err(RotationError::SameKey(current.to_owned()));
    }
    let secrets: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM vault_secrets")
        .fetch_one(&db.pool)
        .await?;
    let secrets = u64::try_from(secrets).unwrap_or_default();
    let rotated = MasterKeyEvent::MasterKeyRotated {
        from: from.clone(),
        to: to.clone(),
        secrets,
        at: now,
    };
    append(db, &rotated, version, metadata, now).await?;
    Ok(Begun::Finished(Rotated {
        from,
        to,
        resealed: 0,
        secrets,
    }))
}

/// The `masterkey` stream's version (0: no stream) and its last event, when this version knows
/// it.
async fn last_event(db: &Database) -> Result<(u64, Option<MasterKeyEvent>), RotationError> {
    let version = db.events.stream_version(MasterKeyEvent::STREAM).await?;
    if version == 0 {
        return Ok((0, None));
    }
    let events = db
        .events
        .read_stream(MasterKeyEvent::STREAM, version, 1)
        .await?;
    Ok((
        version,
        events
            .into_iter()
            .next()
            .and_then(|e| MasterKeyEvent::from_stored(&e.event_type, e.payload).ok()),
    ))
}

async fn append(
    db: &Database,
    event: &MasterKeyEvent,
    version: u64,
    metadata: EventMetadata,
    now: DateTime<Utc>,
) -> Result<(), RotationError> {
    let expected = match version {
        0 => ExpectedVersion::NoStream,
        v => ExpectedVersion::Exact(v),
    };
    db.events
        .append(
            MasterKeyEvent::STREAM,
            expected,
            vec![NewEvent {
                event_id: Uuid::now_v7(),
                event_type: event.event_type().to_owned(),
                schema_version: 1,
                payload: event.to_payload(),
                metadata,
                recorded_at: now,
            }],
        )
        .await?;
    Ok(())
}
