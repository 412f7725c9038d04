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
