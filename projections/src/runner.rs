//! Feeds the projectors from the event store.
//!
//! One batch of events is applied in one transaction. For each projector the transaction first
//! moves its checkpoint with a compare-and-set (`WHERE position = <what we read>`), then applies
//! the events past it: if another process (a second instance, the command line) moved the
//! checkpoint first, the set touches no row, the transaction is rolled back and the batch is
//! re-read. So each event changes each table once, whoever runs the projector, and a crash
//! between two batches resumes from the last commit.
//!
//! An event a projector cannot apply is parked in `projection_failures` and skipped, so one bad
//! event does not stop every read model behind it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use spse_totp_commands::{Database, EventStore, RecordedEvent, StoreError, WriteGate};
use sqlx::AnyPool;
use tokio::sync::watch;

use crate::event::Decoded;
use crate::projector::Projector;

const BATCH: usize = 500;
/// How often a runner looks for events appended by other processes, which do not wake it.
const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("projection database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored event does not decode: {0}")]
    Undecodable(String),
}

pub struct ProjectionRunner {
    pool: AnyPool,
    gate: WriteGate,
    store: Arc<dyn EventStore>,
    projectors: Vec<Arc<dyn Projector>>,
    /// The position every projector has reached: reads of any table reflect the log up to it.
    progress: watch::Sender<u64>,
}

enum Step {
    /// A batch was applied, or another runner applied it first: read again.
    Progressed,
    CaughtUp(u64),
}

impl ProjectionRunner {
    pub fn new(db: &Database, projectors: Vec<Arc<dyn Projector>>) -> Self {
        let (progress, _) = watch::channel(0);
        ProjectionRunner {
            pool: db.pool.clone(),
            gate: db.write_gate.clone(),
            store: Arc::clone(&db.events),
            projectors,
            progress,
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.progress.subscribe()
    }

    pub fn position(&self) -> u64 {
        *self.progress.borrow()
    }

    /// Applies everything in the log now. Returns the position reached.
    pub async fn catch_up(&self) -> Result<u64, ProjectionError> {
        loop {
            match self.step().await? {
                Step::Progressed => continue,
                Step::CaughtUp(position) => return Ok(position),
            }
        }
    }

    /// Runs until `shutdown` turns true: woken by appends in this process, polling for others.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut appended = self.store.subscribe();
        let mut failures = 0u32;
        loop {
            match self.catch_up().await {
                Ok(_) => failures = 0,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::error!(error = %e, "projection batch failed; retrying");
                    let backoff = POLL * failures.min(20);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
            if *shutdown.borrow() {
                return;
            }
            tokio::select! {
                _ = appended.changed() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Waits until the projections include `position` (read-your-writes), at most `timeout`.
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> bool {
        let mut progress = self.progress.subscribe();
        tokio::time::timeout(timeout, progress.wait_for(|reached| *reached >= position))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    async fn checkpoints(&self) -> Result<HashMap<String, u64>, ProjectionError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT projector, position FROM projection_checkpoints")
                .fetch_all(&self.pool)
                .await?;
        let mut checkpoints: HashMap<String, u64> = rows
            .into_iter()
            .map(|(name, position)| (name, u64::try_from(position).unwrap_or(0)))
            .collect();
        // A projector seen for the first time starts from zero. Inserted only when missing: every
        // write here is a commit, and this runs before every batch.
        for projector in &self.projectors {
            if !checkpoints.contains_key(projector.name()) {
                sqlx::query(
                    "INSERT INTO projection_checkpoints (projector, position, updated_at) VALUES ($1, 0, $2) \
                     ON CONFLICT (projector) DO NOTHING",
                )
                .bind(projector.name())
                .bind(Utc::now().timestamp_micros())
                .execute(&self.pool)
                .await?;
                checkpoints.insert(projector.name().to_owned(), 0);
            }
        }
        Ok(checkpoints)
    }

    async fn step(&self) -> Result<Step, ProjectionError> {
        let checkpoints = self.checkpoints().await?;
        let of = |p: &Arc<dyn Projector>| checkpoints.get(p.name()).copied().unwrap_or(0);
        let from = self.projectors.iter().map(of).min().unwrap_or(0);
        let batch = self.store.read_all(from, BATCH).await?;
        let Some(last) = batch.last().map(|e| e.position) else {
            self.publish(from);
            return Ok(Step::CaughtUp(from));
        };
        let decoded: Vec<Result<Decoded, String>> = batch.iter().map(Decoded::decode).collect();
        let outcome = match self
            .apply_batch(&batch, &decoded, &checkpoints, false)
            .await
        {
            Ok(outcome) => outcome,
            // Something in the batch failed: redo it event by event so only that event is parked.
            Err(e) => {
                tracing::warn!(error = %e, "projection batch failed, applying event by event");
                self.apply_batch(&batch, &decoded, &checkpoints, true)
                    .await?
            }
        };
        if outcome {
            self.publish(last);
        }
        Ok(Step::Progressed)
    }

    fn publish(&self, position: u64) {
        self.progress.send_if_modified(|p| {
            let moved = position > *p;
            *p = (*p).max(position);
            moved
        });
    }

    /// Applies a batch in one transaction; `careful` instead gives each event and projector a
    /// transaction of its own and parks what fails. Returns false when another runner moved a
    /// checkpoint first.
    async fn apply_batch(
        &self,
        batch: &[RecordedEvent],
        decoded: &[Result<Decoded, String>],
        checkpoints: &HashMap<String, u64>,
        careful: bool,
    ) -> Result<bool, ProjectionError> {
        if !careful {
            let all: Vec<&Arc<dyn Projector>> = self.projectors.iter().collect();
            return self.apply_unit(&all, batch, decoded, checkpoints).await;
        }
        let mut reached: HashMap<String, u64> = checkpoints.clone();
        for i in 0..batch.len() {
            for projector in &self.projectors {
                let unit = std::slice::from_ref(projector);
                let outcome = self
                    .apply_unit(
                        &unit.iter().collect::<Vec<_>>(),
                        &batch[i..=i],
                        &decoded[i..=i],
                        &reached,
                    )
                    .await;
                match outcome {
                    Ok(true) => {}
                    Ok(false) => return Ok(false),
                    Err(e) => {
                        let start = reached.get(projector.name()).copied().unwrap_or(0);
                        tracing::error!(projector = projector.name(), position = batch[i].position, error = %e, "event parked");
                        if !self
                            .park(projector.name(), &batch[i], &e.to_string(), start)
                            .await?
                        {
                            return Ok(false);
                        }
                    }
                }
                reached.insert(
                    projector.name().to_owned(),
                    batch[i]
                        .position
                        .max(reached.get(projector.name()).copied().unwrap_or(0)),
                );
            }
        }
        Ok(true)
    }

    async fn apply_unit(
        &self,
        projectors: &[&Arc<dyn Projector>],
        batch: &[RecordedEvent],
        decoded: &[Result<Decoded, String>],
        checkpoints: &HashMap<String, u64>,
    ) -> Result<bool, ProjectionError> {
        let Some(end) = batch.last().map(|e| e.position) else {
            return Ok(true);
        };
        let _turn = self.gate.enter().await;
        let mut tx = self.pool.begin().await?;
        for projector in projectors {
            let name = projector.name();
            let start = checkpoints.get(name).copied().unwrap_or(0);
            if start >= end {
                continue;
            }
            // Compare-and-set first: it is also the statement that takes the write lock.
            if !move_checkpoint(&mut tx, name, start, end).await? {
                tx.rollback().await?;
                return Ok(false);
            }
            for (recorded, event) in batch
                .iter()
                .zip(decoded)
                .filter(|(r, _)| r.position > start)
            {
                match event {
                    Ok(event) => projector.apply(&mut tx, recorded, event).await?,
                    Err(reason) => return Err(ProjectionError::Undecodable(reason.clone())),
                }
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Records a failed event and moves the projector's checkpoint past it.
    async fn park(
        &self,
        projector: &str,
        event: &RecordedEvent,
        reason: &str,
        start: u64,
    ) -> Result<bool, ProjectionError> {
        let _turn = self.gate.enter().await;
        let mut tx = self.pool.begin().await?;
        if !move_checkpoint(&mut tx, projector, start, event.position).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO projection_failures (projector, position, event_type, error, failed_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (projector, position) DO NOTHING",
        )
        .bind(projector)
        .bind(to_i64(event.position))
        .bind(&event.event_type)
        .bind(reason)
        .bind(Utc::now().timestamp_micros())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Empties every projection and replays the log from zero into the same tables.
    pub async fn rebuild(&self) -> Result<u64, ProjectionError> {
        let turn = self.gate.enter().await;
        let mut tx = self.pool.begin().await?;
        for projector in &self.projectors {
            sqlx::query(
                "INSERT INTO projection_checkpoints (projector, position, updated_at) VALUES ($1, 0, $2) \
                 ON CONFLICT (projector) DO UPDATE SET position = 0, updated_at = excluded.updated_at",
            )
            .bind(projector.name())
            .bind(Utc::now().timestamp_micros())
            .execute(&mut *tx)
            .await?;
            for table in projector.tables() {
                sqlx::query(&format!("DELETE FROM {table}"))
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("DELETE FROM projection_failures WHERE projector = $1")
                .bind(projector.name())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        drop(turn);
        self.progress.send_replace(0);
        self.catch_up().await
    }
}

async fn move_checkpoint(
    connection: &mut sqlx::AnyConnection,
    projector: &str,
    from: u64,
    to: u64,
) -> Result<bool, ProjectionError> {
    let moved = sqlx::query(
        "UPDATE projection_checkpoints SET position = $1, updated_at = $2 WHERE projector = $3 AND position = $4",
    )
    .bind(to_i64(to))
    .bind(Utc::now().timestamp_micros())
    .bind(projector)
    .bind(to_i64(from))
    .execute(connection)
    .await?;
    Ok(moved.rows_affected() == 1)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
