//! A captured handshake replayed to the node (issue 10, item 6): before the fix, replaying
//! the 151 bytes of an N + K made the node answer, register a fake link for the peer from the
//! attacker's address, retire the real link and record the attacker's address as the peer's.

mod support;

use kith_node::endpoint::directory::BoxFuture;
use kith_node::endpoint::transport::ByteStream;
use kith_node::endpoint::{Conn, Dialer, MemoryDialer, MemoryNet};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use support::{eventually, TestNode};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// What each connection a node dialled sent, in order.
type Taps = Arc<Mutex<Vec<Arc<Mutex<Vec<u8>>>>>>;

/// A dialer that keeps a copy of everything written on each connection it opens.
struct TapDialer {
    inner: MemoryDialer,
    taps: Taps,
}

struct Tap {
    inner: Box<dyn ByteStream>,
    written: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Tap {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tap {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &result {
            self.written.lock().unwrap().extend_from_slice(&buf[..*n]);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Dialer for TapDialer {
    fn dial<'a>(
        &'a self,
        host: &'a str,
        port: u16,
        timeout: Duration,
    ) -> BoxFuture<'a, std::io::Result<Conn>> {
        Box::pin(async move {
            let conn = self.inner.dial(host, port, timeout).await?;
            let written = Arc::new(Mutex::new(Vec::new()));
            self.taps.lock().unwrap().push(Arc::clone(&written));
            Ok(Conn {
                stream: Box::new(Tap {
                    inner: conn.stream,
                    written,
                }),
                ..conn
            })
        })
    }
}

/// The first `n` frames of a captured stream (length-prefixed), as sent.
fn first_frames(bytes: &[u8], n: usize) -> Vec<u8> {
    let mut at = 0;
    for _ in 0..n {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 4 + len;
    }
    bytes[..at].to_vec()
}

/// B links to A, then re-links with N + KK through a tap; returns the captured N + K.
async fn capture_known_handshake(
    net: &MemoryNet,
    replay_entries: usize,
) -> (TestNode, TestNode, Vec<u8>) {
    let tweak = move |l: &mut kith_proto::Limits| l.handshake_replay_entries = replay_entries;
    let a = TestNode::start(net, tweak).await;
    let taps: Taps = Arc::default();
    let tap_list = Arc::clone(&taps);
    let b = TestNode::start_with_dialer(net, tweak, move |inner| {
        Arc::new(TapDialer {
            inner,
            taps: tap_list,
        })
    })
    .await;
    b.link_to(&a).await;
    // An orderly close, then a dial as a known peer: N, K, then transport frames.
    b.node.endpoint.close(&a.agent);
    eventually("the first link is gone", || {
        !a.node.endpoint.is_linked(&b.agent) && !b.node.endpoint.is_linked(&a.agent)
    })
    .await;
    b.node.endpoint.ensure_link(a.agent).await.unwrap();
    eventually("A counts the new link", || {
        a.node.endpoint.is_linked(&b.agent)
    })
    .await;
    let captured = taps.lock().unwrap()[1].lock().unwrap().clone();
    let handshake = first_frames(&captured, 2);
    assert_eq!(handshake[4], b'N');
    assert_eq!(
        handshake[4 + 4 + u32::from_be_bytes(handshake[..4].try_into().unwrap()) as usize],
        b'K'
    );
    (a, b, handshake)
}

async fn replay(net: &MemoryNet, victim: &TestNode, bytes: &[u8]) -> Box<dyn ByteStream> {
    let attacker = net.dialer(net.host());
    let conn = attacker
        .dial(
            &victim.addr.ip().to_string(),
            victim.addr.port(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let mut stream = conn.stream;
    stream.write_all(bytes).await.unwrap();
    stream
}

#[tokio::test(start_paused = true)]
async fn a_replayed_known_peer_handshake_is_dropped_before_the_node_answers() {
    let net = MemoryNet::new();
    let (a, b, handshake) = capture_known_handshake(&net, 100_000).await;
    assert_eq!(handshake.len(), 151, "the replay of the report");
    let real = a.node.endpoint.link_view(&b.agent).unwrap();
    let mut attacker = replay(&net, &a, &handshake).await;
    eventually("the replay is refused", || {
        a.counter("refused_replayed_handshake") == 1
    })
    .await;
    // Nothing was answered: the attacker's connection was closed without a byte.
    let mut answer = Vec::new();
    let read = tokio::io::AsyncReadExt::read_to_end(&mut attacker, &mut answer).await;
    assert!(read.is_ok() && answer.is_empty(), "{answer:?}");
    // The real link is the same one, and still carries traffic.
    let now = a.node.endpoint.link_view(&b.agent).unwrap();
    assert_eq!((&now.remote, now.side), (&real.remote, real.side));
    a.node.endpoint.ping(b.agent).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn without_the_replay_cache_a_replayed_handshake_never_counts() {
    let net = MemoryNet::new();
    let (a, b, handshake) = capture_known_handshake(&net, 0).await;
    let real = a.node.endpoint.link_view(&b.agent).unwrap();
    let established = a.counter("links_established");
    let _attacker = replay(&net, &a, &handshake).await;
    // The node answers (it cannot tell yet), but the link never confirms: the attacker has
    // no key to produce an authenticated frame. It is dropped at the handshake deadline.
    eventually("the replayed link is dropped unconfirmed", || {
        a.counter("links_unconfirmed") == 1
    })
    .await;
    assert_eq!(a.counter("links_established"), established);
    let now = a.node.endpoint.link_view(&b.agent).unwrap();
    assert_eq!((&now.remote, now.side), (&real.remote, real.side));
    // The peer's recorded address is still its own.
    let name = b.agent.to_string();
    let record = a
        .node
        .store
        .run(move |s| s.meta().get_peer(&name))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.last_addr.as_deref(), Some(real.remote.as_str()));
    a.node.endpoint.ping(b.agent).await.unwrap();
}
