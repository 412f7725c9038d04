//! `kith store gc` against what an attacker (or a crash) leaves: a `kith file put` killed with
//! SIGKILL mid-way, with and without a node running, and a put still in progress in another
//! process while gc runs. The put reads from a FIFO that the test feeds, so "mid-way" is
//! exact: the put has stored every chunk the test has written but one, and cannot finish.

mod support;

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;
use support::{data, Node};

const MB: usize = 1_000_000;

fn kith_cmd(data_dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kith"));
    cmd.arg("--data")
        .arg(data_dir)
        .args(args)
        .env_remove("KITH_DATA");
    cmd
}

fn ok(data_dir: &Path, args: &[&str]) -> String {
    let out = kith_cmd(data_dir, args).output().expect("run kith");
    assert!(
        out.status.success(),
        "kith {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(status.success());
}

/// `kith file put FIFO` in a child process, and the FIFO's write end (open once the child
/// opened the read end).
fn put_from_fifo(data_dir: &Path, fifo: &Path) -> (Child, File) {
    let child = kith_cmd(data_dir, &["file", "put", fifo.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kith file put");
    let writer = File::options().write(true).open(fifo).unwrap();
    (child, writer)
}

/// Item files and temp files under the store, with their bytes.
#[derive(Debug, Default, PartialEq, Eq)]
struct Leftovers {
    items: u64,
    item_bytes: u64,
    temp_files: u64,
    temp_bytes: u64,
}

impl Leftovers {
    fn of(data_dir: &Path) -> Leftovers {
        let store = data_dir.join("store");
        let mut found = Leftovers::default();
        for dir in fs::read_dir(&store).unwrap().flatten() {
            let name = dir.file_name().to_string_lossy().into_owned();
            if !dir.path().is_dir() {
                continue;
            }
            for file in fs::read_dir(dir.path()).unwrap().flatten() {
                let len = file.metadata().unwrap().len();
                if name == "tmp" {
                    found.temp_files += 1;
                    found.temp_bytes += len;
                } else if name.len() == 2 {
                    found.items += 1;
                    found.item_bytes += len;
                }
            }
        }
        found
    }

    fn mb(&self) -> f64 {
        (self.item_bytes + self.temp_bytes) as f64 / MB as f64
    }
}

/// Feeds `mb` megabytes into a put, then kills the put with SIGKILL.
fn killed_put(data_dir: &Path, fifo: &Path, mb: usize) {
    let (mut child, mut writer) = put_from_fifo(data_dir, fifo);
    // Each write returns once the put has read all but a pipe buffer of it, so the put has
    // stored every 1 MB chunk but the last one or two when the loop ends.
    for seed in 0..mb {
        writer.write_all(&data(MB, 1_000 + seed as u64)).unwrap();
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    drop(writer);
}

fn gc(data_dir: &Path, grace: &str) -> Value {
    json(&ok(data_dir, &["--json", "store", "gc", "--grace", grace]))
}

#[test]
fn a_put_killed_mid_way_leaves_orphans_that_gc_reclaims() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("node");
    ok(&data_dir, &["init"]);
    let fifo = tmp.path().join("big.fifo");
    mkfifo(&fifo);

    killed_put(&data_dir, &fifo, 40);
    let before = Leftovers::of(&data_dir);
    assert!(before.items >= 35, "the put stored most chunks: {before:?}");
    assert_eq!(ok(&data_dir, &["file", "ls"]), "", "no file was recorded");

    // The default grace period keeps them (a fetch could resume with young items); temp
    // files go at once.
    let young = gc(&data_dir, "24h");
    assert_eq!(young["items_removed"], 0, "{young}");
    assert_eq!(young["items_kept_young"], before.items, "{young}");
    assert_eq!(young["temp_files_removed"], before.temp_files, "{young}");

    let report = gc(&data_dir, "0s");
    assert_eq!(report["items_removed"], before.items, "{report}");
    assert_eq!(
        report["bytes_freed"].as_u64().unwrap() + young["bytes_freed"].as_u64().unwrap(),
        before.item_bytes + before.temp_bytes,
        "{report}"
    );
    let after = Leftovers::of(&data_dir);
    assert_eq!(after, Leftovers::default());
    eprintln!(
        "kill -9 of `kith file put` mid-way: {:.1} MB orphaned ({} items, {} temp files) \
         before gc, {:.1} MB after",
        before.mb(),
        before.items,
        before.temp_files,
        after.mb()
    );
}

#[test]
fn gc_waits_for_a_put_in_another_process_and_leaves_it_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("node");
    ok(&data_dir, &["init"]);
    let fifo = tmp.path().join("slow.fifo");
    mkfifo(&fifo);

    let content: Vec<u8> = (0..20).flat_map(|seed| data(MB, seed)).collect();
    let (put, mut writer) = put_from_fifo(&data_dir, &fifo);
    writer.write_all(&content[..10 * MB]).unwrap();
    let written = Leftovers::of(&data_dir);
    assert!(written.items >= 8, "the put is mid-way: {written:?}");

    // gc with no grace at all, while the put's items are not recorded yet.
    let mut gc = kith_cmd(&data_dir, &["--json", "store", "gc", "--grace", "0s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = String::new();
    BufReader::new(gc.stderr.take().unwrap())
        .read_line(&mut said)
        .unwrap();
    assert!(said.starts_with("waiting:"), "gc says it waits: {said:?}");
    let still = Leftovers::of(&data_dir);
    assert!(still.items >= written.items, "nothing was taken: {still:?}");

    writer.write_all(&content[10 * MB..]).unwrap();
    drop(writer);
    let put: Output = put.wait_with_output().unwrap();
    assert!(
        put.status.success(),
        "the put committed: {}",
        String::from_utf8_lossy(&put.stderr)
    );
    let hash = String::from_utf8(put.stdout).unwrap().trim().to_owned();
    let report = json(&String::from_utf8(gc.wait_with_output().unwrap().stdout).unwrap());
    assert_eq!(report["items_removed"], 0, "{report}");

    let out = tmp.path().join("out");
    ok(
        &data_dir,
        &["file", "get", &hash, "-o", out.to_str().unwrap()],
    );
    assert!(
        fs::read(&out).unwrap() == content,
        "the file reads back whole"
    );
}

#[test]
fn gc_with_a_node_running_reclaims_orphans_and_keeps_files() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("node");
    let node = Node::start(&data_dir);
    let kept = node.put(tmp.path(), "kept", &data(3 * MB, 7));
    let fifo: PathBuf = tmp.path().join("big.fifo");
    mkfifo(&fifo);
    killed_put(&data_dir, &fifo, 12);
    let before = Leftovers::of(&data_dir);

    let report = gc(&data_dir, "0s");
    let orphans = report["items_removed"].as_u64().unwrap();
    assert!(orphans >= 8, "{report}");
    assert_eq!(Leftovers::of(&data_dir).items, before.items - orphans);
    let out = tmp.path().join("out");
    node.ok(&["file", "get", &kept, "-o", out.to_str().unwrap()]);
    assert_eq!(fs::read(&out).unwrap(), data(3 * MB, 7));
    let status = node.json(&["status", "--json"]);
    assert!(status.is_object(), "the node still answers: {status}");
}
