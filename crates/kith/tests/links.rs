//! Secure links between real `kith up` processes on loopback: tickets, pings, restarts,
//! refusals and the abuse guards, observed from outside as a user (or an attacker) would.

mod support;

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::{eventually, Node};

fn with_limits(data: &Path, limits: &str) {
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(data.join("kith.toml"), format!("[limits]\n{limits}\n")).unwrap();
}

/// Reads until the server closes the connection; returns what it sent (must be nothing).
fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Vec<u8> {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => got,
        Err(e) => panic!("server did not close within {within:?}: {e}"),
    }
}

#[test]
fn two_nodes_link_by_ticket_ping_and_relink_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Node::start(&tmp.path().join("a"));
    let mut b = Node::start(&tmp.path().join("b"));
    let ticket = a.ok(&["ticket"]);
    assert!(ticket.trim().starts_with("kith-ticket:"));
    let linked = b.ok(&["connect", ticket.trim()]);
    assert!(linked.contains(&a.agent()), "{linked}");
    assert!(a.ok(&["ping", &b.agent()]).starts_with("pong from"));
    assert!(b.ok(&["ping", &a.agent()]).starts_with("pong from"));
    assert_eq!(a.peer_state(&b.agent()), "linked");
    // Plain `kith peers` says how the peer is reached and where: a direct dial on loopback.
    let line = peer_line(&b, &a.agent());
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[1..3], ["linked", "direct"], "{line}");
    assert!(cols[3].starts_with("127.0.0.1:"), "{line}");

    // B restarts: it re-links to A by itself (N + KK), nobody has to send anything.
    b.stop();
    let b = Node::start(&tmp.path().join("b"));
    eventually("B re-links to A after its restart", || {
        b.peer_state(&a.agent()) == "linked"
    });
    assert!(a.ok(&["ping", &b.agent()]).starts_with("pong from"));
    assert_eq!(a.links(), 1, "one logical link per peer");
    // With no node running, the peer is offline and nothing says how it is reached.
    let mut a = a;
    a.stop();
    let line = peer_line(&a, &b.agent());
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[1..3], ["offline", "-"], "{line}");
}

/// `kith peers`'s line for `agent` (plain output).
fn peer_line(node: &Node, agent: &str) -> String {
    let text = node.ok(&["peers"]);
    text.lines()
        .find(|l| l.starts_with(agent))
        .unwrap_or_else(|| panic!("{agent} not listed: {text}"))
        .to_owned()
}

#[test]
fn a_ticket_naming_no_public_address_warns_on_stderr_and_stays_alone_on_stdout() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Node::start(&tmp.path().join("a"));
    let out = a.kith(&["ticket"]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    assert!(stdout.starts_with("kith-ticket:"), "{stdout:?}");
    assert!(
        stderr.contains(
            "warning: no address in this ticket can be reached from the internet (127.0.0.1:"
        ),
        "{stderr}"
    );
}

#[test]
fn a_reused_ticket_gets_no_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Node::start(&tmp.path().join("a"));
    let b = Node::start(&tmp.path().join("b"));
    let c = Node::start(&tmp.path().join("c"));
    let ticket = a.ok(&["ticket", "--json"]);
    b.ok(&["connect", ticket.trim()]);
    let err = c.fails(&["connect", ticket.trim()]);
    assert!(
        err.contains("closed the connection without answering"),
        "{err}"
    );
    assert_eq!(a.counter("refused_ticket"), 1);
    // An expired ticket: crates/kith-node/tests/tickets.rs, on a clock the test moves.
}

#[test]
fn silent_and_dripping_clients_are_dropped_at_the_handshake_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("a");
    with_limits(&data, "handshake_timeout_ms = 500");
    let a = Node::start(&data);
    let started = Instant::now();
    let mut silent = TcpStream::connect(a.listen()).unwrap();
    assert!(read_until_closed(&mut silent, Duration::from_secs(5)).is_empty());
    assert!(started.elapsed() >= Duration::from_millis(400));

    // One byte every 100 ms of a plausible frame: still cut off at the total deadline.
    let mut drip = TcpStream::connect(a.listen()).unwrap();
    let started = Instant::now();
    let mut closed = false;
    for byte in [0u8, 0, 0, 60, b'N'].iter().chain([0u8; 60].iter()) {
        if drip.write_all(&[*byte]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    assert!(closed || read_until_closed(&mut drip, Duration::from_secs(3)).is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "dropped at the deadline, not later"
    );
    assert!(a.counter("handshake_failed") >= 2);
}

#[test]
fn an_oversized_frame_is_refused_from_its_length_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Node::start(&tmp.path().join("a"));
    let mut stream = TcpStream::connect(a.listen()).unwrap();
    stream.write_all(&u32::MAX.to_be_bytes()).unwrap();
    let started = Instant::now();
    assert!(read_until_closed(&mut stream, Duration::from_secs(5)).is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "no waiting for 4 GiB that never come"
    );
}

#[test]
fn an_address_that_keeps_failing_is_blocked_for_a_while() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("a");
    with_limits(&data, "max_failures_per_addr = 2\nblock_secs = 300");
    let a = Node::start(&data);
    for _ in 0..2 {
        let mut s = TcpStream::connect(a.listen()).unwrap();
        s.write_all(b"\x00\x00\x00\x05Xjunk").unwrap();
        read_until_closed(&mut s, Duration::from_secs(5));
    }
    eventually("the third attempt is refused at once", || {
        let mut s = TcpStream::connect(a.listen()).unwrap();
        read_until_closed(&mut s, Duration::from_secs(5));
        a.counter("refused_addr_blocked") >= 1
    });
}

#[test]
fn idle_links_are_closed_by_the_responder_and_come_back_on_demand() {
    let tmp = tempfile::tempdir().unwrap();
    let (da, db) = (tmp.path().join("a"), tmp.path().join("b"));
    with_limits(&da, "idle_timeout_ms = 700");
    with_limits(&db, "idle_timeout_ms = 700");
    let a = Node::start(&da);
    let b = Node::start(&db);
    b.ok(&["connect", a.ok(&["ticket"]).trim()]);
    assert_eq!(a.peer_state(&b.agent()), "linked");
    eventually("A (the responder) closes the idle link", || {
        a.counter("links_idle_closed") == 1
    });
    eventually("B sees it closed", || b.peer_state(&a.agent()) == "idle");
    assert_eq!(
        b.counter("links_lost"),
        0,
        "an idle close is orderly, not a loss to redial"
    );
    assert!(
        b.ok(&["ping", &a.agent()]).starts_with("pong from"),
        "a user command dials at once"
    );
}

#[test]
fn both_sides_restarting_at_once_converge_on_one_link() {
    let tmp = tempfile::tempdir().unwrap();
    let (da, db) = (tmp.path().join("a"), tmp.path().join("b"));
    let (mut a, mut b) = (Node::start(&da), Node::start(&db));
    // Fixed ports, so both remember where the other is after a restart.
    b.ok(&["connect", a.ok(&["ticket"]).trim()]);
    let (agent_a, agent_b) = (a.agent(), b.agent());
    a.ok(&["ping", &agent_b]);
    let (listen_a, listen_b) = (a.listen(), b.listen());
    a.stop();
    b.stop();
    let start_at = |data: &Path, listen: &str| Node::start_listening(data, listen);
    // B learned A's port from the ticket; A learned B's from B's first-contact request.
    let a = start_at(&da, &listen_a);
    let b = start_at(&db, &listen_b);
    eventually("both sides linked", || {
        a.peer_state(&agent_b) == "linked" && b.peer_state(&agent_a) == "linked"
    });
    assert!(a.ok(&["ping", &agent_b]).starts_with("pong"));
    assert!(b.ok(&["ping", &agent_a]).starts_with("pong"));
    eventually("duplicates retired", || a.links() == 1 && b.links() == 1);
}

#[test]
fn blocked_and_removed_peers_cannot_link() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Node::start(&tmp.path().join("a"));
    let b = Node::start(&tmp.path().join("b"));
    b.ok(&["connect", a.ok(&["ticket"]).trim()]);
    a.ok(&["peers", "--block", &b.agent()]);
    eventually("the link is closed", || {
        b.peer_state(&a.agent()) != "linked"
    });
    let err = b.fails(&["ping", &a.agent()]);
    assert!(err.contains("without answering"), "{err}");
    assert!(a.counter("refused_unknown_peer") >= 1);
    a.ok(&["peers", "--unblock", &b.agent()]);
    a.ok(&["peers", "--remove", &b.agent()]);
    let err = a.fails(&["ping", &b.agent()]);
    assert!(err.contains("not a known peer"), "{err}");
}

#[test]
fn the_reference_cipher_order_is_set_per_peer_and_both_ends_must_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Node::start(&tmp.path().join("a"));
    let b = Node::start(&tmp.path().join("b"));
    b.ok(&["connect", a.ok(&["ticket"]).trim()]);
    let err = a.fails(&["peers", "--reference-order", &a.agent()]);
    assert!(err.contains("not a known peer"), "{err}");
    a.ok(&["peers", "--reference-order", &b.agent()]);
    b.ok(&["peers", "--reference-order", &a.agent()]);
    let peers = a.json(&["peers", "--json"]);
    assert_eq!(peers[0]["reference_order"], true, "{peers}");
    b.ok(&["ping", &a.agent()]);
    assert!(a.counter("links_reference_order") >= 1);
    // One end back to the specification's order: its links with the other fail, counted.
    b.ok(&["peers", "--reference-order", &a.agent(), "--undo"]);
    b.fails(&["ping", &a.agent()]);
    eventually("the mismatch is counted", || {
        a.counter("links_undecryptable") + b.counter("links_undecryptable") >= 1
    });
    a.ok(&["peers", "--reference-order", &b.agent(), "--undo"]);
    eventually("they link again", || {
        b.kith(&["ping", &a.agent()]).status.success()
    });
}

#[test]
fn commands_that_need_the_network_say_no_node_is_running() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kith"))
        .arg("--data")
        .arg(tmp.path())
        .args(["ping", "QF6N3S5BRMn-kSldzcjMasYQwauiSvu0r-VpmVv_qHU"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("kith up"));
}

/// A peer that is linked but answers nothing (here: frozen with SIGSTOP) is reported as the
/// peer not answering, exit 1, never as our own node not answering. The control timeout is no
/// longer than the ping's own, as by default (10 s each): before, the CLI gave up first and
/// blamed the local node.
#[test]
fn ping_to_a_peer_that_does_not_answer_names_the_peer_not_our_node() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Node::start_with(
        &tmp.path().join("a"),
        "[limits]\nping_timeout_ms = 1500\ncontrol_timeout_ms = 1500\n",
    );
    let b = Node::start(&tmp.path().join("b"));
    b.ok(&["connect", a.ok(&["ticket"]).trim()]);
    assert!(a.ok(&["ping", &b.agent()]).starts_with("pong from"));
    let b_pid = b.json(&["status", "--json"])["pid"]
        .as_u64()
        .unwrap()
        .to_string();
    let signal = |sig: &str| {
        assert!(Command::new("kill")
            .args([sig, &b_pid])
            .status()
            .unwrap()
            .success())
    };
    signal("-STOP");
    let out = a.kith(&["ping", &b.agent()]);
    signal("-CONT");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{} did not answer within 1.5s", b.agent())),
        "{err}"
    );
    assert!(!err.contains("the node on"), "{err}");
    // Awake again, it answers.
    assert!(a.ok(&["ping", &b.agent()]).starts_with("pong from"));
}

#[test]
fn raw_mode_links_on_loopback_and_is_refused_facing_the_network() {
    let tmp = tempfile::tempdir().unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_kith"))
        .arg("--data")
        .arg(tmp.path().join("x"))
        .args([
            "up",
            "--raw",
            "--listen",
            "0.0.0.0:0",
            "--peer-listen",
            "off",
            "--chat-listen",
            "off",
        ])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("loopback"));

    let start_raw = |name: &str| {
        let data = tmp.path().join(name);
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("kith.toml"), "raw_links = true\n").unwrap();
        Node::start(&data)
    };
    let (a, b) = (start_raw("a"), start_raw("b"));
    b.ok(&["connect", a.ok(&["ticket"]).trim()]);
    assert!(b.ok(&["ping", &a.agent()]).starts_with("pong from"));
}

/// Two `kith up` processes of one site, each with its own data dir and identity, share one
/// PostgreSQL database: a peer one of them records is visible to the other.
#[test]
#[cfg_attr(
    not(kith_test_postgres),
    ignore = "needs PostgreSQL: set KITH_TEST_POSTGRES=postgres://user:pass@host/db (.ci/run does)"
)]
fn two_processes_sharing_postgres_see_each_others_peers() {
    let base = std::env::var("KITH_TEST_POSTGRES").expect("KITH_TEST_POSTGRES, set at build time");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let schema = format!("kith_links_{}_{nanos}", std::process::id());
    let mut admin = postgres::Client::connect(&base, postgres::NoTls).expect("connect");
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-csearch_path%3D{schema}");

    let tmp = tempfile::tempdir().unwrap();
    let site = |name: &str| {
        let data = tmp.path().join(name);
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("kith.toml"), format!("db = {:?}\n", url)).unwrap();
        Node::start(&data)
    };
    let (site1, site2) = (site("site1"), site("site2"));
    let outsider = Node::start(&tmp.path().join("outsider"));
    outsider.ok(&["connect", site1.ok(&["ticket"]).trim()]);
    // The responder records its new peer just after its last handshake message, so the
    // initiator's `connect` may return first.
    eventually("site2 sees the peer site1 recorded", || {
        site2.peer_state(&outsider.agent()) == "idle"
    });
    // And a ticket issued by one process is redeemed once across both.
    let ticket = site2.ok(&["ticket", "--json"]);
    let listed: Value = serde_json::from_str(&site1.ok(&["ticket", "--list", "--json"])).unwrap();
    let token = serde_json::from_str::<Value>(&ticket).unwrap()["token"].clone();
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["token"] == token));
    drop((site1, site2, outsider));
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .unwrap();
}

#[test]
fn issued_tickets_are_listed_and_a_revoked_one_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Node::start(&tmp.path().join("a"));
    let b = Node::start(&tmp.path().join("b"));
    let ticket: Value =
        serde_json::from_str(&a.ok(&["ticket", "--json", "--reusable", "--cuid", "carol"]))
            .unwrap();
    assert_eq!(ticket["chad"]["cuid"], "carol");
    assert_eq!(ticket["chad"]["agent"], a.agent().as_str());
    let token = ticket["token"].as_str().unwrap();
    let listed: Value = serde_json::from_str(&a.ok(&["ticket", "--list", "--json"])).unwrap();
    assert_eq!(listed[0]["token"], token);
    assert_eq!(listed[0]["reusable"], true);
    a.ok(&["ticket", "--revoke", token]);
    let err = b.fails(&["connect", &ticket.to_string()]);
    assert!(err.contains("without answering"), "{err}");
    let err = a.fails(&["ticket", "--revoke", "00000000000000000000000000000000"]);
    assert!(err.contains("no issued ticket"), "{err}");
}

#[test]
fn a_peer_that_comes_back_on_another_port_is_redialled_there() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Node::start(&tmp.path().join("a"));
    let mut b = Node::start(&tmp.path().join("b"));
    b.ok(&["connect", a.ok(&["ticket"]).trim()]);
    let old = a.listen();
    a.stop();
    // A comes back on a new free port and redials B, telling it where it listens now.
    let a = Node::start(&tmp.path().join("a"));
    assert_ne!(a.listen(), old);
    eventually("A re-links with B", || a.links() == 1);
    eventually("B records A's new address", || {
        b.counter("peer_addresses_updated") >= 1
    });
    // Now B restarts: it finds A at the new address by itself.
    b.stop();
    let b = Node::start(&tmp.path().join("b"));
    eventually("B re-links with A at its new port", || {
        b.peer_state(&a.agent()) == "linked"
    });
}
