//! The requester's side (A): ask brokers for an introduction, punch; when punching fails, ask
//! a broker that relays for a circuit; later, try to punch again and move the link off the
//! relay when it works.

use super::wire::{self, Msg};
use super::{lock, punch, Reach, Reply, INTRODUCED_FOR, MAX_ASKING, MAX_BROKERS};
use crate::clock::mono_now;
use crate::endpoint::{Conn, Introduction, Via};
use kith_crypto::identity::AgentId;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;

/// When a relayed link tries to become a punched one (after it came up).
const UPGRADE_AFTER: [Duration; 3] = [
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
];

impl Reach {
    /// Registers a request of ours to `broker`, whose answer goes to `tx`.
    pub(super) fn ask(&self, broker: AgentId, tx: mpsc::Sender<Reply>) -> std::io::Result<u64> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut asking = lock(&self.inner.asking);
        if asking.len() >= MAX_ASKING {
            return Err(std::io::Error::other("too many requests under way"));
        }
        asking.insert(id, (broker, tx));
        Ok(id)
    }

    /// A broker answered one of our requests.
    pub(super) fn replied(&self, broker: AgentId, id: u64, reply: Reply) {
        let tx = {
            let mut asking = lock(&self.inner.asking);
            match asking.get(&id) {
                Some((b, _)) if *b == broker => asking.remove(&id).map(|(_, tx)| tx),
                _ => None,
            }
        };
        match tx {
            Some(tx) => {
                let _ = tx.try_send(reply);
            }
            None => self.inner.counters.punch_answers_unexpected.bump(),
        }
    }

    /// The brokers to ask about `peer`: those `named` that are linked, else any linked peer.
    fn brokers_for(&self, peer: AgentId, named: Vec<AgentId>) -> Vec<AgentId> {
        let linked = self.inner.endpoint.linked();
        let mut brokers: Vec<AgentId> = named.into_iter().filter(|b| linked.contains(b)).collect();
        if brokers.is_empty() {
            brokers = linked;
        }
        brokers.retain(|b| *b != peer);
        brokers.retain(|b| {
            self.inner
                .endpoint
                .link_view(b)
                .is_some_and(|v| v.via != Via::Relayed)
        });
        brokers.truncate(MAX_BROKERS);
        brokers
    }

    /// A connection to `peer` through a mutual peer: punched if that works, else relayed.
    pub(super) async fn open(&self, peer: AgentId, intro: Introduction) -> std::io::Result<Conn> {
        let (proof, named) = match &intro {
            Introduction::Known => (None, Vec::new()),
            Introduction::Ticket { token, brokers } => (
                Some(wire::ticket_proof(
                    token,
                    &self.inner.endpoint.agent().to_string(),
                )),
                brokers.clone(),
            ),
        };
        // On the same LAN (its key proven at a LAN address by mDNS discovery): no NAT between.
        if let Some(addr) = self.inner.nearby.verified_addr(&peer) {
            let timeout = Duration::from_millis(2_000);
            if let Ok(conn) = self.inner.endpoint.dial_addr(addr, timeout).await {
                tracing::info!(peer = %peer, %addr, "reached a peer at its LAN address");
                return Ok(conn);
            }
        }
        // A known peer that moved: its signed record in the DHT says where it is now (only
        // when we have a public address ourselves: with no internet, the DHT stays quiet).
        if intro == Introduction::Known && self.has_public_address() {
            if let Some(addrs) = self.inner.dht.lookup(peer).await {
                let timeout = Duration::from_millis(5_000);
                for addr in addrs {
                    if let Ok(conn) = self.inner.endpoint.dial_addr(addr, timeout).await {
                        tracing::info!(peer = %peer, %addr, "found a peer again through the DHT");
                        return Ok(conn);
                    }
                }
            }
        }
        let brokers = self.brokers_for(peer, named);
        if brokers.is_empty() {
            return Err(std::io::Error::other(
                "no linked peer to ask for an introduction",
            ));
        }
        let punched = self.punch_via(peer, &brokers, proof.clone()).await;
        let why = match punched {
            Ok(conn) => return Ok(conn),
            Err(e) => e,
        };
        // Punching failed: a broker that relays carries the link instead.
        let mut last = why;
        for relay in brokers {
            match self.relay_through(relay, peer, proof.clone()).await {
                Ok(conn) => {
                    self.inner.counters.links_relayed.bump();
                    tracing::info!(peer = %peer, relay = %relay, "relayed link to a peer");
                    self.spawn_upgrade(peer);
                    return Ok(conn);
                }
                Err(e) => last = std::io::Error::other(format!("{last}; {e}")),
            }
        }
        Err(last)
    }

    /// True when we have an address on the internet (observed by a peer, or listened on).
    fn has_public_address(&self) -> bool {
        let endpoint = &self.inner.endpoint;
        endpoint
            .observed()
            .into_iter()
            .chain(endpoint.local_addr())
            .any(|a| crate::endpoint::reuse::is_public(a.ip()))
    }

    /// Asks `brokers` to introduce us to `peer`, then punches.
    async fn punch_via(
        &self,
        peer: AgentId,
        brokers: &[AgentId],
        proof: Option<String>,
    ) -> std::io::Result<Conn> {
        // Until a broker answers we do not know where it will say the peer is, and the peer
        // may already be dialling us: a direct dial that connects meanwhile counts as
        // punched (see `Reacher::introduced`).
        let now = mono_now();
        {
            let mut introduced = lock(&self.inner.introduced);
            introduced.retain(|_, (_, at)| now.duration_since(*at) < INTRODUCED_FOR);
            if introduced.len() < MAX_ASKING {
                introduced.insert(peer, (Vec::new(), now));
            }
        }
        let (tx, mut rx) = mpsc::channel(MAX_BROKERS);
        let mut ids = Vec::new();
        for broker in brokers {
            let Ok(id) = self.ask(*broker, tx.clone()) else {
                break;
            };
            ids.push(id);
            self.send(
                *broker,
                &Msg::Connect {
                    id,
                    to: peer.to_string(),
                    proof: proof.clone(),
                    relay: false,
                },
            );
        }
        drop(tx);
        let result = self.await_dial(&mut rx, ids.len()).await;
        {
            let mut asking = lock(&self.inner.asking);
            for id in &ids {
                asking.remove(id);
            }
        }
        let addrs = match result {
            Ok(addrs) => addrs,
            Err(e) => {
                lock(&self.inner.introduced).remove(&peer);
                return Err(e);
            }
        };
        if let Some((known, at)) = lock(&self.inner.introduced).get_mut(&peer) {
            *known = addrs.clone();
            *at = mono_now();
        }
        let window = self.inner.settings.punch_window;
        let outcome = punch::punch(&self.inner.endpoint, &addrs, true, window).await;
        match &outcome {
            Ok(conn) => {
                self.inner.counters.punches_succeeded.bump();
                tracing::info!(peer = %peer, remote = %conn.remote, "punched through to a peer");
            }
            Err(e) => {
                self.inner.counters.punches_failed.bump();
                tracing::info!(peer = %peer, "punch failed: {e}");
            }
        }
        outcome
    }

    /// The first broker's `dial`, or why none came.
    async fn await_dial(
        &self,
        rx: &mut mpsc::Receiver<Reply>,
        asked: usize,
    ) -> std::io::Result<Vec<SocketAddr>> {
        let deadline = tokio::time::Instant::now() + self.inner.settings.ask_timeout;
        let mut why = String::from("no broker answered");
        for _ in 0..asked {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Reply::Dial(addrs))) if !addrs.is_empty() => return Ok(addrs),
                Ok(Some(Reply::Dial(_) | Reply::Opened(_))) => {
                    why = "a broker named no address".into()
                }
                Ok(Some(Reply::Fail(reason))) => why = format!("the broker said {reason}"),
                Ok(None) | Err(_) => break,
            }
        }
        Err(std::io::Error::other(why))
    }

    /// Tries, a few times, to replace the relayed link with `peer` by a punched one (as known
    /// peers; the registry keeps the newer of two links we opened, and the relayed one retires
    /// in order).
    fn spawn_upgrade(&self, peer: AgentId) {
        let this = self.clone();
        self.inner.tracker.spawn(async move {
            let mut waited = Duration::ZERO;
            for at in UPGRADE_AFTER {
                tokio::select! {
                    _ = tokio::time::sleep(at - waited) => {}
                    _ = this.inner.cancel.cancelled() => return,
                }
                waited = at;
                let endpoint = &this.inner.endpoint;
                match endpoint.link_view(&peer) {
                    Some(view) if view.via == Via::Relayed => {}
                    _ => return, // gone, or direct already
                }
                let brokers = this.brokers_for(peer, Vec::new());
                let Ok(conn) = this.punch_via(peer, &brokers, None).await else {
                    continue;
                };
                match endpoint.link_over(peer, conn).await {
                    Ok(()) => {
                        this.inner.counters.links_upgraded.bump();
                        tracing::info!(peer = %peer, "a relayed link became a punched one");
                        return;
                    }
                    Err(e) => tracing::debug!(peer = %peer, "upgrade failed: {e}"),
                }
            }
        });
    }
}
