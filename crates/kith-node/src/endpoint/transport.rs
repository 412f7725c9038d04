//! Transports: how bytes get between two nodes before Noise secures them.
//!
//! A link runs over any ordered, reliable byte stream. The endpoint takes transports as
//! values: a [`Dialer`] to reach a peer's recorded address and [`Acceptor`]s that yield
//! incoming connections. TCP and WebSocket ([`super::ws`], wrapping another transport) are
//! the ones this node has today; hole-punched sockets and circuits relayed through a mutual
//! peer plug in here as further values, without a code path of their own in the endpoint.

use super::directory::BoxFuture;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

/// An ordered, reliable byte stream in both directions.
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> ByteStream for T {}

/// How a connection reached us (shown by `kith peers` as the link's `via`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// A direct connection.
    Direct,
    /// A connection opened by hole punching through a mutual peer.
    Punched,
    /// Bytes relayed through a mutual peer.
    Relayed,
    /// A direct connection carried in WebSocket binary messages (`--ws-listen`, `ws://`).
    #[serde(rename = "websocket")]
    WebSocket,
}

/// One connection, before its handshake.
pub struct Conn {
    /// The stream.
    pub stream: Box<dyn ByteStream>,
    /// The other end's socket address (as this transport sees it).
    pub remote: SocketAddr,
    /// How it was made.
    pub via: Via,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("remote", &self.remote)
            .field("via", &self.via)
            .finish_non_exhaustive()
    }
}

/// Opens connections to a host and port.
pub trait Dialer: Send + Sync + 'static {
    /// Connects to `host:port` within `timeout`.
    fn dial<'a>(
        &'a self,
        host: &'a str,
        port: u16,
        timeout: Duration,
    ) -> BoxFuture<'a, std::io::Result<Conn>>;
}

/// Yields incoming connections.
pub trait Acceptor: Send + Sync + 'static {
    /// The next connection (errors are transient: the caller waits a little and asks again).
    fn accept(&self) -> BoxFuture<'_, std::io::Result<Conn>>;
    /// Where it listens, for status and tickets.
    fn local_addr(&self) -> Option<SocketAddr>;
    /// Whether a plain dial of [`local_addr`](Self::local_addr) (a `HOST:PORT` in a ticket)
    /// reaches it. A WebSocket listener is named by its `ws://` URL instead, and listing its
    /// address as a plain one would send peers' TCP dials into an HTTP upgrade.
    fn plain(&self) -> bool {
        true
    }
}

/// Plain TCP, with Nagle off (links send small envelopes that must not wait).
#[derive(Debug, Default, Clone, Copy)]
pub struct Tcp;

impl Dialer for Tcp {
    fn dial<'a>(
        &'a self,
        host: &'a str,
        port: u16,
        timeout: Duration,
    ) -> BoxFuture<'a, std::io::Result<Conn>> {
        Box::pin(async move {
            let stream = tokio::time::timeout(timeout, TcpStream::connect((host, port)))
                .await
                .map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer within {timeout:?}"),
                    )
                })??;
            let _ = stream.set_nodelay(true);
            let remote = stream.peer_addr()?;
            Ok(Conn {
                stream: Box::new(stream),
                remote,
                via: Via::Direct,
            })
        })
    }
}

/// A TCP listener as an [`Acceptor`].
#[derive(Debug)]
pub struct TcpAcceptor {
    listener: TcpListener,
}

impl TcpAcceptor {
    /// Binds `addr`.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpAcceptor> {
        Ok(TcpAcceptor {
            listener: TcpListener::bind(addr).await?,
        })
    }

    /// An acceptor over a listener bound elsewhere (with port reuse: [`super::reuse`]).
    pub fn from_listener(listener: TcpListener) -> TcpAcceptor {
        TcpAcceptor { listener }
    }
}

impl Acceptor for TcpAcceptor {
    fn accept(&self) -> BoxFuture<'_, std::io::Result<Conn>> {
        Box::pin(async move {
            let (stream, remote) = self.listener.accept().await?;
            let _ = stream.set_nodelay(true);
            Ok(Conn {
                stream: Box::new(stream),
                remote,
                via: Via::Direct,
            })
        })
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }
}

/// An in-memory network for tests: listeners are registered by address, and a dial connects
/// a `tokio::io::duplex` pair to the listener there. Addresses are made up (`10.0.0.N`), so
/// many nodes in one process each have their own.
#[derive(Debug, Clone, Default)]
pub struct MemoryNet {
    listeners: std::sync::Arc<
        std::sync::Mutex<std::collections::HashMap<SocketAddr, tokio::sync::mpsc::Sender<Conn>>>,
    >,
    next_host: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

/// A listener on a [`MemoryNet`].
#[derive(Debug)]
pub struct MemoryAcceptor {
    addr: SocketAddr,
    incoming: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Conn>>,
}

/// Dials on a [`MemoryNet`] from one address.
#[derive(Debug, Clone)]
pub struct MemoryDialer {
    net: MemoryNet,
    from: std::net::IpAddr,
    port: Option<u16>,
}

/// Bytes buffered in each direction of an in-memory connection.
const MEMORY_PIPE: usize = 256 * 1024;

impl MemoryNet {
    /// A new, empty network.
    pub fn new() -> MemoryNet {
        MemoryNet::default()
    }

    /// A fresh host address on this network.
    pub fn host(&self) -> std::net::IpAddr {
        let n = self
            .next_host
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        std::net::IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n))
    }

    /// Listens at `addr`.
    pub fn listen(&self, addr: SocketAddr) -> MemoryAcceptor {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(addr, tx);
        MemoryAcceptor {
            addr,
            incoming: tokio::sync::Mutex::new(rx),
        }
    }

    /// Stops listening at `addr` (a dial there then fails, as to a stopped node).
    pub fn unlisten(&self, addr: SocketAddr) {
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&addr);
    }

    /// A dialer whose connections come from `from`.
    pub fn dialer(&self, from: std::net::IpAddr) -> MemoryDialer {
        MemoryDialer {
            net: self.clone(),
            from,
            port: None,
        }
    }
}

impl MemoryDialer {
    /// Connections from `port` (as a node whose outgoing links leave from its listening port)
    /// instead of a random one.
    pub fn from_port(mut self, port: u16) -> MemoryDialer {
        self.port = Some(port);
        self
    }

    /// The host its connections come from.
    pub fn host(&self) -> std::net::IpAddr {
        self.from
    }
}

impl Dialer for MemoryDialer {
    fn dial<'a>(
        &'a self,
        host: &'a str,
        port: u16,
        _timeout: Duration,
    ) -> BoxFuture<'a, std::io::Result<Conn>> {
        Box::pin(async move {
            let refused = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
            let ip: std::net::IpAddr = host.parse().map_err(|_| refused())?;
            let to = SocketAddr::new(ip, port);
            let listener = self
                .net
                .listeners
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&to)
                .cloned()
                .ok_or_else(refused)?;
            let (ours, theirs) = tokio::io::duplex(MEMORY_PIPE);
            let port = self
                .port
                .unwrap_or_else(|| 40_000 + (rand::random::<u16>() % 20_000));
            let from = SocketAddr::new(self.from, port);
            listener
                .send(Conn {
                    stream: Box::new(theirs),
                    remote: from,
                    via: Via::Direct,
                })
                .await
                .map_err(|_| refused())?;
            Ok(Conn {
                stream: Box::new(ours),
                remote: to,
                via: Via::Direct,
            })
        })
    }
}

impl Acceptor for MemoryAcceptor {
    fn accept(&self) -> BoxFuture<'_, std::io::Result<Conn>> {
        Box::pin(async move {
            match self.incoming.lock().await.recv().await {
                Some(conn) => Ok(conn),
                None => std::future::pending().await,
            }
        })
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        Some(self.addr)
    }
}
