//! A projector's output: SQL statements with their arguments, as plain data. The types live in
//! the store crate, whose adapters run them inside their append transactions; the read side
//! builds them with [`sql!`](crate::sql).

use std::collections::BTreeSet;
use std::fmt::Write as _;

pub use spse_totp_store::statement::{SqlType, SqlValue, Statement};

/// `sql!("UPDATE t SET a = $1 WHERE b = $2", a, b)`: a statement with its arguments.
#[macro_export]
macro_rules! sql {
    ($sql:expr $(, $arg:expr)* $(,)?) => {
        $crate::statement::Statement::new($sql, vec![$($crate::statement::SqlValue::from($arg)),*])
    };
}

/// The most rows one [`rows_in_chunks`] statement carries. Every statement costs PostgreSQL's
/// writer a fixed amount to set up and run, whatever its rows. While rows found their term ids by
/// sub-selects, a longer statement saved nothing: each sub-select was a subplan set up for every
/// row, and a row of `audit_log` cost 72 µs in a statement of 32 against 41-45 µs in one of up
/// to sixteen. With the join of [`insert_naming_terms`], 24,000 `audit_log` rows took 690-770 ms
/// in statements of 32 rows, 800-820 in statements of 16 and 890-900 in statements of 8 (psql,
/// the table with its nine indexes).
const MOST_ROWS: usize = 32;

/// Writes `rows` in as few statements as chunks of a power of two (up to [`MOST_ROWS`]) allow:
/// `head` (`INSERT INTO t (columns) VALUES`, or `UPDATE t SET ... FROM (VALUES`), then each row
/// as `row` spells it, each `?` standing for the row's next value, then `tail` (an `ON CONFLICT`
/// clause, the `UPDATE`'s `) AS v WHERE ...`, or nothing). Each row must have as many values as
/// `row` has `?`: a statement short of arguments fails when it runs.
///
/// Why chunks of a power of two: one statement for however many rows would be a new text, for
/// PostgreSQL's writer to prepare anew, for every size of group. Chunks give six texts in all,
/// and 13 rows take three statements (8, 4, 1).
pub fn rows_in_chunks(
    head: &str,
    row: &str,
    tail: &str,
    rows: Vec<Vec<SqlValue>>,
) -> Vec<Statement> {
    let mut statements = Vec::new();
    let mut rows = rows.into_iter();
    let mut remaining = rows.len();
    while remaining > 0 {
        let chunk = 1 << remaining.min(MOST_ROWS).ilog2();
        remaining -= chunk;
        let mut sql = String::from(head);
        let mut args = Vec::new();
        for (i, values) in rows.by_ref().take(chunk).enumerate() {
            sql.push_str(if i == 0 { " " } else { ", " });
            let mut pieces = row.split('?');
            sql.push_str(pieces.next().unwrap_or_default());
            for (n, piece) in (args.len() + 1..).zip(pieces) {
                let _ = write!(sql, "${n}{piece}");
            }
            args.extend(values);
        }
        if !tail.is_empty() {
            sql.push(' ');
            sql.push_str(tail);
        }
        statements.push(Statement::new(sql, args));
    }
    statements
}

/// Gives each of `texts` a term id, unless it has one, in as few statements as
/// [`rows_in_chunks`] makes. Sorted and without repeats, so that writers inserting terms at once
/// take the unique index's locks in one order. No join to find the terms already there:
/// PostgreSQL's writer keeps one plan for the statement, and a join's plan made while `terms` was
/// small scans it whole once it is not. The unique index answers instead, and on PostgreSQL each
/// term already there costs its identity a number, of which it has plenty.
pub fn insert_terms<'a>(texts: impl IntoIterator<Item = &'a str>) -> Vec<Statement> {
    let texts: BTreeSet<&str> = texts.into_iter().collect();
    rows_in_chunks(
        "INSERT INTO terms (term) VALUES",
        "(?)",
        "ON CONFLICT (term) DO NOTHING",
        texts.into_iter().map(|t| vec![SqlValue::from(t)]).collect(),
    )
}

/// How [`insert_naming_terms`] fills one column of its rows.
#[derive(Debug, Clone, Copy)]
pub enum Column {
    /// The row's value as it is.
    Value(&'static str),
    /// The term id of the row's text (NULL for a NULL text); [`insert_terms`] must have given
    /// the text one earlier in the unit, as [`insert_with_terms`] does.
    Term(&'static str),
}

/// [`insert_terms`] for the texts in `rows`' [`Column::Term`] columns, then
/// [`insert_naming_terms`]: a projector's rows, with every term they name.
pub fn insert_with_terms(
    table: &str,
    columns: &[Column],
    rows: Vec<Vec<SqlValue>>,
) -> Vec<Statement> {
    let mut statements = insert_terms(rows.iter().flat_map(|row| {
        columns
            .iter()
            .zip(row)
            .filter_map(|(column, value)| match (column, value) {
                (Column::Term(_), SqlValue::Text(text)) => Some(text.as_str()),
                _ => None,
            })
    }));
    statements.extend(insert_naming_terms(table, columns, rows));
    statements
}

/// Inserts `rows` into `table`, each row's values in the order of `columns`, in the chunks of
/// [`rows_in_chunks`]. The texts of [`Column::Term`] columns become their ids through one outer
/// join of the rows with `terms` per such column, not a sub-select per value: on PostgreSQL's
/// writer each sub-select was a subplan set up anew for every row, and the join took 40% less
/// time for a chunk of eight `audit_log` rows. Outer, so that a text without a term (which
/// [`insert_terms`] rules out) gives a NULL that a NOT NULL column refuses, rather than a row
/// quietly left out.
pub fn insert_naming_terms(
    table: &str,
    columns: &[Column],
    rows: Vec<Vec<SqlValue>>,
) -> Vec<Statement> {
    let mut names = Vec::with_capacity(columns.len());
    let mut selected = Vec::with_capacity(columns.len());
    let mut joins = String::new();
    for (i, column) in columns.iter().enumerate() {
        let value = format!("v.column{}", i + 1);
        match *column {
            Column::Value(name) => {
                names.push(name);
                selected.push(value);
            }
            Column::Term(name) => {
                names.push(name);
                selected.push(format!("{name}_term.id"));
                let _ = write!(
                    joins,
                    " LEFT JOIN terms {name}_term ON {name}_term.term = {value}"
                );
            }
        }
    }
    rows_in_chunks(
        &format!(
            "INSERT INTO {table} ({}) SELECT {} FROM (VALUES",
            names.join(", "),
            selected.join(", ")
        ),
        &format!("({})", vec!["?"; columns.len()].join(", ")),
        &format!(") AS v{joins}"),
        rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: i64) -> Vec<SqlValue> {
        vec![SqlValue::Int(n), SqlValue::Text(format!("t{n}"))]
    }

    #[test]
    fn rows_go_in_chunks_of_a_power_of_two_numbered_in_order() {
        let statements = rows_in_chunks(
            "INSERT INTO t (a, b) VALUES",
            "(?, (SELECT id FROM terms WHERE term = ?))",
            "ON CONFLICT DO NOTHING",
            (1..=13).map(row).collect(),
        );
        let sizes: Vec<usize> = statements.iter().map(|s| s.args.len() / 2).collect();
        assert_eq!(sizes, [8, 4, 1]);
        assert_eq!(
            statements[2].sql,
            "INSERT INTO t (a, b) VALUES ($1, (SELECT id FROM terms WHERE term = $2)) ON CONFLICT DO NOTHING"
        );
        assert!(statements[1].sql.starts_with(
            "INSERT INTO t (a, b) VALUES ($1, (SELECT id FROM terms WHERE term = $2)), \
             ($3, (SELECT id FROM terms WHERE term = $4)), ($5,"
        ));
        assert!(statements[1].sql.ends_with("$8)) ON CONFLICT DO NOTHING"));
        let args: Vec<SqlValue> = statements.into_iter().flat_map(|s| s.args).collect();
        assert_eq!(args, (1..=13).flat_map(row).collect::<Vec<_>>());
    }

    #[test]
    fn no_rows_no_statement_and_many_rows_at_most_thirty_two_a_statement() {
        assert!(rows_in_chunks("INSERT INTO t (a) VALUES", "(?)", "", Vec::new()).is_empty());
        let statements = rows_in_chunks(
            "INSERT INTO t (a) VALUES",
            "(?)",
            "",
            (0..100).map(|n| vec![SqlValue::Int(n)]).collect(),
        );
        let sizes: Vec<usize> = statements.iter().map(|s| s.args.len()).collect();
        assert_eq!(sizes, [32, 32, 32, 4]);
    }

    #[test]
    fn the_terms_of_term_columns_are_inserted_before_the_rows() {
        let rows = vec![
            vec![SqlValue::from("x"), SqlValue::from("b"), SqlValue::NullText],
            vec![
                SqlValue::from("y"),
                SqlValue::from("a"),
                SqlValue::from("b"),
            ],
        ];
        let columns = [Column::Value("v"), Column::Term("s"), Column::Term("t")];
        let statements = insert_with_terms("t", &columns, rows.clone());
        let mut expected = insert_terms(["a", "b"]);
        expected.extend(insert_naming_terms("t", &columns, rows));
        assert_eq!(statements, expected);
    }

    #[test]
    fn term_columns_are_joined_to_their_ids() {
        let statements = insert_naming_terms(
            "t",
            &[Column::Value("a"), Column::Term("b")],
            (1..=3).map(row).collect(),
        );
        assert_eq!(statements.len(), 2);
        assert_eq!(
            statements[1].sql,
            "INSERT INTO t (a, b) SELECT v.column1, b_term.id FROM (VALUES ($1, $2) ) AS v \
             LEFT JOIN terms b_term ON b_term.term = v.column2"
        );
        let args: Vec<SqlValue> = statements.into_iter().flat_map(|s| s.args).collect();
        assert_eq!(args, (1..=3).flat_map(row).collect::<Vec<_>>());
    }
}
