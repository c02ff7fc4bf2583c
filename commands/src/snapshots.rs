//! Folded account states, saved every so often so that loading an account costs the same at
//! version 100,000 as at version 10. A snapshot is a cache: delete them all and nothing is lost.

use serde::{de::DeserializeOwned, Serialize};

use spse_totp_store::Database;

/// Bumped whenever the folded state's shape changes; older snapshots are then ignored.
pub const SCHEMA: i64 = 1;

#[derive(Clone)]
pub struct SnapshotStore {
    db: Database,
}

impl SnapshotStore {
    pub fn new(db: &Database) -> Self {
        SnapshotStore { db: db.clone() }
    }

    /// The latest usable snapshot of `stream`: its state and the version it was folded up to.
    pub async fn load<S: DeserializeOwned>(
        &self,
        stream: &str,
    ) -> Result<Option<(S, u64)>, sqlx::Error> {
        let row: Option<(i64, String)> = sqlx::query_as(
            "SELECT version, state FROM snapshots WHERE stream = $1 AND schema = $2",
        )
        .bind(stream)
        .bind(SCHEMA)
        .fetch_optional(&self.db.pool)
        .await?;
        Ok(row.and_then(|(version, state)| {
            // An unreadable snapshot is only a slower load: fall back to the log.
            let state = serde_json::from_str(&state).ok()?;
            Some((state, u64::try_from(version).ok()?))
        }))
    }

    pub async fn save<S: Serialize>(
        &self,
        stream: &str,
        version: u64,
        state: &S,
    ) -> Result<(), sqlx::Error> {
        let Ok(state) = serde_json::to_string(state) else {
            return Ok(());
        };
        let pool = self.db.write().await;
        sqlx::query(
            "INSERT INTO snapshots (stream, version, schema, state) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (stream) DO UPDATE SET version = excluded.version, schema = excluded.schema, \
             state = excluded.state WHERE excluded.version > snapshots.version",
        )
        .bind(stream)
        .bind(i64::try_from(version).unwrap_or(i64::MAX))
        .bind(SCHEMA)
        .bind(state)
        .execute(&*pool)
        .await?;
        Ok(())
    }
}
