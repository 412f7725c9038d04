//! The key store: known peers and blocked agents, their validation, and their statements.

use serde::{Deserialize, Serialize};

use kith_crypto::identity::AgentId;

use super::sql::{args, Row, Sql};
use super::MetaError;

/// What the node learned about a peer, to record with [`MetaDb::upsert_peer`].
///
/// `agent` must be the agent id of `agent_key` (its unpadded base64url), and the key a valid
/// Ed25519 public key. `None` fields leave a recorded value unchanged.
///
/// [`MetaDb::upsert_peer`]: super::MetaDb::upsert_peer
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerUpsert {
    /// The peer's agent id: 43 characters of unpadded base64url.
    pub agent: String,
    /// The peer's 32-byte Ed25519 public key (the agent id decoded).
    pub agent_key: [u8; 32],
    /// The host the peer advertises (from its CHIP address), if known.
    pub host: Option<String>,
    /// The port the peer advertises, if known.
    pub port: Option<u16>,
    /// The socket address the peer was last seen at (`ip:port`), if known.
    pub last_addr: Option<String>,
    /// Free text for the operator.
    pub notes: Option<String>,
}

impl PeerUpsert {
    /// A peer known by its agent id, with no address or notes yet.
    pub fn new(agent: &AgentId) -> PeerUpsert {
        PeerUpsert {
            agent: agent.to_string(),
            agent_key: *agent.as_bytes(),
            host: None,
            port: None,
            last_addr: None,
            notes: None,
        }
    }
}

/// A known peer: a row of the key store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    /// The peer's agent id: 43 characters of unpadded base64url.
    pub agent: String,
    /// The peer's 32-byte Ed25519 public key; lowercase hex in serialized form.
    #[serde(with = "hex_key")]
    pub agent_key: [u8; 32],
    /// The host the peer advertises, if known.
    pub host: Option<String>,
    /// The port the peer advertises, if known.
    pub port: Option<u16>,
    /// The socket address the peer was last seen at, if known.
    pub last_addr: Option<String>,
    /// When the peer was first recorded, in unix seconds.
    pub first_seen: i64,
    /// When the peer was last recorded or seen, in unix seconds.
    pub last_seen: i64,
    /// Whether the agent is blocked (see [`MetaDb::set_peer_blocked`]).
    ///
    /// [`MetaDb::set_peer_blocked`]: super::MetaDb::set_peer_blocked
    pub blocked: bool,
    /// How many times in a row the peer failed to keep what it agreed to store (not yet
    /// maintained; always 0 for now).
    pub retention_failures: u32,
    /// Free text for the operator.
    pub notes: Option<String>,
    /// Links with this peer use the MyCHIPs reference library's transport cipher order
    /// instead of the Noise specification's (see [`MetaDb::set_peer_reference_order`]).
    ///
    /// [`MetaDb::set_peer_reference_order`]: super::MetaDb::set_peer_reference_order
    #[serde(default)]
    pub reference_order: bool,
}

/// A blocked agent, known as a peer or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockedAgent {
    /// The agent id.
    pub agent: String,
    /// When the block was recorded, in unix seconds.
    pub since: i64,
}

/// Checks that `agent` is a well-formed agent id (43 characters of unpadded base64url encoding
/// a valid Ed25519 public key).
pub(crate) fn check_agent_id(agent: &str) -> Result<AgentId, MetaError> {
    agent.parse::<AgentId>().map_err(|e| MetaError::BadAgent {
        agent: agent.to_string(),
        reason: e.to_string(),
    })
}

/// Checks that `peer.agent` is the agent id of `peer.agent_key` and the key is valid.
pub(crate) fn check_peer(peer: &PeerUpsert) -> Result<(), MetaError> {
    let id = check_agent_id(&peer.agent)?;
    if id.as_bytes() != &peer.agent_key {
        return Err(MetaError::BadAgent {
            agent: peer.agent.clone(),
            reason: "the agent id is not the base64url of the given agent key".into(),
        });
    }
    Ok(())
}

/// A stored key as 32 bytes.
pub(crate) fn key_from_db(agent: &str, key: &[u8]) -> Result<[u8; 32], MetaError> {
    key.try_into()
        .map_err(|_| MetaError::BadRow(format!("agent key of {agent} has {} bytes", key.len())))
}

/// A stored port as `u16`.
pub(crate) fn port_from_db(agent: &str, port: Option<i64>) -> Result<Option<u16>, MetaError> {
    port.map(|p| u16::try_from(p).map_err(|_| MetaError::BadRow(format!("port {p} of {agent}"))))
        .transpose()
}

/// A stored counter as `u32`.
pub(crate) fn count_from_db(agent: &str, count: i64) -> Result<u32, MetaError> {
    u32::try_from(count)
        .map_err(|_| MetaError::BadRow(format!("retention failures {count} of {agent}")))
}

/// Serde for a 32-byte key as lowercase hex.
mod hex_key {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        key: &[u8; 32],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(key))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(deserializer)?;
        let mut key = [0u8; 32];
        hex::decode_to_slice(&text, &mut key).map_err(serde::de::Error::custom)?;
        Ok(key)
    }
}

const PEER_COLUMNS: &str = "p.agent, p.agent_key, p.host, p.port, p.last_addr, p.first_seen,
    p.last_seen, p.retention_failures, p.notes, p.reference_order,
    EXISTS (SELECT 1 FROM blocked_agents b WHERE b.agent = p.agent)";

fn peer(row: Row) -> Result<PeerRecord, MetaError> {
    let mut c = row.cols();
    let agent = c.text()?;
    Ok(PeerRecord {
        agent_key: key_from_db(&agent, &c.bytes()?)?,
        host: c.opt_text()?,
        port: port_from_db(&agent, c.opt_int()?)?,
        last_addr: c.opt_text()?,
        first_seen: c.int()?,
        last_seen: c.int()?,
        retention_failures: count_from_db(&agent, c.int()?)?,
        notes: c.opt_text()?,
        reference_order: c.boolean()?,
        blocked: c.boolean()?,
        agent,
    })
}

pub(super) fn upsert(
    tx: &mut dyn Sql,
    peer: &PeerUpsert,
    now: i64,
) -> Result<PeerRecord, MetaError> {
    check_peer(peer)?;
    // One statement, so two processes recording the same new peer cannot both insert; the
    // WHERE of the update leaves a row with another key untouched: no row returned.
    let row = tx.query_opt(
        "recording peer",
        "INSERT INTO peers (agent, agent_key, host, port, last_addr, first_seen, last_seen,
                            notes)
         VALUES ($1, $2, $3, $4, $5, $6, $6, $7)
         ON CONFLICT (agent) DO UPDATE SET
            host = COALESCE(excluded.host, peers.host),
            port = COALESCE(excluded.port, peers.port),
            last_addr = COALESCE(excluded.last_addr, peers.last_addr),
            notes = COALESCE(excluded.notes, peers.notes),
            last_seen = CASE WHEN peers.last_seen > excluded.last_seen
                             THEN peers.last_seen ELSE excluded.last_seen END
         WHERE peers.agent_key = excluded.agent_key
         RETURNING agent",
        args![
            &peer.agent,
            &peer.agent_key[..],
            peer.host.as_deref(),
            peer.port.map(i64::from),
            peer.last_addr.as_deref(),
            now,
            peer.notes.as_deref()
        ],
    )?;
    if row.is_none() {
        return Err(MetaError::PeerKeyMismatch {
            agent: peer.agent.clone(),
        });
    }
    get(tx, &peer.agent)?
        .ok_or_else(|| MetaError::BadRow(format!("peer {} vanished after upsert", peer.agent)))
}

pub(super) fn get(c: &mut dyn Sql, agent: &str) -> Result<Option<PeerRecord>, MetaError> {
    c.query_opt(
        "reading peer",
        &format!("SELECT {PEER_COLUMNS} FROM peers p WHERE p.agent = $1"),
        args![agent],
    )?
    .map(peer)
    .transpose()
}

pub(super) fn list(c: &mut dyn Sql) -> Result<Vec<PeerRecord>, MetaError> {
    c.query(
        "listing peers",
        &format!("SELECT {PEER_COLUMNS} FROM peers p ORDER BY p.agent"),
        args![],
    )?
    .into_iter()
    .map(peer)
    .collect()
}

pub(super) fn remove(c: &mut dyn Sql, agent: &str) -> Result<bool, MetaError> {
    let removed = c.execute(
        "removing peer",
        "DELETE FROM peers WHERE agent = $1",
        args![agent],
    )?;
    Ok(removed > 0)
}

pub(super) fn touch(
    c: &mut dyn Sql,
    agent: &str,
    addr: Option<&str>,
    now: i64,
) -> Result<bool, MetaError> {
    let touched = c.execute(
        "touching peer",
        "UPDATE peers SET last_seen = CASE WHEN last_seen > $2 THEN last_seen ELSE $2 END,
                          last_addr = COALESCE($3, last_addr)
         WHERE agent = $1",
        args![agent, now, addr],
    )?;
    Ok(touched > 0)
}

pub(super) fn set_reference_order(
    c: &mut dyn Sql,
    agent: &str,
    on: bool,
) -> Result<bool, MetaError> {
    let recorded = c.execute(
        "setting the reference cipher order",
        "UPDATE peers SET reference_order = $2 WHERE agent = $1",
        args![agent, on],
    )?;
    Ok(recorded > 0)
}

pub(super) fn set_blocked(
    c: &mut dyn Sql,
    agent: &str,
    blocked: bool,
    now: i64,
) -> Result<bool, MetaError> {
    let changed = if blocked {
        check_agent_id(agent)?;
        c.execute(
            "blocking agent",
            "INSERT INTO blocked_agents (agent, since) VALUES ($1, $2)
             ON CONFLICT (agent) DO NOTHING",
            args![agent, now],
        )?
    } else {
        c.execute(
            "unblocking agent",
            "DELETE FROM blocked_agents WHERE agent = $1",
            args![agent],
        )?
    };
    Ok(changed > 0)
}

pub(super) fn is_blocked(c: &mut dyn Sql, agent: &str) -> Result<bool, MetaError> {
    c.query_bool(
        "reading block",
        "SELECT EXISTS (SELECT 1 FROM blocked_agents WHERE agent = $1)",
        args![agent],
    )
}

pub(super) fn blocked(c: &mut dyn Sql) -> Result<Vec<BlockedAgent>, MetaError> {
    c.query(
        "listing blocked agents",
        "SELECT agent, since FROM blocked_agents ORDER BY agent",
        args![],
    )?
    .into_iter()
    .map(|row| {
        let mut c = row.cols();
        Ok(BlockedAgent {
            agent: c.text()?,
            since: c.int()?,
        })
    })
    .collect()
}
