//! Chat across time, with real `kith up` processes: two friends chat, go quiet until their
//! link closes, restart their nodes (one while the other speaks), and every message arrives
//! in the channel they were in, with no new channel; what was said reports "queued" while
//! nobody can have it and `chat read` later shows it delivered. Names are used instead of
//! ids, `kith peers` shows each peer's chat name, a block is kept across a restart, a
//! channel is joined by id, and a message to an id nobody knows says so.

mod support;

use serde_json::Value;
use std::path::Path;
use support::{eventually, Node};

/// Links close after a second and a half of quiet.
const QUICK_IDLE: &str = "[limits]\nidle_timeout_ms = 1500\n";

fn messages(node: &Node, channel: Option<&str>) -> Vec<Value> {
    let mut args = vec!["chat", "read", "--json"];
    if let Some(c) = channel {
        args.push(c);
    }
    node.ok(&args)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn find(node: &Node, channel: Option<&str>, text: &str) -> Option<Value> {
    messages(node, channel)
        .into_iter()
        .find(|m| m["text"] == text)
}

fn channel_ids(node: &Node) -> Vec<(String, String, bool)> {
    let channels: Value = node.json(&["chat", "channels", "--json"]);
    channels
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["channel_id"].as_str().unwrap().to_owned(),
                c["joined"] == true,
            )
        })
        .collect()
}

fn start(dir: &Path) -> Node {
    Node::start_with(dir, QUICK_IDLE)
}

/// Starts a node again on the port it listened on (as a node does), so its peers find it.
fn restart(dir: &Path, was: &Node) -> Node {
    let listen = was.ready["listen"].as_str().unwrap().to_owned();
    Node::start_up(dir, &["--listen", &listen])
}

#[test]
fn two_friends_go_quiet_restart_and_every_message_arrives_in_their_channel() {
    let tmp = tempfile::tempdir().unwrap();
    let (da, db) = (tmp.path().join("alice"), tmp.path().join("bob"));
    let mut a = start(&da);
    let mut b = start(&db);
    b.ok(&["connect", a.ok(&["ticket"]).trim()]);
    a.ok(&["chat", "nick", "alice"]);
    b.ok(&["chat", "nick", "bob"]);
    a.ok(&["chat", "join", "friends"]);
    b.ok(&["chat", "join", "friends"]);
    let friends = channel_ids(&a)[0].1.clone();
    eventually("each sees the other in the channel", || {
        a.ok(&["chat", "channels", "--json"]).contains("bob@")
            && b.ok(&["chat", "channels", "--json"]).contains("alice@")
    });
    // Names, not ids: kith peers shows bob's chat name, chat commands take it.
    eventually("alice's peers list shows bob's chat name", || {
        a.ok(&["peers"]).contains("chat bob@")
    });
    let peers: Value = a.json(&["peers", "--json"]);
    assert_eq!(peers[0]["chat_name"], "bob");
    assert!(a.ok(&["chat", "who"]).contains("bob"));
    a.ok(&["chat", "send", "bob", "hello by name"]);
    eventually("bob gets the direct message", || {
        find(&b, None, "hello by name").is_some()
    });
    let mine = find(&a, None, "hello by name").unwrap();
    assert!(
        mine["recipient"].as_str().unwrap().starts_with("bob@"),
        "{mine}"
    );

    // Quiet until the link closes for idleness; then alice speaks: it arrives.
    eventually("the quiet link closes", || a.links() == 0 && b.links() == 0);
    let said = a.ok(&["chat", "say", "friends", "after a quiet spell"]);
    assert!(
        said.starts_with("sent") || said.starts_with("queued"),
        "{said}"
    );
    eventually("bob reads it after the quiet spell", || {
        find(&b, Some("friends"), "after a quiet spell").is_some()
    });
    eventually("alice's log shows it delivered", || {
        find(&a, Some("friends"), "after a quiet spell").unwrap()["state"] == "delivered"
    });

    // Both restart; bob stays down while alice speaks: queued, still exit 0.
    a.stop();
    b.stop();
    let a = restart(&da, &a);
    let said = a.ok(&["chat", "say", "friends", "while you were down"]);
    assert!(said.starts_with("queued"), "{said}");
    assert_eq!(
        find(&a, Some("friends"), "while you were down").unwrap()["state"],
        "queued"
    );
    let b = restart(&db, &b);
    eventually("bob, back, reads what was said while he was down", || {
        find(&b, Some("friends"), "while you were down").is_some()
    });
    eventually("alice's log shows it delivered later", || {
        let m = find(&a, Some("friends"), "while you were down").unwrap();
        m["state"] == "delivered" && m["delivered_at"].is_number()
    });
    // The same channel, no new one, on both sides; joining again changes nothing.
    for node in [&a, &b] {
        let channels = channel_ids(node);
        assert_eq!(
            channels,
            vec![("friends".to_owned(), friends.clone(), true)],
            "one channel, the same id"
        );
    }
    assert!(b.ok(&["chat", "join", "friends"]).contains(&friends));
    b.ok(&["chat", "say", "friends", "back again"]);
    eventually("alice reads bob after both restarts", || {
        find(&a, Some("friends"), "back again").is_some()
    });
    // Names survived the restart.
    assert!(a.ok(&["chat", "who"]).contains("bob"));
}

#[test]
fn a_block_is_kept_across_a_restart_and_join_by_id_and_unknown_ids_are_handled() {
    let tmp = tempfile::tempdir().unwrap();
    let (da, db) = (tmp.path().join("a"), tmp.path().join("b"));
    let mut a = Node::start(&da);
    let b = Node::start(&db);
    b.ok(&["connect", a.ok(&["ticket"]).trim()]);
    a.ok(&["chat", "join", "books"]);
    let books = channel_ids(&a)[0].1.clone();
    eventually("b hears of the channel", || {
        b.ok(&["chat", "channels"]).contains("books")
    });
    // Joined by id; an unknown id makes no channel.
    b.ok(&["chat", "join", &books]);
    let unknown = "0b6d5bd5-3a31-4c39-9a4b-7fd08d6b1c2e";
    let err = b.fails(&["chat", "join", unknown]);
    assert!(err.contains("no channel with id"), "{err}");
    assert_eq!(channel_ids(&b).len(), 1);
    // Saying in a channel one is not in names the next step.
    let err = b.fails(&["chat", "say", "elsewhere", "hi"]);
    assert!(err.contains("kith chat join elsewhere"), "{err}");
    // A message to an id nobody knows is kept, and said to be for an unknown node.
    let out = a.ok(&[
        "chat",
        "send",
        "5f715c17-4a41-482a-ab1f-45fa2cdd702b",
        "anyone?",
    ]);
    assert!(
        out.contains("queued") && out.contains("no node here has heard"),
        "{out}"
    );
    // A block, then a restart: still blocked.
    let b_id = b.ready["node_id"].as_str().unwrap().to_owned();
    a.ok(&["chat", "block", &b_id]);
    a.stop();
    let a = restart(&da, &a);
    eventually("b links again", || b.links() == 1);
    b.ok(&["chat", "say", "books", "can you hear me"]);
    b.ok(&["chat", "say", "books", "hello?"]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(find(&a, Some("books"), "hello?").is_none(), "blocked");
    assert!(a.ok(&["chat", "who"]).contains("[blocked]"));
    a.ok(&["chat", "block", &b_id, "--undo"]);
    b.ok(&["chat", "say", "books", "now?"]);
    eventually("a hears b once unblocked", || {
        find(&a, Some("books"), "now?").is_some()
    });
}

/// `kith chat` with no subcommand, driven from a pipe as a script would: /join shows the
/// channel's backlog (what this node has of it), plain lines are said there, /msg takes a name, /who and /names list
/// people, an unknown command suggests /help, and /quit leaves.
#[test]
fn the_interactive_chat_joins_says_and_messages_by_name() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let a = Node::start(&tmp.path().join("a"));
    let b = Node::start(&tmp.path().join("b"));
    b.ok(&["connect", a.ok(&["ticket"]).trim()]);
    b.ok(&["chat", "nick", "bob"]);
    b.ok(&["chat", "join", "lobby"]);
    eventually("a hears of the lobby", || {
        a.ok(&["chat", "channels"]).contains("lobby")
    });
    // The backlog is what this node has of the channel.
    a.ok(&["chat", "join", "lobby"]);
    b.ok(&["chat", "say", "lobby", "said before you came"]);
    eventually("a has it", || {
        a.ok(&["chat", "read", "lobby"])
            .contains("said before you came")
    });
    let mut chat = std::process::Command::new(env!("CARGO_BIN_EXE_kith"))
        .arg("--data")
        .arg(&a.data)
        .arg("chat")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = chat.stdin.take().unwrap();
    writeln!(input, "/join lobby").unwrap();
    writeln!(input, "hello from the interactive chat").unwrap();
    writeln!(input, "/msg bob a word in private").unwrap();
    writeln!(input, "/names").unwrap();
    writeln!(input, "/frobnicate").unwrap();
    writeln!(input, "/quit").unwrap();
    drop(input);
    let out = chat.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("now talking in #lobby"), "{stdout}");
    assert!(
        stdout.contains("said before you came"),
        "the backlog: {stdout}"
    );
    assert!(stdout.contains("bob"), "/names: {stdout}");
    assert!(stdout.contains("/help"), "{stdout}");
    eventually("bob reads both", || {
        let read = b.ok(&["chat", "read"]);
        read.contains("hello from the interactive chat") && read.contains("a word in private")
    });
}
