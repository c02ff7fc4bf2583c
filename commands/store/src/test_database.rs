//! Test support for the PostgreSQL adapter: a fresh, empty schema per test on the server named
//! by `SPSE_TOTP_TEST_DATABASE_URL`, so tests neither share state nor need a database each.

use sqlx::postgres::PgPoolOptions;
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

/// Creates an empty schema on the test server and returns a URL whose connections use it.
/// `Ok(None)` when no test server is configured.
pub async fn fresh_postgres_url() -> Result<Option<String>, sqlx::Error> {
    let Some(base) = postgres_url() else {
        return Ok(None);
    };
    let schema = format!("t_{}", Uuid::new_v4().simple());
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&base)
        .await?;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await?;
    admin.close().await;
    let separator = if base.contains('?') { '&' } else { '?' };
    Ok(Some(format!(
        "{base}{separator}options=-c%20search_path%3D{schema}"
    )))
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
