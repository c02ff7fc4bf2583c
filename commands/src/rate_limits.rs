//! Fixed-window counters shared by every instance on one database: an atomic upsert per hit, so
//! parallel requests on any number of instances meet one count.

use chrono::{DateTime, Duration, Utc};

use spse_totp_store::Database;

#[derive(Clone)]
pub struct RateLimits {
    db: Database,
}

impl RateLimits {
    pub fn new(db: &Database) -> Self {
        RateLimits { db: db.clone() }
    }

    /// Counts one hit on `bucket` in the window of length `window` that holds `now`; returns
    /// the count including this hit.
    pub async fn hit(
        &self,
        bucket: &str,
        window: Duration,
        now: DateTime<Utc>,
    ) -> Result<i64, sqlx::Error> {
        let length = window.num_microseconds().unwrap_or(i64::MAX).max(1);
        let start = now.timestamp_micros().div_euclid(length) * length;
        let pool = self.db.write().await;
        sqlx::query_scalar(
            "INSERT INTO rate_limits (bucket, window_start, hits, expires_at) VALUES ($1, $2, 1, $3) \
             ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limits.hits + 1 \
             RETURNING hits",
        )
        .bind(bucket)
        .bind(start)
        .bind(start.saturating_add(length))
        .fetch_one(&*pool)
        .await
    }

    /// Forgets windows that have ended.
    pub async fn sweep(&self, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
        let pool = self.db.write().await;
        Ok(sqlx::query("DELETE FROM rate_limits WHERE expires_at < $1")
            .bind(now.timestamp_micros())
            .execute(&*pool)
            .await?
            .rows_affected())
    }
}
