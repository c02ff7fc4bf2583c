//! Console operators (issue 15): creating them, the setup link (password, then TOTP), sign-in
//! and sign-out, disabling, resetting TOTP; and the console's sessions.
//!
//! The password's Argon2id hash sits in `operator_credentials` and the TOTP secret in the vault,
//! sealed and bound to the operator's stream exactly as a user's; the stream records only that
//! they were set. The setup link's token is derived from the setup id with a key derived from
//! the master key, so it is never stored and a leaked database holds no working link.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::{DateTime, Duration, Utc};
use spse_totp_domain::account::OpenedSecret;
use spse_totp_domain::operator::{
    self, decide, Operator, OperatorCommand, OperatorContext, OperatorError, OperatorEvent,
    OperatorRole, Username,
};
use spse_totp_domain::totp::{TotpSecret, ALGORITHM, DIGITS, PERIOD_SECONDS};
use spse_totp_domain::{ApprovalNumber, EnrollmentId, Policy, TotpCode};
use spse_totp_store::{Database, EventMetadata, EventStore, ExpectedVersion, NewEvent, StoreError};
use uuid::Uuid;

use crate::tokens::{hmac_sha256, random_token, sha256_hex, Mac};
use crate::vault::{KeyRing, Vault, VaultError};
use crate::Clock;

/// Decisions retried after a version conflict before giving up.
const ATTEMPTS: usize = 5;
/// The issuer an authenticator app shows beside the operator's code.
pub const CONSOLE_ISSUER: &str = "SPSE Console";

#[derive(Debug, thiserror::Error)]
pub enum OperatorCommandError {
    /// The domain refused; anything the refusal recorded is appended, up to `position`.
    #[error("{error}")]
    Rejected {
        error: OperatorError,
        position: Option<u64>,
    },
    #[error("the operator is busy; try again")]
    Contention,
    #[error("the vault has no secret for enrollment {0}")]
    SecretMissing(EnrollmentId),
    #[error("stored event in {stream} does not decode: {reason}")]
    Decode { stream: String, reason: String },
    #[error("password hashing failed")]
    Hashing,
    #[error("cannot build the otpauth URI: {0}")]
    Uri(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("operators: {0}")]
    Database(#[from] sqlx::Error),
}

impl OperatorCommandError {
    pub fn rejected(&self) -> Option<&OperatorError> {
        match self {
            OperatorCommandError::Rejected { error, .. } => Some(error),
            _ => None,
        }
    }
}

type Outcome<T> = Result<T, OperatorCommandError>;

/// An operator's device token starts so: the device API looks it up among operators' devices,
/// every other token among users' (`spse_dt_`). The prefix only routes; the SHA-256 lookup is
/// what authenticates.
pub const OPERATOR_DEVICE_TOKEN_PREFIX: &str = "spse_odt";

/// A sign-in waiting for the operator's device.
#[derive(Debug, Clone)]
pub struct DeviceSignInStarted {
    pub sign_in_id: Uuid,
    /// Shown on the page; the operator types or picks it on the device.
    pub number: ApprovalNumber,
    /// For the waiting browser's cookie; only its SHA-256 is recorded.
    pub browser_secret: String,
    pub expires_at: DateTime<Utc>,
    pub position: Option<u64>,
}

/// What a setup page shows to activate TOTP: the standard URI and its QR code.
pub struct ActivationQr {
    pub otpauth_uri: String,
    pub qr_svg: String,
}

pub struct OperatorService {
    db: Database,
    store: Arc<dyn EventStore>,
    vault: Vault,
    setup_key: [u8; 32],
    clock: Arc<dyn Clock>,
    policy: Policy,
}

/// What the command needs looked up before deciding.
#[derive(Default)]
struct Prepared {
    secret: Option<OpenedSecret>,
    password_matches: bool,
}

impl OperatorService {
    pub fn new(db: &Database, keys: &KeyRing, clock: Arc<dyn Clock>, policy: Policy) -> Self {
        OperatorService {
            db: db.clone(),
            store: Arc::clone(&db.events),
            vault: Vault::with_keys(db, keys),
            setup_key: keys.derivation_key().derive("spse-totp/operator-setup/v1"),
            clock,
            policy,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The operator as of now, and its stream's version.
    pub async fn load(&self, username: &Username) -> Outcome<(Operator, u64)> {
        let stream = operator::stream_name(username);
        let mut op = Operator::default();
        let mut version = 0;
        loop {
            let page = self.store.read_stream(&stream, version + 1, 500).await?;
            let Some(last) = page.last().map(|e| e.version) else {
                break;
            };
            for recorded in &page {
                let event =
                    OperatorEvent::from_stored(&recorded.event_type, recorded.payload.clone())
                        .map_err(|e| OperatorCommandError::Decode {
                            stream: stream.clone(),
                            reason: e.to_string(),
                        })?;
                op.apply(&event);
            }
            version = last;
        }
        Ok((op, version))
    }

    /// Decides `command` on the operator's current state and appends what it decided (a
    /// refusal's record too), deciding again after a version conflict. `prepare` looks up what
    /// the decision needs on the state it will be made on.
    async fn execute<F, Fut>(
        &self,
        username: &Username,
        command: &OperatorCommand,
        metadata: &EventMetadata,
        prepare: F,
    ) -> Outcome<(Operator, Option<u64>)>
    where
        F: Fn(Operator) -> Fut,
        Fut: std::future::Future<Output = Outcome<Prepared>>,
    {
        let stream = operator::stream_name(username);
        for _ in 0..ATTEMPTS {
            let (op, version) = self.load(username).await?;
            let prepared = prepare(op.clone()).await?;
            let now = self.now();
            let decision = decide(
                &op,
                command,
                OperatorContext {
                    now,
                    policy: &self.policy,
                    secret: prepared.secret.as_ref(),
                    password_matches: prepared.password_matches,
                },
            );
            let (events, refusal) = match decision {
                Ok(events) => (events, None),
                Err(rejection) => (rejection.record, Some(rejection.error)),
            };
            if matches!(refusal, Some(OperatorError::StalePreparation)) {
                continue;
            }
            let position = if events.is_empty() {
                None
            } else {
                let new_events = events
                    .iter()
                    .map(|event| NewEvent {
                        event_id: Uuid::now_v7(),
                        event_type: event.event_type().to_owned(),
                        schema_version: event.schema_version(),
                        payload: event.to_payload(),
                        metadata: metadata.clone(),
                        recorded_at: now,
                    })
                    .collect();
                match self
                    .store
                    .append(&stream, ExpectedVersion::at(version), new_events)
                    .await
                {
                    Ok(appended) => Some(appended.last_position),
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            };
            if let Some(error) = refusal {
                return Err(OperatorCommandError::Rejected { error, position });
            }
            let mut after = op;
            for event in &events {
                after.apply(event);
            }
            return Ok((after, position));
        }
        Err(OperatorCommandError::Contention)
    }

    fn plain(_: Operator) -> std::future::Ready<Outcome<Prepared>> {
        std::future::ready(Ok(Prepared::default()))
    }

    /// Creates the operator; returns the setup link's token (valid 24 hours) and the position.
    pub async fn create(
        &self,
        username: &Username,
        name: &str,
        email: &str,
        role: OperatorRole,
        metadata: &EventMetadata,
    ) -> Outcome<(String, Option<u64>)> {
        let setup_id = Uuid::new_v4();
        let command = OperatorCommand::Create {
            username: username.clone(),
            name: name.to_owned(),
            email: email.to_owned(),
            role,
            setup_id,
        };
        let (_, position) = self
            .execute(username, &command, metadata, Self::plain)
            .await?;
        Ok((self.setup_token(setup_id), position))
    }

    /// `{setup id}.{MAC}`: checkable without storing it.
    pub fn setup_token(&self, setup_id: Uuid) -> String {
        format!("{}.{}", setup_id.simple(), self.setup_mac(setup_id))
    }

    fn setup_mac(&self, setup_id: Uuid) -> String {
        let mut mac = hmac_sha256(&self.setup_key);
        Mac::update(&mut mac, setup_id.as_bytes());
        hex::encode(&Mac::finalize(mac).into_bytes()[..16])
    }

    /// The setup id a token names, if its MAC is right (compared in constant time).
    pub fn setup_id_of(&self, token: &str) -> Option<Uuid> {
        let (id, mac) = token.trim().split_once('.')?;
        let setup_id = Uuid::try_parse(id).ok()?;
        let expected = self.setup_mac(setup_id);
        let equal = expected.len() == mac.len()
            && expected
                .bytes()
                .zip(mac.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        equal.then_some(setup_id)
    }

    /// Sets the password on the setup link: checked by the domain (link, length), then hashed.
    pub async fn set_password(
        &self,
        username: &Username,
        setup_id: Uuid,
        password: &str,
        metadata: &EventMetadata,
    ) -> Outcome<Option<u64>> {
        let command = OperatorCommand::SetPassword {
            setup_id,
            password_chars: password.chars().count(),
        };
        // Refuse a bad link or a short password before spending a hash on it.
        let (op, _) = self.load(username).await?;
        if let Err(rejection) = decide(
            &op,
            &command,
            OperatorContext {
                now: self.now(),
                policy: &self.policy,
                secret: None,
                password_matches: false,
            },
        ) {
            return Err(OperatorCommandError::Rejected {
                error: rejection.error,
                position: None,
            });
        }
        let hash = hash_password(password)?;
        let now = self.now();
        {
            let pool = self.db.write().await;
            sqlx::query("DELETE FROM operator_credentials WHERE username = $1")
                .bind(username.as_str())
                .execute(&*pool)
                .await?;
            sqlx::query(
                "INSERT INTO operator_credentials (username, password_hash, set_at) VALUES ($1, $2, $3)",
            )
            .bind(username.as_str())
            .bind(hash)
            .bind(now.timestamp_micros())
            .execute(&*pool)
            .await?;
        }
        let (_, position) = self
            .execute(username, &command, metadata, Self::plain)
            .await?;
        Ok(position)
    }

    /// Seals a new secret for the operator and records the enrollment; returns the QR code.
    pub async fn start_enrollment(
        &self,
        username: &Username,
        setup_id: Uuid,
        public_base_url: &str,
        metadata: &EventMetadata,
    ) -> Outcome<ActivationQr> {
        let enrollment_id = EnrollmentId::generate();
        let now = self.now();
        let stream = operator::stream_name(username);
        let command = OperatorCommand::StartEnrollment {
            setup_id,
            enrollment_id,
        };
        let (op, _) = self.load(username).await?;
        if let Err(rejection) = decide(
            &op,
            &command,
            OperatorContext {
                now,
                policy: &self.policy,
                secret: None,
                password_matches: false,
            },
        ) {
            return Err(OperatorCommandError::Rejected {
                error: rejection.error,
                position: None,
            });
        }
        let secret = self
            .vault
            .create(
                enrollment_id,
                &stream,
                now,
                now + self.policy.enrollment_ttl,
            )
            .await?;
        self.execute(username, &command, metadata, Self::plain)
            .await?;
        let otpauth_uri = otpauth_uri(&secret, username, enrollment_id, public_base_url)?;
        let qr_svg = crate::enrollment::qr_svg(&otpauth_uri)
            .map_err(|e| OperatorCommandError::Uri(e.to_string()))?;
        Ok(ActivationQr {
            otpauth_uri,
            qr_svg,
        })
    }

    async fn open(&self, enrollment_id: EnrollmentId) -> Outcome<OpenedSecret> {
        let sealed = self
            .vault
            .fetch(enrollment_id)
            .await?
            .ok_or(OperatorCommandError::SecretMissing(enrollment_id))?;
        Ok(OpenedSecret {
            enrollment_id,
            secret: self.vault.unseal(&sealed)?,
        })
    }

    /// The first code from the new authenticator: the operator is active from here on.
    pub async fn activate(
        &self,
        username: &Username,
        setup_id: Uuid,
        code: TotpCode,
        metadata: &EventMetadata,
    ) -> Outcome<Option<u64>> {
        let command = OperatorCommand::ActivateTotp { setup_id, code };
        let (op, position) = self
            .execute(username, &command, metadata, |op| async move {
                let secret = match op.pending_enrollment {
                    Some(e) => Some(self.open(e.enrollment_id).await?),
                    None => None,
                };
                Ok(Prepared {
                    secret,
                    password_matches: false,
                })
            })
            .await?;
        if let Some(enrollment_id) = op.enrollment_id {
            self.vault.keep(enrollment_id).await?;
        }
        Ok(position)
    }

    /// Username, password and code. A wrong password or code is recorded and counts toward the
    /// lock; an unknown username records nothing (there is no stream to record it in) and is
    /// refused in the same words.
    pub async fn sign_in(
        &self,
        username: &Username,
        password: &str,
        code: TotpCode,
        metadata: &EventMetadata,
    ) -> Outcome<Operator> {
        let hash: Option<String> = sqlx::query_scalar(
            "SELECT password_hash FROM operator_credentials WHERE username = $1",
        )
        .bind(username.as_str())
        .fetch_optional(&self.db.pool)
        .await?;
        // Verified once, outside the retry loop: Argon2 is slow on purpose.
        let password_matches = hash.is_some_and(|hash| verify_password(&hash, password));
        let command = OperatorCommand::SignIn { code };
        let (op, _) = self
            .execute(username, &command, metadata, |op| async move {
                let secret = match op.enrollment_id {
                    Some(id) if password_matches => Some(self.open(id).await?),
                    _ => None,
                };
                Ok(Prepared {
                    secret,
                    password_matches,
                })
            })
            .await?;
        Ok(op)
    }

    /// The operator a scanned QR code's enrollment belongs to, if an operator's: how the device
    /// API's activation tells an operator's QR code from a user's.
    pub async fn enrollment_owner(&self, enrollment_id: EnrollmentId) -> Outcome<Option<Username>> {
        let stream = self.vault.stream_of(enrollment_id).await?;
        Ok(stream
            .as_deref()
            .and_then(|s| s.strip_prefix(operator::STREAM_PREFIX))
            .and_then(|name| Username::parse(name).ok()))
    }

    /// The device API's activation for an operator's QR code: activates TOTP and binds the
    /// device. Returns the device token (shown once; only its SHA-256 is recorded).
    #[allow(clippy::too_many_arguments)]
    pub async fn bind_device(
        &self,
        username: &Username,
        enrollment_id: EnrollmentId,
        code: TotpCode,
        device_id: Uuid,
        label: String,
        platform: Option<String>,
        metadata: &EventMetadata,
    ) -> Outcome<(String, Operator)> {
        let device_token = random_token(OPERATOR_DEVICE_TOKEN_PREFIX);
        let command = OperatorCommand::BindDevice {
            enrollment_id,
            code,
            device_id,
            label,
            platform,
            device_token_sha256: sha256_hex(&device_token),
        };
        let (op, _) = self
            .execute(username, &command, metadata, |op| async move {
                let secret = match op.pending_enrollment {
                    Some(e) if e.enrollment_id == enrollment_id => {
                        Some(self.open(enrollment_id).await?)
                    }
                    _ => None,
                };
                Ok(Prepared {
                    secret,
                    password_matches: false,
                })
            })
            .await?;
        self.vault.keep(enrollment_id).await?;
        Ok((device_token, op))
    }

    /// Username and password without a code: the operator's device is asked. A wrong password
    /// counts as on the form with a code. The browser keeps the returned secret (a cookie).
    pub async fn start_device_sign_in(
        &self,
        username: &Username,
        password: &str,
        metadata: &EventMetadata,
    ) -> Outcome<DeviceSignInStarted> {
        let password_matches = self.password_matches(username, password).await?;
        let sign_in_id = Uuid::new_v4();
        let number = ApprovalNumber::draw(|| crate::tokens::random_bytes::<1>()[0]);
        let browser_secret = random_token("spse_csi");
        let command = OperatorCommand::StartDeviceSignIn {
            sign_in_id,
            number,
            browser_sha256: sha256_hex(&browser_secret),
        };
        let (op, position) = self
            .execute(username, &command, metadata, |_| async move {
                Ok(Prepared {
                    secret: None,
                    password_matches,
                })
            })
            .await?;
        let expires_at = op
            .sign_in
            .as_ref()
            .map(|s| s.expires_at)
            .unwrap_or_else(|| self.now());
        Ok(DeviceSignInStarted {
            sign_in_id,
            number,
            browser_secret,
            expires_at,
            position,
        })
    }

    async fn password_matches(&self, username: &Username, password: &str) -> Outcome<bool> {
        let hash: Option<String> = sqlx::query_scalar(
            "SELECT password_hash FROM operator_credentials WHERE username = $1",
        )
        .bind(username.as_str())
        .fetch_optional(&self.db.pool)
        .await?;
        Ok(hash.is_some_and(|hash| verify_password(&hash, password)))
    }

    /// "Authorize Login" on the operator's device: a fresh code and the number on the page.
    pub async fn approve_on_device(
        &self,
        username: &Username,
        sign_in_id: Uuid,
        device_token_sha256: &str,
        code: TotpCode,
        number: Option<ApprovalNumber>,
        metadata: &EventMetadata,
    ) -> Outcome<Option<u64>> {
        let command = OperatorCommand::ApproveOnDevice {
            sign_in_id,
            device_token_sha256: device_token_sha256.to_owned(),
            code,
            number,
        };
        let (_, position) = self
            .execute(username, &command, metadata, |op| self.prepare_secret(op))
            .await?;
        Ok(position)
    }

    /// The device refuses: the sign-in ends and counts as a failed one.
    pub async fn deny_on_device(
        &self,
        username: &Username,
        sign_in_id: Uuid,
        device_token_sha256: &str,
        metadata: &EventMetadata,
    ) -> Outcome<Option<u64>> {
        let command = OperatorCommand::DenyOnDevice {
            sign_in_id,
            device_token_sha256: device_token_sha256.to_owned(),
        };
        let (_, position) = self
            .execute(username, &command, metadata, Self::plain)
            .await?;
        Ok(position)
    }

    /// The waiting browser asks: signed in once approved (`SignInWaiting` until then), the
    /// expiry recorded once the login time is over.
    pub async fn finish_device_sign_in(
        &self,
        username: &Username,
        sign_in_id: Uuid,
        browser_secret: &str,
        metadata: &EventMetadata,
    ) -> Outcome<Operator> {
        let command = OperatorCommand::FinishDeviceSignIn {
            sign_in_id,
            browser_sha256: sha256_hex(browser_secret),
        };
        let (op, _) = self
            .execute(username, &command, metadata, Self::plain)
            .await?;
        Ok(op)
    }

    /// Records as expired a device sign-in nobody finished within the login time (the sweep's
    /// work). `None` when there was nothing to record: it was finished, replaced, or is still
    /// within its time, whatever the sweep read a moment ago.
    pub async fn expire_device_sign_in(
        &self,
        username: &Username,
        sign_in_id: Uuid,
    ) -> Outcome<Option<u64>> {
        let command = OperatorCommand::ExpireDeviceSignIn { sign_in_id };
        match self
            .execute(username, &command, &EventMetadata::system(), Self::plain)
            .await
        {
            Ok((_, position)) => Ok(position),
            Err(OperatorCommandError::Rejected {
                error: OperatorError::SignInUnknown | OperatorError::SignInWaiting,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The waiting browser types a code instead of waiting for the device.
    pub async fn code_for_device_sign_in(
        &self,
        username: &Username,
        sign_in_id: Uuid,
        browser_secret: &str,
        code: TotpCode,
        metadata: &EventMetadata,
    ) -> Outcome<Operator> {
        let command = OperatorCommand::CodeForDeviceSignIn {
            sign_in_id,
            browser_sha256: sha256_hex(browser_secret),
            code,
        };
        let (op, _) = self
            .execute(username, &command, metadata, |op| self.prepare_secret(op))
            .await?;
        Ok(op)
    }

    async fn prepare_secret(&self, op: Operator) -> Outcome<Prepared> {
        let secret = match op.enrollment_id {
            Some(id) => Some(self.open(id).await?),
            None => None,
        };
        Ok(Prepared {
            secret,
            password_matches: false,
        })
    }

    pub async fn sign_out(
        &self,
        username: &Username,
        metadata: &EventMetadata,
    ) -> Outcome<Option<u64>> {
        let (_, position) = self
            .execute(username, &OperatorCommand::SignOut, metadata, Self::plain)
            .await?;
        Ok(position)
    }

    /// Disables the operator and ends every session of theirs, on every instance (sessions are
    /// rows; each request checks its row and the operator's status).
    pub async fn disable(
        &self,
        username: &Username,
        metadata: &EventMetadata,
    ) -> Outcome<Option<u64>> {
        let (_, position) = self
            .execute(username, &OperatorCommand::Disable, metadata, Self::plain)
            .await?;
        ConsoleSessions::new(&self.db).end_all(username).await?;
        Ok(position)
    }

    /// Removes the operator's TOTP device; returns a new setup link's token for another.
    pub async fn reset_totp(
        &self,
        username: &Username,
        metadata: &EventMetadata,
    ) -> Outcome<(String, Option<u64>)> {
        let setup_id = Uuid::new_v4();
        let (before, _) = self.load(username).await?;
        let (_, position) = self
            .execute(
                username,
                &OperatorCommand::ResetTotp { setup_id },
                metadata,
                Self::plain,
            )
            .await?;
        for enrollment in [
            before.enrollment_id,
            before.pending_enrollment.map(|e| e.enrollment_id),
        ]
        .into_iter()
        .flatten()
        {
            self.vault.destroy(enrollment).await?;
        }
        ConsoleSessions::new(&self.db).end_all(username).await?;
        Ok((self.setup_token(setup_id), position))
    }
}

fn hash_password(password: &str) -> Outcome<String> {
    let salt = SaltString::encode_b64(&crate::tokens::random_bytes::<16>())
        .map_err(|_| OperatorCommandError::Hashing)?;
    // Argon2id with the crate's defaults (OWASP's 19 MiB, 2 passes, 1 lane).
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|_| OperatorCommandError::Hashing)
}

fn verify_password(stored: &str, password: &str) -> bool {
    PasswordHash::new(stored)
        .map(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

fn otpauth_uri(
    secret: &TotpSecret,
    username: &Username,
    enrollment_id: EnrollmentId,
    public_base_url: &str,
) -> Outcome<String> {
    let host = url::Url::parse(public_base_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let account = if host.is_empty() {
        username.to_string()
    } else {
        format!("{username}@{host}")
    };
    let totp = totp_rs::TOTP::new(
        ALGORITHM,
        DIGITS,
        1,
        PERIOD_SECONDS,
        secret.as_bytes().to_vec(),
        Some(CONSOLE_ISSUER.to_owned()),
        account,
    )
    .map_err(|e| OperatorCommandError::Uri(e.to_string()))?;
    let mut uri =
        url::Url::parse(&totp.get_url()).map_err(|e| OperatorCommandError::Uri(e.to_string()))?;
    // What a push-capable app needs to bind itself through the device API, as on a user's QR
    // code; a standard authenticator ignores them.
    uri.query_pairs_mut()
        .append_pair("user_type", "operator")
        .append_pair("enrollment_id", &enrollment_id.to_string())
        .append_pair("server", public_base_url);
    Ok(uri.to_string())
}

/// A signed-in operator, as a request finds them.
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    pub session_sha256: String,
    pub username: Username,
    pub name: String,
    pub role: OperatorRole,
    pub csrf_token: String,
    pub created_at: DateTime<Utc>,
}

/// How long a session lives (issue 15).
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub idle: Duration,
    pub max: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            idle: Duration::minutes(15),
            max: Duration::hours(8),
        }
    }
}

/// Sessions in the database, so that every instance sees a sign-out or a disabled operator.
pub struct ConsoleSessions {
    db: Database,
}

/// A session's last-seen time is written at most this often, so browsing is not a write per page.
const TOUCH_EVERY_SECONDS: i64 = 30;

impl ConsoleSessions {
    pub fn new(db: &Database) -> Self {
        ConsoleSessions { db: db.clone() }
    }

    /// A new session for `username`: returns the cookie's value (shown to the browser only).
    pub async fn start(
        &self,
        username: &Username,
        now: DateTime<Utc>,
    ) -> Result<String, sqlx::Error> {
        let id = random_token("spse_cs");
        let csrf = random_token("csrf");
        let pool = self.db.write().await;
        sqlx::query(
            "INSERT INTO console_sessions (session_sha256, username, csrf_token, created_at, last_seen_at) \
             VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(sha256_hex(&id))
        .bind(username.as_str())
        .bind(csrf)
        .bind(now.timestamp_micros())
        .execute(&*pool)
        .await?;
        Ok(id)
    }

    /// The live session behind a cookie: not idle too long, not too old, its operator active.
    /// Finding one counts as activity.
    pub async fn find(
        &self,
        cookie: &str,
        now: DateTime<Utc>,
        limits: SessionLimits,
    ) -> Result<Option<ConsoleSession>, sqlx::Error> {
        let digest = sha256_hex(cookie);
        let row: Option<(String, String, i64, i64, String, String)> = sqlx::query_as(
            "SELECT s.username, s.csrf_token, s.created_at, s.last_seen_at, o.role, o.name \
             FROM console_sessions s JOIN operators o ON o.username = s.username \
             WHERE s.session_sha256 = $1 AND o.status = 'active'",
        )
        .bind(&digest)
        .fetch_optional(&self.db.pool)
        .await?;
        let Some((username, csrf_token, created, seen, role, name)) = row else {
            return Ok(None);
        };
        let micros = now.timestamp_micros();
        let expired = created + limits.max.num_microseconds().unwrap_or(i64::MAX) <= micros
            || seen + limits.idle.num_microseconds().unwrap_or(i64::MAX) <= micros;
        let (Ok(username), Ok(role)) = (Username::parse(&username), role.parse()) else {
            return Ok(None);
        };
        if expired {
            self.end(cookie).await?;
            return Ok(None);
        }
        if micros - seen >= TOUCH_EVERY_SECONDS * 1_000_000 {
            let pool = self.db.write().await;
            sqlx::query("UPDATE console_sessions SET last_seen_at = $1 WHERE session_sha256 = $2")
                .bind(micros)
                .bind(&digest)
                .execute(&*pool)
                .await?;
        }
        Ok(Some(ConsoleSession {
            session_sha256: digest,
            username,
            name,
            role,
            csrf_token,
            created_at: DateTime::<Utc>::from_timestamp_micros(created).unwrap_or_default(),
        }))
    }

    pub async fn end(&self, cookie: &str) -> Result<(), sqlx::Error> {
        let pool = self.db.write().await;
        sqlx::query("DELETE FROM console_sessions WHERE session_sha256 = $1")
            .bind(sha256_hex(cookie))
            .execute(&*pool)
            .await?;
        Ok(())
    }

    pub async fn end_all(&self, username: &Username) -> Result<(), sqlx::Error> {
        let pool = self.db.write().await;
        sqlx::query("DELETE FROM console_sessions WHERE username = $1")
            .bind(username.as_str())
            .execute(&*pool)
            .await?;
        Ok(())
    }
}
