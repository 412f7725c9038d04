//! The PostgreSQL backend, on the synchronous `postgres` client without TLS.
//!
//! The sync client drives a private tokio runtime internally: calling it on a tokio worker
//! thread panics, so the node must use `spawn_blocking` (as it does for every store call).
//!
//! [`PostgresMeta::connect`] can place the tables in a named schema (created if needed, then set
//! as the connection's `search_path`), so several kith nodes, or parallel tests, can share one
//! database without seeing each other's rows.
//!
//! One connection behind a mutex held for one statement or transaction; the server runs
//! other processes' statements side by side.

use std::error::Error;
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::BytesMut;
use postgres::config::Host;
use postgres::types::{FromSql, IsNull, ToSql, Type};
use postgres::{Client, Config, GenericClient, NoTls};

use super::schema::{migrate, POSTGRES_MIGRATIONS};
use super::sql::{Backend, Cell, Row, Sql, Value};
use super::{redact_url, MetaError};

/// [`MetaDb`](super::MetaDb) on a PostgreSQL database.
pub struct PostgresMeta {
    client: Mutex<Client>,
    target: String,
}

impl std::fmt::Debug for PostgresMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresMeta")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

fn query_err(op: &'static str) -> impl FnOnce(postgres::Error) -> MetaError {
    move |e| MetaError::Query {
        backend: "postgres",
        op,
        source: Box::new(e),
    }
}

fn describe_target(config: &Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{} (port {port})", path.display()),
            }
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost:5432 (default)".to_string()
    } else {
        hosts.join(",")
    };
    match config.get_dbname() {
        Some(db) => format!("{hosts} database '{db}'"),
        None => hosts,
    }
}

/// Whether `name` is safe to splice into SQL as a schema name.
fn valid_schema_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
        && name.len() <= 63
}

impl PostgresMeta {
    /// Connects to `url` (`postgres://user:password@host:port/db?...`, no TLS), optionally
    /// moves into `schema` (created if missing; lowercase letters, digits and `_` only), and
    /// applies pending migrations. A connect timeout of 10 s applies unless the URL sets one.
    pub fn connect(url: &str, schema: Option<&str>) -> Result<PostgresMeta, MetaError> {
        let mut config = Config::from_str(url).map_err(|e| MetaError::BadUrl {
            url: redact_url(url),
            reason: e.to_string(),
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let target = describe_target(&config);
        let mut client = config
            .connect(NoTls)
            .map_err(|e| MetaError::PostgresConnect {
                target: target.clone(),
                source: Box::new(e),
            })?;
        if let Some(schema) = schema {
            if !valid_schema_name(schema) {
                return Err(MetaError::BadSchemaName(schema.to_string()));
            }
            // Validated above: a plain identifier, so quoting it is safe.
            client
                .batch_execute(&format!(
                    "CREATE SCHEMA IF NOT EXISTS \"{schema}\"; SET search_path TO \"{schema}\""
                ))
                .map_err(query_err("selecting schema"))?;
        }
        let db = PostgresMeta {
            client: Mutex::new(client),
            target,
        };
        migrate(&db, POSTGRES_MIGRATIONS)?;
        Ok(db)
    }

    /// The server and database this is connected to (no password).
    pub fn target(&self) -> &str {
        &self.target
    }

    fn client(&self) -> MutexGuard<'_, Client> {
        // A panic inside a statement leaves the client usable (an open transaction rolls back
        // when dropped), so a poisoned lock is taken over.
        self.client.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Backend for PostgresMeta {
    const NAME: &'static str = "postgres";

    fn write<T>(
        &self,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, MetaError>,
    ) -> Result<T, MetaError> {
        f(&mut Conn(&mut *self.client()))
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, MetaError>,
    ) -> Result<T, MetaError> {
        self.write(f)
    }

    fn transaction<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, MetaError>,
    ) -> Result<T, MetaError> {
        let mut client = self.client();
        let mut tx = client.transaction().map_err(query_err(op))?;
        let out = f(&mut Conn(&mut tx))?;
        tx.commit().map_err(query_err(op))?;
        Ok(out)
    }
}

/// A client or a transaction seen through [`Sql`].
struct Conn<'c, C: GenericClient>(&'c mut C);

type BoxError = Box<dyn Error + Sync + Send>;

impl ToSql for Value<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        fn checked<T: ToSql>(v: T, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
            v.to_sql_checked(ty, out)
        }
        match *self {
            Value::Null => Ok(IsNull::Yes),
            // The server decides a parameter's type from the statement: send the width it
            // expects (a `port` or a schema version is INT4, everything else INT8).
            Value::Int(v) => match *ty {
                Type::INT2 => checked(i16::try_from(v)?, ty, out),
                Type::INT4 => checked(i32::try_from(v)?, ty, out),
                _ => checked(v, ty, out),
            },
            Value::Text(v) => checked(v, ty, out),
            Value::Bytes(v) => checked(v, ty, out),
            Value::Bool(v) => checked(v, ty, out),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        // Checked per variant in `to_sql`.
        true
    }

    postgres::types::to_sql_checked!();
}

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Cell, BoxError> {
        Ok(match *ty {
            Type::INT8 => Cell::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Cell::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Cell::Int(i16::from_sql(ty, raw)?.into()),
            Type::BOOL => Cell::Bool(bool::from_sql(ty, raw)?),
            Type::BYTEA => Cell::Bytes(Vec::<u8>::from_sql(ty, raw)?),
            _ => Cell::Text(String::from_sql(ty, raw)?),
        })
    }

    fn from_sql_null(_ty: &Type) -> Result<Cell, BoxError> {
        Ok(Cell::Null)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT8 | Type::INT4 | Type::INT2 | Type::BOOL | Type::BYTEA
        ) || <String as FromSql>::accepts(ty)
    }
}

impl<C: GenericClient> Sql for Conn<'_, C> {
    fn execute(
        &mut self,
        op: &'static str,
        sql: &str,
        args: &[Value<'_>],
    ) -> Result<u64, MetaError> {
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a as _).collect();
        self.0.execute(sql, &params).map_err(query_err(op))
    }

    fn query(
        &mut self,
        op: &'static str,
        sql: &str,
        args: &[Value<'_>],
    ) -> Result<Vec<Row>, MetaError> {
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a as _).collect();
        let rows = self.0.query(sql, &params).map_err(query_err(op))?;
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| row.try_get::<_, Cell>(i))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Row)
                    .map_err(|e| MetaError::BadRow(format!("while {op}: {e}")))
            })
            .collect()
    }

    fn batch(&mut self, op: &'static str, sql: &str) -> Result<(), MetaError> {
        self.0.batch_execute(sql).map_err(query_err(op))
    }

    fn serialize(&mut self, op: &'static str, namespace: i32, key: &str) -> Result<(), MetaError> {
        self.0
            .execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&namespace, &key],
            )
            .map_err(query_err(op))?;
        Ok(())
    }
}
