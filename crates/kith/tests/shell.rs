//! `kith shell`: the seed's first interactive session replayed from a pipe, compared line for
//! line with the seed; against a responder in this test (the kith-proto machine on a std
//! socket, the reference's interactive-test policy), over TLS, and against a `kith up` node.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kith_proto::files::{
    CloseReason, ContentHash, Event, InteractiveTestPolicy, Policy, Role, Session, SessionConfig,
    TextPort, HELLO_ITEM,
};
use kith_proto::Limits;

const H: &str = "cceeb7a985ecc3dabcb4c8f666cd637f16f008e3c963db6aa6f83a7b288c54ef";

/// The seed's first session as typed (the `>` lines).
fn seed_input() -> String {
    [
        "chk hello".to_string(),
        format!("put {H}"),
        format!("~rm {H}"),
        format!("get {H}"),
        format!("put {H}"),
        "pip 127.0.0.1".to_string(),
        format!("~rm {H}"),
        "bye".to_string(),
    ]
    .iter()
    .map(|l| format!("{l}\n"))
    .collect()
}

/// What the seed shows after the `>` lines, in order.
fn seed_output() -> String {
    [
        "(not found)".to_string(),
        format!("put {H}"),
        format!("get {H}"),
        format!("put {H}"),
        "pip 127.0.0.1".to_string(),
        "127.0.0.1".to_string(),
        format!("get {H}"),
    ]
    .iter()
    .map(|l| format!("{l}\n"))
    .collect()
}

/// Runs `kith --data DATA shell TARGET` with `input` on stdin (a pipe).
fn shell(data: &Path, target: &str, input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kith"))
        .arg("--data")
        .arg(data)
        .args(["shell", target])
        .env_remove("KITH_DATA")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kith shell");
    let mut stdin = child.stdin.take().unwrap();
    // A shell that fails at once (a closed port) may exit before it reads: a broken pipe
    // here is the child having finished, not a failure of the test.
    if let Err(e) = stdin.write_all(input.as_bytes()) {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "writing to kith shell: {e}"
        );
    }
    drop(stdin);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn item_path(data: &Path, hash: &str) -> std::path::PathBuf {
    data.join("store").join(&hash[..2]).join(&hash[2..])
}

// ----- a responder in the test: the session machine on a blocking socket -----

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(buf),
            Stream::Tls(s) => s.write_all(buf).and_then(|()| s.flush()),
        }
    }
}

/// Serves one connection like the reference's interactive test port; returns how the session
/// ended.
fn spawn_responder() -> (SocketAddr, JoinHandle<CloseReason>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let identity = kith_crypto::identity::Identity::generate(&mut rand::rngs::OsRng);
    let tls = kith_node::tls::server_config(&identity).unwrap();
    let handle = std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        serve(Stream::Plain(sock), tls)
    });
    (addr, handle)
}

fn serve(mut stream: Stream, tls: Arc<rustls::ServerConfig>) -> CloseReason {
    let limits = Limits::default();
    let now = Instant::now();
    let session = Session::new(Role::Responder, SessionConfig::interactive(&limits), now);
    let mut port = TextPort::new(session, &limits);
    let mut items: HashMap<ContentHash, Bytes> = HashMap::new();
    items.insert(ContentHash::hello(), Bytes::from_static(HELLO_ITEM));
    let mut policy = InteractiveTestPolicy::new(7, Vec::new());
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while let Some(bytes) = port.poll_transmit() {
            stream.write_all(&bytes).unwrap();
        }
        if let Some(event) = port.poll_event() {
            let now = Instant::now();
            let s = port.session_mut();
            match event {
                Event::ResolveTag { .. } => s.answer_tag(now, None).unwrap(),
                Event::HaveItem { hash } => s.answer_have(now, items.contains_key(&hash)).unwrap(),
                Event::ReadItem { hash } => s.supply_item(now, items.get(&hash).cloned()).unwrap(),
                Event::StoreItem { hash, item } => {
                    items.insert(hash, item);
                    s.stored(now, true).unwrap();
                }
                Event::PipAddress => s.answer_pip(now, &policy.pip_address()).unwrap(),
                Event::ChooseCommand(ctx) => s.answer_command(now, policy.choose(&ctx)).unwrap(),
                Event::StartTls => {
                    let Stream::Plain(mut sock) = stream else {
                        panic!("tls twice")
                    };
                    let mut conn = rustls::ServerConnection::new(Arc::clone(&tls)).unwrap();
                    while conn.is_handshaking() {
                        conn.complete_io(&mut sock).unwrap();
                    }
                    stream = Stream::Tls(Box::new(rustls::StreamOwned::new(conn, sock)));
                    s.tls_started(now).unwrap();
                }
                Event::Closed(reason) => {
                    while let Some(bytes) = port.poll_transmit() {
                        let _ = stream.write_all(&bytes);
                    }
                    return reason;
                }
                _ => {}
            }
            port.process(now);
            continue;
        }
        // Before TLS, read byte by byte, as the reference reads lines: the client's TLS
        // handshake follows its `tls` line at once and must stay in the socket.
        let want = if matches!(stream, Stream::Plain(_)) {
            1
        } else {
            buf.len()
        };
        match stream.read(&mut buf[..want]) {
            Ok(0) | Err(_) => return CloseReason::Local("connection ended".into()),
            Ok(n) => port.handle_bytes(Instant::now(), &buf[..n]),
        }
    }
}

#[test]
fn seed_session_one_from_a_pipe_against_the_reference_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("client");
    let (addr, peer) = spawn_responder();
    let out = shell(&data, &addr.to_string(), &seed_input());
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), seed_output());
    assert_eq!(text(&out.stderr), "", "the seed's ~rm lines all succeed");
    assert_eq!(peer.join().unwrap(), CloseReason::Bye { by_peer: true });
    // The last ~rm removed the hello file the session had fetched again.
    assert!(!item_path(&data, H).exists());
}

#[test]
fn get_stores_the_item_and_put_of_a_missing_item_is_refused_locally() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("client");
    let (addr, peer) = spawn_responder();
    let missing = "ab".repeat(32);
    let input = format!("chk hello\n\nput {missing}\nput {H}\n~rm {H}\nget {H}\n");
    let out = shell(&data, &addr.to_string(), &input);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("(not found)\nput {H}\nget {H}\nput {H}\n")
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("put {missing}: not in the local store")),
        "{stderr}"
    );
    // The `get` stored the hello item, durably, in the client's store.
    assert_eq!(std::fs::read(item_path(&data, H)).unwrap(), HELLO_ITEM);
    assert_eq!(peer.join().unwrap(), CloseReason::Bye { by_peer: true });
}

#[test]
fn large_items_go_both_ways_in_chunks() {
    // test.jpg (6,708 bytes) is past the inline limit: `put` and `get` use the chunked form.
    const JPG: &str = "a5ab1c26e5253fb7316b51e7f40687183714e0d683034954e1e8fc67bca42753";
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("client");
    let jpg = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/test.jpg");
    let put = Command::new(env!("CARGO_BIN_EXE_kith"))
        .arg("--data")
        .arg(&data)
        .args(["file", "put"])
        .arg(&jpg)
        .env_remove("KITH_DATA")
        .output()
        .unwrap();
    assert_eq!(text(&put.stdout).trim(), JPG, "{}", text(&put.stderr));
    let (addr, peer) = spawn_responder();
    let input = format!("chk hello\nput {JPG}\n~rm {JPG}\nget {JPG}\n~cat nothing\nbye\n");
    let out = shell(&data, &addr.to_string(), &input);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("(not found)\nput {H}\nget {H}\nput {H}\n")
    );
    assert!(
        text(&out.stderr).contains("~cat nothing"),
        "local errors go to stderr"
    );
    let mut item = vec![1u8];
    item.extend(std::fs::read(&jpg).unwrap());
    assert_eq!(std::fs::read(item_path(&data, JPG)).unwrap(), item);
    assert_eq!(peer.join().unwrap(), CloseReason::Bye { by_peer: true });
}

#[test]
fn a_command_out_of_state_prints_the_peers_error_and_ends_the_session() {
    let tmp = tempfile::tempdir().unwrap();
    let (addr, peer) = spawn_responder();
    let input = format!("chk hello\nget {H}\nput {H}\n");
    let out = shell(&tmp.path().join("client"), &addr.to_string(), &input);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout),
        format!("(not found)\nput {H}\n(error)invalid state for get\n")
    );
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(peer.join().unwrap(), CloseReason::Bye { by_peer: true });

    let (addr, peer) = spawn_responder();
    let out = shell(&tmp.path().join("client"), &addr.to_string(), "frob\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "(error)unknown command 'frob'\n");
    assert_eq!(peer.join().unwrap(), CloseReason::Bye { by_peer: true });
}

#[test]
fn tls_upgrades_the_same_socket() {
    let tmp = tempfile::tempdir().unwrap();
    let (addr, peer) = spawn_responder();
    let input = format!("tls\nchk hello\nput {H}\nbye\n");
    let out = shell(&tmp.path().join("client"), &addr.to_string(), &input);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("(not found)\nput {H}\nget {H}\n")
    );
    assert_eq!(peer.join().unwrap(), CloseReason::Bye { by_peer: true });
}

#[test]
fn help_prints_the_peers_command_list() {
    let tmp = tempfile::tempdir().unwrap();
    let (addr, peer) = spawn_responder();
    let out = shell(&tmp.path().join("client"), &addr.to_string(), "?\n");
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("commands:\n=========\nchk <tag_or_hash>"),
        "{stdout}"
    );
    assert!(stdout.ends_with("bye (terminate session)\n"), "{stdout}");
    assert_eq!(peer.join().unwrap(), CloseReason::Bye { by_peer: true });
}

#[test]
fn an_error_from_the_peer_is_printed_and_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&sock).read_line(&mut line).unwrap();
        (&sock).write_all(b"(error)not today\r\n").unwrap();
        line
    });
    let out = shell(&tmp.path().join("client"), &addr.to_string(), "chk hello\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "(error)not today\n");
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(peer.join().unwrap(), "chk hello\r\n");
}

#[test]
fn a_silent_peer_times_out_with_the_limits_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("client");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("kith.toml"),
        "[limits]\nciyam_request_timeout_ms = 300\n",
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        // Say nothing; hold the socket until the client gives up.
        let mut rest = Vec::new();
        let _ = (&sock).read_to_end(&mut rest);
        rest
    });
    let started = Instant::now();
    let out = shell(&data, &addr.to_string(), "chk hello\n");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(text(&out.stderr), "kith: the peer did not answer in time\n");
    assert_eq!(peer.join().unwrap(), b"chk hello\r\n");
}

#[test]
fn a_closed_port_is_a_one_line_error() {
    let tmp = tempfile::tempdir().unwrap();
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let target = format!("127.0.0.1:{port}");
    let out = shell(&tmp.path().join("client"), &target, "chk hello\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("kith: cannot connect to {target}: ")),
        "{stderr}"
    );
}

/// The seed's first session, through `kith shell` from a pipe, against a fresh node's peer
/// port: the node's own commands follow the reference's interactive-test rule.
#[test]
fn seed_session_one_against_a_kith_node() {
    let tmp = tempfile::tempdir().unwrap();
    let node = tmp.path().join("node");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kith"))
        .arg("--data")
        .arg(&node)
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--peer-listen",
            "127.0.0.1:0",
            "--chat-listen",
            "127.0.0.1:0",
            "--json",
        ])
        .env_remove("KITH_DATA")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    let peer = ready["peer_listen"]
        .as_str()
        .unwrap_or_else(|| panic!("no peer_listen in {line}"))
        .to_string();
    let out = shell(&tmp.path().join("client"), &peer, &seed_input());
    let _ = child.kill();
    let _ = child.wait();
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), seed_output());
}
