//! Secure links over WebSocket (`kith up --ws-listen`), on real sockets: a node reachable
//! only through WebSocket is linked with a `ws://` ticket, chats and serves a file; its
//! listener refuses what is not a WebSocket, text messages, oversized and malformed frames,
//! and goes on serving.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;
use support::{eventually, ws, Node};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A node with no TCP link listener, reachable only over WebSocket.
fn ws_only_node(data: &std::path::Path) -> (Node, String) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let node = Node::start_up(
        data,
        &[
            "--listen",
            "off",
            "--ws-listen",
            &addr,
            "--announce",
            &format!("ws://127.0.0.1:{port}"),
        ],
    );
    assert_eq!(node.ready["ws_listen"], addr.as_str());
    (node, addr)
}

#[test]
fn a_node_reached_only_over_websocket_links_chats_and_serves_files() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = ws_only_node(&dir.path().join("a"));
    let b = Node::start(&dir.path().join("b"));
    let ticket = a.ok(&["ticket"]).trim().to_owned();
    b.ok(&["connect", &ticket]);
    eventually("A and B linked", || b.peer_state(&a.agent()) == "linked");
    let peers = b.json(&["peers", "--json"]);
    let link = &peers.as_array().unwrap()[0]["link"];
    assert_eq!(link["via"], "websocket", "{peers}");

    let hash = a.put(dir.path(), "f.bin", &support::data(300_000, 3));
    b.ok(&[
        "file",
        "get",
        &hash,
        "--from",
        &a.agent(),
        "-o",
        dir.path().join("got").to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(dir.path().join("got")).unwrap(),
        support::data(300_000, 3)
    );

    a.ok(&["chat", "join", "ws"]);
    b.ok(&["chat", "join", "ws"]);
    b.ok(&["chat", "say", "ws", "over websocket"]);
    eventually("the message on A", || {
        a.ok(&["chat", "read", "ws", "--json"])
            .contains("over websocket")
    });
}

fn upgrade(addr: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    ws::request_upgrade(&mut stream, addr, "/kith", "");
    let head = ws::response_head(&mut stream);
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

#[test]
fn the_websocket_listener_refuses_junk_oversized_and_malformed_frames() {
    let dir = tempfile::tempdir().unwrap();
    // Every case below is a failed handshake from 127.0.0.1: the per-address failure block
    // (as on TCP) would otherwise refuse the later cases before they are read.
    support::write_settings(
        &dir.path().join("a"),
        "[limits]\nmax_failures_per_addr = 1000\nmax_connects_per_addr_per_minute = 1000\n",
    );
    let (a, addr) = ws_only_node(&dir.path().join("a"));

    // Not a WebSocket at all.
    let mut junk = TcpStream::connect(&addr).unwrap();
    junk.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    junk.write_all(b"\x00\x00\x00\x05hello not http\r\n\r\n")
        .unwrap();
    assert!(ws::closed(&mut junk));

    let cases: Vec<(&str, Vec<u8>)> = vec![
        // One binary message larger than a secure-link frame can be.
        ("oversized", ws::masked_frame(0x82, &vec![0u8; 70_000])),
        // A length of 2^62 in the header: refused before anything is read or allocated.
        ("huge length", {
            let mut f = vec![0x82, 0x80 | 127];
            f.extend_from_slice(&(1u64 << 62).to_be_bytes());
            f.extend_from_slice(&[0, 0, 0, 0]);
            f
        }),
        ("text message", ws::masked_frame(0x81, b"{\"hello\":1}")),
        ("reserved bits", ws::masked_frame(0xF2, b"x")),
        ("unknown opcode", ws::masked_frame(0x83, b"x")),
        ("unmasked", vec![0x82, 0x01, 0x00]),
        // A well-formed message that is no Noise handshake.
        ("garbage handshake", ws::masked_frame(0x82, &[0xffu8; 200])),
    ];
    for (what, bytes) in cases {
        let mut ws = upgrade(&addr);
        ws.write_all(&bytes).unwrap();
        assert!(ws::closed(&mut ws), "{what}: the connection stays open");
    }
    // Still serving: a real peer links over WebSocket afterwards.
    let b = Node::start(&dir.path().join("b"));
    b.ok(&["connect", a.ok(&["ticket"]).trim()]);
    eventually("linked after the junk", || {
        b.peer_state(&a.agent()) == "linked"
    });
}
