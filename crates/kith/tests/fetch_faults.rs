//! Windowed fetches between real `kith up` processes when something dies mid-transfer: one of
//! two sources (the fetch goes on from the other), and the fetching node itself, killed with
//! SIGKILL (after a restart the fetch resumes from the items committed before the crash, and
//! the store holds no torn item and, once the file is whole, nothing orphaned).

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use support::{data, eventually, Node};

/// Small items make a modest file a tree of many items (999 content bytes per chunk).
const MAX_ITEM: usize = 1001;

/// A node cutting files into `MAX_ITEM`-byte items, committing fetched items every
/// `commit` bytes.
fn start(dir: &Path, commit: u64) -> Node {
    Node::start_with(
        dir,
        &format!("max_item = {MAX_ITEM}\n[limits]\nfetch_commit_bytes = {commit}\n"),
    )
}

/// `kith file get ARGS --json` in the background, paced to `rate` bytes a second.
fn spawn_get(node: &Node, hash: &str, out: &Path, rate: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kith"))
        .arg("--data")
        .arg(&node.data)
        .args(["file", "get", hash, "--rate", rate, "--json", "-o"])
        .arg(out)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Item files (named by their address) and temp files in a node's store.
fn store_contents(data_dir: &Path) -> (Vec<(String, Vec<u8>)>, usize) {
    let mut items = Vec::new();
    let mut temps = 0;
    for dir in std::fs::read_dir(data_dir.join("store")).unwrap().flatten() {
        let name = dir.file_name().to_string_lossy().into_owned();
        if !dir.path().is_dir() {
            continue;
        }
        for file in std::fs::read_dir(dir.path()).unwrap().flatten() {
            if name == "tmp" {
                // Files only: the output journal's directory lives there too.
                temps += usize::from(file.path().is_file());
            } else if name.len() == 2 {
                let hash = format!("{name}{}", file.file_name().to_string_lossy());
                items.push((hash, std::fs::read(file.path()).unwrap()));
            }
        }
    }
    (items, temps)
}

/// Temporary output files (`.kith-get-*`) in `dir`.
fn temp_outputs(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".kith-get-"))
        .count()
}

#[test]
fn a_fetch_from_two_sources_survives_one_dying_mid_transfer() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = start(&tmp.path().join("a"), 32 << 20);
    let c = start(&tmp.path().join("c"), 32 << 20);
    let b = start(&tmp.path().join("b"), 32 << 20);
    let bytes = data(400 * (MAX_ITEM - 1), 31);
    let hash = a.put(tmp.path(), "both.bin", &bytes);
    assert_eq!(c.put(tmp.path(), "both.bin", &bytes), hash);
    b.ok(&["connect", a.ok(&["ticket"]).trim()]);
    b.ok(&["connect", c.ok(&["ticket"]).trim()]);
    eventually("B is linked to both", || b.links() == 2);

    // About four seconds at this rate: time to kill A a fifth of the way in.
    let out = tmp.path().join("both.out");
    let get = spawn_get(&b, &hash, &out, "100KB", &[]);
    eventually("B receives its first items", || {
        b.counter("items_received") >= 80
    });
    let a_agent = a.agent();
    a.kill();
    let result = get.wait_with_output().unwrap();
    assert!(
        result.status.success(),
        "the get failed: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
    let report: Value = serde_json::from_slice(&result.stdout).unwrap();
    let sources = report["fetched"]["sources"].as_array().unwrap().clone();
    let share = |agent: &str| {
        sources
            .iter()
            .find(|s| s["agent"] == agent)
            .unwrap()
            .clone()
    };
    let dead = share(&a_agent);
    assert_eq!(dead["dropped"], "gone", "{sources:?}");
    assert!(dead["items"].as_u64().unwrap() > 0, "A did its part first");
    let rest = share(&c.agent());
    assert!(rest["dropped"].is_null(), "{sources:?}");
    assert!(
        rest["items"].as_u64().unwrap() > dead["items"].as_u64().unwrap(),
        "C carried the rest: {sources:?}"
    );
}

#[test]
fn a_fetcher_killed_mid_transfer_resumes_after_a_restart_with_nothing_torn_or_orphaned() {
    let tmp = tempfile::tempdir().unwrap();
    let a = start(&tmp.path().join("a"), 32 << 20);
    // B syncs fetched items every 20 of them, so a crash finds some committed.
    let b_dir = tmp.path().join("b");
    let mut b = start(&b_dir, 20 * MAX_ITEM as u64);
    let bytes = data(400 * (MAX_ITEM - 1), 32);
    let hash = a.put(tmp.path(), "crash.bin", &bytes);
    b.ok(&["connect", a.ok(&["ticket"]).trim()]);

    let out = tmp.path().join("crash.out");
    let get = spawn_get(&b, &hash, &out, "100KB", &["--from", &a.agent()]);
    eventually("B receives a good part of the file", || {
        b.counter("items_received") >= 150
    });
    b.kill(); // SIGKILL: no goodbye, no last commit
    let result = get.wait_with_output().unwrap();
    assert!(!result.status.success(), "the get cannot succeed");
    assert!(!out.exists(), "no partial output file");
    assert_eq!(
        temp_outputs(tmp.path()),
        1,
        "the killed node's temporary output is still beside the target"
    );

    // Whatever the crash left, no item is torn: each one under its name hashes to it.
    let (items, _) = store_contents(&b_dir);
    assert!(
        items.len() > 20,
        "committed groups survived: {}",
        items.len()
    );
    for (name, item) in &items {
        assert_eq!(
            &kith_crypto::address::ContentHash::of(item).to_string(),
            name,
            "a torn item"
        );
    }

    let b = start(&b_dir, 20 * MAX_ITEM as u64);
    // The start-up collection took what the crash left (the node runs with `KITH_LOG=warn`
    // here: it once skipped the collection at that level).
    assert_eq!(store_contents(&b_dir).1, 0, "temp files of the crash left");
    assert_eq!(
        temp_outputs(tmp.path()),
        0,
        "the temporary output the crash left beside the target, removed at the restart"
    );
    eventually("B re-links to A after its restart", || {
        b.peer_state(&a.agent()) == "linked"
    });
    let printed = b.ok(&[
        "file",
        "get",
        &hash,
        "--from",
        &a.agent(),
        "-o",
        out.to_str().unwrap(),
        "--json",
    ]);
    let report: Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
    let fetched = report["fetched"]["items_fetched"].as_u64().unwrap();
    let total = report["fetched"]["items"].as_u64().unwrap();
    assert!(
        fetched + 20 <= total,
        "the second run resumed: fetched {fetched} of {total}"
    );

    // Nothing orphaned: every item in the store belongs to the file, no temp file is left.
    let (items, temps) = store_contents(&b_dir);
    assert_eq!(temps, 0, "temp files left behind");
    let gc: Value =
        serde_json::from_str(&b.ok(&["--json", "store", "gc", "--grace", "0s"])).unwrap();
    assert_eq!(gc["items_removed"], 0, "{gc}");
    assert_eq!(gc["temp_files_removed"], 0, "{gc}");
    assert!(
        items.len() as u64 >= total,
        "{} items, {total} in the file",
        items.len()
    );
}
