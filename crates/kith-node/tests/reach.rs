//! Reach in process: two nodes behind (simulated) NATs link by a hole punched through a
//! mutual peer, first with a ticket and again later as known peers; and the bad input a
//! broker and a target meet (introductions to nodes the requester has no business with, a
//! flood of requests, answers from the wrong peer), refused with a counter while every link
//! stays up.

mod support;

use kith_node::endpoint::{envelope, MemoryNet, Via};
use kith_node::exchange::HAVE_COMMAND;
use kith_node::reach::wire::{Msg, PUNCH};
use std::sync::Arc;
use std::time::Duration;
use support::nat::Nats;
use support::{eventually, RawPeer, TestNode};

async fn natted(net: &MemoryNet, nats: &Nats) -> TestNode {
    natted_as(net, nats, false).await
}

async fn natted_as(net: &MemoryNet, nats: &Nats, symmetric: bool) -> TestNode {
    let nats2 = nats.clone();
    let node = TestNode::start_configured(
        net,
        |c| c.reach.keepalive_private = true,
        move |d| nats2.dialer(d, 7420),
    )
    .await;
    if symmetric {
        nats.hide_symmetric(node.addr.ip());
    } else {
        nats.hide(node.addr.ip());
    }
    node
}

async fn relaying_helper(
    net: &MemoryNet,
    limits: impl FnOnce(&mut kith_node::limits::NodeLimits),
) -> TestNode {
    TestNode::start_configured(
        net,
        |c| {
            c.reach.relay = true;
            limits(&mut c.node_limits);
        },
        |d| Arc::new(d),
    )
    .await
}

#[tokio::test(start_paused = true)]
async fn nodes_behind_nats_link_by_a_hole_punched_through_a_mutual_peer() {
    let net = MemoryNet::new();
    let nats = Nats::default();
    let helper = TestNode::start(&net, |_| {}).await;
    let a = natted(&net, &nats).await;
    let b = natted(&net, &nats).await;
    a.link_to(&helper).await;
    b.link_to(&helper).await;

    // B's ticket names the helper as its broker; B's address does not answer (its NAT).
    let mut ticket = b.ticket().await;
    kith_node::reach::advertise(&b.node.endpoint, &mut ticket);
    assert_eq!(ticket.via, vec![helper.agent.to_string()]);
    let started = tokio::time::Instant::now();
    a.node.endpoint.connect_ticket(ticket).await.unwrap();
    eventually("both count the punched link", || {
        a.node.endpoint.is_linked(&b.agent) && b.node.endpoint.is_linked(&a.agent)
    })
    .await;
    let took = started.elapsed();
    let seen_by_a = a.node.endpoint.link_view(&b.agent).unwrap();
    let seen_by_b = b.node.endpoint.link_view(&a.agent).unwrap();
    assert_eq!(seen_by_a.via, Via::Punched);
    assert_eq!(seen_by_b.via, Via::Punched);
    assert_eq!(
        seen_by_a.remote,
        b.addr.to_string(),
        "the link is with B, not the helper"
    );
    assert_eq!(seen_by_b.remote, a.addr.to_string());
    assert_eq!(helper.counter("punch_introductions"), 1);
    assert_eq!(b.counter("punch_offers_accepted"), 1);
    assert_eq!(a.counter("links_reached_indirectly"), 1);
    assert!(took < Duration::from_secs(3), "linked in {took:?}");

    // A message goes over it.
    a.node
        .endpoint
        .send(b.agent, envelope(HAVE_COMMAND, vec![1; 32]))
        .await
        .unwrap();
    eventually("B hears A", || b.counter("retention_notices_received") == 1).await;

    // Later, as known peers, with the NAT mappings long gone: punched again.
    a.node.endpoint.close(&b.agent);
    eventually("closed", || !b.node.endpoint.is_linked(&a.agent)).await;
    tokio::time::sleep(Duration::from_secs(120)).await;
    a.node
        .endpoint
        .send(b.agent, envelope(HAVE_COMMAND, vec![2; 32]))
        .await
        .unwrap();
    eventually("B hears A again", || {
        b.counter("retention_notices_received") == 2
    })
    .await;
    assert_eq!(
        a.node.endpoint.link_view(&b.agent).unwrap().via,
        Via::Punched
    );
    assert_eq!(helper.counter("punch_introductions"), 2);
}

#[tokio::test(start_paused = true)]
async fn introductions_to_nodes_the_requester_has_no_business_with_are_refused_and_counted() {
    let net = MemoryNet::new();
    let nats = Nats::default();
    let helper = TestNode::start(&net, |_| {}).await;
    let b = natted(&net, &nats).await;
    b.link_to(&helper).await;
    let mut stranger = RawPeer::known_to(&helper, net.host()).await;
    let connect = |id: u64, to: String, proof: Option<String>| {
        envelope(
            PUNCH,
            Msg::Connect {
                id,
                to,
                proof,
                relay: false,
            }
            .encode(),
        )
    };

    // No business: neither a known peer of B's nor a holder of one of its tickets.
    stranger.send(&connect(1, b.agent.to_string(), None)).await;
    // A forged ticket proof.
    stranger
        .send(&connect(2, b.agent.to_string(), Some("00".repeat(32))))
        .await;
    eventually("B refused both", || b.counter("punch_offers_refused") == 2).await;
    // The stranger hears `fail` both times, and nothing else happened.
    let mut fails = 0;
    while fails < 2 {
        let reply = stranger.recv().await.unwrap();
        if reply.command.as_str() == PUNCH {
            assert!(matches!(Msg::decode(&reply.data), Some(Msg::Fail { .. })));
            fails += 1;
        }
    }
    assert_eq!(b.counter("punch_offers_accepted"), 0);

    // A node the helper is not linked with.
    let nobody = kith_crypto::Identity::generate(&mut rand::rngs::OsRng).agent_id();
    stranger.send(&connect(3, nobody.to_string(), None)).await;
    eventually("refused", || {
        helper.counter("punch_refused_not_linked") == 1
    })
    .await;

    // A flood: the helper introduces at most its per-minute share, refuses the rest.
    stranger
        .send_many((10..210).map(|id| connect(id, b.agent.to_string(), None)))
        .await;
    eventually("the flood is refused", || {
        helper.counter("punch_refused_rate") >= 170
    })
    .await;
    let introduced = helper.counter("punch_introductions");
    assert!(introduced <= 20, "{introduced} introductions");
    eventually("B refused every offer it got", || {
        b.counter("punch_offers_refused") + b.counter("punch_offers_dropped") == introduced
    })
    .await;

    // Answers for introductions that are not the sender's.
    stranger
        .send(&envelope(PUNCH, Msg::Accept { id: 1 }.encode()))
        .await;
    stranger.send(&envelope(PUNCH, b"{not json".to_vec())).await;
    eventually("counted", || {
        helper.counter("punch_answers_unexpected") == 1 && helper.counter("punch_malformed") == 1
    })
    .await;

    // Every link is still up.
    assert!(helper.node.endpoint.is_linked(&b.agent));
    assert!(helper.node.endpoint.is_linked(&stranger.agent()));
}

#[tokio::test(start_paused = true)]
async fn behind_symmetric_nats_the_link_is_relayed_then_punched_when_the_nats_allow() {
    let net = MemoryNet::new();
    let nats = Nats::default();
    let helper = relaying_helper(&net, |_| {}).await;
    let a = natted_as(&net, &nats, true).await;
    let b = natted_as(&net, &nats, true).await;
    a.link_to(&helper).await;
    b.link_to(&helper).await;

    let mut ticket = b.ticket().await;
    kith_node::reach::advertise(&b.node.endpoint, &mut ticket);
    a.node.endpoint.connect_ticket(ticket).await.unwrap();
    eventually("both count the relayed link", || {
        a.node.endpoint.is_linked(&b.agent) && b.node.endpoint.is_linked(&a.agent)
    })
    .await;
    assert_eq!(
        a.node.endpoint.link_view(&b.agent).unwrap().via,
        Via::Relayed
    );
    assert_eq!(
        b.node.endpoint.link_view(&a.agent).unwrap().via,
        Via::Relayed
    );
    assert_eq!(a.counter("punches_failed"), 1);
    assert_eq!(helper.counter("relay_circuits_opened"), 1);

    // Payloads both ways, and a round trip, over the circuit.
    for n in 0..50u8 {
        a.node
            .endpoint
            .send(b.agent, envelope(HAVE_COMMAND, vec![n; 32]))
            .await
            .unwrap();
    }
    b.node
        .endpoint
        .send(a.agent, envelope(HAVE_COMMAND, vec![9; 32]))
        .await
        .unwrap();
    eventually("both hear", || {
        b.counter("retention_notices_received") == 50
            && a.counter("retention_notices_received") == 1
    })
    .await;
    a.node.endpoint.ping(b.agent).await.unwrap();
    assert!(helper.counter("relay_bytes") > 0);

    // The NATs become punchable: the next upgrade attempt moves the link off the relay.
    nats.make_cone(a.addr.ip());
    nats.make_cone(b.addr.ip());
    tokio::time::sleep(Duration::from_secs(40)).await;
    eventually("the link is punched now", || {
        a.node
            .endpoint
            .link_view(&b.agent)
            .is_some_and(|v| v.via == Via::Punched)
            && b.node
                .endpoint
                .link_view(&a.agent)
                .is_some_and(|v| v.via == Via::Punched)
    })
    .await;
    assert_eq!(a.counter("links_upgraded"), 1);
    a.node
        .endpoint
        .send(b.agent, envelope(HAVE_COMMAND, vec![77; 32]))
        .await
        .unwrap();
    eventually("B hears over the punched link", || {
        b.counter("retention_notices_received") == 51
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn relay_requests_over_the_limits_or_to_a_node_that_does_not_relay_are_refused() {
    let net = MemoryNet::new();
    let nats = Nats::default();
    // A helper that does not relay, and one whose circuits are full (none allowed).
    let plain = TestNode::start(&net, |_| {}).await;
    let full = relaying_helper(&net, |l| l.relay_max_circuits = 0).await;
    let a = natted_as(&net, &nats, true).await;
    let b = natted_as(&net, &nats, true).await;
    for helper in [&plain, &full] {
        a.link_to(helper).await;
        b.link_to(helper).await;
    }
    let mut ticket = b.ticket().await;
    kith_node::reach::advertise(&b.node.endpoint, &mut ticket);
    let err = a.node.endpoint.connect_ticket(ticket).await.unwrap_err();
    let err = err.to_string();
    assert!(
        err.contains("no-relay") && err.contains("relay-limit"),
        "{err}"
    );
    assert_eq!(plain.counter("relay_refused_off"), 1);
    assert_eq!(full.counter("relay_refused_limit"), 1);
    // Nothing else was disturbed.
    for helper in [&plain, &full] {
        assert!(helper.node.endpoint.is_linked(&a.agent));
        assert!(helper.node.endpoint.is_linked(&b.agent));
    }
}

#[tokio::test(start_paused = true)]
async fn a_circuit_is_closed_at_its_byte_limit_and_only_the_relayed_link_goes() {
    let net = MemoryNet::new();
    let nats = Nats::default();
    let helper = relaying_helper(&net, |l| l.relay_max_bytes = 256 * 1024).await;
    let a = natted_as(&net, &nats, true).await;
    let b = natted_as(&net, &nats, true).await;
    a.link_to(&helper).await;
    b.link_to(&helper).await;
    let mut ticket = b.ticket().await;
    kith_node::reach::advertise(&b.node.endpoint, &mut ticket);
    a.node.endpoint.connect_ticket(ticket).await.unwrap();
    // 512 KiB of notices: past the limit.
    for n in 0..(512 * 1024 / 40) {
        let notice = envelope(HAVE_COMMAND, vec![(n % 250) as u8; 32]);
        if a.node.endpoint.send_linked(b.agent, notice).await.is_err() {
            break;
        }
    }
    eventually("the circuit is closed", || {
        helper.counter("relay_closed_limit") == 1
    })
    .await;
    assert!(helper.node.endpoint.is_linked(&a.agent));
    assert!(helper.node.endpoint.is_linked(&b.agent));
}

#[tokio::test(start_paused = true)]
async fn a_short_code_links_two_nodes_behind_nats_and_a_wrong_guess_burns_it() {
    let net = MemoryNet::new();
    let nats = Nats::default();
    let helper = TestNode::start(&net, |_| {}).await;
    let a = natted(&net, &nats).await;
    let b = natted(&net, &nats).await;
    let guesser = natted(&net, &nats).await;
    for node in [&a, &b, &guesser] {
        node.link_to(&helper).await;
    }
    // The right code: A gets B's ticket through the helper's mailbox, then punches through.
    let code = issue(&b).await;
    assert!(kith_node::reach::code::looks_like_code(&code), "{code}");
    let ticket = a.node.reach.redeem_code(&code).await.unwrap();
    a.node.endpoint.connect_ticket(ticket).await.unwrap();
    eventually("B counts the link", || b.node.endpoint.is_linked(&a.agent)).await;
    assert_eq!(
        a.node.endpoint.link_view(&b.agent).unwrap().via,
        Via::Punched
    );
    eventually("B saw the code redeemed", || {
        b.counter("codes_redeemed") == 1
    })
    .await;
    // One use.
    assert!(a.node.reach.redeem_code(&code).await.is_err());

    // A wrong guess learns nothing, burns the code, and B notices.
    let code = issue(&b).await;
    let (nameplate, words) = code.split_once('-').unwrap();
    let wrong = if words == "acid-acid" {
        "acorn-acorn"
    } else {
        "acid-acid"
    };
    let guess = format!("{nameplate}-{wrong}");
    let err = guesser.node.reach.redeem_code(&guess).await.unwrap_err();
    assert!(err.to_string().contains("did not work"), "{err}");
    eventually("B counts the failed guess", || {
        b.counter("code_guesses_failed") == 1
    })
    .await;
    let err = a.node.reach.redeem_code(&code).await.unwrap_err();
    assert!(err.to_string().contains("no-nameplate"), "{err}");
    assert!(!b.node.endpoint.is_linked(&guesser.agent));

    // Guessing nameplates in bulk: a few opens a minute, the rest refused.
    for n in 1..=30u32 {
        let _ = guesser
            .node
            .reach
            .redeem_code(&format!("{n}-acid-acid"))
            .await;
    }
    assert!(helper.counter("code_opens_refused") >= 20);
    assert!(helper.node.endpoint.is_linked(&guesser.agent));
}

async fn issue(b: &TestNode) -> String {
    let mut ticket = b.ticket().await;
    kith_node::reach::advertise(&b.node.endpoint, &mut ticket);
    b.node
        .reach
        .issue_code(ticket.to_line(), ticket.token.clone())
        .await
        .unwrap()
}
