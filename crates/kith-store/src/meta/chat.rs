//! Chat: routed messages kept until they can be delivered (store-and-forward), and the
//! messages this node received or sent (what `kith chat read` shows). Channels, people,
//! routers to dial and settings are in [`super::chat_state`].
//!
//! The queue rows are the router's own (`kith_chat::QueuedMessage`: a key, the target GUID and
//! the message JSON); a row is written before the router's next output is acted on and deleted
//! when the router says the copy was delivered. The message log is bounded: appending beyond
//! `keep` rows deletes the oldest in the same transaction. A message is logged once: a copy
//! that comes again (a retry, a replay) is recognised by its id and author. The user's own
//! messages carry where they stand (queued, sent, delivered to how many) and are updated as
//! receipts come.

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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The author's GUID (what, with `msg_id`, makes a message the same message).
    #[serde(default)]
    pub sender_guid: Option<String>,
    /// The user's own direct message: whom it is for (`name@GUID`).
    #[serde(default)]
    pub recipient: Option<String>,
    /// The user's own message: `queued` (no recipient reachable yet), `sent`, `delivered`
    /// (every recipient signed a receipt) or `unconfirmed` (given up); `None` for others'.
    #[serde(default)]
    pub state: Option<String>,
    /// The user's own message: recipients expected to sign a receipt.
    #[serde(default)]
    pub recipients: i64,
    /// The user's own message: receipts received.
    #[serde(default)]
    pub delivered: i64,
    /// The user's own message: when the last receipt came, unix seconds.
    #[serde(default)]
    pub delivered_at: Option<i64>,
}

const MESSAGE_COLUMNS: &str = "seq, msg_id, channel, channel_id, sender, sent_at, text,
    attachments, received_at, sender_guid, recipient, state, recipients, delivered, delivered_at";

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
    // Logged already (a retry, or a replay): the same row.
    if let Some(guid) = &row.sender_guid {
        if let Some(found) = tx.query_opt(
            "looking for a chat message",
            "SELECT seq FROM chat_messages WHERE msg_id = $1 AND sender_guid = $2",
            args![&row.msg_id, guid],
        )? {
            return found.cols().int();
        }
    }
    let seq = tx
        .query_one(
            "storing a chat message",
            "INSERT INTO chat_messages (msg_id, channel, channel_id, sender, sent_at, text,
                attachments, received_at, sender_guid, recipient, state, recipients,
                delivered, delivered_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             RETURNING seq",
            args![
                &row.msg_id,
                row.channel.as_deref(),
                row.channel_id.as_deref(),
                &row.sender,
                &row.sent_at,
                &row.text,
                &row.attachments,
                row.received_at,
                row.sender_guid.as_deref(),
                row.recipient.as_deref(),
                row.state.as_deref(),
                row.recipients,
                row.delivered,
                row.delivered_at
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
        sender_guid: c.opt_text()?,
        recipient: c.opt_text()?,
        state: c.opt_text()?,
        recipients: c.int()?,
        delivered: c.int()?,
        delivered_at: c.opt_int()?,
    })
}

/// Where one of the user's own messages stands, once the router said (`Posted`): `queued`
/// when some recipient has no route yet, else `sent`; a message for nobody is `sent`.
pub(super) fn set_posted(
    c: &mut dyn Sql,
    msg_id: &str,
    recipients: i64,
    queued: bool,
) -> Result<(), MetaError> {
    let state = if queued { "queued" } else { "sent" };
    c.execute(
        "recording where a chat message stands",
        "UPDATE chat_messages SET state = $1, recipients = $2
         WHERE msg_id = $3 AND state IS NOT NULL AND delivered < $2",
        args![state, recipients, msg_id],
    )?;
    Ok(())
}

/// A receipt for one of the user's own messages came (`at`): one more recipient has it.
/// Returns the row, if it is still in the log.
pub(super) fn mark_delivered(
    tx: &mut dyn Sql,
    msg_id: &str,
    at: i64,
) -> Result<Option<ChatMessageRow>, MetaError> {
    tx.execute(
        "recording a chat receipt",
        "UPDATE chat_messages SET delivered = delivered + 1, delivered_at = $1,
            state = CASE WHEN delivered + 1 >= recipients THEN 'delivered' ELSE state END
         WHERE msg_id = $2 AND state IS NOT NULL",
        args![at, msg_id],
    )?;
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM chat_messages WHERE msg_id = $1 AND state IS NOT NULL"
    );
    tx.query_opt("reading a chat message", &sql, args![msg_id])?
        .map(message)
        .transpose()
}

/// One of the user's own messages was given up by the router (no receipt after every
/// retry, or no route for the queue's lifetime).
pub(super) fn mark_unconfirmed(c: &mut dyn Sql, msg_id: &str) -> Result<(), MetaError> {
    c.execute(
        "recording an unconfirmed chat message",
        "UPDATE chat_messages SET state = 'unconfirmed'
         WHERE msg_id = $1 AND state IS NOT NULL AND state <> 'delivered'",
        args![msg_id],
    )?;
    Ok(())
}

pub(super) fn read(
    c: &mut dyn Sql,
    after: i64,
    channel: Option<&str>,
    limit: usize,
) -> Result<Vec<ChatMessageRow>, MetaError> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM chat_messages
         WHERE seq > $1 AND (CAST($2 AS TEXT) IS NULL OR channel = $2 OR channel_id = $2)
         ORDER BY seq LIMIT $3"
    );
    c.query(
        "reading chat messages",
        &sql,
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
