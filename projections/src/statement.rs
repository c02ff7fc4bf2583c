//! A projector's output: SQL statements with their arguments, as plain data. The types live in
//! the store crate, whose adapters run them inside their append transactions; the read side
//! builds them with [`sql!`](crate::sql).

pub use spse_totp_store::statement::{SqlType, SqlValue, Statement};

/// `sql!("UPDATE t SET a = $1 WHERE b = $2", a, b)`: a statement with its arguments.
#[macro_export]
macro_rules! sql {
    ($sql:expr $(, $arg:expr)* $(,)?) => {
        $crate::statement::Statement::new($sql, vec![$($crate::statement::SqlValue::from($arg)),*])
    };
}
