//! `kith up`: the node process.
//!
//! Start-up order matters: the identity and the store are opened first (so a broken data dir
//! fails before anything listens), then every listener is bound, and only then is the caller
//! told the node is ready. Shutdown is the reverse: on Ctrl-C or SIGTERM the listeners stop
//! accepting, in-flight requests finish, and the control socket is removed.

use crate::config::NodeConfig;
use crate::control::{server, StatusReport};
use kith_store::files::FileStore;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::net::UnixListener;

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
    #[error("cannot listen on {what} {addr}: {source}")]
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

/// Counters of events and refusals, shown by `kith status --json`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Control API requests served.
    pub control_requests: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> BTreeMap<String, u64> {
        BTreeMap::from([(
            "control_requests".to_owned(),
            self.control_requests.load(Ordering::Relaxed),
        )])
    }
}

/// State shared by every task of a running node.
pub struct NodeState {
    /// The resolved settings.
    pub config: NodeConfig,
    /// Event and refusal counters.
    pub counters: Counters,
    started: Instant,
    agent: String,
    node_id: String,
    listeners: BTreeMap<String, String>,
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

    /// The status report, given the current number of stored files.
    pub fn status(&self, files: u64) -> StatusReport {
        StatusReport {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            data_dir: self.config.data_dir.root().display().to_string(),
            agent: self.agent.clone(),
            node_id: self.node_id.clone(),
            uptime_secs: self.started.elapsed().as_secs(),
            db: self.config.db_kind().to_owned(),
            files,
            listeners: self.listeners.clone(),
            counters: self.counters.snapshot(),
        }
    }
}

/// What the caller of [`run`] learns once every listener accepts connections.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The control socket.
    pub control: PathBuf,
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
    let data_dir = config.data_dir.clone();
    let identity = data_dir
        .load_or_create_identity(&mut rand::rngs::OsRng)
        .map_err(|e| NodeError::Open(e.to_string()))?
        .identity;
    let agent = identity.agent_id().to_string();
    let node_id = identity.node_id().to_string();
    drop(identity);
    let store_config = config.clone();
    let store = tokio::task::spawn_blocking(move || store_config.open_file_store())
        .await
        .map_err(|e| NodeError::Open(e.to_string()))?
        .map_err(|e| NodeError::Open(e.to_string()))?;

    let socket = data_dir.control_socket();
    let listener = bind_control_socket(&socket, &data_dir.root().display().to_string())?;
    let listeners = BTreeMap::from([("control".to_owned(), socket.display().to_string())]);
    let state = Arc::new(NodeState {
        config,
        counters: Counters::default(),
        started: Instant::now(),
        agent: agent.clone(),
        node_id: node_id.clone(),
        listeners,
        store: Arc::new(Mutex::new(store)),
    });
    tracing::info!(%agent, %node_id, data_dir = %data_dir.root().display(), "node ready");
    on_ready(&Ready {
        control: socket.clone(),
        agent,
        node_id,
    });

    let result = axum::serve(listener, server::router(state))
        .with_graceful_shutdown(shutdown)
        .await;
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
