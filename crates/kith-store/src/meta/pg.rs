//! The PostgreSQL backend, on the synchronous `postgres` client without TLS.
//!
//! The sync client drives a private tokio runtime internally: calling it on a tokio worker
//! thread panics, so the node must use `spawn_blocking` (as it does for every store call).
//!
//! [`PostgresMeta::connect`] can place the tables in a named schema (created if needed, then set
//! as the connection's `search_path`), so several kith nodes, or parallel tests, can share one
//! database without seeing each other's rows.

use std::str::FromStr;
use std::time::Duration;

use postgres::config::Host;
use postgres::{Client, Config, GenericClient, NoTls, Row};

use super::{
    decode_hash, decode_record, redact_url, size_to_db, FileRecord, MetaDb, MetaError,
    POSTGRES_MIGRATIONS,
};
use crate::address::ContentHash;

/// Key of the advisory lock that serialises migrations across processes.
const MIGRATION_LOCK: i64 = 0x6b69_7468_0001;

/// How many item rows go into one INSERT.
const ITEM_BATCH: usize = 10_000;

/// [`MetaDb`] on a PostgreSQL database.
pub struct PostgresMeta {
    client: Client,
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

fn record_from_row(row: &Row) -> Result<FileRecord, MetaError> {
    let bad = |e: postgres::Error| MetaError::BadRow(e.to_string());
    decode_record(
        &row.try_get::<_, String>(0).map_err(bad)?,
        &row.try_get::<_, String>(1).map_err(bad)?,
        row.try_get::<_, i64>(2).map_err(bad)?,
        row.try_get::<_, Option<String>>(3).map_err(bad)?,
        row.try_get::<_, i64>(4).map_err(bad)?,
    )
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
        let client = config
            .connect(NoTls)
            .map_err(|e| MetaError::PostgresConnect {
                target: target.clone(),
                source: Box::new(e),
            })?;
        let mut db = PostgresMeta { client, target };
        if let Some(schema) = schema {
            if !valid_schema_name(schema) {
                return Err(MetaError::BadSchemaName(schema.to_string()));
            }
            // Validated above: a plain identifier, so quoting it is safe.
            db.client
                .batch_execute(&format!(
                    "CREATE SCHEMA IF NOT EXISTS \"{schema}\"; SET search_path TO \"{schema}\""
                ))
                .map_err(query_err("selecting schema"))?;
        }
        db.migrate()?;
        Ok(db)
    }

    /// The server and database this is connected to (no password).
    pub fn target(&self) -> &str {
        &self.target
    }

    fn migrate(&mut self) -> Result<(), MetaError> {
        let supported = POSTGRES_MIGRATIONS.len() as u32;
        let mut tx = self
            .client
            .transaction()
            .map_err(query_err("starting migration"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(query_err("locking for migration"))?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .map_err(query_err("creating schema_version"))?;
        let found = schema_version(&mut tx)?;
        if found > supported {
            return Err(MetaError::SchemaTooNew { found, supported });
        }
        for (index, script) in POSTGRES_MIGRATIONS.iter().enumerate().skip(found as usize) {
            tx.batch_execute(script).map_err(query_err("migrating"))?;
            let version = index as i32 + 1;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&version],
            )
            .map_err(query_err("recording migration"))?;
        }
        tx.commit().map_err(query_err("committing migration"))
    }
}

fn schema_version(client: &mut impl GenericClient) -> Result<u32, MetaError> {
    let row = client
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
        .map_err(query_err("reading schema_version"))?;
    let version: i32 = row
        .try_get(0)
        .map_err(|e| MetaError::BadRow(e.to_string()))?;
    u32::try_from(version).map_err(|_| MetaError::BadRow(format!("schema version {version}")))
}

fn get_file(client: &mut impl GenericClient, hash: &str) -> Result<Option<FileRecord>, MetaError> {
    client
        .query_opt(
            "SELECT hash, kind, size, name, added_at FROM files WHERE hash = $1",
            &[&hash],
        )
        .map_err(query_err("reading file"))?
        .map(|row| record_from_row(&row))
        .transpose()
}

impl MetaDb for PostgresMeta {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn schema_version(&mut self) -> Result<u32, MetaError> {
        schema_version(&mut self.client)
    }

    fn insert_file(
        &mut self,
        record: &FileRecord,
        items: &[ContentHash],
    ) -> Result<FileRecord, MetaError> {
        let hash = record.hash.to_hex();
        let size = size_to_db(record.size)?;
        let mut tx = self
            .client
            .transaction()
            .map_err(query_err("starting insert"))?;
        tx.execute(
            "INSERT INTO files (hash, kind, size, name, added_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (hash) DO NOTHING",
            &[
                &hash,
                &record.kind.as_str(),
                &size,
                &record.name,
                &record.added_at,
            ],
        )
        .map_err(query_err("inserting file"))?;
        for (batch_index, batch) in items.chunks(ITEM_BATCH).enumerate() {
            let hashes: Vec<String> = batch.iter().map(ContentHash::to_hex).collect();
            let base = (batch_index * ITEM_BATCH) as i64;
            let seqs: Vec<i64> = (0..batch.len() as i64).map(|i| base + i).collect();
            tx.execute(
                "INSERT INTO file_items (file_hash, item_hash, seq)
                 SELECT $1, item, seq FROM unnest($2::text[], $3::bigint[]) AS t(item, seq)
                 ON CONFLICT (file_hash, item_hash) DO NOTHING",
                &[&hash, &hashes, &seqs],
            )
            .map_err(query_err("inserting file items"))?;
        }
        let stored = get_file(&mut tx, &hash)?
            .ok_or_else(|| MetaError::BadRow(format!("file {hash} vanished after insert")))?;
        tx.commit().map_err(query_err("committing insert"))?;
        Ok(stored)
    }

    fn get_file(&mut self, hash: &ContentHash) -> Result<Option<FileRecord>, MetaError> {
        get_file(&mut self.client, &hash.to_hex())
    }

    fn list_files(&mut self) -> Result<Vec<FileRecord>, MetaError> {
        self.client
            .query(
                "SELECT hash, kind, size, name, added_at FROM files ORDER BY added_at, hash",
                &[],
            )
            .map_err(query_err("listing files"))?
            .iter()
            .map(record_from_row)
            .collect()
    }

    fn remove_file(&mut self, hash: &ContentHash) -> Result<Option<Vec<ContentHash>>, MetaError> {
        let hash = hash.to_hex();
        let mut tx = self
            .client
            .transaction()
            .map_err(query_err("starting remove"))?;
        // Lock the file's row so two concurrent removes do not both compute the orphans.
        let found = tx
            .query_opt(
                "SELECT hash FROM files WHERE hash = $1 FOR UPDATE",
                &[&hash],
            )
            .map_err(query_err("reading file"))?;
        if found.is_none() {
            return Ok(None);
        }
        let rows = tx
            .query(
                "SELECT fi.item_hash FROM file_items fi
                 WHERE fi.file_hash = $1
                   AND NOT EXISTS (SELECT 1 FROM file_items o
                                   WHERE o.item_hash = fi.item_hash AND o.file_hash <> $1)
                   AND NOT EXISTS (SELECT 1 FROM files f
                                   WHERE f.hash = fi.item_hash AND f.hash <> $1)
                 ORDER BY fi.seq",
                &[&hash],
            )
            .map_err(query_err("finding unused items"))?;
        let mut orphans = Vec::with_capacity(rows.len());
        for row in &rows {
            let text: String = row
                .try_get(0)
                .map_err(|e| MetaError::BadRow(e.to_string()))?;
            orphans.push(decode_hash(&text)?);
        }
        tx.execute("DELETE FROM file_items WHERE file_hash = $1", &[&hash])
            .map_err(query_err("removing file items"))?;
        tx.execute("DELETE FROM files WHERE hash = $1", &[&hash])
            .map_err(query_err("removing file"))?;
        tx.commit().map_err(query_err("committing remove"))?;
        Ok(Some(orphans))
    }
}
