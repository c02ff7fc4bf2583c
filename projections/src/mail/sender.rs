//! Sends the mail that events call for and records each outcome as an event.
//!
//! Two halves, both run by the log follower while this instance leads the `mail` work:
//!
//! - **Feeding.** The sender reads the log after its checkpoint. For each event that calls for a
//!   message (`ResetRequested`: the link; `TotpReset`, `TotpActivated`, `TotpDisabled`,
//!   `AccountLocked` and `AccountUnlocked`: a notice) it puts a
//!   row in `mail_outbox` and moves the checkpoint by compare-and-set in the same transaction, so
//!   a message is owed exactly once. Events that call for no message are passed over without a
//!   write each: the checkpoint records them with the next message, or every [`RECORD_EVERY`]
//!   events, or when the sender stops, since on SQLite each write takes a turn at the one write
//!   lock the event writer lives on. A restart reads the unrecorded stretch again and finds
//!   nothing in it to send.
//! - **Sending.** Each row has its own next attempt, attempt count and deadline. The sender takes
//!   the rows that are due, whatever their order in the log, so a recipient whose server answers
//!   4xx for hours delays nobody else. Before each attempt it reads the account's stream after
//!   the cause: an outcome already there (a crash after the append, a message sent before an
//!   upgrade) is not sent again. It claims the row by compare-and-set on its next attempt before
//!   sending, so two senders never send one message at once. Taking the lead (at start, or
//!   from another instance) makes every owed row due at once, so a claim left by a sender that
//!   died mid-send does not hold its message back. A failure is recorded as an event
//!   with the time of the next attempt (doubling, from the Clock, so tests move time instead of
//!   sleeping), never later than the deadline; at the deadline the message is given up and that
//!   is recorded too. The only repeat is a crash between the server accepting a message and the
//!   outcome's commit, and that repeat carries the same Message-ID (derived from the event id),
//!   so mail systems see one message.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use spse_totp_domain::account::{
    MailOutcome, NoticeKind, RecordNotice, RecordResetEmail, ResetBy, ResetStatus,
};
use spse_totp_domain::{AccountCommand, AccountEvent, AccountKey, LoginId, Policy, ResetRequestId};
use spse_totp_store::{
    advance_watch, Clock, Database, EventMetadata, EventStore, RecordedEvent, StoreError,
};
use tokio::sync::watch;
use uuid::Uuid;

use super::message::{self, AccountFacts, Letter, LocalZone, NoticeFacts};
use super::transport::{MailTransport, SendError};
use crate::follower::{follow, Checkpoint, Pace, Round, Wake, Work};
use crate::leadership::Lease;
use crate::reaction::{self, ReactionError};

/// The checkpoint's name in `projection_checkpoints` (the one the dispatcher before the outbox
/// kept, so an upgrade resumes where it stopped).
pub const CHECKPOINT: Checkpoint = Checkpoint::named("mail_dispatcher");
const BATCH: usize = 200;
/// Rows taken per round; the round after takes the next ones at once.
const DUE: i64 = 100;
/// The most events passed over (sending nothing) before the checkpoint records them.
pub const RECORD_EVERY: usize = 1000;

/// Builds a reset link's token from its request id. The key lives with the command side (it
/// checks the token); the sender only needs to rebuild the link.
pub type LinkTokens = Arc<dyn Fn(ResetRequestId) -> String + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("mail outbox database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Reaction(#[from] ReactionError),
}

#[derive(Debug, Clone)]
pub struct MailSettings {
    /// The sender, `Name <address>`.
    pub from: String,
    /// Links are built on this, never on a request's Host header.
    pub public_base_url: String,
    /// The first retry's delay; each further one doubles, up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// A notice still undelivered this long after its event is given up (a link: at its expiry).
    pub give_up_after: Duration,
    /// How long a send under way keeps its row from other senders (on the service's clock).
    pub claim_for: Duration,
    /// How often the sender looks at the log (and the clock) when nothing wakes it.
    pub poll: StdDuration,
    /// The account rules the outcome events are decided under.
    pub policy: Policy,
    /// The LPSE's zone, in which letters tell times.
    pub zone: LocalZone,
}

impl Default for MailSettings {
    fn default() -> Self {
        MailSettings {
            from: "SPSE TOTP <no-reply@localhost>".to_owned(),
            public_base_url: "http://127.0.0.1:8080".to_owned(),
            first_backoff: Duration::seconds(2),
            max_backoff: Duration::minutes(10),
            give_up_after: Duration::hours(24),
            claim_for: Duration::minutes(5),
            poll: StdDuration::from_millis(250),
            policy: Policy::default(),
            zone: LocalZone::default(),
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
            AccountEvent::TotpDisabled { at, .. } => Some(Job::Notice {
                kind: NoticeKind::Disabled,
                facts: NoticeFacts::Disabled,
                at: *at,
            }),
            AccountEvent::AccountLocked {
                until,
                lock_number,
                until_unlock,
                at,
            } => Some(Job::Notice {
                kind: NoticeKind::Locked,
                facts: NoticeFacts::Locked {
                    until: *until,
                    lock_number: *lock_number,
                    until_unlock: *until_unlock,
                },
                at: *at,
            }),
            AccountEvent::AccountUnlocked { at, .. } => Some(Job::Notice {
                kind: NoticeKind::Unlocked,
                facts: NoticeFacts::Unlocked,
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

/// One row of `mail_outbox`.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Owed {
    cause_event_id: String,
    stream: String,
    version: i64,
    next_attempt_at: i64,
    deadline: i64,
}

pub struct MailSender {
    store: Arc<dyn EventStore>,
    db: Database,
    transport: MailTransport,
    tokens: LinkTokens,
    clock: Arc<dyn Clock>,
    settings: MailSettings,
    lease: tokio::sync::Mutex<Lease>,
    /// How far past the stored checkpoint this instance has looked without finding a message.
    passed: Mutex<Passed>,
    /// The position up to which every message is sent or given up, recorded or not.
    handled: watch::Sender<u64>,
    /// Whether this instance led in its last round: taking the lead releases earlier claims.
    leading: AtomicBool,
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

#[async_trait::async_trait]
impl Work for MailSender {
    type Error = MailError;

    fn name(&self) -> &'static str {
        "mail"
    }

    async fn lead(&self, _lease: &mut Lease, _wake: Wake) -> Result<Round, MailError> {
        if !self.leading.swap(true, Ordering::SeqCst) {
            if let Err(e) = self.release_claims().await {
                self.leading.store(false, Ordering::SeqCst);
                return Err(e);
            }
        }
        let fed = self.feed().await?;
        let attempted = self.send_due().await?;
        self.publish_handled().await?;
        Ok(if fed || attempted > 0 {
            Round::More
        } else {
            Round::Idle
        })
    }

    async fn follow(&self, _lease: &mut Lease, poll: StdDuration) -> Result<(), MailError> {
        self.leading.store(false, Ordering::SeqCst);
        tokio::time::sleep(poll).await;
        Ok(())
    }

    async fn stop(&self, lease: &mut Lease) {
        if lease.is_leading() {
            self.record_passed().await;
        }
    }
}

impl MailSender {
    pub fn new(
        db: &Database,
        transport: MailTransport,
        tokens: LinkTokens,
        clock: Arc<dyn Clock>,
        settings: MailSettings,
    ) -> Self {
        MailSender {
            store: Arc::clone(&db.events),
            db: db.clone(),
            transport,
            tokens,
            clock,
            settings,
            lease: tokio::sync::Mutex::new(Lease::for_database(db, "mail")),
            passed: Mutex::new(Passed::default()),
            handled: watch::channel(0).0,
            leading: AtomicBool::new(false),
        }
    }

    /// The position up to which this instance has handled every message. It stays put while
    /// another instance leads the mail, and while a message waits for its retry.
    pub fn handled(&self) -> watch::Receiver<u64> {
        self.handled.subscribe()
    }

    /// Runs until `shutdown` turns true, through the log follower.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        let mut lease = self.lease.lock().await;
        let pace = Pace {
            poll: self.settings.poll,
            on_append: true,
        };
        follow(&*self.store, &mut lease, &*self, pace, shutdown).await;
    }

    /// One round of leading, for tests and tools that drive the sender by hand.
    pub async fn round(&self) -> Result<(), MailError> {
        self.feed().await?;
        self.send_due().await?;
        self.publish_handled().await
    }

    /// Reads the log after the checkpoint and owes a row for each message it calls for. True
    /// when there may be more to read at once: a full batch, or a checkpoint moved by another
    /// instance. A shorter batch reached the head; what is appended later wakes the follower,
    /// so reading again at once would only find nothing (on PostgreSQL, four round trips).
    async fn feed(&self) -> Result<bool, MailError> {
        let stored = CHECKPOINT.read(&self.db).await?;
        let mut passed = self.passed_since(stored);
        let batch = self.store.read_all(passed.reached, BATCH).await?;
        let Some(last) = batch.last().map(|e| e.position) else {
            return Ok(false);
        };
        let owed: Vec<(&RecordedEvent, Job)> = batch
            .iter()
            .filter_map(|recorded| job_of(recorded).map(|(_, job)| (recorded, job)))
            .collect();
        if owed.is_empty() {
            passed.reached = last;
            passed.count += batch.len();
            if passed.count >= RECORD_EVERY {
                let pool = self.db.write().await;
                if !CHECKPOINT.advance(&*pool, stored, last).await? {
                    // Someone else moved it (leadership that changed hands): read again.
                    self.remember(Passed::default());
                    return Ok(true);
                }
                passed = Passed::at(last);
            }
            self.remember(passed);
            return Ok(batch.len() >= BATCH);
        }
        let now = self.clock.now();
        let pool = self.db.write().await;
        let mut tx = pool.begin().await?;
        for (recorded, job) in &owed {
            sqlx::query(
                "INSERT INTO mail_outbox (cause_event_id, stream, version, position, attempts, next_attempt_at, deadline) \
                 VALUES ($1, $2, $3, $4, 0, $5, $6) ON CONFLICT (cause_event_id) DO NOTHING",
            )
            .bind(recorded.event_id.to_string())
            .bind(&recorded.stream)
            .bind(to_i64(recorded.version))
            .bind(to_i64(recorded.position))
            .bind(now.timestamp_micros())
            .bind(self.deadline(job).timestamp_micros())
            .execute(&mut *tx)
            .await?;
        }
        if !CHECKPOINT.advance(&mut *tx, stored, last).await? {
            tx.rollback().await?;
            self.remember(Passed::default());
            return Ok(true);
        }
        tx.commit().await?;
        self.remember(Passed::at(last));
        Ok(batch.len() >= BATCH)
    }

    fn deadline(&self, job: &Job) -> DateTime<Utc> {
        match job {
            Job::ResetLink { expires_at, .. } => *expires_at,
            Job::Notice { at, .. } => *at + self.settings.give_up_after,
        }
    }

    /// Attempts every row that is due. Returns how many it took.
    async fn send_due(&self) -> Result<usize, MailError> {
        let now = self.clock.now();
        let due: Vec<Owed> = sqlx::query_as(
            "SELECT cause_event_id, stream, version, next_attempt_at, deadline FROM mail_outbox \
             WHERE next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $2",
        )
        .bind(now.timestamp_micros())
        .bind(DUE)
        .fetch_all(&self.db.pool)
        .await?;
        let mut taken = 0;
        for owed in due {
            if self.claim(&owed, now).await? {
                taken += 1;
                self.attempt(&owed, now).await?;
            }
        }
        Ok(taken)
    }

    /// Makes every owed row due now, as this instance takes the lead. A claim by a sender that
    /// died mid-send (a crash, a kill) would otherwise hold its message back for `claim_for`; a
    /// row waiting for a retry is safe to release, because each attempt first reads the stream
    /// and waits again for a retry time recorded there. The one repeat this allows (a leader that
    /// lost its lease while its send was still under way) carries the same Message-ID, as after
    /// a crash.
    async fn release_claims(&self) -> Result<(), MailError> {
        let now = self.clock.now().timestamp_micros();
        let pool = self.db.write().await;
        let released =
            sqlx::query("UPDATE mail_outbox SET next_attempt_at = $1 WHERE next_attempt_at > $1")
                .bind(now)
                .execute(&*pool)
                .await?
                .rows_affected();
        if released > 0 {
            tracing::info!(
                released,
                "owed mail made due as this instance takes the lead"
            );
        }
        Ok(())
    }

    /// Takes a due row for one attempt; false when another sender took it first.
    async fn claim(&self, owed: &Owed, now: DateTime<Utc>) -> Result<bool, MailError> {
        let pool = self.db.write().await;
        let done = sqlx::query(
            "UPDATE mail_outbox SET next_attempt_at = $1 WHERE cause_event_id = $2 AND next_attempt_at = $3",
        )
        .bind((now + self.settings.claim_for).timestamp_micros())
        .bind(&owed.cause_event_id)
        .bind(owed.next_attempt_at)
        .execute(&*pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish(&self, owed: &Owed) -> Result<(), MailError> {
        let pool = self.db.write().await;
        sqlx::query("DELETE FROM mail_outbox WHERE cause_event_id = $1")
            .bind(&owed.cause_event_id)
            .execute(&*pool)
            .await?;
        Ok(())
    }

    async fn reschedule(
        &self,
        owed: &Owed,
        attempts: u32,
        at: DateTime<Utc>,
        error: Option<&str>,
    ) -> Result<(), MailError> {
        let pool = self.db.write().await;
        sqlx::query(
            "UPDATE mail_outbox SET attempts = $1, next_attempt_at = $2, last_error = $3 WHERE cause_event_id = $4",
        )
        .bind(i64::from(attempts))
        .bind(at.timestamp_micros())
        .bind(error)
        .bind(&owed.cause_event_id)
        .execute(&*pool)
        .await?;
        Ok(())
    }

    /// Publishes how far every message is handled: up to the first one still owed, or as far as
    /// the feed has read.
    async fn publish_handled(&self) -> Result<(), MailError> {
        let reached = self
            .passed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reached;
        let first_owed: Option<i64> = sqlx::query_scalar("SELECT MIN(position) FROM mail_outbox")
            .fetch_one(&self.db.pool)
            .await?;
        let handled = match first_owed.and_then(|p| u64::try_from(p).ok()) {
            Some(owed) => reached.min(owed.saturating_sub(1)),
            None => reached,
        };
        advance_watch(&self.handled, handled);
        Ok(())
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

    /// Records what was passed over, so the next leader starts after it.
    async fn record_passed(&self) {
        let passed = *self.passed.lock().unwrap_or_else(PoisonError::into_inner);
        if passed.count == 0 {
            return;
        }
        let pool = self.db.write().await;
        if let Err(e) = CHECKPOINT
            .advance(&*pool, passed.checkpoint, passed.reached)
            .await
        {
            tracing::warn!(error = %e, "mail checkpoint not recorded; the next start reads again");
        }
    }

    async fn progress(&self, recorded: &RecordedEvent, job: &Job) -> Result<Progress, MailError> {
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

    /// One attempt at one claimed row: sends, or gives up, or finds it done; records the outcome
    /// and reschedules or retires the row.
    async fn attempt(&self, owed: &Owed, now: DateTime<Utc>) -> Result<(), MailError> {
        let version = u64::try_from(owed.version).unwrap_or(0);
        let cause = self
            .store
            .read_stream(&owed.stream, version, 1)
            .await?
            .into_iter()
            .find(|e| e.event_id.to_string() == owed.cause_event_id);
        let Some((recorded, (key, job))) =
            cause.and_then(|recorded| job_of(&recorded).map(|job| (recorded, job)))
        else {
            tracing::error!(cause = %owed.cause_event_id, "owed mail names no event that calls for one; dropped");
            return self.finish(owed).await;
        };
        let progress = self.progress(&recorded, &job).await?;
        if progress.done {
            return self.finish(owed).await;
        }
        if let Some(at) = progress.retry_at.filter(|at| *at > now) {
            // Recorded before a crash or by another sender: wait as it said.
            return self.reschedule(owed, progress.failures, at, None).await;
        }
        let attempt = progress.failures + 1;
        let deadline = DateTime::<Utc>::from_timestamp_micros(owed.deadline).unwrap_or(now);
        let outcome = self
            .send(&recorded, &key, &job, attempt, now, deadline)
            .await?;
        let retry_at = match &outcome {
            MailOutcome::Failed { retry_at, .. } => *retry_at,
            MailOutcome::Sent { .. } => None,
        };
        let error = match &outcome {
            MailOutcome::Failed { error, .. } => Some(error.clone()),
            MailOutcome::Sent { .. } => None,
        };
        let metadata = EventMetadata {
            causation_id: Some(recorded.event_id.to_string()),
            correlation_id: recorded.metadata.correlation_id.clone(),
            ..EventMetadata::system()
        };
        reaction::record(
            &*self.store,
            &key,
            &job.record(recorded.event_id, outcome),
            &metadata,
            now,
            &self.settings.policy,
        )
        .await?;
        match retry_at {
            Some(at) => self.reschedule(owed, attempt, at, error.as_deref()).await,
            None => self.finish(owed).await,
        }
    }

    /// Builds and sends the message, or says why it is given up without sending.
    async fn send(
        &self,
        recorded: &RecordedEvent,
        key: &AccountKey,
        job: &Job,
        attempt: u32,
        now: DateTime<Utc>,
        deadline: DateTime<Utc>,
    ) -> Result<MailOutcome, MailError> {
        let (account, _) = reaction::load(&*self.store, key).await?;
        let facts = AccountFacts {
            key: key.clone(),
            name: account.profile.as_ref().and_then(|p| p.name.clone()),
            zone: self.settings.zone,
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
                    .is_some_and(|r| r.status == ResetStatus::Pending);
                if *expires_at <= now {
                    Err("the link expired before it could be sent")
                } else if !live {
                    Err("the link was used or replaced before it could be sent")
                } else {
                    let link = format!(
                        "{}/reset-totp?token={}",
                        self.settings.public_base_url.trim_end_matches('/'),
                        (self.tokens)(*request_id)
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
            Job::Notice { .. } if deadline <= now => {
                Err("not delivered before its deadline; given up")
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
                    self.user_address(recorded).await?.as_deref(),
                    message_id.clone(),
                    now,
                )),
            },
        };
        Ok(match letter {
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
                    Err(e) => self.failure(attempt, e, now, deadline),
                }
            }
        })
    }

    /// The user's address for a notice: the browser of the login the event belongs to, as the
    /// portal relayed it when the login started (a typed code or a disable arrives from the
    /// portal's own address, which is not the user's); else the address the request came from.
    async fn user_address(&self, recorded: &RecordedEvent) -> Result<Option<String>, MailError> {
        if let Some(login_id) = self.login_of(recorded).await? {
            let row = crate::login_sessions::get(&self.db.pool, login_id).await?;
            if let Some(ip) = row.and_then(|row| row.client_ip) {
                return Ok(Some(ip));
            }
        }
        Ok(recorded.metadata.client_ip.clone())
    }

    /// The login an event belongs to, read from the events appended with it: a disable names
    /// it, a lock follows the rejection that names it, an activation precedes its approval.
    async fn login_of(&self, recorded: &RecordedEvent) -> Result<Option<LoginId>, MailError> {
        let from = recorded.version.saturating_sub(1);
        let around = self.store.read_stream(&recorded.stream, from, 3).await?;
        let decoded = |e: &RecordedEvent| {
            AccountEvent::from_stored(&e.event_type, e.schema_version, e.payload.clone()).ok()
        };
        let at = |version: u64| {
            around
                .iter()
                .find(|e| e.version == version)
                .and_then(decoded)
        };
        // One decision stamps its events with one instant: a neighbour with another is not ours.
        Ok(match at(recorded.version) {
            Some(AccountEvent::TotpDisabled { login_id, .. }) => Some(login_id),
            Some(AccountEvent::AccountLocked { at: locked, .. }) if recorded.version > 0 => {
                match at(recorded.version - 1) {
                    Some(AccountEvent::CodeRejected {
                        login_id,
                        at: rejected,
                        ..
                    }) if rejected == locked => login_id,
                    _ => None,
                }
            }
            Some(AccountEvent::TotpActivated { at: activated, .. }) => {
                match at(recorded.version + 1) {
                    Some(AccountEvent::LoginApproved {
                        login_id,
                        at: approved,
                        ..
                    }) if approved == activated => Some(login_id),
                    _ => None,
                }
            }
            _ => None,
        })
    }

    /// A failed attempt: retried after a doubling delay, never later than the deadline (where
    /// the next attempt gives up); a permanent failure is given up at once.
    fn failure(
        &self,
        attempt: u32,
        error: SendError,
        now: DateTime<Utc>,
        deadline: DateTime<Utc>,
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
        let retry_at = (now + backoff).min(deadline);
        MailOutcome::Failed {
            attempt,
            error: error.message,
            retry_at: (!error.permanent && now < deadline).then_some(retry_at),
        }
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
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
