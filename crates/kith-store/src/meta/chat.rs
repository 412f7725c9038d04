//! Chat: routed messages kept until they can be delivered (store-and-forward), the messages
//! this node received or sent (what `kith chat read` shows), and the channels it is a member
//! of (joined again after a restart).
//!
//! The queue rows are the router's own (`kith_chat::QueuedMessage`: a key, the target GUID and
//! the message JSON); a row is written before the router's next output is acted on and deleted
//! when the router says the copy was delivered. The message log is bounded: appending beyond
//! `keep` rows deletes the oldest in the same transaction.

use super::sql::{args, Row, Sql};
use super::MetaError;
use serde::{Deserialize, Serialize};

/// SQL for the migration that adds chat (SQLite).
pub(crate) const SQLITE_MIGRATION: &str = "CREATE TABLE chat_queue (
        key TEXT PRIMARY KEY NOT NULL,
        target TEXT NOT NULL,
        json BLOB NOT NULL,
        queued_at INTEGER NOT NULL
    );
    CREATE TABLE chat_messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        msg_id TEXT NOT NULL,
        channel TEXT,
        channel_id TEXT,
        sender TEXT NOT NULL,
        sent_at TEXT NOT NULL,
        text TEXT NOT NULL,
        attachments TEXT NOT NULL,
        received_at INTEGER NOT NULL
    );
    CREATE TABLE chat_channels (
        name TEXT PRIMARY KEY NOT NULL,
        closed INTEGER NOT NULL,
        joined_at INTEGER NOT NULL
    );";

/// SQL for the migration that adds chat (PostgreSQL).
pub(crate) const POSTGRES_MIGRATION: &str = "CREATE TABLE chat_queue (
        key TEXT PRIMARY KEY NOT NULL,
        target TEXT NOT NULL,
        json BYTEA NOT NULL,
        queued_at BIGINT NOT NULL
    );
    CREATE TABLE chat_messages (
        seq BIGSERIAL PRIMARY KEY,
        msg_id TEXT NOT NULL,
        channel TEXT,
        channel_id TEXT,
        sender TEXT NOT NULL,
        sent_at TEXT NOT NULL,
        text TEXT NOT NULL,
        attachments TEXT NOT NULL,
        received_at BIGINT NOT NULL
    );
    CREATE TABLE chat_channels (
        name TEXT PRIMARY KEY NOT NULL,
        closed BOOLEAN NOT NULL,
        joined_at BIGINT NOT NULL
    );";

/// A routed chat message waiting for a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatQueueRow {
    /// The router's key for this copy.
    pub key: String,
    /// The GUID it is for.
    pub target: String,
    /// The message, as JSON.
    pub json: Vec<u8>,
}

/// A chat message as `kith chat read` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessageRow {
    /// Order of arrival here (0 before it is stored).
    pub seq: i64,
    /// The message id.
    pub msg_id: String,
    /// The channel's name, or `None` for a direct message.
    pub channel: Option<String>,
    /// The channel's id.
    pub channel_id: Option<String>,
    /// The author's node id.
    pub sender: String,
    /// The author's timestamp (RFC 3339), `time` in JSON.
    #[serde(rename = "time")]
    pub sent_at: String,
    /// The text.
    pub text: String,
    /// Attachments as JSON (`[{"mime_type": ..., "size": ...}]`).
    pub attachments: String,
    /// When it arrived here, unix seconds.
    pub received_at: i64,
}

/// A channel this node is a member of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatChannelRow {
    /// Its name.
    pub name: String,
    /// Closed (invitation only).
    pub closed: bool,
}

fn seq_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

pub(super) fn persist(c: &mut dyn Sql, row: &ChatQueueRow, now: i64) -> Result<(), MetaError> {
    c.execute(
        "queueing a chat message",
        "INSERT INTO chat_queue (key, target, json, queued_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (key) DO UPDATE SET target = excluded.target, json = excluded.json",
        args![&row.key, &row.target, &row.json[..], now],
    )?;
    Ok(())
}

pub(super) fn forget(c: &mut dyn Sql, key: &str) -> Result<(), MetaError> {
    c.execute(
        "forgetting a chat message",
        "DELETE FROM chat_queue WHERE key = $1",
        args![key],
    )?;
    Ok(())
}

pub(super) fn queued(c: &mut dyn Sql, limit: usize) -> Result<Vec<ChatQueueRow>, MetaError> {
    c.query(
        "reading the chat queue",
        "SELECT key, target, json FROM chat_queue ORDER BY queued_at, key LIMIT $1",
        args![seq_limit(limit)],
    )?
    .into_iter()
    .map(|row| {
        let mut c = row.cols();
        Ok(ChatQueueRow {
            key: c.text()?,
            target: c.text()?,
            json: c.bytes()?,
        })
    })
    .collect()
}

pub(super) fn append(
    tx: &mut dyn Sql,
    row: &ChatMessageRow,
    keep: usize,
) -> Result<i64, MetaError> {
    let seq = tx
        .query_one(
            "storing a chat message",
            "INSERT INTO chat_messages (msg_id, channel, channel_id, sender, sent_at, text,
                attachments, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             RETURNING seq",
            args![
                &row.msg_id,
                row.channel.as_deref(),
                row.channel_id.as_deref(),
                &row.sender,
                &row.sent_at,
                &row.text,
                &row.attachments,
                row.received_at
            ],
        )?
        .cols()
        .int()?;
    tx.execute(
        "pruning chat messages",
        "DELETE FROM chat_messages WHERE seq <= $1",
        args![seq - seq_limit(keep)],
    )?;
    Ok(seq)
}

fn message(row: Row) -> Result<ChatMessageRow, MetaError> {
    let mut c = row.cols();
    Ok(ChatMessageRow {
        seq: c.int()?,
        msg_id: c.text()?,
        channel: c.opt_text()?,
        channel_id: c.opt_text()?,
        sender: c.text()?,
        sent_at: c.text()?,
        text: c.text()?,
        attachments: c.text()?,
        received_at: c.int()?,
    })
}

pub(super) fn read(
    c: &mut dyn Sql,
    after: i64,
    channel: Option<&str>,
    limit: usize,
) -> Result<Vec<ChatMessageRow>, MetaError> {
    c.query(
        "reading chat messages",
        "SELECT seq, msg_id, channel, channel_id, sender, sent_at, text, attachments,
            received_at FROM chat_messages
         WHERE seq > $1 AND (CAST($2 AS TEXT) IS NULL OR channel = $2)
         ORDER BY seq LIMIT $3",
        args![after, channel, seq_limit(limit)],
    )?
    .into_iter()
    .map(message)
    .collect()
}

pub(super) fn set_joined(
    c: &mut dyn Sql,
    channel: &ChatChannelRow,
    joined: bool,
    now: i64,
) -> Result<(), MetaError> {
    if joined {
        c.execute(
            "recording a chat channel",
            "INSERT INTO chat_channels (name, closed, joined_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET closed = excluded.closed",
            args![&channel.name, channel.closed, now],
        )?;
    } else {
        c.execute(
            "recording a chat channel",
            "DELETE FROM chat_channels WHERE name = $1",
            args![&channel.name],
        )?;
    }
    Ok(())
}

pub(super) fn joined(c: &mut dyn Sql) -> Result<Vec<ChatChannelRow>, MetaError> {
    c.query(
        "reading chat channels",
        "SELECT name, closed FROM chat_channels ORDER BY joined_at, name",
        args![],
    )?
    .into_iter()
    .map(|row| {
        let mut c = row.cols();
        Ok(ChatChannelRow {
            name: c.text()?,
            closed: c.boolean()?,
        })
    })
    .collect()
}
