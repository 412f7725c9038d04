//! Chat: routed messages kept until they can be delivered (store-and-forward), the messages
//! this node received or sent (what `kith chat read` shows), and the channels it is a member
//! of (joined again after a restart).
//!
//! The queue rows are the router's own (`kith_chat::QueuedMessage`: a key, the target GUID and
//! the message JSON); a row is written before the router's next output is acted on and deleted
//! when the router says the copy was delivered. The message log is bounded: appending beyond
//! `keep` rows deletes the oldest in the same transaction.

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

/// The SQLite side.
pub(crate) mod sqlite {
    use super::*;
    use crate::meta::sqlite::query_err as err;
    use rusqlite::{params, Connection, TransactionBehavior};

    pub(crate) fn persist(
        conn: &Connection,
        row: &ChatQueueRow,
        now: i64,
    ) -> Result<(), MetaError> {
        conn.execute(
            "INSERT INTO chat_queue (key, target, json, queued_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (key) DO UPDATE SET target = excluded.target, json = excluded.json",
            params![row.key, row.target, row.json, now],
        )
        .map_err(err("queueing a chat message"))?;
        Ok(())
    }

    pub(crate) fn forget(conn: &Connection, key: &str) -> Result<(), MetaError> {
        conn.execute("DELETE FROM chat_queue WHERE key = ?1", params![key])
            .map_err(err("forgetting a chat message"))?;
        Ok(())
    }

    pub(crate) fn queued(conn: &Connection, limit: usize) -> Result<Vec<ChatQueueRow>, MetaError> {
        let mut stmt = conn
            .prepare("SELECT key, target, json FROM chat_queue ORDER BY queued_at, key LIMIT ?1")
            .map_err(err("reading the chat queue"))?;
        let rows = stmt
            .query_map(params![seq_limit(limit)], |row| {
                Ok(ChatQueueRow {
                    key: row.get(0)?,
                    target: row.get(1)?,
                    json: row.get(2)?,
                })
            })
            .map_err(err("reading the chat queue"))?;
        rows.collect::<Result<_, _>>()
            .map_err(err("reading the chat queue"))
    }

    pub(crate) fn append(
        conn: &mut Connection,
        row: &ChatMessageRow,
        keep: usize,
    ) -> Result<i64, MetaError> {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err("storing a chat message"))?;
        tx.execute(
            "INSERT INTO chat_messages (msg_id, channel, channel_id, sender, sent_at, text,
                attachments, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                row.msg_id,
                row.channel,
                row.channel_id,
                row.sender,
                row.sent_at,
                row.text,
                row.attachments,
                row.received_at
            ],
        )
        .map_err(err("storing a chat message"))?;
        let seq = tx.last_insert_rowid();
        tx.execute(
            "DELETE FROM chat_messages WHERE seq <= ?1",
            params![seq - seq_limit(keep)],
        )
        .map_err(err("pruning chat messages"))?;
        tx.commit().map_err(err("storing a chat message"))?;
        Ok(seq)
    }

    pub(crate) fn read(
        conn: &Connection,
        after: i64,
        channel: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ChatMessageRow>, MetaError> {
        let mut stmt = conn
            .prepare(
                "SELECT seq, msg_id, channel, channel_id, sender, sent_at, text, attachments,
                    received_at FROM chat_messages
                 WHERE seq > ?1 AND (?2 IS NULL OR channel = ?2)
                 ORDER BY seq LIMIT ?3",
            )
            .map_err(err("reading chat messages"))?;
        let rows = stmt
            .query_map(params![after, channel, seq_limit(limit)], |row| {
                Ok(ChatMessageRow {
                    seq: row.get(0)?,
                    msg_id: row.get(1)?,
                    channel: row.get(2)?,
                    channel_id: row.get(3)?,
                    sender: row.get(4)?,
                    sent_at: row.get(5)?,
                    text: row.get(6)?,
                    attachments: row.get(7)?,
                    received_at: row.get(8)?,
                })
            })
            .map_err(err("reading chat messages"))?;
        rows.collect::<Result<_, _>>()
            .map_err(err("reading chat messages"))
    }

    pub(crate) fn set_joined(
        conn: &Connection,
        channel: &ChatChannelRow,
        joined: bool,
        now: i64,
    ) -> Result<(), MetaError> {
        if joined {
            conn.execute(
                "INSERT INTO chat_channels (name, closed, joined_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET closed = excluded.closed",
                params![channel.name, channel.closed, now],
            )
        } else {
            conn.execute(
                "DELETE FROM chat_channels WHERE name = ?1",
                params![channel.name],
            )
        }
        .map_err(err("recording a chat channel"))?;
        Ok(())
    }

    pub(crate) fn joined(conn: &Connection) -> Result<Vec<ChatChannelRow>, MetaError> {
        let mut stmt = conn
            .prepare("SELECT name, closed FROM chat_channels ORDER BY joined_at, name")
            .map_err(err("reading chat channels"))?;
        let rows = stmt
            .query_map([], |row| {
                Ok(ChatChannelRow {
                    name: row.get(0)?,
                    closed: row.get(1)?,
                })
            })
            .map_err(err("reading chat channels"))?;
        rows.collect::<Result<_, _>>()
            .map_err(err("reading chat channels"))
    }
}

/// The PostgreSQL side.
pub(crate) mod pg {
    use super::*;
    use crate::meta::pg::query_err as err;
    use postgres::{Client, GenericClient};

    fn bad(e: postgres::Error) -> MetaError {
        MetaError::BadRow(e.to_string())
    }

    pub(crate) fn persist(
        client: &mut impl GenericClient,
        row: &ChatQueueRow,
        now: i64,
    ) -> Result<(), MetaError> {
        client
            .execute(
                "INSERT INTO chat_queue (key, target, json, queued_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (key) DO UPDATE SET target = excluded.target, json = excluded.json",
                &[&row.key, &row.target, &row.json, &now],
            )
            .map_err(err("queueing a chat message"))?;
        Ok(())
    }

    pub(crate) fn forget(client: &mut impl GenericClient, key: &str) -> Result<(), MetaError> {
        client
            .execute("DELETE FROM chat_queue WHERE key = $1", &[&key])
            .map_err(err("forgetting a chat message"))?;
        Ok(())
    }

    pub(crate) fn queued(
        client: &mut impl GenericClient,
        limit: usize,
    ) -> Result<Vec<ChatQueueRow>, MetaError> {
        let rows = client
            .query(
                "SELECT key, target, json FROM chat_queue ORDER BY queued_at, key LIMIT $1",
                &[&seq_limit(limit)],
            )
            .map_err(err("reading the chat queue"))?;
        rows.iter()
            .map(|row| {
                Ok(ChatQueueRow {
                    key: row.try_get(0).map_err(bad)?,
                    target: row.try_get(1).map_err(bad)?,
                    json: row.try_get(2).map_err(bad)?,
                })
            })
            .collect()
    }

    pub(crate) fn append(
        client: &mut Client,
        row: &ChatMessageRow,
        keep: usize,
    ) -> Result<i64, MetaError> {
        let mut tx = client
            .transaction()
            .map_err(err("storing a chat message"))?;
        let inserted = tx
            .query_one(
                "INSERT INTO chat_messages (msg_id, channel, channel_id, sender, sent_at, text,
                    attachments, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 RETURNING seq",
                &[
                    &row.msg_id,
                    &row.channel,
                    &row.channel_id,
                    &row.sender,
                    &row.sent_at,
                    &row.text,
                    &row.attachments,
                    &row.received_at,
                ],
            )
            .map_err(err("storing a chat message"))?;
        let seq: i64 = inserted.try_get(0).map_err(bad)?;
        tx.execute(
            "DELETE FROM chat_messages WHERE seq <= $1",
            &[&(seq - seq_limit(keep))],
        )
        .map_err(err("pruning chat messages"))?;
        tx.commit().map_err(err("storing a chat message"))?;
        Ok(seq)
    }

    pub(crate) fn read(
        client: &mut impl GenericClient,
        after: i64,
        channel: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ChatMessageRow>, MetaError> {
        let rows = client
            .query(
                "SELECT seq, msg_id, channel, channel_id, sender, sent_at, text, attachments,
                    received_at FROM chat_messages
                 WHERE seq > $1 AND ($2::TEXT IS NULL OR channel = $2)
                 ORDER BY seq LIMIT $3",
                &[&after, &channel, &seq_limit(limit)],
            )
            .map_err(err("reading chat messages"))?;
        rows.iter()
            .map(|row| {
                Ok(ChatMessageRow {
                    seq: row.try_get(0).map_err(bad)?,
                    msg_id: row.try_get(1).map_err(bad)?,
                    channel: row.try_get(2).map_err(bad)?,
                    channel_id: row.try_get(3).map_err(bad)?,
                    sender: row.try_get(4).map_err(bad)?,
                    sent_at: row.try_get(5).map_err(bad)?,
                    text: row.try_get(6).map_err(bad)?,
                    attachments: row.try_get(7).map_err(bad)?,
                    received_at: row.try_get(8).map_err(bad)?,
                })
            })
            .collect()
    }

    pub(crate) fn set_joined(
        client: &mut impl GenericClient,
        channel: &ChatChannelRow,
        joined: bool,
        now: i64,
    ) -> Result<(), MetaError> {
        if joined {
            client.execute(
                "INSERT INTO chat_channels (name, closed, joined_at) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET closed = excluded.closed",
                &[&channel.name, &channel.closed, &now],
            )
        } else {
            client.execute(
                "DELETE FROM chat_channels WHERE name = $1",
                &[&channel.name],
            )
        }
        .map_err(err("recording a chat channel"))?;
        Ok(())
    }

    pub(crate) fn joined(
        client: &mut impl GenericClient,
    ) -> Result<Vec<ChatChannelRow>, MetaError> {
        let rows = client
            .query(
                "SELECT name, closed FROM chat_channels ORDER BY joined_at, name",
                &[],
            )
            .map_err(err("reading chat channels"))?;
        rows.iter()
            .map(|row| {
                Ok(ChatChannelRow {
                    name: row.try_get(0).map_err(bad)?,
                    closed: row.try_get(1).map_err(bad)?,
                })
            })
            .collect()
    }
}
