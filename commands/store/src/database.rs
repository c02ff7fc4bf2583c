//! Opening the database named by `SPSE_TOTP_DATABASE_URL`: the engine it names, its migrations,
//! the event store adapter for it, and a pool the rest of the service shares across engines.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::AnyPool;
use sqlx::{Connection, Executor};
use tokio::sync::OwnedMutexGuard;

use crate::{
    EventStore, InlineProjection, InlineSlot, PostgresEventStore, SqliteEventStore, StoreError,
};

/// Where readers of the log itself (the audit readers, the verifier) find it
/// ([`Database::log_source`]).
#[derive(Clone, Copy)]
pub enum LogSource<'a> {
    /// The SQL `events` table, which both engines index for history reads.
    Table(&'a AnyPool),
    /// Any other event store, read through its port.
    Store(&'a dyn EventStore),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("unsupported database URL: expected sqlite://PATH or postgres://USER@HOST/DATABASE")]
    UnsupportedUrl,
    #[error("cannot create the database folder {path}: {source}")]
    Folder {
        path: String,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("SPSE_TOTP_EVENT_STORE_URL is set, but this build has no EventStoreDB support: build with --features eventstoredb")]
    EventStoreDbNotBuilt,
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A command that only reads found nothing to read: it never creates a database, so that,
    /// run from the wrong folder, it cannot report on an empty new one as if all were well.
    #[error("no database at {0}: check SPSE_TOTP_DATABASE_URL and the working directory")]
    Missing(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Every connection to the SQLite file is durable on commit and waits for the write lock rather
/// than failing at once.
const SQLITE_PRAGMAS: &str =
    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;";

/// The WAL length (pages) at which a committing connection copies it back into the database
/// file. Every connection that writes uses it, so whichever commits past it does the copy.
/// SQLite's default, 1,000 pages, is a few groups of appends: each group dirties a few hundred
/// index pages, and the hot ones (the tables' last pages, the checkpoints) were copied again at
/// every checkpoint. At 4,000 (16 MiB of WAL) they are copied a quarter as often; paired runs of
/// `spse-totp-bench` went from 766 / 744 / 867 to 938 / 914 / 972 approvals/s.
pub const WAL_AUTOCHECKPOINT_PAGES: u32 = 4_000;

/// Serialises this process's writers to one SQLite file. SQLite lets one writer in at a time and
/// makes the others sleep and retry (1, 2, 5, 10 ms, ...), which under load costs more than the
/// writes themselves; queueing on an async mutex hands the lock over the moment it is free.
/// Another process on the same file (the command line) still meets SQLite's own busy wait.
/// The default gate, for PostgreSQL, which locks rows, lets everyone through.
///
/// Only this crate enters it: everyone else writes through [`Database::write`] or a
/// [`SqliteWriter`], which take the turn for them.
#[derive(Clone, Default)]
pub(crate) struct WriteGate(Option<Arc<tokio::sync::Mutex<()>>>);

impl WriteGate {
    pub(crate) fn exclusive() -> Self {
        WriteGate(Some(Arc::default()))
    }

    /// Waits for this process's turn to write; the turn lasts as long as the guard.
    async fn enter(&self) -> Option<OwnedMutexGuard<()>> {
        match &self.0 {
            Some(mutex) => Some(Arc::clone(mutex).lock_owned().await),
            None => None,
        }
    }

    /// The same, for a thread outside the async runtime.
    pub(crate) fn blocking_enter(&self) -> Option<OwnedMutexGuard<()>> {
        self.0
            .as_ref()
            .map(|mutex| Arc::clone(mutex).blocking_lock_owned())
    }
}

/// This process's turn to write through the shared pool ([`Database::write`]): derefs to the
/// pool, and hands the turn on when dropped. Hold it for the writes only, not for reads or IO
/// elsewhere: on SQLite every other writer of the process, the event writer included, waits.
pub struct Writing<'a> {
    pool: &'a AnyPool,
    _turn: Option<OwnedMutexGuard<()>>,
}

impl Deref for Writing<'_> {
    type Target = AnyPool;

    fn deref(&self) -> &AnyPool {
        self.pool
    }
}

/// A connection of its own to the SQLite file, for a writer that runs its statements
/// synchronously on a blocking thread (the projection runner's sink): one scheduling round trip
/// per unit of work instead of one per statement. Takes the process's write turn for each unit.
pub struct SqliteWriter {
    connection: std::sync::Mutex<rusqlite::Connection>,
    gate: WriteGate,
}

impl SqliteWriter {
    /// Runs `work` on the connection in this process's write turn. Blocks: call it from a
    /// blocking thread.
    pub fn write<T>(&self, work: impl FnOnce(&mut rusqlite::Connection) -> T) -> T {
        let _turn = self.gate.blocking_enter();
        let mut connection = self
            .connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        work(&mut connection)
    }
}

#[derive(Clone)]
pub struct Database {
    pub engine: Engine,
    /// For the read models, the vault, snapshots: SQL that both engines accept.
    pub pool: AnyPool,
    pub events: Arc<dyn EventStore>,
    write_gate: WriteGate,
    /// The URL it was opened with, for connections of their own (notification listeners).
    pub url: String,
    /// The SQLite file, for writers that open connections of their own.
    pub sqlite_path: Option<PathBuf>,
    /// Whether `events` is the SQL `events` table (false with EventStoreDB).
    log_in_table: bool,
    /// Where the read side hooks into the event writer's transaction.
    inline: Option<InlineSlot>,
}

impl Database {
    /// This process's turn to write through the shared pool. Every write to the pool goes
    /// through here (reads use [`Database::pool`] directly): on SQLite it queues behind the
    /// process's other writers, the event writer included, instead of meeting SQLite's busy
    /// wait; on PostgreSQL it is immediate.
    pub async fn write(&self) -> Writing<'_> {
        Writing {
            pool: &self.pool,
            _turn: self.write_gate.enter().await,
        }
    }

    /// A writing connection of its own to the SQLite file, taking turns with the rest of the
    /// process. `None` when the database is not SQLite.
    pub fn sqlite_writer(&self) -> Result<Option<SqliteWriter>, StoreError> {
        let Some(path) = &self.sqlite_path else {
            return Ok(None);
        };
        Ok(Some(SqliteWriter {
            connection: std::sync::Mutex::new(crate::open_write_connection(path)?),
            gate: self.write_gate.clone(),
        }))
    }

    /// Has the event writer apply `projection` in the transaction of each group of appends, when
    /// the log and the read models share one database (SQLite or PostgreSQL; not with the log in
    /// EventStoreDB). Returns whether it will.
    pub fn project_inline(&self, projection: Arc<dyn InlineProjection>) -> bool {
        match &self.inline {
            Some(slot) => {
                slot.install(projection);
                true
            }
            None => false,
        }
    }

    /// Where the audit readers find the log: the `events` table when it holds it.
    pub fn log_source(&self) -> LogSource<'_> {
        if self.log_in_table {
            LogSource::Table(&self.pool)
        } else {
            LogSource::Store(self.events.as_ref())
        }
    }

    /// As [`Database::open`], with the event log in the EventStoreDB / KurrentDB server at
    /// `event_store_url` when one is given (the SQL database then holds everything but the log).
    pub async fn open_with(
        url: &str,
        event_store_url: Option<&str>,
    ) -> Result<Self, DatabaseError> {
        let Some(event_store_url) = event_store_url else {
            return Self::open(url).await;
        };
        Self::with_eventstoredb(url, event_store_url).await
    }

    #[cfg(feature = "eventstoredb")]
    async fn with_eventstoredb(url: &str, event_store_url: &str) -> Result<Self, DatabaseError> {
        // First: the client installs the process's TLS crypto provider on connecting.
        let events = crate::EventStoreDbStore::connect(event_store_url, "").await?;
        let mut db = Self::open(url).await?;
        db.events = Arc::new(events);
        db.log_in_table = false;
        db.inline = None;
        Ok(db)
    }

    #[cfg(not(feature = "eventstoredb"))]
    async fn with_eventstoredb(_url: &str, _event_store_url: &str) -> Result<Self, DatabaseError> {
        Err(DatabaseError::EventStoreDbNotBuilt)
    }

    /// As [`Database::open_with`], for a command that only reads: a database that does not exist
    /// yet is [`DatabaseError::Missing`] instead of created. One that exists is migrated as usual.
    pub async fn open_existing(
        url: &str,
        event_store_url: Option<&str>,
    ) -> Result<Self, DatabaseError> {
        sqlx::any::install_default_drivers();
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?;
            let path = options.get_filename();
            if !path.is_file() {
                // Absolute, so an operator whose cron job ran elsewhere sees where it looked.
                let looked_at = std::env::current_dir()
                    .map(|dir| dir.join(path))
                    .unwrap_or_else(|_| path.to_path_buf());
                return Err(DatabaseError::Missing(looked_at.display().to_string()));
            }
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect_with(
                &PgConnectOptions::from_str(url)?,
            )
            .await?;
            let migrated: bool =
                sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                    .fetch_one(&mut connection)
                    .await?;
            if !migrated {
                return Err(DatabaseError::Missing(redacted(url)));
            }
        }
        Self::open_with(url, event_store_url).await
    }

    /// Opens (creating if need be) and migrates the database at `url`.
    pub async fn open(url: &str) -> Result<Self, DatabaseError> {
        sqlx::any::install_default_drivers();
        if url.starts_with("sqlite:") {
            Self::open_sqlite(url).await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::open_postgres(url).await
        } else {
            Err(DatabaseError::UnsupportedUrl)
        }
    }

    async fn open_sqlite(url: &str) -> Result<Self, DatabaseError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string());
        let path = options.get_filename().to_path_buf();
        if let Some(folder) = options
            .get_filename()
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            create_folder(folder)?;
        }
        // No ping before each use: with SQLite it is one more round trip to the connection's
        // thread for every query, and a broken file shows on the query itself.
        let native = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(8)
            .min_connections(1)
            .connect_with(options)
            .await?;
        sqlx::migrate!("../../migrations/sqlite")
            .run(&native)
            .await?;
        let write_gate = WriteGate::exclusive();
        let inline = InlineSlot::default();
        let events: Arc<dyn EventStore> = Arc::new(
            SqliteEventStore::open(native, path.clone(), write_gate.clone(), inline.clone())
                .await?,
        );
        let pool = AnyPoolOptions::new()
            .test_before_acquire(false)
            .max_connections(8)
            .after_connect(|connection, _| {
                Box::pin(async move {
                    let pragmas = format!(
                        "{SQLITE_PRAGMAS} PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES};"
                    );
                    connection.execute(pragmas.as_str()).await?;
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        Ok(Database {
            engine: Engine::Sqlite,
            url: url.to_owned(),
            pool,
            events,
            write_gate,
            sqlite_path: Some(path),
            log_in_table: true,
            inline: Some(inline),
        })
    }
}

impl Database {
    async fn open_postgres(url: &str) -> Result<Self, DatabaseError> {
        let options = PgConnectOptions::from_str(url)?;
        let native = PgPoolOptions::new()
            .max_connections(POSTGRES_POOL)
            .test_before_acquire(false)
            .before_acquire(ping_if_idle)
            .connect_with(options)
            .await?;
        // sqlx takes an advisory lock around migrations, so instances starting together
        // migrate once.
        sqlx::migrate!("../../migrations/postgres")
            .run(&native)
            .await?;
        let inline = InlineSlot::default();
        let events: Arc<dyn EventStore> =
            Arc::new(PostgresEventStore::open(native, inline.clone()).await?);
        let pool = AnyPoolOptions::new()
            .max_connections(POSTGRES_POOL)
            .test_before_acquire(false)
            .before_acquire(ping_if_idle)
            .connect(url)
            .await?;
        Ok(Database {
            engine: Engine::Postgres,
            url: url.to_owned(),
            pool,
            events,
            write_gate: WriteGate::default(),
            sqlite_path: None,
            log_in_table: true,
            inline: Some(inline),
        })
    }
}

/// A pooled PostgreSQL connection is checked (a round trip) before it is handed out only when it
/// has sat idle this long. sqlx checks before every use by default, which under load is one more
/// round trip for every query on connections that were in use a moment ago; one idle for a while
/// is the one a restarted server or a dropped link may have closed, and is checked as before.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// Both PostgreSQL pools' check before handing out a connection (see [`PING_IF_IDLE_FOR`]).
fn ping_if_idle<C: Connection>(
    connection: &mut C,
    meta: sqlx::pool::PoolConnectionMetadata,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, sqlx::Error>> + Send + '_>> {
    Box::pin(async move {
        if meta.idle_for >= PING_IF_IDLE_FOR {
            connection.ping().await?;
        }
        Ok(true)
    })
}

/// Connections per pool and instance. Two pools (the event store's and the shared one), so an
/// instance holds at most twice this; PostgreSQL's default of 100 connections fits several.
const POSTGRES_POOL: u32 = 16;

/// A database URL as it may be printed: without its password.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

fn create_folder(folder: &Path) -> Result<(), DatabaseError> {
    std::fs::create_dir_all(folder).map_err(|source| DatabaseError::Folder {
        path: folder.display().to_string(),
        source,
    })
}
