//! The secret vault: TOTP secrets sealed with XChaCha20-Poly1305 under the master key.
//!
//! A secret leaves the vault only to check a code or to draw the one-time QR code. Each sealed
//! secret is bound to its enrollment and account as associated data, so a row copied onto another
//! enrollment does not open. Resets and disables destroy the row; the log keeps only the
//! enrollment id.

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
use spse_totp_store::Database;

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
         with fingerprint {actual}; set the key this database was created with"
    )]
    KeyMismatch { expected: String, actual: String },
    #[error(
        "no master key: this database holds secrets sealed under the key with fingerprint \
         {expected}, but SPSE_TOTP_MASTER_KEY is not set and SPSE_TOTP_MASTER_KEY_FILE ({path}) \
         does not exist; set the key this database was created with (a new key would open none \
         of its secrets, so none is created)"
    )]
    KeyMissing { expected: String, path: String },
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

/// Refuses `key` when the database's secrets are sealed under another.
pub async fn check_key(db: &Database, key: &MasterKey) -> Result<(), VaultError> {
    match recorded_key_id(db).await? {
        Some(expected) if expected != key.key_id() => Err(VaultError::KeyMismatch {
            expected,
            actual: key.key_id(),
        }),
        _ => Ok(()),
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

/// A secret as the vault stores it: sealed, bound to its enrollment and account. Holding one
/// reveals nothing without the master key; [`Vault::unseal`] opens it.
#[derive(Clone)]
pub struct SealedSecret {
    enrollment_id: EnrollmentId,
    stream: String,
    nonce: Vec<u8>,
    sealed: Vec<u8>,
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

#[derive(Clone)]
pub struct Vault {
    db: Database,
    cipher: XChaCha20Poly1305,
    key_id: String,
    /// Whether this database's fingerprint is known to be this key's, so sealing need not
    /// record it again.
    fingerprint_recorded: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Vault {
    pub fn new(db: &Database, key: &MasterKey) -> Self {
        Vault {
            db: db.clone(),
            cipher: XChaCha20Poly1305::new((&key.0).into()),
            key_id: key.key_id(),
            fingerprint_recorded: Default::default(),
        }
    }

    /// Records this key's fingerprint with the first sealed secret, and refuses to seal under a
    /// key another instance recorded first: its secrets would open nowhere else.
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
            .bind(&self.key_id)
            .bind(now.timestamp_micros())
            .execute(&*pool)
            .await?;
        }
        let recorded: String =
            sqlx::query_scalar("SELECT fingerprint FROM master_key WHERE id = 1")
                .fetch_one(&self.db.pool)
                .await?;
        if recorded != self.key_id {
            return Err(VaultError::KeyMismatch {
                expected: recorded,
                actual: self.key_id.clone(),
            });
        }
        self.fingerprint_recorded.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn associated_data(enrollment_id: EnrollmentId, stream: &str) -> Vec<u8> {
        format!("spse-totp/v1/{enrollment_id}/{stream}").into_bytes()
    }

    /// Makes a fresh 160-bit secret, seals and stores it. The caller gets it back to draw the QR.
    pub async fn create(
        &self,
        enrollment_id: EnrollmentId,
        stream: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<TotpSecret, VaultError> {
        self.record_fingerprint(now).await?;
        let secret = TotpSecret::from_bytes(random_bytes::<SECRET_BYTES>().to_vec());
        let nonce = random_bytes::<24>();
        let aad = Self::associated_data(enrollment_id, stream);
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::Seal)?;
        let pool = self.db.write().await;
        sqlx::query(
            "INSERT INTO vault_secrets (enrollment_id, stream, key_id, nonce, sealed, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(enrollment_id.to_string())
        .bind(stream)
        .bind(&self.key_id)
        .bind(nonce.to_vec())
        .bind(sealed)
        .bind(now.timestamp_micros())
        .bind(expires_at.timestamp_micros())
        .execute(&*pool)
        .await?;
        Ok(secret)
    }

    /// The sealed secret of an enrollment as stored, still sealed: what a caller may keep in
    /// memory to open again later without reading the table.
    pub async fn fetch(
        &self,
        enrollment_id: EnrollmentId,
    ) -> Result<Option<SealedSecret>, VaultError> {
        let row: Option<(String, Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT stream, nonce, sealed FROM vault_secrets WHERE enrollment_id = $1",
        )
        .bind(enrollment_id.to_string())
        .fetch_optional(&self.db.pool)
        .await?;
        Ok(row.map(|(stream, nonce, sealed)| SealedSecret {
            enrollment_id,
            stream,
            nonce,
            sealed,
        }))
    }

    /// Opens a sealed secret under this vault's master key.
    pub fn unseal(&self, sealed: &SealedSecret) -> Result<TotpSecret, VaultError> {
        let enrollment_id = sealed.enrollment_id;
        if sealed.nonce.len() != 24 {
            return Err(VaultError::Unseal(enrollment_id));
        }
        let aad = Self::associated_data(enrollment_id, &sealed.stream);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::Unseal(enrollment_id))?;
        Ok(TotpSecret::from_bytes(plain))
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
