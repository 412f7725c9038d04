//! Reach in the namespace lab (`support::lab`): real `kith up` processes behind real NATs
//! (nftables masquerade that drops unsolicited inbound traffic), with a helper node on the
//! public segment. Root only: gated by `KITH_TEST_NETNS`.
//!
//! - Behind two ordinary (port-keeping) NATs, A and B link by a hole punched through the
//!   helper: the link's remote is the other NAT's public address, `kith peers` says
//!   `punched`, and a file and a chat message go over it. Prints the time to link.

mod support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::lab::{Lab, Nat};
use support::{eventually, Node};

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
        &["--announce", "203.0.113.10:7420"],
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

    // NAT B drops A's dial; the helper introduces them, and they punch through.
    let started = Instant::now();
    na.ok(&["connect", stdout.trim()]);
    let took = started.elapsed();
    eventually("B counts the link", || !link_with(nb, &na.agent()).is_null());
    let seen_by_a = link_with(na, &nb.agent());
    let seen_by_b = link_with(nb, &na.agent());
    assert_eq!(seen_by_a["via"], "punched", "{seen_by_a}");
    assert_eq!(seen_by_b["via"], "punched", "{seen_by_b}");
    assert_eq!(seen_by_a["remote"], "203.0.113.2:7420", "NAT B's public address");
    assert_eq!(seen_by_b["remote"], "203.0.113.1:7420", "NAT A's public address");
    assert_eq!(helper.counter("punch_introductions"), 1);
    eprintln!("lab: punched link in {:.2} s", took.as_secs_f64());
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
