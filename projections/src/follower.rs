//! The one log follower: every background reaction of the service (the projection runner, the
//! mail sender, the expiry and vault sweeps) runs through [`follow`].
//!
//! - **Leadership**: one scheme per database, [`Lease`]. On SQLite the one server process leads;
//!   on PostgreSQL each kind of work has a session advisory lock, one instance holds it and does
//!   the work, the others follow (and take over when its connection dies).
//! - **Wake-ups**: the store's watch ([`EventStore::subscribe`]; on PostgreSQL the adapter feeds
//!   it from `LISTEN/NOTIFY`, so appends by every instance wake the leader), with polling as the
//!   fallback and as the clock for time-driven work (retries, expiry).
//! - **Checkpoints**: [`Checkpoint`] reads a position from `projection_checkpoints` and moves it
//!   only by compare-and-set, so two followers that both believe they lead (a lease changing
//!   hands) never both move it: the loser reads again.

use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use spse_totp_store::{Database, EventStore};
use tokio::sync::watch;

use crate::leadership::Lease;

/// Why a round woke up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The first round, a poll interval, or the previous round asked for more.
    Poll,
    /// The store's watch moved: events up to this position were appended.
    Appended(u64),
}

/// What a round of leading found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// There may be more to do at once: run again without waiting.
    More,
    /// Nothing left now: wait for an append or the next poll.
    Idle,
}

/// One kind of background work over the log.
#[async_trait]
pub trait Work: Send + Sync {
    type Error: std::fmt::Display + Send;

    /// What the logs call it.
    fn name(&self) -> &'static str;

    /// One round while this instance leads.
    async fn lead(&self, lease: &mut Lease, wake: Wake) -> Result<Round, Self::Error>;

    /// One round while another instance leads. The default waits a poll interval; the
    /// projection runner instead waits for the leader's announcement and publishes it.
    async fn follow(&self, _lease: &mut Lease, poll: Duration) -> Result<(), Self::Error> {
        tokio::time::sleep(poll).await;
        Ok(())
    }

    /// Called once as the follower stops, while it may still lead.
    async fn stop(&self, _lease: &mut Lease) {}
}

/// How a follower wakes.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// The longest a leader waits without a wake-up.
    pub poll: Duration,
    /// Whether appends wake it (time-driven sweeps need only the poll).
    pub on_append: bool,
}

/// Runs `work` until `shutdown` turns true: leads while `lease` allows, follows otherwise.
pub async fn follow<W: Work + ?Sized>(
    store: &dyn EventStore,
    lease: &mut Lease,
    work: &W,
    pace: Pace,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut appended = store.subscribe();
    let mut failures = 0u32;
    let mut wake = Wake::Poll;
    loop {
        if *shutdown.borrow() {
            work.stop(lease).await;
            return;
        }
        let outcome = match lease.lead().await {
            Ok(true) => work.lead(lease, wake).await.map_err(|e| e.to_string()),
            Ok(false) => tokio::select! {
                followed = work.follow(lease, pace.poll) => followed.map(|()| Round::Idle).map_err(|e| e.to_string()),
                _ = shutdown.changed() => Ok(Round::Idle),
            },
            Err(e) => Err(e.to_string()),
        };
        wake = Wake::Poll;
        let pause = match outcome {
            Ok(Round::More) => {
                failures = 0;
                continue;
            }
            Ok(Round::Idle) => {
                failures = 0;
                if !lease.is_leading() {
                    continue;
                }
                pace.poll
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                tracing::error!(work = work.name(), %error, "background step failed; retrying");
                pace.poll * failures.min(20)
            }
        };
        tokio::select! {
            changed = appended.changed(), if pace.on_append => {
                if changed.is_ok() {
                    wake = Wake::Appended(*appended.borrow_and_update());
                }
            }
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// A follower's position in the log, stored in `projection_checkpoints`.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    name: &'static str,
}

impl Checkpoint {
    pub const fn named(name: &'static str) -> Self {
        Checkpoint { name }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The stored position; a checkpoint seen for the first time starts at zero.
    pub async fn read(&self, db: &Database) -> Result<u64, sqlx::Error> {
        let position: Option<i64> =
            sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE projector = $1")
                .bind(self.name)
                .fetch_optional(&db.pool)
                .await?;
        if let Some(position) = position {
            return Ok(u64::try_from(position).unwrap_or(0));
        }
        let pool = db.write().await;
        sqlx::query(
            "INSERT INTO projection_checkpoints (projector, position, updated_at) VALUES ($1, 0, $2) \
             ON CONFLICT (projector) DO NOTHING",
        )
        .bind(self.name)
        .bind(Utc::now().timestamp_micros())
        .execute(&*pool)
        .await?;
        Ok(0)
    }

    /// The statement that moves the checkpoint from `from` to `to`: it changes one row, or none
    /// when someone else moved it first. Run it in the transaction of the work it records.
    pub async fn advance<'c, E>(&self, executor: E, from: u64, to: u64) -> Result<bool, sqlx::Error>
    where
        E: sqlx::Executor<'c, Database = sqlx::Any>,
    {
        let done = sqlx::query(
            "UPDATE projection_checkpoints SET position = $1, updated_at = $2 WHERE projector = $3 AND position = $4",
        )
        .bind(i64::try_from(to).unwrap_or(i64::MAX))
        .bind(Utc::now().timestamp_micros())
        .bind(self.name)
        .bind(i64::try_from(from).unwrap_or(i64::MAX))
        .execute(executor)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
