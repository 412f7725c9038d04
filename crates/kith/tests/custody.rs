//! Encrypted custody between real `kith up` processes linked by ticket: `kith persist` from
//! B to custodian A, the original removed on B, `kith retrieve` with the password; the
//! custodian's data dir never holds the plain bytes; wrong passwords, the reference's
//! derivation (`--ciyam-compat`, the seed's values), persisting twice, a custodian that
//! refuses custody, files of many items, several owners of one file, the owner's store left
//! clean, and a custodian that lies.

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
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/test.jpg")
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

    // A file of many items is refused the same way.
    let err = b.fails(&[
        "persist",
        test_jpg().to_str().unwrap(),
        "--password-file",
        &pw,
    ]);
    assert!(err.contains("refused custody"), "{err}");
    assert_eq!(a.counter("custody_refused"), 2);

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

/// The item files in a data dir's store (hashes), without the lock and temp files.
fn stored_items(data: &Path) -> std::collections::BTreeSet<String> {
    let mut items = std::collections::BTreeSet::new();
    for dir in std::fs::read_dir(data.join("store")).unwrap() {
        let dir = dir.unwrap();
        let prefix = dir.file_name().to_string_lossy().into_owned();
        if prefix.len() != 2 || !dir.path().is_dir() {
            continue;
        }
        for item in std::fs::read_dir(dir.path()).unwrap() {
            items.insert(format!(
                "{prefix}{}",
                item.unwrap().file_name().to_string_lossy()
            ));
        }
    }
    items
}

/// Bytes that do not repeat within the file (so no two chunks share an item).
fn varied_bytes(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn a_file_of_many_items_round_trips_through_one_encrypted_copy() {
    let tmp = tempfile::tempdir().unwrap();
    // Small items make a tree of lists of lists (63 hashes a list) from a 2 MB file.
    let (a, b) = linked_pair(tmp.path(), "max_item = 4096\n", "max_item = 4096\n");
    let original = varied_bytes(2 * 1024 * 1024 + 777);
    let path = tmp.path().join("big.bin");
    std::fs::write(&path, &original).unwrap();
    let pw = password_file(tmp.path(), "pw", "a long and careful password");
    let report = b.json(&[
        "persist",
        path.to_str().unwrap(),
        "--password-file",
        &pw,
        "--json",
    ]);
    let hash = report["content"].as_str().unwrap().to_owned();
    assert_eq!(report["already"], false, "{report}");
    assert_eq!(a.counter("custody_accepted"), 1);
    b.ok(&["file", "rm", &hash]);
    let before = stored_items(&b.data);

    let out = tmp.path().join("back.bin");
    b.ok(&[
        "retrieve",
        &hash,
        "--password-file",
        &pw,
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(
        std::fs::read(&out).unwrap() == original,
        "the same bytes came back"
    );
    // The copy and the pull request fetched for this are gone from the owner's store.
    assert_eq!(stored_items(&b.data), before);
    // The custodian holds many encrypted items and none of the plain bytes.
    assert!(stored_items(&a.data).len() > 500);
    for at in [0, 4095, 1_000_000, original.len() - 64] {
        assert_eq!(
            dir_contains(&a.data, &original[at..at + 48]),
            None,
            "at {at}"
        );
    }
}

#[test]
fn several_owners_of_one_file_each_get_their_own_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = linked_pair(tmp.path(), "", "");
    let c = Node::start(&tmp.path().join("c"));
    c.ok(&["connect", a.ok(&["ticket"]).trim()]);
    let jpg = test_jpg();
    let jpg = jpg.to_str().unwrap();
    let original = std::fs::read(jpg).unwrap();
    let pw_b = password_file(tmp.path(), "pw_b", "bob's password");
    let pw_c = password_file(tmp.path(), "pw_c", "carol's password");

    let first = b.json(&["persist", jpg, "--password-file", &pw_b, "--json"]);
    let second = c.json(&["persist", jpg, "--password-file", &pw_c, "--json"]);
    assert_eq!(first["already"], false);
    assert_eq!(second["already"], false, "{second}");
    assert_ne!(first["owner_key"], second["owner_key"]);
    assert_eq!(
        a.counter("custody_accepted"),
        2,
        "two copies at the custodian"
    );
    // Each owner persisting again finds its own copy.
    let again = c.json(&["persist", jpg, "--password-file", &pw_c, "--json"]);
    assert_eq!(again["already"], true, "{again}");
    assert_eq!(a.counter("custody_accepted"), 2);

    b.ok(&["file", "rm", TEST_JPG_HASH]);
    c.ok(&["file", "rm", TEST_JPG_HASH]);
    for (node, pw) in [(&b, &pw_b), (&c, &pw_c)] {
        let out = tmp.path().join(format!("back-{}.jpg", node.agent()));
        node.ok(&[
            "retrieve",
            TEST_JPG_HASH,
            "--password-file",
            pw,
            "-o",
            out.to_str().unwrap(),
        ]);
        assert_eq!(std::fs::read(&out).unwrap(), original);
    }
    // A password nobody used: no copy for that key, nothing written.
    let wrong = password_file(tmp.path(), "wrong", "nobody's password");
    let out = tmp.path().join("nobody.jpg");
    let err = b.fails(&[
        "retrieve",
        TEST_JPG_HASH,
        "--password-file",
        &wrong,
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(err.contains("wrong password"), "{err}");
    assert!(!out.exists());
}

#[test]
fn retrieving_keeps_the_owners_files_and_leaves_no_loose_items() {
    let tmp = tempfile::tempdir().unwrap();
    // The owner's items are smaller than the custodian's: the copy is cut to fit them.
    let (_a, b) = linked_pair(tmp.path(), "", "max_item = 2048\n");
    let jpg = test_jpg();
    let pw = password_file(tmp.path(), "pw", "secret enough");
    let report = b.json(&[
        "persist",
        jpg.to_str().unwrap(),
        "--password-file",
        &pw,
        "--json",
    ]);
    // Small items: the file is a list here, so its address is not the one-blob address.
    let hash = report["content"].as_str().unwrap().to_owned();
    assert_ne!(hash, TEST_JPG_HASH);
    // The owner keeps the original this time: retrieving must not touch its items.
    let before = stored_items(&b.data);
    let out = tmp.path().join("back.jpg");
    b.ok(&[
        "retrieve",
        &hash,
        "--password-file",
        &pw,
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&jpg).unwrap());
    assert_eq!(
        stored_items(&b.data),
        before,
        "no loose items left, none of the file's removed"
    );
    let copy = tmp.path().join("copy.jpg");
    b.ok(&["file", "get", &hash, "-o", copy.to_str().unwrap()]);
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&jpg).unwrap());
}

/// Replaces the custodian's copy for `original` (all owners) with `forged`, a copy it makes
/// up for `owner`, and a pull request naming it, as a lying custodian would.
fn forge_custody(a: &Node, original: &str, owner_b64: &str, forged_for: [u8; 33], content: &[u8]) {
    use base64::Engine as _;
    use kith_crypto::custody::PullRequest;
    use kith_store::custody_copy::CopyWriter;
    use kith_store::{BlobStore, ContentHash, ItemType};
    let owner: [u8; 33] = base64::engine::general_purpose::STANDARD
        .decode(owner_b64)
        .unwrap()
        .try_into()
        .unwrap();
    let original: ContentHash = original.parse().unwrap();
    let blobs = BlobStore::open(a.data.join("store")).unwrap();
    let mut copy = CopyWriter::new(
        blobs.clone(),
        &forged_for,
        &original,
        u64::MAX,
        &mut rand::rngs::OsRng,
    )
    .unwrap();
    let peer_key = copy.custodian_key();
    copy.append_item(ItemType::BLOB, content).unwrap();
    let copy = copy.finish().unwrap();
    let pull = PullRequest {
        peer_key,
        owner_key: Some(owner),
        encrypted_hash: copy.hash.0,
        original_hash: original.0,
    };
    let pull = blobs.put_item(ItemType::BLOB, &pull.to_bytes()).unwrap();
    let db = rusqlite::Connection::open(a.data.join("kith.db")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    let changed = db
        .execute(
            "UPDATE custody SET encrypted_hash = ?1, pull_request_hash = ?2 WHERE original_hash = ?3",
            [copy.hash.to_hex(), pull.to_hex(), original.to_hex()],
        )
        .unwrap();
    assert_eq!(changed, 1);
}

#[test]
fn a_custodian_that_lies_is_caught_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = linked_pair(tmp.path(), "", "");
    let jpg = test_jpg();
    let pw = password_file(tmp.path(), "pw", "my password");
    let report = b.json(&[
        "persist",
        jpg.to_str().unwrap(),
        "--password-file",
        &pw,
        "--json",
    ]);
    let owner_b64 = report["owner_key"].as_str().unwrap().to_owned();
    let owner: [u8; 33] = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(&owner_b64)
            .unwrap()
            .try_into()
            .unwrap()
    };
    b.ok(&["file", "rm", TEST_JPG_HASH]);
    let out = tmp.path().join("out.jpg");

    // A copy made for our key and this hash, of other content: it decrypts, and the check
    // of the content against the hash catches it.
    forge_custody(
        &a,
        TEST_JPG_HASH,
        &owner_b64,
        owner,
        b"not your photo at all",
    );
    let err = b.fails(&[
        "retrieve",
        TEST_JPG_HASH,
        "--password-file",
        &pw,
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(err.contains("is not a5ab1c26"), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert!(!out.exists());

    // A pull request naming our key with a copy made for another key: it does not decrypt.
    let other = kith_crypto::identity::ContentKey::generate(&mut rand::rngs::OsRng).public_key();
    forge_custody(&a, TEST_JPG_HASH, &owner_b64, other, b"junk");
    let err = b.fails(&[
        "retrieve",
        TEST_JPG_HASH,
        "--password-file",
        &pw,
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(err.contains("does not decrypt"), "{err}");
    assert!(!out.exists());
    // Nothing of the forged copies stays with the owner either.
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("kith-tmp"))
        .collect();
    assert!(leftovers.is_empty());
}
