//! Where projected statements are written, atomically, one unit at a time.
//!
//! A unit's guards run first and must each change exactly one row (the checkpoint
//! compare-and-sets); if one does not, another runner got there first and the unit is rolled back
//! unwritten. Two sinks: SQLite, run synchronously on a blocking thread with a connection of its
//! own (one scheduling round trip per unit instead of one per statement), and any sqlx engine
//! through the shared pool.

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::TransactionBehavior;
use spse_totp_store::statement::run_unit_sqlite;
pub use spse_totp_store::statement::Unit;
use spse_totp_store::SqliteWriter;
use sqlx::AnyPool;

use crate::runner::ProjectionError;
use crate::statement::{SqlValue, Statement};

#[async_trait]
pub trait ProjectionSink: Send + Sync + 'static {
    /// Writes the unit atomically. `Ok(false)`: a guard changed no row; nothing was written.
    async fn commit(&self, unit: Unit) -> Result<bool, ProjectionError>;
}

pub struct SqliteSink {
    writer: Arc<SqliteWriter>,
}

impl SqliteSink {
    pub fn new(writer: SqliteWriter) -> Self {
        SqliteSink {
            writer: Arc::new(writer),
        }
    }
}

#[async_trait]
impl ProjectionSink for SqliteSink {
    async fn commit(&self, unit: Unit) -> Result<bool, ProjectionError> {
        let writer = Arc::clone(&self.writer);
        tokio::task::spawn_blocking(move || {
            writer.write(|connection| {
                let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
                // Dropping the transaction unwritten rolls it back.
                if !run_unit_sqlite(&tx, &unit)? {
                    return Ok(false);
                }
                tx.commit()?;
                Ok(true)
            })
        })
        .await
        .map_err(|e| ProjectionError::Undecodable(format!("projection writer stopped: {e}")))?
    }
}

pub struct PoolSink {
    pool: AnyPool,
}

impl PoolSink {
    pub fn new(pool: AnyPool) -> Self {
        PoolSink { pool }
    }
}

fn bind<'q>(
    statement: &'q Statement,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    statement
        .args
        .iter()
        .fold(sqlx::query(&statement.sql), |query, arg| match arg {
            SqlValue::NullInt => query.bind(None::<i64>),
            SqlValue::NullText => query.bind(None::<String>),
            SqlValue::Int(v) => query.bind(*v),
            SqlValue::Text(v) => query.bind(v.as_str()),
            SqlValue::Bytes(v) => query.bind(v.as_slice()),
        })
}

#[async_trait]
impl ProjectionSink for PoolSink {
    async fn commit(&self, unit: Unit) -> Result<bool, ProjectionError> {
        let mut tx = self.pool.begin().await?;
        for guard in &unit.guards {
            if bind(guard).execute(&mut *tx).await?.rows_affected() != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        for statement in &unit.statements {
            bind(statement).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}
