//! Sends the mail that events call for and records each outcome as an event.
//!
//! The dispatcher follows the log from its own checkpoint, like a projector. For each event that
//! calls for a message (`ResetRequested`: the link; `TotpReset` and `TotpActivated`: a notice) it
//! first reads the account's stream after that event: if a `Sent` outcome (or a final failure)
//! is there, the message is done. Otherwise it sends, appends the outcome to the account's stream,
//! and only then moves the checkpoint. So a restart resends nothing already recorded as sent, and
//! loses nothing: the only repeat is a crash between the server accepting a message and the
//! outcome's commit, and that repeat carries the same Message-ID (derived from the event id), so
//! mail systems see one message.
//!
//! Events that call for no message are passed over without a write each: the checkpoint records
//! them with the next message, or every [`RECORD_EVERY`] events, or when the dispatcher stops,
//! since on SQLite each write takes a turn at the one write lock the event writer lives on. A
//! restart reads the unrecorded stretch again and finds nothing in it to send.
//!
//! A transient failure is recorded with the time of the next attempt (doubling, from the Clock,
//! so tests move time instead of sleeping) and later mail waits behind it: when the mail server
//! is down, it is down for every message. A link past its expiry is not sent at all.
//!
//! One dispatcher runs per database: each instance tries to hold a lease row, and only the holder
//! sends.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use spse_totp_domain::account::{MailOutcome, NoticeKind, RecordNotice, RecordResetEmail, ResetBy};
use spse_totp_domain::{AccountCommand, AccountEvent, AccountKey, ResetRequestId};
use tokio::sync::watch;
use uuid::Uuid;

use super::message::{self, AccountFacts, Letter, NoticeFacts};
use super::transport::{MailTransport, SendError};
use crate::accounts::{AccountService, CommandError};
use crate::clock::Clock;
use crate::resets::ResetTokens;
use spse_totp_store::Database;
use spse_totp_store::{advance_watch, EventMetadata, EventStore, RecordedEvent, StoreError};

/// The checkpoint's name in `projection_checkpoints`.
pub const CHECKPOINT: &str = "mail_dispatcher";
const LEASE: &str = "mail_dispatcher";
const BATCH: usize = 200;
/// The most events passed over (sending nothing) before the checkpoint records them.
pub const RECORD_EVERY: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("mail dispatcher database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Command(#[from] CommandError),
}

#[derive(Debug, Clone)]
pub struct DispatcherSettings {
    /// The sender, `Name <address>`.
    pub from: String,
    /// Links are built on this, never on a request's Host header.
    pub public_base_url: String,
    /// The first retry's delay; each further one doubles, up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// A notice still undelivered this long after its event is given up.
    pub give_up_after: Duration,
    /// How long a held lease lasts without renewal.
    pub lease_for: Duration,
    /// How often the dispatcher looks at the log (and the clock) when nothing wakes it.
    pub poll: StdDuration,
}

impl Default for DispatcherSettings {
    fn default() -> Self {
        DispatcherSettings {
            from: "SPSE TOTP <no-reply@localhost>".to_owned(),
            public_base_url: "http://127.0.0.1:8080".to_owned(),
            first_backoff: Duration::seconds(2),
            max_backoff: Duration::minutes(10),
            give_up_after: Duration::hours(24),
            lease_for: Duration::seconds(30),
            poll: StdDuration::from_millis(250),
        }
    }
}

/// A message an event calls for.
#[derive(Debug, Clone)]
enum Job {
    ResetLink {
        request_id: ResetRequestId,
        email: String,
        client_ip: Option<String>,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    Notice {
        kind: NoticeKind,
        facts: NoticeFacts,
        at: DateTime<Utc>,
    },
}

impl Job {
    fn of(event: &AccountEvent) -> Option<Job> {
        match event {
            AccountEvent::ResetRequested {
                request_id,
                email,
                client_ip,
                expires_at,
                at,
            } => Some(Job::ResetLink {
                request_id: *request_id,
                email: email.clone(),
                client_ip: client_ip.clone(),
                expires_at: *expires_at,
                at: *at,
            }),
            AccountEvent::TotpReset {
                by,
                device_label,
                at,
                ..
            } => Some(Job::Notice {
                kind: NoticeKind::Reset,
                facts: NoticeFacts::Reset {
                    by: match by {
                        ResetBy::Link { .. } => "tautan email",
                        ResetBy::Helpdesk { .. } => "helpdesk",
                    },
                    removed_device: device_label.clone(),
                },
                at: *at,
            }),
            AccountEvent::TotpActivated {
                device_label, at, ..
            } => Some(Job::Notice {
                kind: NoticeKind::Activated,
                facts: NoticeFacts::Activated {
                    device: device_label.clone(),
                },
                at: *at,
            }),
            _ => None,
        }
    }

    /// Whether `event` (later in the same stream) is an outcome of this job.
    fn outcome(&self, cause: Uuid, event: &AccountEvent) -> Option<Outcome> {
        match (self, event) {
            (
                Job::ResetLink { request_id, .. },
                AccountEvent::ResetEmailSent { request_id: r, .. },
            ) if r == request_id => Some(Outcome::Done),
            (
                Job::ResetLink { request_id, .. },
                AccountEvent::ResetEmailFailed {
                    request_id: r,
                    retry_at,
                    ..
                },
            ) if r == request_id => Some(Outcome::failed(*retry_at)),
            (Job::Notice { .. }, AccountEvent::NoticeEmailSent { cause_event_id, .. })
                if *cause_event_id == cause =>
            {
                Some(Outcome::Done)
            }
            (
                Job::Notice { .. },
                AccountEvent::NoticeEmailFailed {
                    cause_event_id,
                    retry_at,
                    ..
                },
            ) if *cause_event_id == cause => Some(Outcome::failed(*retry_at)),
            _ => None,
        }
    }

    fn record(&self, cause: Uuid, outcome: MailOutcome) -> AccountCommand {
        match self {
            Job::ResetLink { request_id, .. } => {
                AccountCommand::RecordResetEmail(RecordResetEmail {
                    request_id: *request_id,
                    outcome,
                })
            }
            Job::Notice { kind, .. } => AccountCommand::RecordNotice(RecordNotice {
                notice: *kind,
                cause_event_id: cause,
                outcome,
            }),
        }
    }
}

enum Outcome {
    Done,
    RetryAt(DateTime<Utc>),
}

impl Outcome {
    fn failed(retry_at: Option<DateTime<Utc>>) -> Outcome {
        retry_at.map_or(Outcome::Done, Outcome::RetryAt)
    }
}

/// Where the job stands, read from the account's stream.
struct Progress {
    done: bool,
    failures: u32,
    retry_at: Option<DateTime<Utc>>,
}

enum Step {
    /// Everything in the log is handled.
    Idle,
    /// Worked through some events: look again at once.
    Moved,
    /// The next message waits for its retry time.
    Waiting,
}

pub struct Dispatcher {
    store: Arc<dyn EventStore>,
    db: Database,
    accounts: Arc<AccountService>,
    transport: MailTransport,
    tokens: ResetTokens,
    clock: Arc<dyn Clock>,
    settings: DispatcherSettings,
    holder: String,
    /// Until when this instance holds the lease (microseconds), so an idle dispatcher renews it
    /// only when half of it is gone instead of writing on every poll.
    held_until: AtomicI64,
    /// How far past the stored checkpoint this instance has looked without finding a message.
    passed: Mutex<Passed>,
    /// The position up to which every message is sent or given up, recorded or not.
    handled: watch::Sender<u64>,
}

/// Events after `checkpoint` (the stored one) up to `reached` call for no message; `count` of
/// them are not yet recorded. Valid only while the stored checkpoint is still `checkpoint`.
#[derive(Debug, Clone, Copy, Default)]
struct Passed {
    checkpoint: u64,
    reached: u64,
    count: usize,
}

impl Passed {
    /// Nothing passed over yet past the stored checkpoint `at`.
    fn at(at: u64) -> Self {
        Passed {
            checkpoint: at,
            reached: at,
            count: 0,
        }
    }
}

impl Dispatcher {
    pub fn new(
        db: &Database,
        accounts: Arc<AccountService>,
        transport: MailTransport,
        tokens: ResetTokens,
        clock: Arc<dyn Clock>,
        settings: DispatcherSettings,
    ) -> Self {
        Dispatcher {
            store: Arc::clone(&db.events),
            db: db.clone(),
            accounts,
            transport,
            tokens,
            clock,
            settings,
            holder: Uuid::new_v4().to_string(),
            held_until: AtomicI64::new(i64::MIN),
            passed: Mutex::new(Passed::default()),
            handled: watch::channel(0).0,
        }
    }

    /// The position up to which this instance has handled every message. It stays put while
    /// another instance holds the lease.
    pub fn handled(&self) -> watch::Receiver<u64> {
        self.handled.subscribe()
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut appended = self.store.subscribe();
        let mut failures = 0u32;
        loop {
            if *shutdown.borrow() {
                self.record_passed().await;
                self.release().await;
                return;
            }
            let step = match self.hold_lease().await {
                Ok(true) => self.step().await,
                Ok(false) => Ok(Step::Waiting),
                Err(e) => Err(e),
            };
            let pause = match step {
                Ok(Step::Moved) => {
                    failures = 0;
                    continue;
                }
                Ok(Step::Idle | Step::Waiting) => {
                    failures = 0;
                    self.settings.poll
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::error!(error = %e, "mail dispatcher step failed; retrying");
                    self.settings.poll * failures.min(20)
                }
            };
            tokio::select! {
                _ = appended.changed() => {}
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Takes or renews the lease; false when another instance holds it.
    pub async fn hold_lease(&self) -> Result<bool, DispatchError> {
        let now = self.clock.now();
        let half = self.settings.lease_for / 2;
        if (now + half).timestamp_micros() < self.held_until.load(Ordering::Acquire) {
            return Ok(true);
        }
        let until = now + self.settings.lease_for;
        let pool = self.db.write().await;
        let done = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < $4",
        )
        .bind(LEASE)
        .bind(&self.holder)
        .bind(until.timestamp_micros())
        .bind(now.timestamp_micros())
        .execute(&*pool)
        .await?;
        let held = done.rows_affected() == 1;
        self.held_until.store(
            if held {
                until.timestamp_micros()
            } else {
                i64::MIN
            },
            Ordering::Release,
        );
        Ok(held)
    }

    async fn release(&self) {
        let pool = self.db.write().await;
        if let Err(e) = sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(LEASE)
            .bind(&self.holder)
            .execute(&*pool)
            .await
        {
            tracing::warn!(error = %e, "mail dispatcher lease not released; it expires by itself");
        }
    }

    async fn checkpoint(&self) -> Result<u64, DispatchError> {
        let position: Option<i64> =
            sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE projector = $1")
                .bind(CHECKPOINT)
                .fetch_optional(&self.db.pool)
                .await?;
        if let Some(position) = position {
            return Ok(u64::try_from(position).unwrap_or(0));
        }
        let pool = self.db.write().await;
        sqlx::query(
            "INSERT INTO projection_checkpoints (projector, position, updated_at) VALUES ($1, 0, $2) \
             ON CONFLICT (projector) DO NOTHING",
        )
        .bind(CHECKPOINT)
        .bind(self.clock.now().timestamp_micros())
        .execute(&*pool)
        .await?;
        Ok(0)
    }

    /// Moves the checkpoint from `from` to `to`; false when someone else moved it first.
    async fn advance(&self, from: u64, to: u64) -> Result<bool, DispatchError> {
        if from == to {
            return Ok(true);
        }
        let pool = self.db.write().await;
        let done = sqlx::query(
            "UPDATE projection_checkpoints SET position = $1, updated_at = $2 WHERE projector = $3 AND position = $4",
        )
        .bind(i64::try_from(to).unwrap_or(i64::MAX))
        .bind(self.clock.now().timestamp_micros())
        .bind(CHECKPOINT)
        .bind(i64::try_from(from).unwrap_or(i64::MAX))
        .execute(&*pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Handles the events after the checkpoint, up to the first message that must wait.
    async fn step(&self) -> Result<Step, DispatchError> {
        let mut stored = self.checkpoint().await?;
        let mut passed = self.passed_since(stored);
        let batch = self.store.read_all(passed.reached, BATCH).await?;
        if batch.is_empty() {
            advance_watch(&self.handled, passed.reached);
            return Ok(Step::Idle);
        }
        for recorded in &batch {
            if let Some((key, job)) = job_of(recorded) {
                if !self.handle(recorded, &key, &job).await? {
                    self.remember(passed);
                    advance_watch(&self.handled, passed.reached);
                    return Ok(Step::Waiting);
                }
                // A message sent is recorded at once (with what was passed over before it), so a
                // restart does not look at it again.
                if !self.advance(stored, recorded.position).await? {
                    // Someone else moved it (a lease that changed hands): read again.
                    self.remember(Passed::default());
                    return Ok(Step::Moved);
                }
                stored = recorded.position;
                passed = Passed::at(stored);
            } else {
                passed.reached = recorded.position;
                passed.count += 1;
            }
        }
        if passed.count >= RECORD_EVERY {
            if !self.advance(stored, passed.reached).await? {
                self.remember(Passed::default());
                return Ok(Step::Moved);
            }
            passed = Passed::at(passed.reached);
        }
        self.remember(passed);
        advance_watch(&self.handled, passed.reached);
        Ok(Step::Moved)
    }

    /// Where to read on from, given the checkpoint as stored now.
    fn passed_since(&self, stored: u64) -> Passed {
        let passed = *self.passed.lock().unwrap_or_else(PoisonError::into_inner);
        if passed.checkpoint == stored && passed.reached >= stored {
            passed
        } else {
            Passed::at(stored)
        }
    }

    fn remember(&self, passed: Passed) {
        *self.passed.lock().unwrap_or_else(PoisonError::into_inner) = passed;
    }

    /// Records what was passed over, so the next holder of the lease starts after it.
    async fn record_passed(&self) {
        let passed = *self.passed.lock().unwrap_or_else(PoisonError::into_inner);
        if passed.count == 0 || self.held_until.load(Ordering::Acquire) == i64::MIN {
            return;
        }
        if let Err(e) = self.advance(passed.checkpoint, passed.reached).await {
            tracing::warn!(error = %e, "mail dispatcher checkpoint not recorded; the next start reads again");
        }
    }

    async fn progress(
        &self,
        recorded: &RecordedEvent,
        job: &Job,
    ) -> Result<Progress, DispatchError> {
        let mut progress = Progress {
            done: false,
            failures: 0,
            retry_at: None,
        };
        let mut from = recorded.version + 1;
        loop {
            let page = self.store.read_stream(&recorded.stream, from, 500).await?;
            let full = page.len() == 500;
            for later in &page {
                from = later.version + 1;
                let Ok(event) = AccountEvent::from_stored(
                    &later.event_type,
                    later.schema_version,
                    later.payload.clone(),
                ) else {
                    continue;
                };
                match job.outcome(recorded.event_id, &event) {
                    Some(Outcome::Done) => {
                        progress.done = true;
                        return Ok(progress);
                    }
                    Some(Outcome::RetryAt(at)) => {
                        progress.failures += 1;
                        progress.retry_at = Some(at);
                    }
                    None => {}
                }
            }
            if !full {
                return Ok(progress);
            }
        }
    }

    /// Sends (or gives up on) one job. False when it must wait for a retry.
    async fn handle(
        &self,
        recorded: &RecordedEvent,
        key: &AccountKey,
        job: &Job,
    ) -> Result<bool, DispatchError> {
        let progress = self.progress(recorded, job).await?;
        if progress.done {
            return Ok(true);
        }
        let now = self.clock.now();
        if progress.retry_at.is_some_and(|at| at > now) {
            return Ok(false);
        }
        let attempt = progress.failures + 1;
        let account = self.accounts.load(key).await?;
        let facts = AccountFacts {
            key: key.clone(),
            name: account.profile.as_ref().and_then(|p| p.name.clone()),
        };
        let message_id = format!("<{}@spse-totp>", recorded.event_id);
        let letter: Result<Letter, &'static str> = match job {
            Job::ResetLink {
                request_id,
                email,
                client_ip,
                expires_at,
                at,
            } => {
                let live = account
                    .reset_request(*request_id)
                    .is_some_and(|r| r.status == spse_totp_domain::account::ResetStatus::Pending);
                if *expires_at <= now {
                    Err("the link expired before it could be sent")
                } else if !live {
                    Err("the link was used or replaced before it could be sent")
                } else {
                    let link = format!(
                        "{}/reset-totp?token={}",
                        self.settings.public_base_url.trim_end_matches('/'),
                        self.tokens.token(*request_id)
                    );
                    Ok(message::reset_link(
                        &facts,
                        email,
                        &link,
                        *at,
                        *expires_at,
                        client_ip.as_deref(),
                        message_id.clone(),
                        now,
                    ))
                }
            }
            Job::Notice {
                facts: notice, at, ..
            } => match account.profile.as_ref().and_then(|p| p.email.clone()) {
                None => Err("the account has no email address on record"),
                Some(to) => Ok(message::notice(
                    &facts,
                    &to,
                    notice,
                    *at,
                    recorded.metadata.client_ip.as_deref(),
                    message_id.clone(),
                    now,
                )),
            },
        };
        let outcome = match letter {
            Err(reason) => MailOutcome::Failed {
                attempt,
                error: reason.to_owned(),
                retry_at: None,
            },
            Ok(letter) => {
                let sent = match letter.build(&self.settings.from) {
                    Ok(built) => {
                        self.transport
                            .send(&built, &recorded.event_id.to_string())
                            .await
                    }
                    Err(e) => Err(e),
                };
                match sent {
                    Ok(()) => {
                        tracing::info!(stream = %recorded.stream, event_id = %recorded.event_id, "mail sent");
                        MailOutcome::Sent { message_id }
                    }
                    Err(e) => self.failure(job, attempt, e, now),
                }
            }
        };
        let waits = matches!(
            outcome,
            MailOutcome::Failed {
                retry_at: Some(_),
                ..
            }
        );
        let metadata = EventMetadata {
            causation_id: Some(recorded.event_id.to_string()),
            correlation_id: recorded.metadata.correlation_id.clone(),
            ..EventMetadata::system()
        };
        self.accounts
            .execute(key, job.record(recorded.event_id, outcome), metadata)
            .await?;
        Ok(!waits)
    }

    fn failure(
        &self,
        job: &Job,
        attempt: u32,
        error: SendError,
        now: DateTime<Utc>,
    ) -> MailOutcome {
        tracing::warn!(attempt, error = %error.message, permanent = error.permanent, "mail not sent");
        let doublings = attempt.saturating_sub(1).min(20);
        let backoff = self
            .settings
            .first_backoff
            .checked_mul(1 << doublings)
            .map_or(self.settings.max_backoff, |d| {
                d.min(self.settings.max_backoff)
            });
        let retry_at = now + backoff;
        let deadline = match job {
            Job::ResetLink { expires_at, .. } => *expires_at,
            Job::Notice { at, .. } => *at + self.settings.give_up_after,
        };
        MailOutcome::Failed {
            attempt,
            error: error.message,
            retry_at: (!error.permanent && retry_at < deadline).then_some(retry_at),
        }
    }
}

fn job_of(recorded: &RecordedEvent) -> Option<(AccountKey, Job)> {
    let key = AccountKey::from_stream_name(&recorded.stream)?;
    let event = AccountEvent::from_stored(
        &recorded.event_type,
        recorded.schema_version,
        recorded.payload.clone(),
    )
    .ok()?;
    Some((key, Job::of(&event)?))
}
