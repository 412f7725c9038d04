//! Strangers on the CIYAM peer port (issue 10, item 7), attacked over a real socket against a
//! `kith up` node with default settings:
//! - a stranger `put`s 60 MB of distinct 1 MB items: the node keeps at most the anonymous
//!   quota (4 MiB by default), and none of it is a file of the user's (`kith file ls`);
//! - a stranger cannot `get` a file the user only put, nor learn that it is here; it can get a
//!   shared one, item by item;
//! - one address cannot hold every session: past `max_peer_sessions_per_addr` its new
//!   connections are closed, while another address still gets in;
//! - what a stranger put it gets back in the same session only; `peer_port_open_store = true`
//!   serves it anything, and its puts still make no file.
//!
//! The stranger is kith-proto's session machine as an initiator on a blocking socket, the way
//! any CIYAM client talks. Figures go to stderr (`--nocapture`).

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kith_proto::files::{
    CloseReason, Command, ContentHash, Event, Role, Session, SessionConfig, Target, TextPort,
    HELLO_ITEM,
};
use kith_proto::Limits;
use support::Node;

/// A CIYAM client with a store of its own (a map), answering the node's commands as any
/// client does.
struct Stranger {
    port: TextPort,
    sock: TcpStream,
    items: HashMap<ContentHash, Bytes>,
    /// The node's commands and replies, as lines.
    heard: Vec<String>,
    closed: Option<CloseReason>,
}

/// Connects from `from` (any loopback address works on Linux) to `to`.
fn connect_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from, 0)).unwrap();
        socket.connect(to).await.unwrap()
    });
    let stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

impl Stranger {
    fn new(sock: TcpStream) -> Stranger {
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let limits = Limits::default();
        let session = Session::new(
            Role::Initiator,
            SessionConfig::interactive(&limits),
            Instant::now(),
        );
        let mut items = HashMap::new();
        items.insert(ContentHash::hello(), Bytes::from_static(HELLO_ITEM));
        Stranger {
            port: TextPort::new(session, &limits),
            sock,
            items,
            heard: Vec::new(),
            closed: None,
        }
    }

    /// Connects from `from` and opens the session (`chk hello`, the hello exchange).
    fn open(from: IpAddr, to: SocketAddr) -> Stranger {
        let mut s = Stranger::new(connect_from(from, to));
        s.run();
        s.send(Command::Chk {
            target: Target::Tag("hello".into()),
            nonce: None,
        });
        assert!(s.closed.is_none(), "opening refused: {:?}", s.closed);
        s
    }

    /// Sends `cmd` and runs until it is our turn again or the session ends.
    fn send(&mut self, cmd: Command) {
        self.port
            .session_mut()
            .send_command(Instant::now(), cmd)
            .unwrap();
        self.port.process(Instant::now());
        self.run();
    }

    /// Answers the node until it is our turn or the session is over.
    fn run(&mut self) {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            while let Some(bytes) = self.port.poll_transmit() {
                if self.sock.write_all(&bytes).is_err() {
                    self.closed = Some(CloseReason::Local("write failed".into()));
                    return;
                }
            }
            if let Some(event) = self.port.poll_event() {
                let now = Instant::now();
                let s = self.port.session_mut();
                match event {
                    Event::Ready => return,
                    Event::ResolveTag { .. } => s.answer_tag(now, None).unwrap(),
                    Event::HaveItem { hash } => {
                        s.answer_have(now, self.items.contains_key(&hash)).unwrap()
                    }
                    Event::ReadItem { hash } => {
                        s.supply_item(now, self.items.get(&hash).cloned()).unwrap()
                    }
                    Event::StoreItem { hash, item } => {
                        self.items.insert(hash, item);
                        s.stored(now, true).unwrap();
                    }
                    Event::PipAddress => s.answer_pip(now, "127.0.0.1").unwrap(),
                    Event::PeerCommand(cmd) => self.heard.push(cmd.to_string()),
                    Event::Reply { reply, .. } => self.heard.push(reply.to_string()),
                    Event::Closed(reason) => {
                        while let Some(bytes) = self.port.poll_transmit() {
                            let _ = self.sock.write_all(&bytes);
                        }
                        self.closed = Some(reason);
                        return;
                    }
                    _ => {}
                }
                self.port.process(now);
                continue;
            }
            match self.sock.read(&mut buf) {
                Ok(0) | Err(_) => {
                    self.closed = Some(CloseReason::Local("connection ended".into()));
                    return;
                }
                Ok(n) => self.port.handle_bytes(Instant::now(), &buf[..n]),
            }
        }
    }

    /// `put` of an item we hold, then `get` of the hello file (the alternation the port
    /// enforces): one more item handed to the node.
    fn put_then_get_hello(&mut self, item: Bytes) {
        let hash = ContentHash::of(&item);
        self.items.insert(hash, item);
        self.send(Command::Put { hash });
        if self.closed.is_none() {
            self.send(Command::Get {
                hash: ContentHash::hello(),
            });
        }
    }

    fn bye(mut self) {
        if self.closed.is_none() {
            let _ = self
                .port
                .session_mut()
                .send_command(Instant::now(), Command::Bye);
            self.port.process(Instant::now());
            while let Some(bytes) = self.port.poll_transmit() {
                let _ = self.sock.write_all(&bytes);
            }
        }
    }
}

/// Bytes of item files in a node's store (temp files and lock files aside).
fn stored_bytes(data: &Path) -> u64 {
    let mut total = 0;
    for dir in std::fs::read_dir(data.join("store")).unwrap().flatten() {
        let name = dir.file_name().to_string_lossy().into_owned();
        if name.len() != 2 || !dir.path().is_dir() {
            continue;
        }
        for item in std::fs::read_dir(dir.path()).unwrap().flatten() {
            total += item.metadata().unwrap().len();
        }
    }
    total
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_000_000.0
}

fn peer_addr(node: &Node) -> SocketAddr {
    node.ready["peer_listen"].as_str().unwrap().parse().unwrap()
}

fn localhost() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

/// Distinct 999,999-byte blobs: one full item each (type byte included, 1,000,000).
fn big_item(seed: u64) -> Bytes {
    let mut item = vec![1u8];
    item.extend(support::data(999_999, seed));
    Bytes::from(item)
}

#[test]
fn a_stranger_storing_60_mb_gets_at_most_the_quota_and_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("node"));
    let before = stored_bytes(&node.data);
    let started = Instant::now();
    let mut stranger = Stranger::open(localhost(), peer_addr(&node));
    let mut sent = 0u64;
    for i in 0..60 {
        if stranger.closed.is_some() {
            break;
        }
        let item = big_item(1_000 + i);
        sent += item.len() as u64;
        stranger.put_then_get_hello(item);
    }
    let closed = stranger.closed.clone();
    stranger.bye();
    let elapsed = started.elapsed();
    let after = stored_bytes(&node.data);
    let listed = node.json(&["file", "ls", "--json"]);
    let files = listed.as_array().map_or(0, Vec::len);
    eprintln!(
        "stranger sent {:.1} MB in {:.1} s; the node's store: {:.1} MB before, {:.1} MB after; \
         {files} file(s) in `kith file ls`; session ended: {closed:?}",
        mb(sent),
        elapsed.as_secs_f64(),
        mb(before),
        mb(after),
    );
    assert_eq!(
        closed, None,
        "the session went on; only the store stayed small"
    );
    assert_eq!(sent, 60_000_000);
    assert!(
        after - before <= 4 * 1024 * 1024,
        "at most the 4 MiB quota stays: {:.1} MB",
        mb(after - before)
    );
    assert!(
        after - before >= 3_000_000,
        "the quota is used, not refused"
    );
    assert_eq!(
        files, 0,
        "a stranger's put is no file of the user's: {listed}"
    );
    assert!(node.counter("anonymous_items_evicted") >= 56);
}

#[test]
fn a_stranger_cannot_get_a_file_the_user_only_put_but_can_get_a_shared_one() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("node"));
    let private = node.put(tmp.path(), "private.txt", b"the user's own, never shared");
    // Three items: a list and two chunks.
    let shared_bytes = support::data(1_500_000, 7);
    let shared = node.put(tmp.path(), "shared.bin", &shared_bytes);
    node.ok(&["file", "share", &shared]);
    let private_hash: ContentHash = private.parse().unwrap();
    let shared_hash: ContentHash = shared.parse().unwrap();

    // `get` of the private file: answered as the reference answers a hash it does not hold.
    let mut stranger = Stranger::open(localhost(), peer_addr(&node));
    stranger.send(Command::Put {
        hash: ContentHash::hello(),
    });
    stranger.send(Command::Get { hash: private_hash });
    let got_private = !matches!(stranger.closed, Some(CloseReason::PeerError(_)));
    eprintln!(
        "get of a file the user only put: {:?}",
        stranger
            .closed
            .as_ref()
            .map_or("served".into(), |r| format!("{r:?}"))
    );
    assert_eq!(
        stranger.closed,
        Some(CloseReason::PeerError(format!(
            "file '{private}' was not found"
        )))
    );
    assert!(!got_private);
    assert!(!stranger.items.contains_key(&private_hash));

    // Nor does `chk` say it is here (the opening `chk`, as a hash).
    let mut prober = Stranger::new(connect_from(localhost(), peer_addr(&node)));
    prober.run();
    prober.send(Command::Chk {
        target: Target::Hash(private_hash),
        nonce: None,
    });
    assert_eq!(
        prober.heard.first().map(String::as_str),
        Some("(not found)")
    );
    prober.bye();

    // A shared file: its root list, then each chunk it names.
    let mut stranger = Stranger::open(localhost(), peer_addr(&node));
    stranger.send(Command::Put {
        hash: ContentHash::hello(),
    });
    stranger.send(Command::Get { hash: shared_hash });
    assert_eq!(stranger.closed, None);
    let list = stranger.items[&shared_hash].clone();
    let chunks = kith_store::tree::parse_list(&list[1..]).unwrap();
    assert_eq!(chunks.len(), 2);
    let mut content = Vec::new();
    for chunk in chunks {
        stranger.send(Command::Put {
            hash: ContentHash::hello(),
        });
        let hash = chunk;
        stranger.send(Command::Get { hash });
        assert_eq!(stranger.closed, None);
        content.extend_from_slice(&stranger.items[&hash][1..]);
    }
    assert_eq!(content, shared_bytes);
    stranger.bye();
    assert!(node.counter("peer_items_hidden") >= 2);
}

#[test]
fn what_a_stranger_put_in_its_session_it_gets_back_and_no_other_session_does() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("node"));
    let item = Bytes::from(b"\x01a stranger's note".to_vec());
    let hash = ContentHash::of(&item);
    let mut one = Stranger::open(localhost(), peer_addr(&node));
    one.items.insert(hash, item.clone());
    one.send(Command::Put { hash });
    one.items.remove(&hash);
    one.send(Command::Get { hash });
    assert_eq!(one.closed, None);
    assert_eq!(one.items.get(&hash), Some(&item));
    one.bye();

    let mut two = Stranger::open(localhost(), peer_addr(&node));
    two.send(Command::Put {
        hash: ContentHash::hello(),
    });
    two.send(Command::Get { hash });
    assert_eq!(
        two.closed,
        Some(CloseReason::PeerError(format!(
            "file '{hash}' was not found"
        )))
    );
}

#[test]
fn one_address_cannot_hold_every_session_while_another_still_gets_in() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("node"));
    let to = peer_addr(&node);
    let hog: IpAddr = "127.0.0.1".parse().unwrap();
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    // The hog opens as many sessions as it can (up to the total cap of 64).
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..64 {
        let mut s = Stranger::new(connect_from(hog, to));
        s.run();
        s.send(Command::Chk {
            target: Target::Tag("hello".into()),
            nonce: None,
        });
        if s.closed.is_some() {
            refused += 1;
        } else {
            held.push(s);
        }
    }
    // Another address still gets in while the hog holds all it may.
    let mut newcomer = Stranger::new(connect_from(other, to));
    newcomer.run();
    newcomer.send(Command::Chk {
        target: Target::Tag("hello".into()),
        nonce: None,
    });
    eprintln!(
        "one address: {} sessions held, {refused} refused; another address: {}",
        held.len(),
        if newcomer.closed.is_none() {
            "admitted"
        } else {
            "refused"
        }
    );
    assert_eq!(held.len(), 4, "max_peer_sessions_per_addr = 4");
    assert_eq!(newcomer.closed, None);
    assert_eq!(
        newcomer.heard.first().map(String::as_str),
        Some("(not found)")
    );
    assert_eq!(node.counter("refused_peer_sessions_per_addr"), 60);
    // A slot freed is the hog's again.
    held.pop().unwrap().bye();
    support::eventually("the freed slot is taken again", || {
        let mut s = Stranger::new(connect_from(hog, to));
        s.run();
        s.send(Command::Chk {
            target: Target::Tag("hello".into()),
            nonce: None,
        });
        let admitted = s.closed.is_none();
        if admitted {
            held.push(s);
        }
        admitted
    });
    drop(held);
    drop(newcomer);
}

#[test]
fn an_open_store_serves_strangers_anything_but_keeps_their_puts_anonymous() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start_with(&tmp.path().join("node"), "peer_port_open_store = true\n");
    let private = node.put(tmp.path(), "private.txt", b"the user's own, never shared");
    let private_hash: ContentHash = private.parse().unwrap();
    let note = Bytes::from(b"\x01a stranger's note".to_vec());
    let mut stranger = Stranger::open(localhost(), peer_addr(&node));
    stranger.put_then_get_hello(note);
    stranger.send(Command::Put {
        hash: ContentHash::hello(),
    });
    stranger.send(Command::Get { hash: private_hash });
    assert_eq!(stranger.closed, None);
    assert!(stranger.items.contains_key(&private_hash));
    stranger.bye();
    let listed = node.json(&["file", "ls", "--json"]);
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "only the user's: {listed}"
    );
}
