//! `kith up`: the node process.
//!
//! Start-up order matters: the identity and the store are opened first (so a broken data dir
//! fails before anything listens), then every listener is bound, and only then is the caller
//! told the node is ready. Shutdown is the reverse: on Ctrl-C or SIGTERM the listeners stop
//! accepting, in-flight requests finish, and the control socket is removed.

use crate::config::NodeConfig;
use crate::control::{server, StatusReport};
use crate::guard::{AdmissionGuard, HandshakeId};
use crate::links::LinkManager;
use crate::net;
use kith_crypto::identity::AgentId;
use kith_proto::secure::{Chad, Mode, SecureConfig};
use kith_proto::wire::Envelope;
use kith_store::files::FileStore;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// Why the node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The data dir, identity or store could not be opened.
    #[error("{0}")]
    Open(String),
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

/// Counters of events and refusals, shown by `kith status --json`. Names are static strings
/// (each refusal and failure has its own), so the map stays small and bounded.
#[derive(Debug, Default)]
pub struct Counters {
    map: Mutex<BTreeMap<&'static str, u64>>,
}

impl Counters {
    /// Adds one to `name`.
    pub fn bump(&self, name: &'static str) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(name).or_insert(0) += 1;
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> u64 {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(name).copied().unwrap_or(0)
    }

    fn snapshot(&self) -> BTreeMap<String, u64> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }
}

/// State shared by every task of a running node.
pub struct NodeState {
    /// The resolved settings.
    pub config: NodeConfig,
    /// Event and refusal counters.
    pub counters: Counters,
    /// Our agent id.
    pub agent: AgentId,
    /// Keys and mode for secure links.
    pub secure: SecureConfig,
    /// One link per peer.
    pub links: LinkManager,
    /// File-exchange sessions over links, one per peer at most.
    pub exchange: crate::exchange::Exchange,
    /// Fetches in progress, for progress bars.
    pub progress: crate::exchange::progress::Transfers,
    /// Upload slots and what each peer gave and took (choking).
    pub uploads: crate::sharing::Uploads,
    /// Files peers offered, waiting for the replicator.
    pub replication: crate::sharing::ReplicationQueue,
    /// The chat task's inputs.
    pub chat: crate::chat::Chat,
    /// Proof of retention: placement notices in flight, one round of checks at a time.
    pub retention: crate::retention::Retention,
    node_id: String,
    started: Instant,
    listeners: BTreeMap<String, String>,
    /// Host and port that tickets name.
    announce: (String, u16),
    guard: Mutex<AdmissionGuard>,
    pending: Mutex<HashMap<HandshakeId, AbortHandle>>,
    dial_locks: Mutex<HashMap<AgentId, Arc<tokio::sync::Mutex<()>>>>,
    stop_tx: watch::Sender<bool>,
    /// TLS with the node certificate, for the text ports (`None` if it could not be built).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    peer_clients: Mutex<Vec<(u64, std::net::IpAddr)>>,
    // The store is synchronous (file I/O, and a PostgreSQL client that must not run on a
    // runtime thread): it is only touched from `spawn_blocking`, one caller at a time.
    store: Arc<Mutex<FileStore>>,
}

impl NodeState {
    /// Runs `f` on the store on the blocking pool. Errs only if the task panicked or the lock
    /// was poisoned by an earlier panic.
    pub async fn with_store<R, F>(&self, f: F) -> Result<R, String>
    where
        R: Send + 'static,
        F: FnOnce(&mut FileStore) -> R + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || {
            let mut guard = store.lock().map_err(|_| "store lock poisoned".to_owned())?;
            Ok(f(&mut guard))
        })
        .await
        .map_err(|e| format!("store task failed: {e}"))?
    }

    /// The admission guard.
    pub fn guard(&self) -> std::sync::MutexGuard<'_, AdmissionGuard> {
        self.guard.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Handshakes in progress, so the guard can evict one.
    pub fn pending_handshakes(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<HandshakeId, AbortHandle>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Clients connected to the peer port (session id, address), for `pip` and the cap.
    pub fn peer_clients(&self) -> std::sync::MutexGuard<'_, Vec<(u64, std::net::IpAddr)>> {
        self.peer_clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lock that serialises dials to `agent`.
    pub fn dial_lock(&self, agent: AgentId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.dial_locks.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(locks.entry(agent).or_default())
    }

    /// Resolves (changes) when the node starts stopping.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop_tx.subscribe()
    }

    /// True once shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        *self.stop_tx.borrow()
    }

    /// The port of our secure-link listener, if it is on.
    pub fn listen_port(&self) -> Option<u16> {
        self.listeners
            .get("listen")
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .map(|a| a.port())
    }

    /// Our CHIP address, as tickets and first-contact requests name it.
    pub fn own_chad(&self) -> Chad {
        Chad {
            cuid: None,
            agent: self.agent.to_string(),
            host: Some(self.announce.0.clone()),
            port: Some(self.announce.1),
        }
    }

    /// Where envelopes that the link layer does not handle go: `ciyam`/`ciyam-r` to the peer's
    /// file-exchange session ([`crate::exchange::dispatch`]), `offer` to the replicator
    /// ([`crate::sharing::on_offer`]), `have` to the placements
    /// ([`crate::retention::dispatch`]), `chat` to the chat task ([`crate::chat`]). Anything
    /// else is counted and dropped.
    pub fn dispatch(self: &Arc<Self>, peer: AgentId, envelope: Envelope) {
        let command = envelope.command.as_str();
        if command == kith_proto::files::binary::ENVELOPE_COMMAND
            || command == kith_proto::files::binary::REPLY_ENVELOPE_COMMAND
        {
            crate::exchange::dispatch(self, peer, envelope);
            return;
        }
        if command == crate::sharing::OFFER_COMMAND {
            crate::sharing::on_offer(self, peer, &envelope);
            return;
        }
        if command == crate::chat::CHAT_COMMAND {
            if !self
                .chat
                .offer(crate::chat::ChatInput::LinkFrame(peer, envelope.data))
            {
                self.counters.bump("chat_envelopes_dropped");
            }
            return;
        }
        if command == crate::retention::HAVE_COMMAND {
            crate::retention::dispatch(self, peer, envelope);
            return;
        }
        self.counters.bump("envelopes_unhandled");
        tracing::debug!(peer = %peer, command = %envelope.command, "no handler for envelope");
    }

    /// The status report, given the current number of stored files.
    pub fn status(&self, files: u64) -> StatusReport {
        StatusReport {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            data_dir: self.config.data_dir.root().display().to_string(),
            agent: self.agent.to_string(),
            node_id: self.node_id.clone(),
            uptime_secs: self.started.elapsed().as_secs(),
            db: self.config.db_kind().to_owned(),
            files,
            links: self.links.linked().len() as u64,
            listeners: self.listeners.clone(),
            counters: {
                let mut counters = self.counters.snapshot();
                counters.extend(self.chat.counters());
                counters
            },
        }
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
    config
        .check_for_serving()
        .map_err(|e| NodeError::Open(e.to_string()))?;
    let data_dir = config.data_dir.clone();
    let identity = data_dir
        .load_or_create_identity(&mut rand::rngs::OsRng)
        .map_err(|e| NodeError::Open(e.to_string()))?
        .identity;
    let store_config = config.clone();
    let (store, peers) = tokio::task::spawn_blocking(move || {
        let store = store_config.open_file_store().map_err(|e| e.to_string())?;
        tracing::info!("{}", store.startup_gc());
        let peers = store.meta().list_peers().map_err(|e| e.to_string())?;
        Ok::<_, String>((store, peers))
    })
    .await
    .map_err(|e| NodeError::Open(e.to_string()))?
    .map_err(NodeError::Open)?;

    let socket = data_dir.control_socket();
    let control = bind_control_socket(&socket, &data_dir.root().display().to_string())?;
    let listener = match config.listen {
        Some(addr) => Some(net::bind(addr).await.map_err(|source| NodeError::Bind {
            what: "secure-link listener",
            addr: addr.to_string(),
            source,
        })?),
        None => None,
    };
    let peer_listener = match config.peer_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| NodeError::Bind {
                    what: "peer port",
                    addr: addr.to_string(),
                    source,
                })?,
        ),
        None => None,
    };
    let chat_listener = match config.chat_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| NodeError::Bind {
                    what: "chat port",
                    addr: addr.to_string(),
                    source,
                })?,
        ),
        None => None,
    };
    let chat_listen = chat_listener.as_ref().and_then(|l| l.local_addr().ok());
    let listen = listener.as_ref().and_then(|l| l.local_addr().ok());
    let peer_listen = peer_listener.as_ref().and_then(|l| l.local_addr().ok());
    let mut listeners = BTreeMap::from([("control".to_owned(), socket.display().to_string())]);
    if let Some(addr) = listen {
        listeners.insert("listen".to_owned(), addr.to_string());
    }
    if let Some(addr) = peer_listen {
        listeners.insert("peer_listen".to_owned(), addr.to_string());
    }
    if let Some(addr) = chat_listen {
        listeners.insert("chat_listen".to_owned(), addr.to_string());
    }
    let tls = match crate::tls::server_config(&identity) {
        Ok(tls) => Some(tls),
        Err(e) => {
            tracing::warn!("TLS is unavailable on the text ports: {e}");
            None
        }
    };
    let announce = match (&config.announce, listen) {
        (Some(announce), _) => announce.clone(),
        (None, Some(addr)) if !addr.ip().is_unspecified() => (addr.ip().to_string(), addr.port()),
        (None, Some(addr)) => {
            tracing::warn!(
                "tickets will name 127.0.0.1:{0}; pass --announce HOST:PORT so that other machines can reach this node",
                addr.port()
            );
            ("127.0.0.1".to_owned(), addr.port())
        }
        (None, None) => ("127.0.0.1".to_owned(), 0),
    };
    let mut secure = SecureConfig::new(&identity, &config.limits);
    if config.raw_links {
        tracing::warn!(
            "RAW MODE: secure links are NOT encrypted or authenticated (simulations only)"
        );
        secure = secure.with_mode(Mode::Raw);
    }
    let (stop_tx, _) = watch::channel(false);
    let (chat, chat_queues) = crate::chat::Chat::new(config.limits.chat_input_queue);
    if config.chat_tls && tls.is_none() && chat_listener.is_some() {
        return Err(NodeError::Open(
            "--chat-tls needs the node certificate, which could not be built".into(),
        ));
    }
    let state = Arc::new(NodeState {
        agent: identity.agent_id(),
        node_id: identity.node_id().to_string(),
        secure,
        links: LinkManager::new(config.limits.max_pending_pings),
        exchange: crate::exchange::Exchange::new(config.limits.max_exchange_sessions),
        progress: Default::default(),
        uploads: crate::sharing::Uploads::new(&config.limits, config.limits.max_links),
        chat,
        replication: crate::sharing::ReplicationQueue::new(config.limits.max_pending_replications),
        retention: crate::retention::Retention::default(),
        guard: Mutex::new(AdmissionGuard::new(config.limits.clone())),
        pending: Mutex::default(),
        dial_locks: Mutex::default(),
        counters: Counters::default(),
        started: Instant::now(),
        listeners,
        announce,
        stop_tx,
        tls,
        peer_clients: Mutex::default(),
        store: Arc::new(Mutex::new(store)),
        config,
    });
    tokio::spawn(crate::chat::run(Arc::clone(&state), identity, chat_queues));
    if let Some(listener) = listener {
        tokio::spawn(net::accept_loop(Arc::clone(&state), listener));
    }
    if let Some(listener) = peer_listener {
        tokio::spawn(crate::peer_port::accept_loop(Arc::clone(&state), listener));
    }
    if let Some(listener) = chat_listener {
        let tls = state.config.chat_tls;
        tokio::spawn(crate::chat::port::accept_loop(
            Arc::clone(&state),
            listener,
            tls,
        ));
    }
    tokio::spawn(crate::sharing::replicate(Arc::clone(&state)));
    net::relink_known_peers(Arc::clone(&state), peers);
    crate::retention::spawn_scheduler(Arc::clone(&state));
    tracing::info!(agent = %state.agent, node_id = %state.node_id, data_dir = %data_dir.root().display(), "node ready");
    on_ready(&Ready {
        control: socket.clone(),
        listen,
        peer_listen,
        chat_listen,
        agent: state.agent.to_string(),
        node_id: state.node_id.clone(),
    });

    let stopper = Arc::clone(&state);
    let result = axum::serve(control, server::router(Arc::clone(&state)))
        .with_graceful_shutdown(async move {
            shutdown.await;
            stopper.stop_tx.send_replace(true);
        })
        .await;
    state.stop_tx.send_replace(true);
    state.links.close_all();
    // Give links a moment to say bye; nothing waits on them beyond this.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = std::fs::remove_file(&socket);
    tracing::info!("node stopped");
    result.map_err(NodeError::Runtime)
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
