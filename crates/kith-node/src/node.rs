//! `kith up`: the node process, and the composition root: the one module that knows every
//! service. It opens the store, builds the endpoint, builds the services around handles on
//! both, registers the link protocols with the router, spawns every task on one
//! [`TaskTracker`] and stops them with one [`CancellationToken`].
//!
//! Start-up order matters: the identity and the store are opened first (so a broken data dir
//! fails before anything listens), then every listener is bound, and only then is the caller
//! told the node is ready. Shutdown is the reverse: on Ctrl-C or SIGTERM the control API stops
//! accepting, the token is cancelled (listeners stop, links say `bye` after flushing what they
//! had queued), the node waits for its tasks (at most [`SHUTDOWN_GRACE`] past the links'
//! drain), and the control socket is removed.

use crate::chat::{Chat, ChatSettings};
use crate::clock::{SharedClock, SystemClock};
use crate::config::NodeConfig;
use crate::control::{server, NodeInfo, Services};
use crate::counters::CounterSet;
use crate::endpoint::{Endpoint, EndpointConfig, StoreDirectory, Tcp, TcpAcceptor};
use crate::exchange::{Exchange, ExchangeSettings};
use crate::peer_port::PeerPort;
use crate::protocol::Router;
use crate::retention::Retention;
use crate::sharing::Sharing;
use crate::store::Store;
use kith_proto::secure::{Mode, SecureConfig};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long shutdown waits for tasks beyond the links' drain deadline.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Why the node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The settings do not allow serving (raw links facing the network).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The identity could not be loaded or created.
    #[error(transparent)]
    Identity(#[from] kith_store::datadir::DataDirError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] kith_store::StoreError),
    /// The node certificate, which `--chat-tls` needs, could not be built.
    #[error("--chat-tls needs the node certificate, which could not be built: {0}")]
    Tls(String),
    /// Another node already serves this data dir.
    #[error("a node is already running on data dir {0}; stop it first or pass another --data")]
    AlreadyRunning(String),
    /// A listener could not be bound.
    #[error(
        "cannot listen on {what} {addr}: {source}{}",
        bind_advice(what, source)
    )]
    Bind {
        /// Which listener.
        what: &'static str,
        /// Its address.
        addr: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The async runtime failed.
    #[error("runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// What to do when a listener cannot be bound, by listener and cause.
fn bind_advice(what: &str, error: &std::io::Error) -> String {
    let flag = match what {
        "secure-link listener" => "--listen",
        "peer port" => "--peer-listen",
        "chat port" => "--chat-listen",
        _ => return String::new(),
    };
    match error.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "; another program (perhaps another kith node) uses that port: stop it, or pick \
             another port with {flag} ADDR:PORT (port 0 picks a free one, `off` disables it)"
        ),
        std::io::ErrorKind::AddrNotAvailable => format!(
            "; that address is not one of this machine's: use {flag} 127.0.0.1:PORT or 0.0.0.0:PORT"
        ),
        std::io::ErrorKind::PermissionDenied => {
            format!("; ports below 1024 need privileges: pick a port above 1024 with {flag}")
        }
        _ => String::new(),
    }
}

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
            capabilities: crate::exchange::capabilities(&node_limits),
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
                auto_join_invites: config.chat_auto_join_invites,
                listen_port,
                tls: tls.clone(),
                clock,
            },
        );
        let peer_port = PeerPort::new(exchange.clone(), tls);
        Router::builder(endpoint.clone())
            .accept(Arc::new(exchange.clone()))
            .accept(Arc::new(retention.clone()))
            .accept(Arc::new(sharing.clone()))
            .accept(Arc::new(chat.clone()))
            .spawn();
        tracker.spawn(crate::chat::run(
            chat.clone(),
            identity,
            chat_queues,
            cancel.clone(),
        ));
        sharing.spawn_replicator(&tracker, cancel.clone());
        retention.spawn_scheduler(&tracker, cancel.clone());
        Node {
            endpoint,
            store,
            exchange,
            sharing,
            retention,
            chat,
            peer_port,
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
        ]);
        counters.extend(self.chat.router_counters());
        counters
    }

    /// The control API's view of this node.
    fn services(&self, status: NodeStatus) -> Services {
        Services {
            endpoint: self.endpoint.clone(),
            store: self.store.clone(),
            exchange: self.exchange.clone(),
            sharing: self.sharing.clone(),
            retention: self.retention.clone(),
            chat: self.chat.clone(),
            node: Arc::new(status),
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

/// What `kith status` reports of the node itself, and where its counters come from.
#[derive(Debug)]
struct NodeStatus {
    agent: String,
    node_id: String,
    data_dir: String,
    db: &'static str,
    started: Instant,
    listeners: BTreeMap<String, String>,
    listens: bool,
    max_control_body: usize,
    clock: SharedClock,
    node: Node,
}

impl NodeInfo for NodeStatus {
    fn status(&self, files: u64) -> crate::api::StatusReport {
        let counters = self.node.counters();
        crate::api::StatusReport {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            data_dir: self.data_dir.clone(),
            agent: self.agent.clone(),
            node_id: self.node_id.clone(),
            uptime_secs: self.started.elapsed().as_secs(),
            db: self.db.to_owned(),
            files,
            links: self.node.endpoint.linked().len() as u64,
            listeners: self.listeners.clone(),
            counters,
            replication: None,
        }
    }

    fn listens(&self) -> bool {
        self.listens
    }

    fn max_control_body(&self) -> usize {
        self.max_control_body
    }

    fn clock(&self) -> &SharedClock {
        &self.clock
    }
}

/// What the caller of [`run`] learns once every listener accepts connections.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The control socket.
    pub control: PathBuf,
    /// The secure-link listener's address, if enabled.
    pub listen: Option<SocketAddr>,
    /// The CIYAM peer port's address, if enabled.
    pub peer_listen: Option<SocketAddr>,
    /// The chat port's address, if enabled.
    pub chat_listen: Option<SocketAddr>,
    /// The node's agent id.
    pub agent: String,
    /// The node's chat node id.
    pub node_id: String,
}

/// Runs a node in the foreground until Ctrl-C or SIGTERM. `on_ready` is called once, after
/// every listener is bound.
pub fn run(config: NodeConfig, on_ready: impl FnOnce(&Ready)) -> Result<(), NodeError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(config, on_ready, shutdown_signal()))
}

/// The body of [`run`], with the shutdown trigger as a parameter so tests can stop a node.
pub async fn serve(
    config: NodeConfig,
    on_ready: impl FnOnce(&Ready),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    serve_with_clock(config, Arc::new(SystemClock), on_ready, shutdown).await
}

/// [`serve`] with the wall clock given (tests move it to expire tickets).
pub async fn serve_with_clock(
    config: NodeConfig,
    clock: SharedClock,
    on_ready: impl FnOnce(&Ready),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    config.check_for_serving()?;
    let data_dir = config.data_dir.clone();
    let identity = data_dir
        .load_or_create_identity(&mut rand::rngs::OsRng)?
        .identity;
    let store_config = config.clone();
    let files = tokio::task::spawn_blocking(move || {
        let files = store_config.open_file_store()?;
        // What a crash or a full disk left behind (items no file uses, temp files) goes now,
        // unless another process is writing to the store. Collected before it is logged: a
        // disabled `info!` never evaluates its arguments, so with `KITH_LOG=warn` the
        // collection inside it never ran.
        let report = files.startup_gc();
        tracing::info!("{report}");
        Ok::<_, kith_store::StoreError>(files)
    })
    .await
    .map_err(|e| NodeError::Runtime(std::io::Error::other(e)))??;
    let store = Store::new(files);

    let socket = data_dir.control_socket();
    let control = bind_control_socket(&socket, &data_dir.root().display().to_string())?;
    let acceptor = match config.listen {
        Some(addr) => Some(
            TcpAcceptor::bind(addr)
                .await
                .map_err(|source| NodeError::Bind {
                    what: "secure-link listener",
                    addr: addr.to_string(),
                    source,
                })?,
        ),
        None => None,
    };
    let peer_listener = bind_optional(config.peer_listen, "peer port").await?;
    let chat_listener = bind_optional(config.chat_listen, "chat port").await?;
    let listen = acceptor
        .as_ref()
        .and_then(crate::endpoint::Acceptor::local_addr);
    let peer_listen = peer_listener.as_ref().and_then(|l| l.local_addr().ok());
    let chat_listen = chat_listener.as_ref().and_then(|l| l.local_addr().ok());
    let mut listeners = BTreeMap::from([("control".to_owned(), socket.display().to_string())]);
    for (name, addr) in [
        ("listen", listen),
        ("peer_listen", peer_listen),
        ("chat_listen", chat_listen),
    ] {
        if let Some(addr) = addr {
            listeners.insert(name.to_owned(), addr.to_string());
        }
    }
    let tls = match crate::tls::server_config(&identity) {
        Ok(tls) => Some(tls),
        Err(e) if config.chat_tls && chat_listener.is_some() => {
            return Err(NodeError::Tls(e.to_string()))
        }
        Err(e) => {
            tracing::warn!("TLS is unavailable on the text ports: {e}");
            None
        }
    };
    if config.raw_links {
        tracing::warn!(
            "RAW MODE: secure links are NOT encrypted or authenticated (simulations only)"
        );
    }

    let node = Node::start(NodeSetup {
        config: config.clone(),
        identity: identity.clone(),
        store,
        clock: Arc::clone(&clock),
        dialer: Arc::new(Tcp),
        acceptors: acceptor
            .map(|a| Box::new(a) as Box<dyn crate::endpoint::Acceptor>)
            .into_iter()
            .collect(),
        tls: tls.clone(),
    });
    let (cancel, tracker, limits) = (
        node.cancel.clone(),
        node.tracker.clone(),
        &config.node_limits,
    );
    if let Some(listener) = chat_listener {
        tracker.spawn(crate::chat::port::accept_loop(
            node.chat.clone(),
            listener,
            config.chat_tls,
            cancel.clone(),
        ));
    }
    if let Some(listener) = peer_listener {
        tracker.spawn(crate::peer_port::accept_loop(
            node.peer_port.clone(),
            listener,
            cancel.clone(),
        ));
    }

    let agent = identity.agent_id().to_string();
    let node_id = identity.node_id().to_string();
    tracing::info!(%agent, %node_id, data_dir = %data_dir.root().display(), "node ready");
    on_ready(&Ready {
        control: socket.clone(),
        listen,
        peer_listen,
        chat_listen,
        agent: agent.clone(),
        node_id: node_id.clone(),
    });

    let services = node.services(NodeStatus {
        agent,
        node_id,
        data_dir: data_dir.root().display().to_string(),
        db: config.db_kind(),
        started: Instant::now(),
        listeners,
        listens: config.listen.is_some(),
        max_control_body: limits.max_control_body,
        clock,
        node: node.clone(),
    });
    let stopper = cancel.clone();
    let result = server::serve(control, services, limits, async move {
        tokio::select! {
            _ = shutdown => {}
            _ = stopper.cancelled() => {}
        }
    })
    .await;
    node.shutdown().await;
    let _ = std::fs::remove_file(&socket);
    tracing::info!("node stopped");
    result.map_err(NodeError::Runtime)
}

async fn bind_optional(
    addr: Option<SocketAddr>,
    what: &'static str,
) -> Result<Option<TcpListener>, NodeError> {
    match addr {
        Some(addr) => TcpListener::bind(addr)
            .await
            .map(Some)
            .map_err(|source| NodeError::Bind {
                what,
                addr: addr.to_string(),
                source,
            }),
        None => Ok(None),
    }
}

/// Binds the control socket with mode 0600, replacing a stale socket left by a crashed node
/// but refusing to steal one that a live node still answers on.
fn bind_control_socket(
    socket: &std::path::Path,
    data_dir: &str,
) -> Result<UnixListener, NodeError> {
    use std::os::unix::fs::PermissionsExt;
    if socket.exists() {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Err(NodeError::AlreadyRunning(data_dir.to_owned()));
        }
        let _ = std::fs::remove_file(socket);
    }
    let bind_error = |source| NodeError::Bind {
        what: "control socket",
        addr: socket.display().to_string(),
        source,
    };
    let listener = UnixListener::bind(socket).map_err(bind_error)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)).map_err(bind_error)?;
    Ok(listener)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested");
}
