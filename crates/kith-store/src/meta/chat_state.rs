//! Chat state kept across restarts: the channels this node is in (id, name, members, and a
//! closed channel's keys sealed under the node's own key: the database never holds them in
//! clear), the people it has heard of (names, when last seen, blocked, muted), the ptpchat
//! routers it keeps dialled (`kith chat peer`), and small settings (the user's nick).

use super::sql::{args, Sql};
use super::MetaError;
use serde::{Deserialize, Serialize};

/// SQL for migration 7 (SQLite): the new tables, and the log learns the state of the
/// user's own messages, its recipient, and its author's GUID (to recognise a message that
/// comes twice).
pub(crate) const SQLITE_MIGRATION: &str = "ALTER TABLE chat_messages ADD COLUMN sender_guid TEXT;
    ALTER TABLE chat_messages ADD COLUMN recipient TEXT;
    ALTER TABLE chat_messages ADD COLUMN state TEXT;
    ALTER TABLE chat_messages ADD COLUMN recipients INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE chat_messages ADD COLUMN delivered INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE chat_messages ADD COLUMN delivered_at INTEGER;
    CREATE INDEX chat_messages_msg_id ON chat_messages(msg_id);
    CREATE TABLE chat_channel_state (
        channel_id TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL,
        closed INTEGER NOT NULL,
        standing TEXT NOT NULL,
        members TEXT NOT NULL,
        sealed_keys BLOB NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE chat_nodes (
        guid TEXT PRIMARY KEY NOT NULL,
        name TEXT,
        last_seen INTEGER,
        blocked INTEGER NOT NULL DEFAULT 0,
        muted INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE chat_peers (
        address TEXT PRIMARY KEY NOT NULL,
        added_at INTEGER NOT NULL
    );
    CREATE TABLE chat_settings (
        key TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    );";

/// SQL for migration 7 (PostgreSQL), as [`SQLITE_MIGRATION`].
pub(crate) const POSTGRES_MIGRATION: &str = "ALTER TABLE chat_messages ADD COLUMN sender_guid TEXT;
    ALTER TABLE chat_messages ADD COLUMN recipient TEXT;
    ALTER TABLE chat_messages ADD COLUMN state TEXT;
    ALTER TABLE chat_messages ADD COLUMN recipients BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE chat_messages ADD COLUMN delivered BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE chat_messages ADD COLUMN delivered_at BIGINT;
    CREATE INDEX chat_messages_msg_id ON chat_messages(msg_id);
    CREATE TABLE chat_channel_state (
        channel_id TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL,
        closed BOOLEAN NOT NULL,
        standing TEXT NOT NULL,
        members TEXT NOT NULL,
        sealed_keys BYTEA NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE TABLE chat_nodes (
        guid TEXT PRIMARY KEY NOT NULL,
        name TEXT,
        last_seen BIGINT,
        blocked BOOLEAN NOT NULL DEFAULT false,
        muted BOOLEAN NOT NULL DEFAULT false
    );
    CREATE TABLE chat_peers (
        address TEXT PRIMARY KEY NOT NULL,
        added_at BIGINT NOT NULL
    );
    CREATE TABLE chat_settings (
        key TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    );";

/// A channel this node is in, as the chat router keeps it (`kith_chat::ChannelRecord`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatChannelStateRow {
    /// The channel's id.
    pub channel_id: String,
    /// Its name.
    pub name: String,
    /// Closed (invitation only).
    pub closed: bool,
    /// `member`, `invited` or `joining`.
    pub standing: String,
    /// Its members, as a JSON array of ids (`name@GUID` or `GUID`).
    pub members: String,
    /// A closed channel's keys, sealed under the node's key (empty for a public channel).
    pub sealed_keys: Vec<u8>,
}

/// Someone the chat has heard of.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatNodeRow {
    /// Its GUID.
    pub guid: String,
    /// The name it goes by, if any.
    pub name: Option<String>,
    /// When it was last heard from, unix seconds.
    pub last_seen: Option<i64>,
    /// The user blocked it: nothing of it is heard.
    pub blocked: bool,
    /// The user muted it: its messages are relayed but not shown.
    pub muted: bool,
}

pub(super) fn save_channel(
    c: &mut dyn Sql,
    row: &ChatChannelStateRow,
    now: i64,
) -> Result<(), MetaError> {
    c.execute(
        "saving a chat channel",
        "INSERT INTO chat_channel_state (channel_id, name, closed, standing, members,
            sealed_keys, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (channel_id) DO UPDATE SET name = excluded.name,
            closed = excluded.closed, standing = excluded.standing,
            members = excluded.members, sealed_keys = excluded.sealed_keys,
            updated_at = excluded.updated_at",
        args![
            &row.channel_id,
            &row.name,
            row.closed,
            &row.standing,
            &row.members,
            &row.sealed_keys[..],
            now
        ],
    )?;
    Ok(())
}

pub(super) fn drop_channel(c: &mut dyn Sql, channel_id: &str) -> Result<(), MetaError> {
    c.execute(
        "dropping a chat channel",
        "DELETE FROM chat_channel_state WHERE channel_id = $1",
        args![channel_id],
    )?;
    Ok(())
}

pub(super) fn channels(c: &mut dyn Sql) -> Result<Vec<ChatChannelStateRow>, MetaError> {
    c.query(
        "reading chat channels",
        "SELECT channel_id, name, closed, standing, members, sealed_keys
         FROM chat_channel_state ORDER BY updated_at, channel_id",
        args![],
    )?
    .into_iter()
    .map(|row| {
        let mut c = row.cols();
        Ok(ChatChannelStateRow {
            channel_id: c.text()?,
            name: c.text()?,
            closed: c.boolean()?,
            standing: c.text()?,
            members: c.text()?,
            sealed_keys: c.bytes()?,
        })
    })
    .collect()
}

/// Records that `guid` was heard from at `at` (and its name, when it gave one).
pub(super) fn node_seen(
    c: &mut dyn Sql,
    guid: &str,
    name: Option<&str>,
    at: i64,
) -> Result<(), MetaError> {
    c.execute(
        "recording a chat node",
        "INSERT INTO chat_nodes (guid, name, last_seen) VALUES ($1, $2, $3)
         ON CONFLICT (guid) DO UPDATE SET name = COALESCE(excluded.name, chat_nodes.name),
            last_seen = excluded.last_seen",
        args![guid, name, at],
    )?;
    Ok(())
}

/// Sets what the user decided about `guid` (a flag left `None` stays as it was).
pub(super) fn set_node_flags(
    c: &mut dyn Sql,
    guid: &str,
    blocked: Option<bool>,
    muted: Option<bool>,
) -> Result<(), MetaError> {
    c.execute(
        "recording a chat node",
        "INSERT INTO chat_nodes (guid, blocked, muted) VALUES ($1, $2, $3)
         ON CONFLICT (guid) DO NOTHING",
        args![guid, blocked.unwrap_or(false), muted.unwrap_or(false)],
    )?;
    if let Some(b) = blocked {
        c.execute(
            "blocking a chat node",
            "UPDATE chat_nodes SET blocked = $1 WHERE guid = $2",
            args![b, guid],
        )?;
    }
    if let Some(m) = muted {
        c.execute(
            "muting a chat node",
            "UPDATE chat_nodes SET muted = $1 WHERE guid = $2",
            args![m, guid],
        )?;
    }
    Ok(())
}

pub(super) fn nodes(c: &mut dyn Sql, limit: usize) -> Result<Vec<ChatNodeRow>, MetaError> {
    c.query(
        "reading chat nodes",
        "SELECT guid, name, last_seen, blocked, muted FROM chat_nodes
         ORDER BY blocked DESC, muted DESC, last_seen DESC, guid LIMIT $1",
        args![i64::try_from(limit).unwrap_or(i64::MAX)],
    )?
    .into_iter()
    .map(|row| {
        let mut c = row.cols();
        Ok(ChatNodeRow {
            guid: c.text()?,
            name: c.opt_text()?,
            last_seen: c.opt_int()?,
            blocked: c.boolean()?,
            muted: c.boolean()?,
        })
    })
    .collect()
}

pub(super) fn set_peer(
    c: &mut dyn Sql,
    address: &str,
    keep: bool,
    now: i64,
) -> Result<bool, MetaError> {
    let changed = if keep {
        c.execute(
            "recording a chat router",
            "INSERT INTO chat_peers (address, added_at) VALUES ($1, $2)
             ON CONFLICT (address) DO NOTHING",
            args![address, now],
        )?
    } else {
        c.execute(
            "forgetting a chat router",
            "DELETE FROM chat_peers WHERE address = $1",
            args![address],
        )?
    };
    Ok(changed > 0)
}

pub(super) fn peers(c: &mut dyn Sql) -> Result<Vec<String>, MetaError> {
    c.query(
        "reading chat routers",
        "SELECT address FROM chat_peers ORDER BY added_at, address",
        args![],
    )?
    .into_iter()
    .map(|row| row.cols().text())
    .collect()
}

pub(super) fn set_setting(
    c: &mut dyn Sql,
    key: &str,
    value: Option<&str>,
) -> Result<(), MetaError> {
    match value {
        Some(v) => c.execute(
            "recording a chat setting",
            "INSERT INTO chat_settings (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            args![key, v],
        )?,
        None => c.execute(
            "recording a chat setting",
            "DELETE FROM chat_settings WHERE key = $1",
            args![key],
        )?,
    };
    Ok(())
}

pub(super) fn setting(c: &mut dyn Sql, key: &str) -> Result<Option<String>, MetaError> {
    c.query_opt(
        "reading a chat setting",
        "SELECT value FROM chat_settings WHERE key = $1",
        args![key],
    )?
    .map(|row| row.cols().text())
    .transpose()
}
