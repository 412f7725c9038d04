//! The `punch` envelope: one JSON object per envelope, told apart by `op`.
//!
//! ```text
//! A → R  {"op":"connect","id":7,"to":"<B>","proof":"<64 hex>"}   (proof: only with a ticket)
//! R → B  {"op":"offer","id":42,"from":"<A>","addrs":["<A as R sees it>"],"proof":"..."}
//! B → R  {"op":"accept","id":42}  |  {"op":"refuse","id":42}
//! R → A  {"op":"dial","id":7,"addrs":["<B as R sees it>"]}  |  {"op":"fail","id":7,"why":"..."}
//!
//! A → R  {"op":"circuit","id":8,"to":"<B>","proof":"..."}        (a relay, when punching failed)
//! R → B  {"op":"incoming","id":43,"from":"<A>","circuit":43,"proof":"..."}
//! B → R  {"op":"accept","id":43}  |  {"op":"refuse","id":43}
//! R → A  {"op":"opened","id":8,"circuit":43}  |  {"op":"fail","id":8,"why":"..."}
//! ```
//! The circuit's bytes then ride `relay` envelopes ([`RelayFrame`]): the end-to-end Noise
//! handshake and transport frames of the link between A and B, which R passes on without
//! being able to read them.
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
    /// Requester to relay: carry a circuit to `to` (punching failed).
    Circuit {
        /// The requester's id for this request.
        id: u64,
        /// The agent wanted.
        to: String,
        /// Proof of a ticket of `to`'s (hex), when we are not its known peer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proof: Option<String>,
    },
    /// Relay to target: `from` wants a relayed link; accept to have it on `circuit`.
    Incoming {
        /// The relay's id for this introduction.
        id: u64,
        /// The requester (proven by its link with the relay).
        from: String,
        /// The circuit's number.
        circuit: u64,
        /// The requester's ticket proof, passed on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proof: Option<String>,
    },
    /// Relay to requester: the circuit is open.
    Opened {
        /// The requester's id.
        id: u64,
        /// The circuit's number.
        circuit: u64,
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

/// The envelope command of relayed bytes.
pub const RELAY: &str = "relay";

/// What a `relay` envelope carries: `[u64 circuit][u8 kind][body]` (big-endian). Kinds below
/// [`FROM_RELAY`] go from an end to the relay, the same kinds with that bit set from the relay
/// to the other end, so a node that is both a relay and an end never confuses the two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayFrame {
    /// The circuit.
    pub circuit: u64,
    /// Sent by the relay (rather than to it).
    pub from_relay: bool,
    /// What it says.
    pub kind: FrameKind,
}

/// The body of a [`RelayFrame`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameKind {
    /// Bytes of the stream.
    Data(bytes::Bytes),
    /// The receiver consumed this many bytes: the sender may send as many more.
    Credit(u32),
    /// The circuit is closed.
    Close,
}

/// The bit of a kind that marks a frame sent by the relay.
pub const FROM_RELAY: u8 = 0x80;

impl RelayFrame {
    /// The envelope body.
    pub fn encode(&self) -> bytes::Bytes {
        let mut out = bytes::BytesMut::with_capacity(16);
        out.extend_from_slice(&self.circuit.to_be_bytes());
        let dir = if self.from_relay { FROM_RELAY } else { 0 };
        match &self.kind {
            FrameKind::Data(data) => {
                out.extend_from_slice(&[dir]);
                out.extend_from_slice(data);
            }
            FrameKind::Credit(n) => {
                out.extend_from_slice(&[dir | 1]);
                out.extend_from_slice(&n.to_be_bytes());
            }
            FrameKind::Close => out.extend_from_slice(&[dir | 2]),
        }
        out.freeze()
    }

    /// Decodes an envelope body (the data shares its buffer).
    pub fn decode(body: &bytes::Bytes) -> Option<RelayFrame> {
        if body.len() < 9 {
            return None;
        }
        let circuit = u64::from_be_bytes(body[..8].try_into().ok()?);
        let from_relay = body[8] & FROM_RELAY != 0;
        let rest = body.slice(9..);
        let kind = match body[8] & !FROM_RELAY {
            0 => FrameKind::Data(rest),
            1 if rest.len() == 4 => {
                FrameKind::Credit(u32::from_be_bytes(rest[..].try_into().ok()?))
            }
            2 if rest.is_empty() => FrameKind::Close,
            _ => return None,
        };
        Some(RelayFrame {
            circuit,
            from_relay,
            kind,
        })
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
    fn relay_frames_round_trip_and_junk_is_refused() {
        for kind in [
            FrameKind::Data(bytes::Bytes::from_static(b"abc")),
            FrameKind::Credit(7),
            FrameKind::Close,
        ] {
            for from_relay in [false, true] {
                let f = RelayFrame {
                    circuit: 9,
                    from_relay,
                    kind: kind.clone(),
                };
                assert_eq!(RelayFrame::decode(&f.encode()), Some(f));
            }
        }
        assert_eq!(
            RelayFrame::decode(&bytes::Bytes::from_static(b"short")),
            None
        );
        let mut bad = vec![0u8; 8];
        bad.push(5);
        assert_eq!(RelayFrame::decode(&bad.into()), None);
    }

    #[test]
    fn a_proof_binds_the_requester() {
        assert_ne!(ticket_proof("ab", "x"), ticket_proof("ab", "y"));
        assert_eq!(ticket_proof("AB ", "x"), ticket_proof("ab", "x"));
    }
}
