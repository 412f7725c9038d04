//! Both ends of every handshake driven in memory through the frame codec (bytes in, bytes
//! out), on a virtual clock.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use kith_crypto::{AgentId, Identity};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::Limits;

fn ident(seed: u64) -> Identity {
    Identity::generate(&mut StdRng::seed_from_u64(seed))
}

fn config(id: &Identity) -> SecureConfig {
    SecureConfig::new(id, &Limits::default())
}

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Drains a machine's transmits into wire bytes.
fn wire(frames: impl IntoIterator<Item = Frame>) -> BytesMut {
    let mut out = BytesMut::new();
    for f in frames {
        f.encode(&mut out).unwrap();
    }
    out
}

fn frames_of(mut buf: BytesMut) -> Vec<Frame> {
    let d = FrameDecoder::new(&Limits::default());
    let mut out = Vec::new();
    while let Some(f) = d.decode(&mut buf).unwrap() {
        out.push(f);
    }
    assert!(buf.is_empty(), "trailing partial frame");
    out
}

fn transmits_i(m: &mut Initiator) -> Vec<Frame> {
    std::iter::from_fn(|| m.poll_transmit()).collect()
}

fn transmits_r(m: &mut Responder) -> Vec<Frame> {
    std::iter::from_fn(|| m.poll_transmit()).collect()
}

fn chad(id: &Identity, cuid: &str, port: u16) -> Chad {
    Chad {
        cuid: Some(cuid.into()),
        agent: id.agent_id().to_string(),
        host: Some("127.0.0.1".into()),
        port: Some(port),
    }
}

fn established(event: Option<Event>) -> Link {
    match event {
        Some(Event::Established(link)) => link,
        other => panic!("expected Established, got {other:?}"),
    }
}

/// Sends `data` over `from` and opens it on `to`, through the wire encoding.
fn carry(from: &mut Link, to: &mut Link, now: Instant, data: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let n = from.seal_into(data, &mut out).unwrap();
    let frames = frames_of(out);
    assert_eq!(frames.len(), n);
    let mut got = Vec::new();
    for f in &frames {
        assert_eq!(f.kind, FrameKind::Transport);
        got.extend(to.open(now, f).unwrap());
    }
    got
}

fn check_transport(init: &mut Link, resp: &mut Link, now: Instant) {
    assert_eq!(
        carry(init, resp, now, b"hello responder"),
        b"hello responder"
    );
    assert_eq!(
        carry(resp, init, now, b"hello initiator"),
        b"hello initiator"
    );
    let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    assert_eq!(carry(init, resp, now, &big), big);
    assert_eq!(carry(resp, init, now, &big), big);
    let mut out = BytesMut::new();
    assert_eq!(init.seal_into(b"", &mut out).unwrap(), 0);
    assert!(out.is_empty());
}

struct Ik {
    alice: Identity,
    bob: Identity,
    init: Initiator,
    resp: Responder,
    t0: Instant,
}

fn ik_setup(mode: Mode) -> Ik {
    let alice = ident(1);
    let bob = ident(2);
    let t0 = Instant::now();
    let request = TicketRequest::new(chad(&bob, "b1", 2), chad(&alice, "a3", 1), "00ff");
    let init = Initiator::ik(
        &config(&alice).with_mode(mode),
        bob.agent_id(),
        &request,
        t0,
        &mut rng(10),
    )
    .unwrap();
    let resp = Responder::new(&config(&bob).with_mode(mode), t0, &mut rng(11));
    Ik {
        alice,
        bob,
        init,
        resp,
        t0,
    }
}

fn run_ik(mode: Mode) {
    let Ik {
        alice,
        bob,
        mut init,
        mut resp,
        t0,
    } = ik_setup(mode);
    let t1 = t0 + Duration::from_millis(5);
    let sent = transmits_i(&mut init);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].kind, FrameKind::Ticket);
    for f in frames_of(wire(sent)) {
        resp.handle_frame(t1, f).unwrap();
    }
    assert!(
        resp.poll_transmit().is_none(),
        "nothing before the ticket is checked"
    );
    match resp.poll_event() {
        Some(Event::CheckTicket {
            token,
            from_agent,
            claimed_from,
            to,
            proven_static_key,
        }) => {
            assert_eq!(token, "00ff");
            assert_eq!(from_agent, alice.agent_id());
            assert_eq!(claimed_from.cuid.as_deref(), Some("a3"));
            assert_eq!(to.agent, bob.agent_id().to_string());
            let expect = (mode == Mode::Noise).then(|| alice.noise_public());
            assert_eq!(proven_static_key, expect);
        }
        other => panic!("expected CheckTicket, got {other:?}"),
    }
    assert!(resp.poll_event().is_none());
    resp.answer_ticket(t1, true).unwrap();
    let mut r_link = established(resp.poll_event());
    let answer = transmits_r(&mut resp);
    assert_eq!(answer.len(), 1);
    assert_eq!(answer[0].kind, FrameKind::Accept);
    assert!(resp.is_finished());
    assert_eq!(resp.poll_timeout(), None);
    for f in frames_of(wire(answer)) {
        init.handle_frame(t1, f).unwrap();
    }
    let mut i_link = established(init.poll_event());
    assert_eq!(i_link.peer(), Some(bob.agent_id()));
    assert_eq!(r_link.peer(), Some(alice.agent_id()));
    assert_eq!(i_link.kind(), HandshakeKind::Ticket);
    assert_eq!(r_link.role(), Role::Responder);
    assert_eq!(i_link.handshake_hash(), r_link.handshake_hash());
    assert_eq!(i_link.mode(), mode);
    // The responder's early data is the whole ticket request.
    let early = r_link.take_early_data().unwrap();
    assert_eq!(
        TicketRequest::from_json(&early).unwrap().ticket.token,
        "00ff"
    );
    assert_eq!(r_link.take_early_data(), None);
    assert_eq!(i_link.take_early_data(), None);
    check_transport(&mut i_link, &mut r_link, t1);
}

#[test]
fn ik_with_valid_ticket_establishes_both_sides() {
    run_ik(Mode::Noise);
}

#[test]
fn raw_ik_establishes_in_plaintext() {
    run_ik(Mode::Raw);
    // And the frames really are plaintext.
    let mut s = ik_setup(Mode::Raw);
    let sent = transmits_i(&mut s.init);
    let text = std::str::from_utf8(&sent[0].body).unwrap();
    assert!(text.contains("\"token\":\"00ff\""));
}

#[test]
fn noise_frames_hide_the_payload() {
    let mut s = ik_setup(Mode::Noise);
    let sent = transmits_i(&mut s.init);
    assert!(!sent[0].body.windows(4).any(|w| w == b"00ff"));
    assert!(!sent[0].body.windows(5).any(|w| w == b"tally"));
}

#[test]
fn same_seeds_make_the_same_bytes() {
    let a = transmits_i(&mut ik_setup(Mode::Noise).init);
    let b = transmits_i(&mut ik_setup(Mode::Noise).init);
    assert_eq!(a, b);
}

#[test]
fn ik_from_agent_not_the_proven_key_is_refused_silently() {
    let alice = ident(1);
    let bob = ident(2);
    let carol = ident(3);
    let t0 = Instant::now();
    // Alice's key, Carol's name: built by hand, since Initiator::ik always writes our own id.
    let mut hs = noise::build(
        IK_PARAMS,
        noise::Side::Initiator,
        Some(&alice.noise_secret()),
        Some(&bob.noise_public()),
        &mut rng(5),
    )
    .unwrap();
    let request = TicketRequest::new(chad(&bob, "b1", 2), chad(&carol, "c1", 3), "00ff");
    let mut buf = vec![0u8; 65535];
    let n = hs.write_message(&request.to_json(), &mut buf).unwrap();
    buf.truncate(n);
    let mut resp = Responder::new(&config(&bob), t0, &mut rng(11));
    resp.handle_frame(t0, Frame::new(FrameKind::Ticket, buf))
        .unwrap();
    assert!(matches!(
        resp.poll_event(),
        Some(Event::Refused {
            reason: RefuseReason::AgentKeyMismatch
        })
    ));
    assert!(resp.poll_transmit().is_none());
    assert!(resp.poll_event().is_none());
    assert!(resp.is_finished());
    assert_eq!(resp.answer_ticket(t0, true), Err(HandshakeError::Finished));
    assert!(resp.poll_transmit().is_none());
}

#[test]
fn ticket_refused_is_refused_silently() {
    let mut s = ik_setup(Mode::Noise);
    for f in transmits_i(&mut s.init) {
        s.resp.handle_frame(s.t0, f).unwrap();
    }
    assert!(matches!(
        s.resp.poll_event(),
        Some(Event::CheckTicket { .. })
    ));
    s.resp.answer_ticket(s.t0, false).unwrap();
    assert!(matches!(
        s.resp.poll_event(),
        Some(Event::Refused {
            reason: RefuseReason::TicketRefused
        })
    ));
    assert!(s.resp.poll_transmit().is_none());
    assert_eq!(s.resp.poll_timeout(), None);
}

fn run_known(mode: Mode, answer_before_k: bool) {
    let alice = ident(1);
    let bob = ident(2);
    let t0 = Instant::now();
    let mut init = Initiator::known(
        &config(&alice).with_mode(mode),
        bob.agent_id(),
        b"first message",
        t0,
        &mut rng(20),
    )
    .unwrap();
    let mut resp = Responder::new(&config(&bob).with_mode(mode), t0, &mut rng(21));
    let sent = frames_of(wire(transmits_i(&mut init)));
    let kinds: Vec<FrameKind> = sent.iter().map(|f| f.kind).collect();
    assert_eq!(kinds, [FrameKind::Declare, FrameKind::Known]);
    let mut sent = sent.into_iter();
    resp.handle_frame(t0, sent.next().unwrap()).unwrap();
    if !answer_before_k {
        // K arrives before the driver has answered: it waits.
        resp.handle_frame(t0, sent.next().unwrap()).unwrap();
        assert!(resp.poll_transmit().is_none());
    }
    match resp.poll_event() {
        Some(Event::LookupPeer { agent }) => assert_eq!(agent, alice.agent_id()),
        other => panic!("expected LookupPeer, got {other:?}"),
    }
    resp.answer_peer(t0, Some(alice.noise_public())).unwrap();
    if answer_before_k {
        assert!(resp.poll_event().is_none());
        resp.handle_frame(t0, sent.next().unwrap()).unwrap();
    }
    let mut r_link = established(resp.poll_event());
    assert_eq!(r_link.peer(), Some(alice.agent_id()));
    assert_eq!(r_link.kind(), HandshakeKind::Known);
    assert_eq!(
        r_link.take_early_data().as_deref(),
        Some(&b"first message"[..])
    );
    for f in frames_of(wire(transmits_r(&mut resp))) {
        assert_eq!(f.kind, FrameKind::Accept);
        init.handle_frame(t0, f).unwrap();
    }
    let mut i_link = established(init.poll_event());
    assert_eq!(i_link.peer(), Some(bob.agent_id()));
    check_transport(&mut i_link, &mut r_link, t0);
}

#[test]
fn known_peer_n_then_kk_establishes() {
    run_known(Mode::Noise, false);
    run_known(Mode::Noise, true);
}

#[test]
fn raw_known_peer_establishes() {
    run_known(Mode::Raw, false);
    run_known(Mode::Raw, true);
}

fn known_pair() -> (Identity, Identity, Initiator, Responder, Instant) {
    let alice = ident(1);
    let bob = ident(2);
    let t0 = Instant::now();
    let init = Initiator::known(&config(&alice), bob.agent_id(), b"", t0, &mut rng(20)).unwrap();
    let resp = Responder::new(&config(&bob), t0, &mut rng(21));
    (alice, bob, init, resp, t0)
}

#[test]
fn unknown_agent_is_refused_silently() {
    let (_alice, _bob, mut init, mut resp, t0) = known_pair();
    for f in transmits_i(&mut init) {
        resp.handle_frame(t0, f).unwrap();
    }
    assert!(matches!(resp.poll_event(), Some(Event::LookupPeer { .. })));
    resp.answer_peer(t0, None).unwrap();
    assert!(matches!(
        resp.poll_event(),
        Some(Event::Refused {
            reason: RefuseReason::UnknownPeer
        })
    ));
    assert!(resp.poll_transmit().is_none());
}

#[test]
fn a_key_that_is_not_the_agents_is_refused() {
    let (_alice, _bob, mut init, mut resp, t0) = known_pair();
    for f in transmits_i(&mut init) {
        resp.handle_frame(t0, f).unwrap();
    }
    resp.poll_event();
    resp.answer_peer(t0, Some(ident(9).noise_public())).unwrap();
    assert!(matches!(
        resp.poll_event(),
        Some(Event::Refused {
            reason: RefuseReason::PeerKeyMismatch
        })
    ));
    assert!(resp.poll_transmit().is_none());
}

#[test]
fn kk_with_a_forged_static_key_fails() {
    // Mallory declares Alice in N, then runs KK with her own key: K does not decrypt.
    let alice = ident(1);
    let bob = ident(2);
    let mallory = ident(4);
    let t0 = Instant::now();
    let mut mal =
        Initiator::known(&config(&mallory), bob.agent_id(), b"", t0, &mut rng(20)).unwrap();
    let mut frames = transmits_i(&mut mal).into_iter();
    let mut resp = Responder::new(&config(&bob), t0, &mut rng(21));
    let n = Frame::new(FrameKind::Declare, {
        let mut hs = noise::build(
            N_PARAMS,
            noise::Side::Initiator,
            None,
            Some(&bob.noise_public()),
            &mut rng(3),
        )
        .unwrap();
        let mut buf = vec![0u8; 200];
        let payload = serde_json::to_vec(&alice.agent_id().to_string()).unwrap();
        let len = hs.write_message(&payload, &mut buf).unwrap();
        buf.truncate(len);
        buf
    });
    frames.next();
    resp.handle_frame(t0, n).unwrap();
    resp.handle_frame(t0, frames.next().unwrap()).unwrap();
    resp.poll_event();
    let err = resp
        .answer_peer(t0, Some(alice.noise_public()))
        .unwrap_err();
    assert!(matches!(err, HandshakeError::Noise(_)), "{err}");
    assert!(resp.poll_transmit().is_none());
    assert!(resp.poll_event().is_none());
}

#[test]
fn n_to_the_wrong_responder_fails() {
    let alice = ident(1);
    let bob = ident(2);
    let carol = ident(3);
    let t0 = Instant::now();
    let mut init =
        Initiator::known(&config(&alice), bob.agent_id(), b"", t0, &mut rng(20)).unwrap();
    let mut resp = Responder::new(&config(&carol), t0, &mut rng(21));
    let n = init.poll_transmit().unwrap();
    assert!(matches!(
        resp.handle_frame(t0, n),
        Err(HandshakeError::Noise(_))
    ));
    assert!(resp.poll_transmit().is_none());
}

fn run_query(mode: Mode) {
    let alice = ident(1);
    let bob = ident(2);
    let t0 = Instant::now();
    let mut init = Initiator::query(
        &config(&alice).with_mode(mode),
        bob.agent_id(),
        b"has lift 42 timed out?",
        t0,
        &mut rng(30),
    )
    .unwrap();
    let mut resp = Responder::new(&config(&bob).with_mode(mode), t0, &mut rng(31));
    let sent = frames_of(wire(transmits_i(&mut init)));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].kind, FrameKind::Query);
    for f in sent {
        resp.handle_frame(t0, f).unwrap();
    }
    let mut r_link = established(resp.poll_event());
    assert_eq!(r_link.peer(), None);
    assert_eq!(r_link.kind(), HandshakeKind::Query);
    assert_eq!(
        r_link.take_early_data().as_deref(),
        Some(&b"has lift 42 timed out?"[..])
    );
    for f in frames_of(wire(transmits_r(&mut resp))) {
        init.handle_frame(t0, f).unwrap();
    }
    let mut i_link = established(init.poll_event());
    assert_eq!(i_link.peer(), Some(bob.agent_id()));
    check_transport(&mut i_link, &mut r_link, t0);
}

#[test]
fn nk_query_establishes() {
    run_query(Mode::Noise);
    run_query(Mode::Raw);
}

#[test]
fn queries_can_be_refused() {
    let alice = ident(1);
    let bob = ident(2);
    let t0 = Instant::now();
    let mut init =
        Initiator::query(&config(&alice), bob.agent_id(), b"q", t0, &mut rng(30)).unwrap();
    let mut resp = Responder::new(&config(&bob).with_queries(false), t0, &mut rng(31));
    resp.handle_frame(t0, init.poll_transmit().unwrap())
        .unwrap();
    assert!(matches!(
        resp.poll_event(),
        Some(Event::Refused {
            reason: RefuseReason::QueriesDisabled
        })
    ));
    assert!(resp.poll_transmit().is_none());
}

#[test]
fn out_of_state_and_garbage_frames_fail_the_responder() {
    let bob = ident(2);
    let t0 = Instant::now();
    let fresh = || Responder::new(&config(&bob), t0, &mut rng(1));
    for kind in [FrameKind::Accept, FrameKind::Transport, FrameKind::Known] {
        let mut r = fresh();
        let err = r
            .handle_frame(t0, Frame::new(kind, vec![0u8; 64]))
            .unwrap_err();
        assert!(
            matches!(err, HandshakeError::UnexpectedFrame { got, .. } if got == kind),
            "{err}"
        );
        assert!(r.is_finished());
        assert_eq!(
            r.handle_frame(t0, Frame::new(FrameKind::Ticket, vec![])),
            Err(HandshakeError::Finished)
        );
        assert!(r.poll_transmit().is_none() && r.poll_event().is_none());
    }
    for kind in [FrameKind::Ticket, FrameKind::Declare, FrameKind::Query] {
        for body in [vec![], vec![0u8; 10], vec![0xAB; 300]] {
            let mut r = fresh();
            assert!(matches!(
                r.handle_frame(t0, Frame::new(kind, body)),
                Err(HandshakeError::Noise(_))
            ));
            assert!(r.poll_transmit().is_none() && r.poll_event().is_none());
        }
    }
    // A second I while the ticket is being checked.
    let mut s = ik_setup(Mode::Noise);
    let i = s.init.poll_transmit().unwrap();
    s.resp.handle_frame(s.t0, i.clone()).unwrap();
    assert!(s.resp.handle_frame(s.t0, i).is_err());
    assert!(s.resp.poll_transmit().is_none());
    assert_eq!(
        s.resp.answer_ticket(s.t0, true),
        Err(HandshakeError::Finished)
    );
    // A second K while the peer is being looked up; an answer nobody asked for.
    let (_a, _b, mut init, mut resp, t0) = known_pair();
    let frames = transmits_i(&mut init);
    assert_eq!(resp.answer_peer(t0, None), Err(HandshakeError::NoQuestion));
    assert_eq!(
        resp.answer_ticket(t0, true),
        Err(HandshakeError::NoQuestion)
    );
    for f in &frames {
        resp.handle_frame(t0, f.clone()).unwrap();
    }
    assert!(resp.handle_frame(t0, frames[1].clone()).is_err());
    // Valid Noise, bad payloads.
    let bob_agent = bob.agent_id();
    for payload in [&b"not json"[..], b"\"not an agent id\"", b"42"] {
        let mut hs = noise::build(
            N_PARAMS,
            noise::Side::Initiator,
            None,
            Some(&bob_agent.noise_public()),
            &mut rng(3),
        )
        .unwrap();
        let mut buf = vec![0u8; 200];
        let n = hs.write_message(payload, &mut buf).unwrap();
        buf.truncate(n);
        let mut r = fresh();
        assert!(matches!(
            r.handle_frame(t0, Frame::new(FrameKind::Declare, buf)),
            Err(HandshakeError::BadPayload(_))
        ));
    }
}

#[test]
fn out_of_state_frames_fail_the_initiator() {
    for kind in [
        FrameKind::Ticket,
        FrameKind::Declare,
        FrameKind::Known,
        FrameKind::Transport,
        FrameKind::Query,
    ] {
        let mut s = ik_setup(Mode::Noise);
        let err = s
            .init
            .handle_frame(s.t0, Frame::new(kind, vec![1u8; 48]))
            .unwrap_err();
        assert!(matches!(err, HandshakeError::UnexpectedFrame { .. }));
        // Nothing goes out after a failure, not even the frame that was queued.
        assert!(s.init.poll_transmit().is_none());
    }
    let mut s = ik_setup(Mode::Noise);
    s.init.poll_transmit();
    assert!(matches!(
        s.init
            .handle_frame(s.t0, Frame::new(FrameKind::Accept, vec![1u8; 48])),
        Err(HandshakeError::Noise(_))
    ));
    assert!(s.init.poll_event().is_none());
}

#[test]
fn handshake_deadline_fails_a_dripping_peer() {
    let mut s = ik_setup(Mode::Noise);
    let deadline = s.t0 + Duration::from_millis(Limits::default().handshake_timeout_ms);
    assert_eq!(s.resp.poll_timeout(), Some(deadline));
    assert_eq!(s.init.poll_timeout(), Some(deadline));
    let bytes = wire(transmits_i(&mut s.init));
    let decoder = FrameDecoder::new(&Limits::default());
    let mut buf = BytesMut::new();
    let mut now = s.t0;
    let mut result = Ok(());
    // One byte a second: the peer is always "active", but the total deadline holds.
    for b in bytes.iter() {
        now += Duration::from_secs(1);
        if now >= deadline {
            result = s.resp.handle_timeout(now);
            break;
        }
        buf.extend_from_slice(&[*b]);
        if let Some(f) = decoder.decode(&mut buf).unwrap() {
            result = s.resp.handle_frame(now, f);
        }
        s.resp.handle_timeout(now).unwrap();
    }
    assert_eq!(result, Err(HandshakeError::Timeout));
    assert!(s.resp.is_finished());
    assert_eq!(s.resp.poll_timeout(), None);
    assert!(s.resp.poll_transmit().is_none() && s.resp.poll_event().is_none());
    // The initiator times out too when no A comes.
    assert_eq!(
        s.init.handle_timeout(deadline - Duration::from_millis(1)),
        Ok(())
    );
    assert_eq!(
        s.init.handle_timeout(deadline),
        Err(HandshakeError::Timeout)
    );
}

#[test]
fn deadline_holds_while_the_driver_thinks() {
    let mut s = ik_setup(Mode::Noise);
    s.resp
        .handle_frame(s.t0, s.init.poll_transmit().unwrap())
        .unwrap();
    s.resp.poll_event();
    let late = s.t0 + Duration::from_secs(11);
    assert_eq!(
        s.resp.answer_ticket(late, true),
        Err(HandshakeError::Timeout)
    );
    assert!(s.resp.poll_transmit().is_none());
    // A frame that arrives after the deadline is refused the same way.
    let mut s = ik_setup(Mode::Noise);
    assert_eq!(
        s.resp.handle_frame(late, s.init.poll_transmit().unwrap()),
        Err(HandshakeError::Timeout)
    );
}

#[test]
fn idle_deadline_is_the_responders() {
    let alice = ident(1);
    let bob = ident(2);
    let t0 = Instant::now();
    let mut init = Initiator::query(&config(&alice), bob.agent_id(), b"", t0, &mut rng(1)).unwrap();
    let mut resp = Responder::new(&config(&bob), t0, &mut rng(2));
    let t1 = t0 + Duration::from_secs(1);
    resp.handle_frame(t1, init.poll_transmit().unwrap())
        .unwrap();
    let mut r_link = established(resp.poll_event());
    init.handle_frame(t1, resp.poll_transmit().unwrap())
        .unwrap();
    let mut i_link = established(init.poll_event());
    let idle = Duration::from_millis(Limits::default().idle_timeout_ms);
    assert_eq!(i_link.idle_deadline(), None);
    assert_eq!(r_link.idle_deadline(), Some(t1 + idle));
    assert!(!r_link.is_idle(t1 + idle - Duration::from_millis(1)));
    assert!(r_link.is_idle(t1 + idle));
    // Receiving restarts the clock; sending does not.
    let t2 = t1 + Duration::from_secs(30);
    carry(&mut i_link, &mut r_link, t2, b"ping");
    assert_eq!(r_link.idle_deadline(), Some(t2 + idle));
    carry(
        &mut r_link,
        &mut i_link,
        t2 + Duration::from_secs(5),
        b"pong",
    );
    assert_eq!(r_link.idle_deadline(), Some(t2 + idle));
    assert!(!i_link.is_idle(t2 + idle * 10));
}

#[test]
fn tampered_replayed_and_foreign_frames_break_the_link() {
    let (mut i_link, mut r_link, now) = query_links();
    let mut out = BytesMut::new();
    i_link.seal_into(b"one", &mut out).unwrap();
    let frame = frames_of(out).remove(0);
    let mut bad = frame.body.to_vec();
    bad[3] ^= 1;
    assert_eq!(
        r_link.open(now, &Frame::new(FrameKind::Transport, bad)),
        Err(LinkError::Decrypt)
    );
    assert_eq!(r_link.open(now, &frame), Err(LinkError::Broken));

    let (mut i_link, mut r_link, now) = query_links();
    let mut out = BytesMut::new();
    i_link.seal_into(b"one", &mut out).unwrap();
    let frame = frames_of(out).remove(0);
    assert_eq!(r_link.open(now, &frame).unwrap(), b"one");
    assert_eq!(r_link.open(now, &frame), Err(LinkError::Decrypt), "replay");

    let (_i, mut r_link, now) = query_links();
    assert_eq!(
        r_link.open(now, &Frame::new(FrameKind::Accept, vec![])),
        Err(LinkError::UnexpectedFrame(FrameKind::Accept))
    );
    let mut out = BytesMut::new();
    assert_eq!(r_link.seal_into(b"x", &mut out), Err(LinkError::Broken));
    assert!(out.is_empty());

    // The two directions use different keys: a frame cannot be reflected back.
    let (mut i_link, _r, now) = query_links();
    let mut out = BytesMut::new();
    i_link.seal_into(b"mirror", &mut out).unwrap();
    let frame = frames_of(out).remove(0);
    assert_eq!(i_link.open(now, &frame), Err(LinkError::Decrypt));
}

fn query_links() -> (Link, Link, Instant) {
    let bob = ident(2);
    let t0 = Instant::now();
    let mut init =
        Initiator::query(&config(&ident(1)), bob.agent_id(), b"", t0, &mut rng(1)).unwrap();
    let mut resp = Responder::new(&config(&bob), t0, &mut rng(2));
    resp.handle_frame(t0, init.poll_transmit().unwrap())
        .unwrap();
    let r = established(resp.poll_event());
    init.handle_frame(t0, resp.poll_transmit().unwrap())
        .unwrap();
    (established(init.poll_event()), r, t0)
}

#[test]
fn transport_frames_are_full_size_and_respect_the_limit() {
    let (mut i_link, mut r_link, now) = query_links();
    assert_eq!(i_link.max_plaintext(), 65_519);
    let data = vec![5u8; 65_519 * 2 + 1];
    let mut out = BytesMut::new();
    assert_eq!(i_link.seal_into(&data, &mut out).unwrap(), 3);
    let frames = frames_of(out);
    assert_eq!(frames[0].body.len(), 65_535);
    assert_eq!(frames[2].body.len(), 17);
    let mut got = Vec::new();
    for f in &frames {
        got.extend(r_link.open(now, f).unwrap());
    }
    assert_eq!(got, data);
}

#[test]
fn secrets_stay_out_of_debug() {
    let alice = ident(1);
    let text = format!("{:?}", config(&alice));
    let hex: String = alice
        .noise_secret()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(!text.contains(&hex));
    assert!(!text.contains(&format!("{:?}", alice.noise_secret())));
    assert!(text.contains("redacted"));
}

fn _assert_send() {
    fn is_send<T: Send>() {}
    is_send::<Initiator>();
    is_send::<Responder>();
    is_send::<Link>();
    is_send::<Event>();
    let _: Option<AgentId> = None;
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn drive(
        resp: &mut Responder,
        now: Instant,
        frame: Frame,
        answers: &mut impl Iterator<Item = u8>,
    ) {
        if resp.handle_frame(now, frame).is_err() {
            return;
        }
        while let Some(event) = resp.poll_event() {
            let a = answers.next().unwrap_or(0);
            let _ = match event {
                Event::CheckTicket { .. } => resp.answer_ticket(now, a & 1 == 1),
                Event::LookupPeer { agent } => {
                    resp.answer_peer(now, (a & 1 == 1).then(|| agent.noise_public()))
                }
                _ => Ok(()),
            };
        }
        while resp.poll_transmit().is_some() {}
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn responder_never_panics_on_arbitrary_bytes(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..96), 0..12),
            raw in any::<bool>(), answers in proptest::collection::vec(any::<u8>(), 0..4)) {
            let bob = ident(2);
            let mode = if raw { Mode::Raw } else { Mode::Noise };
            let t0 = Instant::now();
            let mut resp = Responder::new(&config(&bob).with_mode(mode), t0, &mut rng(1));
            let decoder = FrameDecoder::new(&Limits::default());
            let mut buf = BytesMut::new();
            let mut answers = answers.into_iter();
            for chunk in chunks {
                buf.extend_from_slice(&chunk);
                while let Ok(Some(frame)) = decoder.decode(&mut buf) {
                    drive(&mut resp, t0, frame, &mut answers);
                }
            }
        }

        #[test]
        fn responder_never_panics_on_arbitrary_frames(
            frames in proptest::collection::vec((0usize..6, proptest::collection::vec(any::<u8>(), 0..200)), 0..6),
            raw in any::<bool>(), answers in proptest::collection::vec(any::<u8>(), 0..4),
            valid_first in any::<bool>()) {
            let alice = ident(1);
            let bob = ident(2);
            let mode = if raw { Mode::Raw } else { Mode::Noise };
            let t0 = Instant::now();
            let mut resp = Responder::new(&config(&bob).with_mode(mode), t0, &mut rng(1));
            let mut answers = answers.into_iter();
            if valid_first {
                // Start from a genuine N so that later arbitrary frames reach deeper states.
                let mut init = Initiator::known(&config(&alice).with_mode(mode), bob.agent_id(), b"", t0, &mut rng(2)).unwrap();
                drive(&mut resp, t0, init.poll_transmit().unwrap(), &mut answers);
            }
            for (kind, body) in frames {
                drive(&mut resp, t0, Frame::new(FrameKind::ALL[kind], body), &mut answers);
            }
        }
    }
}

/// An IK handshake carried out: the initiator's and the responder's links.
fn ik_links(mode: Mode) -> (Link, Link, Instant) {
    let Ik {
        mut init,
        mut resp,
        t0,
        ..
    } = ik_setup(mode);
    for f in frames_of(wire(transmits_i(&mut init))) {
        resp.handle_frame(t0, f).unwrap();
    }
    assert!(matches!(resp.poll_event(), Some(Event::CheckTicket { .. })));
    resp.answer_ticket(t0, true).unwrap();
    let r_link = established(resp.poll_event());
    for f in frames_of(wire(transmits_r(&mut resp))) {
        init.handle_frame(t0, f).unwrap();
    }
    (established(init.poll_event()), r_link, t0)
}

#[test]
fn the_reference_cipher_order_talks_to_itself_and_not_to_the_specification() {
    // Both ends in the reference library's order: they agree.
    let (mut i_link, mut r_link, t0) = ik_links(Mode::Noise);
    i_link.use_reference_order().unwrap();
    r_link.use_reference_order().unwrap();
    assert!(i_link.reference_order() && r_link.reference_order());
    check_transport(&mut i_link, &mut r_link, t0);
    // Switching again changes nothing.
    i_link.use_reference_order().unwrap();

    // One end only: the other cannot read it, in either direction.
    let (mut i_link, mut r_link, t0) = ik_links(Mode::Noise);
    i_link.use_reference_order().unwrap();
    let mut out = BytesMut::new();
    i_link.seal_into(b"hello", &mut out).unwrap();
    let frame = frames_of(out).remove(0);
    assert_eq!(r_link.open(t0, &frame), Err(LinkError::Decrypt));
    let (mut i_link, mut r_link, t0) = ik_links(Mode::Noise);
    r_link.use_reference_order().unwrap();
    let mut out = BytesMut::new();
    r_link.seal_into(b"hello", &mut out).unwrap();
    let frame = frames_of(out).remove(0);
    assert_eq!(i_link.open(t0, &frame), Err(LinkError::Decrypt));

    // Too late once a transport message went out; a raw link has no cipher to swap.
    let (mut i_link, _r_link, _) = ik_links(Mode::Noise);
    i_link.seal_into(b"x", &mut BytesMut::new()).unwrap();
    assert_eq!(i_link.use_reference_order(), Err(LinkError::Broken));
    let (mut i_link, mut r_link, t0) = ik_links(Mode::Raw);
    i_link.use_reference_order().unwrap();
    assert!(!i_link.reference_order());
    check_transport(&mut i_link, &mut r_link, t0);
}
