//! A projector's output: SQL statements with their arguments, as plain data. Projectors stay pure
//! functions of the event (easy to test, nothing to mock), and the sink that runs them can pick
//! the fastest way its engine offers.
//!
//! Placeholders are `$1`, `$2`, ... in both engines.

use std::borrow::Cow;

/// An argument. A NULL keeps the type of the column it fills: PostgreSQL types every parameter,
/// and a text NULL will not go into a BIGINT column.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Int(i64),
    Text(String),
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

/// `sql!("UPDATE t SET a = $1 WHERE b = $2", a, b)`: a statement with its arguments.
#[macro_export]
macro_rules! sql {
    ($sql:expr $(, $arg:expr)* $(,)?) => {
        $crate::statement::Statement::new($sql, vec![$($crate::statement::SqlValue::from($arg)),*])
    };
}
