//! Fair replication between real `kith up` processes: `kith file share` offers a file, linked
//! peers fetch it in the background (and peers that link later too), a quota of 0 declines,
//! and a user's `kith file get` is served at once while a background replication from the
//! same peer is running (the replication gives way, then finishes).

mod support;

use serde_json::Value;

use support::{data, eventually, Node};

/// Small items: a modest file becomes a tree of many items, so a replication takes a while.
const SETTINGS: &str = "max_item = 1001\n";

fn has_file(node: &Node, hash: &str) -> bool {
    let files = node.json(&["file", "ls", "--json"]);
    files.as_array().unwrap().iter().any(|f| f["hash"] == hash)
}

fn link(a: &Node, b: &Node) {
    b.ok(&["connect", a.ok(&["ticket"]).trim()]);
}

#[test]
fn a_shared_file_is_replicated_to_linked_peers_and_to_peers_that_link_later() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Node::start_with(&tmp.path().join("a"), SETTINGS);
    let b = Node::start_with(&tmp.path().join("b"), SETTINGS);
    link(&a, &b);
    let content = data(30_000, 1);
    let hash = a.put(tmp.path(), "shared.bin", &content);

    let shared: Value = a.json(&["file", "share", &hash, "--json"]);
    assert_eq!(shared["newly_shared"], true);
    assert_eq!(shared["offered_to"], serde_json::json!([b.agent()]));
    eventually("B replicates the shared file", || has_file(&b, &hash));
    let out = tmp.path().join("copy.bin");
    b.ok(&["file", "get", &hash, "-o", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), content);
    assert_eq!(b.counter("replications_completed"), 1);

    // What A gave B shows on both sides' peer lists.
    let peers = b.json(&["peers", "--json"]);
    let from_a = &peers.as_array().unwrap()[0]["exchanged"];
    assert!(from_a["bytes_received"].as_u64().unwrap() >= content.len() as u64);
    let peers = a.json(&["peers", "--json"]);
    assert!(peers[0]["exchanged"]["bytes_sent"].as_u64().unwrap() >= content.len() as u64);

    // Sharing again changes nothing; a third node that links later gets it offered.
    let again: Value = a.json(&["file", "share", &hash, "--json"]);
    assert_eq!(again["newly_shared"], false);
    let c = Node::start_with(&tmp.path().join("c"), SETTINGS);
    link(&a, &c);
    eventually("C, linked later, replicates it", || has_file(&c, &hash));
    eventually("B merged the repeated offer", || {
        b.counter("offers_already_held") >= 1
    });
    assert_eq!(b.counter("replications_completed"), 1);
}

#[test]
fn a_file_shared_while_no_node_runs_is_offered_once_it_does() {
    let tmp = tempfile::tempdir().unwrap();
    let a_dir = tmp.path().join("a");
    support::write_settings(&a_dir, SETTINGS);
    let path = tmp.path().join("early.bin");
    std::fs::write(&path, data(5_000, 2)).unwrap();
    let offline = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kith"))
            .arg("--data")
            .arg(&a_dir)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{:?}", out);
        String::from_utf8(out.stdout).unwrap()
    };
    let hash = offline(&["file", "put", path.to_str().unwrap()])
        .trim()
        .to_owned();
    let printed = offline(&["file", "share", &hash]);
    assert!(
        printed.contains("offered to peers once `kith up` runs"),
        "{printed}"
    );
    let a = Node::start(&a_dir);
    let b = Node::start_with(&tmp.path().join("b"), SETTINGS);
    link(&a, &b);
    eventually("B replicates the file shared before A ran", || {
        has_file(&b, &hash)
    });
    // Unsharing stops further offers; sharing an unknown file is refused.
    assert!(a
        .ok(&["file", "share", &hash, "--stop"])
        .contains("no longer offered"));
    let err = a.fails(&["file", "share", &"0".repeat(64)]);
    assert!(err.contains("no stored file has the hash"), "{err}");
}

#[test]
fn a_node_with_no_replica_quota_declines_offers() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Node::start_with(&tmp.path().join("a"), SETTINGS);
    let b = Node::start_with(
        &tmp.path().join("b"),
        &format!("{SETTINGS}[limits]\nmax_replica_bytes = 0\n"),
    );
    link(&a, &b);
    let hash = a.put(tmp.path(), "unwanted.bin", &data(3_000, 3));
    a.ok(&["file", "share", &hash]);
    eventually("B declines the offer", || {
        b.counter("offers_declined_quota") == 1
    });
    assert!(!has_file(&b, &hash));
}
