//! The metadata database's error type.

use std::path::PathBuf;

/// The boxed source error of a database driver.
pub type DriverError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the metadata database.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The database URL's scheme is not one kith knows.
    #[error("unsupported database URL scheme '{scheme}://' (use sqlite://PATH, a plain path, postgres:// or postgresql://)")]
    UnsupportedScheme {
        /// The scheme found.
        scheme: String,
    },
    /// The database URL cannot be understood.
    #[error("invalid database URL '{url}': {reason}")]
    BadUrl {
        /// The URL, password hidden.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The SQLite file could not be opened or set up.
    #[error("cannot open SQLite database {}: {source}", path.display())]
    SqliteOpen {
        /// The database file.
        path: PathBuf,
        /// The driver's error.
        #[source]
        source: DriverError,
    },
    /// The PostgreSQL server could not be reached or refused the login.
    #[error("cannot connect to PostgreSQL server {target}: {source}")]
    PostgresConnect {
        /// host:port (or socket) and database, without the password.
        target: String,
        /// The driver's error.
        #[source]
        source: DriverError,
    },
    /// A query failed.
    #[error("{backend} database error while {op}: {source}")]
    Query {
        /// "sqlite" or "postgres".
        backend: &'static str,
        /// What was being done.
        op: &'static str,
        /// The driver's error.
        #[source]
        source: DriverError,
    },
    /// The database was created by a newer kith.
    #[error("database schema version {found} is newer than this kith supports ({supported}); upgrade kith")]
    SchemaTooNew {
        /// Version in the database.
        found: u32,
        /// Newest version this build knows.
        supported: u32,
    },
    /// A row holds a value kith did not write (a bad hash, kind or size).
    #[error("database row is invalid: {0}")]
    BadRow(String),
    /// A PostgreSQL schema name that is not a plain identifier.
    #[error("invalid schema name '{0}' (use lowercase letters, digits and '_', at most 63)")]
    BadSchemaName(String),
    /// An agent id is malformed, not a valid Ed25519 key, or not the id of the key given with it.
    #[error("invalid agent id '{agent}': {reason}")]
    BadAgent {
        /// The agent id given.
        agent: String,
        /// What is wrong.
        reason: String,
    },
    /// The peer is already recorded with a different key; an agent id is its key, so the
    /// recorded key is never replaced.
    #[error("peer {agent} is recorded with a different agent key; refusing to replace it")]
    PeerKeyMismatch {
        /// The agent id.
        agent: String,
    },
    /// A ticket token to store is not 32 lowercase hex digits (the token itself is not shown).
    #[error("ticket token must be 32 lowercase hex digits (got {len} characters)")]
    BadToken {
        /// Its length in characters.
        len: usize,
    },
    /// A ticket with this token is already recorded (the token itself is not shown).
    #[error("a ticket with this token already exists")]
    DuplicateTicket,
    /// The caller abandoned a transaction (its closure failed for a reason of its own);
    /// nothing was written.
    #[error("transaction abandoned: {0}")]
    Aborted(String),
}
