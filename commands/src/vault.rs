//! The secret vault: TOTP secrets sealed with XChaCha20-Poly1305 under the master key.
//!
//! A secret leaves the vault only to check a code or to draw the one-time QR code. Each sealed
//! secret is bound to its enrollment and account as associated data, so a row copied onto another
//! enrollment does not open. Resets and disables destroy the row; the log keeps only the
//! enrollment id.
//!
//! Each row names the fingerprint (`key_id`) of the key it is sealed under, and the database
//! records the fingerprint of its current key in `master_key`. During a master key rotation
//! (`crate::rotation`) the `master_key` row also names the key it goes to (`rotating_to`) and
//! holds the old key sealed under the new one, and a row may carry a second sealing of the same
//! secret under the new key (`next_*`). A vault opens a row with whichever of its sealings it
//! holds the key for, and seals new rows under the database's current key, plus the new key when
//! it holds it. How the rotation stays correct while other instances write is in
//! `crate::rotation`.

use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use spse_totp_domain::totp::{TotpSecret, SECRET_BYTES};
use spse_totp_domain::EnrollmentId;

use crate::tokens::random_bytes;
use spse_totp_store::{Database, Engine};

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("the master key must be 32 bytes, written as 64 hex digits or 44 base64 characters")]
    BadMasterKey,
    #[error("master key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error("the sealed secret of enrollment {0} does not open under this master key")]
    Unseal(EnrollmentId),
    #[error("sealing failed")]
    Seal,
    #[error(
        "the master key does not match this database: its secrets are sealed under the key with \
         fingerprint {expected}, and SPSE_TOTP_MASTER_KEY / SPSE_TOTP_MASTER_KEY_FILE gives the key \
         with fingerprint {actual}; set the key this database's secrets are sealed under (after \
         `spse-totp masterkey rotate`, the new one)"
    )]
    KeyMismatch { expected: String, actual: String },
    #[error(
        "no master key: this database holds secrets sealed under the key with fingerprint \
         {expected}, but SPSE_TOTP_MASTER_KEY is not set and SPSE_TOTP_MASTER_KEY_FILE ({path}) \
         does not exist; set the key this database was created with (a new key would open none \
         of its secrets, so none is created)"
    )]
    KeyMissing { expected: String, path: String },
    #[error(
        "the old master key stored for the rotation to the key with fingerprint {0} does not open \
         under that key: the master_key row is damaged"
    )]
    RotationRecord(String),
    #[error("vault: {0}")]
    Database(#[from] sqlx::Error),
}

impl VaultError {
    /// A master key that is not this database's: the operator's to fix before anything runs.
    pub fn is_wrong_key(&self) -> bool {
        matches!(
            self,
            VaultError::KeyMismatch { .. } | VaultError::KeyMissing { .. }
        )
    }
}

/// The fingerprint of the master key this database's secrets are sealed under: the one recorded
/// with its first sealed secret, or, for a database from before that record, the one its sealed
/// secrets name. `None` while nothing was ever sealed.
pub async fn recorded_key_id(db: &Database) -> Result<Option<String>, VaultError> {
    let recorded: Option<String> =
        sqlx::query_scalar("SELECT fingerprint FROM master_key WHERE id = 1")
            .fetch_optional(&db.pool)
            .await?;
    if recorded.is_some() {
        return Ok(recorded);
    }
    Ok(
        sqlx::query_scalar("SELECT key_id FROM vault_secrets ORDER BY created_at LIMIT 1")
            .fetch_optional(&db.pool)
            .await?,
    )
}

/// The database's key record: the fingerprint of the key its secrets are sealed under (`None`
/// while nothing was ever sealed) and, during a rotation, the fingerprint of the key it goes to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyState {
    pub fingerprint: Option<String>,
    pub rotating_to: Option<String>,
}

pub async fn key_state(db: &Database) -> Result<KeyState, VaultError> {
    let row: Option<(String, Option<String>)> =
        sqlx::query_as("SELECT fingerprint, rotating_to FROM master_key WHERE id = 1")
            .fetch_optional(&db.pool)
            .await?;
    Ok(match row {
        Some((fingerprint, rotating_to)) => KeyState {
            fingerprint: Some(fingerprint),
            rotating_to,
        },
        None => KeyState {
            fingerprint: recorded_key_id(db).await?,
            rotating_to: None,
        },
    })
}

/// Refuses `key` when the database's secrets are sealed under another.
pub async fn check_key(db: &Database, key: &MasterKey) -> Result<(), VaultError> {
    key_ring(db, key).await.map(|_| ())
}

/// The keys a process configured with `key` works with on `db`: `key` itself when the database's
/// secrets are sealed under it (or nothing is sealed yet); during a rotation to `key`, also the old
/// key, opened from the rotation record, so the process seals what instances with the old key can
/// still open. Any other key is refused.
pub async fn key_ring(db: &Database, key: &MasterKey) -> Result<KeyRing, VaultError> {
    let state = key_state(db).await?;
    let Some(expected) = state.fingerprint else {
        return Ok(KeyRing::single(key.clone()));
    };
    if expected == key.key_id() {
        return Ok(KeyRing::single(key.clone()));
    }
    if state.rotating_to.as_deref() != Some(key.key_id().as_str()) {
        return Err(VaultError::KeyMismatch {
            expected,
            actual: key.key_id(),
        });
    }
    let (nonce, sealed): (Option<Vec<u8>>, Option<Vec<u8>>) = sqlx::query_as(
        "SELECT previous_key_nonce, previous_key_sealed FROM master_key WHERE id = 1",
    )
    .fetch_one(&db.pool)
    .await?;
    let damaged = || VaultError::RotationRecord(key.key_id());
    let (Some(nonce), Some(sealed)) = (nonce, sealed) else {
        return Err(damaged());
    };
    let previous = key
        .open_key(&expected, &nonce, &sealed)
        .ok_or_else(damaged)?;
    Ok(KeyRing {
        configured: key.clone(),
        previous: Some(previous),
    })
}

/// The master keys a process holds: the configured one and, while a rotation to it is under way,
/// the key being rotated from.
#[derive(Clone, Debug)]
pub struct KeyRing {
    configured: MasterKey,
    previous: Option<MasterKey>,
}

impl KeyRing {
    pub fn single(key: MasterKey) -> Self {
        KeyRing {
            configured: key,
            previous: None,
        }
    }

    /// Both keys, as the rotating command holds them.
    pub fn rotating(from: MasterKey, to: MasterKey) -> Self {
        KeyRing {
            configured: to,
            previous: Some(from),
        }
    }

    pub fn configured(&self) -> &MasterKey {
        &self.configured
    }

    /// The key the database's secrets were sealed under when this process started. Keys for
    /// other purposes (reset links, captchas, operator setup links) derive from it, so an
    /// instance started with the new key during a rotation derives what the others derive.
    pub fn derivation_key(&self) -> &MasterKey {
        self.previous.as_ref().unwrap_or(&self.configured)
    }

    pub fn get(&self, key_id: &str) -> Option<&MasterKey> {
        std::iter::once(&self.configured)
            .chain(&self.previous)
            .find(|k| k.key_id() == key_id)
    }

    fn keys(&self) -> impl Iterator<Item = &MasterKey> {
        std::iter::once(&self.configured).chain(&self.previous)
    }
}

impl From<MasterKey> for KeyRing {
    fn from(key: MasterKey) -> Self {
        KeyRing::single(key)
    }
}

/// The 256-bit key every secret is sealed under. Never printed.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.key_id())
    }
}

impl MasterKey {
    pub fn parse(text: &str) -> Result<Self, VaultError> {
        let text = text.trim();
        let bytes = if text.len() == 64 {
            hex::decode(text).map_err(|_| VaultError::BadMasterKey)?
        } else {
            STANDARD
                .decode(text)
                .map_err(|_| VaultError::BadMasterKey)?
        };
        let key: [u8; 32] = bytes.try_into().map_err(|_| VaultError::BadMasterKey)?;
        Ok(MasterKey(key))
    }

    pub fn generate() -> Self {
        MasterKey(random_bytes::<32>())
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// A key for another purpose, derived so that it reveals nothing of this one nor of keys for
    /// other labels: HMAC-SHA256 keyed by the master key over a fixed label (HKDF's expand step
    /// with a uniformly random input key, which needs no extract step).
    pub fn derive(&self, label: &str) -> [u8; 32] {
        use crate::tokens::Mac;
        let mut mac = crate::tokens::hmac_sha256(&self.0);
        Mac::update(&mut mac, label.as_bytes());
        Mac::finalize(mac).into_bytes().into()
    }

    /// Names the key without revealing it, so a row sealed under another key is recognised.
    pub fn key_id(&self) -> String {
        hex::encode(&Sha256::digest(self.0)[..8])
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }

    fn key_aad(from: &str, to: &str) -> Vec<u8> {
        format!("spse-totp/v1/master-key/{from}/{to}").into_bytes()
    }

    /// `other` sealed under this key, bound to both fingerprints: the rotation record.
    pub(crate) fn seal_key(&self, other: &MasterKey) -> Result<(Vec<u8>, Vec<u8>), VaultError> {
        let nonce = random_bytes::<24>();
        let aad = Self::key_aad(&other.key_id(), &self.key_id());
        let sealed = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &other.0,
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::Seal)?;
        Ok((nonce.to_vec(), sealed))
    }

    /// The key with fingerprint `key_id` that [`MasterKey::seal_key`] sealed under this one.
    fn open_key(&self, key_id: &str, nonce: &[u8], sealed: &[u8]) -> Option<MasterKey> {
        if nonce.len() != 24 {
            return None;
        }
        let aad = Self::key_aad(key_id, &self.key_id());
        let plain = self
            .cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .ok()?;
        let key = MasterKey(plain.try_into().ok()?);
        (key.key_id() == key_id).then_some(key)
    }

    /// Reads the key file, or creates it (mode 0600) when absent. Returns whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), VaultError> {
        let file_error = |source| VaultError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((MasterKey::parse(&text)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = MasterKey::generate();
                if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(folder).map_err(file_error)?;
                }
                write_private(path, &key.to_base64()).map_err(file_error)?;
                Ok((key, true))
            }
            Err(e) => Err(file_error(e)),
        }
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

/// One sealing of a secret: the fingerprint of the key it is sealed under, nonce and ciphertext.
#[derive(Clone)]
struct Sealing {
    key_id: String,
    nonce: Vec<u8>,
    sealed: Vec<u8>,
}

/// A secret as the vault stores it: sealed, bound to its enrollment and account. Holding one
/// reveals nothing without the master key; [`Vault::unseal`] opens it. During a rotation it may
/// be sealed twice, under the old key and the new.
#[derive(Clone)]
pub struct SealedSecret {
    enrollment_id: EnrollmentId,
    stream: String,
    sealings: Vec<Sealing>,
}

impl SealedSecret {
    pub fn enrollment_id(&self) -> EnrollmentId {
        self.enrollment_id
    }
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedSecret")
            .field("enrollment_id", &self.enrollment_id)
            .finish_non_exhaustive()
    }
}

/// A key the vault opens and seals with, named by its fingerprint.
#[derive(Clone)]
struct Opener {
    key_id: String,
    cipher: XChaCha20Poly1305,
}

impl Opener {
    fn new(key: &MasterKey) -> Self {
        Opener {
            key_id: key.key_id(),
            cipher: key.cipher(),
        }
    }
}

#[derive(Clone)]
pub struct Vault {
    db: Database,
    /// The configured key first; during a rotation to it, the old key too.
    keys: std::sync::Arc<Vec<Opener>>,
    /// Whether the database's `master_key` row is known to exist, so sealing need not write it
    /// again.
    fingerprint_recorded: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The key the database moved to when a rotation left this vault's keys behind: from then
    /// on it opens nothing, not even a sealed secret a caller kept in memory.
    moved_to: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl Vault {
    pub fn new(db: &Database, key: &MasterKey) -> Self {
        Vault::with_keys(db, &KeyRing::single(key.clone()))
    }

    pub fn with_keys(db: &Database, keys: &KeyRing) -> Self {
        Vault {
            db: db.clone(),
            keys: std::sync::Arc::new(keys.keys().map(Opener::new).collect()),
            fingerprint_recorded: Default::default(),
            moved_to: Default::default(),
        }
    }

    /// Reads the database's key record: whether this vault still holds its key. When a rotation
    /// moved the database to a key it does not hold, it stops opening anything. The server runs
    /// this every few seconds and on each readiness check.
    pub async fn check_record(&self) -> Result<bool, VaultError> {
        let state = key_state(&self.db).await?;
        let moved = state
            .fingerprint
            .filter(|current| self.opener(current).is_none());
        let current = moved.is_none();
        if let Some(to) = moved {
            let mut moved_to = self.moved_to.lock().unwrap_or_else(|e| e.into_inner());
            if moved_to.is_none() {
                tracing::error!(
                    database_key = %to,
                    configured_key = %self.configured_id(),
                    "the master key was rotated away from this instance's key: it opens no secret \
                     any more; restart it with the new key (SPSE_TOTP_MASTER_KEY / \
                     SPSE_TOTP_MASTER_KEY_FILE)"
                );
            }
            *moved_to = Some(to);
        }
        Ok(current)
    }

    fn moved_to(&self) -> Option<String> {
        self.moved_to
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn configured_id(&self) -> String {
        self.keys
            .first()
            .map(|k| k.key_id.clone())
            .unwrap_or_default()
    }

    fn opener(&self, key_id: &str) -> Option<&Opener> {
        self.keys.iter().find(|k| k.key_id == key_id)
    }

    /// Records this key's fingerprint with the first sealed secret. Whether the key may seal is
    /// decided by each insert against the record (see [`Vault::create`]).
    async fn record_fingerprint(&self, now: DateTime<Utc>) -> Result<(), VaultError> {
        use std::sync::atomic::Ordering;
        if self.fingerprint_recorded.load(Ordering::Relaxed) {
            return Ok(());
        }
        {
            let pool = self.db.write().await;
            sqlx::query(
                "INSERT INTO master_key (id, fingerprint, recorded_at) VALUES (1, $1, $2) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(self.configured_id())
            .bind(now.timestamp_micros())
            .execute(&*pool)
            .await?;
        }
        self.fingerprint_recorded.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn associated_data(enrollment_id: EnrollmentId, stream: &str) -> Vec<u8> {
        format!("spse-totp/v1/{enrollment_id}/{stream}").into_bytes()
    }

    fn seal(
        opener: &Opener,
        enrollment_id: EnrollmentId,
        stream: &str,
        secret: &TotpSecret,
    ) -> Result<Sealing, VaultError> {
        let nonce = random_bytes::<24>();
        let aad = Self::associated_data(enrollment_id, stream);
        let sealed = opener
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::Seal)?;
        Ok(Sealing {
            key_id: opener.key_id.clone(),
            nonce: nonce.to_vec(),
            sealed,
        })
    }

    /// Makes a fresh 160-bit secret, seals and stores it. The caller gets it back to draw the QR.
    ///
    /// The secret is sealed under the database's current key, and also under the key a rotation
    /// goes to when this vault holds it. The insert happens only while the record still names
    /// that current key (one statement that reads the record; on PostgreSQL it share-locks the
    /// record row, which the rotation's switch-over updates first): a row sealed under a key the
    /// database just left is never written. When the record moved on, the state is read again.
    pub async fn create(
        &self,
        enrollment_id: EnrollmentId,
        stream: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<TotpSecret, VaultError> {
        self.record_fingerprint(now).await?;
        let secret = TotpSecret::from_bytes(random_bytes::<SECRET_BYTES>().to_vec());
        let lock = match self.db.engine {
            Engine::Postgres => " FOR SHARE",
            Engine::Sqlite => "",
        };
        let sql = format!(
            "INSERT INTO vault_secrets (enrollment_id, stream, key_id, nonce, sealed, created_at, \
             expires_at, next_key_id, next_nonce, next_sealed) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 FROM master_key \
             WHERE id = 1 AND fingerprint = $11{lock}"
        );
        // The record changes at most twice around one insert (a rotation starts, then switches
        // over); more means something else is wrong.
        let mut expected = String::new();
        for _ in 0..4 {
            let state = key_state(&self.db).await?;
            expected = state.fingerprint.unwrap_or_else(|| self.configured_id());
            let Some(current) = self.opener(&expected) else {
                break;
            };
            let first = Self::seal(current, enrollment_id, stream, &secret)?;
            let next = match state.rotating_to.as_deref().and_then(|id| self.opener(id)) {
                Some(next) => Some(Self::seal(next, enrollment_id, stream, &secret)?),
                None => None,
            };
            let pool = self.db.write().await;
            let inserted = sqlx::query(&sql)
                .bind(enrollment_id.to_string())
                .bind(stream)
                .bind(&first.key_id)
                .bind(first.nonce)
                .bind(first.sealed)
                .bind(now.timestamp_micros())
                .bind(expires_at.timestamp_micros())
                .bind(next.as_ref().map(|n| n.key_id.clone()))
                .bind(next.as_ref().map(|n| n.nonce.clone()))
                .bind(next.map(|n| n.sealed))
                .bind(&expected)
                .execute(&*pool)
                .await?
                .rows_affected();
            if inserted == 1 {
                return Ok(secret);
            }
        }
        Err(VaultError::KeyMismatch {
            expected,
            actual: self.configured_id(),
        })
    }

    /// The sealed secret of an enrollment as stored, still sealed: what a caller may keep in
    /// memory to open again later without reading the table.
    pub async fn fetch(
        &self,
        enrollment_id: EnrollmentId,
    ) -> Result<Option<SealedSecret>, VaultError> {
        type Row = (
            String,
            String,
            Vec<u8>,
            Vec<u8>,
            Option<String>,
            Option<Vec<u8>>,
            Option<Vec<u8>>,
        );
        let row: Option<Row> = sqlx::query_as(
            "SELECT stream, key_id, nonce, sealed, next_key_id, next_nonce, next_sealed \
             FROM vault_secrets WHERE enrollment_id = $1",
        )
        .bind(enrollment_id.to_string())
        .fetch_optional(&self.db.pool)
        .await?;
        Ok(row.map(
            |(stream, key_id, nonce, sealed, next_key_id, next_nonce, next_sealed)| {
                let mut sealings = vec![Sealing {
                    key_id,
                    nonce,
                    sealed,
                }];
                if let (Some(key_id), Some(nonce), Some(sealed)) =
                    (next_key_id, next_nonce, next_sealed)
                {
                    sealings.push(Sealing {
                        key_id,
                        nonce,
                        sealed,
                    });
                }
                SealedSecret {
                    enrollment_id,
                    stream,
                    sealings,
                }
            },
        ))
    }

    /// Opens a sealed secret with whichever of its sealings this vault holds the key for. One
    /// sealed only under keys it does not hold (after a rotation away from its key) is refused
    /// naming the key it needs.
    pub fn unseal(&self, sealed: &SealedSecret) -> Result<TotpSecret, VaultError> {
        let enrollment_id = sealed.enrollment_id;
        if let Some(expected) = self.moved_to() {
            return Err(VaultError::KeyMismatch {
                expected,
                actual: self.configured_id(),
            });
        }
        let Some((opener, sealing)) = sealed
            .sealings
            .iter()
            .find_map(|s| self.opener(&s.key_id).map(|o| (o, s)))
        else {
            return Err(VaultError::KeyMismatch {
                expected: sealed
                    .sealings
                    .last()
                    .map(|s| s.key_id.clone())
                    .unwrap_or_default(),
                actual: self.configured_id(),
            });
        };
        Self::open(opener, enrollment_id, &sealed.stream, sealing)
    }

    fn open(
        opener: &Opener,
        enrollment_id: EnrollmentId,
        stream: &str,
        sealing: &Sealing,
    ) -> Result<TotpSecret, VaultError> {
        if sealing.nonce.len() != 24 {
            return Err(VaultError::Unseal(enrollment_id));
        }
        let aad = Self::associated_data(enrollment_id, stream);
        let plain = opener
            .cipher
            .decrypt(
                XNonce::from_slice(&sealing.nonce),
                Payload {
                    msg: &sealing.sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::Unseal(enrollment_id))?;
        Ok(TotpSecret::from_bytes(plain))
    }

    /// Seals the secret of `sealed` again under `to`: the rotation's second sealing.
    pub(crate) fn reseal(
        &self,
        sealed: &SealedSecret,
        to: &MasterKey,
    ) -> Result<(String, Vec<u8>, Vec<u8>), VaultError> {
        let secret = self.unseal(sealed)?;
        let sealing = Self::seal(
            &Opener::new(to),
            sealed.enrollment_id,
            &sealed.stream,
            &secret,
        )?;
        Ok((sealing.key_id, sealing.nonce, sealing.sealed))
    }

    /// The account stream an enrollment belongs to: how a scanned QR finds its account.
    pub async fn stream_of(
        &self,
        enrollment_id: EnrollmentId,
    ) -> Result<Option<String>, VaultError> {
        Ok(
            sqlx::query_scalar("SELECT stream FROM vault_secrets WHERE enrollment_id = $1")
                .bind(enrollment_id.to_string())
                .fetch_optional(&self.db.pool)
                .await?,
        )
    }

    /// Keeps an activated secret past its enrollment's expiry.
    pub async fn keep(&self, enrollment_id: EnrollmentId) -> Result<(), VaultError> {
        let pool = self.db.write().await;
        sqlx::query("UPDATE vault_secrets SET expires_at = $1 WHERE enrollment_id = $2")
            .bind(i64::MAX)
            .bind(enrollment_id.to_string())
            .execute(&*pool)
            .await?;
        Ok(())
    }

    pub async fn destroy(&self, enrollment_id: EnrollmentId) -> Result<(), VaultError> {
        let pool = self.db.write().await;
        sqlx::query("DELETE FROM vault_secrets WHERE enrollment_id = $1")
            .bind(enrollment_id.to_string())
            .execute(&*pool)
            .await?;
        Ok(())
    }
}
