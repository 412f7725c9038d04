//! Identity is proven, never claimed: the attacks of issue 10 on chat identity, performed.
//!
//! - Id hijack: a client on a chat port claims the id of a kith node that is offline, to
//!   receive the direct messages queued for it. Before: 3 of 3 leaked to the impostor, 0
//!   reached the real node. Now: 0 leaked; all 3 reach the real node when it comes back.
//! - Certificate forgery: a CERTIFICATE binding another node's id to the attacker's key,
//!   then a MESSAGE "from" that node. Before: 1 forged message shown. Now: 0, refused and
//!   counted on every path (a client, a linked node, an answer to our own request).

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use kith_chat::auth;
use kith_chat::message::{Body, CertificateData, ChatId, Envelope, GetCertificate};
use kith_chat::router::{ChatEvent, NeighbourInfo, NeighbourKind};
use kith_crypto::{Identity, NodeId};
use rand::rngs::StdRng;
use rand::SeedableRng;
use support::{signed_message, sim_config, Net};

fn ident(seed: u64) -> Identity {
    Identity::generate(&mut StdRng::seed_from_u64(seed))
}

fn ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + n))
}

fn messages_in(net: &Net, e: usize) -> usize {
    net.endpoints[e]
        .inbox
        .iter()
        .filter(|env| matches!(env.body, Body::Message(_)))
        .count()
}

/// A - R linked; C (node 2) is a kith node that is offline; A has sent C three direct
/// messages, which wait at A.
fn offline_target() -> (Net, Vec<String>) {
    let mut net = Net::new(3, 1, sim_config());
    net.link(0, 1);
    net.run_for(Duration::from_secs(2));
    let c = net.ids[2];
    let sent = (0..3)
        .map(|k| {
            net.act(0, |r, now| {
                r.send_direct(now, &[c], &format!("for C {k}"), Vec::new(), "t")
            })
            .unwrap()
        })
        .collect();
    (net, sent)
}

#[test]
fn an_impostor_of_an_offline_node_gets_nothing_and_the_real_node_gets_its_messages() {
    let (mut net, sent) = offline_target();
    let c = net.ids[2];
    // 1. HELLO with C's id and no proof: a challenge, then nothing; cut off when time is up.
    let claim = net.attach_client(1, ip(1));
    net.say_hello(claim, c);
    net.run_for(Duration::from_secs(5));
    assert!(net
        .hello_from_router(claim)
        .is_some_and(|h| h.challenge.is_some()));
    assert!(net.routers[1].route_to(&c).is_none(), "no route to a claim");
    net.run_for(sim_config().proof_timeout);
    assert!(net.endpoints[claim].cut_at.is_some(), "cut off, unproven");
    // 2. A proof made with the impostor's own key: refused at once.
    let forger = net.attach_client(1, ip(2));
    net.say_hello(forger, c);
    net.prove(forger, c, &ident(99));
    assert!(net.endpoints[forger].cut_at.is_some());
    // 3. Talking before proving: refused, charged as junk.
    let eager = net.attach_client(1, ip(3));
    net.say_hello(eager, c);
    let m = signed_message(&ident(98), "eager", &[net.ids[0]], None, "hi", true);
    net.inject(eager, Envelope::new(5, Body::Message(m)));
    net.run_for(Duration::from_secs(5));
    let leaked = messages_in(&net, claim) + messages_in(&net, forger) + messages_in(&net, eager);
    assert_eq!(leaked, 0);
    assert!(net.routers[1].counters().hello_refused >= 2);
    // The real node comes back: everything queued for it arrives.
    net.link(1, 2);
    net.run_for(Duration::from_secs(10));
    let got: usize = sent.iter().map(|m| net.deliveries(2, m)).sum();
    assert_eq!(got, 3);
    assert!(net.persisted[0].is_empty(), "receipts came back");
    println!("FIGURE hijack: messages leaked to the impostor 3 -> {leaked}; reached the real node 0 -> {got} of 3");
}

#[test]
fn queued_messages_go_to_a_client_that_proves_the_key() {
    let (mut net, sent) = offline_target();
    let c = net.ids[2];
    let key = net.identities[2].clone();
    let client = net.proven_client(1, ip(1), &key);
    net.run_for(Duration::from_secs(5));
    assert!(net.endpoints[client].cut_at.is_none());
    assert_eq!(messages_in(&net, client), 3, "released to the proven key");
    assert!(net.routers[1].route_to(&c).is_some());
    // A second connection proving the same key while the first is up: refused (one live
    // neighbour per id).
    let twin = net.attach_client(1, ip(2));
    net.say_hello(twin, c);
    assert!(net.endpoints[twin].cut_at.is_some());
    drop(sent);
}

#[test]
fn a_plain_client_is_a_leaf_under_an_id_no_key_derives() {
    let mut net = Net::new(2, 3, sim_config());
    net.link(0, 1);
    net.run_for(Duration::from_secs(2));
    let plain: NodeId = "123e4567-e89b-42d3-a456-426614174000".parse().unwrap();
    assert!(!auth::key_form(&plain));
    let p = net.attach_client(1, ip(1));
    net.say_hello(p, plain);
    net.run_for(Duration::from_secs(1));
    assert!(
        net.routers[1].route_to(&plain).is_some(),
        "identified at once"
    );
    assert!(
        net.routers[0].route_to(&plain).is_some(),
        "reachable through its node"
    );
    // The same plain id from another connection or another node: refused.
    let twin = net.attach_client(0, ip(2));
    net.say_hello(twin, plain);
    assert!(net.endpoints[twin].cut_at.is_some());
    // It may speak for itself only: a MESSAGE in another's name is refused...
    let other = net.ids[0];
    let mut forged = signed_message(&ident(5), "not-me", &[other], None, "x", false);
    forged.node_id = ChatId::new(other);
    net.inject(p, Envelope::new(5, Body::Message(forged)));
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.deliveries(0, "not-me"), 0);
    // ...its own, unsigned, is delivered marked unsigned.
    let mut own = signed_message(&ident(5), "mine", &[other], None, "hello", false);
    own.node_id = ChatId::new(plain);
    own.message[..64].fill(0);
    net.inject(p, Envelope::new(5, Body::Message(own)));
    net.run_for(Duration::from_secs(1));
    let shown = net.events[0].iter().find_map(|e| match e {
        ChatEvent::Message(m) if m.msg_id == "mine" => Some(m.clone()),
        _ => None,
    });
    let shown = shown.expect("delivered");
    assert!(!shown.signed);
    assert_eq!(shown.text, "hello");
    assert_eq!(net.routers[0].counters().unsigned, 1);
}

/// A certificate for C's id carrying the attacker's key, from `source`, then a MESSAGE
/// "from C" signed with that key; returns how many such messages node 1 showed.
fn forge(net: &mut Net, source: usize, attacker: &Identity, msg_id: &str, with_key: bool) -> usize {
    let (b, c) = (net.ids[1], net.ids[2]);
    let mut cert = Envelope::new(
        5,
        Body::Certificate(CertificateData {
            msg_id: format!("cert-{msg_id}"),
            node_id: ChatId::new(c),
            recipient_id: ChatId::new(b),
            certificate: attacker.agent_public().to_vec(),
        }),
    );
    cert.target_id = Some(ChatId::new(b));
    net.inject(source, cert);
    let mut m = signed_message(attacker, msg_id, &[b], None, "I am C", with_key);
    m.node_id = ChatId::new(c);
    kith_chat::crypto::sign_message(attacker, &mut m, b"I am C");
    net.inject(source, Envelope::new(5, Body::Message(m)));
    net.run_for(Duration::from_secs(2));
    net.deliveries(1, msg_id)
}

#[test]
fn a_certificate_whose_key_does_not_derive_its_id_is_refused_on_every_path() {
    let mut net = Net::new(3, 2, sim_config());
    net.link(0, 1);
    net.run_for(Duration::from_secs(2));
    let attacker = ident(50);
    // From a plain client (it may not even send certificates), from a proven client, from a
    // linked node, with and without the key in the message.
    let plain = net.attach_client(1, ip(1));
    net.say_hello(plain, NodeId::from_bytes([5; 16]));
    let proven = net.proven_client(1, ip(2), &attacker);
    let rogue = ident(51);
    let node = net.attach(
        1,
        NeighbourInfo {
            kind: NeighbourKind::Node {
                agent: rogue.agent_id(),
            },
            observed_ip: Some(ip(3)),
        },
        true,
    );
    net.inject(
        node,
        support::hello(ChatId::new(rogue.node_id()), None, Default::default()),
    );
    // It also claims a route to C, so that node 1's certificate requests for C go to it.
    let c = net.ids[2];
    let receiver = net.ids[net.endpoints[node].node];
    net.inject(
        node,
        support::signed_routing(&rogue, receiver, "", 1, &[(c, 1)]),
    );
    let mut shown = 0;
    for (k, source) in [plain, proven, node].into_iter().enumerate() {
        for with_key in [false, true] {
            shown += forge(
                &mut net,
                source,
                &attacker,
                &format!("forged-{k}-{with_key}"),
                with_key,
            );
        }
    }
    // Solicited: node 1 asks for C's certificate (C is offline; the rogue node answers).
    net.act(1, |r, now| r.fetch_certificate(now, c));
    let ask = net.endpoints[node]
        .inbox
        .iter()
        .rev()
        .find_map(|e| match &e.body {
            Body::GetCertificate(GetCertificate { msg_id, .. }) => Some(msg_id.clone()),
            _ => None,
        });
    let b = net.ids[1];
    if let Some(msg_id) = ask {
        let mut answer = Envelope::new(
            5,
            Body::Certificate(CertificateData {
                msg_id,
                node_id: ChatId::new(c),
                recipient_id: ChatId::new(b),
                certificate: attacker.agent_public().to_vec(),
            }),
        );
        answer.target_id = Some(ChatId::new(b));
        net.inject(node, answer);
    }
    // Long enough for what waited for C's (never coming) certificate to be given up.
    net.run_for(sim_config().certificate_timeout * 2);
    let shown = shown
        + (0..3)
            .flat_map(|k| [false, true].map(|w| format!("forged-{k}-{w}")))
            .map(|m| net.deliveries(1, &m))
            .sum::<usize>();
    assert_eq!(net.routers[1].key_of(&c), None, "no key bound to C");
    assert_eq!(shown, 0);
    let counters = net.routers[1].counters();
    assert_eq!(counters.certificates_refused, 3, "{counters:?}");
    assert!(counters.forged >= 1, "{counters:?}");
    println!(
        "FIGURE certificate forgery: forged messages shown 1 -> {shown}; certificates refused {}",
        counters.certificates_refused
    );
}
