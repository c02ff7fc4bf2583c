//! A projector's output: SQL statements with their arguments, as plain data. Projectors stay pure
//! functions of the event (easy to test, nothing to mock), and the sink that runs them can pick
//! the fastest way its engine offers.
//!
//! Placeholders are `$1`, `$2`, ... in both engines.

use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Text(String),
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

impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(SqlValue::Null, Into::into)
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
