//! Statements as plain data: SQL with its arguments, and the guarded unit a group of them is
//! written in. The read side's projectors produce them (pure functions of the event, easy to test,
//! nothing to mock); they live here so that each adapter can run a unit inside its own append
//! transaction ([`crate::InlineProjection`]) without this crate depending on the read side.
//!
//! Placeholders are `$1`, `$2`, ... in both engines.

use std::borrow::Cow;
use std::fmt::Write as _;

use rusqlite::types::{Null, ToSqlOutput, Value};
use rusqlite::{Connection, ToSql};

/// An argument. A NULL keeps the type of the column it fills: PostgreSQL types every parameter,
/// and a text NULL will not go into a BIGINT column.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Int(i64),
    Text(String),
    /// Ids stored as their bytes (a UUID's 16) rather than their text form.
    Bytes(Vec<u8>),
    NullInt,
    NullText,
}

/// A Rust type a column can hold, and the NULL of that column's type.
pub trait SqlType: Into<SqlValue> {
    const NULL: SqlValue;
}

impl SqlType for i64 {
    const NULL: SqlValue = SqlValue::NullInt;
}

impl SqlType for &str {
    const NULL: SqlValue = SqlValue::NullText;
}

impl SqlType for String {
    const NULL: SqlValue = SqlValue::NullText;
}

impl From<i64> for SqlValue {
    fn from(v: i64) -> Self {
        SqlValue::Int(v)
    }
}

impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        SqlValue::Text(v.to_owned())
    }
}

impl From<String> for SqlValue {
    fn from(v: String) -> Self {
        SqlValue::Text(v)
    }
}

impl From<Vec<u8>> for SqlValue {
    fn from(v: Vec<u8>) -> Self {
        SqlValue::Bytes(v)
    }
}

impl<T: SqlType> From<Option<T>> for SqlValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(T::NULL, Into::into)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sql: Cow<'static, str>,
    pub args: Vec<SqlValue>,
}

impl Statement {
    pub fn new(sql: impl Into<Cow<'static, str>>, args: Vec<SqlValue>) -> Self {
        Statement {
            sql: sql.into(),
            args,
        }
    }
}

/// Statements written atomically. The guards run first and must each change exactly one row
/// (the checkpoint compare-and-sets); if one does not, another writer got there first and
/// nothing of the unit may be kept.
#[derive(Debug, Default)]
pub struct Unit {
    pub guards: Vec<Statement>,
    pub statements: Vec<Statement>,
}

impl ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            SqlValue::NullInt | SqlValue::NullText => ToSqlOutput::Owned(Value::from(Null)),
            SqlValue::Int(v) => ToSqlOutput::Owned(Value::Integer(*v)),
            SqlValue::Text(v) => ToSqlOutput::Borrowed(v.as_str().into()),
            SqlValue::Bytes(v) => ToSqlOutput::Borrowed(v.as_slice().into()),
        })
    }
}

/// Runs one statement on SQLite, binding `$N` to the N-th argument. SQLite numbers parameters in
/// order of first appearance, whatever their names, so each is bound by name.
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

/// Runs the unit's guards, then its statements, on a SQLite connection inside a transaction (or
/// savepoint) that the caller commits. `Ok(false)`: a guard changed no row, and the caller must
/// roll back what the guards before it wrote.
pub fn run_unit_sqlite(connection: &Connection, unit: &Unit) -> Result<bool, rusqlite::Error> {
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

/// Why a statement cannot be sent to PostgreSQL as text.
#[derive(Debug, thiserror::Error)]
#[error("statement argument ${0} holds a NUL character, which PostgreSQL text cannot hold")]
pub(crate) struct NulInText(pub(crate) usize);

/// Appends `value` as an argument of `EXECUTE`: a literal with no type of its own, which
/// PostgreSQL reads with the input function of the type its parameter was prepared with (see
/// `prepared.rs`). A cast on each argument (`'7'::bigint`) meant a look-up of the type by its name
/// for every argument of every statement, about a tenth of the writer's backend time under load.
///
/// Text goes in an escape string (`E'...'`, backslashes and quotes doubled), integers quoted (so
/// `i64::MIN` is read whole rather than negated), bytes in bytea's hex form (`E'\\x...'`); each
/// reads the same whatever `standard_conforming_strings` says, so no argument can end its literal
/// early. `Err`: text holding a NUL character, which PostgreSQL text cannot hold.
pub(crate) fn push_literal(script: &mut String, value: &SqlValue) -> Result<(), ()> {
    match value {
        SqlValue::Int(v) => {
            let _ = write!(script, "'{v}'");
        }
        SqlValue::NullInt | SqlValue::NullText => script.push_str("NULL"),
        // Hex digits only: nothing in the literal can end it early.
        SqlValue::Bytes(bytes) => {
            let _ = write!(script, "E'\\\\x{}'", hex::encode(bytes));
        }
        SqlValue::Text(text) => return push_escaped(script, text),
    }
    Ok(())
}

/// Appends `text` as an escape string of no type (`E'...'`), backslashes and quotes doubled.
/// `Err`: it holds a NUL character, which PostgreSQL text cannot hold.
pub(crate) fn push_escaped(script: &mut String, text: &str) -> Result<(), ()> {
    if text.contains('\0') {
        return Err(());
    }
    script.push_str("E'");
    for c in text.chars() {
        match c {
            '\'' => script.push_str("''"),
            '\\' => script.push_str("\\\\"),
            c => script.push(c),
        }
    }
    script.push('\'');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literals(values: &[SqlValue]) -> Vec<String> {
        values
            .iter()
            .map(|value| {
                let mut literal = String::new();
                push_literal(&mut literal, value).unwrap();
                literal
            })
            .collect()
    }

    #[test]
    fn each_argument_becomes_a_literal_its_parameter_types() {
        let values = [
            SqlValue::Int(-7),
            SqlValue::Int(i64::MIN),
            SqlValue::Text("it's a \\ test".to_owned()),
            SqlValue::NullText,
            SqlValue::NullInt,
        ];
        assert_eq!(
            literals(&values),
            [
                "'-7'",
                "'-9223372036854775808'",
                "E'it''s a \\\\ test'",
                "NULL",
                "NULL",
            ]
        );
    }

    #[test]
    fn bytes_become_a_hex_literal() {
        let values = [
            SqlValue::Bytes(vec![0x00, 0xab, 0x27]),
            SqlValue::Bytes(Vec::new()),
        ];
        assert_eq!(literals(&values), ["E'\\\\x00ab27'", "E'\\\\x'"]);
    }

    #[test]
    fn a_nul_character_is_refused_rather_than_sent() {
        let nul = SqlValue::Text("a\0b".to_owned());
        assert!(push_literal(&mut String::new(), &nul).is_err());
    }
}
