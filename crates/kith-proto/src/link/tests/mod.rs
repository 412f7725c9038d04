//! Two link machines wired back to back in memory, on a virtual clock: the harness, and the
//! scenarios in the files below it.

mod basics;
mod closing;
mod hostile;
mod props;
mod replay;
mod unsummed;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use kith_crypto::Identity;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::secure::{
    Event as HsEvent, Frame, FrameDecoder, Initiator, Link, Mode, Responder, Role, SecureConfig,
};
use crate::wire::{Command, Envelope};

pub(super) fn limits() -> Limits {
    Limits {
        idle_timeout_ms: 60_000,
        link_drain_ms: 5_000,
        handshake_timeout_ms: 10_000,
        ..Limits::default()
    }
}

pub(super) fn ident(seed: u64) -> Identity {
    Identity::generate(&mut StdRng::seed_from_u64(seed))
}

pub(super) fn env(command: &str, data: impl Into<bytes::Bytes>) -> Envelope {
    Envelope::new(Command::new(command).unwrap(), data)
}

pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Decodes wire bytes into frames (all whole).
pub(super) fn frames_of(mut buf: BytesMut) -> Vec<Frame> {
    let d = FrameDecoder::new(&Limits::default());
    let mut out = Vec::new();
    while let Some(f) = d.decode(&mut buf).unwrap() {
        out.push(f);
    }
    assert!(buf.is_empty(), "trailing partial frame");
    out
}

/// What an N+KK handshake between `alice` (initiator) and `bob` put on the wire, and the two
/// links it made.
pub(super) struct Handshake {
    /// The `N` and `K` frames, encoded, as an eavesdropper captures them.
    pub nk: BytesMut,
    /// The initiator's link.
    pub init: Link,
    /// The responder's link.
    pub resp: Link,
}

pub(super) fn handshake(
    alice: &Identity,
    bob: &Identity,
    mode: Mode,
    now: Instant,
    seed: u64,
) -> Handshake {
    let ca = SecureConfig::new(alice, &limits()).with_mode(mode);
    let cb = SecureConfig::new(bob, &limits()).with_mode(mode);
    let mut init = Initiator::known(
        &ca,
        bob.agent_id(),
        &[],
        now,
        &mut StdRng::seed_from_u64(seed),
    )
    .unwrap();
    let mut nk = BytesMut::new();
    while let Some(f) = init.poll_transmit() {
        f.encode(&mut nk).unwrap();
    }
    let mut resp = Responder::new(&cb, now, &mut StdRng::seed_from_u64(seed + 1));
    let resp_link = respond(&mut resp, now, nk.clone()).expect("the responder accepts");
    let mut accept = BytesMut::new();
    while let Some(f) = resp.poll_transmit() {
        f.encode(&mut accept).unwrap();
    }
    for f in frames_of(accept) {
        init.handle_frame(now, f).unwrap();
    }
    let init_link = match init.poll_event() {
        Some(HsEvent::Established(link)) => link,
        other => panic!("initiator: {other:?}"),
    };
    Handshake {
        nk,
        init: init_link,
        resp: resp_link,
    }
}

/// Feeds captured handshake bytes to a responder that knows every agent, and returns its
/// link. Leaves the `A` in `poll_transmit`.
pub(super) fn respond(resp: &mut Responder, now: Instant, bytes: BytesMut) -> Option<Link> {
    for f in frames_of(bytes) {
        resp.handle_frame(now, f).ok()?;
        while let Some(e) = resp.poll_event() {
            match e {
                HsEvent::LookupPeer { agent } => {
                    resp.answer_peer(now, Some(agent.noise_public())).ok()?
                }
                HsEvent::Established(link) => return Some(link),
                _ => return None,
            }
        }
    }
    match resp.poll_event() {
        Some(HsEvent::Established(link)) => Some(link),
        _ => None,
    }
}

pub(super) fn settings(announce: &str) -> LinkSettings {
    LinkSettings {
        announce: Some(announce.into()),
        ..LinkSettings::new(&limits())
    }
}

/// Two machines back to back. `a` dialled `b`.
pub(super) struct Pair {
    pub a: LinkMachine,
    pub b: LinkMachine,
    pub a_events: Vec<Event>,
    pub b_events: Vec<Event>,
    pub now: Instant,
    /// Bytes written by each side and not yet delivered (a→b, b→a).
    pub ab: BytesMut,
    pub ba: BytesMut,
}

impl Pair {
    pub(super) fn new(mode: Mode) -> Pair {
        Pair::with(mode, settings("a.example:1"), settings("b.example:2"))
    }

    pub(super) fn with(mode: Mode, sa: LinkSettings, sb: LinkSettings) -> Pair {
        let now = Instant::now();
        let hs = handshake(&ident(1), &ident(2), mode, now, 7);
        Pair {
            a: LinkMachine::new(hs.init, sa, now),
            b: LinkMachine::new(hs.resp, sb, now),
            a_events: Vec::new(),
            b_events: Vec::new(),
            now,
            ab: BytesMut::new(),
            ba: BytesMut::new(),
        }
    }

    /// Collects both sides' transmits into the in-flight buffers, and their events.
    pub(super) fn collect(&mut self) {
        self.a.poll_transmit(&mut self.ab);
        self.b.poll_transmit(&mut self.ba);
        self.a_events
            .extend(std::iter::from_fn(|| self.a.poll_event()));
        self.b_events
            .extend(std::iter::from_fn(|| self.b.poll_event()));
    }

    /// Delivers everything in flight, both ways, until nothing moves.
    pub(super) fn pump(&mut self) {
        loop {
            self.collect();
            if self.ab.is_empty() && self.ba.is_empty() {
                return;
            }
            let ab = self.ab.split();
            let ba = self.ba.split();
            self.b.handle_bytes(self.now, &ab);
            self.a.handle_bytes(self.now, &ba);
        }
    }

    /// Moves the clock and fires both timers if due.
    pub(super) fn advance(&mut self, by: Duration) {
        self.now += by;
        for m in [&mut self.a, &mut self.b] {
            if m.poll_timeout().is_some_and(|t| t <= self.now) {
                m.handle_timeout(self.now);
            }
        }
        self.collect();
    }

    pub(super) fn send_a(&mut self, p: Payload) {
        self.a.send(p).unwrap();
    }

    pub(super) fn send_b(&mut self, p: Payload) {
        self.b.send(p).unwrap();
    }
}

/// The payloads among `events`, in order.
pub(super) fn payloads(events: &[Event]) -> Vec<Payload> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Payload(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

/// How the link ended, per `events` (which must hold exactly one `Ended`, last).
pub(super) fn end_of(events: &[Event]) -> Option<LinkEnd> {
    let ends: Vec<_> = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e {
            Event::Ended(end) => Some((i, end.clone())),
            _ => None,
        })
        .collect();
    assert!(ends.len() <= 1, "more than one Ended: {events:?}");
    if let Some((i, _)) = ends.first() {
        assert_eq!(*i, events.len() - 1, "Ended is not the last event");
    }
    ends.into_iter().next().map(|(_, e)| e)
}

pub(super) fn count(events: &[Event], want: fn(&Event) -> bool) -> usize {
    events.iter().filter(|e| want(e)).count()
}
