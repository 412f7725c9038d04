//! The `punch` envelope: one JSON object per envelope, told apart by `op`.
//!
//! ```text
//! A → R  {"op":"connect","id":7,"to":"<B>","proof":"<64 hex>"}   (proof: only with a ticket)
//! R → B  {"op":"offer","id":42,"from":"<A>","addrs":["<A as R sees it>"],"proof":"..."}
//! B → R  {"op":"accept","id":42}  |  {"op":"refuse","id":42}
//! R → A  {"op":"dial","id":7,"addrs":["<B as R sees it>"]}  |  {"op":"fail","id":7,"why":"..."}
//! ```
//! Every address a broker passes on is one it observed itself (its link's remote end), never
//! one the other side claimed, as the seed's CONNECT has the relay fill in the IP. The body is
//! refused above [`MAX_BODY`] before it is parsed, and lists are bounded.

use serde::{Deserialize, Serialize};

/// The envelope command.
pub const PUNCH: &str = "punch";
/// The largest body parsed.
pub const MAX_BODY: usize = 2048;
/// Addresses a message may carry.
pub const MAX_ADDRS: usize = 4;

/// One message of the punch protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Msg {
    /// Requester to broker: please introduce me to `to`.
    Connect {
        /// The requester's id for this request.
        id: u64,
        /// The agent wanted.
        to: String,
        /// Proof of a ticket of `to`'s (hex), when we are not its known peer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proof: Option<String>,
        /// Relay if punching fails (the broker must allow relaying).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        relay: bool,
    },
    /// Broker to target: `from` wants a link; dial it at `addrs` if you agree.
    Offer {
        /// The broker's id for this introduction.
        id: u64,
        /// The requester (proven by its link with the broker).
        from: String,
        /// Where the broker sees the requester.
        addrs: Vec<String>,
        /// The requester's ticket proof, passed on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proof: Option<String>,
    },
    /// Target to broker: agreed (and dialling already).
    Accept {
        /// The broker's id.
        id: u64,
    },
    /// Target to broker: no.
    Refuse {
        /// The broker's id.
        id: u64,
    },
    /// Broker to requester: dial now.
    Dial {
        /// The requester's id.
        id: u64,
        /// Where the broker sees the target.
        addrs: Vec<String>,
    },
    /// Broker to requester: it will not happen.
    Fail {
        /// The requester's id.
        id: u64,
        /// Why, in a word.
        why: String,
    },
}

impl Msg {
    /// Decodes a body, bounds first.
    pub fn decode(body: &[u8]) -> Option<Msg> {
        if body.len() > MAX_BODY {
            return None;
        }
        let msg: Msg = serde_json::from_slice(body).ok()?;
        let addrs_ok = match &msg {
            Msg::Offer { addrs, .. } | Msg::Dial { addrs, .. } => addrs.len() <= MAX_ADDRS,
            _ => true,
        };
        addrs_ok.then_some(msg)
    }

    /// The body.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The proof that the holder of a ticket with `token` is `requester`: sha256 over a domain
/// line, the token and the requester's agent id, hex. A broker that sees it cannot redeem the
/// ticket, nor use the proof for any other requester.
pub fn ticket_proof(token: &str, requester: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"kith punch ticket proof v1\n");
    h.update(token.trim().to_ascii_lowercase().as_bytes());
    h.update(b"\n");
    h.update(requester.as_bytes());
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_oversized_ones_are_refused() {
        let m = Msg::Dial {
            id: 3,
            addrs: vec!["203.0.113.1:7420".into()],
        };
        assert_eq!(Msg::decode(&m.encode()), Some(m));
        let many = Msg::Dial {
            id: 3,
            addrs: vec!["203.0.113.1:7420".into(); 5],
        };
        assert_eq!(Msg::decode(&many.encode()), None);
        assert_eq!(Msg::decode(&vec![b' '; MAX_BODY + 1]), None);
        assert_eq!(Msg::decode(br#"{"op":"nope"}"#), None);
    }

    #[test]
    fn a_proof_binds_the_requester() {
        assert_ne!(ticket_proof("ab", "x"), ticket_proof("ab", "y"));
        assert_eq!(ticket_proof("AB ", "x"), ticket_proof("ab", "x"));
    }
}
