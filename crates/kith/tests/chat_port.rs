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
use support::{eventually, Node};

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
    let answer = impostor
        .wait_for(|m| m["msg_type"] == "HELLO")
        .expect("A answers");
    assert!(
        answer["msg_data"]["challenge"].is_string(),
        "and asks for a proof of C's key"
    );
    let mut leaked = 0;
    // Everything until A gives up on the proof and closes the connection.
    let closed = impostor
        .wait_for(|m| {
            leaked += usize::from(m["msg_type"] == "MESSAGE");
            false
        })
        .is_none();
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
