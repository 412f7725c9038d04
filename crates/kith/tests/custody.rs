//! Encrypted custody between real `kith up` processes linked by ticket: `kith persist` from
//! B to custodian A, the original removed on B, `kith retrieve` with the password; the
//! custodian's data dir never holds the plain bytes; wrong passwords, the reference's
//! derivation (`--ciyam-compat`, the seed's values), persisting twice, and a custodian that
//! refuses custody.

mod support;

use std::path::{Path, PathBuf};
use support::Node;

/// Custodian A (with `a_config`) and owner B (with `b_config`), B linked to A by ticket.
fn linked_pair(tmp: &Path, a_config: &str, b_config: &str) -> (Node, Node) {
    let a = Node::start_with(&tmp.join("a"), a_config);
    let b = Node::start_with(&tmp.join("b"), b_config);
    b.ok(&["connect", a.ok(&["ticket"]).trim()]);
    (a, b)
}

fn test_jpg() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/test.jpg")
}

const TEST_JPG_HASH: &str = "a5ab1c26e5253fb7316b51e7f40687183714e0d683034954e1e8fc67bca42753";

fn password_file(dir: &Path, name: &str, password: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{password}\n")).unwrap();
    path.to_str().unwrap().to_owned()
}

/// True if any file under `dir` contains `needle`.
fn dir_contains(dir: &Path, needle: &[u8]) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if let Some(found) = dir_contains(&path, needle) {
                return Some(found);
            }
        } else if let Ok(bytes) = std::fs::read(&path) {
            if bytes.windows(needle.len()).any(|w| w == needle) {
                return Some(path);
            }
        }
    }
    None
}

#[test]
fn persist_remove_retrieve_round_trip_without_plain_bytes_at_the_custodian() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = linked_pair(tmp.path(), "", "");
    let original = std::fs::read(test_jpg()).unwrap();
    let jpg = test_jpg();
    let jpg = jpg.to_str().unwrap();
    let pw = password_file(tmp.path(), "pw", "correct horse battery staple");

    let report = b.json(&[
        "persist",
        jpg,
        "--password-file",
        &pw,
        "--to",
        &a.agent(),
        "--json",
    ]);
    assert_eq!(report["content"], TEST_JPG_HASH, "{report}");
    assert_eq!(report["custodian"], a.agent().as_str());
    assert_eq!(report["push_request"].as_str().unwrap().len(), 64);
    assert!(
        report["owner_key"].as_str().unwrap().len() == 44,
        "{report}"
    );
    assert_eq!(a.counter("custody_accepted"), 1);

    // The owner forgets the original.
    b.ok(&["file", "rm", TEST_JPG_HASH]);

    // Persisting again (the file is back in B's store for that) succeeds.
    let again = b.json(&["persist", jpg, "--password-file", &pw, "--json"]);
    assert_eq!(again["push_request"], report["push_request"]);
    assert_eq!(again["already"], true, "{again}");
    b.ok(&["file", "rm", TEST_JPG_HASH]);

    // A wrong password gets nothing written.
    let wrong = password_file(tmp.path(), "wrong", "tr0ub4dor");
    let bad_out = tmp.path().join("bad.jpg");
    let err = b.fails(&[
        "retrieve",
        TEST_JPG_HASH,
        "--password-file",
        &wrong,
        "-o",
        bad_out.to_str().unwrap(),
    ]);
    assert!(err.contains("wrong password"), "{err}");
    assert!(!bad_out.exists());

    // The right one gets the file back.
    let out = tmp.path().join("back.jpg");
    b.ok(&[
        "retrieve",
        TEST_JPG_HASH,
        "--password-file",
        &pw,
        "-o",
        out.to_str().unwrap(),
        "--from",
        &a.agent(),
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), original);

    // The custodian never wrote the plain content anywhere in its data dir.
    let window = &original[3000..3064];
    assert!(
        dir_contains(tmp.path(), window).is_some(),
        "sanity: the search finds back.jpg"
    );
    assert_eq!(dir_contains(&a.data, window), None);
    assert_eq!(dir_contains(&a.data, &original[..64]), None);
}

#[test]
fn ciyam_compat_reproduces_the_seed_values() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = linked_pair(tmp.path(), "", "");
    let jpg = test_jpg();
    let pw = password_file(tmp.path(), "pw", "dummy");
    let report = b.json(&[
        "persist",
        jpg.to_str().unwrap(),
        "--password-file",
        &pw,
        "--ciyam-compat",
        "--json",
    ]);
    assert_eq!(
        report["push_request"],
        "52326e48bde0bf6bb78fe965728c8679a5594e42d9cb0f95b9df41b391903282"
    );
    assert_eq!(
        report["owner_key"],
        "Aj4XW1jZbIENUUW8Q0dWWoEPoWliHngyNgvZDe+Eyu9o"
    );
    assert_eq!(report["custodian"], a.agent().as_str());
    b.ok(&["file", "rm", TEST_JPG_HASH]);
    let out = tmp.path().join("back.jpg");
    b.ok(&[
        "retrieve",
        TEST_JPG_HASH,
        "--password-file",
        &pw,
        "--ciyam-compat",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&jpg).unwrap());
    // Without --ciyam-compat the same password derives another key.
    let other = tmp.path().join("other.jpg");
    let err = b.fails(&[
        "retrieve",
        TEST_JPG_HASH,
        "--password-file",
        &pw,
        "-o",
        other.to_str().unwrap(),
    ]);
    assert!(err.contains("wrong password"), "{err}");
    assert!(!other.exists());
}

#[test]
fn custody_refused_by_quota_and_bad_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = linked_pair(
        tmp.path(),
        "[limits]\nmax_custody_bytes = 0\n",
        "max_item = 1001\n",
    );
    let pw = password_file(tmp.path(), "pw", "secret");
    let small = tmp.path().join("small.txt");
    std::fs::write(&small, b"a small file to keep").unwrap();
    let err = b.fails(&["persist", small.to_str().unwrap(), "--password-file", &pw]);
    assert!(err.contains("refused custody"), "{err}");
    assert_eq!(a.counter("custody_refused"), 1);

    // Larger than one item: refused before anything is sent.
    let err = b.fails(&[
        "persist",
        test_jpg().to_str().unwrap(),
        "--password-file",
        &pw,
    ]);
    assert!(err.contains("single-item"), "{err}");

    // An empty or missing password file.
    let empty = password_file(tmp.path(), "empty", "");
    let err = b.fails(&[
        "persist",
        small.to_str().unwrap(),
        "--password-file",
        &empty,
    ]);
    assert!(err.contains("empty"), "{err}");
    let missing = tmp.path().join("missing");
    let err = b.fails(&[
        "persist",
        small.to_str().unwrap(),
        "--password-file",
        missing.to_str().unwrap(),
    ]);
    assert!(err.contains("password file"), "{err}");

    // Nothing in custody: retrieve says so and writes nothing.
    let out = tmp.path().join("out");
    let err = b.fails(&[
        "retrieve",
        TEST_JPG_HASH,
        "--password-file",
        &pw,
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(err.contains("no copy"), "{err}");
    assert!(!out.exists());
}
