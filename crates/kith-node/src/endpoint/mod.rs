//! The endpoint: secure links between nodes, knowing no protocol that rides on them.
//!
//! It owns the listeners (any [`transport::Acceptor`]), admission ([`guard`]), the Noise
//! handshakes ([`handshake`], answered from a [`directory::PeerDirectory`]), the link
//! registry (one active link per peer, [`registry`]) and dialling, and offers everyone one
//! way to talk to a peer: [`Endpoint::send`] dials a known peer when no link is up (within a
//! deadline, with an error that says what to do) and waits while the link's queue is full;
//! [`Endpoint::try_send`] never dials and never waits. Links are *virtually open*, as the
//! MyCHIPs seed asks: a link the responder closed for idleness is opened again by the next
//! send, so nothing upstream has to know.
//!
//! What arrives goes to one [`Inbound`] (the protocol router, `crate::protocol`), which the
//! endpoint calls on each link's task: payloads, and per peer, in order, "up" before the
//! first payload and "down" after the last. The endpoint imports no service; services hold
//! an `Endpoint` handle (cheap to clone).

mod accept;
pub mod announce;
mod dial;
pub mod directory;
mod error;
pub mod fallback;
pub mod guard;
mod handshake;
mod interfaces;
mod link_task;
pub mod observed;
pub mod registry;
mod replay;
pub mod reuse;
pub mod transport;
pub mod ws;

pub use directory::{DialTarget, LinkOptions, PeerAddress, PeerDirectory, StoreDirectory};
pub use error::{EndpointError, TrySendError};
pub use fallback::{Introduction, Reacher};
pub use handshake::{HandshakeFailure, HandshakeOutcome};
pub use link_task::{envelope, PROTOCOLS};
pub use registry::{LinkView, Side};
pub use transport::{
    Acceptor, Conn, Dialer, MemoryAcceptor, MemoryDialer, MemoryNet, Tcp, TcpAcceptor, Via,
};
pub use ws::{WsAcceptor, WsDialer};

use crate::clock::{mono_now, SharedClock};
use crate::ticket::Ticket;
use guard::{AdmissionGuard, HandshakeId};
use kith_crypto::identity::AgentId;
use kith_proto::secure::{Chad, ReplayCache, SecureConfig};
use kith_proto::Limits;
use kith_store::meta::PeerRecord;
use rand::{Rng, RngCore};
use registry::{LinkHandle, Outgoing, Registration, Registry};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What rides a link: a Datt envelope, or one JSON object per frame (the MyCHIPs
/// reference's messages).
pub use kith_proto::link::Payload;

/// Where the endpoint delivers what arrives (the protocol router). Called on link tasks:
/// every method must return at once (queue with a bound, or drop and count).
pub trait Inbound: Send + Sync + 'static {
    /// A payload from `peer`.
    fn payload(&self, peer: AgentId, payload: Payload);
    /// `peer`'s first link is up (before any of its payloads).
    fn link_up(&self, peer: AgentId, remote: SocketAddr);
    /// `peer`'s last link has ended (after its last payload).
    fn link_down(&self, peer: AgentId);
}

crate::counters! {
    /// What the endpoint counts.
    pub struct EndpointCounters {
        /// Links that counted (initiator, or responder after confirmation).
        links_established,
        /// Links that broke (I/O, decrypt, decode).
        links_broken,
        /// Links lost while active (redialled).
        links_lost,
        /// Links opened in the MyCHIPs reference library's cipher order (set for the peer).
        links_reference_order,
        /// Links broken by a transport frame that did not decrypt (a forgery, or two ends
        /// that disagree on the cipher order).
        links_undecryptable,
        /// Links the responder closed for idleness.
        links_idle_closed,
        /// Peers that spoke no common protocol version.
        links_incompatible,
        /// Responder links whose initiator never sent an authenticated frame.
        links_unconfirmed,
        /// Payloads sent.
        envelopes_sent,
        /// Payloads received.
        envelopes_received,
        /// `version` envelopes after a link's first, ignored.
        versions_ignored,
        /// Announced addresses not checked (a check for the peer was running).
        announcements_ignored,
        /// Announced addresses whose host did not prove the peer's key.
        announcements_unproven,
        /// Peer addresses updated from a checked announcement.
        peer_addresses_updated,
        /// Redials that failed.
        redial_failures,
        /// Anonymous queries answered.
        queries_answered,
        /// Handshakes dropped as replays (an ephemeral key seen before).
        refused_replayed_handshake,
        /// Handshakes refused: ticket.
        refused_ticket,
        /// Handshakes refused: unknown peer.
        refused_unknown_peer,
        /// Handshakes refused: the ticket request's agent is not the proven key.
        refused_agent_key_mismatch,
        /// Handshakes refused for another reason.
        refused_handshake_other,
        /// Handshakes that failed (protocol, deadline, I/O).
        handshake_failed,
        /// Pending handshakes evicted to make room.
        evicted_pending_handshake,
        /// Connections refused: address blocked.
        refused_addr_blocked,
        /// Connections refused: rate.
        refused_rate_limited,
        /// Connections refused: pending handshakes per address.
        refused_pending_per_addr,
        /// Connections refused: links per address.
        refused_links_per_addr,
        /// Connections refused: links in all.
        refused_links_total,
        /// Payloads for which no protocol is registered.
        envelopes_unhandled,
        /// Payloads the link could not carry (too large, or a link command).
        payloads_refused,
        /// Our address as a peer observed it, new to the table.
        observed_addresses_learned,
        /// Links opened through a mutual peer (punched or relayed) after no address answered.
        links_reached_indirectly,
        /// Connections handed over by the reach service (punched, relayed) and adopted.
        conns_adopted,
    }
}

/// The endpoint's settings.
pub struct EndpointConfig {
    /// Our keys and the link mode.
    pub secure: SecureConfig,
    /// The link layer's bounds and deadlines.
    pub limits: Limits,
    /// Admission (the guard's caps and rates).
    pub node_limits: crate::limits::NodeLimits,
    /// Wall-clock time (ticket expiry, timestamps).
    pub clock: SharedClock,
    /// Where peers and tickets are looked up and recorded.
    pub directory: Arc<dyn PeerDirectory>,
    /// How to reach a peer's address.
    pub dialer: Arc<dyn Dialer>,
    /// Where connections come in (none: this node only dials).
    pub acceptors: Vec<Box<dyn Acceptor>>,
    /// What tickets and `version` name as our address (`--announce`, which overrides what
    /// peers observe); `None`: the best observed address, else the first acceptor's.
    pub announce: Option<(String, u16)>,
    /// The capabilities our `version` lists (what the services on top speak beyond the base
    /// protocols, e.g. windowed item exchange).
    pub capabilities: Vec<String>,
    /// Cancelled when the node stops.
    pub cancel: CancellationToken,
    /// Every task the endpoint spawns.
    pub tracker: TaskTracker,
}

/// What every task of the endpoint shares.
pub(crate) struct Shared {
    agent: AgentId,
    secure: SecureConfig,
    limits: Limits,
    clock: SharedClock,
    directory: Arc<dyn PeerDirectory>,
    dialer: Arc<dyn Dialer>,
    registry: Registry,
    guard: Mutex<AdmissionGuard>,
    pending: Mutex<HashMap<HandshakeId, AbortHandle>>,
    replay: Mutex<ReplayCache>,
    inbound: OnceLock<Arc<dyn Inbound>>,
    /// Held while a link's registration or end is told to the services, so that "up" and
    /// "down" for one peer reach them in the order they happened.
    events: Mutex<()>,
    announce: Option<(String, u16)>,
    /// `announce` was given (`--announce`): observed addresses do not replace it.
    announce_fixed: bool,
    capabilities: Vec<String>,
    listen: Option<SocketAddr>,
    /// Our addresses as peers observe them.
    observed: Mutex<observed::Observed>,
    /// The public address of the home router's port mapping (`crate::reach::portmap`).
    mapped: Mutex<Option<SocketAddr>>,
    /// Punches and relays, when no address answers.
    reacher: OnceLock<Arc<dyn Reacher>>,
    /// Accepted connections that a punch under way claims.
    diverts: fallback::Diverts,
    acceptors: Mutex<Vec<Box<dyn Acceptor>>>,
    announce_checks: Mutex<HashSet<AgentId>>,
    counters: EndpointCounters,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

/// A handle on the endpoint (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct Endpoint {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("agent", &self.shared.agent)
            .finish_non_exhaustive()
    }
}

/// How long a handshake's ephemeral key is remembered.
const REPLAY_WINDOW: Duration = Duration::from_secs(24 * 3600);

impl Endpoint {
    /// An endpoint that does not accept or dial until [`start`](Self::start)ed.
    pub fn new(config: EndpointConfig) -> Endpoint {
        // The plain listener: the address tickets and observations are about (a WebSocket
        // listener is named only through `--announce ws://…`).
        let listen = config
            .acceptors
            .iter()
            .find(|a| a.plain())
            .and_then(|a| a.local_addr());
        let announce_fixed = config.announce.is_some();
        let announce = config.announce.or_else(|| {
            listen.map(|addr| {
                if addr.ip().is_unspecified() {
                    // Until a peer tells us where it sees us from (then tickets name that).
                    ("127.0.0.1".to_owned(), addr.port())
                } else {
                    (addr.ip().to_string(), addr.port())
                }
            })
        });
        Endpoint {
            shared: Arc::new(Shared {
                agent: config.secure.agent(),
                registry: Registry::new(config.limits.max_pending_pings),
                guard: Mutex::new(AdmissionGuard::new(config.node_limits.clone())),
                pending: Mutex::default(),
                replay: Mutex::new(ReplayCache::new(
                    config.limits.handshake_replay_entries,
                    REPLAY_WINDOW,
                )),
                inbound: OnceLock::new(),
                events: Mutex::default(),
                announce,
                announce_fixed,
                capabilities: config.capabilities,
                listen,
                observed: Mutex::default(),
                mapped: Mutex::default(),
                reacher: OnceLock::new(),
                diverts: fallback::Diverts::default(),
                acceptors: Mutex::new(config.acceptors),
                announce_checks: Mutex::default(),
                counters: EndpointCounters::default(),
                secure: config.secure,
                limits: config.limits,
                clock: config.clock,
                directory: config.directory,
                dialer: config.dialer,
                cancel: config.cancel,
                tracker: config.tracker,
            }),
        }
    }

    /// Starts accepting and re-linking known peers, delivering what arrives to `inbound`.
    /// Called once (by the protocol router); later calls do nothing.
    pub fn start(&self, inbound: Arc<dyn Inbound>) {
        if self.shared.inbound.set(inbound).is_err() {
            return;
        }
        let acceptors = std::mem::take(&mut *lock(&self.shared.acceptors));
        for acceptor in acceptors {
            let shared = Arc::clone(&self.shared);
            self.shared
                .tracker
                .spawn(accept::accept_loop(shared, acceptor));
        }
        dial::relink_known_peers(&self.shared);
    }

    /// Our agent id.
    pub fn agent(&self) -> AgentId {
        self.shared.agent
    }

    /// The secure-link listener's address, if any.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.shared.listen
    }

    /// Installs the service that opens connections when no address of a peer answers
    /// (punching, relaying; see [`fallback`]). Once; later calls do nothing.
    pub fn set_reacher(&self, reacher: Arc<dyn Reacher>) {
        let _ = self.shared.reacher.set(reacher);
    }

    /// Treats `conn` (punched or relayed, made by the reach service) as an accepted
    /// connection: admission, then the responder's handshake; a link if it completes.
    pub fn adopt_inbound(&self, conn: Conn) {
        self.shared.counters.conns_adopted.bump();
        accept::admit(&self.shared, conn);
    }

    /// Expects a connection from `from` on our listener (a simultaneous open that reached the
    /// listener first): it is handed over instead of answered. `None` when too many are
    /// expected already.
    pub fn expect_inbound(&self, from: SocketAddr) -> Option<tokio::sync::oneshot::Receiver<Conn>> {
        self.shared.diverts.expect(from)
    }

    /// Links with the known peer `peer` over `conn` (a punched connection that is to replace
    /// a relayed link): the initiator's handshake, then an ordinary link, which the registry
    /// prefers to the older one.
    pub async fn link_over(&self, peer: AgentId, conn: Conn) -> Result<(), EndpointError> {
        dial::link_over(&self.shared, peer, conn).await
    }

    /// Opens a plain connection to `to` with the node's dialler (from the listening port),
    /// for the reach service.
    pub async fn dial_addr(&self, to: SocketAddr, timeout: Duration) -> std::io::Result<Conn> {
        self.shared
            .dialer
            .dial(&to.ip().to_string(), to.port(), timeout)
            .await
    }

    /// True when whoever answers at `addr` holds `agent`'s key (an anonymous NK query
    /// handshake completes there): how claimed addresses are checked.
    pub async fn query(&self, agent: AgentId, addr: SocketAddr) -> bool {
        let address = PeerAddress {
            host: addr.ip().to_string(),
            port: addr.port(),
        };
        announce::proves_key(&self.shared, agent, &address).await
    }

    /// Our addresses as peers observe them, best first.
    pub fn observed(&self) -> Vec<SocketAddr> {
        lock(&self.shared.observed).ranked()
    }

    /// Every address a ticket should list besides its CHIP address's, at most
    /// [`crate::ticket::MAX_ADDRS`]: observed ones (at most half of them, so the others
    /// keep their room), the port mapping the home router granted, the listening address
    /// when it names one, else the interfaces' public addresses of both families (IPv6 next
    /// to IPv4, [`interfaces`]); a dual-stack `[::]` listener known by no address but
    /// `127.0.0.1` lists `[::1]` too.
    pub fn other_addresses(&self) -> Vec<SocketAddr> {
        let max = crate::ticket::MAX_ADDRS;
        let chad = self.shared.announced();
        let listen = self.shared.listen;
        let listening = listen.filter(|l| !l.ip().is_unspecified());
        let own = listen
            .map(|l| interfaces::listed(l, max))
            .unwrap_or_default();
        let loopback = listen
            .filter(|l| l.is_ipv6() && l.ip().is_unspecified())
            .filter(|_| chad.as_ref().is_some_and(|(h, _)| h == "127.0.0.1"))
            .map(|l| interfaces::loopback_v6(l.port()));
        let mapped = *lock(&self.shared.mapped);
        let mut out: Vec<SocketAddr> = Vec::new();
        let candidates = self
            .observed()
            .into_iter()
            .take(max / 2)
            .chain(mapped)
            .chain(listening)
            .chain(own)
            .chain(loopback);
        for addr in candidates {
            let same = chad
                .as_ref()
                .is_some_and(|(h, p)| *h == addr.ip().to_string() && *p == addr.port());
            if !same && !out.contains(&addr) && out.len() < max {
                out.push(addr);
            }
        }
        out
    }

    /// Records the public address the home router maps to our listening port (`None`: no
    /// mapping now). Tickets list it; with no public address observed, it is our CHIP
    /// address.
    pub fn set_mapped(&self, addr: Option<SocketAddr>) {
        *lock(&self.shared.mapped) = addr;
    }

    /// The port mapping's public address, if the router granted one.
    pub fn mapped(&self) -> Option<SocketAddr> {
        *lock(&self.shared.mapped)
    }

    /// Our CHIP address, as tickets and first-contact requests name it.
    pub fn own_chad(&self) -> Chad {
        let (host, port) = self
            .shared
            .announced()
            .unwrap_or_else(|| ("127.0.0.1".to_owned(), 0));
        Chad {
            cuid: None,
            agent: self.shared.agent.to_string(),
            host: Some(host),
            port: Some(port),
        }
    }

    /// First contact: opens an IK link to the ticket's site and records it as a peer.
    pub async fn connect_ticket(&self, ticket: Ticket) -> Result<PeerRecord, EndpointError> {
        dial::connect_ticket(&self.shared, ticket).await
    }

    /// Makes sure a link with the known peer `peer` is up, dialling it (N + KK) if needed.
    pub async fn ensure_link(&self, peer: AgentId) -> Result<(), EndpointError> {
        dial::ensure_link(&self.shared, peer).await
    }

    /// Sends `payload` to `peer`, dialling first if no link is up, and waiting while the
    /// link's queue is full.
    pub async fn send(
        &self,
        peer: AgentId,
        payload: impl Into<Payload>,
    ) -> Result<(), EndpointError> {
        let payload: Payload = payload.into();
        // A link may close between finding it and queueing on it: then dial once more.
        for _ in 0..2 {
            if self.shared.cancel.is_cancelled() {
                return Err(EndpointError::ShuttingDown);
            }
            self.ensure_link(peer).await?;
            if let Some(queue) = self.shared.registry.queue(&peer) {
                if queue_payload(&queue, payload.clone()).await.is_ok() {
                    return Ok(());
                }
            }
        }
        Err(EndpointError::LinkClosed(peer.to_string()))
    }

    /// Queues `payload` for `peer` on its current link, waiting while the link's queue is
    /// full but never dialling (for a conversation that lives and dies with one link).
    pub async fn send_linked(
        &self,
        peer: AgentId,
        payload: impl Into<Payload>,
    ) -> Result<(), TrySendError> {
        let queue = self
            .shared
            .registry
            .queue(&peer)
            .ok_or(TrySendError::NotLinked)?;
        queue_payload(&queue, payload.into()).await
    }

    /// Queues `payload` for `peer` on its current link, without dialling or waiting.
    pub fn try_send(&self, peer: AgentId, payload: impl Into<Payload>) -> Result<(), TrySendError> {
        let queue = self
            .shared
            .registry
            .queue(&peer)
            .ok_or(TrySendError::NotLinked)?;
        let payload = payload.into();
        let permit = Arc::clone(&queue.budget)
            .try_acquire_many_owned(permits_for(&payload, &queue))
            .map_err(|e| match e {
                tokio::sync::TryAcquireError::NoPermits => TrySendError::Full,
                tokio::sync::TryAcquireError::Closed => TrySendError::NotLinked,
            })?;
        queue
            .outgoing
            .try_send(Outgoing::Payload(payload, Some(permit)))
            .map_err(|e| match e {
                tokio::sync::mpsc::error::TrySendError::Full(_) => TrySendError::Full,
                tokio::sync::mpsc::error::TrySendError::Closed(_) => TrySendError::NotLinked,
            })
    }

    /// The capabilities `peer` listed in its `version` on the active link, waiting up to
    /// `wait` for that `version` to arrive (it follows the link's first frames). `None` when no
    /// link is up or no `version` came in time.
    pub async fn peer_capabilities(&self, peer: AgentId, wait: Duration) -> Option<Arc<[String]>> {
        let mut rx = self.shared.registry.capabilities(&peer)?;
        let arrived = tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await;
        match arrived {
            Ok(Ok(caps)) => caps.clone(),
            _ => None,
        }
    }

    /// Pings `peer` (dialling at once if needed) and returns the round-trip time. One
    /// deadline ([`Limits::ping_timeout_ms`]) covers the whole ping, dial included, so a peer
    /// that hangs mid-dial is reported as not answering.
    pub async fn ping(&self, peer: AgentId) -> Result<Duration, EndpointError> {
        let timeout = Duration::from_millis(self.shared.limits.ping_timeout_ms);
        let deadline = tokio::time::Instant::now() + timeout;
        let no_answer = || EndpointError::Timeout(peer.to_string(), timeout);
        tokio::time::timeout_at(deadline, self.ensure_link(peer))
            .await
            .map_err(|_| no_answer())??;
        let mut nonce = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let waiter = self
            .shared
            .registry
            .expect_pong(peer, nonce)
            .ok_or(EndpointError::TooManyPings)?;
        let sent = mono_now();
        let answered = tokio::time::timeout_at(deadline, async {
            let tx = self
                .shared
                .registry
                .sender(&peer)
                .ok_or_else(|| EndpointError::LinkClosed(peer.to_string()))?;
            tx.send(Outgoing::Ping(nonce))
                .await
                .map_err(|_| EndpointError::LinkClosed(peer.to_string()))?;
            waiter.await.map_err(|_| no_answer())
        })
        .await;
        match answered {
            Ok(Ok(at)) => Ok(at.saturating_duration_since(sent)),
            Ok(Err(e)) => {
                self.shared.registry.forget_ping(&nonce);
                Err(e)
            }
            Err(_) => {
                self.shared.registry.forget_ping(&nonce);
                Err(no_answer())
            }
        }
    }

    /// Peers with an active link.
    pub fn linked(&self) -> Vec<AgentId> {
        self.shared.registry.linked()
    }

    /// True when `peer` has an active link.
    pub fn is_linked(&self, peer: &AgentId) -> bool {
        self.shared.registry.is_linked(peer)
    }

    /// `peer`'s active link, for display.
    pub fn link_view(&self, peer: &AgentId) -> Option<LinkView> {
        self.shared.registry.view(peer)
    }

    /// Closes the link with `peer` in order (it was removed or blocked): no redial.
    pub fn close(&self, peer: &AgentId) {
        self.shared.registry.close(peer);
    }

    /// The endpoint's counters.
    pub fn counters(&self) -> &EndpointCounters {
        &self.shared.counters
    }

    /// Peers dialled now, for tests: the dial-lock table never outgrows them.
    pub fn dials_in_progress(&self) -> usize {
        self.shared.registry.dial_locks()
    }
}

impl Shared {
    /// Host and port that tickets and `version` name: `--announce` if given; else the best
    /// public address peers observe, else the home router's port mapping, else the listening address if it is public, else the
    /// best observed address of any kind (a LAN's), else the listening address.
    fn announced(&self) -> Option<(String, u16)> {
        let fixed = self.announce.clone().filter(|(_, port)| *port != 0);
        if self.announce_fixed {
            return fixed;
        }
        let observed = lock(&self.observed).ranked();
        let listening_public = fixed
            .as_ref()
            .and_then(|(host, _)| host.parse().ok())
            .is_some_and(reuse::is_public);
        let mapped = *lock(&self.mapped);
        let pick = observed
            .iter()
            .find(|a| reuse::is_public(a.ip()))
            .or(mapped.as_ref())
            .or(if listening_public {
                None
            } else {
                observed.first()
            });
        match pick {
            Some(addr) => Some((addr.ip().to_string(), addr.port())),
            None => fixed,
        }
    }

    /// A peer told us where it sees us from.
    fn observe(&self, peer: AgentId, addr: SocketAddr) {
        if lock(&self.observed).record(peer, addr, mono_now()) {
            self.counters.observed_addresses_learned.bump();
            tracing::info!(%addr, peer = %peer, "a peer sees this node at a new address");
        }
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, AdmissionGuard> {
        lock(&self.guard)
    }

    /// True when a handshake's ephemeral key was never seen (and remembers it).
    fn replay_fresh(&self, ephemeral: [u8; 32]) -> bool {
        lock(&self.replay).check_and_insert(mono_now(), ephemeral)
    }

    fn deliver(&self, peer: AgentId, payload: Payload) {
        match self.inbound.get() {
            Some(inbound) => inbound.payload(peer, payload),
            None => self.counters.envelopes_unhandled.bump(),
        }
    }

    /// Registers a link and tells the services if its peer just came up.
    fn register(&self, peer: AgentId, handle: LinkHandle) -> Registration {
        let remote = handle.remote;
        let _order = lock(&self.events);
        let change = self.registry.register(peer, handle);
        if change.first {
            if let Some(inbound) = self.inbound.get() {
                inbound.link_up(peer, remote);
            }
        }
        change.outcome
    }

    /// A link's task has ended.
    fn link_ended(
        self: &Arc<Self>,
        peer: AgentId,
        id: registry::LinkId,
        side: Side,
        remote: SocketAddr,
        registered: bool,
        end: link_task::LinkEnd,
    ) {
        let mut was_active = false;
        if registered {
            let _order = lock(&self.events);
            let change = self.registry.ended(&peer, id);
            was_active = change.outcome;
            if change.first {
                if let Some(inbound) = self.inbound.get() {
                    inbound.link_down(peer);
                }
            }
        } else {
            self.counters.links_unconfirmed.bump();
        }
        if side == Side::Responder {
            self.guard().link_closed(remote.ip());
        }
        tracing::info!(peer = %peer, ?end, "link down");
        if end == link_task::LinkEnd::Lost && was_active && !self.cancel.is_cancelled() {
            self.counters.links_lost.bump();
            dial::spawn_redial(self, peer);
        }
    }

    fn begin_announce_check(&self, peer: AgentId) -> bool {
        lock(&self.announce_checks).insert(peer)
    }

    fn end_announce_check(&self, peer: AgentId) {
        lock(&self.announce_checks).remove(&peer);
    }

    /// A jitter draw for backoff.
    fn jitter(&self) -> f64 {
        rand::thread_rng().gen::<f64>()
    }
}

/// Permits a payload takes from a link's byte budget: its bytes on the wire, at most the whole
/// budget (so one payload larger than the budget still goes, alone).
fn permits_for(payload: &Payload, queue: &registry::Queue) -> u32 {
    let len = match payload {
        Payload::Envelope(envelope) => envelope.encoded_len(),
        Payload::Json(bytes) => bytes.len(),
    };
    let budget = u32::try_from(len).unwrap_or(u32::MAX).max(1);
    budget.min(queue.budget_size)
}

/// Waits for room in the link's byte budget and queue, then queues `payload`.
async fn queue_payload(queue: &registry::Queue, payload: Payload) -> Result<(), TrySendError> {
    let permit = Arc::clone(&queue.budget)
        .acquire_many_owned(permits_for(&payload, queue))
        .await
        .map_err(|_| TrySendError::NotLinked)?;
    queue
        .outgoing
        .send(Outgoing::Payload(payload, Some(permit)))
        .await
        .map_err(|_| TrySendError::NotLinked)
}

/// Locks a mutex whose data stays consistent even if a holder panicked (every critical
/// section is a single insert, remove or lookup).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
