//! Chat between real `kith up` processes: three nodes linked in a line (A - B - C) talk in a
//! public channel and a closed one, send direct messages end to end, and a message to a node
//! that is offline arrives when it comes back.

mod support;

use serde_json::Value;
use std::path::Path;
use support::{eventually, Node};

fn node_id(node: &Node) -> String {
    node.ready["node_id"].as_str().unwrap().to_owned()
}

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

fn has_text(node: &Node, channel: Option<&str>, text: &str) -> bool {
    messages(node, channel).iter().any(|m| m["text"] == text)
}

/// A - B - C, linked in a line (B connects to A, C connects to B).
fn line(tmp: &Path) -> (Node, Node, Node) {
    let a = Node::start(&tmp.join("a"));
    let b = Node::start(&tmp.join("b"));
    let c = Node::start(&tmp.join("c"));
    b.ok(&["connect", a.ok(&["ticket"]).trim()]);
    c.ok(&["connect", b.ok(&["ticket"]).trim()]);
    (a, b, c)
}

#[test]
fn three_nodes_in_a_line_chat_in_public_and_closed_channels_and_directly() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = line(tmp.path());

    // A public channel: created on A, seen and joined by C two hops away.
    a.ok(&["chat", "join", "lobby"]);
    eventually("C hears of the lobby", || {
        c.ok(&["chat", "channels"]).contains("lobby")
    });
    c.ok(&["chat", "join", "lobby"]);
    b.ok(&["chat", "join", "lobby"]);
    eventually("A sees C as a member", || {
        let channels: Value = a.json(&["chat", "channels", "--json"]);
        channels[0]["members"].as_array().unwrap().len() >= 2
    });
    a.ok(&["chat", "say", "lobby", "hello from A"]);
    eventually("C reads A's message", || {
        has_text(&c, Some("lobby"), "hello from A")
    });
    eventually("B reads it too", || {
        has_text(&b, Some("lobby"), "hello from A")
    });
    let on_c = messages(&c, Some("lobby"));
    let m = on_c.iter().find(|m| m["text"] == "hello from A").unwrap();
    assert_eq!(m["sender"], node_id(&a));
    assert_eq!(m["channel"], "lobby");
    assert!(m["time"].as_str().unwrap().starts_with("20"));

    // A direct message from A to C, routed through B.
    a.ok(&["chat", "send", &node_id(&c), "psst, C"]);
    eventually("C gets the direct message", || {
        has_text(&c, None, "psst, C")
    });
    assert!(
        !has_text(&b, None, "psst, C"),
        "B relays it without showing it"
    );

    // A closed channel: B is not invited and cannot read it; C is invited and can.
    a.ok(&["chat", "join", "secret", "--closed"]);
    a.ok(&["chat", "invite", "secret", &node_id(&c)]);
    eventually("C joins the closed channel on the invitation", || {
        let channels: Value = c.json(&["chat", "channels", "--json"]);
        channels
            .as_array()
            .unwrap()
            .iter()
            .any(|ch| ch["name"] == "secret" && ch["joined"] == true)
    });
    a.ok(&["chat", "say", "secret", "for members only"]);
    eventually("C reads the closed channel", || {
        has_text(&c, Some("secret"), "for members only")
    });
    let err = b.fails(&["chat", "join", "secret"]);
    assert!(err.contains("closed"), "{err}");
    assert!(!has_text(&b, None, "for members only"));
}

#[test]
fn a_message_to_an_offline_node_arrives_when_it_comes_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, mut c) = line(tmp.path());
    let c_id = node_id(&c);
    // A learns a route to C, then C goes away.
    a.ok(&["chat", "send", &c_id, "first"]);
    eventually("C gets the first message", || has_text(&c, None, "first"));
    c.stop();
    eventually("B notices C is gone", || b.links() == 1);
    a.ok(&["chat", "send", &c_id, "while you were away"]);
    // B (or A) keeps it; restarting C delivers it.
    let c = Node::start(&tmp.path().join("c"));
    eventually("C links again", || c.links() == 1);
    eventually("C gets the message sent while it was offline", || {
        has_text(&c, None, "while you were away")
    });
    drop(a);
}

#[test]
fn connect_opens_a_direct_link_between_nodes_that_know_each_other_through_a_third() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = line(tmp.path());
    // A and C are strangers; B knows both. A learns of C through chat routing first.
    c.ok(&["chat", "join", "lobby"]);
    eventually("A has a chat route to C", || {
        a.kith(&["chat", "connect", &node_id(&c)]).status.success()
    });
    eventually("A and C are linked directly", || {
        a.peer_state(&c.agent()) == "linked" && c.peer_state(&a.agent()) == "linked"
    });
    assert_eq!(a.links(), 2, "A keeps its link with B and has one with C");
    assert_eq!(b.links(), 2);
    assert!(c.counter("chat_connects_answered") >= 1);
    a.ok(&["ping", &c.agent()]);
}

#[test]
fn an_invitation_can_wait_for_the_user_to_join() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Node::start(&tmp.path().join("a"));
    let b = Node::start_with(&tmp.path().join("b"), "chat_auto_join_invites = false\n");
    b.ok(&["connect", a.ok(&["ticket"]).trim()]);
    a.ok(&["chat", "join", "board", "--closed"]);
    eventually("the invitation reaches B", || {
        a.kith(&["chat", "invite", "board", &node_id(&b)]);
        b.ok(&["chat", "channels"]).contains("invited")
    });
    a.ok(&["chat", "say", "board", "before B accepted"]);
    b.ok(&["chat", "join", "board"]);
    eventually("B is a member after accepting", || {
        let channels: Value = b.json(&["chat", "channels", "--json"]);
        channels
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "board" && c["joined"] == true)
    });
    a.ok(&["chat", "say", "board", "after B accepted"]);
    eventually("B reads the closed channel", || {
        has_text(&b, Some("board"), "after B accepted")
    });
}

#[test]
fn chat_join_fails_when_the_membership_cannot_be_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    // The control call must outlive the database's busy timeout (10 s).
    let a = Node::start_with(
        &tmp.path().join("a"),
        "[limits]\ncontrol_timeout_ms = 30000\n",
    );
    // Hold the database's write lock: every write the node tries fails, as on a full disk.
    let db = rusqlite::Connection::open(a.data.join("kith.db")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let err = a.fails(&["chat", "join", "lobby"]);
    assert!(err.contains("could not record"), "{err}");
    db.execute_batch("ROLLBACK").unwrap();
    let channels: Value = a.json(&["chat", "channels", "--json"]);
    assert!(
        !channels
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "lobby" && c["joined"] == true),
        "not reported joined: {channels}"
    );
    a.ok(&["chat", "join", "lobby"]);
}
