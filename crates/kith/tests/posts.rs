//! Posts between two real `kith up` processes over the CLI: one posts (signed, and sealed
//! from a file), the other reads them with author, time and signature status, as text and
//! as JSON; follows and blocks are kept across a restart; bad input is refused.

mod support;

use support::{eventually, Node};

#[test]
fn two_nodes_post_and_read() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let a = Node::start(&tmp.join("a"));
    let mut b = Node::start(&tmp.join("b"));
    b.ok(&["connect", a.ok(&["ticket"]).trim()]);
    b.ok(&["community", "follow", "club"]);

    let out = a.ok(&["post", "science", "hello <b>world</b>"]);
    assert!(out.contains("posted"), "{out}");
    std::fs::write(tmp.join("note.txt"), "sealed from a file").unwrap();
    let posted = a.json(&[
        "--json",
        "post",
        "club",
        "--file",
        tmp.join("note.txt").to_str().unwrap(),
        "--sealed",
    ]);
    assert_eq!(posted["sealed"], true);

    eventually("B reads A's post", || {
        b.json(&["--json", "posts", "science"])["posts"]
            .as_array()
            .is_some_and(|p| p.len() == 1)
    });
    let list = b.json(&["--json", "posts", "science"]);
    let p = &list["posts"][0];
    assert_eq!(p["text"], "hello <b>world</b>");
    assert_eq!(p["signature"], "verified");
    assert!(p["time"].as_str().unwrap().ends_with('Z'));
    let author = p["author"].as_str().unwrap().to_owned();
    assert_eq!(author.len(), 66);
    let text = b.ok(&["posts", "science"]);
    assert!(
        text.contains("signed, verified") && text.contains("hello"),
        "{text}"
    );
    eventually("B reads the sealed post", || {
        b.json(&["--json", "posts", "club"])["posts"][0]["text"] == "sealed from a file"
    });

    // A closed community: its secret is handed over out of band, and never lies in the
    // database in the clear (it is sealed under the node's key).
    let created = a.json(&["--json", "community", "create", "inner"]);
    let secret = created["secret"].as_str().unwrap().to_owned();
    b.ok(&["community", "follow", "inner", "--secret", &secret]);
    a.ok(&["post", "inner", "members only", "--sealed"]);
    eventually("B reads the closed community's post", || {
        b.json(&["--json", "posts", "inner"])["posts"][0]["text"] == "members only"
    });
    let raw = hex::decode(&secret).unwrap();
    for name in ["kith.db", "kith.db-wal"] {
        if let Ok(db) = std::fs::read(tmp.join("b").join(name)) {
            assert!(
                !db.windows(raw.len()).any(|w| w == raw.as_slice()),
                "the closed community's secret is in {name} in the clear"
            );
        }
    }

    // Posts and follows are kept across a restart.
    b.stop();
    let mut b = Node::start(&tmp.join("b"));
    assert_eq!(
        b.json(&["--json", "posts", "club"])["posts"][0]["text"],
        "sealed from a file"
    );
    assert_eq!(
        b.json(&["--json", "posts", "inner"])["posts"][0]["text"],
        "members only",
        "the closed community opens again after a restart"
    );
    let communities = b.json(&["--json", "community", "list"]);
    assert!(communities
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "club" && c["followed"] == true));

    // Block the author: its posts go, and the block survives a restart.
    b.ok(&["community", "block", &author]);
    assert_eq!(
        b.json(&["--json", "posts", "science"])["posts"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    b.stop();
    let b = Node::start(&tmp.join("b"));
    let authors = b.json(&["--json", "community", "authors"]);
    assert_eq!(authors[0]["blocked"], true);
    assert_eq!(
        b.json(&["--json", "posts", "club"])["posts"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // Bad input.
    b.fails(&["post", "", "text"]);
    b.fails(&["post", "science", "   "]);
    b.fails(&["community", "block", "not-a-key"]);
    b.fails(&["community", "follow", "x", "--secret", "zz"]);
}
