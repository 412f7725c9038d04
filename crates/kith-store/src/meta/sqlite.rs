//! The SQLite backend: one file in the data dir, shared safely by a CLI process and a node.
//!
//! WAL mode lets readers proceed while a writer commits; `busy_timeout` makes a writer wait for
//! the other process's transaction instead of failing at once; `synchronous = FULL` makes a
//! commit durable before it returns (WAL's default `NORMAL` may lose the last commits on power
//! loss, which would break "nothing is acknowledged before it is durable").
//!
//! Two connections, each behind its own mutex held for one statement or transaction: one
//! writes, one only reads (`query_only`). A reader in this process therefore never waits for
//! a write transaction of this process (a large file's item rows, a commit's fsync).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params_from_iter, Connection, TransactionBehavior};

use super::schema::{migrate, SQLITE_MIGRATIONS};
use super::sql::{sqlite_text, Backend, Cell, Row, Sql, Value};
use super::{DriverError, MetaError, BUSY_TIMEOUT};

/// Prepared statements kept per connection (every statement text kith uses fits).
const STATEMENT_CACHE: usize = 128;

/// [`MetaDb`](super::MetaDb) on an SQLite file.
#[derive(Debug)]
pub struct SqliteMeta {
    write: Mutex<Connection>,
    read: Mutex<Connection>,
    path: PathBuf,
}

fn query_err(op: &'static str) -> impl FnOnce(rusqlite::Error) -> MetaError {
    move |e| MetaError::Query {
        backend: "sqlite",
        op,
        source: Box::new(e),
    }
}

fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic inside a statement leaves the connection usable (a transaction rolls back when
    // dropped), so a poisoned lock is taken over rather than failing every later call.
    conn.lock().unwrap_or_else(|e| e.into_inner())
}

impl SqliteMeta {
    /// Opens (creating if needed, parent directories included) the database at `path`, sets WAL
    /// mode and the busy timeout, and applies pending migrations.
    pub fn open(path: &Path) -> Result<SqliteMeta, MetaError> {
        let open_err = |source: DriverError| MetaError::SqliteOpen {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| open_err(Box::new(e)))?;
        }
        let connect = || -> Result<Connection, DriverError> {
            let conn = Connection::open(path)?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            Ok(conn)
        };
        let write = connect().map_err(open_err)?;
        let mode: String = write
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(|e| open_err(Box::new(e)))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(open_err(
                format!("could not switch to WAL mode (got '{mode}')").into(),
            ));
        }
        write
            .pragma_update(None, "synchronous", "FULL")
            .and_then(|()| write.pragma_update(None, "foreign_keys", "ON"))
            .map_err(|e| open_err(Box::new(e)))?;
        let read = connect().map_err(open_err)?;
        read.pragma_update(None, "query_only", "ON")
            .map_err(|e| open_err(Box::new(e)))?;
        let db = SqliteMeta {
            write: Mutex::new(write),
            read: Mutex::new(read),
            path: path.to_path_buf(),
        };
        migrate(&db, SQLITE_MIGRATIONS)?;
        Ok(db)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Backend for SqliteMeta {
    const NAME: &'static str = "sqlite";

    fn write<T>(
        &self,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, MetaError>,
    ) -> Result<T, MetaError> {
        f(&mut Conn(&lock(&self.write)))
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, MetaError>,
    ) -> Result<T, MetaError> {
        f(&mut Conn(&lock(&self.read)))
    }

    fn transaction<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, MetaError>,
    ) -> Result<T, MetaError> {
        let mut conn = lock(&self.write);
        // IMMEDIATE takes the write lock up front: a transaction that reads and then writes
        // (a ticket redemption, a bounded placement) sees no other writer in between.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(query_err(op))?;
        let out = f(&mut Conn(&tx))?;
        tx.commit().map_err(query_err(op))?;
        Ok(out)
    }
}

/// A connection (or a transaction, which derefs to one) seen through [`Sql`].
struct Conn<'c>(&'c Connection);

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Value::Null => ValueRef::Null,
            Value::Int(v) => ValueRef::Integer(v),
            Value::Text(v) => ValueRef::Text(v.as_bytes()),
            Value::Bytes(v) => ValueRef::Blob(v),
            Value::Bool(v) => ValueRef::Integer(i64::from(v)),
        }))
    }
}

fn cell(value: ValueRef<'_>) -> Result<Cell, MetaError> {
    Ok(match value {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(v) => Cell::Int(v),
        ValueRef::Text(v) => Cell::Text(
            String::from_utf8(v.to_vec())
                .map_err(|_| MetaError::BadRow("text column is not UTF-8".into()))?,
        ),
        ValueRef::Blob(v) => Cell::Bytes(v.to_vec()),
        ValueRef::Real(_) => return Err(MetaError::BadRow("unexpected REAL column".into())),
    })
}

impl Sql for Conn<'_> {
    fn execute(
        &mut self,
        op: &'static str,
        sql: &str,
        args: &[Value<'_>],
    ) -> Result<u64, MetaError> {
        let mut stmt = self
            .0
            .prepare_cached(&sqlite_text(sql))
            .map_err(query_err(op))?;
        let changed = stmt
            .execute(params_from_iter(args))
            .map_err(query_err(op))?;
        Ok(changed as u64)
    }

    fn query(
        &mut self,
        op: &'static str,
        sql: &str,
        args: &[Value<'_>],
    ) -> Result<Vec<Row>, MetaError> {
        let mut stmt = self
            .0
            .prepare_cached(&sqlite_text(sql))
            .map_err(query_err(op))?;
        let width = stmt.column_count();
        let mut rows = stmt.query(params_from_iter(args)).map_err(query_err(op))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(query_err(op))? {
            let mut cells = Vec::with_capacity(width);
            for index in 0..width {
                cells.push(cell(row.get_ref(index).map_err(query_err(op))?)?);
            }
            out.push(Row(cells));
        }
        Ok(out)
    }

    fn batch(&mut self, op: &'static str, sql: &str) -> Result<(), MetaError> {
        self.0.execute_batch(sql).map_err(query_err(op))
    }

    fn serialize(&mut self, _op: &'static str, _ns: i32, _key: &str) -> Result<(), MetaError> {
        Ok(())
    }
}
