//! Reach in the namespace lab (`support::lab`): real `kith up` processes behind real NATs
//! (nftables masquerade that drops unsolicited inbound traffic), with a helper node on the
//! public segment. Root only: gated by `KITH_TEST_NETNS`.
//!
//! - Behind two ordinary (port-keeping) NATs, A and B link with a short code and a hole
//!   punched through the helper: the link's remote is the other NAT's public address, `kith peers` says
//!   `punched`, and a file and a chat message go over it. Prints the time to link.
//! - Behind two symmetric NATs (a new port per destination), with a short code, punching
//!   fails and the helper,
//!   which relays (`--relay`), carries the link: `relayed`, and a file and a chat message go
//!   over it. Prints the relay's throughput next to a direct link's.
//! - A node with a public address moves to another (and restarts there); its peer behind a
//!   NAT finds it again through the DHT (the helper is the lab's DHT bootstrap), where it
//!   published its addresses under its key.
//! - A ticket warns on stderr when nothing in it is public, and when its node is behind a
//!   NAT with no linked peer to broker a punch to it.
//! - Two nodes on one LAN segment hear each other by mDNS (`kith peers --nearby`), each key
//!   proven at its LAN address.

mod support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::lab::{Lab, Nat};
use support::{eventually, write_settings, Node};

fn link_with(node: &Node, agent: &str) -> Value {
    let peers = node.json(&["peers", "--json"]);
    peers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["agent"] == agent)
        .map(|p| p["link"].clone())
        .unwrap_or(Value::Null)
}

/// How plain `kith peers` says `agent` is reached: `[via, remote]`.
fn reached(node: &Node, agent: &str) -> Vec<String> {
    let text = node.ok(&["peers"]);
    let line = text.lines().find(|l| l.starts_with(agent)).unwrap();
    line.split_whitespace()
        .skip(2)
        .take(2)
        .map(str::to_owned)
        .collect()
}

fn node_id(node: &Node) -> String {
    node.ready["node_id"].as_str().unwrap().to_owned()
}

fn has_text(node: &Node, text: &str) -> bool {
    node.ok(&["chat", "read", "--json"])
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .any(|m| m["text"] == text)
}

/// A lab with the helper up and A and B each linked to it; returns the indices of the
/// helper, A and B in `lab.nodes`.
fn linked_to_helper(lab: &mut Lab, tmp: &std::path::Path) -> (usize, usize, usize) {
    let h = lab.start(
        "helper",
        &tmp.join("helper"),
        &["--announce", "203.0.113.10:7420", "--relay"],
    );
    let a = lab.start("a", &tmp.join("a"), &[]);
    let b = lab.start("b", &tmp.join("b"), &[]);
    let ticket = lab.nodes[h].ok(&["ticket", "--reusable"]);
    lab.nodes[a].ok(&["connect", ticket.trim()]);
    lab.nodes[b].ok(&["connect", ticket.trim()]);
    (h, a, b)
}

#[test]
#[cfg_attr(
    not(kith_test_netns),
    ignore = "needs root, ip netns and nftables: set KITH_TEST_NETNS=1 (.ci/run does)"
)]
fn behind_two_nats_a_and_b_link_by_a_hole_punched_through_the_helper() {
    let tmp = tempfile::tempdir().unwrap();
    let mut lab = Lab::new(Nat::Cone, Nat::Cone);
    let (h, a, b) = linked_to_helper(&mut lab, tmp.path());
    let (helper, na, nb) = (&lab.nodes[h], &lab.nodes[a], &lab.nodes[b]);

    // B's ticket names its public address as the helper sees it (NAT B's, the listening
    // port kept) and the helper as its broker; it is the only line on stdout.
    let out = nb.kith(&["ticket"]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    let ticket: Value = nb.json(&["ticket", "--json"]);
    assert_eq!(ticket["chad"]["host"], "203.0.113.2", "{ticket}");
    assert_eq!(ticket["chad"]["port"], 7420);
    assert!(ticket["via"]
        .as_array()
        .unwrap()
        .contains(&Value::from(helper.agent())));

    // B hands A a short code instead (one line on stdout); A redeems it through the helper's
    // mailbox, NAT B drops A's dial, the helper introduces them, and they punch through.
    let code = nb.ok(&["ticket", "--code"]);
    assert_eq!(code.lines().count(), 1, "{code:?}");
    let started = Instant::now();
    na.ok(&["connect", code.trim()]);
    let took = started.elapsed();
    eventually("B counts the link", || {
        !link_with(nb, &na.agent()).is_null()
    });
    let seen_by_a = link_with(na, &nb.agent());
    let seen_by_b = link_with(nb, &na.agent());
    assert_eq!(seen_by_a["via"], "punched", "{seen_by_a}");
    assert_eq!(seen_by_b["via"], "punched", "{seen_by_b}");
    assert_eq!(reached(na, &nb.agent()), ["punched", "203.0.113.2:7420"]);
    assert_eq!(
        seen_by_a["remote"], "203.0.113.2:7420",
        "NAT B's public address"
    );
    assert_eq!(
        seen_by_b["remote"], "203.0.113.1:7420",
        "NAT A's public address"
    );
    assert_eq!(helper.counter("punch_introductions"), 1);
    assert_eq!(nb.counter("codes_redeemed"), 1);
    eprintln!(
        "lab: code redeemed and punched link in {:.2} s",
        took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(10), "{took:?}");

    // A file and a chat message over it.
    let bytes = support::data(300_000, 7);
    let hash = nb.put(tmp.path(), "f.bin", &bytes);
    let got = tmp.path().join("got.bin");
    na.ok(&[
        "file",
        "get",
        &hash,
        "--from",
        &nb.agent(),
        "-o",
        got.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&got).unwrap(), bytes);
    na.ok(&["chat", "send", &node_id(nb), "hello through the NATs"]);
    eventually("B reads A's message", || {
        has_text(nb, "hello through the NATs")
    });
}

/// `kith ticket`'s stdout (one line) and stderr.
fn ticket_and_stderr(node: &Node) -> (String, String) {
    let out = node.kith(&["ticket"]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    (stdout, String::from_utf8(out.stderr).unwrap())
}

#[test]
#[cfg_attr(
    not(kith_test_netns),
    ignore = "needs root, ip netns and nftables: set KITH_TEST_NETNS=1 (.ci/run does)"
)]
fn a_ticket_warns_on_stderr_when_it_cannot_be_reached_from_the_internet() {
    let tmp = tempfile::tempdir().unwrap();
    let mut lab = Lab::new(Nat::Cone, Nat::Cone);
    let h = lab.start(
        "helper",
        &tmp.path().join("helper"),
        &["--announce", "203.0.113.10:7420"],
    );
    let a = lab.start("a", &tmp.path().join("a"), &[]);
    // Linked to nobody, A knows no public address of its own.
    let (_, stderr) = ticket_and_stderr(&lab.nodes[a]);
    assert!(
        stderr.contains("warning: no address in this ticket can be reached from the internet"),
        "{stderr}"
    );
    // Linked to the helper, A knows its NAT's address and has a broker: no warning.
    let helper_ticket = lab.nodes[h].ok(&["ticket"]);
    lab.nodes[a].ok(&["connect", helper_ticket.trim()]);
    let (_, stderr) = ticket_and_stderr(&lab.nodes[a]);
    assert!(!stderr.contains("warning"), "{stderr}");
    // The helper goes: A still knows its public address (behind a port-keeping NAT, listening
    // on 0.0.0.0), but nobody can broker a punch to it.
    let helper_agent = lab.nodes[h].agent();
    lab.nodes[h].stop();
    eventually("A's link with the helper is down", || {
        link_with(&lab.nodes[a], &helper_agent).is_null()
    });
    let (ticket, stderr) = ticket_and_stderr(&lab.nodes[a]);
    assert!(ticket.starts_with("kith-ticket:"), "{ticket}");
    assert!(
        stderr.contains("warning: this node is behind a NAT and no linked peer can broker"),
        "{stderr}"
    );
}

/// Fetches `hash` from `from` into a new file; returns the seconds it took.
fn timed_get(to: &Node, from: &Node, hash: &str, out: &std::path::Path) -> f64 {
    let started = Instant::now();
    to.ok(&[
        "file",
        "get",
        hash,
        "--from",
        &from.agent(),
        "-o",
        out.to_str().unwrap(),
    ]);
    started.elapsed().as_secs_f64()
}

#[test]
#[cfg_attr(
    not(kith_test_netns),
    ignore = "needs root, ip netns and nftables: set KITH_TEST_NETNS=1 (.ci/run does)"
)]
fn behind_symmetric_nats_the_helper_relays_and_a_file_and_chat_still_go_through() {
    let tmp = tempfile::tempdir().unwrap();
    let mut lab = Lab::new(Nat::Symmetric, Nat::Symmetric);
    let (h, a, b) = linked_to_helper(&mut lab, tmp.path());
    let (helper, na, nb) = (&lab.nodes[h], &lab.nodes[a], &lab.nodes[b]);

    let code = nb.ok(&["ticket", "--code"]);
    let started = Instant::now();
    na.ok(&["connect", code.trim()]);
    let took = started.elapsed();
    eventually("B counts the link", || {
        !link_with(nb, &na.agent()).is_null()
    });
    assert_eq!(link_with(na, &nb.agent())["via"], "relayed");
    assert_eq!(link_with(nb, &na.agent())["via"], "relayed");
    assert_eq!(reached(na, &nb.agent())[0], "relayed");
    assert_eq!(na.counter("punches_failed"), 1);
    assert_eq!(helper.counter("relay_circuits_opened"), 1);
    eprintln!(
        "lab: relayed link in {:.2} s (after a failed punch)",
        took.as_secs_f64()
    );

    // A chat message, and the same 16 MiB file over the relay (from B) and over A's direct
    // link with the helper.
    na.ok(&["chat", "send", &node_id(nb), "hello through the relay"]);
    eventually("B reads A's message", || {
        has_text(nb, "hello through the relay")
    });
    let size = 16 * 1024 * 1024;
    let bytes = support::data(size, 11);
    let hash = nb.put(tmp.path(), "big.bin", &bytes);
    assert_eq!(helper.put(tmp.path(), "big.bin", &bytes), hash);
    let relayed = timed_get(na, nb, &hash, &tmp.path().join("relayed.bin"));
    assert_eq!(
        std::fs::read(tmp.path().join("relayed.bin")).unwrap(),
        bytes
    );
    na.ok(&["file", "rm", &hash]);
    let direct = timed_get(na, helper, &hash, &tmp.path().join("direct.bin"));
    assert_eq!(std::fs::read(tmp.path().join("direct.bin")).unwrap(), bytes);
    let mib = size as f64 / (1024.0 * 1024.0);
    eprintln!(
        "lab: 16 MiB relayed {:.1} MiB/s ({relayed:.2} s), direct {:.1} MiB/s ({direct:.2} s)",
        mib / relayed,
        mib / direct
    );
    assert!(helper.counter("relay_bytes") >= size as u64);
}

fn nearby(node: &Node, agent: &str) -> Option<Value> {
    node.json(&["peers", "--nearby", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["agent"] == agent)
        .cloned()
}

#[test]
#[cfg_attr(
    not(kith_test_netns),
    ignore = "needs root, ip netns and nftables: set KITH_TEST_NETNS=1 (.ci/run does)"
)]
fn nodes_on_one_lan_hear_each_other_by_mdns() {
    let tmp = tempfile::tempdir().unwrap();
    let mut lab = Lab::new(Nat::Cone, Nat::Cone);
    let a = lab.start("a", &tmp.path().join("a"), &[]);
    let c = lab.start("c", &tmp.path().join("c"), &[]);
    let b = lab.start("b", &tmp.path().join("b"), &[]);
    let (na, nc, nb) = (&lab.nodes[a], &lab.nodes[c], &lab.nodes[b]);
    let started = Instant::now();
    eventually("A hears C and proves its key", || {
        nearby(na, &nc.agent()).is_some_and(|n| n["verified"] == true)
    });
    eprintln!(
        "lab: mDNS neighbour verified in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let heard = nearby(na, &nc.agent()).unwrap();
    assert_eq!(heard["addrs"], serde_json::json!(["192.168.1.3:7420"]));
    eventually("C hears A", || nearby(nc, &na.agent()).is_some());
    // B is on another segment: nobody hears it.
    assert!(nearby(na, &nb.agent()).is_none());
    assert!(nb
        .json(&["peers", "--nearby", "--json"])
        .as_array()
        .unwrap()
        .is_empty());
}

/// Waits up to `secs` for `check`.
fn wait_for(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[cfg_attr(
    not(kith_test_netns),
    ignore = "needs root, ip netns and nftables: set KITH_TEST_NETNS=1 (.ci/run does)"
)]
fn a_peer_that_moved_is_found_again_through_the_dht() {
    let tmp = tempfile::tempdir().unwrap();
    let mut lab = Lab::new(Nat::Cone, Nat::Cone);
    let (hd, ad, dd) = (
        tmp.path().join("helper"),
        tmp.path().join("a"),
        tmp.path().join("d"),
    );
    write_settings(
        &hd,
        "dht_server = true\ndht_port = 6881\ndht_bootstrap = []\n",
    );
    let boot = "dht_bootstrap = [\"203.0.113.10:6881\"]\n";
    write_settings(&ad, boot);
    write_settings(&dd, &format!("{boot}dht_publish = true\n"));
    let h = lab.start("helper", &hd, &["--announce", "203.0.113.10:7420"]);
    let a = lab.start("a", &ad, &[]);
    let d = lab.start("d", &dd, &["--listen", "203.0.113.20:7420"]);
    let helper_ticket = lab.nodes[h].ok(&["ticket"]);
    lab.nodes[a].ok(&["connect", helper_ticket.trim()]);
    let d_ticket = lab.nodes[d].ok(&["ticket"]);
    lab.nodes[a].ok(&["connect", d_ticket.trim()]);
    let d_agent = lab.nodes[d].agent();
    assert_eq!(
        link_with(&lab.nodes[a], &d_agent)["remote"],
        "203.0.113.20:7420"
    );
    wait_for("D publishes its address", 30, || {
        lab.nodes[d].counter("dht_published") >= 1
    });

    // D's line is renumbered; it comes back on the new address. It cannot reach A (behind
    // NAT A, no broker in common), so A must find D.
    lab.nodes[d].stop();
    lab.readdress("d", "203.0.113.20/24", "203.0.113.21/24");
    let started = Instant::now();
    let d2 = lab.start("d", &dd, &["--listen", "203.0.113.21:7420"]);
    wait_for("D publishes its new address", 30, || {
        lab.nodes[d2].counter("dht_published") >= 1
    });
    // D said `bye` when it stopped, so A redials only when it has something to say: a ping.
    wait_for("A links with D at its new address", 90, || {
        let _ = lab.nodes[a].kith(&["ping", &d_agent]);
        link_with(&lab.nodes[a], &d_agent)["remote"] == "203.0.113.21:7420"
    });
    eprintln!(
        "lab: found again through the DHT {:.1} s after the restart",
        started.elapsed().as_secs_f64()
    );
    assert!(lab.nodes[a].counter("dht_found") >= 1);
}
