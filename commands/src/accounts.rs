//! The account command handler: load, look up, decide, append, retry.
//!
//! A command reaches `decide` exactly as its caller built it. What deciding it needs from outside
//! (the secret a code is checked against, a newly sealed secret for a QR code) is looked up here,
//! as `spse_totp_domain::account::needs` asks on the state being decided on, and handed to
//! `decide` in its context.
//!
//! Each command runs under a per-account async lock, so requests for one account in this process
//! queue instead of colliding, and appends with the version it decided on, so requests from
//! other processes that got in first are noticed (a conflict) and the command is decided again on
//! the new state. Together they make a code single-use and the failure count exact.
//!
//! Loading is cheap at any history length: the folded state stays in memory (an LRU of accounts),
//! is saved as a snapshot every few hundred events, and only the events after it are read. A
//! command decides on that state without reading the stream at all while no other writer has been
//! seen on it, since the expected version proves it current (see `AccountService::attempt`).

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use lru::LruCache;
use spse_totp_domain::account::{
    needs, ActivateDevice, Context, LoginStage, Needs, OpenedSecret, StartLogin,
};
use spse_totp_domain::totp::TotpSecret;
use spse_totp_domain::{
    decide, Account, AccountCommand, AccountEvent, AccountKey, ApprovalNumber, DeviceId,
    DomainError, EnrollmentId, LoginId, Policy, Rejection, TotpCode, TotpStatus,
};
use uuid::Uuid;

use crate::clock::Clock;
use crate::enrollment::{otpauth_uri, qr_svg, EnrollmentError};
use crate::snapshots::SnapshotStore;
use crate::tokens::{random_bytes, random_token, sha256_hex};
use crate::vault::{SealedSecret, Vault, VaultError};
use spse_totp_store::{
    fold_stream, EventMetadata, EventStore, ExpectedVersion, NewEvent, StoreError,
};

/// Decisions retried after a conflict before the caller is told to try again. Conflicts need a
/// second process writing the same account at the same instant, so a handful is plenty.
const MAX_ATTEMPTS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The domain refused. Anything the refusal recorded is already appended, up to `position`.
    #[error("{error}")]
    Rejected {
        error: DomainError,
        position: Option<u64>,
    },
    #[error("the account is busy; try again")]
    Contention,
    #[error("the vault has no secret for enrollment {0}")]
    SecretMissing(EnrollmentId),
    #[error("stored event in {stream} does not decode: {reason}")]
    Decode { stream: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Enrollment(#[from] EnrollmentError),
}

#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub policy: Policy,
    /// Where a push-capable app calls back; goes into the QR code.
    pub public_base_url: String,
    /// The QR code's issuer (`SPSE_TOTP_ISSUER`), shown above the account in authenticator apps.
    pub issuer: String,
    /// Accounts whose folded state is kept in memory.
    pub cached_accounts: usize,
    /// Events between snapshots.
    pub snapshot_every: u64,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            policy: Policy::default(),
            public_base_url: "http://127.0.0.1:8080".to_owned(),
            issuer: crate::enrollment::ISSUER.to_owned(),
            cached_accounts: 50_000,
            snapshot_every: 200,
        }
    }
}

/// A command that went through: the account after it, the events it appended, and the last
/// position they took (what a reader of projections waits for).
#[derive(Debug, Clone)]
pub struct Executed {
    pub account: Account,
    pub events: Vec<AccountEvent>,
    pub position: Option<u64>,
}

/// What `start_login` answers: the login, and the QR code when it needs an activation.
#[derive(Debug, Clone)]
pub struct StartedLogin {
    pub login_id: LoginId,
    pub stage: LoginStage,
    pub expires_at: DateTime<Utc>,
    pub approval_number: Option<ApprovalNumber>,
    pub totp_status: TotpStatus,
    pub activation: Option<Activation>,
    pub position: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Activation {
    pub enrollment_id: EnrollmentId,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

#[derive(Debug, Clone)]
pub struct ActivatedDevice {
    pub account_key: AccountKey,
    pub account: Account,
    /// Shown to the device once; only its digest is kept.
    pub device_token: String,
    pub position: Option<u64>,
}

#[derive(Debug, Clone)]
struct Loaded {
    account: Account,
    version: u64,
    snapshot_version: u64,
    /// Whether the last read of the stream found events another writer appended. Until a read
    /// finds none, each command reads the stream before deciding instead of deciding on memory.
    shared: bool,
    /// The sealed secret an approval last opened, so the next need not read the vault. It is
    /// opened only while the account's state still names its enrollment.
    sealed: Option<SealedSecret>,
}

impl Loaded {
    fn new(account: Account, version: u64) -> Self {
        Loaded {
            account,
            version,
            snapshot_version: version,
            shared: false,
            sealed: None,
        }
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Loaded>>>;

pub struct AccountService {
    events: Arc<dyn EventStore>,
    vault: Vault,
    snapshots: SnapshotStore,
    clock: Arc<dyn Clock>,
    settings: ServiceSettings,
    slots: Mutex<LruCache<String, Slot>>,
}

impl AccountService {
    /// The vault this service opens secrets from.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    pub fn new(
        events: Arc<dyn EventStore>,
        vault: Vault,
        snapshots: SnapshotStore,
        clock: Arc<dyn Clock>,
        settings: ServiceSettings,
    ) -> Self {
        let capacity = NonZeroUsize::new(settings.cached_accounts).unwrap_or(NonZeroUsize::MIN);
        AccountService {
            events,
            vault,
            snapshots,
            clock,
            settings,
            slots: Mutex::new(LruCache::new(capacity)),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.settings.policy
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn slot(&self, stream: &str) -> Slot {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(slot) = slots.get(stream) {
            return Arc::clone(slot);
        }
        // An evicted slot still held by a running command is harmless: the append's expected
        // version catches the rare overlap.
        let slot: Slot = Arc::default();
        slots.put(stream.to_owned(), Arc::clone(&slot));
        slot
    }

    /// The account as it is now, folded from its snapshot and the events after it.
    pub async fn load(&self, key: &AccountKey) -> Result<Account, CommandError> {
        let stream = key.stream_name();
        let slot = self.slot(&stream);
        let mut loaded = slot.lock().await;
        self.catch_up(&stream, &mut loaded).await?;
        Ok(loaded
            .as_ref()
            .map(|l| l.account.clone())
            .unwrap_or_default())
    }

    async fn catch_up(&self, stream: &str, slot: &mut Option<Loaded>) -> Result<(), CommandError> {
        let was_loaded = slot.is_some();
        if !was_loaded {
            let snapshot = self.snapshots.load::<Account>(stream).await.unwrap_or_else(|e| {
                tracing::warn!(stream, error = %e, "snapshot unreadable, folding the whole stream");
                None
            });
            *slot = Some(match snapshot {
                Some((account, version)) => Loaded::new(account, version),
                None => Loaded::new(Account::default(), 0),
            });
        }
        let Some(loaded) = slot.as_mut() else {
            return Ok(());
        };
        // This process's own appends are folded in as they commit, so on a state already loaded
        // whatever the read finds was written by someone else.
        let known = loaded.version;
        let account = &mut loaded.account;
        let folded = fold_stream::<CommandError>(self.events.as_ref(), stream, known, |recorded| {
            let event = AccountEvent::from_stored(
                &recorded.event_type,
                recorded.schema_version,
                recorded.payload,
            )
            .map_err(|e| CommandError::Decode {
                stream: stream.to_owned(),
                reason: e.to_string(),
            })?;
            account.apply(&event);
            Ok(())
        })
        .await;
        match folded {
            Ok(version) => {
                loaded.version = version;
                if was_loaded {
                    loaded.shared = version != known;
                }
                Ok(())
            }
            Err(error) => {
                // Part of the page may have been applied: fold again from the start next time.
                *slot = None;
                Err(error)
            }
        }
    }

    /// Runs one command against one account.
    pub async fn execute(
        &self,
        key: &AccountKey,
        command: AccountCommand,
        metadata: EventMetadata,
    ) -> Result<Executed, CommandError> {
        self.run(key, command, metadata)
            .await
            .map(|(executed, _)| executed)
    }

    async fn run(
        &self,
        key: &AccountKey,
        command: AccountCommand,
        metadata: EventMetadata,
    ) -> Result<(Executed, Option<(EnrollmentId, TotpSecret)>), CommandError> {
        let stream = key.stream_name();
        let slot = self.slot(&stream);
        let mut loaded = slot.lock().await;
        let mut prepared: Option<(EnrollmentId, TotpSecret)> = None;
        let result = self
            .attempt(&stream, &command, &metadata, &mut loaded, &mut prepared)
            .await;
        // A QR code sealed for a decision that did not use it is destroyed at once.
        if let Some((enrollment_id, _)) = &prepared {
            let used = matches!(&result, Ok(executed) if executed.events.iter().any(|e| matches!(e,
                AccountEvent::EnrollmentStarted { enrollment_id: id, .. } if id == enrollment_id)));
            if !used {
                self.destroy_secret(*enrollment_id).await;
            }
        }
        result.map(|executed| (executed, prepared))
    }

    async fn attempt(
        &self,
        stream: &str,
        command: &AccountCommand,
        metadata: &EventMetadata,
        loaded: &mut Option<Loaded>,
        prepared: &mut Option<(EnrollmentId, TotpSecret)>,
    ) -> Result<Executed, CommandError> {
        // Kept across rounds, so a round after a conflict opens the secret again only when the
        // state it decides on names another enrollment.
        let mut opened: Option<OpenedSecret> = None;
        for round in 0..MAX_ATTEMPTS {
            // The first round decides on the state in memory when no other writer has been seen
            // on this stream: the append's expected version proves the state was current, and a
            // conflict sends the command round again after reading the stream. Only a decision
            // that appends nothing proves nothing, so it is checked against the store first.
            let on_trust = round == 0 && loaded.as_ref().is_some_and(|l| !l.shared);
            if !on_trust {
                self.catch_up(stream, loaded).await?;
            }
            let Some(current) = loaded.as_mut() else {
                continue;
            };
            let now = self.clock.now();
            let needed = needs(&current.account, command);
            match self
                .look_up(stream, needed, current, now, prepared, &mut opened)
                .await
            {
                Ok(()) => {}
                // Destroyed by a reset this state has not seen yet.
                Err(CommandError::SecretMissing(_)) if on_trust => continue,
                Err(e) => return Err(e),
            }
            let context = Context::new(now, &self.settings.policy)
                .with_secret(opened.as_ref())
                .with_enrollment(prepared.as_ref().map(|(id, _)| *id));
            let (events, refusal) = match decide(&current.account, command, context) {
                Ok(events) => (events, None),
                Err(Rejection {
                    error: DomainError::StalePreparation,
                    ..
                }) => {
                    *loaded = None;
                    continue;
                }
                Err(Rejection { error, record }) => (record, Some(error)),
            };
            if events.is_empty() {
                if on_trust {
                    continue;
                }
                return match refusal {
                    Some(error) => Err(CommandError::Rejected {
                        error,
                        position: None,
                    }),
                    None => Ok(Executed {
                        account: current.account.clone(),
                        events,
                        position: None,
                    }),
                };
            }
            let causation = Uuid::now_v7().to_string();
            let new_events = events
                .iter()
                .map(|event| NewEvent {
                    event_id: Uuid::now_v7(),
                    event_type: event.event_type().to_owned(),
                    schema_version: event.schema_version(),
                    payload: event.to_payload(),
                    metadata: EventMetadata {
                        causation_id: metadata
                            .causation_id
                            .clone()
                            .or_else(|| Some(causation.clone())),
                        ..metadata.clone()
                    },
                    recorded_at: now,
                })
                .collect();
            match self
                .events
                .append(stream, ExpectedVersion::at(current.version), new_events)
                .await
            {
                Ok(appended) => {
                    for event in &events {
                        current.account.apply(event);
                    }
                    current.version = appended.version;
                    self.after_commit(stream, current, &events).await;
                    let position = Some(appended.last_position);
                    return match refusal {
                        Some(error) => Err(CommandError::Rejected { error, position }),
                        None => Ok(Executed {
                            account: current.account.clone(),
                            events,
                            position,
                        }),
                    };
                }
                // Another process appended first: the next round reads its events and decides again.
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => {
                    *loaded = None;
                    return Err(e.into());
                }
            }
        }
        Err(CommandError::Contention)
    }

    /// Looks up what deciding needs from outside, into the decision's context and never into the
    /// command: a sealed new secret when a login may show a QR code (made once per command, and
    /// destroyed by `run` if the decision does not use it), the opened secret when a code must be
    /// checked.
    async fn look_up(
        &self,
        stream: &str,
        needed: Needs,
        loaded: &mut Loaded,
        now: DateTime<Utc>,
        prepared: &mut Option<(EnrollmentId, TotpSecret)>,
        opened: &mut Option<OpenedSecret>,
    ) -> Result<(), CommandError> {
        if needed.enrollment && prepared.is_none() {
            let enrollment_id = EnrollmentId::generate();
            let ttl = self
                .settings
                .policy
                .enrollment_ttl
                .min(self.settings.policy.login_ttl);
            let secret = self
                .vault
                .create(enrollment_id, stream, now, now + ttl)
                .await?;
            *prepared = Some((enrollment_id, secret));
        }
        let Some(needed) = needed.secret else {
            return Ok(());
        };
        if opened.as_ref().is_some_and(|s| s.enrollment_id == needed) {
            return Ok(());
        }
        let sealed = match loaded.sealed.take() {
            Some(sealed) if sealed.enrollment_id() == needed => sealed,
            _ => self
                .vault
                .fetch(needed)
                .await?
                .ok_or(CommandError::SecretMissing(needed))?,
        };
        *opened = Some(OpenedSecret {
            enrollment_id: needed,
            secret: self.vault.unseal(&sealed)?,
        });
        loaded.sealed = Some(sealed);
        Ok(())
    }

    /// Vault upkeep and snapshots. The events are durable already, so nothing here may fail the
    /// command: a missed step is redone by the housekeeping sweep or the next snapshot.
    async fn after_commit(&self, stream: &str, loaded: &mut Loaded, events: &[AccountEvent]) {
        for event in events {
            match event {
                AccountEvent::TotpActivated { enrollment_id, .. } => {
                    if let Err(e) = self.vault.keep(*enrollment_id).await {
                        tracing::error!(%enrollment_id, error = %e, "could not mark the activated secret as kept");
                    }
                }
                AccountEvent::TotpDisabled { enrollment_id, .. } => {
                    loaded.sealed = None;
                    self.destroy_secret(*enrollment_id).await
                }
                // A reset takes effect at once: neither the old device's secret nor a QR code
                // shown before it may ever check a code again.
                AccountEvent::TotpReset {
                    enrollment_id,
                    pending_enrollment_id,
                    ..
                } => {
                    loaded.sealed = None;
                    for id in enrollment_id.iter().chain(pending_enrollment_id) {
                        self.destroy_secret(*id).await;
                    }
                }
                _ => {}
            }
        }
        if loaded.version - loaded.snapshot_version >= self.settings.snapshot_every {
            match self
                .snapshots
                .save(stream, loaded.version, &loaded.account)
                .await
            {
                Ok(()) => loaded.snapshot_version = loaded.version,
                Err(e) => tracing::warn!(stream, error = %e, "snapshot not saved"),
            }
        }
    }

    async fn destroy_secret(&self, enrollment_id: EnrollmentId) {
        if let Err(e) = self.vault.destroy(enrollment_id).await {
            tracing::error!(%enrollment_id, error = %e, "could not destroy a sealed secret; the sweep will retry");
        }
    }

    /// Flow 1 and 2, step 1: the portal checked the password.
    #[allow(clippy::too_many_arguments)]
    pub async fn start_login(
        &self,
        key: &AccountKey,
        email: Option<String>,
        name: Option<String>,
        client_ip: Option<String>,
        user_agent: Option<String>,
        metadata: EventMetadata,
    ) -> Result<StartedLogin, CommandError> {
        let login_id = LoginId::generate();
        let command = AccountCommand::StartLogin(StartLogin {
            user_type: key.user_type,
            user_id: key.user_id.clone(),
            email,
            name,
            login_id,
            client_ip,
            user_agent,
            approval_number: ApprovalNumber::draw(|| random_bytes::<1>()[0]),
        });
        let (executed, prepared) = self.run(key, command, metadata).await?;
        let login = executed
            .account
            .login(login_id)
            .ok_or(CommandError::Rejected {
                error: DomainError::LoginNotFound,
                position: executed.position,
            })?;
        let activation = match (login.stage, prepared) {
            (LoginStage::Activation, Some((enrollment_id, secret))) => {
                let uri = otpauth_uri(
                    &secret,
                    &self.settings.issuer,
                    key,
                    enrollment_id,
                    &self.settings.public_base_url,
                )?;
                let qr_svg = qr_svg(&uri)?;
                Some(Activation {
                    enrollment_id,
                    otpauth_uri: uri,
                    qr_svg,
                })
            }
            _ => None,
        };
        Ok(StartedLogin {
            login_id,
            stage: login.stage,
            expires_at: login.expires_at,
            approval_number: login.approval_number,
            totp_status: executed.account.totp_status,
            activation,
            position: executed.position,
        })
    }

    /// A push-capable app scanned the QR code: the enrollment id finds the account.
    pub async fn activate_device(
        &self,
        enrollment_id: EnrollmentId,
        device_id: DeviceId,
        code: TotpCode,
        device_label: String,
        platform: Option<String>,
        metadata: EventMetadata,
    ) -> Result<ActivatedDevice, CommandError> {
        let not_found = || CommandError::Rejected {
            error: DomainError::EnrollmentNotFound,
            position: None,
        };
        let stream = self
            .vault
            .stream_of(enrollment_id)
            .await?
            .ok_or_else(not_found)?;
        let account_key = AccountKey::from_stream_name(&stream).ok_or_else(not_found)?;
        let device_token = random_token("spse_dt");
        let command = AccountCommand::ActivateDevice(ActivateDevice {
            enrollment_id,
            code,
            device_id,
            device_label,
            platform,
            device_token_sha256: sha256_hex(&device_token),
        });
        let executed = self.execute(&account_key, command, metadata).await?;
        Ok(ActivatedDevice {
            account_key,
            account: executed.account,
            device_token,
            position: executed.position,
        })
    }
}
