//! Feeds the projectors from the event store.
//!
//! One batch of events is written as one unit. For each projector the unit first moves its
//! checkpoint with a compare-and-set (`WHERE position = <what we read>`), then carries the
//! projector's statements for the events past it: if another process (a second instance, the
//! command line) moved the checkpoint first, the set changes no row, the unit is rolled back and
//! the batch is read again. So each event changes each table once, whoever runs the projector,
//! and a crash between two batches resumes from the last commit.
//!
//! An event a projector cannot apply is parked in `projection_failures` and skipped, so one bad
//! event does not stop every read model behind it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use spse_totp_store::advance_watch;
use spse_totp_store::{Database, EventStore, RecordedEvent, StoreError};
use sqlx::AnyPool;
use tokio::sync::watch;

use crate::event::Decoded;
use crate::follower::{follow, Pace, Round, Wake, Work};
use crate::inline::InlineProjector;
use crate::leadership::Lease;
use crate::projector::Projector;
use crate::sink::{PoolSink, ProjectionSink, SqliteSink, Unit};
use crate::sql;
use crate::statement::Statement;

const BATCH: usize = 500;
/// How often a runner looks for events appended by other processes, which do not wake it.
const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("projection database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("projection database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored event does not decode: {0}")]
    Undecodable(String),
}

pub struct ProjectionRunner {
    pool: AnyPool,
    sink: Box<dyn ProjectionSink>,
    store: Arc<dyn EventStore>,
    projectors: Vec<Arc<dyn Projector>>,
    /// The position every projector has reached: reads of any table reflect the log up to it.
    /// Shared with the event writer (SQLite and PostgreSQL), which moves it when it projects a
    /// group itself.
    progress: Arc<watch::Sender<u64>>,
    /// Whether this instance projects or follows the one that does.
    lease: tokio::sync::Mutex<Lease>,
    /// The last position announced to followers.
    announced: AtomicU64,
}

enum Step {
    /// A batch was applied, or another runner applied it first: read again.
    Progressed,
    CaughtUp(u64),
}

impl ProjectionRunner {
    pub fn new(
        db: &Database,
        projectors: Vec<Arc<dyn Projector>>,
    ) -> Result<Self, ProjectionError> {
        let sink: Box<dyn ProjectionSink> = match db.sqlite_writer()? {
            Some(writer) => Box::new(SqliteSink::new(writer)),
            None => Box::new(PoolSink::new(db.pool.clone())),
        };
        let progress = Arc::new(watch::channel(0).0);
        db.project_inline(Arc::new(InlineProjector::new(
            projectors.clone(),
            Arc::clone(&progress),
        )));
        Ok(ProjectionRunner {
            pool: db.pool.clone(),
            sink,
            store: Arc::clone(&db.events),
            projectors,
            progress,
            lease: tokio::sync::Mutex::new(Lease::for_database(db, "projections")),
            announced: AtomicU64::new(0),
        })
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
            if let Step::CaughtUp(position) = self.step().await? {
                return Ok(position);
            }
        }
    }

    /// Runs until `shutdown` turns true, through the log follower: while this instance holds the
    /// lease it projects, woken by appends (its own, and on PostgreSQL every instance's) and
    /// polling as a fallback; while another instance holds it, it follows that instance's
    /// progress.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        let mut lease = self.lease.lock().await;
        let pace = Pace {
            poll: POLL,
            on_append: true,
        };
        follow(&*self.store, &mut lease, &*self, pace, shutdown).await;
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
        // A projector seen for the first time starts from zero. Written only when missing: this
        // runs before every batch.
        let missing: Vec<Statement> = self
            .projectors
            .iter()
            .filter(|p| !checkpoints.contains_key(p.name()))
            .map(|p| {
                sql!(
                    "INSERT INTO projection_checkpoints (projector, position, updated_at) VALUES ($1, 0, $2) \
                     ON CONFLICT (projector) DO NOTHING",
                    p.name(),
                    Utc::now().timestamp_micros(),
                )
            })
            .collect();
        if !missing.is_empty() {
            self.sink
                .commit(Unit {
                    guards: Vec::new(),
                    statements: missing,
                })
                .await?;
            for projector in &self.projectors {
                checkpoints.entry(projector.name().to_owned()).or_insert(0);
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
        let all: Vec<&Arc<dyn Projector>> = self.projectors.iter().collect();
        let attempt = match unit(&all, &batch, &decoded, &checkpoints) {
            Ok(unit) => self.sink.commit(unit).await.map_err(|e| e.to_string()),
            Err(reason) => Err(reason),
        };
        let committed = match attempt {
            Ok(committed) => committed,
            // Something in the batch failed: redo it event by event so only that event is parked.
            Err(reason) => {
                tracing::warn!(%reason, "projection batch failed, applying event by event");
                self.apply_carefully(&batch, &decoded, checkpoints).await?
            }
        };
        if committed {
            self.publish(last);
        }
        Ok(Step::Progressed)
    }

    fn publish(&self, position: u64) {
        advance_watch(&self.progress, position);
    }

    /// Gives each event and projector a unit of its own and parks what fails. Returns false when
    /// another runner moved a checkpoint first.
    async fn apply_carefully(
        &self,
        batch: &[RecordedEvent],
        decoded: &[Result<Decoded, String>],
        mut reached: HashMap<String, u64>,
    ) -> Result<bool, ProjectionError> {
        for (i, recorded) in batch.iter().enumerate() {
            for projector in &self.projectors {
                let name = projector.name();
                let start = reached.get(name).copied().unwrap_or(0);
                if start >= recorded.position {
                    continue;
                }
                let attempt = match unit(&[projector], &batch[i..=i], &decoded[i..=i], &reached) {
                    Ok(single) => self.sink.commit(single).await.map_err(|e| e.to_string()),
                    Err(reason) => Err(reason),
                };
                let committed = match attempt {
                    Ok(committed) => committed,
                    Err(e) => {
                        tracing::error!(projector = name, position = recorded.position, error = %e, "event parked");
                        let park = Unit {
                            guards: vec![move_checkpoint(name, start, recorded.position)],
                            statements: vec![sql!(
                                "INSERT INTO projection_failures (projector, position, event_type, error, failed_at) \
                                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (projector, position) DO NOTHING",
                                name,
                                to_i64(recorded.position),
                                recorded.event_type.as_str(),
                                e,
                                Utc::now().timestamp_micros(),
                            )],
                        };
                        self.sink.commit(park).await?
                    }
                };
                if !committed {
                    return Ok(false);
                }
                reached.insert(name.to_owned(), recorded.position);
            }
        }
        Ok(true)
    }

    /// Empties every projection and replays the log from zero into the same tables.
    pub async fn rebuild(&self) -> Result<u64, ProjectionError> {
        let mut statements = Vec::new();
        for projector in &self.projectors {
            statements.push(sql!(
                "INSERT INTO projection_checkpoints (projector, position, updated_at) VALUES ($1, 0, $2) \
                 ON CONFLICT (projector) DO UPDATE SET position = 0, updated_at = excluded.updated_at",
                projector.name(),
                Utc::now().timestamp_micros(),
            ));
            for table in projector.tables() {
                statements.push(Statement::new(format!("DELETE FROM {table}"), Vec::new()));
            }
            statements.push(sql!(
                "DELETE FROM projection_failures WHERE projector = $1",
                projector.name()
            ));
        }
        self.sink
            .commit(Unit {
                guards: Vec::new(),
                statements,
            })
            .await?;
        self.progress.send_replace(0);
        self.catch_up().await
    }
}

#[async_trait::async_trait]
impl Work for ProjectionRunner {
    type Error = ProjectionError;

    fn name(&self) -> &'static str {
        "projections"
    }

    async fn lead(&self, lease: &mut Lease, wake: Wake) -> Result<Round, ProjectionError> {
        // An append this process projected in its own transaction leaves nothing to do.
        if let Wake::Appended(appended) = wake {
            if self.position() >= appended {
                return Ok(Round::Idle);
            }
        }
        let position = self.catch_up().await?;
        if position > self.announced.load(Ordering::Acquire) {
            self.announced.store(position, Ordering::Release);
            lease.announce(position).await?;
        }
        Ok(Round::Idle)
    }

    /// Waits for the leader's announcement, an append by any instance (whose writer has most
    /// likely projected it in the same commit, which no leader announces), or a poll interval,
    /// then publishes the position every projector has reached.
    async fn follow(&self, lease: &mut Lease, _poll: Duration) -> Result<(), ProjectionError> {
        let mut appended = self.store.subscribe();
        appended.borrow_and_update();
        tokio::select! {
            announced = lease.await_announcement() => { announced?; }
            _ = appended.changed() => {}
        }
        let checkpoints = self.checkpoints().await?;
        let reached = self
            .projectors
            .iter()
            .map(|p| checkpoints.get(p.name()).copied().unwrap_or(0))
            .min()
            .unwrap_or(0);
        self.publish(reached);
        Ok(())
    }
}

/// The unit that applies `batch` to `projectors` from their checkpoints on, or why an event in it
/// cannot be projected.
pub(crate) fn unit(
    projectors: &[&Arc<dyn Projector>],
    batch: &[RecordedEvent],
    decoded: &[Result<Decoded, String>],
    checkpoints: &HashMap<String, u64>,
) -> Result<Unit, String> {
    let Some(end) = batch.last().map(|e| e.position) else {
        return Ok(Unit::default());
    };
    let mut unit = Unit::default();
    for projector in projectors {
        let name = projector.name();
        let start = checkpoints.get(name).copied().unwrap_or(0);
        if start >= end {
            continue;
        }
        unit.guards.push(move_checkpoint(name, start, end));
        let events = batch
            .iter()
            .zip(decoded)
            .filter(|(r, _)| r.position > start)
            .map(|(recorded, event)| match event {
                Ok(event) => Ok((recorded, event)),
                Err(reason) => Err(format!("event {}: {reason}", recorded.position)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        unit.statements.extend(projector.project_batch(&events));
    }
    Ok(unit)
}

fn move_checkpoint(projector: &str, from: u64, to: u64) -> Statement {
    sql!(
        "UPDATE projection_checkpoints SET position = $1, updated_at = $2 WHERE projector = $3 AND position = $4",
        to_i64(to),
        Utc::now().timestamp_micros(),
        projector,
        to_i64(from),
    )
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
