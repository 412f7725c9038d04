//! Attacks on the value service, performed by nodes in this process: a site that is not party
//! to a tally sends chits about it, a party forges its partner's pledge, a used tally ticket
//! is presented again by another site, a payment names a request that was never made. Each
//! is refused and counted, and no ledger changes.

mod support;

use bytes::Bytes;
use kith_node::api::value::{PayBody, TallyOpenBody, TallyTicketOrder};
use kith_node::endpoint::{MemoryNet, Payload};
use kith_node::tally::users;
use kith_store::datadir::DataDir;
use kith_value::cert::Chad;
use kith_value::message::{Body, Message};
use kith_value::{new_uuid, Chit, Side, UserKey};
use serde_json::json;
use support::{eventually, TestNode};

fn add_user(node: &TestNode, cuid: &str) -> UserKey {
    let data = DataDir::open_or_create(node.dir.path().join("data")).unwrap();
    let meta = node.node.store.files().meta();
    users::add_user(&data, meta, cuid, cuid, &node.agent.to_string(), 0).unwrap();
    users::load_key(&data.keys_dir(), cuid).unwrap()
}

fn balance(node: &TestNode) -> i64 {
    node.node
        .store
        .files()
        .meta()
        .value_tallies()
        .unwrap()
        .first()
        .map_or(0, |t| t.balance)
}

fn chad(node: &TestNode, cuid: &str) -> Chad {
    Chad {
        cuid: cuid.into(),
        agent: node.agent.to_string(),
        host: None,
        port: None,
    }
}

async fn send_json(from: &TestNode, to: &TestNode, msg: &Message) {
    from.node
        .endpoint
        .send(to.agent, Payload::Json(Bytes::from(msg.to_bytes())))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_forgers_and_replayed_tickets_change_nothing() {
    let net = MemoryNet::new();
    let a = TestNode::start(&net, |_| {}).await;
    let b = TestNode::start(&net, |_| {}).await;
    let c = TestNode::start(&net, |_| {}).await;
    add_user(&a, "alice");
    let bob_key = add_user(&b, "bob");
    let carol_key = add_user(&c, "carol");

    let issued = a
        .node
        .tallies
        .issue_ticket(TallyTicketOrder {
            user: None,
            limit: 100,
            for_chad: None,
            ttl_secs: 600,
        })
        .await
        .unwrap();
    let view = b
        .node
        .tallies
        .open(TallyOpenBody {
            ticket: issued.line.clone(),
            user: None,
            limit: 50,
        })
        .await
        .unwrap();
    assert_eq!(view.state, "open");
    let tally = view.tally.clone();
    eventually("alice's side is open", || {
        a.node.store.files().meta().value_tallies().unwrap()[0].state == "open"
    })
    .await;
    b.node
        .tallies
        .pay(PayBody {
            partner: "alice".into(),
            units: 10,
            memo: None,
            user: None,
        })
        .await
        .unwrap();
    eventually("alice sees the payment", || balance(&a) == 10).await;

    // Carol's site, linked to alice's for other business, tries the ticket bob used.
    c.link_to(&a).await;
    let replay = Message {
        to: chad(&a, "alice"),
        from: chad(&c, "carol"),
        body: Body::Ticket {
            token: issued.ticket.token.clone(),
            cert: users::certificate(
                &c.node.store.files().meta().value_users().unwrap()[0],
                &carol_key,
                &chad(&c, "carol"),
                0,
            ),
            terms: None,
        },
    };
    send_json(&c, &a, &replay).await;
    eventually("the replayed ticket is refused", || {
        a.counter("value_refused_ticket") == 1
    })
    .await;

    // Carol pays "on" alice and bob's tally, claiming to be bob: not party, refused.
    let mut chit = Chit::tran(
        &tally,
        new_uuid(&mut rand::rngs::OsRng),
        Side::Foil,
        50,
        0,
        None,
        None,
    );
    chit.sign_with(&carol_key, &mut rand::rngs::OsRng).unwrap();
    let forged = Message {
        to: chad(&a, "alice"),
        from: chad(&b, "bob"),
        body: Body::Good {
            chit: chit.clone(),
            at: None,
            conf: None,
        },
    };
    send_json(&c, &a, &forged).await;
    eventually("the stranger's chit is refused", || {
        a.counter("value_refused_not_party") >= 1
    })
    .await;

    // Bob's own site sends a chit pledging bob's value but signed by another key: refused.
    let forged_by_party = Message {
        to: chad(&a, "alice"),
        from: chad(&b, "bob"),
        body: Body::Good {
            chit,
            at: None,
            conf: None,
        },
    };
    send_json(&b, &a, &forged_by_party).await;
    eventually("the forged pledge is refused", || {
        a.counter("value_refused_chit") >= 1
    })
    .await;

    // A payment that names a request alice never made.
    let mut unasked = Chit::tran(
        &tally,
        new_uuid(&mut rand::rngs::OsRng),
        Side::Foil,
        3,
        0,
        None,
        Some(json!({"request": "no-such-request"})),
    );
    unasked.sign_with(&bob_key, &mut rand::rngs::OsRng).unwrap();
    let msg = Message {
        to: chad(&a, "alice"),
        from: chad(&b, "bob"),
        body: Body::Good {
            chit: unasked,
            at: None,
            conf: None,
        },
    };
    send_json(&b, &a, &msg).await;
    eventually("the unrequested payment is refused", || {
        a.counter("value_refused_chit") >= 2
    })
    .await;

    // Nothing moved.
    assert_eq!(balance(&a), 10);
    assert_eq!(balance(&b), -10);
    let tallies = a.node.store.files().meta().value_tallies().unwrap();
    assert_eq!(tallies.len(), 1, "no tally for carol");
    assert_eq!(tallies[0].chits, 1);
    for node in [&a, &b, &c] {
        node.stop().await;
    }
}

/// Sets (or clears) `peer`'s reference cipher order at `node`, as `kith peers
/// --reference-order` does, and closes a link up now so the next one takes it.
fn reference_order(node: &TestNode, peer: &TestNode, on: bool) {
    let meta = node.node.store.files().meta();
    assert!(meta
        .set_peer_reference_order(&peer.agent.to_string(), on)
        .unwrap());
    node.node.endpoint.close(&peer.agent);
}

async fn unlinked(a: &TestNode, b: &TestNode) {
    eventually("the links are closed", || {
        !a.node.endpoint.is_linked(&b.agent) && !b.node.endpoint.is_linked(&a.agent)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_cipher_order_is_a_per_peer_option_both_ends_must_share() {
    let net = MemoryNet::new();
    let a = TestNode::start(&net, |_| {}).await;
    let b = TestNode::start(&net, |_| {}).await;
    add_user(&a, "alice");
    add_user(&b, "bob");
    b.link_to(&a).await;
    assert_eq!(
        a.counter("links_reference_order"),
        0,
        "the default is the spec"
    );

    // Both ends set it for the other: the tally dialog and a payment run over a link in the
    // reference library's order.
    reference_order(&a, &b, true);
    reference_order(&b, &a, true);
    unlinked(&a, &b).await;
    let issued = a
        .node
        .tallies
        .issue_ticket(TallyTicketOrder {
            user: None,
            limit: 100,
            for_chad: None,
            ttl_secs: 600,
        })
        .await
        .unwrap();
    let view = b
        .node
        .tallies
        .open(TallyOpenBody {
            ticket: issued.line,
            user: None,
            limit: 50,
        })
        .await
        .unwrap();
    assert_eq!(view.state, "open");
    b.node
        .tallies
        .pay(PayBody {
            partner: "alice".into(),
            units: 7,
            memo: None,
            user: None,
        })
        .await
        .unwrap();
    eventually("alice sees the payment", || balance(&a) == 7).await;
    assert!(a.counter("links_reference_order") >= 1);
    assert!(b.counter("links_reference_order") >= 1);
    assert_eq!(a.counter("links_undecryptable"), 0);
    assert_eq!(b.counter("links_undecryptable"), 0);

    // Only one end keeps it: the link fails on its first transport frame, counted; nothing
    // reaches the tally service and no ledger moves.
    reference_order(&b, &a, false);
    unlinked(&a, &b).await;
    let messages = a.counter("value_messages");
    assert!(b.node.endpoint.ping(a.agent).await.is_err());
    eventually("the undecryptable link is counted", || {
        a.counter("links_undecryptable") + b.counter("links_undecryptable") >= 1
    })
    .await;
    assert_eq!(a.counter("value_messages"), messages);
    assert_eq!((balance(&a), balance(&b)), (7, -7));

    // Agreeing again, they carry on.
    reference_order(&b, &a, true);
    b.node
        .tallies
        .pay(PayBody {
            partner: "alice".into(),
            units: 1,
            memo: None,
            user: None,
        })
        .await
        .unwrap();
    eventually("alice sees the second payment", || balance(&a) == 8).await;
    for node in [&a, &b] {
        node.stop().await;
    }
}
