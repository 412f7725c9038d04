//! Reach: links between nodes that cannot dial each other, through a mutual peer.
//!
//! When no address of a peer answers, the endpoint asks this service (it is the endpoint's
//! [`Reacher`]) for a connection. We ask linked peers (the brokers the ticket names, else any
//! linked peer) to introduce us, over the `punch` envelope ([`wire`]):
//! 1. we (A) send `connect` naming the peer B, with a proof that we hold one of B's tickets
//!    when we are not its known peer;
//! 2. a broker R linked with both sends B an `offer` with A's address *as R sees it* (rate
//!    and count bounded per requester, [`broker`]);
//! 3. B checks that A has business with it (a known, unblocked peer of B's, or the proof
//!    matches a valid ticket of B's; otherwise it refuses and counts), starts dialling A from
//!    its listening port and answers `accept`;
//! 4. R sends A a `dial` with B's address as R sees it, and A dials B ([`punch`]).
//!
//! The roles of Noise were agreed beforehand, as libp2p's DCUtR agrees them: A, who wanted
//! the link, is the initiator (N + KK, or IK with its ticket) over whatever connection the
//! simultaneous open yields; B hands its connection to the endpoint as an accepted one. The
//! result is an ordinary secure link recorded with `via: punched`. Every node brokers for its
//! linked peers.

mod advertise;
pub mod broker;
mod circuit;
pub mod code;
mod introduce;
mod mailbox;
mod mapper;
pub mod portmap;
mod punch;
mod relay;
mod request;
pub mod wire;
mod words;

use crate::clock::mono_now;
use crate::endpoint::directory::BoxFuture;
use crate::endpoint::{envelope, Conn, Endpoint, Introduction, Payload, Reacher};
use crate::protocol::ProtocolHandler;
use crate::store::Store;
use broker::{Broker, BrokerLimits};
use kith_crypto::identity::AgentId;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wire::{Msg, PUNCH, RELAY};

pub use advertise::advertise;
pub use mapper::{PortMap, PortMapCounters, PortMapSettings};

crate::counters! {
    /// What reaching through mutual peers counts.
    pub struct ReachCounters {
        /// Introductions we brokered (offers sent to a target).
        punch_introductions,
        /// Requests refused: the target is not linked with us.
        punch_refused_not_linked,
        /// Requests refused: the requester asked too often.
        punch_refused_rate,
        /// Requests refused: too many introductions waiting.
        punch_refused_busy,
        /// Answers from a peer that was not the introduction's target (or for none).
        punch_answers_unexpected,
        /// Offers we accepted (the requester had business with us).
        punch_offers_accepted,
        /// Offers refused: the requester is neither a known peer nor holds a ticket of ours.
        punch_offers_refused,
        /// Offers dropped: too many being checked at once.
        punch_offers_dropped,
        /// Punch envelopes that did not decode.
        punch_malformed,
        /// Punches we took part in that yielded a connection.
        punches_succeeded,
        /// Punches we took part in that did not.
        punches_failed,
        /// Links we opened through a relay (punching failed).
        links_relayed,
        /// Relayed links that became punched ones later.
        links_upgraded,
        /// Circuits refused: this node does not relay (`relay = false`).
        relay_refused_off,
        /// Circuits refused: over `relay_max_circuits` or `relay_max_circuits_per_pair`.
        relay_refused_limit,
        /// Circuits this node opened as a relay.
        relay_circuits_opened,
        /// Circuits closed at `relay_max_bytes` or `relay_max_secs`.
        relay_closed_limit,
        /// Circuits closed because an end sent beyond its window.
        relay_closed_window,
        /// Relay frames for no circuit of ours, or from a peer that is not its end.
        relay_frames_unexpected,
        /// Bytes this node relayed.
        relay_bytes,
        /// Nameplates refused (the mailbox, or the owner's share of it, is full).
        code_claims_refused,
        /// Opens refused: no such nameplate, opened already, or too many opens a minute.
        code_opens_refused,
        /// Codes of ours redeemed (the claimant proved the key).
        codes_redeemed,
        /// Codes of ours tried with a wrong password (burned, their tickets revoked).
        code_guesses_failed,
    }
}

/// What the reach service is allowed and bounded by.
#[derive(Debug, Clone)]
pub struct ReachSettings {
    /// Requests one linked peer may make of us as a broker in a minute.
    pub broker_per_minute: usize,
    /// Introductions waiting for an answer, in all.
    pub broker_max_pending: usize,
    /// How long each side dials during a punch.
    pub punch_window: Duration,
    /// How long a requester waits for a broker's `dial`.
    pub ask_timeout: Duration,
    /// How often the links with our brokers are pinged, so that neither the broker's idle
    /// close nor our NAT's mapping timeout takes them down (we must stay reachable through
    /// them).
    pub keepalive: Duration,
    /// Keep links with brokers at private addresses alive too (a LAN helper; tests).
    pub keepalive_private: bool,
    /// Relay circuits for linked peers that cannot punch through (`relay = true`).
    pub relay: bool,
}

impl Default for ReachSettings {
    fn default() -> ReachSettings {
        ReachSettings {
            broker_per_minute: 20,
            broker_max_pending: 256,
            punch_window: Duration::from_secs(6),
            ask_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(20),
            keepalive_private: false,
            relay: false,
        }
    }
}

/// Brokers asked at once by one requester.
const MAX_BROKERS: usize = 4;
/// Offers checked at once (each a database read, then a punch).
const MAX_OFFERS: usize = 16;
/// Requests of ours waiting for a broker's answer, in all (and introductions remembered).
const MAX_ASKING: usize = 256;
/// How long an introduction makes a connection to the introduced address a punched one.
const INTRODUCED_FOR: Duration = Duration::from_secs(30);

/// A broker's answer to one of our requests.
#[derive(Debug)]
enum Reply {
    Dial(Vec<SocketAddr>),
    Opened(u64),
    Fail(String),
}

/// The reach service (a handle; see the module docs).
#[derive(Clone)]
pub struct Reach {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    store: Store,
    settings: ReachSettings,
    node_limits: crate::limits::NodeLimits,
    nearby: crate::nearby::Nearby,
    dht: crate::dht::Dht,
    broker: Mutex<Broker>,
    relays: relay::Relays,
    ends: circuit::Ends,
    mailbox: Mutex<mailbox::Mailbox>,
    issued: Mutex<code::Issued>,
    claiming: Mutex<code::Claiming>,
    asking: Mutex<HashMap<u64, (AgentId, mpsc::Sender<Reply>)>>,
    /// Where brokers told us lately that peers are (and dial us from), with when.
    introduced: Mutex<HashMap<AgentId, (Vec<SocketAddr>, std::time::Instant)>>,
    offers: Arc<Semaphore>,
    next_id: AtomicU64,
    counters: ReachCounters,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl std::fmt::Debug for Reach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reach").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the reach service is built from.
#[derive(Debug)]
pub struct ReachSetup {
    /// Links.
    pub endpoint: Endpoint,
    /// The database (known peers, tickets).
    pub store: Store,
    /// Bounds and switches.
    pub settings: ReachSettings,
    /// The node's limits (the relay's).
    pub node_limits: crate::limits::NodeLimits,
    /// Nodes heard on the LAN.
    pub nearby: crate::nearby::Nearby,
    /// The DHT.
    pub dht: crate::dht::Dht,
    /// Where its tasks run.
    pub tracker: TaskTracker,
    /// Cancelled when the node stops.
    pub cancel: CancellationToken,
}

impl Reach {
    /// The service over `setup.endpoint`; install it with `endpoint.set_reacher` and
    /// register it with the protocol router.
    pub fn new(setup: ReachSetup) -> Reach {
        let ReachSetup {
            endpoint,
            store,
            settings,
            node_limits,
            nearby,
            dht,
            tracker,
            cancel,
        } = setup;
        let limits = BrokerLimits {
            per_minute: settings.broker_per_minute,
            max_pending: settings.broker_max_pending,
            wait: settings.ask_timeout,
        };
        Reach {
            inner: Arc::new(Inner {
                endpoint,
                store,
                settings,
                node_limits,
                nearby,
                dht,
                broker: Mutex::new(Broker::new(limits)),
                relays: relay::Relays::default(),
                ends: circuit::Ends::default(),
                mailbox: Mutex::default(),
                issued: Mutex::default(),
                claiming: Mutex::default(),
                asking: Mutex::default(),
                introduced: Mutex::default(),
                offers: Arc::new(Semaphore::new(MAX_OFFERS)),
                next_id: AtomicU64::new(1),
                counters: ReachCounters::default(),
                tracker,
                cancel,
            }),
        }
    }

    /// Pings the links with our brokers every [`ReachSettings::keepalive`] until the node
    /// stops (see [`advertise::brokers`]).
    pub fn spawn_keepalive(&self, tracker: &TaskTracker, cancel: CancellationToken) {
        let this = self.clone();
        tracker.spawn(async move {
            let every = this.inner.settings.keepalive;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = cancel.cancelled() => return,
                }
                let endpoint = &this.inner.endpoint;
                let keep = advertise::brokers(endpoint, this.inner.settings.keepalive_private);
                for peer in keep {
                    let endpoint = endpoint.clone();
                    this.inner.tracker.spawn(async move {
                        if let Err(e) = endpoint.ping(peer).await {
                            tracing::debug!(peer = %peer, "keepalive ping: {e}");
                        }
                    });
                }
            }
        });
    }

    /// The service's counters.
    pub fn counters(&self) -> &ReachCounters {
        &self.inner.counters
    }

    pub(super) fn send(&self, to: AgentId, msg: &Msg) {
        // Control messages are small and rare; a full queue drops them (the other side's
        // timeout covers it) rather than make a link task wait.
        let _ = self
            .inner
            .endpoint
            .try_send(to, envelope(PUNCH, msg.encode()));
    }
}

impl Reacher for Reach {
    fn open(&self, peer: AgentId, intro: Introduction) -> BoxFuture<'_, std::io::Result<Conn>> {
        Box::pin(Reach::open(self, peer, intro))
    }

    fn introduced(&self, peer: &AgentId, remote: SocketAddr) -> bool {
        let remote = crate::endpoint::reuse::canonical(remote);
        lock(&self.inner.introduced)
            .get(peer)
            .is_some_and(|(addrs, at)| {
                mono_now().duration_since(*at) < INTRODUCED_FOR
                    && (addrs.is_empty() || addrs.contains(&remote))
            })
    }
}

impl ProtocolHandler for Reach {
    fn commands(&self) -> &'static [&'static str] {
        &[PUNCH, RELAY, code::MAILBOX]
    }

    fn on_link(&self, event: crate::protocol::LinkEvent) {
        if let crate::protocol::LinkEvent::Down { peer } = event {
            self.relay_peer_down(&peer);
        }
    }

    fn on_payload(&self, peer: AgentId, payload: Payload) {
        let Payload::Envelope(env) = payload else {
            return;
        };
        if env.command.as_str() == RELAY {
            return self.on_relay(peer, &env.data);
        }
        if env.command.as_str() == code::MAILBOX {
            return self.on_mail(peer, &env.data);
        }
        let Some(msg) = Msg::decode(&env.data) else {
            self.inner.counters.punch_malformed.bump();
            return;
        };
        match msg {
            Msg::Connect {
                id,
                to,
                proof,
                relay,
            } => self.broker_connect(peer, id, &to, proof, relay),
            Msg::Offer {
                id,
                from,
                addrs,
                proof,
            } => self.offered(peer, id, &from, &addrs, proof),
            Msg::Accept { id } => self.broker_answer(peer, id, true),
            Msg::Refuse { id } => self.broker_answer(peer, id, false),
            Msg::Dial { id, addrs } => {
                let addrs = addrs.iter().filter_map(|a| a.parse().ok()).collect();
                self.replied(peer, id, Reply::Dial(addrs));
            }
            Msg::Fail { id, why } => self.replied(peer, id, Reply::Fail(why)),
            Msg::Circuit { id, to, proof } => self.broker_circuit(peer, id, &to, proof),
            Msg::Incoming {
                id,
                from,
                circuit,
                proof,
            } => self.incoming(peer, id, &from, circuit, proof),
            Msg::Opened { id, circuit } => self.replied(peer, id, Reply::Opened(circuit)),
        }
    }
}
