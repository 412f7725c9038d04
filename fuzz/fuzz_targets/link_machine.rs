//! Feeds arbitrary bytes, in arbitrary splits, to a responder-side link machine (raw mode
//! mostly, so the fuzzer reaches the envelope, JSON, `version`, `ping` and `bye` handling
//! behind the frames; Noise mode when the first byte says so), interleaved with the driver's
//! own calls (timer, send, ping, retire, end of stream). It must never panic, must end at most
//! once and last, and must never hold more than its transmit bound plus one payload.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kith_crypto::{AgentId, Identity};
use kith_proto::link::{
    ByeReason, Event, LinkMachine, LinkSettings, Payload, DEFAULT_MAX_PENDING_TRANSMIT,
};
use kith_proto::secure::{Event as HsEvent, Initiator, Link, Mode, Responder, SecureConfig};
use kith_proto::wire::{Command, Envelope};
use kith_proto::Limits;
use libfuzzer_sys::fuzz_target;
use rand::rngs::StdRng;
use rand::SeedableRng;

/// The two nodes' configurations, made once: key generation would dominate every run.
fn configs() -> &'static (SecureConfig, SecureConfig, AgentId) {
    static CONFIGS: OnceLock<(SecureConfig, SecureConfig, AgentId)> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let limits = Limits::default();
        let alice = Identity::generate(&mut StdRng::seed_from_u64(1));
        let bob = Identity::generate(&mut StdRng::seed_from_u64(2));
        (
            SecureConfig::new(&alice, &limits),
            SecureConfig::new(&bob, &limits),
            bob.agent_id(),
        )
    })
}

/// A responder's link from an N+KK handshake run in memory.
fn responder_link(mode: Mode, now: Instant) -> Link {
    let (alice, bob, bob_agent) = configs();
    let ca = alice.clone().with_mode(mode);
    let cb = bob.clone().with_mode(mode);
    let mut init =
        Initiator::known(&ca, *bob_agent, &[], now, &mut StdRng::seed_from_u64(3)).unwrap();
    let mut resp = Responder::new(&cb, now, &mut StdRng::seed_from_u64(4));
    while let Some(frame) = init.poll_transmit() {
        resp.handle_frame(now, frame).unwrap();
        while let Some(event) = resp.poll_event() {
            match event {
                HsEvent::LookupPeer { agent } => {
                    resp.answer_peer(now, Some(agent.noise_public())).unwrap()
                }
                HsEvent::Established(link) => return link,
                other => panic!("{other:?}"),
            }
        }
    }
    match resp.poll_event() {
        Some(HsEvent::Established(link)) => link,
        other => panic!("{other:?}"),
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&control, mut rest)) = input.split_first() else {
        return;
    };
    // Noise mode reaches only the frame layer and decrypt failures, and its handshake (five
    // X25519 operations) would dominate the run: one input in 256.
    let mode = if control == 0 { Mode::Noise } else { Mode::Raw };
    let mut now = Instant::now();
    let limits = Limits::default();
    let mut m = LinkMachine::new(responder_link(mode, now), LinkSettings::new(&limits), now);
    let bound = DEFAULT_MAX_PENDING_TRANSMIT + 70_000;
    let mut ended = false;
    let mut out = BytesMut::new();
    let mut check = |m: &mut LinkMachine, ended: &mut bool| {
        assert!(m.pending_transmit() <= bound, "{}", m.pending_transmit());
        while let Some(event) = m.poll_event() {
            assert!(!*ended, "an event after Ended: {event:?}");
            if let Event::Ended(_) = event {
                *ended = true;
            }
        }
        // The driver writes only now and then, so backpressure is exercised too.
        if control & 4 == 0 {
            out.clear();
            m.poll_transmit(&mut out);
        }
    };
    while let Some((&op, tail)) = rest.split_first() {
        let len = ((op & 0x1f) as usize * 16 + 1).min(tail.len());
        let (chunk, next) = tail.split_at(len);
        rest = next;
        m.handle_bytes(now, chunk);
        check(&mut m, &mut ended);
        match op >> 5 {
            4 => {
                now += Duration::from_millis(u64::from(op & 0x1f) * 4_000);
                m.handle_timeout(now);
            }
            5 => {
                let chat = Envelope::new(Command::new("chat").unwrap(), chunk.to_vec());
                let _ = m.send(Payload::Envelope(chat));
                let _ = m.send(Payload::Json(bytes::Bytes::copy_from_slice(chunk)));
            }
            6 => m.retire(now, ByeReason::Closing),
            7 if op & 1 == 1 => m.handle_eof(now),
            7 => {
                let _ = m.ping([op; 8]);
            }
            _ => {}
        }
        check(&mut m, &mut ended);
    }
});
