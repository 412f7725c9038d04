//! The seed's custody sessions (`peer_persist_file`, sessions two and three) replayed through
//! `kith shell` against a node's peer port, as the README's walk-through shows them: the push
//! request the seed's first session makes (password `dummy`, test mode) is `put`, the node
//! `get`s test.jpg and keeps only an encrypted copy; a later `chk` of test.jpg is `(not found)`
//! and the node `put`s the pull request, whose encrypted copy can then be fetched.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use support::Node;

const HELLO: &str = "cceeb7a985ecc3dabcb4c8f666cd637f16f008e3c963db6aa6f83a7b288c54ef";
const TEST_JPG: &str = "a5ab1c26e5253fb7316b51e7f40687183714e0d683034954e1e8fc67bca42753";
const PUSH: &str = "52326e48bde0bf6bb78fe965728c8679a5594e42d9cb0f95b9df41b391903282";
/// The push request of the seed's first session, byte for byte.
const PUSH_TEXT: &str = "md:raw\npk:Aj4XW1jZbIENUUW8Q0dWWoEPoWliHngyNgvZDe+Eyu9o\nsh:pascJuUlP7cxa1Hn9AaHGDcU4NaDA0lU4ej8Z7ykJ1M=";

fn kith(data: &Path, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kith"))
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("KITH_DATA")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kith");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kith {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn lines(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// The custody record the node made (encrypted copy, pull request), read from its database.
fn custody_of(node: &Node, original: &str) -> (String, String) {
    let db = rusqlite::Connection::open(node.data.join("kith.db")).unwrap();
    db.query_row(
        "SELECT encrypted_hash, pull_request_hash FROM custody WHERE original_hash = ?1",
        [original],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .unwrap()
}

#[test]
fn the_seeds_custody_sessions_replay_through_kith_shell() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("node"));
    let peer = node.ready["peer_listen"].as_str().unwrap().to_owned();
    let client = tmp.path().join("client");

    // Session one's results, made locally: test.jpg and its push request in the store.
    let jpg = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/test.jpg");
    let put = kith(&client, &["file", "put", jpg.to_str().unwrap()], "");
    assert!(String::from_utf8_lossy(&put.stdout).contains(TEST_JPG));
    let push = tmp.path().join("push.txt");
    std::fs::write(&push, PUSH_TEXT).unwrap();
    let put = kith(&client, &["file", "put", push.to_str().unwrap()], "");
    assert!(String::from_utf8_lossy(&put.stdout).contains(PUSH));

    // Session two: the push request goes out, the node asks for test.jpg.
    let input = lines(&[
        "chk hello".into(),
        format!("put {PUSH}"),
        format!("~rm {PUSH}"),
        format!("~rm {TEST_JPG}"),
        format!("~rm {HELLO}"),
        "bye".into(),
    ]);
    let out = kith(&client, &["shell", &peer], &input);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        lines(&[
            "(not found)".into(),
            format!("put {HELLO}"),
            format!("get {TEST_JPG}"),
        ])
    );
    assert_eq!(node.counter("custody_accepted"), 1);
    let (copy, pull) = custody_of(&node, TEST_JPG);

    // Session three: `chk` of test.jpg is not found, and the node puts the pull request.
    let input = lines(&[
        "chk hello".into(),
        format!("chk {TEST_JPG}"),
        format!("~cat {pull}"),
        format!("~rm {pull}"),
        format!("put {HELLO}"),
        format!("get {copy}"),
        format!("~rm {copy}"),
        format!("~rm {HELLO}"),
        "bye".into(),
    ]);
    let out = kith(&client, &["shell", &peer], &input);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let shown: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        shown[..4],
        [
            "(not found)",
            &format!("put {HELLO}"),
            "(not found)",
            &format!("put {pull}")
        ],
        "{stdout}"
    );
    // The pull request: the node's fresh key and the owner's, the copy, the original.
    assert_eq!(shown[4], "md:raw", "{stdout}");
    assert!(
        shown[5].starts_with("pk:")
            && shown[5].ends_with("-Aj4XW1jZbIENUUW8Q0dWWoEPoWliHngyNgvZDe+Eyu9o"),
        "{stdout}"
    );
    assert!(shown[6].starts_with("sh:"), "{stdout}");
    assert_eq!(
        shown[7], "th:pascJuUlP7cxa1Hn9AaHGDcU4NaDA0lU4ej8Z7ykJ1M=",
        "{stdout}"
    );
    assert_eq!(
        shown[8..],
        [format!("get {HELLO}"), "pip 127.0.0.1".to_string()],
        "{stdout}"
    );
}
