//! The chat port with real sockets: a plain client (framing + JSON, written here from the
//! protocol description alone) joins a channel through one node and reads what a user on
//! another node says; a client that sends junk is cut off without hurting the others; a frame
//! declared too large closes the connection; a client that claims the id of a kith node that
//! is offline gets nothing of what waits for it, which the node gets when it comes back.
//! With `KITH_TEST_PYTHON=1`, the Python client of `scripts/ptpchat_client.py` talks both
//! ways, over plain TCP and over TLS, proving its key, and in its plain mode.

mod support;

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};
use support::{eventually, ws, Node};

/// A plain ptpchat client on a chat port.
struct Client {
    stream: TcpStream,
    guid: String,
    /// Bytes read but not yet taken as frames (kept across `wait_for` calls).
    buf: Vec<u8>,
}

impl Client {
    fn connect(node: &Node) -> Client {
        let addr = node.ready["chat_listen"].as_str().unwrap();
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let guid = format!("{:032x}", rand_u128());
        let guid = format!(
            "{}-{}-4{}-8{}-{}",
            &guid[0..8],
            &guid[8..12],
            &guid[13..16],
            &guid[17..20],
            &guid[20..32]
        );
        Client {
            stream,
            guid,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, msg_type: &str, data: Value, ttl: u8, flood: bool) {
        let body = json!({"msg_type": msg_type, "msg_data": data, "ttl": ttl, "flood": flood});
        self.send_raw(body.to_string().as_bytes());
    }

    fn send_raw(&mut self, body: &[u8]) {
        self.try_send_raw(body).unwrap();
    }

    fn try_send_raw(&mut self, body: &[u8]) -> std::io::Result<()> {
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        self.stream.write_all(&frame)
    }

    fn hello(&mut self) {
        let guid = self.guid.clone();
        self.hello_as(&guid);
    }

    /// HELLO claiming `guid` (without any proof of a key).
    fn hello_as(&mut self, guid: &str) {
        let me = format!("test@{guid}");
        self.send(
            "HELLO",
            json!({"node_id": me, "version": "test/1", "attributes": {"node_type": "client"}}),
            1,
            false,
        );
    }

    /// Reads frames until `want` accepts one (or 15 s pass); `None` when the node closed.
    fn wait_for(&mut self, mut want: impl FnMut(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut chunk = [0u8; 65536];
        let mut seen = Vec::new();
        loop {
            while self.buf.len() >= 4 {
                let n = u32::from_be_bytes(self.buf[..4].try_into().unwrap()) as usize;
                if self.buf.len() < 4 + n {
                    break;
                }
                let frame: Vec<u8> = self.buf.drain(..4 + n).skip(4).collect();
                if frame.is_empty() {
                    continue;
                }
                let msg: Value = serde_json::from_slice(&frame).unwrap();
                seen.push(msg["msg_type"].as_str().unwrap_or("?").to_owned());
                if want(&msg) {
                    return Some(msg);
                }
            }
            assert!(
                Instant::now() < deadline,
                "nothing wanted arrived (seen: {seen:?})"
            );
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return None,
            }
        }
    }

    /// Waits for the node to announce `channel`, then joins it; returns its id.
    fn join(&mut self, channel: &str) -> String {
        let announced = self
            .wait_for(|m| m["msg_type"] == "CHANNEL" && m["msg_data"]["channel"] == channel)
            .expect("the node announces the channel");
        let channel_id = announced["msg_data"]["channel_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let me = format!("test@{}", self.guid);
        let msg_id = format!("{:032x}", rand_u128());
        self.send(
            "JOIN",
            json!({"msg_id": msg_id, "node_id": me, "channel": channel, "channel_id": channel_id}),
            32,
            true,
        );
        channel_id
    }
}

fn rand_u128() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    (u128::from(h.finish()) << 64) | u128::from(h.finish().rotate_left(17))
}

/// The text of a MESSAGE frame (base64 of signature ‖ text).
fn text_of(message: &Value) -> String {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(message["msg_data"]["message"].as_str().unwrap())
        .unwrap();
    String::from_utf8_lossy(&raw[64..]).into_owned()
}

/// A - B linked; B has joined `lobby`.
fn pair(tmp: &Path, extra: &[&str]) -> (Node, Node) {
    let a = Node::start_up(&tmp.join("a"), extra);
    let b = Node::start(&tmp.join("b"));
    b.ok(&["connect", a.ok(&["ticket"]).trim()]);
    b.ok(&["chat", "join", "lobby"]);
    eventually("A hears of the lobby", || {
        a.ok(&["chat", "channels"]).contains("lobby")
    });
    (a, b)
}

#[test]
fn a_plain_client_on_one_node_reads_a_user_on_another() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = pair(tmp.path(), &[]);
    let mut client = Client::connect(&a);
    client.hello();
    let hello = client
        .wait_for(|m| m["msg_type"] == "HELLO")
        .expect("the node answers HELLO with HELLO");
    assert_eq!(
        hello["msg_data"]["node_id"].as_str().unwrap(),
        a.ready["node_id"].as_str().unwrap()
    );
    client.join("lobby");
    eventually("B sees the client as a member", || {
        b.ok(&["chat", "channels", "--json"]).contains(&client.guid)
    });
    b.ok(&["chat", "say", "lobby", "hello, plain client"]);
    let got = client
        .wait_for(|m| m["msg_type"] == "MESSAGE")
        .expect("the message reaches the client");
    assert_eq!(text_of(&got), "hello, plain client");
    assert_eq!(got["msg_data"]["channel"], "lobby");
}

#[test]
fn a_client_that_sends_junk_is_cut_off_and_the_others_carry_on() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = pair(tmp.path(), &[]);
    let mut good = Client::connect(&a);
    good.hello();
    good.join("lobby");
    let mut junk = Client::connect(&a);
    junk.hello();
    for i in 0..200 {
        let frame = format!("{{\"not\": \"ptpchat\", \"n\": {i}}}");
        if junk.try_send_raw(frame.as_bytes()).is_err() {
            break; // cut off already
        }
    }
    assert!(
        junk.wait_for(|_| false).is_none(),
        "the junk client's connection is closed"
    );
    assert!(a.counter("chat_neighbours_cut_off") >= 1);
    assert!(a.counter("chat_invalid") >= 1);
    b.ok(&["chat", "say", "lobby", "still here"]);
    let got = good.wait_for(|m| m["msg_type"] == "MESSAGE").unwrap();
    assert_eq!(text_of(&got), "still here");

    // A frame declared larger than chat_max_frame closes the connection from the prefix.
    let mut huge = Client::connect(&a);
    huge.stream.write_all(&u32::MAX.to_be_bytes()).unwrap();
    assert!(huge.wait_for(|_| false).is_none());
    assert!(a.counter("chat_frames_refused") >= 1);
}

#[test]
fn a_client_claiming_an_offline_nodes_id_gets_nothing_and_the_node_gets_its_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Node::start(&tmp.path().join("a"));
    let mut c = Node::start(&tmp.path().join("c"));
    c.ok(&["connect", a.ok(&["ticket"]).trim()]);
    let c_id = c.ready["node_id"].as_str().unwrap().to_owned();
    a.ok(&["chat", "send", &c_id, "hello C"]);
    eventually("C gets the first message", || {
        c.ok(&["chat", "read"]).contains("hello C")
    });
    c.stop();
    eventually("A notices C is gone", || a.links() == 0);
    for k in 0..3 {
        a.ok(&["chat", "send", &c_id, &format!("while you were away {k}")]);
    }
    // The impostor says HELLO with C's id over A's chat port, as the seed allows anyone to.
    let mut impostor = Client::connect(&a);
    impostor.hello_as(&c_id);
    // A refuses the claim at once while it still holds C as a sleeping neighbour (the id is in
    // use), or answers with a challenge and closes when no proof comes: either way the
    // impostor gets nothing and the connection ends.
    let mut leaked = 0;
    let mut hellos = Vec::new();
    let closed = impostor
        .wait_for(|m| {
            leaked += usize::from(m["msg_type"] == "MESSAGE");
            if m["msg_type"] == "HELLO" {
                hellos.push(m.clone());
            }
            false
        })
        .is_none();
    for answer in &hellos {
        assert!(
            answer["msg_data"]["challenge"].is_string(),
            "an answer asks for a proof of C's key: {answer}"
        );
    }
    assert!(
        closed,
        "A closes the connection of a client that does not prove its key"
    );
    assert_eq!(leaked, 0);
    assert!(a.counter("chat_hello_refused") >= 1);
    // C comes back: everything A kept for it arrives.
    let c = Node::start(&tmp.path().join("c"));
    eventually("C gets the three messages", || {
        let read = c.ok(&["chat", "read"]);
        (0..3).all(|k| read.contains(&format!("while you were away {k}")))
    });
}

/// The Python client joins `lobby` through A, says something B must read, then waits for
/// B's answer. With `plain`, it proves no key and B reads its message marked unsigned.
fn python_client_talks_both_ways(tls: bool, plain: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let extra: &[&str] = if tls { &["--chat-tls"] } else { &[] };
    let (a, b) = pair(tmp.path(), extra);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/ptpchat_client.py"
    );
    let mut command = std::process::Command::new("python3");
    command.args([
        script,
        a.ready["chat_listen"].as_str().unwrap(),
        "--channel",
        "lobby",
        "--say",
        "hi from python",
        "--expect",
        "hi from kith",
        "--timeout",
        "30",
    ]);
    if tls {
        command.arg("--tls");
    }
    if plain {
        command.arg("--plain");
    }
    let mut client = command.spawn().unwrap();
    eventually("B reads the Python client's message", || {
        b.ok(&["chat", "read", "lobby"]).contains("hi from python")
    });
    let read = b.ok(&["chat", "read", "lobby"]);
    assert_eq!(read.contains("(unsigned)"), plain, "{read}");
    b.ok(&["chat", "say", "lobby", "hi from kith"]);
    let status = client.wait().unwrap();
    assert!(status.success(), "the Python client got B's answer");
    if tls {
        assert!(a.counter("chat_clients_tls") >= 1);
    }
}

#[test]
#[cfg_attr(
    not(kith_test_python),
    ignore = "needs Python 3 with cryptography for scripts/ptpchat_client.py: set KITH_TEST_PYTHON=1 (.ci/run does)"
)]
fn the_python_client_talks_with_a_user_on_another_node() {
    python_client_talks_both_ways(false, false);
}

#[test]
#[cfg_attr(
    not(kith_test_python),
    ignore = "needs Python 3 with cryptography for scripts/ptpchat_client.py: set KITH_TEST_PYTHON=1 (.ci/run does)"
)]
fn the_python_client_in_plain_mode_is_a_leaf_whose_messages_go_unsigned() {
    python_client_talks_both_ways(false, true);
}

#[test]
#[cfg_attr(
    not(kith_test_python),
    ignore = "needs Python 3 with cryptography for scripts/ptpchat_client.py: set KITH_TEST_PYTHON=1 (.ci/run does)"
)]
fn the_python_client_talks_over_tls_when_the_port_is_tls_only() {
    python_client_talks_both_ways(true, false);
}

/// A client shaped like the reference programs: the later revision (top-level msg_id,
/// sender_id and target_id as name@GUID, no node_id in msg_data), plain text, no key.
struct LaterClient {
    inner: Client,
}

impl LaterClient {
    fn connect(addr: &str) -> LaterClient {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut inner = Client {
            stream,
            guid: String::new(),
            buf: Vec::new(),
        };
        let g = format!("{:032x}", rand_u128());
        inner.guid = format!(
            "{}-{}-4{}-8{}-{}",
            &g[0..8],
            &g[8..12],
            &g[13..16],
            &g[17..20],
            &g[20..32]
        );
        LaterClient { inner }
    }

    fn me(&self) -> String {
        format!("dave@{}", self.inner.guid)
    }

    fn send(&mut self, verb: &str, data: Value, ttl: u8, flood: bool, target: Option<&str>) {
        let msg_id = self.inner.guid_like();
        let body = json!({"msg_type": verb, "msg_id": msg_id, "sender_id": self.me(),
                          "target_id": target, "ttl": ttl, "flood": flood, "msg_data": data});
        self.inner.send_raw(body.to_string().as_bytes());
    }

    fn hello(&mut self) {
        self.send(
            "HELLO",
            json!({"version": "PtpChat 1.0", "attributes": {"node_type": "client"}}),
            1,
            false,
            None,
        );
    }

    fn join(&mut self, channel: &str, channel_id: &str) {
        let msg_id = self.inner.guid_like();
        self.send(
            "JOIN",
            json!({"channel": channel, "channel_id": channel_id, "msg_id": msg_id}),
            32,
            true,
            None,
        );
    }

    fn say(&mut self, channel: &str, channel_id: &str, text: &str) {
        self.send(
            "MESSAGE",
            json!({"channel": channel, "channel_id": channel_id, "message": text,
                   "recipient": [], "timestamp": "2016-03-12T10:00:00"}),
            32,
            true,
            None,
        );
    }

    fn tell(&mut self, to: &str, text: &str) {
        self.send(
            "MESSAGE",
            json!({"channel_id": "00000000-0000-0000-0000-000000000000", "message": text,
                   "recipient": [{"node_id": to}], "timestamp": "2016-03-12T10:01:00"}),
            32,
            false,
            Some(to),
        );
    }

    /// Waits for a MESSAGE whose text, as the reference client reads it (the field as is),
    /// is `text`.
    fn expect_text(&mut self, text: &str) -> Value {
        self.inner
            .wait_for(|m| m["msg_type"] == "MESSAGE" && m["msg_data"]["message"] == text)
            .unwrap_or_else(|| panic!("{text:?} never came"))
    }
}

impl Client {
    fn guid_like(&self) -> String {
        let g = format!("{:032x}", rand_u128());
        format!(
            "{}-{}-4{}-8{}-{}",
            &g[0..8],
            &g[8..12],
            &g[13..16],
            &g[17..20],
            &g[20..32]
        )
    }
}

/// The id of the public channel called `name`, as the crate documentation defines it.
fn public_channel_id(name: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"kith-chat public channel v1")
        .chain_update(name.as_bytes())
        .finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The later revision both ways: `dave` talks with `b`'s user (one hop away) in a channel
/// and directly, reading plain text and shown unsigned; over `addr` (a node's chat port, or
/// a ptpchat router that a node keeps dialled).
fn later_revision_client_talks_with(addr: &str, b: &Node) {
    let lobby = public_channel_id("lobby");
    let mut dave = LaterClient::connect(addr);
    dave.hello();
    dave.inner
        .wait_for(|m| m["msg_type"] == "HELLO")
        .expect("the other end answers HELLO");
    dave.join("lobby", &lobby);
    eventually("b sees dave in the lobby", || {
        b.ok(&["chat", "channels", "--json"])
            .contains(&dave.inner.guid)
    });
    dave.say("lobby", &lobby, "hi from dave");
    eventually("b reads dave, shown unsigned", || {
        b.ok(&["chat", "read", "lobby"])
            .lines()
            .any(|l| l.contains("hi from dave") && l.contains("(unsigned)"))
    });
    b.ok(&["chat", "say", "lobby", "hi dave"]);
    let got = dave.expect_text("hi dave");
    assert!(got["sender_id"].as_str().unwrap().contains('@'));
    b.ok(&["chat", "send", &dave.me(), "just for dave"]);
    let got = dave.expect_text("just for dave");
    assert_eq!(got["target_id"].as_str(), Some(dave.me().as_str()));
    let b_id = format!(
        "kith@{}",
        b.ready["node_id"]
            .as_str()
            .unwrap()
            .rsplit('@')
            .next()
            .unwrap()
    );
    dave.tell(&b_id, "thanks b");
    eventually("b reads dave's direct answer", || {
        b.ok(&["chat", "read"])
            .lines()
            .any(|l| l.contains("thanks b") && l.contains("(direct)") && l.contains("(unsigned)"))
    });
}

#[test]
fn a_later_revision_client_talks_both_ways_with_a_user_on_another_node() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = pair(tmp.path(), &[]);
    later_revision_client_talks_with(a.ready["chat_listen"].as_str().unwrap(), &b);
}

/// `scripts/ptpchat_router.py` (a router shaped like the reference server) on its own port;
/// two kith nodes that are not linked keep it dialled and talk through it; a later-revision
/// client on the router talks with a user of a third node linked to one of them.
#[test]
#[cfg_attr(
    not(kith_test_python),
    ignore = "needs Python 3 for scripts/ptpchat_router.py: set KITH_TEST_PYTHON=1 (.ci/run does)"
)]
fn kith_nodes_and_a_later_revision_client_meet_through_a_ptpchat_router() {
    use std::io::BufRead;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/ptpchat_router.py"
    );
    let mut router = std::process::Command::new("python3")
        .args([script, "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(router.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().strip_prefix("listening ").unwrap().to_owned();
    let tmp = tempfile::tempdir().unwrap();
    // A and C are linked; B is linked to nobody: A and B both dial the router.
    let a = Node::start(&tmp.path().join("a"));
    let b = Node::start(&tmp.path().join("b"));
    let c = Node::start(&tmp.path().join("c"));
    c.ok(&["connect", a.ok(&["ticket"]).trim()]);
    a.ok(&["chat", "peer", &addr]);
    b.ok(&["chat", "peer", &addr]);
    assert!(a.ok(&["chat", "peer"]).contains(&addr));
    for n in [&a, &b, &c] {
        n.ok(&["chat", "join", "lobby"]);
    }
    let b_id = b.ready["node_id"].as_str().unwrap().to_owned();
    eventually("A has a route to B through the router", || {
        a.kith(&["chat", "send", &b_id, "through the router"])
            .status
            .success()
    });
    eventually("B reads A's direct message, signed", || {
        b.ok(&["chat", "read"])
            .lines()
            .any(|l| l.contains("through the router") && !l.contains("unsigned"))
    });
    a.ok(&["chat", "say", "lobby", "from A to all"]);
    eventually("B reads A in the lobby through the router", || {
        b.ok(&["chat", "read", "lobby"]).contains("from A to all")
    });
    b.ok(&["chat", "say", "lobby", "from B to all"]);
    eventually("C reads B: router, then A, then the secure link", || {
        c.ok(&["chat", "read", "lobby"]).contains("from B to all")
    });
    assert!(a.counter("chat_routers_dialled") >= 1);
    later_revision_client_talks_with(&addr, &c);
    let _ = router.kill();
    let _ = router.wait();
}

/// A web chat client: the same messages, one per WebSocket message, no length prefix.
struct WsClient {
    stream: TcpStream,
    guid: String,
}

impl WsClient {
    fn connect(node: &Node) -> WsClient {
        let addr = node.ready["chat_listen"].as_str().unwrap();
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        ws::request_upgrade(&mut stream, addr, "/chat", "");
        let head = ws::response_head(&mut stream);
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        let plain = Client::connect_guid();
        WsClient {
            stream,
            guid: plain,
        }
    }

    fn send_frame(&mut self, first: u8, payload: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(&ws::masked_frame(first, payload))
    }

    fn send(&mut self, msg_type: &str, data: Value, ttl: u8, flood: bool) {
        let body = json!({"msg_type": msg_type, "msg_data": data, "ttl": ttl, "flood": flood});
        self.send_frame(0x81, body.to_string().as_bytes()).unwrap();
    }

    /// The next message (`None` when the node closed).
    fn next(&mut self) -> Option<Value> {
        loop {
            let mut head = [0u8; 2];
            self.stream.read_exact(&mut head).ok()?;
            let mut len = u64::from(head[1] & 0x7f);
            if len == 126 {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b).ok()?;
                len = u64::from(u16::from_be_bytes(b));
            } else if len == 127 {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b).ok()?;
                len = u64::from_be_bytes(b);
            }
            let mut payload = vec![0u8; len as usize];
            self.stream.read_exact(&mut payload).ok()?;
            match head[0] & 0x0f {
                0x8 => return None,
                0x1 | 0x2 if !payload.is_empty() => return serde_json::from_slice(&payload).ok(),
                _ => {}
            }
        }
    }

    fn wait_for(&mut self, mut want: impl FnMut(&Value) -> bool) -> Option<Value> {
        loop {
            let msg = self.next()?;
            if want(&msg) {
                return Some(msg);
            }
        }
    }
}

impl Client {
    /// A fresh client GUID (random, version 4 form).
    fn connect_guid() -> String {
        let guid = format!("{:032x}", rand_u128());
        format!(
            "{}-{}-4{}-8{}-{}",
            &guid[0..8],
            &guid[8..12],
            &guid[13..16],
            &guid[17..20],
            &guid[20..32]
        )
    }
}

#[test]
fn a_web_chat_client_over_websocket_reads_a_user_on_another_node() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = pair(tmp.path(), &[]);
    let mut client = WsClient::connect(&a);
    let me = format!("web@{}", client.guid);
    client.send(
        "HELLO",
        json!({"node_id": me, "version": "test/1", "attributes": {"node_type": "client"}}),
        1,
        false,
    );
    let hello = client
        .wait_for(|m| m["msg_type"] == "HELLO")
        .expect("the node answers HELLO over WebSocket");
    assert_eq!(hello["msg_data"]["node_id"], a.ready["node_id"]);
    let announced = client
        .wait_for(|m| m["msg_type"] == "CHANNEL" && m["msg_data"]["channel"] == "lobby")
        .expect("the node announces the lobby");
    let channel_id = announced["msg_data"]["channel_id"].clone();
    client.send(
        "JOIN",
        json!({"msg_id": format!("{:032x}", rand_u128()), "node_id": me, "channel": "lobby", "channel_id": channel_id}),
        32,
        true,
    );
    eventually("B sees the web client as a member", || {
        b.ok(&["chat", "channels", "--json"]).contains(&client.guid)
    });
    b.ok(&["chat", "say", "lobby", "hello, web client"]);
    let got = client
        .wait_for(|m| m["msg_type"] == "MESSAGE")
        .expect("the message reaches the web client");
    assert_eq!(text_of(&got), "hello, web client");
    assert_eq!(a.counter("chat_clients_websocket"), 1);

    // A message over chat_max_frame is refused from its header, and only that client goes.
    let mut big = WsClient::connect(&a);
    let mut claim = vec![0x81, 0x80 | 127];
    claim.extend_from_slice(&(1u64 << 40).to_be_bytes());
    claim.extend_from_slice(&[0, 0, 0, 0]);
    big.stream.write_all(&claim).unwrap();
    assert!(
        big.next().is_none(),
        "an oversized message must close the connection"
    );
    b.ok(&["chat", "say", "lobby", "still here"]);
    let got = client
        .wait_for(|m| m["msg_type"] == "MESSAGE")
        .expect("the first client carries on");
    assert_eq!(text_of(&got), "still here");
}
