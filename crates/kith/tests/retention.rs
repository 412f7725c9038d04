//! Proof of retention between real `kith up` processes on loopback: a node that fetched a
//! file is recorded by its source as holding it, `kith peers --check` proves it, a removed
//! file fails the next check and `kith peers` shows the failure; the background checks run
//! on their own when the interval is short.

mod support;

use serde_json::Value;
use std::path::Path;
use support::{eventually, Node};

/// Small items make the test file a tree, so checks may ask about any of its items.
const SETTINGS_NO_SCHEDULER: &str = "max_item = 1001\n[limits]\nretention_check_interval_ms = 0\n";

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// A's view of `agent` in `kith peers --json`.
fn peer_view(node: &Node, agent: &str) -> Value {
    node.json(&["peers", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["agent"] == agent)
        .cloned()
        .unwrap_or(Value::Null)
}

fn files_held(node: &Node, agent: &str) -> u64 {
    peer_view(node, agent)["retention"]["files_held"]
        .as_u64()
        .unwrap_or(0)
}

/// Two linked nodes with `settings`; B fetches a multi-item file from A. Returns the hash.
fn b_fetches_from_a(tmp: &Path, settings: &str) -> (Node, Node, String) {
    let a = Node::start_with(&tmp.join("a"), settings);
    let b = Node::start_with(&tmp.join("b"), settings);
    b.ok(&["connect", a.ok(&["ticket"]).trim()]);
    let hash = a.put(tmp, "kept.bin", &data(5_000));
    let out = tmp.join("kept.out");
    b.ok(&[
        "file",
        "get",
        &hash,
        "--from",
        &a.agent(),
        "-o",
        out.to_str().unwrap(),
    ]);
    (a, b, hash)
}

#[test]
fn a_peer_that_keeps_the_file_passes_and_one_that_removed_it_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, hash) = b_fetches_from_a(tmp.path(), SETTINGS_NO_SCHEDULER);
    let b_agent = b.agent();
    eventually("A records that B holds the file", || {
        files_held(&a, &b_agent) == 1
    });
    assert_eq!(b.counter("retention_notices_sent"), 1);

    let checks = a.json(&["peers", "--check", &b_agent, "--json"]);
    let checks = checks.as_array().unwrap();
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert_eq!(checks[0]["hash"], hash.as_str());
    assert_eq!(checks[0]["result"], "passed", "{checks:?}");

    b.ok(&["file", "rm", &hash]);
    let checks = a.json(&["peers", "--check", &b_agent, "--json"]);
    assert_eq!(checks[0]["result"], "failed", "{checks}");
    assert!(
        checks[0]["reason"].as_str().unwrap().contains("not found"),
        "{checks}"
    );

    let view = peer_view(&a, &b_agent);
    let retention = &view["retention"];
    assert_eq!(retention["files_held"], 1, "{view}");
    assert_eq!(retention["checks_passed"], 1, "{view}");
    assert_eq!(retention["checks_failed"], 1, "{view}");
    assert!(retention["last_failure"]
        .as_str()
        .unwrap()
        .contains("not found"));
    assert_eq!(retention["last_failure_hash"], hash.as_str());
    assert_eq!(
        view["retention_failures"], 1,
        "the key store counts it too: {view}"
    );
    assert_eq!(a.counter("retention_checks_passed"), 1);
    assert_eq!(a.counter("retention_checks_failed"), 1);
    let text = a.ok(&["peers"]);
    assert!(text.contains("1 check(s) passed, 1 failed"), "{text}");

    // The results are in the database: `kith peers` shows them with no node running.
    drop(a);
    let listed = std::process::Command::new(env!("CARGO_BIN_EXE_kith"))
        .arg("--data")
        .arg(tmp.path().join("a"))
        .args(["peers", "--json"])
        .output()
        .unwrap();
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let b_row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["agent"] == b_agent.as_str())
        .unwrap();
    assert_eq!(b_row["retention"]["checks_failed"], 1, "{b_row}");
}

#[test]
fn placements_go_both_ways_and_a_check_of_an_unknown_peer_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, _) = b_fetches_from_a(tmp.path(), SETTINGS_NO_SCHEDULER);
    eventually("A records the placement", || {
        files_held(&a, &b.agent()) == 1
    });
    // The other way: A fetches a file of B's, and B records that A holds it.
    let theirs = b.put(tmp.path(), "theirs.bin", &data(300));
    let out = tmp.path().join("theirs.out");
    a.ok(&[
        "file",
        "get",
        &theirs,
        "--from",
        &b.agent(),
        "-o",
        out.to_str().unwrap(),
    ]);
    eventually("B records that A holds its file", || {
        files_held(&b, &a.agent()) == 1
    });
    // B's check of A covers that one file (A's own file is not B's to check).
    let checks = b.json(&["peers", "--check", &a.agent(), "--json"]);
    assert_eq!(checks.as_array().unwrap().len(), 1);
    assert_eq!(checks[0]["result"], "passed", "{checks}");
    // A peer that is not known cannot be checked.
    let stranger = "A".repeat(43);
    let err = a.fails(&["peers", "--check", &stranger]);
    assert!(!err.is_empty());
}

#[test]
fn background_checks_run_on_their_own() {
    let tmp = tempfile::tempdir().unwrap();
    let settings = "max_item = 1001\n[limits]\nretention_check_interval_ms = 100\n";
    let (a, b, _) = b_fetches_from_a(tmp.path(), settings);
    eventually("the background checks pass", || {
        a.counter("retention_checks_passed") >= 1
    });
    assert_eq!(a.counter("retention_checks_failed"), 0);
    let view = peer_view(&a, &b.agent());
    assert!(
        view["retention"]["checks_passed"].as_u64().unwrap() >= 1,
        "{view}"
    );
}
