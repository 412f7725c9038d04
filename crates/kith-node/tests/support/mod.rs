//! In-process nodes for kith-node's own tests: whole nodes (endpoint and every service) on an
//! in-memory network, each with its own data dir, and a scripted raw peer that speaks the
//! link protocol by hand so a test can send what no well-behaved node would.
#![allow(dead_code)]

pub mod nat;

use bytes::BytesMut;
use kith_crypto::identity::{AgentId, Identity};
use kith_node::clock::{Clock, ManualClock};
use kith_node::endpoint::{Dialer, MemoryNet};
use kith_node::node::{Node, NodeSetup};
use kith_node::store::Store;
use kith_node::ticket::Ticket;
use kith_node::{NodeConfig, Overrides};
use kith_proto::secure::{Event, Frame, FrameDecoder, Initiator, Link, SecureConfig};
use kith_proto::wire::{Envelope, EnvelopeDecoder};
use kith_proto::Limits;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One node in this process.
pub struct TestNode {
    pub node: Node,
    pub agent: AgentId,
    pub identity: Identity,
    pub addr: SocketAddr,
    pub clock: Arc<ManualClock>,
    pub limits: Limits,
    pub node_limits: kith_node::limits::NodeLimits,
    pub net: MemoryNet,
    pub dir: tempfile::TempDir,
}

impl TestNode {
    /// A node on `net` with default limits changed by `tweak`.
    pub async fn start(net: &MemoryNet, tweak: impl FnOnce(&mut Limits)) -> TestNode {
        TestNode::start_with_dialer(net, tweak, |dialer| Arc::new(dialer)).await
    }

    /// [`TestNode::start`] with the node's dialer wrapped by `wrap` (to tap or delay it).
    pub async fn start_with_dialer(
        net: &MemoryNet,
        tweak: impl FnOnce(&mut Limits),
        wrap: impl FnOnce(kith_node::endpoint::MemoryDialer) -> Arc<dyn Dialer>,
    ) -> TestNode {
        TestNode::start_configured(net, |config| tweak(&mut config.limits), wrap).await
    }

    /// [`TestNode::start_with_dialer`] with any setting changed by `configure`.
    pub async fn start_configured(
        net: &MemoryNet,
        configure: impl FnOnce(&mut NodeConfig),
        wrap: impl FnOnce(kith_node::endpoint::MemoryDialer) -> Arc<dyn Dialer>,
    ) -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let mut config = NodeConfig::load(&Overrides {
            data_dir: Some(dir.path().join("data")),
            ..Overrides::default()
        })
        .unwrap();
        configure(&mut config);
        let identity = config
            .data_dir
            .load_or_create_identity(&mut rand::rngs::OsRng)
            .unwrap()
            .identity;
        let host = net.host();
        let addr = SocketAddr::new(host, 7420);
        config.announce = Some((host.to_string(), addr.port()));
        let store = Store::new(config.open_file_store().unwrap());
        let clock = ManualClock::new();
        let node = Node::start(NodeSetup {
            config: config.clone(),
            identity: identity.clone(),
            store,
            clock: clock.clone(),
            dialer: wrap(net.dialer(host)),
            acceptors: vec![Box::new(net.listen(addr))],
            tls: None,
        });
        TestNode {
            node,
            agent: identity.agent_id(),
            identity,
            addr,
            clock,
            limits: config.limits,
            node_limits: config.node_limits,
            net: net.clone(),
            dir,
        }
    }

    /// A one-time ticket for this node, recorded in its database.
    pub async fn ticket(&self) -> Ticket {
        let (ticket, record) = kith_node::ticket::issue(
            self.node.endpoint.own_chad(),
            self.clock.system_now(),
            Duration::from_secs(600),
            false,
            &mut rand::rngs::OsRng,
        );
        self.node
            .store
            .run(move |s| s.meta().insert_ticket(&record))
            .await
            .unwrap();
        ticket
    }

    /// Links this node to `other` with one of `other`'s tickets (this node dials), and waits
    /// until both ends count the link.
    pub async fn link_to(&self, other: &TestNode) {
        let ticket = other.ticket().await;
        self.node.endpoint.connect_ticket(ticket).await.unwrap();
        let (me, them) = (self.agent, other.agent);
        eventually("both ends count the link", || {
            self.node.endpoint.is_linked(&them) && other.node.endpoint.is_linked(&me)
        })
        .await;
    }

    /// A node whose links it dials carry `bytes_per_sec` at most ([`SlowDialer`]).
    pub async fn start_slow(net: &MemoryNet, bytes_per_sec: u64) -> TestNode {
        TestNode::start_with_dialer(
            net,
            |_| {},
            |inner| {
                Arc::new(SlowDialer {
                    inner,
                    bytes_per_sec,
                })
            },
        )
        .await
    }

    /// A node whose links it dials hold every byte `one_way` each way ([`LaggyDialer`]).
    pub async fn start_laggy(net: &MemoryNet, one_way: Duration) -> TestNode {
        TestNode::start_with_dialer(
            net,
            |_| {},
            |inner| {
                Arc::new(LaggyDialer {
                    inner,
                    one_way,
                    bytes_per_sec: None,
                })
            },
        )
        .await
    }

    /// `kith file put` of `bytes` (under `name`) on this node: its address.
    pub async fn put_bytes(&self, bytes: Vec<u8>, name: Option<&str>) -> kith_store::ContentHash {
        let name = name.map(str::to_owned);
        self.node
            .store
            .run(move |s| s.put_reader(&mut &bytes[..], name.as_deref()))
            .await
            .unwrap()
            .hash
    }

    /// `kith file put DIR --name NAME` on this node: the folder's record.
    pub async fn put_folder(&self, dir: &std::path::Path, name: &str) -> kith_store::FileRecord {
        let (dir, name) = (dir.to_owned(), name.to_owned());
        self.node
            .store
            .run(move |s| {
                let limits = kith_store::folder::ManifestLimits::default();
                let scan = kith_store::folder::FolderScan::of(&dir, &limits)?;
                s.put_folder(&scan, Some(&name), &mut |_| {})
            })
            .await
            .unwrap()
            .record
    }

    /// A counter of this node.
    pub fn counter(&self, name: &str) -> u64 {
        *self
            .node
            .counters()
            .get(name)
            .unwrap_or_else(|| panic!("no counter named {name}"))
    }

    /// Stops the node.
    pub async fn stop(&self) {
        self.net.unlisten(self.addr);
        self.node.shutdown().await;
    }
}

/// A node on this machine's real TCP (address and port reuse, as `kith up`), not on the
/// in-memory network.
pub struct TcpNode {
    pub node: Node,
    pub clock: Arc<ManualClock>,
    pub listen: SocketAddr,
    pub dir: tempfile::TempDir,
}

/// Starts a [`TcpNode`] listening on `listen`, its dialer wrapped by `wrap`.
pub async fn start_tcp(
    listen: &str,
    wrap: impl FnOnce(kith_node::endpoint::reuse::ReuseTcp) -> Arc<dyn Dialer>,
) -> TcpNode {
    let dir = tempfile::tempdir().unwrap();
    let config = NodeConfig::load(&Overrides {
        data_dir: Some(dir.path().join("data")),
        ..Overrides::default()
    })
    .unwrap();
    let identity = config
        .data_dir
        .load_or_create_identity(&mut rand::rngs::OsRng)
        .unwrap()
        .identity;
    let (acceptor, dialer) = kith_node::endpoint::reuse::bind(listen.parse().unwrap()).unwrap();
    let listen = dialer.local_addr();
    let clock = ManualClock::new();
    let node = Node::start(NodeSetup {
        config: config.clone(),
        identity,
        store: Store::new(config.open_file_store().unwrap()),
        clock: clock.clone(),
        dialer: wrap(dialer),
        acceptors: vec![Box::new(acceptor)],
        tls: None,
    });
    TcpNode {
        node,
        clock,
        listen,
        dir,
    }
}

/// Waits (on tokio's clock, which a paused test advances by itself) until `check` holds, for
/// at most two minutes of that clock.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..12_000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

/// A peer that speaks the link protocol by hand: a real handshake, then whatever envelopes
/// the test wants to send, sealed into `T` frames one by one, checked by nobody.
pub struct RawPeer {
    pub identity: Identity,
    pub stream: Box<dyn kith_node::endpoint::transport::ByteStream>,
    pub link: Link,
    frames: FrameDecoder,
    envelopes: EnvelopeDecoder,
    inbuf: BytesMut,
    plain: BytesMut,
}

impl RawPeer {
    /// A new identity that becomes `victim`'s peer through a ticket, then dials it (N + KK)
    /// from `from` on the victim's network.
    pub async fn known_to(victim: &TestNode, from: std::net::IpAddr) -> RawPeer {
        let identity = Identity::generate(&mut rand::rngs::OsRng);
        let limits = victim.limits.clone();
        let secure = SecureConfig::new(&identity, &limits);
        // First contact with a ticket makes us a known peer of the victim.
        let ticket = victim.ticket().await;
        let request = kith_proto::secure::TicketRequest::new(
            victim.node.endpoint.own_chad(),
            kith_proto::secure::Chad {
                cuid: None,
                agent: identity.agent_id().to_string(),
                host: Some(from.to_string()),
                port: Some(9),
            },
            ticket.token.clone(),
        );
        let machine = Initiator::ik(
            &secure,
            victim.agent,
            &request,
            Instant::now(),
            &mut rand::rngs::OsRng,
        )
        .unwrap();
        let peer = RawPeer::handshake(victim, from, identity.clone(), machine).await;
        drop(peer);
        // The victim records a ticket's holder just after the handshake: wait for it.
        let name = identity.agent_id().to_string();
        for _ in 0..1_000 {
            let name = name.clone();
            let known = victim
                .node
                .store
                .run(move |s| s.meta().get_peer(&name))
                .await
                .unwrap();
            if known.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let machine = Initiator::known(
            &secure,
            victim.agent,
            b"",
            Instant::now(),
            &mut rand::rngs::OsRng,
        )
        .unwrap();
        RawPeer::handshake(victim, from, identity, machine).await
    }

    async fn handshake(
        victim: &TestNode,
        from: std::net::IpAddr,
        identity: Identity,
        mut machine: Initiator,
    ) -> RawPeer {
        let dialer = victim.net.dialer(from);
        let conn = dialer
            .dial(
                &victim.addr.ip().to_string(),
                victim.addr.port(),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        let mut stream = conn.stream;
        let frames = FrameDecoder::new(&victim.limits);
        let mut inbuf = BytesMut::new();
        loop {
            let mut out = BytesMut::new();
            while let Some(frame) = machine.poll_transmit() {
                frame.encode(&mut out).unwrap();
            }
            stream.write_all(&out).await.unwrap();
            if let Some(Event::Established(link)) = machine.poll_event() {
                return RawPeer {
                    identity,
                    stream,
                    link,
                    frames,
                    envelopes: EnvelopeDecoder::new(victim.limits.max_envelope_data),
                    inbuf,
                    plain: BytesMut::new(),
                };
            }
            if let Some(frame) = frames.decode(&mut inbuf).unwrap() {
                machine.handle_frame(Instant::now(), frame).unwrap();
                continue;
            }
            let n = stream.read_buf(&mut inbuf).await.unwrap();
            if n == 0 {
                let counters = victim.node.counters();
                let set: Vec<_> = counters.iter().filter(|(_, v)| **v > 0).collect();
                panic!("the victim closed the handshake; its counters: {set:?}");
            }
        }
    }

    /// Sends one envelope.
    pub async fn send(&mut self, envelope: &Envelope) {
        let mut out = BytesMut::new();
        self.link
            .seal_into(&envelope.to_bytes().unwrap(), &mut out)
            .unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    /// Sends many envelopes in one write (for floods).
    pub async fn send_many(&mut self, envelopes: impl IntoIterator<Item = Envelope>) {
        let mut plain = Vec::new();
        for envelope in envelopes {
            plain.extend_from_slice(&envelope.to_bytes().unwrap());
        }
        let mut out = BytesMut::new();
        self.link.seal_into(&plain, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    /// The next envelope from the victim, `None` once it closed.
    pub async fn recv(&mut self) -> Option<Envelope> {
        loop {
            if let Some(env) = self.envelopes.decode(&mut self.plain).unwrap() {
                return Some(env);
            }
            if let Some(frame) = self.frames.decode(&mut self.inbuf).unwrap() {
                let plain = self.link.open(Instant::now(), &frame).ok()?;
                self.plain.extend_from_slice(&plain);
                continue;
            }
            let n = self.stream.read_buf(&mut self.inbuf).await.ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    /// This peer's agent id.
    pub fn agent(&self) -> AgentId {
        self.identity.agent_id()
    }
}

/// A frame as it goes on the wire, for taps.
pub fn encode(frame: &Frame) -> Vec<u8> {
    let mut out = BytesMut::new();
    frame.encode(&mut out).unwrap();
    out.to_vec()
}

/// A dialer whose connections deliver what the other side sends at most `bytes_per_sec`
/// (on tokio's clock, so a paused test runs a slow link in no time and always the same way).
pub struct SlowDialer {
    pub inner: kith_node::endpoint::MemoryDialer,
    pub bytes_per_sec: u64,
}

impl Dialer for SlowDialer {
    fn dial<'a>(
        &'a self,
        host: &'a str,
        port: u16,
        timeout: Duration,
    ) -> kith_node::endpoint::directory::BoxFuture<'a, std::io::Result<kith_node::endpoint::Conn>>
    {
        Box::pin(async move {
            let conn = self.inner.dial(host, port, timeout).await?;
            Ok(kith_node::endpoint::Conn {
                stream: Box::new(Slow {
                    inner: conn.stream,
                    bytes_per_sec: self.bytes_per_sec,
                    wait: None,
                }),
                ..conn
            })
        })
    }
}

struct Slow {
    inner: Box<dyn kith_node::endpoint::transport::ByteStream>,
    bytes_per_sec: u64,
    wait: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl tokio::io::AsyncRead for Slow {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        if let Some(wait) = self.wait.as_mut() {
            if wait.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.wait = None;
        }
        // At most a tenth of a second's worth at a time.
        let chunk = ((self.bytes_per_sec / 10).max(1) as usize).min(buf.remaining());
        let mut limited = tokio::io::ReadBuf::new(buf.initialize_unfilled_to(chunk));
        let result = std::pin::Pin::new(&mut self.inner).poll_read(cx, &mut limited);
        let n = limited.filled().len();
        if let Poll::Ready(Ok(())) = &result {
            buf.advance(n);
            if n > 0 {
                let pause = Duration::from_secs_f64(n as f64 / self.bytes_per_sec as f64);
                self.wait = Some(Box::pin(tokio::time::sleep(pause)));
            }
        }
        result
    }
}

impl tokio::io::AsyncWrite for Slow {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A dialer whose connections hold every byte `one_way` in each direction and, with a rate,
/// deliver at most `bytes_per_sec` each way (on tokio's clock: a paused test runs a long path
/// in no time and always the same way).
pub struct LaggyDialer {
    pub inner: kith_node::endpoint::MemoryDialer,
    pub one_way: Duration,
    pub bytes_per_sec: Option<u64>,
}

impl Dialer for LaggyDialer {
    fn dial<'a>(
        &'a self,
        host: &'a str,
        port: u16,
        timeout: Duration,
    ) -> kith_node::endpoint::directory::BoxFuture<'a, std::io::Result<kith_node::endpoint::Conn>>
    {
        Box::pin(async move {
            let conn = self.inner.dial(host, port, timeout).await?;
            let (near, far) = tokio::io::duplex(1 << 20);
            let (inner_read, inner_write) = tokio::io::split(conn.stream);
            let (far_read, far_write) = tokio::io::split(far);
            tokio::spawn(lag(inner_read, far_write, self.one_way, self.bytes_per_sec));
            tokio::spawn(lag(far_read, inner_write, self.one_way, self.bytes_per_sec));
            Ok(kith_node::endpoint::Conn {
                stream: Box::new(near),
                ..conn
            })
        })
    }
}

/// Copies `from` to `to`, each chunk delivered `one_way` after it was read (and no faster
/// than the rate), in order.
async fn lag(
    mut from: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    mut to: impl tokio::io::AsyncWrite + Unpin + Send + 'static,
    one_way: Duration,
    bytes_per_sec: Option<u64>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx
                        .send((tokio::time::Instant::now(), buf[..n].to_vec()))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    let mut departed = tokio::time::Instant::now();
    while let Some((read_at, chunk)) = rx.recv().await {
        let wire = bytes_per_sec.map_or(Duration::ZERO, |r| {
            Duration::from_secs_f64(chunk.len() as f64 / r as f64)
        });
        departed = departed.max(read_at) + wire;
        tokio::time::sleep_until(departed + one_way).await;
        if to.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = to.shutdown().await;
}
