//! Records of the key store (known peers, blocked agents) and of issued tickets, and the rules
//! both backends share: validation of agent ids and tokens, and the ticket verdict.

use serde::{Deserialize, Serialize};

use kith_crypto::identity::AgentId;

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
}

/// A blocked agent, known as a peer or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockedAgent {
    /// The agent id.
    pub agent: String,
    /// When the block was recorded, in unix seconds.
    pub since: i64,
}

/// An issued ticket (first-contact token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRecord {
    /// The token: 32 lowercase hex digits.
    pub token: String,
    /// When it was issued, in unix seconds.
    pub issued_at: i64,
    /// When it stops being valid, in unix seconds: valid while `now < expires_at`.
    pub expires_at: i64,
    /// A reusable ticket may be redeemed any number of times until it expires or is revoked;
    /// otherwise it is accepted once.
    pub reusable: bool,
    /// The user (CHIP user id) the ticket grants access to, if any.
    pub cuid: Option<String>,
    /// When it was (last) redeemed, in unix seconds.
    pub used_at: Option<i64>,
    /// The agent that (last) redeemed it.
    pub used_by: Option<String>,
    /// Revoked by the operator: never accepted again.
    pub revoked: bool,
}

impl TicketRecord {
    /// A fresh, unused, unrevoked ticket.
    pub fn new(token: impl Into<String>, issued_at: i64, expires_at: i64) -> TicketRecord {
        TicketRecord {
            token: token.into(),
            issued_at,
            expires_at,
            reusable: false,
            cuid: None,
            used_at: None,
            used_by: None,
            revoked: false,
        }
    }
}

/// Why a ticket was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    /// No ticket has this token (never issued, or purged).
    Unknown,
    /// The ticket has expired.
    Expired,
    /// A one-time ticket that was already redeemed.
    AlreadyUsed,
    /// The operator revoked the ticket.
    Revoked,
}

impl std::fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RefusalReason::Unknown => "unknown ticket",
            RefusalReason::Expired => "ticket expired",
            RefusalReason::AlreadyUsed => "ticket already used",
            RefusalReason::Revoked => "ticket revoked",
        })
    }
}

/// The outcome of [`MetaDb::redeem_ticket`].
///
/// [`MetaDb::redeem_ticket`]: super::MetaDb::redeem_ticket
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketVerdict {
    /// The ticket is valid; its use is recorded.
    Accepted,
    /// The ticket is not valid; nothing was changed.
    Refused(RefusalReason),
}

/// Why a ticket may not be redeemed at `now`, or `None` if it may. When several reasons apply,
/// the first of revoked, already used, expired is given.
pub(crate) fn judge_ticket(ticket: &TicketRecord, now: i64) -> Option<RefusalReason> {
    if ticket.revoked {
        Some(RefusalReason::Revoked)
    } else if !ticket.reusable && ticket.used_at.is_some() {
        Some(RefusalReason::AlreadyUsed)
    } else if now >= ticket.expires_at {
        Some(RefusalReason::Expired)
    } else {
        None
    }
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

/// Checks that a token to store is 32 lowercase hex digits (nothing else is ever issued).
pub(crate) fn check_token(token: &str) -> Result<(), MetaError> {
    if token.len() == 32
        && token
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err(MetaError::BadToken {
            len: token.chars().count(),
        })
    }
}

/// The `expires_at` at or below which [`MetaDb::purge_expired_tickets`] deletes a ticket
/// (a negative `keep_for_secs` counts as 0).
///
/// [`MetaDb::purge_expired_tickets`]: super::MetaDb::purge_expired_tickets
pub(crate) fn purge_cutoff(now: i64, keep_for_secs: i64) -> i64 {
    now.saturating_sub(keep_for_secs.max(0))
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

    pub fn serialize<S: Serializer>(key: &[u8; 32], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(key))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(deserializer)?;
        let mut key = [0u8; 32];
        hex::decode_to_slice(&text, &mut key).map_err(serde::de::Error::custom)?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_refusal_reasons_are_given_in_order() {
        let mut t = TicketRecord::new("0".repeat(32), 100, 200);
        assert_eq!(judge_ticket(&t, 150), None);
        assert_eq!(judge_ticket(&t, 200), Some(RefusalReason::Expired));
        t.used_at = Some(150);
        assert_eq!(judge_ticket(&t, 200), Some(RefusalReason::AlreadyUsed));
        t.reusable = true;
        assert_eq!(judge_ticket(&t, 199), None);
        t.revoked = true;
        assert_eq!(judge_ticket(&t, 150), Some(RefusalReason::Revoked));
    }

    #[test]
    fn only_32_lowercase_hex_tokens_are_stored() {
        assert!(check_token(&"a1".repeat(16)).is_ok());
        assert!(check_token(&"A1".repeat(16)).is_err());
        assert!(check_token(&"a1".repeat(15)).is_err());
        assert!(check_token(&"g1".repeat(16)).is_err());
    }
}
