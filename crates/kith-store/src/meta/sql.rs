//! The thin adapter that lets every statement be written once for both backends.
//!
//! Statements are written in the dialect both SQLite and PostgreSQL understand, with
//! PostgreSQL's numbered placeholders (`$1`, `$2`, ...; SQLite gets `?1`, `?2`, ... from
//! [`sqlite_text`], the only rewriting done). Where the dialects differ, the statement uses the
//! common form: `CASE` instead of `MAX(a, b)`/`GREATEST`, `CAST(.. AS BIGINT)` instead of
//! `::BIGINT`, `RETURNING` (SQLite 3.35+), `IN ($2, $3, ...)` instead of `= ANY($2)`. Row locks
//! (`FOR UPDATE`, which SQLite lacks) are replaced by [`Sql::serialize`]: an advisory
//! transaction lock on PostgreSQL, nothing on SQLite, whose write transactions all start with
//! `BEGIN IMMEDIATE` and so never interleave. Schema migrations stay per backend (`schema.rs`):
//! column types differ.
//!
//! Parameters are [`Value`]s and rows come back as owned [`Row`]s, so a statement's code sees
//! one API; each backend converts (PostgreSQL is strict about parameter types: an integer is
//! sent as the `INT4` or `INT8` the server expects).

use std::borrow::Cow;

use super::MetaError;

/// One bound parameter.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Bytes(&'a [u8]),
    Bool(bool),
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Text(v)
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(v: &'a String) -> Self {
        Value::Text(v)
    }
}

impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(v: &'a [u8]) -> Self {
        Value::Bytes(v)
    }
}

impl<'a, T: Into<Value<'a>>> From<Option<T>> for Value<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// `args![a, b, c]`: the parameters of a statement, each converted to a [`Value`].
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        (&[$($crate::meta::sql::Value::from($value)),*] as &[$crate::meta::sql::Value<'_>])
    };
}
pub(crate) use args;

/// One column value as read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
    Bool(bool),
}

impl Cell {
    fn kind(&self) -> &'static str {
        match self {
            Cell::Null => "NULL",
            Cell::Int(_) => "an integer",
            Cell::Text(_) => "text",
            Cell::Bytes(_) => "bytes",
            Cell::Bool(_) => "a boolean",
        }
    }
}

/// A row as read: its columns, in the statement's order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row(pub(crate) Vec<Cell>);

impl Row {
    /// Reads the columns left to right.
    pub(crate) fn cols(self) -> Cols {
        Cols {
            cells: self.0.into_iter(),
            index: 0,
        }
    }
}

/// The columns of one row, taken in order; each getter names the column it could not read.
pub(crate) struct Cols {
    cells: std::vec::IntoIter<Cell>,
    index: usize,
}

impl Cols {
    fn next(&mut self, want: &str) -> Result<Cell, MetaError> {
        self.index += 1;
        self.cells
            .next()
            .ok_or_else(|| MetaError::BadRow(format!("column {} missing ({want})", self.index)))
    }

    fn wrong(&self, want: &str, got: &Cell) -> MetaError {
        MetaError::BadRow(format!(
            "column {}: expected {want}, found {}",
            self.index,
            got.kind()
        ))
    }

    pub(crate) fn int(&mut self) -> Result<i64, MetaError> {
        self.opt_int()?
            .ok_or_else(|| MetaError::BadRow(format!("column {}: unexpected NULL", self.index)))
    }

    pub(crate) fn opt_int(&mut self) -> Result<Option<i64>, MetaError> {
        match self.next("an integer")? {
            Cell::Null => Ok(None),
            Cell::Int(v) => Ok(Some(v)),
            other => Err(self.wrong("an integer", &other)),
        }
    }

    pub(crate) fn text(&mut self) -> Result<String, MetaError> {
        self.opt_text()?
            .ok_or_else(|| MetaError::BadRow(format!("column {}: unexpected NULL", self.index)))
    }

    pub(crate) fn opt_text(&mut self) -> Result<Option<String>, MetaError> {
        match self.next("text")? {
            Cell::Null => Ok(None),
            Cell::Text(v) => Ok(Some(v)),
            other => Err(self.wrong("text", &other)),
        }
    }

    pub(crate) fn opt_bytes(&mut self) -> Result<Option<Vec<u8>>, MetaError> {
        match self.next("bytes")? {
            Cell::Null => Ok(None),
            Cell::Bytes(v) => Ok(Some(v)),
            other => Err(self.wrong("bytes", &other)),
        }
    }

    pub(crate) fn bytes(&mut self) -> Result<Vec<u8>, MetaError> {
        match self.next("bytes")? {
            Cell::Bytes(v) => Ok(v),
            other => Err(self.wrong("bytes", &other)),
        }
    }

    /// A boolean: PostgreSQL's `BOOLEAN`, or SQLite's integer 0/1.
    pub(crate) fn boolean(&mut self) -> Result<bool, MetaError> {
        match self.next("a boolean")? {
            Cell::Bool(v) => Ok(v),
            Cell::Int(v) => Ok(v != 0),
            other => Err(self.wrong("a boolean", &other)),
        }
    }
}

/// A connection or a transaction, as statements see it.
pub(crate) trait Sql {
    /// Runs a statement; returns the number of rows it changed.
    fn execute(
        &mut self,
        op: &'static str,
        sql: &str,
        args: &[Value<'_>],
    ) -> Result<u64, MetaError>;

    /// Runs a query (or a statement with `RETURNING`); returns every row.
    fn query(
        &mut self,
        op: &'static str,
        sql: &str,
        args: &[Value<'_>],
    ) -> Result<Vec<Row>, MetaError>;

    /// Runs several statements without parameters (migrations).
    fn batch(&mut self, op: &'static str, sql: &str) -> Result<(), MetaError>;

    /// Inside a transaction: makes other transactions that serialize on the same
    /// `(namespace, key)` wait until this one ends. PostgreSQL: an advisory transaction lock.
    /// SQLite: nothing to do, its write transactions already run one at a time.
    fn serialize(&mut self, op: &'static str, namespace: i32, key: &str) -> Result<(), MetaError>;
}

impl dyn Sql + '_ {
    /// The first row, if any.
    pub(crate) fn query_opt(
        &mut self,
        op: &'static str,
        sql: &str,
        args: &[Value<'_>],
    ) -> Result<Option<Row>, MetaError> {
        Ok(self.query(op, sql, args)?.into_iter().next())
    }

    /// The first row; none is an error.
    pub(crate) fn query_one(
        &mut self,
        op: &'static str,
        sql: &str,
        args: &[Value<'_>],
    ) -> Result<Row, MetaError> {
        self.query_opt(op, sql, args)?
            .ok_or_else(|| MetaError::BadRow(format!("no row while {op}")))
    }

    /// The single integer a query returns (a count, a sum).
    pub(crate) fn query_int(
        &mut self,
        op: &'static str,
        sql: &str,
        args: &[Value<'_>],
    ) -> Result<i64, MetaError> {
        self.query_one(op, sql, args)?.cols().int()
    }

    /// The single boolean a query returns (an `EXISTS`).
    pub(crate) fn query_bool(
        &mut self,
        op: &'static str,
        sql: &str,
        args: &[Value<'_>],
    ) -> Result<bool, MetaError> {
        self.query_one(op, sql, args)?.cols().boolean()
    }
}

/// How a backend hands out connections. Every method holds the backend's lock for the
/// duration of `f` only, and `f` does database work only (never blob I/O), so one caller's long
/// transfer never makes another wait.
pub(crate) trait Backend: Send + Sync {
    /// "sqlite" or "postgres".
    const NAME: &'static str;

    /// Runs `f` on the connection that writes (each statement commits on its own).
    fn write<T>(
        &self,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, MetaError>,
    ) -> Result<T, MetaError>;

    /// Runs read-only statements. SQLite: a connection of its own, so reads proceed while
    /// the writer is inside a transaction (WAL). PostgreSQL: the one connection.
    fn read<T>(&self, f: impl FnOnce(&mut dyn Sql) -> Result<T, MetaError>)
        -> Result<T, MetaError>;

    /// Runs `f` in one transaction (SQLite: `BEGIN IMMEDIATE`), committed when `f` returns
    /// `Ok` and rolled back otherwise.
    fn transaction<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, MetaError>,
    ) -> Result<T, MetaError>;
}

/// The statement for SQLite: `$N` placeholders become `?N` (same number, so a parameter used
/// twice is bound once).
pub(crate) fn sqlite_text(sql: &str) -> Cow<'_, str> {
    if !sql.contains('$') {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `$first, $first+1, ...`: `count` placeholders for an `IN (...)` list.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Namespaces of [`Sql::serialize`] keys.
pub(crate) mod lock {
    /// Migrations (key: empty).
    pub(crate) const MIGRATION: i32 = 0x6b69_7401;
    /// Redemptions of one ticket (key: the token).
    pub(crate) const TICKET: i32 = 0x6b69_7402;
    /// Removals of one file (key: its hash).
    pub(crate) const FILE: i32 = 0x6b69_7403;
    /// Placements with one agent (key: the agent id).
    pub(crate) const PLACEMENT: i32 = 0x6b69_7404;
    /// Anonymous items, all of them (key: empty): one eviction at a time.
    pub(crate) const ANONYMOUS: i32 = 0x6b69_7405;
    /// Chain changes of one tally (key: `uuid/side`).
    pub(crate) const TALLY: i32 = 0x6b69_7406;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_sqlite_numbered_parameters() {
        assert_eq!(
            sqlite_text("SELECT a FROM t WHERE a = $1 AND (b = $2 OR $2 IS NULL) LIMIT $10"),
            "SELECT a FROM t WHERE a = ?1 AND (b = ?2 OR ?2 IS NULL) LIMIT ?10"
        );
        assert!(matches!(sqlite_text("SELECT 1"), Cow::Borrowed(_)));
        assert_eq!(placeholders(2, 3), "$2, $3, $4");
    }

    #[test]
    fn columns_are_read_in_order_and_named_when_wrong() {
        let row = Row(vec![
            Cell::Text("a".into()),
            Cell::Null,
            Cell::Int(1),
            Cell::Bool(true),
        ]);
        let mut cols = row.cols();
        assert_eq!(cols.text().unwrap(), "a");
        assert_eq!(cols.opt_int().unwrap(), None);
        assert!(cols.boolean().unwrap());
        let err = cols.int().unwrap_err().to_string();
        assert!(err.contains("column 4: expected an integer"), "{err}");
    }
}
