//! How many messages one router relays per second, next to the ceilings it is made of.
//!
//! - `relay/flood`: a channel MESSAGE arrives from one of 8 neighbours and is passed to the
//!   other 7 (one iteration = one message in, 7 out, duplicate-cache insert included).
//!   `relay/flood_json` is the same from the JSON text, with the 7 copies encoded, as the chat
//!   port does it.
//! - `relay/routed`: a direct MESSAGE for a node two hops away arrives, is ACKed to the sender,
//!   forwarded to the next hop, and that hop's ACK comes back (so nothing accumulates).
//! - `ceiling/json_parse`: serde_json parsing the same message into a `Value` (what
//!   `Envelope::decode` starts with); `ceiling/ed25519_verify`: one signature check (every
//!   node verifies a signed message once before it passes it on, so each relay iteration
//!   includes one).
//!
//! Read `relay/flood_json` against `ceiling/json_parse` (one parse and seven encodes are the
//! floor of a JSON relay) and `ceiling/ed25519_verify`, and `relay/flood` / `relay/routed` as
//! the router's own cost. Every relayed message is signed over its own msg_id (signed before
//! the timing, from a pool), so each iteration includes the verification a relay does; a
//! message whose signature failed would be refused and its neighbour soon cut off, which is
//! what an earlier version of this bench measured without noticing (the loop now asserts
//! that nothing was forged or cut off).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kith_chat::message::{
    Ack, Body, ChatId, ChatMessage, Envelope, Hello, NodeType, RouteEntry, Routing,
};
use kith_chat::router::{NeighbourInfo, NeighbourKind, Output};
use kith_chat::{ChatConfig, NeighbourId, Router};
use kith_crypto::Identity;
use rand::rngs::StdRng;
use rand::SeedableRng;

fn ident(seed: u64) -> Identity {
    Identity::generate(&mut StdRng::seed_from_u64(seed))
}

/// A router with `n` identified kith neighbours (ids 1..=n, identities 100+i).
fn relay(n: u64) -> (Router, Instant) {
    let now = Instant::now();
    let config = ChatConfig {
        rate_per_sec: u32::MAX / 2,
        rate_burst: u32::MAX / 2,
        origin_rate_per_sec: u32::MAX / 2,
        origin_rate_burst: u32::MAX / 2,
        ..ChatConfig::default()
    };
    let mut r = Router::new(ident(1), config, now, [1; 32]).unwrap();
    for i in 1..=n {
        let peer = ident(100 + i);
        let kind = NeighbourKind::Node {
            agent: peer.agent_id(),
        };
        r.neighbour_up(
            now,
            NeighbourId(i),
            NeighbourInfo {
                kind,
                observed_ip: None,
            },
        );
        let hello = Hello {
            node_id: ChatId::new(peer.node_id()),
            version: None,
            node_type: NodeType::Server,
            challenge: None,
            auth: Default::default(),
            later_revision: false,
        };
        r.handle_input(now, NeighbourId(i), Envelope::new(1, Body::Hello(hello)));
    }
    while r.poll_output().is_some() {}
    (r, now)
}

fn message(
    author: &Identity,
    msg_id: String,
    channel: bool,
    to: Option<kith_crypto::NodeId>,
) -> ChatMessage {
    let mut m = ChatMessage {
        msg_id,
        node_id: ChatId::new(author.node_id()),
        recipient: to.map(|t| vec![ChatId::new(t)]).unwrap_or_default(),
        timestamp: "2024-01-01T00:00:00Z".into(),
        channel: if channel {
            "lobby".into()
        } else {
            String::new()
        },
        channel_id: if channel {
            "c0ffee".into()
        } else {
            String::new()
        },
        message: Vec::new(),
        attachments: Vec::new(),
        public_key: Some(author.agent_public()),
        unsigned: false,
        plain_text: false,
    };
    kith_chat::crypto::sign_message(author, &mut m, b"hello, a line of chat of ordinary length");
    m
}

/// Signed channel messages, each over its own msg_id, made before any timing.
fn pool(
    author: &Identity,
    prefix: &str,
    n: usize,
    to: Option<kith_crypto::NodeId>,
) -> Vec<ChatMessage> {
    (0..n)
        .map(|i| message(author, format!("{prefix}{i}"), to.is_none(), to))
        .collect()
}

/// Enough for a 5 s measurement and its warm-up at the speed of a signature check.
const POOL: usize = 150_000;

fn benches(c: &mut Criterion) {
    let author = ident(9);
    let mut group = c.benchmark_group("relay");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    group.warm_up_time(Duration::from_secs(1));

    let (mut r, now) = relay(8);
    let floods = pool(&author, "m", POOL, None);
    let mut next = 0usize;
    group.bench_function("flood", |b| {
        b.iter(|| {
            let m = floods[next % POOL].clone();
            next += 1;
            let mut env = Envelope::new(32, Body::Message(m));
            env.flood = true;
            r.handle_input(now, NeighbourId(1), env);
            while let Some(o) = r.poll_output() {
                black_box(o);
            }
        })
    });
    assert!(next <= POOL, "the pool ran out: {next} iterations");
    assert_eq!(r.counters().forged + r.counters().cut_off, 0);

    let (mut r, now) = relay(8);
    let jsons: Vec<Vec<u8>> = pool(&author, "j", POOL, None)
        .into_iter()
        .map(|m| {
            let mut env = Envelope::new(32, Body::Message(m));
            env.flood = true;
            env.encode()
        })
        .collect();
    let mut next = 0usize;
    group.bench_function("flood_json", |b| {
        b.iter(|| {
            let json = &jsons[next % POOL];
            next += 1;
            let _ = r.handle_frame(now, NeighbourId(1), black_box(json));
            while let Some(o) = r.poll_output() {
                if let Output::Transmit { message, .. } = o {
                    black_box(message.encode());
                }
            }
        })
    });
    assert!(next <= POOL, "the pool ran out: {next} iterations");
    assert_eq!(r.counters().forged + r.counters().cut_off, 0);

    let (mut r, now) = relay(2);
    let target = ident(555).node_id();
    // ROUTING from a kith node is signed, for its receiver.
    let hop = ident(102);
    let bytes = kith_chat::auth::routing_bytes(
        "rt-1",
        &hop.node_id(),
        &ident(1).node_id(),
        "",
        1,
        &[(target, 1)],
    );
    let routing = Routing {
        node_id: ChatId::new(hop.node_id()),
        nodes: vec![RouteEntry {
            node_id: ChatId::new(target),
            ttl: 1,
        }],
        seq: Some(1),
        auth: kith_chat::auth::sign(&hop, &bytes),
    };
    let mut env = Envelope::new(1, Body::Routing(routing));
    env.msg_id = Some("rt-1".into());
    r.handle_input(now, NeighbourId(2), env);
    while r.poll_output().is_some() {}
    let routed = pool(&author, "r", POOL, Some(target));
    let mut next = 0usize;
    group.bench_function("routed", |b| {
        b.iter(|| {
            let m = routed[next % POOL].clone();
            next += 1;
            let msg_id = m.msg_id.clone();
            r.handle_input(now, NeighbourId(1), Envelope::new(32, Body::Message(m)));
            while let Some(o) = r.poll_output() {
                black_box(o);
            }
            let ack = Ack {
                node_id: None,
                msg_id,
                target_id: Some(target),
                recipient_id: None,
                auth: Default::default(),
            };
            r.handle_input(now, NeighbourId(2), Envelope::new(1, Body::Ack(ack)));
        })
    });
    assert_eq!(r.unacked_count(), 0);
    assert!(next <= POOL, "the pool ran out: {next} iterations");
    assert_eq!(r.counters().forged + r.counters().cut_off, 0);
    group.finish();

    let mut ceiling = c.benchmark_group("ceiling");
    ceiling.throughput(Throughput::Elements(1));
    let mut env = Envelope::new(32, Body::Message(message(&author, "m1".into(), true, None)));
    env.flood = true;
    let json = env.encode();
    ceiling.bench_function("json_parse", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&json)).unwrap())
    });
    let m = message(&author, "m1".into(), true, None);
    let key = author.agent_id();
    ceiling.bench_function("ed25519_verify", |b| {
        b.iter(|| assert!(kith_chat::crypto::verify_message(&key, black_box(&m)).is_some()))
    });
    ceiling.finish();
}

criterion_group!(relay_benches, benches);
criterion_main!(relay_benches);
