//! Test support for the PostgreSQL adapter: a fresh, empty schema per test on the server named
//! by `SPSE_TOTP_TEST_DATABASE_URL`, so tests neither share state nor need a database each.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::postgres::{PgPool, PgPoolOptions};
use uuid::Uuid;

/// The environment variable naming the PostgreSQL server tests may use.
pub const TEST_DATABASE_URL: &str = "SPSE_TOTP_TEST_DATABASE_URL";

/// The PostgreSQL URL given for tests, if any.
pub fn postgres_url() -> Option<String> {
    std::env::var(TEST_DATABASE_URL)
        .ok()
        .filter(|url| url.starts_with("postgres://") || url.starts_with("postgresql://"))
}

/// Says plainly that a PostgreSQL test did not run. Written to stderr directly rather than with
/// `eprintln!`, which the test harness captures and shows only for failing tests.
pub fn skipped(test: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: set {TEST_DATABASE_URL}=postgres://... to run the PostgreSQL tests"
    );
}

/// How old a test schema must be before [`fresh_postgres_url`] drops it. No test runs this long,
/// so what is older was left by a run that has ended.
const SCHEMAS_KEPT_FOR: Duration = Duration::from_secs(6 * 60 * 60);

/// The most old schemas one call drops, so that no test waits long for a backlog.
const SCHEMAS_DROPPED_AT_ONCE: i64 = 16;

/// Creates an empty schema on the test server and returns a URL whose connections use it.
/// `Ok(None)` when no test server is configured.
///
/// A test cannot drop its schema as it ends (nothing async runs then), so each schema's name
/// holds the second it was made (`t_<seconds>_<uuid>`), and each call first drops a few of those
/// older than [`SCHEMAS_KEPT_FOR`]: a server that runs the tests day after day does not pile up
/// thousands of them.
pub async fn fresh_postgres_url() -> Result<Option<String>, sqlx::Error> {
    let Some(base) = postgres_url() else {
        return Ok(None);
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let schema = format!("t_{}_{}", now.as_secs(), Uuid::new_v4().simple());
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&base)
        .await?;
    drop_schemas_made_before(&admin, now.saturating_sub(SCHEMAS_KEPT_FOR)).await;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await?;
    admin.close().await;
    let separator = if base.contains('?') { '&' } else { '?' };
    Ok(Some(format!(
        "{base}{separator}options=-c%20search_path%3D{schema}"
    )))
}

/// Drops test schemas whose names say they were made before `cutoff` (since the Unix epoch).
/// Best effort: another test process may be dropping the same ones.
async fn drop_schemas_made_before(admin: &PgPool, cutoff: Duration) {
    let old: Vec<String> = match sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace \
         WHERE nspname ~ '^t_[0-9]+_[0-9a-f]{32}$' \
           AND split_part(nspname, '_', 2)::bigint < $1 \
         ORDER BY nspname LIMIT $2",
    )
    .bind(i64::try_from(cutoff.as_secs()).unwrap_or(i64::MAX))
    .bind(SCHEMAS_DROPPED_AT_ONCE)
    .fetch_all(admin)
    .await
    {
        Ok(old) => old,
        Err(_) => return,
    };
    for schema in old {
        // The name matched the pattern above: digits, letters and underscores only.
        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .execute(admin)
            .await;
    }
}

/// Plays the insider with SQL access who drops the triggers that keep the event log and its
/// signed checkpoints append-only (migrations `..._events_append_only.sql` and
/// `..._audit_checkpoints.sql`), so a test can then tamper with either and check that the hash
/// chain and the checkpoints still name what changed.
pub async fn drop_append_only_guard(db: &crate::Database) -> Result<(), sqlx::Error> {
    let statements: &[&str] = match db.engine {
        crate::database::Engine::Sqlite => &[
            "DROP TRIGGER events_no_update",
            "DROP TRIGGER events_no_delete",
            "DROP TRIGGER audit_checkpoints_no_update",
            "DROP TRIGGER audit_checkpoints_no_delete",
        ],
        crate::database::Engine::Postgres => &[
            "DROP TRIGGER events_no_update_or_delete ON events",
            "DROP TRIGGER events_no_truncate ON events",
            "DROP TRIGGER audit_checkpoints_no_update_or_delete ON audit_checkpoints",
            "DROP TRIGGER audit_checkpoints_no_truncate ON audit_checkpoints",
        ],
    };
    for statement in statements {
        sqlx::query(statement).execute(&db.pool).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fresh_schema_drops_the_test_schemas_left_long_ago() {
        let Some(base) = postgres_url() else {
            return skipped("a_fresh_schema_drops_the_test_schemas_left_long_ago");
        };
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&base)
            .await
            .unwrap();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let made =
            |age: Duration| format!("t_{}_{}", (now - age).as_secs(), Uuid::new_v4().simple());
        let (old, recent) = (
            made(SCHEMAS_KEPT_FOR + Duration::from_secs(60)),
            made(Duration::from_secs(60)),
        );
        for schema in [&old, &recent] {
            sqlx::query(&format!("CREATE SCHEMA {schema}"))
                .execute(&admin)
                .await
                .unwrap();
            sqlx::query(&format!("CREATE TABLE {schema}.left_behind (n BIGINT)"))
                .execute(&admin)
                .await
                .unwrap();
        }
        let exists = |schema: String| {
            let admin = admin.clone();
            async move {
                sqlx::query_scalar::<_, bool>(
                    "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                )
                .bind(schema)
                .fetch_one(&admin)
                .await
                .unwrap()
            }
        };

        // Other old schemas may be dropped first, a few at a time.
        fresh_postgres_url().await.unwrap();
        let cutoff = now - SCHEMAS_KEPT_FOR;
        for _ in 0..100 {
            if !exists(old.clone()).await {
                break;
            }
            drop_schemas_made_before(&admin, cutoff).await;
        }
        assert!(!exists(old).await, "the schema left long ago is dropped");
        assert!(
            exists(recent.clone()).await,
            "a schema a test may still use is kept"
        );
        sqlx::query(&format!("DROP SCHEMA {recent} CASCADE"))
            .execute(&admin)
            .await
            .unwrap();
    }
}
