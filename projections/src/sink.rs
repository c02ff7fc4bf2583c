//! Where projected statements are written, atomically, one unit at a time.
//!
//! A unit's guards run first and must each change exactly one row (the checkpoint
//! compare-and-sets); if one does not, another runner got there first and the unit is rolled back
//! unwritten. Two sinks: SQLite, run synchronously on a blocking thread with a connection of its
//! own (one scheduling round trip per unit instead of one per statement), and any sqlx engine
//! through the shared pool.

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::types::{Null, ToSqlOutput, Value};
use rusqlite::{Connection, ToSql, TransactionBehavior};
use spse_totp_store::SqliteWriter;
use sqlx::AnyPool;

use crate::runner::ProjectionError;
use crate::statement::{SqlValue, Statement};

#[derive(Debug, Default)]
pub struct Unit {
    /// Each must change exactly one row, or nothing is written.
    pub guards: Vec<Statement>,
    pub statements: Vec<Statement>,
}

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

impl ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            SqlValue::NullInt | SqlValue::NullText => ToSqlOutput::Owned(Value::from(Null)),
            SqlValue::Int(v) => ToSqlOutput::Owned(Value::Integer(*v)),
            SqlValue::Text(v) => ToSqlOutput::Borrowed(v.as_str().into()),
        })
    }
}

/// Runs one statement, binding `$N` to the N-th argument. SQLite numbers parameters in order of
/// first appearance, whatever their names, so each is bound by name.
fn execute(connection: &Connection, statement: &Statement) -> Result<usize, rusqlite::Error> {
    let mut prepared = connection.prepare_cached(&statement.sql)?;
    for index in 1..=prepared.parameter_count() {
        let argument = prepared
            .parameter_name(index)
            .and_then(|name| name.strip_prefix('$'))
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| statement.args.get(n.wrapping_sub(1)))
            .ok_or(rusqlite::Error::InvalidParameterCount(
                index,
                statement.args.len(),
            ))?;
        prepared.raw_bind_parameter(index, argument)?;
    }
    prepared.raw_execute()
}

/// Runs the unit's guards, then its statements, on a connection inside a transaction (or
/// savepoint) that the caller commits. `Ok(false)`: a guard changed no row, and the caller must
/// roll back what the guards before it wrote.
pub(crate) fn run_unit(connection: &Connection, unit: &Unit) -> Result<bool, rusqlite::Error> {
    for guard in &unit.guards {
        if execute(connection, guard)? != 1 {
            return Ok(false);
        }
    }
    for statement in &unit.statements {
        execute(connection, statement)?;
    }
    Ok(true)
}

#[async_trait]
impl ProjectionSink for SqliteSink {
    async fn commit(&self, unit: Unit) -> Result<bool, ProjectionError> {
        let writer = Arc::clone(&self.writer);
        tokio::task::spawn_blocking(move || {
            writer.write(|connection| {
                let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
                // Dropping the transaction unwritten rolls it back.
                if !run_unit(&tx, &unit)? {
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
