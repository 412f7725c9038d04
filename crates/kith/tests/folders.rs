//! Folders between real `kith up` processes: `kith file put DIR` on A, `kith file get` of it
//! on B by hash and on C by file ticket; the trees compared byte for byte and mode for mode;
//! a re-run that fetches nothing; a file already here not fetched again; an existing target
//! refused without --force; a manifest that tries to write outside its folder refused with
//! nothing written anywhere.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use support::{data, Node};

/// Small items make modest files trees of many items.
const MAX_ITEM: usize = 1001;

fn start(data: &Path) -> Node {
    Node::start_with(data, &format!("max_item = {MAX_ITEM}\n"))
}

/// A folder with nested directories, an empty file, an empty directory, an executable, a
/// multi-item file, and a symbolic link (skipped).
fn sample(root: &Path) -> std::path::PathBuf {
    let dir = root.join("photos");
    fs::create_dir_all(dir.join("a/b/c")).unwrap();
    fs::create_dir_all(dir.join("empty")).unwrap();
    fs::write(dir.join("top.txt"), b"top\n").unwrap();
    fs::write(dir.join("a/empty.txt"), b"").unwrap();
    fs::write(dir.join("a/b/c/deep.bin"), data(12 * (MAX_ITEM - 1) + 7, 4)).unwrap();
    fs::write(dir.join("a/b/other.bin"), data(3 * (MAX_ITEM - 1), 5)).unwrap();
    // The same content at two places: fetched once, written twice.
    fs::write(dir.join("a/copy.bin"), data(3 * (MAX_ITEM - 1), 5)).unwrap();
    fs::write(dir.join("run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    for (f, mode) in [
        ("top.txt", 0o644),
        ("a/empty.txt", 0o644),
        ("a/b/c/deep.bin", 0o644),
        ("a/b/other.bin", 0o600),
        ("a/copy.bin", 0o755),
        ("run.sh", 0o755),
    ] {
        fs::set_permissions(dir.join(f), fs::Permissions::from_mode(mode)).unwrap();
    }
    std::os::unix::fs::symlink("/etc/passwd", dir.join("a/link")).unwrap();
    dir
}

/// Every file and directory under `dir`: bytes and mode. A folder is written with 0755
/// directories and 0644 or 0755 files, so the source's modes are compared as the x bit.
fn tree(dir: &Path, normalise: bool) -> BTreeMap<String, (Option<Vec<u8>>, u32)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            let meta = fs::symlink_metadata(&path).unwrap();
            let mut mode = meta.permissions().mode() & 0o777;
            if meta.is_dir() {
                if normalise {
                    mode = 0o755;
                }
                out.insert(rel, (None, mode));
                stack.push(path);
            } else if meta.is_file() {
                if normalise {
                    mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
                }
                out.insert(rel, (Some(fs::read(&path).unwrap()), mode));
            }
        }
    }
    out
}

/// `kith --data D ARGS` run in `cwd`, with stdout a pipe.
fn kith_in(node: &Node, cwd: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kith"))
        .arg("--data")
        .arg(&node.data)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn get_json(node: &Node, args: &[&str]) -> Value {
    let mut all = vec!["file", "get"];
    all.extend_from_slice(args);
    all.push("--json");
    node.json(&all)
}

#[test]
fn a_folder_travels_whole_by_hash_and_by_ticket() {
    let tmp = tempfile::tempdir().unwrap();
    let src = sample(tmp.path());
    let expected = tree(&src, true);
    let a = start(&tmp.path().join("a"));
    let b = start(&tmp.path().join("b"));
    b.ok(&["connect", a.ok(&["ticket"]).trim()]);

    let put = a.json(&["file", "put", src.to_str().unwrap(), "--json"]);
    assert_eq!(put["folder"], true, "{put}");
    assert_eq!(put["files"], 6);
    assert_eq!(put["name"], "photos");
    assert_eq!(put["skipped"].as_array().unwrap().len(), 1, "{put}");
    let hash = put["hash"].as_str().unwrap().to_owned();
    // Without --json it prints the address, as for a file, and warns of the link.
    let plain = a.kith(&["file", "put", src.to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&plain.stdout).trim(), hash);
    let warned = String::from_utf8_lossy(&plain.stderr);
    assert!(
        warned.contains("skipped") && warned.contains("link"),
        "{warned}"
    );
    let listed = a.json(&["file", "ls", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "one entry: {listed}");
    assert_eq!(listed[0]["folder"], true);
    assert_eq!(listed[0]["files"], 6);

    // B first fetches one of the folder's files on its own: the folder fetch must not fetch
    // it again.
    let other = a.ok(&["file", "hash", src.join("a/b/other.bin").to_str().unwrap()]);
    let one = tmp.path().join("one.bin");
    get_json(
        &b,
        &[
            other.trim(),
            "--from",
            &a.agent(),
            "-o",
            one.to_str().unwrap(),
        ],
    );

    let out = tmp.path().join("out");
    let report = get_json(
        &b,
        &[&hash, "--from", &a.agent(), "-o", out.to_str().unwrap()],
    );
    assert_eq!(report["folder"], true, "{report}");
    assert_eq!(report["fetched"]["files"], 6);
    assert_eq!(report["fetched"]["files_fetched"], 4, "{report}");
    assert_eq!(tree(&out, false), expected);
    let received = b.counter("items_received");

    // Again, elsewhere: nothing moves; over the existing target: refused, then --force.
    let again = tmp.path().join("again");
    let report = get_json(
        &b,
        &[&hash, "--from", &a.agent(), "-o", again.to_str().unwrap()],
    );
    assert_eq!(report["fetched"]["files_fetched"], 0, "{report}");
    assert_eq!(b.counter("items_received"), received);
    assert_eq!(tree(&again, false), expected);
    let refused = b.fails(&["file", "get", &hash, "-o", out.to_str().unwrap()]);
    assert!(refused.contains("exists; pass --force"), "{refused}");
    fs::write(out.join("stray"), b"x").unwrap();
    get_json(&b, &[&hash, "-o", out.to_str().unwrap(), "--force"]);
    assert_eq!(tree(&out, false), expected);
    let listed = b.json(&["file", "ls", "--json"]);
    let folder = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["hash"] == hash.as_str())
        .unwrap();
    assert_eq!(
        (folder["folder"].clone(), folder["name"].clone()),
        (Value::Bool(true), "photos".into())
    );

    // C is no peer of A: a file ticket links and fetches in one step; with no -o and stdout
    // a pipe the folder takes its name in the current directory.
    let c = start(&tmp.path().join("c"));
    let ticket = a.ok(&["file", "share", &hash, "--ticket"]);
    let cwd = tmp.path().join("cwd");
    fs::create_dir_all(&cwd).unwrap();
    let got = kith_in(&c, &cwd, &["file", "get", ticket.trim(), "--json"]);
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(tree(&cwd.join("photos"), false), expected);
    let got = kith_in(&c, &cwd, &["file", "get", &hash]);
    assert!(!got.status.success(), "the folder is there already");
    assert!(String::from_utf8_lossy(&got.stderr).contains("exists"));
}

#[test]
fn a_manifest_that_leaves_its_folder_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let a = start(&tmp.path().join("a"));
    let b = start(&tmp.path().join("b"));
    b.ok(&["connect", a.ok(&["ticket"]).trim()]);
    let payload = a.put(tmp.path(), "payload", b"owned\n");
    let victims = tmp.path().join("victim");
    fs::create_dir_all(victims.join("inside")).unwrap();
    for (i, path) in [
        "../escape",
        "../../escape",
        "/tmp/kith-escape-test",
        "x/../../escape",
    ]
    .iter()
    .enumerate()
    {
        let manifest = format!(
            "kith-folder/1\n{{\"dirs\":[],\"files\":[{{\"exec\":false,\"hash\":\"{payload}\",\
             \"path\":\"{path}\",\"size\":6}}]}}\n"
        );
        let evil = a.put(tmp.path(), &format!("evil{i}"), manifest.as_bytes());
        let out = victims.join("inside").join("target");
        let err = b.fails(&[
            "file",
            "get",
            &evil,
            "--from",
            &a.agent(),
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(
            err.contains("bad path") && err.contains("nothing was written"),
            "{err}"
        );
        assert!(!out.exists());
    }
    // Nothing anywhere: not in the target's directory, not above it.
    assert_eq!(fs::read_dir(victims.join("inside")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(&victims).unwrap().count(), 1);
    assert!(!tmp.path().join("escape").exists());
    assert!(!Path::new("/tmp/kith-escape-test").exists());
    // A malformed manifest and one from a newer kith are refused the same way.
    let newer = a.put(tmp.path(), "newer", b"kith-folder/2\n{}\n");
    let err = b.fails(&[
        "file",
        "get",
        &newer,
        "--from",
        &a.agent(),
        "-o",
        victims.join("n").to_str().unwrap(),
    ]);
    assert!(err.contains("upgrade kith"), "{err}");
    let dup = format!(
        "kith-folder/1\n{{\"dirs\":[\"a\"],\"files\":[{{\"exec\":false,\"hash\":\"{payload}\",\"path\":\"a\",\"size\":6}}]}}\n"
    );
    let dup = a.put(tmp.path(), "dup", dup.as_bytes());
    let err = b.fails(&[
        "file",
        "get",
        &dup,
        "--from",
        &a.agent(),
        "-o",
        victims.join("d").to_str().unwrap(),
    ]);
    assert!(err.contains("twice"), "{err}");
    assert_eq!(fs::read_dir(&victims).unwrap().count(), 1);
}
