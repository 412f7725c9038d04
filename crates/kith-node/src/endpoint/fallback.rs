//! When no address of a peer answers: connections made another way (a hole punched, or a
//! circuit relayed through a mutual peer) and handed to the endpoint as transport values.
//!
//! The endpoint knows no protocol, so it does not punch or relay itself: a service above it
//! (`crate::reach`) implements [`Reacher`] and is installed with
//! [`Endpoint::set_reacher`](super::Endpoint::set_reacher). When every direct dial to a peer
//! fails (first contact or a known peer), the endpoint asks the reacher for a [`Conn`] and runs
//! the initiator's handshake over it as over any dialled connection; the other side gets its
//! [`Conn`] from the same service and hands it to [`Endpoint::adopt_inbound`](super::Endpoint::adopt_inbound),
//! which treats it as an accepted connection (admission, the responder's handshake). Either
//! way the result is an ordinary secure link, recorded with the conn's [`Via`](super::Via).
//!
//! A simultaneous open can also reach us through the listener (the other side's SYN arrived
//! before ours left): [`Diverts`] lets the punching side claim a connection from an expected
//! address before the accept loop answers it as a responder, since the roles were agreed.

use super::directory::BoxFuture;
use super::transport::Conn;
use kith_crypto::identity::AgentId;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use tokio::sync::oneshot;

/// How the dialling side proves it may link with the peer it wants a mutual peer to
/// introduce it to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Introduction {
    /// We are a known peer of theirs.
    Known,
    /// We hold a ticket of theirs (its token; the reacher sends only a proof of it).
    Ticket {
        /// The ticket's token.
        token: String,
        /// Peers the ticket names as brokers.
        brokers: Vec<AgentId>,
    },
}

/// Opens connections to peers that no address reaches (see the module docs).
pub trait Reacher: Send + Sync + 'static {
    /// A connection to `peer` (punched or relayed), over which we will be the Noise
    /// initiator; an error when no mutual peer could help.
    fn open(&self, peer: AgentId, intro: Introduction) -> BoxFuture<'_, std::io::Result<Conn>>;

    /// True when a broker told us lately that `peer` is at `remote` and the peer is dialling
    /// us there: a direct dial of ours that connects to it now went through the hole the
    /// introduction opened (its SYN met the peer's), so the link counts as punched.
    fn introduced(&self, _peer: &AgentId, _remote: SocketAddr) -> bool {
        false
    }
}

/// Accepted connections claimed by whoever expects them (bounded by the punches running).
#[derive(Debug, Default)]
pub(crate) struct Diverts {
    waiting: Mutex<HashMap<SocketAddr, oneshot::Sender<Conn>>>,
}

/// The most connections expected at once (one per punch under way).
const MAX_DIVERTS: usize = 64;

impl Diverts {
    /// Expects a connection from `from`; `None` when too many are expected already.
    pub(crate) fn expect(&self, from: SocketAddr) -> Option<oneshot::Receiver<Conn>> {
        let mut waiting = super::lock(&self.waiting);
        waiting.retain(|_, tx| !tx.is_closed());
        if waiting.len() >= MAX_DIVERTS {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        waiting.insert(super::reuse::canonical(from), tx);
        Some(rx)
    }

    /// Hands `conn` to whoever expects it, or gives it back.
    pub(crate) fn claim(&self, conn: Conn) -> Option<Conn> {
        let key = super::reuse::canonical(conn.remote);
        let tx = super::lock(&self.waiting).remove(&key);
        match tx {
            Some(tx) => tx.send(conn).err(),
            None => Some(conn),
        }
    }
}
