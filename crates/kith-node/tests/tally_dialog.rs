//! The tally dialog's other paths, performed by nodes in this process: a counter-offer (the
//! opener asked for other terms than the issuer offered), a void (a counter-offer that
//! changes the issuer's side is refused), a ticket only one partner may use, the close of a
//! tally, and payments or invoices naming a tally that does not exist.

mod support;

use bytes::Bytes;
use kith_node::api::value::{PayBody, TallyIdBody, TallyOpenBody, TallyTicketOrder};
use kith_node::endpoint::{MemoryNet, Payload};
use kith_node::tally::{users, TallyError};
use kith_store::datadir::DataDir;
use kith_store::meta::TallyRow;
use kith_value::cert::Chad;
use kith_value::message::{Body, Message, TallyAction};
use kith_value::tally::terms_with_limit;
use kith_value::{Side, Tally};
use std::time::Duration;
use support::{eventually, TestNode};

fn add_user(node: &TestNode, cuid: &str) {
    let data = DataDir::open_or_create(node.dir.path().join("data")).unwrap();
    let meta = node.node.store.files().meta();
    users::add_user(&data, meta, cuid, cuid, &node.agent.to_string(), 0).unwrap();
}

fn tallies(node: &TestNode) -> Vec<TallyRow> {
    node.node.store.files().meta().value_tallies().unwrap()
}

fn state(node: &TestNode) -> String {
    tallies(node)
        .first()
        .map(|t| t.state.clone())
        .unwrap_or_default()
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

async fn ticket(node: &TestNode, limit: u64, for_chad: Option<String>) -> String {
    node.node
        .tallies
        .issue_ticket(TallyTicketOrder {
            user: None,
            limit,
            for_chad,
            ttl_secs: 600,
        })
        .await
        .unwrap()
        .line
}

fn open_body(ticket: &str, user: Option<&str>, limit: u64) -> TallyOpenBody {
    TallyOpenBody {
        ticket: ticket.to_owned(),
        user: user.map(str::to_owned),
        limit,
    }
}

fn pay(partner: &str, units: u64) -> PayBody {
    PayBody {
        partner: partner.into(),
        units,
        memo: None,
        user: None,
    }
}

/// Two linked nodes, alice on `a` and bob on `b`.
async fn pair(net: &MemoryNet) -> (TestNode, TestNode) {
    let a = TestNode::start(net, |_| {}).await;
    let b = TestNode::start(net, |_| {}).await;
    add_user(&a, "alice");
    add_user(&b, "bob");
    b.link_to(&a).await;
    (a, b)
}

/// The tally's id for a ticket's token, as both sides derive it.
fn tally_uuid_for(token: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("kith tally v1 {}", token.to_ascii_lowercase()));
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Records at bob's site that bob asked for the tally of `token`, granting `limit` (what
/// `kith tally open` records before it sends the ticket message).
fn expect(a: &TestNode, b: &TestNode, token: &str, limit: i64) -> String {
    let uuid = tally_uuid_for(token);
    let row = TallyRow {
        uuid: uuid.clone(),
        side: Side::Foil.as_str().into(),
        cuid: "bob".into(),
        partner: chad(a, "alice").to_string(),
        partner_agent: a.agent.to_string(),
        state: "draft".into(),
        doc: "{}".into(),
        our_limit: limit,
        their_limit: 0,
        conf_index: 0,
        conf_digest: String::new(),
        balance: 0,
        chits: 0,
        created_at: 0,
        updated_at: 0,
    };
    b.node.store.files().meta().value_put_tally(&row).unwrap();
    uuid
}

/// Bob's site sends alice's site the ticket message, saying bob grants `says` (a site whose
/// user changed its mind, or another implementation, may say other than it expects).
async fn send_ticket(a: &TestNode, b: &TestNode, token: &str, says: u64) {
    let keys = DataDir::open_or_create(b.dir.path().join("data"))
        .unwrap()
        .keys_dir();
    let user = &b.node.store.files().meta().value_users().unwrap()[0];
    let cert = users::certificate(
        user,
        &users::load_key(&keys, "bob").unwrap(),
        &chad(b, "bob"),
        0,
    );
    let msg = Message {
        to: chad(a, "alice"),
        from: chad(b, "bob"),
        body: Body::Ticket {
            token: token.to_owned(),
            cert,
            terms: Some(terms_with_limit(says)),
        },
    };
    send_json(b, a, &msg).await;
}

fn token_of(line: &str) -> String {
    kith_node::ticket::Ticket::parse(line).unwrap().token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_with_other_terms_is_countered_and_the_counter_signed() {
    let net = MemoryNet::new();
    let (a, b) = pair(&net).await;
    let line = ticket(&a, 100, None).await;
    // Bob means to grant 50, his site's message says 10: alice offers 10, bob counters 50.
    let uuid = expect(&a, &b, &token_of(&line), 50);
    send_ticket(&a, &b, &token_of(&line), 10).await;
    eventually("both sides are open", || {
        state(&a) == "open" && state(&b) == "open"
    })
    .await;
    let (ta, tb) = (&tallies(&a)[0], &tallies(&b)[0]);
    assert_eq!(ta.uuid, uuid);
    assert_eq!(
        (ta.our_limit, ta.their_limit),
        (100, 50),
        "alice signed the counter"
    );
    assert_eq!((tb.our_limit, tb.their_limit), (50, 100));
    let doc: Tally = Tally::from_json(serde_json::from_str(&ta.doc).unwrap()).unwrap();
    assert_eq!(
        doc.revision(),
        2,
        "one counter-offer (an offer is revision 1)"
    );
    doc.verify_both().unwrap();
    assert_eq!(ta.doc, tb.doc, "both hold the same signed tally");
    // And the countered limit is what holds: alice may owe bob 50, not 10, and no more.
    a.node.tallies.pay(pay("bob", 50)).await.unwrap();
    assert!(
        a.node.tallies.pay(pay("bob", 1)).await.is_err(),
        "bob's limit"
    );
    for node in [&a, &b] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_offer_that_changes_the_issuers_side_voids_the_tally() {
    let net = MemoryNet::new();
    let (a, b) = pair(&net).await;
    let line = ticket(&a, 100, None).await;
    // Bob's site sends the ticket message but bob asked for nothing: alice's offer is kept
    // there for him to see, unsigned, and alice's side waits in `offer`.
    send_ticket(&a, &b, &token_of(&line), 50).await;
    eventually("alice offered and bob's site keeps it", || {
        state(&a) == "offer" && state(&b) == "peer_offer"
    })
    .await;
    // Bob "counters" by granting himself 1000 units of alice's credit.
    let offer = Tally::from_json(serde_json::from_str(&tallies(&a)[0].doc).unwrap()).unwrap();
    let mut greedy = offer;
    greedy.set(&["stock", "terms"], terms_with_limit(1000));
    greedy.next_revision();
    greedy.clear_signatures();
    let draft = Message {
        to: chad(&a, "alice"),
        from: chad(&b, "bob"),
        body: Body::Tally {
            action: TallyAction::Draft,
            tally: greedy,
        },
    };
    send_json(&b, &a, &draft).await;
    eventually("alice voids the tally", || state(&a) == "void").await;
    assert_eq!(a.counter("value_refused_offer"), 1);
    eventually("bob's side hears the void", || state(&b) == "void").await;
    assert_eq!(tallies(&a)[0].our_limit, 100, "alice's terms never changed");
    assert!(matches!(
        b.node.tallies.pay(pay("alice", 1)).await,
        Err(TallyError::NotFound(_) | TallyError::Refused(_))
    ));
    for node in [&a, &b] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_for_one_partner_refuses_another_and_still_serves_its_partner() {
    let net = MemoryNet::new();
    let (a, b) = pair(&net).await;
    add_user(&b, "carol");
    let carol = chad(&b, "carol").to_string();
    let line = ticket(&a, 100, Some(carol)).await;
    // Bob (same site as carol) tries it: refused, counted, nothing recorded at alice's site.
    let tried = tokio::time::timeout(
        Duration::from_secs(3),
        b.node.tallies.open(open_body(&line, Some("bob"), 50)),
    )
    .await;
    assert!(
        !matches!(tried, Ok(Ok(_))),
        "bob may not use carol's ticket"
    );
    eventually("the ticket is refused", || {
        a.counter("value_refused_ticket") == 1
    })
    .await;
    assert!(tallies(&a).is_empty());
    // Carol, whom it names, still can.
    let view = b
        .node
        .tallies
        .open(open_body(&line, Some("carol"), 50))
        .await
        .unwrap();
    assert_eq!((view.state.as_str(), view.user.as_str()), ("open", "carol"));
    eventually("alice's side is open", || state(&a) == "open").await;
    for node in [&a, &b] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_tally_settles_to_zero_then_takes_no_more_payments() {
    let net = MemoryNet::new();
    let (a, b) = pair(&net).await;
    let line = ticket(&a, 100, None).await;
    b.node
        .tallies
        .open(open_body(&line, None, 50))
        .await
        .unwrap();
    eventually("alice's side is open", || state(&a) == "open").await;
    b.node.tallies.pay(pay("alice", 5)).await.unwrap();
    let close = TallyIdBody {
        tally: "bob".into(),
        user: None,
    };
    let view = a.node.tallies.close(close).await.unwrap();
    assert_eq!(view.state, "closing", "closing until the balance is zero");
    eventually("bob's side is closing", || state(&b) == "closing").await;
    // Settling payments still go through; at zero the tally is closed on both sides.
    a.node.tallies.pay(pay("bob", 5)).await.unwrap();
    eventually("both sides are closed", || {
        state(&a) == "close" && state(&b) == "close"
    })
    .await;
    let chits = tallies(&a)[0].chits;
    assert!(b.node.tallies.pay(pay("alice", 1)).await.is_err());
    assert!(a.node.tallies.invoice(pay("bob", 1)).await.is_err());
    assert_eq!(
        tallies(&a)[0].chits,
        chits,
        "nothing chained after the close"
    );
    assert_eq!((tallies(&a)[0].balance, tallies(&b)[0].balance), (0, 0));
    for node in [&a, &b] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_and_invoices_naming_no_tally_are_refused_and_change_nothing() {
    let net = MemoryNet::new();
    let (a, b) = pair(&net).await;
    let line = ticket(&a, 100, None).await;
    b.node
        .tallies
        .open(open_body(&line, None, 50))
        .await
        .unwrap();
    eventually("alice's side is open", || state(&a) == "open").await;
    let missing = "0badc0de-0000-4000-8000-000000000000";
    for partner in [
        missing,
        "nobody",
        "zed:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let err = b.node.tallies.pay(pay(partner, 1)).await.unwrap_err();
        assert!(matches!(err, TallyError::NotFound(_)), "{partner}: {err}");
        assert!(
            err.to_string().contains(partner) || err.to_string().contains("no tally"),
            "{err}"
        );
        let err = b.node.tallies.invoice(pay(partner, 1)).await.unwrap_err();
        assert!(matches!(err, TallyError::NotFound(_)), "{partner}: {err}");
    }
    for node in [&a, &b] {
        let rows = tallies(node);
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].chits, rows[0].balance), (0, 0), "nothing changed");
        assert!(node
            .node
            .store
            .files()
            .meta()
            .value_all_chits()
            .unwrap()
            .is_empty());
    }
    for node in [&a, &b] {
        node.stop().await;
    }
}
