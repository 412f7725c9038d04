//! File exchange over secure links between real `kith up` processes on loopback:
//! `kith file get HASH --from AGENT`, both ways, single-item and multi-item files, a file the
//! peer does not have, and a transfer that resumes after the source node died mid-way.

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{data, eventually, Node};

/// Small items make a modest file a tree of many items (999 content bytes per chunk).
const MAX_ITEM: usize = 1001;

/// A node whose store cuts files into `MAX_ITEM`-byte items.
fn start(data: &Path) -> Node {
    Node::start_with(data, &format!("max_item = {MAX_ITEM}\n"))
}

/// `file get HASH --from AGENT -o OUT --force --json` (OUT is replaced: tests write the same
/// path again); returns the fetch report.
fn get_from(node: &Node, hash: &str, from: &str, out: &Path) -> Value {
    let printed = node.ok(&[
        "file",
        "get",
        hash,
        "--from",
        from,
        "-o",
        out.to_str().unwrap(),
        "--force",
        "--json",
    ]);
    let report: Value = serde_json::from_str(&printed).unwrap();
    report["fetched"].clone()
}

/// Two linked nodes (B connected to A with A's ticket).
fn linked_pair(tmp: &Path) -> (Node, Node) {
    let a = start(&tmp.join("a"));
    let b = start(&tmp.join("b"));
    b.ok(&["connect", a.ok(&["ticket"]).trim()]);
    (a, b)
}

#[test]
fn files_move_both_ways_single_and_multi_item() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = linked_pair(tmp.path());
    let small = data(700, 1);
    let large = data(40 * (MAX_ITEM - 1) + 123, 2);
    let small_hash = a.put(tmp.path(), "small.bin", &small);
    let large_hash = a.put(tmp.path(), "large.bin", &large);

    let out = tmp.path().join("small.out");
    let report = get_from(&b, &small_hash, &a.agent(), &out);
    assert_eq!(std::fs::read(&out).unwrap(), small);
    assert_eq!(report["kind"], "blob");
    assert_eq!(report["items_fetched"], 1);

    let out = tmp.path().join("large.out");
    let report = get_from(&b, &large_hash, &a.agent(), &out);
    assert_eq!(std::fs::read(&out).unwrap(), large);
    assert_eq!(report["kind"], "list");
    let items = report["items_fetched"].as_u64().unwrap();
    assert!(items > 41, "root list, its lists and 41 chunks: {report}");
    assert_eq!(b.counter("items_received"), 1 + items);
    assert!(a.counter("exchange_items_sent") > items);
    // B now holds it as a file of its own: a plain `file get` works with no peer.
    let listed = b.ok(&["file", "ls", "--json"]);
    assert!(listed.contains(&large_hash), "{listed}");

    // Asking again moves nothing: every item is already here.
    let report = get_from(&b, &large_hash, &a.agent(), &out);
    assert_eq!(report["items_fetched"], 0);
    assert_eq!(b.counter("items_received"), 1 + items);

    // The other way: A fetches from B, over the link B opened.
    let back = data(3 * (MAX_ITEM - 1), 3);
    let back_hash = b.put(tmp.path(), "back.bin", &back);
    let out = tmp.path().join("back.out");
    get_from(&a, &back_hash, &b.agent(), &out);
    assert_eq!(std::fs::read(&out).unwrap(), back);

    // Without --from, a running node asks its linked peers.
    let other = data(2000, 4);
    let other_hash = b.put(tmp.path(), "other.bin", &other);
    let out = tmp.path().join("other.out");
    a.ok(&["file", "get", &other_hash, "-o", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), other);
}

#[test]
fn a_file_the_peer_lacks_or_an_unknown_agent_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = linked_pair(tmp.path());
    let absent = "ab".repeat(32);
    let out = tmp.path().join("x.out");
    let err = b.fails(&[
        "file",
        "get",
        &absent,
        "--from",
        &a.agent(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(err.contains("(not found)"), "{err}");
    assert!(!out.exists());

    // A stranger's agent id: not a peer.
    let c = start(&tmp.path().join("c"));
    let err = b.fails(&["file", "get", &absent, "--from", &c.agent()]);
    assert!(err.contains("not a known peer"), "{err}");

    // The session after a refused one works as usual.
    let bytes = data(5000, 5);
    let hash = a.put(tmp.path(), "f.bin", &bytes);
    get_from(&b, &hash, &a.agent(), &out);
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
}

#[test]
fn a_transfer_cut_by_the_source_dying_resumes_without_sending_again_what_arrived() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut a, b) = linked_pair(tmp.path());
    let bytes = data(400 * (MAX_ITEM - 1), 6);
    let hash = a.put(tmp.path(), "big.bin", &bytes);
    let out = tmp.path().join("big.out");

    let started = Instant::now();
    let get = Command::new(env!("CARGO_BIN_EXE_kith"))
        .arg("--data")
        .arg(&b.data)
        .args(["file", "get", &hash, "--from", &a.agent(), "-o"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually("B receives its first items", || {
        b.counter("items_received") >= 20
    });
    a.kill();
    let killed_at = started.elapsed();
    let result = get.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&result.stderr);
    assert!(
        !result.status.success(),
        "the get must fail when the source dies"
    );
    assert!(err.contains("run the same command again"), "{err}");
    assert!(!out.exists(), "no partial output file");
    let first = b.counter("items_received");
    eprintln!("killed after {killed_at:?} with {first} items received");

    let a = start(&tmp.path().join("a"));
    eventually("A re-links to B after its restart", || {
        b.peer_state(&a.agent()) == "linked"
    });
    let report = get_from(&b, &hash, &a.agent(), &out);
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
    let second = report["items_fetched"].as_u64().unwrap();
    let total = report["items"].as_u64().unwrap();
    eprintln!("second run fetched {second} of {total} items");
    assert!(second < total, "the second run fetched everything again");
    assert_eq!(
        first + second,
        total,
        "every item crossed the link exactly once"
    );
}

/// Each end fetches from the other at the same moment: the two sessions run side by side on
/// the one link (`ciyam` one way, `ciyam-r` back), so neither waits for the other.
#[test]
fn both_ends_fetching_from_each_other_at_once_both_succeed() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = linked_pair(tmp.path());
    for round in 0..3u64 {
        let from_a = data(12 * (MAX_ITEM - 1), 10 + round);
        let from_b = data(12 * (MAX_ITEM - 1), 20 + round);
        let hash_a = a.put(tmp.path(), "fa.bin", &from_a);
        let hash_b = b.put(tmp.path(), "fb.bin", &from_b);
        let (out_a, out_b) = (tmp.path().join("oa"), tmp.path().join("ob"));
        let spawn = |node: &Node, hash: &str, from: &str, out: &Path| {
            Command::new(env!("CARGO_BIN_EXE_kith"))
                .arg("--data")
                .arg(&node.data)
                .args(["file", "get", hash, "--from", from, "--force", "-o"])
                .arg(out)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let at_b = spawn(&b, &hash_a, &a.agent(), &out_b);
        let at_a = spawn(&a, &hash_b, &b.agent(), &out_a);
        for (child, who) in [(at_b, "B"), (at_a, "A")] {
            let result = child.wait_with_output().unwrap();
            assert!(
                result.status.success(),
                "{who}'s get failed: {}",
                String::from_utf8_lossy(&result.stderr)
            );
        }
        assert_eq!(std::fs::read(&out_b).unwrap(), from_a);
        assert_eq!(std::fs::read(&out_a).unwrap(), from_b);
    }
}

#[test]
fn a_get_whose_cli_goes_away_does_not_block_the_next_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = linked_pair(tmp.path());
    let bytes = data(150 * (MAX_ITEM - 1), 7);
    let hash = a.put(tmp.path(), "big.bin", &bytes);
    let out = tmp.path().join("big.out");
    let mut get = Command::new(env!("CARGO_BIN_EXE_kith"))
        .arg("--data")
        .arg(&b.data)
        .args(["file", "get", &hash, "--from", &a.agent(), "-o"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually("B receives its first items", || {
        b.counter("items_received") >= 10
    });
    get.kill().unwrap();
    get.wait().unwrap();
    let started = Instant::now();
    get_from(&b, &hash, &a.agent(), &out);
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the second get waited for the first session's deadline"
    );
}
