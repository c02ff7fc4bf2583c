//! Which instance does a kind of background work (the follower's one leadership scheme).
//!
//! With SQLite there is one server process, and it always leads. On PostgreSQL, several
//! instances share the database and exactly one of them does each kind of work (projecting,
//! sending mail, sweeping) at a time: the one holding that work's session-level advisory lock
//! on a dedicated connection. When that instance dies its connection
//! closes, PostgreSQL releases the lock, and the next follower to ask takes over. (The
//! checkpoints' compare-and-set would keep two runners correct anyway; the lease keeps them from
//! doing the same work twice and rolling half of it back.)
//!
//! Followers still answer read-your-writes waits and long-polls: the leader announces each
//! position it reaches with `NOTIFY`, and a follower publishes it to its own waiters. Since each
//! instance's event writer projects its own groups in their append transaction, a follower also
//! reads the checkpoints whenever any instance appends (the event log's own `NOTIFY`): that is
//! usually when the read models moved, and no leader announces it.

use std::time::{Duration, Instant};

use spse_totp_store::{Database, Engine};
use sqlx::postgres::PgListener;
use sqlx::AnyConnection;
use sqlx::{AnyPool, Connection};

use crate::runner::ProjectionError;

/// The channel, before the schema's name, on which the leader announces positions reached.
const PROJECTED_CHANNEL: &str = "spse_totp_projected";

/// How long a follower waits for an announcement before reading the checkpoints itself.
pub const FOLLOWER_POLL: Duration = Duration::from_millis(500);

pub enum Lease {
    /// The only process serving this database.
    Sole,
    Postgres(Box<PostgresLease>),
}

pub struct PostgresLease {
    /// Which work the lock is for: `projections`, `mail`, `sweeps`.
    role: &'static str,
    pool: AnyPool,
    url: String,
    /// A connection of this instance's own (outside the pool): the advisory lock lives and dies
    /// with it.
    connection: Option<AnyConnection>,
    leading: bool,
    checked: Option<Instant>,
    listener: Option<PgListener>,
    channel: Option<String>,
}

impl Lease {
    /// The lease of one kind of work (`role`) on `db`.
    pub fn for_database(db: &Database, role: &'static str) -> Self {
        match db.engine {
            Engine::Sqlite => Lease::Sole,
            Engine::Postgres => Lease::Postgres(Box::new(PostgresLease {
                role,
                pool: db.pool.clone(),
                url: db.url.clone(),
                connection: None,
                leading: false,
                checked: None,
                listener: None,
                channel: None,
            })),
        }
    }

    /// Whether this instance leads now: keeps the lease if it holds it and its connection is
    /// alive, otherwise tries once to take it.
    pub async fn lead(&mut self) -> Result<bool, ProjectionError> {
        match self {
            Lease::Sole => Ok(true),
            Lease::Postgres(lease) => lease.lead().await,
        }
    }

    pub fn is_leading(&self) -> bool {
        match self {
            Lease::Sole => true,
            Lease::Postgres(lease) => lease.leading,
        }
    }

    /// Tells followers the projections reached `position`.
    pub async fn announce(&mut self, position: u64) -> Result<(), ProjectionError> {
        match self {
            Lease::Sole => Ok(()),
            Lease::Postgres(lease) => {
                let channel = lease.channel().await?;
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(channel)
                    .bind(position.to_string())
                    .execute(&lease.pool)
                    .await?;
                Ok(())
            }
        }
    }

    /// As a follower: waits for the leader's next announcement, at most [`FOLLOWER_POLL`].
    /// Returns whether one came (the caller reads the checkpoints either way).
    pub async fn await_announcement(&mut self) -> Result<bool, ProjectionError> {
        match self {
            Lease::Sole => {
                tokio::time::sleep(FOLLOWER_POLL).await;
                Ok(false)
            }
            Lease::Postgres(lease) => lease.await_announcement().await,
        }
    }
}

impl PostgresLease {
    async fn channel(&mut self) -> Result<String, ProjectionError> {
        if let Some(channel) = &self.channel {
            return Ok(channel.clone());
        }
        let schema: String = sqlx::query_scalar("SELECT current_schema()::text")
            .fetch_one(&self.pool)
            .await?;
        let channel = spse_totp_store::channel_in_schema(PROJECTED_CHANNEL, &schema);
        self.channel = Some(channel.clone());
        Ok(channel)
    }

    async fn lead(&mut self) -> Result<bool, ProjectionError> {
        // Asked on every wake-up; the database is asked only now and then.
        if self.checked.is_some_and(|at| at.elapsed() < FOLLOWER_POLL) {
            return Ok(self.leading);
        }
        match self.try_lead().await {
            Ok(leading) => {
                if leading && !self.leading {
                    tracing::info!(work = self.role, "this instance now leads");
                }
                self.leading = leading;
                self.checked = Some(Instant::now());
                Ok(leading)
            }
            Err(e) => {
                // The connection is gone, and the lock with it: another instance may lead now.
                if self.leading {
                    tracing::warn!(work = self.role, error = %e, "lost the lease");
                }
                self.connection = None;
                self.leading = false;
                Err(e)
            }
        }
    }

    async fn try_lead(&mut self) -> Result<bool, ProjectionError> {
        let connection = match self.connection.as_mut() {
            Some(connection) => connection,
            None => self
                .connection
                .insert(AnyConnection::connect(&self.url).await?),
        };
        if self.leading {
            connection.ping().await?;
            return Ok(true);
        }
        // One lock per schema and work, so separate deployments on one server do not block each
        // other, and the mail need not wait for the instance that projects.
        let taken: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_lock(hashtext(current_schema() || '.spse_totp_' || $1))",
        )
        .bind(self.role)
        .fetch_one(&mut *connection)
        .await?;
        Ok(taken)
    }

    async fn await_announcement(&mut self) -> Result<bool, ProjectionError> {
        if self.listener.is_none() {
            let channel = self.channel().await?;
            let mut listener = PgListener::connect(&self.url).await?;
            listener.listen(&channel).await?;
            self.listener = Some(listener);
        }
        let Some(listener) = self.listener.as_mut() else {
            return Ok(false);
        };
        match tokio::time::timeout(FOLLOWER_POLL, listener.try_recv()).await {
            Ok(Ok(Some(_))) => Ok(true),
            Ok(Ok(None)) | Err(_) => Ok(false),
            Ok(Err(e)) => {
                self.listener = None;
                Err(e.into())
            }
        }
    }
}
