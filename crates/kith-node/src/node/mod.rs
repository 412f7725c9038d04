//! The node: the composition root, the one module that knows every service. [`Node::start`]
//! opens nothing itself: it takes the opened store, the identity and the transports
//! ([`NodeSetup`]), builds the endpoint and the services around handles on both, registers
//! the link protocols with the router, spawns every task on one [`TaskTracker`] and stops
//! them with one [`CancellationToken`]. [`up`] is `kith up`: the process around a `Node`
//! (data dir, sockets, control API, signals).

pub mod up;

pub use up::{run, serve, serve_with_clock, NodeError, Ready};

use crate::chat::{Chat, ChatSettings};
use crate::clock::SharedClock;
use crate::config::NodeConfig;
use crate::control::{NodeInfo, Services};
use crate::counters::CounterSet;
use crate::endpoint::{Endpoint, EndpointConfig, StoreDirectory};
use crate::exchange::{Exchange, ExchangeSettings};
use crate::peer_port::{PeerPort, PeerPortSettings};
use crate::posts::{Posts, PostsSettings};
use crate::protocol::Router;
use crate::reach::Reach;
use crate::retention::Retention;
use crate::sharing::Sharing;
use crate::store::Store;
use crate::tally::{Tallies, TallySettings};
use kith_proto::secure::{Mode, SecureConfig};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long shutdown waits for tasks beyond the links' drain deadline.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What a node is built from (see [`Node::start`]).
pub struct NodeSetup {
    /// The resolved settings.
    pub config: NodeConfig,
    /// The node's keys.
    pub identity: kith_crypto::Identity,
    /// The opened store.
    pub store: Store,
    /// Wall-clock time.
    pub clock: SharedClock,
    /// How links are dialled.
    pub dialer: Arc<dyn crate::endpoint::Dialer>,
    /// Where links come in.
    pub acceptors: Vec<Box<dyn crate::endpoint::Acceptor>>,
    /// TLS with the node certificate, for the text ports.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// A running node's parts: the endpoint and the services, wired together, with the token that
/// stops them and the tracker that waits for them. `kith up` serves one behind its control
/// API; in-process tests drive one directly.
#[derive(Debug, Clone)]
pub struct Node {
    /// Links.
    pub endpoint: Endpoint,
    /// Files and the database.
    pub store: Store,
    /// File exchange and custody.
    pub exchange: Exchange,
    /// Offers and replication.
    pub sharing: Sharing,
    /// Proof of retention.
    pub retention: Retention,
    /// Chat.
    pub chat: Chat,
    /// The CIYAM peer port's sessions.
    pub peer_port: PeerPort,
    /// Tallies and chits.
    pub tallies: Tallies,
    /// Punching and relaying through mutual peers.
    pub reach: Reach,
    /// Posts and communities.
    pub posts: Posts,
    /// Nodes heard on the LAN (started by `kith up`, see [`crate::nearby`]).
    pub nearby: crate::nearby::Nearby,
    /// The mainline DHT (started when first needed, see [`crate::dht`]).
    pub dht: crate::dht::Dht,
    /// The port mapping asked of the home router (started by `kith up`, see
    /// [`crate::reach::PortMap`]).
    pub portmap: crate::reach::PortMap,
    /// Cancelled to stop the node.
    pub cancel: CancellationToken,
    /// Every task of the node.
    pub tracker: TaskTracker,
    drain: Duration,
}

impl Node {
    /// Builds the endpoint and the services, registers the link protocols, starts the
    /// endpoint (accepting, re-linking known peers) and the background tasks.
    pub fn start(setup: NodeSetup) -> Node {
        let NodeSetup {
            config,
            identity,
            store,
            clock,
            dialer,
            acceptors,
            tls,
        } = setup;
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let limits = config.limits.clone();
        let mut secure = SecureConfig::new(&identity, &limits);
        if config.raw_links {
            secure = secure.with_mode(Mode::Raw);
        }
        let listen_port = acceptors
            .first()
            .and_then(|a| a.local_addr())
            .map(|a| a.port());
        let node_limits = config.node_limits.clone();
        let endpoint = Endpoint::new(EndpointConfig {
            secure,
            limits: limits.clone(),
            node_limits: node_limits.clone(),
            clock: Arc::clone(&clock),
            directory: Arc::new(StoreDirectory::new(store.clone())),
            dialer,
            acceptors,
            announce: config.announce.clone(),
            capabilities: {
                // Envelope checksums left out on encrypted links between kith nodes: the
                // AEAD already authenticates every byte (a SHA-256 pass saved each side).
                let mut caps = crate::exchange::capabilities(&node_limits);
                caps.push(kith_proto::link::UNSUMMED_CAPABILITY.to_owned());
                caps
            },
            cancel: cancel.clone(),
            tracker: tracker.clone(),
        });
        let exchange = Exchange::new(
            endpoint.clone(),
            store.clone(),
            ExchangeSettings {
                limits: limits.clone(),
                node_limits: node_limits.clone(),
                max_item: config.max_item,
                clock: Arc::clone(&clock),
            },
        );
        let retention = Retention::new(
            endpoint.clone(),
            store.clone(),
            exchange.clone(),
            node_limits.clone(),
            Arc::clone(&clock),
        );
        let sharing = Sharing::new(
            endpoint.clone(),
            store.clone(),
            exchange.clone(),
            node_limits.clone(),
            Arc::clone(&clock),
        );
        let (chat, chat_queues) = Chat::new(
            endpoint.clone(),
            store.clone(),
            ChatSettings {
                limits: config.chat_limits.clone(),
                node_limits,
                link_limits: limits.clone(),
                name: config.chat_name.clone(),
                name_given: config.chat_name_given,
                auto_join_invites: config.chat_auto_join_invites,
                listen_port,
                tls: tls.clone(),
                clock: Arc::clone(&clock),
            },
        );
        let peer_port = PeerPort::new(
            exchange.clone(),
            tls,
            PeerPortSettings {
                open_store: config.peer_port_open_store,
                clock: Arc::clone(&clock),
            },
        );
        let (posts, posts_queue) = Posts::new(
            endpoint.clone(),
            store.clone(),
            PostsSettings {
                limits: kith_posts::PostsLimits {
                    max_post: config.node_limits.posts_max_item,
                    max_posts: config.node_limits.posts_max,
                    max_bytes: config.node_limits.posts_max_bytes,
                    ..kith_posts::PostsLimits::default()
                },
                clock: Arc::clone(&clock),
                author: identity.content_key().clone(),
            },
            tracker.clone(),
            cancel.clone(),
        );
        let (tallies, tally_queue) = Tallies::new(
            endpoint.clone(),
            store.clone(),
            TallySettings {
                keys_dir: config.data_dir.keys_dir(),
                clock,
                value: config.value,
            },
        );
        exchange.set_gate(Arc::new(tallies.clone()));
        let nearby = crate::nearby::Nearby::default();
        let dht = crate::dht::Dht::new(config.dht.clone(), identity.clone());
        let reach = Reach::new(crate::reach::ReachSetup {
            endpoint: endpoint.clone(),
            store: store.clone(),
            settings: config.reach.clone(),
            node_limits: config.node_limits.clone(),
            nearby: nearby.clone(),
            dht: dht.clone(),
            tracker: tracker.clone(),
            cancel: cancel.clone(),
        });
        endpoint.set_reacher(Arc::new(reach.clone()));
        Router::builder(endpoint.clone())
            .accept(Arc::new(exchange.clone()))
            .accept(Arc::new(retention.clone()))
            .accept(Arc::new(sharing.clone()))
            .accept(Arc::new(chat.clone()))
            .accept(Arc::new(tallies.clone()))
            .accept(Arc::new(reach.clone()))
            .accept(Arc::new(posts.clone()))
            .spawn();
        crate::posts::spawn(&posts, posts_queue, &tracker, cancel.clone());
        crate::tally::spawn(&tallies, tally_queue, &tracker, cancel.clone());
        tracker.spawn(crate::chat::run(
            chat.clone(),
            identity,
            chat_queues,
            cancel.clone(),
        ));
        sharing.spawn_replicator(&tracker, cancel.clone());
        retention.spawn_scheduler(&tracker, cancel.clone());
        reach.spawn_keepalive(&tracker, cancel.clone());
        Node {
            endpoint,
            store,
            exchange,
            sharing,
            retention,
            chat,
            peer_port,
            tallies,
            reach,
            posts,
            nearby,
            dht,
            portmap: crate::reach::PortMap::default(),
            cancel,
            tracker,
            drain: Duration::from_millis(limits.link_drain_ms),
        }
    }

    /// Every counter of the node, by name (zero included).
    pub fn counters(&self) -> BTreeMap<String, u64> {
        let mut counters = crate::counters::snapshot(&[
            self.endpoint.counters() as &dyn CounterSet,
            &self.exchange.counters,
            self.sharing.counters(),
            self.retention.counters(),
            self.peer_port.counters(),
            self.chat.counters(),
            self.tallies.counters(),
            self.reach.counters(),
            self.nearby.counters(),
            self.dht.counters(),
            self.portmap.counters(),
        ]);
        counters.extend(self.chat.router_counters());
        counters.extend(self.posts.counters());
        counters
    }

    /// The control API's view of this node.
    pub(crate) fn services(&self, status: Arc<dyn NodeInfo>) -> Services {
        Services {
            endpoint: self.endpoint.clone(),
            store: self.store.clone(),
            exchange: self.exchange.clone(),
            sharing: self.sharing.clone(),
            retention: self.retention.clone(),
            chat: self.chat.clone(),
            tallies: self.tallies.clone(),
            nearby: self.nearby.clone(),
            reach: self.reach.clone(),
            posts: self.posts.clone(),
            node: status,
            control_counters: Arc::default(),
        }
    }

    /// Stops the node: links flush what they had queued and say `bye`; waits for every task
    /// (no longer than the links' drain plus [`SHUTDOWN_GRACE`]).
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tracker.close();
        let grace = self.drain + SHUTDOWN_GRACE;
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some tasks did not stop within {grace:?}");
        }
    }
}
