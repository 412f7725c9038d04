//! The schema: one ordered list of migrations per backend (column types differ; the
//! statements that use the tables are shared, see `sql.rs`).

use super::sql::{args, lock, Backend, Sql};
use super::{anonymous, chat, chat_state, folders, posts, sharing, value, MetaError};

/// Applies the migrations `scripts` has and the database lacks, in one transaction that
/// other processes opening the same database wait for (so they do not migrate twice).
pub(crate) fn migrate(db: &impl Backend, scripts: &[&str]) -> Result<(), MetaError> {
    let supported = scripts.len() as u32;
    db.transaction("migrating", |tx| {
        tx.serialize("locking for migration", lock::MIGRATION, "")?;
        tx.batch(
            "creating schema_version",
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
        )?;
        let found = version(tx)?;
        if found > supported {
            return Err(MetaError::SchemaTooNew { found, supported });
        }
        for (index, script) in scripts.iter().enumerate().skip(found as usize) {
            tx.batch("migrating", script)?;
            tx.execute(
                "recording migration",
                "INSERT INTO schema_version (version) VALUES ($1)",
                args![index as i64 + 1],
            )?;
        }
        Ok(())
    })
}

/// The number of migrations applied.
pub(crate) fn version(c: &mut dyn Sql) -> Result<u32, MetaError> {
    let found = c.query_int(
        "reading schema_version",
        "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM schema_version",
        args![],
    )?;
    u32::try_from(found).map_err(|_| MetaError::BadRow(format!("schema version {found}")))
}

/// Migrations for SQLite, in order; entry `i` brings the schema to version `i + 1`.
pub const SQLITE_MIGRATIONS: &[&str] = &[
    // 1: files and the items they use.
    "CREATE TABLE files (
        hash TEXT PRIMARY KEY NOT NULL,
        kind TEXT NOT NULL,
        size INTEGER NOT NULL,
        name TEXT,
        added_at INTEGER NOT NULL
    );
    CREATE TABLE file_items (
        file_hash TEXT NOT NULL REFERENCES files(hash) ON DELETE CASCADE,
        item_hash TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (file_hash, item_hash)
    );
    CREATE INDEX file_items_item_hash ON file_items(item_hash);",
    // 2: the key store (peers), blocked agents, issued tickets.
    "CREATE TABLE peers (
        agent TEXT PRIMARY KEY NOT NULL,
        agent_key BLOB NOT NULL CHECK (length(agent_key) = 32),
        host TEXT,
        port INTEGER CHECK (port BETWEEN 0 AND 65535),
        last_addr TEXT,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        retention_failures INTEGER NOT NULL DEFAULT 0,
        notes TEXT
    );
    CREATE TABLE blocked_agents (
        agent TEXT PRIMARY KEY NOT NULL,
        since INTEGER NOT NULL
    );
    CREATE TABLE tickets (
        token TEXT PRIMARY KEY NOT NULL,
        issued_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        reusable INTEGER NOT NULL DEFAULT 0,
        cuid TEXT,
        used_at INTEGER,
        used_by TEXT,
        revoked INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX tickets_expires_at ON tickets(expires_at);",
    // 3: files held in encrypted custody for other people.
    "CREATE TABLE custody (
        original_hash TEXT NOT NULL,
        owner_key BLOB NOT NULL CHECK (length(owner_key) = 33),
        encrypted_hash TEXT NOT NULL,
        pull_request_hash TEXT NOT NULL,
        size INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        PRIMARY KEY (original_hash, owner_key)
    );",
    // 4: placements of our files with peers, and what retention checks showed.
    "CREATE TABLE placements (
        agent TEXT NOT NULL,
        hash TEXT NOT NULL,
        placed_at INTEGER NOT NULL,
        last_check_at INTEGER,
        checks_passed INTEGER NOT NULL DEFAULT 0,
        checks_failed INTEGER NOT NULL DEFAULT 0,
        checks_inconclusive INTEGER NOT NULL DEFAULT 0,
        last_failure TEXT,
        last_failure_at INTEGER,
        PRIMARY KEY (agent, hash)
    );
    CREATE INDEX placements_last_check_at ON placements(last_check_at);",
    // 5: files offered to peers, and replicas kept for them.
    sharing::SQLITE_MIGRATION,
    // 6: chat: the store-and-forward queue, the message log, joined channels.
    chat::SQLITE_MIGRATION,
    // 7: what strangers stored on the peer port, apart from the user's files.
    anonymous::SQLITE_MIGRATION,
    // 8: chat across time: channel records (keys sealed at rest), people, routers to dial,
    // settings; the log learns the state of the user's own messages.
    chat_state::SQLITE_MIGRATION,
    // 9: value: users, tally tickets, tallies, chits.
    value::SQLITE_MIGRATION,
    // 10: a per-peer link option: the MyCHIPs reference library's transport cipher order.
    "ALTER TABLE peers ADD COLUMN reference_order INTEGER NOT NULL DEFAULT 0;",
    // 11: posts and communities: kept posts, known communities, blocked and muted authors.
    posts::SQLITE_MIGRATION,
    // 12: folders: which recorded files are folder manifests (`kith file put DIR`).
    folders::SQLITE_MIGRATION,
];

/// Migrations for PostgreSQL, in order; entry `i` brings the schema to version `i + 1`.
pub const POSTGRES_MIGRATIONS: &[&str] = &[
    // 1: files and the items they use.
    "CREATE TABLE files (
        hash TEXT PRIMARY KEY NOT NULL,
        kind TEXT NOT NULL,
        size BIGINT NOT NULL,
        name TEXT,
        added_at BIGINT NOT NULL
    );
    CREATE TABLE file_items (
        file_hash TEXT NOT NULL REFERENCES files(hash) ON DELETE CASCADE,
        item_hash TEXT NOT NULL,
        seq BIGINT NOT NULL,
        PRIMARY KEY (file_hash, item_hash)
    );
    CREATE INDEX file_items_item_hash ON file_items(item_hash);",
    // 2: the key store (peers), blocked agents, issued tickets.
    "CREATE TABLE peers (
        agent TEXT PRIMARY KEY NOT NULL,
        agent_key BYTEA NOT NULL CHECK (octet_length(agent_key) = 32),
        host TEXT,
        port INTEGER CHECK (port BETWEEN 0 AND 65535),
        last_addr TEXT,
        first_seen BIGINT NOT NULL,
        last_seen BIGINT NOT NULL,
        retention_failures BIGINT NOT NULL DEFAULT 0,
        notes TEXT
    );
    CREATE TABLE blocked_agents (
        agent TEXT PRIMARY KEY NOT NULL,
        since BIGINT NOT NULL
    );
    CREATE TABLE tickets (
        token TEXT PRIMARY KEY NOT NULL,
        issued_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        reusable BOOLEAN NOT NULL DEFAULT false,
        cuid TEXT,
        used_at BIGINT,
        used_by TEXT,
        revoked BOOLEAN NOT NULL DEFAULT false
    );
    CREATE INDEX tickets_expires_at ON tickets(expires_at);",
    // 3: files held in encrypted custody for other people.
    "CREATE TABLE custody (
        original_hash TEXT NOT NULL,
        owner_key BYTEA NOT NULL CHECK (octet_length(owner_key) = 33),
        encrypted_hash TEXT NOT NULL,
        pull_request_hash TEXT NOT NULL,
        size BIGINT NOT NULL,
        received_at BIGINT NOT NULL,
        PRIMARY KEY (original_hash, owner_key)
    );",
    // 4: placements of our files with peers, and what retention checks showed.
    "CREATE TABLE placements (
        agent TEXT NOT NULL,
        hash TEXT NOT NULL,
        placed_at BIGINT NOT NULL,
        last_check_at BIGINT,
        checks_passed BIGINT NOT NULL DEFAULT 0,
        checks_failed BIGINT NOT NULL DEFAULT 0,
        checks_inconclusive BIGINT NOT NULL DEFAULT 0,
        last_failure TEXT,
        last_failure_at BIGINT,
        PRIMARY KEY (agent, hash)
    );
    CREATE INDEX placements_last_check_at ON placements(last_check_at);",
    // 5: files offered to peers, and replicas kept for them.
    sharing::POSTGRES_MIGRATION,
    // 6: chat: the store-and-forward queue, the message log, joined channels.
    chat::POSTGRES_MIGRATION,
    // 7: what strangers stored on the peer port, apart from the user's files.
    anonymous::POSTGRES_MIGRATION,
    // 8: chat across time (see the SQLite list).
    chat_state::POSTGRES_MIGRATION,
    // 9: value: users, tally tickets, tallies, chits.
    value::POSTGRES_MIGRATION,
    // 10: a per-peer link option: the MyCHIPs reference library's transport cipher order.
    "ALTER TABLE peers ADD COLUMN reference_order BOOLEAN NOT NULL DEFAULT false;",
    // 11: posts and communities (see the SQLite list).
    posts::POSTGRES_MIGRATION,
    // 12: folders (see the SQLite list).
    folders::POSTGRES_MIGRATION,
];
