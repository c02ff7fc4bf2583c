//! Statements the PostgreSQL writer prepares once on its connection and then names in its
//! scripts.
//!
//! The writer sends each group as two simple-query scripts (sqlx has no pipelining of bound
//! statements). Written out with their arguments as literals, every statement of every group was
//! parsed, analysed and planned afresh while the group held the head lock: measured with
//! `pg_stat_statements` under the benchmark's load, planning took about as long as executing.
//! So a script prepares each distinct statement the first time its connection meets it
//! (`PREPARE name (types) AS ...`) and from then on runs it as `EXECUTE name(arguments)`, the
//! arguments written in as literals without casts, which PostgreSQL reads as the types the
//! `PREPARE` declared (`statement::push_literal`). PostgreSQL keeps the statement and its plan
//! for the life of the session.
//!
//! The session plans them generically (`plan_cache_mode = force_generic_plan`): each is a write
//! of one row found by its key (a checkpoint, a login, an account), an insert, the events'
//! insert from arrays, or the group's read of its streams' heads (a probe per stream and per
//! event id), whose plan does not depend on the arguments. Left to choose (`auto`), PostgreSQL
//! plans the first five runs for their arguments and then settles on whichever looked cheaper
//! while the tables were small, and in the benchmark it settled on plans several times slower.
//! A plan is made again when `ANALYZE` (autovacuum) changes a table's statistics.
//!
//! A plan kept for good must also be right when the table has grown, and a plan made while a
//! table is small (a fresh database, or `terms` early on) scans it: a scan of a few rows costs
//! less than an index probe. So the session turns table scans off (`enable_seqscan = off`,
//! which makes them the last resort rather than forbidding them), and the statements avoid the
//! joins whose plan would hash or materialise a whole table (the term inserts let the unique
//! index find the terms already there). The one join they make, of a chunk's rows with `terms`
//! to turn texts into ids, is on that unique key: planned on an empty `terms`, it is a probe of
//! the index per row. Measured, a term insert planned on a small `terms` took
//! 150 µs once the benchmark had filled it, instead of 9.
//!
//! Neither rule holds for a table that is small but not empty. With a handful of rows in
//! `login_sessions`, the decisions' `UPDATE ... FROM (VALUES ...)` of 16 or 32 rows was planned
//! as one pass over the whole table (a hash of it, or a nested loop over all its rows), whatever
//! the session's settings; kept, that plan read every login for each group once the benchmark
//! had made tens of thousands, 3 ms a run against 0.09 for 8 rows probed one by one.
//! Autovacuum's `ANALYZE` would have it planned again, but only after a minute or more. So the
//! writer plans again on its own schedule: a session is given up once the log has doubled
//! since its first group ([`SessionStatements::outgrown`]), and the next plans each statement on
//! the tables as they are then. The tables grow only with the log, so no plan is kept once the
//! log is twice what it was when the plan was made, and by a million events the statements have
//! been planned ten times.
//!
//! A prepared statement outlives the transaction that prepared it, even one rolled back, so what
//! this remembers stays true as long as every `PREPARE` it wrote ran. The writer makes sure of
//! that by how it orders its scripts and by starting a new connection (and a new
//! [`SessionStatements`]) whenever a script may have stopped between a `PREPARE` and the end.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::statement::{push_literal, NulInText, SqlValue, Statement};

/// The PostgreSQL type of a prepared statement's parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArgType {
    Bigint,
    Text,
    Bytea,
    BigintArray,
    TextArray,
    ByteaArray,
}

impl ArgType {
    fn name(self) -> &'static str {
        match self {
            ArgType::Bigint => "bigint",
            ArgType::Text => "text",
            ArgType::Bytea => "bytea",
            ArgType::BigintArray => "bigint[]",
            ArgType::TextArray => "text[]",
            ArgType::ByteaArray => "bytea[]",
        }
    }

    fn of(value: &SqlValue) -> Self {
        match value {
            SqlValue::Int(_) | SqlValue::NullInt => ArgType::Bigint,
            SqlValue::Text(_) | SqlValue::NullText => ArgType::Text,
            SqlValue::Bytes(_) => ArgType::Bytea,
        }
    }
}

/// What one connection has prepared: each statement's text, with the parameter types it was
/// prepared for (the same text can come with a NULL of another type), and its name.
#[derive(Debug, Default)]
pub(crate) struct SessionStatements {
    names: HashMap<String, Vec<(Vec<ArgType>, String)>>,
    prepared: usize,
    /// The log's head when this session's first group committed: its plans were made on tables
    /// no bigger than the log then was.
    planned_at: Option<u64>,
}

/// Below this many events a session is kept however the log grows: the tables are small either
/// way, and a fresh database would otherwise plan again at every doubling of its first events.
const PLANS_KEPT_BELOW: u64 = 1024;

impl SessionStatements {
    /// Writes `EXECUTE` of `sql` into `script`, its arguments written by `arguments` (each a
    /// literal PostgreSQL reads as the type in `types`, separated by commas). When this connection has
    /// not prepared the statement yet, writes its `PREPARE` into `prepares`, which the caller
    /// must send before `script` and in the same script.
    pub(crate) fn execute<E>(
        &mut self,
        prepares: &mut String,
        script: &mut String,
        sql: &str,
        types: &[ArgType],
        arguments: impl FnOnce(&mut String) -> Result<(), E>,
    ) -> Result<(), E> {
        // The arguments first: a statement that cannot be sent must not be recorded as
        // prepared.
        let mut written = String::new();
        arguments(&mut written)?;
        let name = self.name(prepares, sql, types);
        script.push_str("EXECUTE ");
        script.push_str(&name);
        if !types.is_empty() {
            script.push('(');
            script.push_str(&written);
            script.push(')');
        }
        script.push_str(";\n");
        Ok(())
    }

    /// [`SessionStatements::execute`] for a projector's statement, its parameters typed as its
    /// arguments are.
    pub(crate) fn execute_statement(
        &mut self,
        prepares: &mut String,
        script: &mut String,
        statement: &Statement,
    ) -> Result<(), NulInText> {
        let types: Vec<ArgType> = statement.args.iter().map(ArgType::of).collect();
        self.execute(prepares, script, &statement.sql, &types, |script| {
            for (i, arg) in statement.args.iter().enumerate() {
                if i > 0 {
                    script.push_str(", ");
                }
                push_literal(script, arg).map_err(|()| NulInText(i + 1))?;
            }
            Ok(())
        })
    }

    /// Whether the log, now at `head` after a group of this session committed, has doubled
    /// since the session's first group, so that its plans were made on tables less than half
    /// their size and it should be given up (see the module's notes).
    pub(crate) fn outgrown(&mut self, head: u64) -> bool {
        let planned_at = *self.planned_at.get_or_insert(head);
        head >= PLANS_KEPT_BELOW && head / 2 >= planned_at
    }

    /// How many statements this connection has been given to prepare: a script that changed it
    /// held a `PREPARE`.
    pub(crate) fn prepared(&self) -> usize {
        self.prepared
    }

    /// The statement's name on this connection, writing its `PREPARE` first if it has none.
    fn name(&mut self, prepares: &mut String, sql: &str, types: &[ArgType]) -> String {
        if let Some((_, name)) = self
            .names
            .get(sql)
            .and_then(|shapes| shapes.iter().find(|(t, _)| t == types))
        {
            return name.clone();
        }
        // Never reused on this connection, so no name can meet one prepared before.
        self.prepared += 1;
        let name = format!("spse_totp_writer_{}", self.prepared);
        let _ = write!(prepares, "PREPARE {name}");
        for (i, ty) in types.iter().enumerate() {
            prepares.push_str(if i == 0 { " (" } else { ", " });
            prepares.push_str(ty.name());
        }
        if !types.is_empty() {
            prepares.push(')');
        }
        let _ = writeln!(prepares, " AS {sql};");
        self.names
            .entry(sql.to_owned())
            .or_default()
            .push((types.to_vec(), name.clone()));
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(session: &mut SessionStatements, statement: &Statement) -> (String, String) {
        let (mut prepares, mut script) = (String::new(), String::new());
        session
            .execute_statement(&mut prepares, &mut script, statement)
            .unwrap();
        (prepares, script)
    }

    #[test]
    fn a_session_is_outgrown_once_the_log_has_doubled_since_its_first_group() {
        let mut session = SessionStatements::default();
        assert!(!session.outgrown(3000), "the first group sets the mark");
        assert!(!session.outgrown(5999));
        assert!(session.outgrown(6000));

        // A fresh database keeps its first session through its first thousand events.
        let mut fresh = SessionStatements::default();
        assert!(!fresh.outgrown(0));
        assert!(!fresh.outgrown(PLANS_KEPT_BELOW - 1));
        assert!(fresh.outgrown(PLANS_KEPT_BELOW));
    }

    #[test]
    fn a_statement_is_prepared_once_and_then_executed_with_its_arguments_written_in() {
        let mut session = SessionStatements::default();
        let statement = Statement::new(
            "UPDATE t SET a = $2, b = $3 WHERE c = $1",
            vec![
                SqlValue::Int(-7),
                SqlValue::Text("it's a \\ test".to_owned()),
                SqlValue::NullText,
            ],
        );
        let (prepares, script) = run(&mut session, &statement);
        assert_eq!(
            prepares,
            "PREPARE spse_totp_writer_1 (bigint, text, text) AS \
             UPDATE t SET a = $2, b = $3 WHERE c = $1;\n"
        );
        assert_eq!(
            script,
            "EXECUTE spse_totp_writer_1('-7', E'it''s a \\\\ test', NULL);\n"
        );
        let (prepares, script) = run(&mut session, &statement);
        assert_eq!(prepares, "");
        assert!(script.starts_with("EXECUTE spse_totp_writer_1("));
    }

    #[test]
    fn the_same_text_with_a_null_of_another_type_is_prepared_apart() {
        let mut session = SessionStatements::default();
        let sql = "UPDATE t SET a = $1";
        run(&mut session, &Statement::new(sql, vec![SqlValue::Int(1)]));
        let (prepares, script) = run(&mut session, &Statement::new(sql, vec![SqlValue::NullText]));
        assert_eq!(
            prepares,
            "PREPARE spse_totp_writer_2 (text) AS UPDATE t SET a = $1;\n"
        );
        assert_eq!(script, "EXECUTE spse_totp_writer_2(NULL);\n");
    }

    #[test]
    fn a_statement_without_parameters_is_executed_without_parentheses() {
        let mut session = SessionStatements::default();
        let (prepares, script) = run(&mut session, &Statement::new("SELECT 1", Vec::new()));
        assert_eq!(prepares, "PREPARE spse_totp_writer_1 AS SELECT 1;\n");
        assert_eq!(script, "EXECUTE spse_totp_writer_1;\n");
    }

    #[test]
    fn a_nul_character_is_refused_rather_than_sent() {
        let mut session = SessionStatements::default();
        let statement = Statement::new(
            "SELECT $1, $2",
            vec![SqlValue::Int(1), SqlValue::Text("a\0b".to_owned())],
        );
        let (mut prepares, mut script) = (String::new(), String::new());
        let refused = session.execute_statement(&mut prepares, &mut script, &statement);
        assert_eq!(refused.unwrap_err().0, 2);
        assert_eq!((prepares.as_str(), script.as_str()), ("", ""));
        // Not recorded either: the next script that runs it prepares it.
        let (prepares, _) = run(
            &mut session,
            &Statement::new(
                "SELECT $1, $2",
                vec![SqlValue::Int(1), SqlValue::Text("ab".to_owned())],
            ),
        );
        assert!(prepares.starts_with("PREPARE "));
    }

    /// What PostgreSQL reads from each argument as written, on a real server: the value bound
    /// would have been, whatever characters it holds.
    #[tokio::test]
    async fn postgres_reads_each_argument_as_the_value_it_was() {
        use sqlx::{Connection, Executor, Row};
        let Some(url) = crate::test_database::postgres_url() else {
            crate::test_database::skipped("postgres_reads_each_argument_as_the_value_it_was");
            return;
        };
        let text = "it's a \\ test \\' ''; -- ünïcödé 🔐 \\x00 E'\\n'";
        let bytes = vec![0x00, 0x5c, 0x27, 0xff, 0x78];
        let statement = Statement::new(
            "SELECT $1, $2, $3, $4, $5, $6, $7",
            vec![
                SqlValue::Int(i64::MIN),
                SqlValue::Int(i64::MAX),
                SqlValue::Text(text.to_owned()),
                SqlValue::Bytes(bytes.clone()),
                SqlValue::Bytes(Vec::new()),
                SqlValue::NullInt,
                SqlValue::NullText,
            ],
        );
        let mut session = SessionStatements::default();
        let (prepares, script) = run(&mut session, &statement);
        let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
        for conforming in ["on", "off"] {
            let sql =
                format!("SET standard_conforming_strings = {conforming};\n{prepares}{script}");
            let rows = connection.fetch_all(sql.as_str()).await.unwrap();
            let row = rows.last().unwrap();
            assert_eq!(row.get::<i64, _>(0), i64::MIN);
            assert_eq!(row.get::<i64, _>(1), i64::MAX);
            assert_eq!(
                row.get::<String, _>(2),
                text,
                "standard_conforming_strings {conforming}"
            );
            assert_eq!(row.get::<Vec<u8>, _>(3), bytes);
            assert_eq!(row.get::<Vec<u8>, _>(4), Vec::<u8>::new());
            assert_eq!(row.get::<Option<i64>, _>(5), None);
            assert_eq!(row.get::<Option<String>, _>(6), None);
            connection.execute("DEALLOCATE ALL").await.unwrap();
        }
    }
}
