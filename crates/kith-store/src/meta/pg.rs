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

use super::chat::{ChatChannelRow, ChatMessageRow, ChatQueueRow};
use super::custody::{custody_from_columns, CustodyRecord, CUSTODY_COLUMNS};
use super::peers::{
    check_agent_id, check_peer, check_token, count_from_db, judge_ticket, key_from_db,
    port_from_db, purge_cutoff,
};
use super::placements::{CheckResult, PeerRetention, Placement, PlacementOutcome};
use super::{
    decode_hash, decode_record, redact_url, size_to_db, BlockedAgent, FileRecord, MetaDb,
    MetaError, PeerRecord, PeerUpsert, RefusalReason, TicketRecord, TicketVerdict,
    POSTGRES_MIGRATIONS,
};
use crate::address::ContentHash;

mod placements;

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

pub(super) fn query_err(op: &'static str) -> impl FnOnce(postgres::Error) -> MetaError {
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
    fn upsert_peer(&mut self, peer: &PeerUpsert, now: i64) -> Result<PeerRecord, MetaError> {
        check_peer(peer)?;
        let port = peer.port.map(i32::from);
        let mut tx = self
            .client
            .transaction()
            .map_err(query_err("starting peer upsert"))?;
        // One statement, so two processes recording the same new peer cannot both insert; the
        // WHERE of the update leaves a row with another key untouched: no row returned.
        let row = tx
            .query_opt(
                "INSERT INTO peers (agent, agent_key, host, port, last_addr, first_seen,
                                    last_seen, notes)
                 VALUES ($1, $2, $3, $4, $5, $6, $6, $7)
                 ON CONFLICT (agent) DO UPDATE SET
                    host = COALESCE(excluded.host, peers.host),
                    port = COALESCE(excluded.port, peers.port),
                    last_addr = COALESCE(excluded.last_addr, peers.last_addr),
                    notes = COALESCE(excluded.notes, peers.notes),
                    last_seen = GREATEST(peers.last_seen, excluded.last_seen)
                 WHERE peers.agent_key = excluded.agent_key
                 RETURNING agent",
                &[
                    &peer.agent,
                    &&peer.agent_key[..],
                    &peer.host,
                    &port,
                    &peer.last_addr,
                    &now,
                    &peer.notes,
                ],
            )
            .map_err(query_err("recording peer"))?;
        if row.is_none() {
            return Err(MetaError::PeerKeyMismatch {
                agent: peer.agent.clone(),
            });
        }
        let stored = get_peer(&mut tx, &peer.agent)?.ok_or_else(|| {
            MetaError::BadRow(format!("peer {} vanished after upsert", peer.agent))
        })?;
        tx.commit().map_err(query_err("committing peer upsert"))?;
        Ok(stored)
    }

    fn get_peer(&mut self, agent: &str) -> Result<Option<PeerRecord>, MetaError> {
        get_peer(&mut self.client, agent)
    }

    fn list_peers(&mut self) -> Result<Vec<PeerRecord>, MetaError> {
        self.client
            .query(
                "SELECT p.agent, p.agent_key, p.host, p.port, p.last_addr, p.first_seen,
                        p.last_seen, p.retention_failures, p.notes,
                        EXISTS (SELECT 1 FROM blocked_agents b WHERE b.agent = p.agent)
                 FROM peers p ORDER BY p.agent",
                &[],
            )
            .map_err(query_err("listing peers"))?
            .iter()
            .map(peer_from_row)
            .collect()
    }

    fn remove_peer(&mut self, agent: &str) -> Result<bool, MetaError> {
        let removed = self
            .client
            .execute("DELETE FROM peers WHERE agent = $1", &[&agent])
            .map_err(query_err("removing peer"))?;
        Ok(removed > 0)
    }

    fn touch_peer(&mut self, agent: &str, addr: Option<&str>, now: i64) -> Result<bool, MetaError> {
        let touched = self
            .client
            .execute(
                "UPDATE peers SET last_seen = GREATEST(last_seen, $2),
                                  last_addr = COALESCE($3, last_addr)
                 WHERE agent = $1",
                &[&agent, &now, &addr],
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
            self.client
                .execute(
                    "INSERT INTO blocked_agents (agent, since) VALUES ($1, $2)
                     ON CONFLICT (agent) DO NOTHING",
                    &[&agent, &now],
                )
                .map_err(query_err("blocking agent"))?
        } else {
            self.client
                .execute("DELETE FROM blocked_agents WHERE agent = $1", &[&agent])
                .map_err(query_err("unblocking agent"))?
        };
        Ok(changed > 0)
    }

    fn is_agent_blocked(&mut self, agent: &str) -> Result<bool, MetaError> {
        self.client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM blocked_agents WHERE agent = $1)",
                &[&agent],
            )
            .map_err(query_err("reading block"))?
            .try_get(0)
            .map_err(|e| MetaError::BadRow(e.to_string()))
    }

    fn list_blocked_agents(&mut self) -> Result<Vec<BlockedAgent>, MetaError> {
        let bad = |e: postgres::Error| MetaError::BadRow(e.to_string());
        self.client
            .query(
                "SELECT agent, since FROM blocked_agents ORDER BY agent",
                &[],
            )
            .map_err(query_err("listing blocked agents"))?
            .iter()
            .map(|row| {
                Ok(BlockedAgent {
                    agent: row.try_get(0).map_err(bad)?,
                    since: row.try_get(1).map_err(bad)?,
                })
            })
            .collect()
    }

    fn insert_ticket(&mut self, ticket: &TicketRecord) -> Result<(), MetaError> {
        check_token(&ticket.token)?;
        let inserted = self
            .client
            .execute(
                "INSERT INTO tickets (token, issued_at, expires_at, reusable, cuid, used_at,
                                      used_by, revoked)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (token) DO NOTHING",
                &[
                    &ticket.token,
                    &ticket.issued_at,
                    &ticket.expires_at,
                    &ticket.reusable,
                    &ticket.cuid,
                    &ticket.used_at,
                    &ticket.used_by,
                    &ticket.revoked,
                ],
            )
            .map_err(query_err("recording ticket"))?;
        if inserted == 0 {
            return Err(MetaError::DuplicateTicket);
        }
        Ok(())
    }

    fn get_ticket(&mut self, token: &str) -> Result<Option<TicketRecord>, MetaError> {
        get_ticket(&mut self.client, &token.to_ascii_lowercase(), false)
    }

    fn list_tickets(&mut self) -> Result<Vec<TicketRecord>, MetaError> {
        self.client
            .query(
                "SELECT token, issued_at, expires_at, reusable, cuid, used_at, used_by, revoked
                 FROM tickets ORDER BY issued_at, token",
                &[],
            )
            .map_err(query_err("listing tickets"))?
            .iter()
            .map(ticket_from_row)
            .collect()
    }

    fn revoke_ticket(&mut self, token: &str) -> Result<bool, MetaError> {
        let found = self
            .client
            .execute(
                "UPDATE tickets SET revoked = true WHERE token = $1",
                &[&token.to_ascii_lowercase()],
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
        let mut tx = self
            .client
            .transaction()
            .map_err(query_err("starting ticket redemption"))?;
        // FOR UPDATE: a concurrent redemption of the same ticket waits here until this
        // transaction ends, then reads the row as this one left it.
        let Some(ticket) = get_ticket(&mut tx, &token, true)? else {
            return Ok(TicketVerdict::Refused(RefusalReason::Unknown));
        };
        if let Some(reason) = judge_ticket(&ticket, now) {
            return Ok(TicketVerdict::Refused(reason));
        }
        tx.execute(
            "UPDATE tickets SET used_at = $2, used_by = $3 WHERE token = $1",
            &[&token, &now, &agent],
        )
        .map_err(query_err("recording ticket use"))?;
        tx.commit()
            .map_err(query_err("committing ticket redemption"))?;
        Ok(TicketVerdict::Accepted)
    }

    fn purge_expired_tickets(&mut self, now: i64, keep_for_secs: i64) -> Result<u64, MetaError> {
        self.client
            .execute(
                "DELETE FROM tickets WHERE expires_at <= $1",
                &[&purge_cutoff(now, keep_for_secs)],
            )
            .map_err(query_err("purging expired tickets"))
    }

    fn insert_custody(&mut self, record: &CustodyRecord) -> Result<CustodyRecord, MetaError> {
        self.client
            .execute(
                "INSERT INTO custody (original_hash, owner_key, encrypted_hash, pull_request_hash,
                    size, received_at) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (original_hash, owner_key) DO NOTHING",
                &[
                    &record.original_hash.to_hex(),
                    &&record.owner_key[..],
                    &record.encrypted_hash.to_hex(),
                    &record.pull_request_hash.to_hex(),
                    &size_to_db(record.size)?,
                    &record.received_at,
                ],
            )
            .map_err(query_err("recording custody"))?;
        let all = self.custody_of(&record.original_hash)?;
        all.into_iter()
            .find(|r| r.owner_key == record.owner_key)
            .ok_or_else(|| MetaError::BadRow("custody row vanished after insert".into()))
    }

    fn custody_of(&mut self, original: &ContentHash) -> Result<Vec<CustodyRecord>, MetaError> {
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT {CUSTODY_COLUMNS} FROM custody WHERE original_hash = $1
                     ORDER BY received_at DESC"
                ),
                &[&original.to_hex()],
            )
            .map_err(query_err("reading custody"))?;
        let bad = |e: postgres::Error| MetaError::BadRow(e.to_string());
        rows.iter()
            .map(|row| {
                let o: String = row.try_get(0).map_err(bad)?;
                let k: Vec<u8> = row.try_get(1).map_err(bad)?;
                let e: String = row.try_get(2).map_err(bad)?;
                let p: String = row.try_get(3).map_err(bad)?;
                custody_from_columns(
                    &o,
                    &k,
                    &e,
                    &p,
                    row.try_get(4).map_err(bad)?,
                    row.try_get(5).map_err(bad)?,
                )
            })
            .collect()
    }

    fn custody_bytes(&mut self) -> Result<u64, MetaError> {
        let row = self
            .client
            .query_one("SELECT COALESCE(SUM(size), 0)::BIGINT FROM custody", &[])
            .map_err(query_err("summing custody"))?;
        let total: i64 = row
            .try_get(0)
            .map_err(|e| MetaError::BadRow(e.to_string()))?;
        Ok(u64::try_from(total).unwrap_or(0))
    }

    fn share_file(&mut self, hash: &ContentHash, now: i64) -> Result<bool, MetaError> {
        super::sharing::pg::share(&mut self.client, hash, now)
    }

    fn unshare_file(&mut self, hash: &ContentHash) -> Result<bool, MetaError> {
        super::sharing::pg::unshare(&mut self.client, hash)
    }

    fn shared_files(&mut self, limit: usize) -> Result<Vec<ContentHash>, MetaError> {
        super::sharing::pg::shared(&mut self.client, limit)
    }

    fn record_replica(
        &mut self,
        hash: &ContentHash,
        from: &str,
        size: u64,
        now: i64,
    ) -> Result<(), MetaError> {
        super::sharing::pg::record_replica(&mut self.client, hash, from, size, now)
    }

    fn replica_bytes(&mut self) -> Result<u64, MetaError> {
        super::sharing::pg::replica_bytes(&mut self.client)
    }

    fn chat_persist(&mut self, row: &ChatQueueRow, now: i64) -> Result<(), MetaError> {
        super::chat::pg::persist(&mut self.client, row, now)
    }

    fn chat_forget(&mut self, key: &str) -> Result<(), MetaError> {
        super::chat::pg::forget(&mut self.client, key)
    }

    fn chat_queued(&mut self, limit: usize) -> Result<Vec<ChatQueueRow>, MetaError> {
        super::chat::pg::queued(&mut self.client, limit)
    }

    fn chat_append(&mut self, row: &ChatMessageRow, keep: usize) -> Result<i64, MetaError> {
        super::chat::pg::append(&mut self.client, row, keep)
    }

    fn chat_read(
        &mut self,
        after: i64,
        channel: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ChatMessageRow>, MetaError> {
        super::chat::pg::read(&mut self.client, after, channel, limit)
    }

    fn chat_set_joined(
        &mut self,
        channel: &ChatChannelRow,
        joined: bool,
        now: i64,
    ) -> Result<(), MetaError> {
        super::chat::pg::set_joined(&mut self.client, channel, joined, now)
    }

    fn chat_joined(&mut self) -> Result<Vec<ChatChannelRow>, MetaError> {
        super::chat::pg::joined(&mut self.client)
    }

    fn insert_placement(
        &mut self,
        agent: &str,
        hash: &ContentHash,
        now: i64,
        max_per_agent: u64,
    ) -> Result<PlacementOutcome, MetaError> {
        placements::insert(&mut self.client, agent, hash, now, max_per_agent)
    }

    fn due_placements(
        &mut self,
        agents: &[String],
        checked_before: i64,
        limit: usize,
    ) -> Result<Vec<Placement>, MetaError> {
        placements::due(&mut self.client, agents, checked_before, limit)
    }

    fn placements_of(&mut self, agent: &str) -> Result<Vec<Placement>, MetaError> {
        placements::of_agent(&mut self.client, agent)
    }

    fn record_check(
        &mut self,
        agent: &str,
        hash: &ContentHash,
        now: i64,
        result: &CheckResult,
    ) -> Result<bool, MetaError> {
        placements::record_check(&mut self.client, agent, hash, now, result)
    }

    fn remove_placement(&mut self, agent: &str, hash: &ContentHash) -> Result<bool, MetaError> {
        placements::remove(&mut self.client, agent, hash)
    }

    fn retention_by_peer(&mut self) -> Result<Vec<PeerRetention>, MetaError> {
        placements::by_peer(&mut self.client)
    }

    fn item_in_use(&mut self, item: &ContentHash) -> Result<bool, MetaError> {
        let hex = item.to_hex();
        let row = self
            .client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM file_items WHERE item_hash = $1)
                     OR EXISTS (SELECT 1 FROM files WHERE hash = $1)",
                &[&hex],
            )
            .map_err(query_err("checking item use"))?;
        row.try_get(0).map_err(|e| MetaError::BadRow(e.to_string()))
    }
}

fn peer_from_row(row: &Row) -> Result<PeerRecord, MetaError> {
    let bad = |e: postgres::Error| MetaError::BadRow(e.to_string());
    let agent: String = row.try_get(0).map_err(bad)?;
    let key: Vec<u8> = row.try_get(1).map_err(bad)?;
    let port: Option<i32> = row.try_get(3).map_err(bad)?;
    let failures: i64 = row.try_get(7).map_err(bad)?;
    Ok(PeerRecord {
        agent_key: key_from_db(&agent, &key)?,
        host: row.try_get(2).map_err(bad)?,
        port: port_from_db(&agent, port.map(i64::from))?,
        last_addr: row.try_get(4).map_err(bad)?,
        first_seen: row.try_get(5).map_err(bad)?,
        last_seen: row.try_get(6).map_err(bad)?,
        retention_failures: count_from_db(&agent, failures)?,
        notes: row.try_get(8).map_err(bad)?,
        blocked: row.try_get(9).map_err(bad)?,
        agent,
    })
}

fn get_peer(client: &mut impl GenericClient, agent: &str) -> Result<Option<PeerRecord>, MetaError> {
    client
        .query_opt(
            "SELECT p.agent, p.agent_key, p.host, p.port, p.last_addr, p.first_seen,
                    p.last_seen, p.retention_failures, p.notes,
                    EXISTS (SELECT 1 FROM blocked_agents b WHERE b.agent = p.agent)
             FROM peers p WHERE p.agent = $1",
            &[&agent],
        )
        .map_err(query_err("reading peer"))?
        .map(|row| peer_from_row(&row))
        .transpose()
}

fn ticket_from_row(row: &Row) -> Result<TicketRecord, MetaError> {
    let bad = |e: postgres::Error| MetaError::BadRow(e.to_string());
    Ok(TicketRecord {
        token: row.try_get(0).map_err(bad)?,
        issued_at: row.try_get(1).map_err(bad)?,
        expires_at: row.try_get(2).map_err(bad)?,
        reusable: row.try_get(3).map_err(bad)?,
        cuid: row.try_get(4).map_err(bad)?,
        used_at: row.try_get(5).map_err(bad)?,
        used_by: row.try_get(6).map_err(bad)?,
        revoked: row.try_get(7).map_err(bad)?,
    })
}

/// The ticket with this token; `lock` takes a row lock (inside a transaction) until it ends.
fn get_ticket(
    client: &mut impl GenericClient,
    token: &str,
    lock: bool,
) -> Result<Option<TicketRecord>, MetaError> {
    let sql = if lock {
        "SELECT token, issued_at, expires_at, reusable, cuid, used_at, used_by, revoked
         FROM tickets WHERE token = $1 FOR UPDATE"
    } else {
        "SELECT token, issued_at, expires_at, reusable, cuid, used_at, used_by, revoked
         FROM tickets WHERE token = $1"
    };
    client
        .query_opt(sql, &[&token])
        .map_err(query_err("reading ticket"))?
        .map(|row| ticket_from_row(&row))
        .transpose()
}
