//! The SQLite backend: one file in the data dir, shared safely by a CLI process and a node.
//!
//! WAL mode lets readers proceed while a writer commits; `busy_timeout` makes a writer wait for
//! the other process's transaction instead of failing at once; `synchronous = FULL` makes a
//! commit durable before it returns (WAL's default `NORMAL` may lose the last commits on power
//! loss, which would break "nothing is acknowledged before it is durable").

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::chat::{ChatChannelRow, ChatMessageRow, ChatQueueRow};
use super::custody::{custody_from_columns, CustodyRecord, CUSTODY_COLUMNS};
use super::peers::{
    check_agent_id, check_peer, check_token, count_from_db, judge_ticket, key_from_db,
    port_from_db, purge_cutoff,
};
use super::placements::{CheckResult, PeerRetention, Placement, PlacementOutcome};
use super::{
    decode_hash, decode_record, size_to_db, BlockedAgent, DriverError, FileRecord, MetaDb,
    MetaError, PeerRecord, PeerUpsert, TicketRecord, TicketVerdict, BUSY_TIMEOUT,
    SQLITE_MIGRATIONS,
};
use crate::address::ContentHash;

mod placements;

/// [`MetaDb`] on an SQLite file.
#[derive(Debug)]
pub struct SqliteMeta {
    conn: Connection,
    path: PathBuf,
}

pub(super) fn query_err(op: &'static str) -> impl FnOnce(rusqlite::Error) -> MetaError {
    move |e| MetaError::Query {
        backend: "sqlite",
        op,
        source: Box::new(e),
    }
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
        let conn = Connection::open(path).map_err(|e| open_err(Box::new(e)))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| open_err(Box::new(e)))?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(|e| open_err(Box::new(e)))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(open_err(
                format!("could not switch to WAL mode (got '{mode}')").into(),
            ));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .and_then(|()| conn.pragma_update(None, "foreign_keys", "ON"))
            .map_err(|e| open_err(Box::new(e)))?;
        let mut db = SqliteMeta {
            conn,
            path: path.to_path_buf(),
        };
        db.migrate()?;
        Ok(db)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(&mut self) -> Result<(), MetaError> {
        let supported = SQLITE_MIGRATIONS.len() as u32;
        // IMMEDIATE takes the write lock up front, so two processes migrate one after the other.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(query_err("starting migration"))?;
        tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .map_err(query_err("creating schema_version"))?;
        let found: u32 = tx
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version",
                [],
                |row| row.get(0),
            )
            .map_err(query_err("reading schema_version"))?;
        if found > supported {
            return Err(MetaError::SchemaTooNew { found, supported });
        }
        for (index, script) in SQLITE_MIGRATIONS.iter().enumerate().skip(found as usize) {
            tx.execute_batch(script).map_err(query_err("migrating"))?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                params![index as u32 + 1],
            )
            .map_err(query_err("recording migration"))?;
        }
        tx.commit().map_err(query_err("committing migration"))
    }
}

impl MetaDb for SqliteMeta {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn schema_version(&mut self) -> Result<u32, MetaError> {
        self.conn
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version",
                [],
                |row| row.get(0),
            )
            .map_err(query_err("reading schema_version"))
    }

    fn insert_file(
        &mut self,
        record: &FileRecord,
        items: &[ContentHash],
    ) -> Result<FileRecord, MetaError> {
        let hash = record.hash.to_hex();
        let size = size_to_db(record.size)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(query_err("starting insert"))?;
        tx.execute(
            "INSERT INTO files (hash, kind, size, name, added_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (hash) DO NOTHING",
            params![
                hash,
                record.kind.as_str(),
                size,
                record.name,
                record.added_at
            ],
        )
        .map_err(query_err("inserting file"))?;
        {
            let mut stmt = tx
                .prepare(
                    "INSERT INTO file_items (file_hash, item_hash, seq) VALUES (?1, ?2, ?3)
                     ON CONFLICT (file_hash, item_hash) DO NOTHING",
                )
                .map_err(query_err("inserting file items"))?;
            for (seq, item) in items.iter().enumerate() {
                stmt.execute(params![hash, item.to_hex(), seq as i64])
                    .map_err(query_err("inserting file items"))?;
            }
        }
        let stored = get_file(&tx, &hash)?
            .ok_or_else(|| MetaError::BadRow(format!("file {hash} vanished after insert")))?;
        tx.commit().map_err(query_err("committing insert"))?;
        Ok(stored)
    }

    fn get_file(&mut self, hash: &ContentHash) -> Result<Option<FileRecord>, MetaError> {
        get_file(&self.conn, &hash.to_hex())
    }

    fn list_files(&mut self) -> Result<Vec<FileRecord>, MetaError> {
        let mut stmt = self
            .conn
            .prepare("SELECT hash, kind, size, name, added_at FROM files ORDER BY added_at, hash")
            .map_err(query_err("listing files"))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, Option<String>>(3)?,
                    row.get::<_, i64>(4)?,
                ))
            })
            .map_err(query_err("listing files"))?;
        let mut out = Vec::new();
        for row in rows {
            let (hash, kind, size, name, added_at) = row.map_err(query_err("listing files"))?;
            out.push(decode_record(&hash, &kind, size, name, added_at)?);
        }
        Ok(out)
    }

    fn remove_file(&mut self, hash: &ContentHash) -> Result<Option<Vec<ContentHash>>, MetaError> {
        let hash = hash.to_hex();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(query_err("starting remove"))?;
        if get_file(&tx, &hash)?.is_none() {
            return Ok(None);
        }
        let orphans = {
            let mut stmt = tx
                .prepare(
                    "SELECT fi.item_hash FROM file_items fi
                     WHERE fi.file_hash = ?1
                       AND NOT EXISTS (SELECT 1 FROM file_items o
                                       WHERE o.item_hash = fi.item_hash AND o.file_hash <> ?1)
                       AND NOT EXISTS (SELECT 1 FROM files f
                                       WHERE f.hash = fi.item_hash AND f.hash <> ?1)
                     ORDER BY fi.seq",
                )
                .map_err(query_err("finding unused items"))?;
            let rows = stmt
                .query_map(params![hash], |row| row.get::<_, String>(0))
                .map_err(query_err("finding unused items"))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(decode_hash(
                    &row.map_err(query_err("finding unused items"))?,
                )?);
            }
            out
        };
        tx.execute("DELETE FROM file_items WHERE file_hash = ?1", params![hash])
            .map_err(query_err("removing file items"))?;
        tx.execute("DELETE FROM files WHERE hash = ?1", params![hash])
            .map_err(query_err("removing file"))?;
        tx.commit().map_err(query_err("committing remove"))?;
        Ok(Some(orphans))
    }

    fn upsert_peer(&mut self, peer: &PeerUpsert, now: i64) -> Result<PeerRecord, MetaError> {
        check_peer(peer)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(query_err("starting peer upsert"))?;
        // The WHERE of the update leaves a row with another key untouched: 0 rows changed.
        let changed = tx
            .execute(
                "INSERT INTO peers (agent, agent_key, host, port, last_addr, first_seen,
                                    last_seen, notes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)
                 ON CONFLICT (agent) DO UPDATE SET
                    host = COALESCE(excluded.host, peers.host),
                    port = COALESCE(excluded.port, peers.port),
                    last_addr = COALESCE(excluded.last_addr, peers.last_addr),
                    notes = COALESCE(excluded.notes, peers.notes),
                    last_seen = MAX(peers.last_seen, excluded.last_seen)
                 WHERE peers.agent_key = excluded.agent_key",
                params![
                    peer.agent,
                    &peer.agent_key[..],
                    peer.host,
                    peer.port,
                    peer.last_addr,
                    now,
                    peer.notes
                ],
            )
            .map_err(query_err("recording peer"))?;
        if changed == 0 {
            return Err(MetaError::PeerKeyMismatch {
                agent: peer.agent.clone(),
            });
        }
        let stored = get_peer(&tx, &peer.agent)?.ok_or_else(|| {
            MetaError::BadRow(format!("peer {} vanished after upsert", peer.agent))
        })?;
        tx.commit().map_err(query_err("committing peer upsert"))?;
        Ok(stored)
    }

    fn get_peer(&mut self, agent: &str) -> Result<Option<PeerRecord>, MetaError> {
        get_peer(&self.conn, agent)
    }

    fn list_peers(&mut self) -> Result<Vec<PeerRecord>, MetaError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT p.agent, p.agent_key, p.host, p.port, p.last_addr, p.first_seen,
                        p.last_seen, p.retention_failures, p.notes,
                        EXISTS (SELECT 1 FROM blocked_agents b WHERE b.agent = p.agent)
                 FROM peers p ORDER BY p.agent",
            )
            .map_err(query_err("listing peers"))?;
        let rows = stmt
            .query_map([], PeerRow::read)
            .map_err(query_err("listing peers"))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.map_err(query_err("listing peers"))?.decode()?);
        }
        Ok(out)
    }

    fn remove_peer(&mut self, agent: &str) -> Result<bool, MetaError> {
        let removed = self
            .conn
            .execute("DELETE FROM peers WHERE agent = ?1", params![agent])
            .map_err(query_err("removing peer"))?;
        Ok(removed > 0)
    }

    fn touch_peer(&mut self, agent: &str, addr: Option<&str>, now: i64) -> Result<bool, MetaError> {
        let touched = self
            .conn
            .execute(
                "UPDATE peers SET last_seen = MAX(last_seen, ?2),
                                  last_addr = COALESCE(?3, last_addr)
                 WHERE agent = ?1",
                params![agent, now, addr],
            )
            .map_err(query_err("touching peer"))?;
        Ok(touched > 0)
    }

    fn set_peer_blocked(
        &mut self,
        agent: &str,
        blocked: bool,
        now: i64,
    ) -> Result<bool, MetaError> {
        let changed = if blocked {
            check_agent_id(agent)?;
            self.conn
                .execute(
                    "INSERT INTO blocked_agents (agent, since) VALUES (?1, ?2)
                     ON CONFLICT (agent) DO NOTHING",
                    params![agent, now],
                )
                .map_err(query_err("blocking agent"))?
        } else {
            self.conn
                .execute(
                    "DELETE FROM blocked_agents WHERE agent = ?1",
                    params![agent],
                )
                .map_err(query_err("unblocking agent"))?
        };
        Ok(changed > 0)
    }

    fn is_agent_blocked(&mut self, agent: &str) -> Result<bool, MetaError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM blocked_agents WHERE agent = ?1)",
                params![agent],
                |row| row.get(0),
            )
            .map_err(query_err("reading block"))
    }

    fn list_blocked_agents(&mut self) -> Result<Vec<BlockedAgent>, MetaError> {
        let mut stmt = self
            .conn
            .prepare("SELECT agent, since FROM blocked_agents ORDER BY agent")
            .map_err(query_err("listing blocked agents"))?;
        let rows = stmt
            .query_map([], |row| {
                Ok(BlockedAgent {
                    agent: row.get(0)?,
                    since: row.get(1)?,
                })
            })
            .map_err(query_err("listing blocked agents"))?;
        rows.collect::<Result<_, _>>()
            .map_err(query_err("listing blocked agents"))
    }

    fn insert_ticket(&mut self, ticket: &TicketRecord) -> Result<(), MetaError> {
        check_token(&ticket.token)?;
        let inserted = self
            .conn
            .execute(
                "INSERT INTO tickets (token, issued_at, expires_at, reusable, cuid, used_at,
                                      used_by, revoked)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (token) DO NOTHING",
                params![
                    ticket.token,
                    ticket.issued_at,
                    ticket.expires_at,
                    ticket.reusable,
                    ticket.cuid,
                    ticket.used_at,
                    ticket.used_by,
                    ticket.revoked
                ],
            )
            .map_err(query_err("recording ticket"))?;
        if inserted == 0 {
            return Err(MetaError::DuplicateTicket);
        }
        Ok(())
    }

    fn get_ticket(&mut self, token: &str) -> Result<Option<TicketRecord>, MetaError> {
        get_ticket(&self.conn, &token.to_ascii_lowercase())
    }

    fn list_tickets(&mut self) -> Result<Vec<TicketRecord>, MetaError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT token, issued_at, expires_at, reusable, cuid, used_at, used_by, revoked
                 FROM tickets ORDER BY issued_at, token",
            )
            .map_err(query_err("listing tickets"))?;
        let rows = stmt
            .query_map([], ticket_from_row)
            .map_err(query_err("listing tickets"))?;
        rows.collect::<Result<_, _>>()
            .map_err(query_err("listing tickets"))
    }

    fn revoke_ticket(&mut self, token: &str) -> Result<bool, MetaError> {
        let found = self
            .conn
            .execute(
                "UPDATE tickets SET revoked = 1 WHERE token = ?1",
                params![token.to_ascii_lowercase()],
            )
            .map_err(query_err("revoking ticket"))?;
        Ok(found > 0)
    }

    fn redeem_ticket(
        &mut self,
        token: &str,
        agent: &str,
        now: i64,
    ) -> Result<TicketVerdict, MetaError> {
        let token = token.to_ascii_lowercase();
        // IMMEDIATE takes the write lock before reading, so no other connection can redeem the
        // ticket between the check and the update.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(query_err("starting ticket redemption"))?;
        let Some(ticket) = get_ticket(&tx, &token)? else {
            return Ok(TicketVerdict::Refused(super::RefusalReason::Unknown));
        };
        if let Some(reason) = judge_ticket(&ticket, now) {
            return Ok(TicketVerdict::Refused(reason));
        }
        tx.execute(
            "UPDATE tickets SET used_at = ?2, used_by = ?3 WHERE token = ?1",
            params![token, now, agent],
        )
        .map_err(query_err("recording ticket use"))?;
        tx.commit()
            .map_err(query_err("committing ticket redemption"))?;
        Ok(TicketVerdict::Accepted)
    }

    fn purge_expired_tickets(&mut self, now: i64, keep_for_secs: i64) -> Result<u64, MetaError> {
        let purged = self
            .conn
            .execute(
                "DELETE FROM tickets WHERE expires_at <= ?1",
                params![purge_cutoff(now, keep_for_secs)],
            )
            .map_err(query_err("purging expired tickets"))?;
        Ok(purged as u64)
    }

    fn insert_custody(&mut self, record: &CustodyRecord) -> Result<CustodyRecord, MetaError> {
        self.conn
            .execute(
                "INSERT INTO custody (original_hash, owner_key, encrypted_hash, pull_request_hash,
                    size, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (original_hash, owner_key) DO NOTHING",
                params![
                    record.original_hash.to_hex(),
                    &record.owner_key[..],
                    record.encrypted_hash.to_hex(),
                    record.pull_request_hash.to_hex(),
                    size_to_db(record.size)?,
                    record.received_at
                ],
            )
            .map_err(query_err("recording custody"))?;
        let all = self.custody_of(&record.original_hash)?;
        all.into_iter()
            .find(|r| r.owner_key == record.owner_key)
            .ok_or_else(|| MetaError::BadRow("custody row vanished after insert".into()))
    }

    fn custody_of(&mut self, original: &ContentHash) -> Result<Vec<CustodyRecord>, MetaError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {CUSTODY_COLUMNS} FROM custody WHERE original_hash = ?1
                 ORDER BY received_at DESC"
            ))
            .map_err(query_err("reading custody"))?;
        let rows = stmt
            .query_map(params![original.to_hex()], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, i64>(5)?,
                ))
            })
            .map_err(query_err("reading custody"))?;
        let mut records = Vec::new();
        for row in rows {
            let (o, k, e, p, size, at) = row.map_err(query_err("reading custody"))?;
            records.push(custody_from_columns(&o, &k, &e, &p, size, at)?);
        }
        Ok(records)
    }

    fn custody_bytes(&mut self) -> Result<u64, MetaError> {
        let total: i64 = self
            .conn
            .query_row("SELECT COALESCE(SUM(size), 0) FROM custody", [], |row| {
                row.get(0)
            })
            .map_err(query_err("summing custody"))?;
        Ok(u64::try_from(total).unwrap_or(0))
    }

    fn share_file(&mut self, hash: &ContentHash, now: i64) -> Result<bool, MetaError> {
        super::sharing::sqlite::share(&self.conn, hash, now)
    }

    fn unshare_file(&mut self, hash: &ContentHash) -> Result<bool, MetaError> {
        super::sharing::sqlite::unshare(&self.conn, hash)
    }

    fn shared_files(&mut self, limit: usize) -> Result<Vec<ContentHash>, MetaError> {
        super::sharing::sqlite::shared(&self.conn, limit)
    }

    fn record_replica(
        &mut self,
        hash: &ContentHash,
        from: &str,
        size: u64,
        now: i64,
    ) -> Result<(), MetaError> {
        super::sharing::sqlite::record_replica(&self.conn, hash, from, size, now)
    }

    fn replica_bytes(&mut self) -> Result<u64, MetaError> {
        super::sharing::sqlite::replica_bytes(&self.conn)
    }

    fn chat_persist(&mut self, row: &ChatQueueRow, now: i64) -> Result<(), MetaError> {
        super::chat::sqlite::persist(&self.conn, row, now)
    }

    fn chat_forget(&mut self, key: &str) -> Result<(), MetaError> {
        super::chat::sqlite::forget(&self.conn, key)
    }

    fn chat_queued(&mut self, limit: usize) -> Result<Vec<ChatQueueRow>, MetaError> {
        super::chat::sqlite::queued(&self.conn, limit)
    }

    fn chat_append(&mut self, row: &ChatMessageRow, keep: usize) -> Result<i64, MetaError> {
        super::chat::sqlite::append(&mut self.conn, row, keep)
    }

    fn chat_read(
        &mut self,
        after: i64,
        channel: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ChatMessageRow>, MetaError> {
        super::chat::sqlite::read(&self.conn, after, channel, limit)
    }

    fn chat_set_joined(
        &mut self,
        channel: &ChatChannelRow,
        joined: bool,
        now: i64,
    ) -> Result<(), MetaError> {
        super::chat::sqlite::set_joined(&self.conn, channel, joined, now)
    }

    fn chat_joined(&mut self) -> Result<Vec<ChatChannelRow>, MetaError> {
        super::chat::sqlite::joined(&self.conn)
    }

    fn insert_placement(
        &mut self,
        agent: &str,
        hash: &ContentHash,
        now: i64,
        max_per_agent: u64,
    ) -> Result<PlacementOutcome, MetaError> {
        placements::insert(&mut self.conn, agent, hash, now, max_per_agent)
    }

    fn due_placements(
        &mut self,
        agents: &[String],
        checked_before: i64,
        limit: usize,
    ) -> Result<Vec<Placement>, MetaError> {
        placements::due(&mut self.conn, agents, checked_before, limit)
    }

    fn placements_of(&mut self, agent: &str) -> Result<Vec<Placement>, MetaError> {
        placements::of_agent(&mut self.conn, agent)
    }

    fn record_check(
        &mut self,
        agent: &str,
        hash: &ContentHash,
        now: i64,
        result: &CheckResult,
    ) -> Result<bool, MetaError> {
        placements::record_check(&mut self.conn, agent, hash, now, result)
    }

    fn remove_placement(&mut self, agent: &str, hash: &ContentHash) -> Result<bool, MetaError> {
        placements::remove(&mut self.conn, agent, hash)
    }

    fn retention_by_peer(&mut self) -> Result<Vec<PeerRetention>, MetaError> {
        placements::by_peer(&mut self.conn)
    }

    fn item_in_use(&mut self, item: &ContentHash) -> Result<bool, MetaError> {
        let hex = item.to_hex();
        let used: i64 = self
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM file_items WHERE item_hash = ?1)
                     OR EXISTS (SELECT 1 FROM files WHERE hash = ?1)",
                [&hex],
                |row| row.get(0),
            )
            .map_err(query_err("checking item use"))?;
        Ok(used != 0)
    }
}

/// The columns of a peer row, as read, before validation.
struct PeerRow {
    agent: String,
    agent_key: Vec<u8>,
    host: Option<String>,
    port: Option<i64>,
    last_addr: Option<String>,
    first_seen: i64,
    last_seen: i64,
    retention_failures: i64,
    notes: Option<String>,
    blocked: bool,
}

impl PeerRow {
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<PeerRow> {
        Ok(PeerRow {
            agent: row.get(0)?,
            agent_key: row.get(1)?,
            host: row.get(2)?,
            port: row.get(3)?,
            last_addr: row.get(4)?,
            first_seen: row.get(5)?,
            last_seen: row.get(6)?,
            retention_failures: row.get(7)?,
            notes: row.get(8)?,
            blocked: row.get(9)?,
        })
    }

    fn decode(self) -> Result<PeerRecord, MetaError> {
        Ok(PeerRecord {
            agent_key: key_from_db(&self.agent, &self.agent_key)?,
            port: port_from_db(&self.agent, self.port)?,
            retention_failures: count_from_db(&self.agent, self.retention_failures)?,
            agent: self.agent,
            host: self.host,
            last_addr: self.last_addr,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            blocked: self.blocked,
            notes: self.notes,
        })
    }
}

fn get_peer(conn: &Connection, agent: &str) -> Result<Option<PeerRecord>, MetaError> {
    conn.query_row(
        "SELECT p.agent, p.agent_key, p.host, p.port, p.last_addr, p.first_seen, p.last_seen,
                p.retention_failures, p.notes,
                EXISTS (SELECT 1 FROM blocked_agents b WHERE b.agent = p.agent)
         FROM peers p WHERE p.agent = ?1",
        params![agent],
        PeerRow::read,
    )
    .optional()
    .map_err(query_err("reading peer"))?
    .map(PeerRow::decode)
    .transpose()
}

fn ticket_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TicketRecord> {
    Ok(TicketRecord {
        token: row.get(0)?,
        issued_at: row.get(1)?,
        expires_at: row.get(2)?,
        reusable: row.get(3)?,
        cuid: row.get(4)?,
        used_at: row.get(5)?,
        used_by: row.get(6)?,
        revoked: row.get(7)?,
    })
}

fn get_ticket(conn: &Connection, token: &str) -> Result<Option<TicketRecord>, MetaError> {
    conn.query_row(
        "SELECT token, issued_at, expires_at, reusable, cuid, used_at, used_by, revoked
         FROM tickets WHERE token = ?1",
        params![token],
        ticket_from_row,
    )
    .optional()
    .map_err(query_err("reading ticket"))
}

fn get_file(conn: &Connection, hash: &str) -> Result<Option<FileRecord>, MetaError> {
    let row = conn
        .query_row(
            "SELECT hash, kind, size, name, added_at FROM files WHERE hash = ?1",
            params![hash],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, Option<String>>(3)?,
                    row.get::<_, i64>(4)?,
                ))
            },
        )
        .optional()
        .map_err(query_err("reading file"))?;
    row.map(|(hash, kind, size, name, added_at)| decode_record(&hash, &kind, size, name, added_at))
        .transpose()
}
