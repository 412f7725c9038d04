//! `kith up`: the node process. Start-up order matters: the identity and the store are opened
//! first (so a broken data dir fails before anything listens), then every listener is bound,
//! and only then is the caller told the node is ready. Shutdown is the reverse: on Ctrl-C or
//! SIGTERM the control API stops accepting, the node's token is cancelled (listeners stop,
//! links flush and say `bye`), the node waits for its tasks (at most
//! [`super::SHUTDOWN_GRACE`] past the links' drain), and the control socket is removed.

use super::{Node, NodeSetup};
use crate::clock::{SharedClock, SystemClock};
use crate::config::NodeConfig;
use crate::control::{server, NodeInfo};
use crate::counters::CounterSet;
use crate::endpoint::{Tcp, TcpAcceptor, WsAcceptor, WsDialer};
use crate::store::Store;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::{TcpListener, UnixListener};

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
        "web page" => "--web",
        "WebSocket listener" => "--ws-listen",
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
    web_url: Option<String>,
    web_counters: Arc<crate::web::WebCounters>,
    max_control_body: usize,
    clock: SharedClock,
    node: Node,
}

impl NodeInfo for NodeStatus {
    fn status(&self, files: u64) -> crate::api::StatusReport {
        let mut counters = self.node.counters();
        self.web_counters.snapshot_into(&mut counters);
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

    fn web_url(&self) -> Option<String> {
        self.web_url.clone()
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
    /// The web page's full address, token included, if enabled.
    pub web: Option<String>,
    /// The WebSocket link listener's address, if enabled.
    pub ws_listen: Option<SocketAddr>,
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
        // No fetch runs yet: a temporary output file still noted was left by a crash.
        for left in files.output_journal().reclaim() {
            tracing::info!(
                "removed {}, left by a fetch that did not finish",
                left.display()
            );
        }
        Ok::<_, kith_store::StoreError>(files)
    })
    .await
    .map_err(|e| NodeError::Runtime(std::io::Error::other(e)))??;
    let store = Store::new(files);

    let socket = data_dir.control_socket();
    let control = bind_control_socket(&socket, &data_dir.root().display().to_string())?;
    // Listener and dialler share the port (address and port reuse), so the address peers
    // observe for our outgoing links is the one they, or a peer punching through, can dial.
    // A `ws://` address is dialled over WebSocket, any other over TCP.
    let ws_max = crate::endpoint::ws::ws_max_message(&config.limits);
    let (acceptor, dialer): (Option<TcpAcceptor>, Arc<dyn crate::endpoint::Dialer>) =
        match config.listen {
            Some(addr) => {
                let (acceptor, dialer) =
                    crate::endpoint::reuse::bind(addr).map_err(|source| NodeError::Bind {
                        what: "secure-link listener",
                        addr: addr.to_string(),
                        source,
                    })?;
                (Some(acceptor), Arc::new(WsDialer::new(dialer, ws_max)))
            }
            None => (None, Arc::new(WsDialer::new(Tcp, ws_max))),
        };
    let ws_acceptor = match config.ws_listen {
        Some(addr) => Some(
            TcpAcceptor::bind(addr)
                .await
                .map_err(|source| NodeError::Bind {
                    what: "WebSocket listener",
                    addr: addr.to_string(),
                    source,
                })?,
        ),
        None => None,
    };
    let ws_listen = ws_acceptor
        .as_ref()
        .and_then(crate::endpoint::Acceptor::local_addr);
    let peer_listener = bind_optional(config.peer_listen, "peer port").await?;
    let chat_listener = bind_optional(config.chat_listen, "chat port").await?;
    let web = match config.web {
        Some(addr) => {
            Some(
                crate::web::WebServer::bind(addr)
                    .await
                    .map_err(|source| NodeError::Bind {
                        what: "web page",
                        addr: addr.to_string(),
                        source,
                    })?,
            )
        }
        None => None,
    };
    let web_url = web.as_ref().map(crate::web::WebServer::url);
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
        ("web", web.as_ref().map(crate::web::WebServer::local_addr)),
        ("ws_listen", ws_listen),
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
        dialer,
        acceptors: acceptor
            .map(|a| Box::new(a) as Box<dyn crate::endpoint::Acceptor>)
            .into_iter()
            .chain(ws_acceptor.map(|a| {
                Box::new(WsAcceptor::new(Box::new(a), ws_max)) as Box<dyn crate::endpoint::Acceptor>
            }))
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

    // The DHT starts when first needed; a server, or a node that publishes, starts now (on
    // its own task: nothing here waits for it).
    node.dht
        .spawn(node.endpoint.clone(), &tracker, cancel.clone());
    if config.port_mapping {
        // Its own task: `ready` does not wait for the router.
        node.portmap.spawn(
            node.endpoint.clone(),
            crate::reach::PortMapSettings::default(),
            &tracker,
            cancel.clone(),
        );
    }
    if config.mdns {
        // Its own thread; it never delays `ready` (nor anything else).
        node.nearby
            .spawn(node.endpoint.clone(), &tracker, cancel.clone());
    }

    let agent = identity.agent_id().to_string();
    let node_id = identity.node_id().to_string();
    tracing::info!(%agent, %node_id, data_dir = %data_dir.root().display(), "node ready");
    on_ready(&Ready {
        control: socket.clone(),
        listen,
        peer_listen,
        chat_listen,
        web: web_url.clone(),
        ws_listen,
        agent: agent.clone(),
        node_id: node_id.clone(),
    });

    let web_counters = Arc::new(crate::web::WebCounters::default());
    let services = node.services(Arc::new(NodeStatus {
        agent,
        node_id,
        data_dir: data_dir.root().display().to_string(),
        db: config.db_kind(),
        started: Instant::now(),
        listeners,
        listens: config.listen.is_some() || config.ws_listen.is_some(),
        web_url,
        web_counters: Arc::clone(&web_counters),
        max_control_body: limits.max_control_body,
        clock,
        node: node.clone(),
    }));
    if let Some(web) = web {
        tracker.spawn(web.serve(services.clone(), web_counters, cancel.clone()));
    }
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
