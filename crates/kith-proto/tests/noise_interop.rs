//! Byte-level interop of kith's secure links with an independent Noise implementation: the PyPI
//! package `noiseprotocol`, driven by `noise_interop.py` beside this file.
//!
//! IK and KK (with the N that precedes it), both directions (Rust initiator with a Python
//! responder and the reverse), handshake and transport messages both ways. The Python side
//! derives its X25519 keys from the Ed25519 seeds by itself, so kith-crypto's key conversion is
//! checked too.
//!
//! Runs only when `KITH_TEST_PYTHON=1` (CI sets it; otherwise each test is listed as ignored,
//! with the reason); the interpreter is `KITH_PYTHON`, default `python3`, with `noiseprotocol`
//! (0.3.1) and `cryptography` installed.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use bytes::BytesMut;
use kith_crypto::Identity;
use kith_proto::secure::{
    Chad, Event, Frame, FrameDecoder, FrameKind, Initiator, Link, Responder, SecureConfig,
    TicketRequest,
};
use kith_proto::Limits;
use rand::rngs::StdRng;
use rand::SeedableRng;

fn python() -> String {
    std::env::var("KITH_PYTHON").unwrap_or_else(|_| "python3".into())
}

struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    fn spawn(python: &str, args: &[String]) -> Peer {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/noise_interop.py");
        let mut child = Command::new(python)
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the Python interop peer");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Peer {
            child,
            stdin,
            stdout,
        }
    }

    fn send(&mut self, frame: &Frame) {
        let tag = frame.kind.header_byte() as char;
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{tag} {}", hex::encode(&frame.body)).unwrap();
        stdin.flush().unwrap();
    }

    fn recv(&mut self, tag: &str) -> Vec<u8> {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let (got, data) = line
            .trim_end_matches(['\r', '\n'])
            .split_once(' ')
            .unwrap_or_else(|| panic!("Python peer said {line:?} (see its stderr above)"));
        assert_eq!(got, tag, "line {line:?}");
        hex::decode(data).unwrap()
    }

    fn recv_frame(&mut self, kind: FrameKind) -> Frame {
        let tag = (kind.header_byte() as char).to_string();
        Frame::new(kind, self.recv(&tag))
    }

    fn finish(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "Python peer exited with {status}");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn ident(seed: u64) -> Identity {
    Identity::generate(&mut StdRng::seed_from_u64(seed))
}

fn config(id: &Identity) -> SecureConfig {
    SecureConfig::new(id, &Limits::default())
}

fn established(event: Option<Event>) -> Link {
    match event {
        Some(Event::Established(link)) => link,
        other => panic!("expected Established, got {other:?}"),
    }
}

/// Sends messages of several sizes as `T` frames; the Python side answers each frame with
/// `echo:` + its plaintext, which must decrypt here.
fn exchange(link: &mut Link, peer: &mut Peer) {
    let now = Instant::now();
    let decoder = FrameDecoder::new(&Limits::default());
    let max = link.max_plaintext() - 5;
    for size in [0usize, 1, 5, 1000, max] {
        let message: Vec<u8> = (0..size).map(|i| (i * 7 + size) as u8).collect();
        let mut wire = BytesMut::new();
        // An empty message still goes as one (empty) frame: seal one byte less than a frame.
        let n = if size == 0 {
            link.seal_into(b"x", &mut wire).unwrap()
        } else {
            link.seal_into(&message, &mut wire).unwrap()
        };
        assert_eq!(n, 1);
        let frame = decoder.decode(&mut wire).unwrap().unwrap();
        peer.send(&frame);
        let echo = link
            .open(now, &peer.recv_frame(FrameKind::Transport))
            .unwrap();
        let sent = if size == 0 { b"x".to_vec() } else { message };
        assert_eq!(echo, [b"echo:".as_slice(), &sent].concat(), "size {size}");
    }
}

fn py_args(role: &str, pattern: &str, id: &Identity, rest: &[String]) -> Vec<String> {
    let mut args = vec![
        role.to_string(),
        pattern.to_string(),
        hex::encode(id.agent_seed()),
    ];
    args.extend_from_slice(rest);
    args
}

#[test]
#[cfg_attr(
    not(kith_test_python),
    ignore = "needs Python 3 with noiseprotocol==0.3.1 and cryptography: set KITH_TEST_PYTHON=1 (.ci/run does)"
)]
fn ik_rust_initiator_python_responder() {
    let python = python();
    let alice = ident(1);
    let bob = ident(2);
    let mut peer = Peer::spawn(&python, &py_args("responder", "IK", &bob, &[]));
    assert_eq!(peer.recv("info"), bob.agent_id().to_string().as_bytes());
    let to = Chad {
        cuid: Some("b1".into()),
        agent: bob.agent_id().to_string(),
        host: None,
        port: None,
    };
    let from = Chad {
        cuid: Some("a3".into()),
        agent: String::new(),
        host: Some("127.0.0.1".into()),
        port: Some(65430),
    };
    let request = TicketRequest::new(to, from, "0123456789abcdef0123456789abcdef");
    let now = Instant::now();
    let mut init = Initiator::ik(
        &config(&alice),
        bob.agent_id(),
        &request,
        now,
        &mut StdRng::seed_from_u64(7),
    )
    .unwrap();
    peer.send(&init.poll_transmit().unwrap());
    let payload = TicketRequest::from_json(&peer.recv("info")).unwrap();
    assert_eq!(payload.ticket.token, "0123456789abcdef0123456789abcdef");
    assert_eq!(payload.from.agent, alice.agent_id().to_string());
    assert_eq!(peer.recv("info"), alice.noise_public(), "proven static key");
    init.handle_frame(now, peer.recv_frame(FrameKind::Accept))
        .unwrap();
    let mut link = established(init.poll_event());
    assert_eq!(peer.recv("info"), link.handshake_hash());
    exchange(&mut link, &mut peer);
    peer.finish();
}

#[test]
#[cfg_attr(
    not(kith_test_python),
    ignore = "needs Python 3 with noiseprotocol==0.3.1 and cryptography: set KITH_TEST_PYTHON=1 (.ci/run does)"
)]
fn ik_python_initiator_rust_responder() {
    let python = python();
    let carol = ident(3);
    let bob = ident(2);
    let args = py_args(
        "initiator",
        "IK",
        &carol,
        &[bob.agent_id().to_string(), "feedface".into()],
    );
    let mut peer = Peer::spawn(&python, &args);
    assert_eq!(peer.recv("info"), carol.agent_id().to_string().as_bytes());
    let now = Instant::now();
    let mut resp = Responder::new(&config(&bob), now, &mut StdRng::seed_from_u64(8));
    resp.handle_frame(now, peer.recv_frame(FrameKind::Ticket))
        .unwrap();
    match resp.poll_event() {
        Some(Event::CheckTicket {
            token,
            from_agent,
            proven_static_key,
            ..
        }) => {
            assert_eq!(token, "feedface");
            assert_eq!(from_agent, carol.agent_id());
            assert_eq!(proven_static_key, Some(carol.noise_public()));
        }
        other => panic!("expected CheckTicket, got {other:?}"),
    }
    resp.answer_ticket(now, true).unwrap();
    let mut link = established(resp.poll_event());
    assert_eq!(link.peer(), Some(carol.agent_id()));
    peer.send(&resp.poll_transmit().unwrap());
    assert_eq!(peer.recv("info"), b"", "A payload");
    assert_eq!(peer.recv("info"), link.handshake_hash());
    exchange(&mut link, &mut peer);
    peer.finish();
}

#[test]
#[cfg_attr(
    not(kith_test_python),
    ignore = "needs Python 3 with noiseprotocol==0.3.1 and cryptography: set KITH_TEST_PYTHON=1 (.ci/run does)"
)]
fn kk_rust_initiator_python_responder() {
    let python = python();
    let alice = ident(1);
    let bob = ident(2);
    let mut peer = Peer::spawn(
        &python,
        &py_args("responder", "KK", &bob, &[alice.agent_id().to_string()]),
    );
    assert_eq!(peer.recv("info"), bob.agent_id().to_string().as_bytes());
    let now = Instant::now();
    let mut init = Initiator::known(
        &config(&alice),
        bob.agent_id(),
        b"{\"hello\":1}",
        now,
        &mut StdRng::seed_from_u64(9),
    )
    .unwrap();
    peer.send(&init.poll_transmit().unwrap());
    let declared: String = serde_json::from_slice(&peer.recv("info")).unwrap();
    assert_eq!(declared, alice.agent_id().to_string());
    peer.send(&init.poll_transmit().unwrap());
    assert_eq!(peer.recv("info"), b"{\"hello\":1}");
    init.handle_frame(now, peer.recv_frame(FrameKind::Accept))
        .unwrap();
    let mut link = established(init.poll_event());
    assert_eq!(peer.recv("info"), link.handshake_hash());
    exchange(&mut link, &mut peer);
    peer.finish();
}

#[test]
#[cfg_attr(
    not(kith_test_python),
    ignore = "needs Python 3 with noiseprotocol==0.3.1 and cryptography: set KITH_TEST_PYTHON=1 (.ci/run does)"
)]
fn kk_python_initiator_rust_responder() {
    let python = python();
    let carol = ident(3);
    let bob = ident(2);
    let args = py_args(
        "initiator",
        "KK",
        &carol,
        &[bob.agent_id().to_string(), hex::encode(b"early")],
    );
    let mut peer = Peer::spawn(&python, &args);
    assert_eq!(peer.recv("info"), carol.agent_id().to_string().as_bytes());
    let now = Instant::now();
    let mut resp = Responder::new(&config(&bob), now, &mut StdRng::seed_from_u64(10));
    resp.handle_frame(now, peer.recv_frame(FrameKind::Declare))
        .unwrap();
    resp.handle_frame(now, peer.recv_frame(FrameKind::Known))
        .unwrap();
    match resp.poll_event() {
        Some(Event::LookupPeer { agent }) => {
            assert_eq!(agent, carol.agent_id());
            resp.answer_peer(now, Some(agent.noise_public())).unwrap();
        }
        other => panic!("expected LookupPeer, got {other:?}"),
    }
    let mut link = established(resp.poll_event());
    assert_eq!(link.take_early_data().as_deref(), Some(&b"early"[..]));
    peer.send(&resp.poll_transmit().unwrap());
    assert_eq!(peer.recv("info"), b"", "A payload");
    assert_eq!(peer.recv("info"), link.handshake_hash());
    exchange(&mut link, &mut peer);
    peer.finish();
}
