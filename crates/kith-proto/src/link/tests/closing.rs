//! `bye` and drain from either side and both at once, the responder's idle close, the drain
//! and confirmation deadlines, end of stream.

use super::*;

fn numbered(side: &str, i: usize) -> Payload {
    Payload::Envelope(env("chat", format!("{side}{i}").into_bytes()))
}

/// The driver's part on `PeerDone`: send what was queued, then answer `bye`.
fn answer_bye(m: &mut LinkMachine, now: Instant, queued: &[Payload]) {
    for x in queued {
        m.send(x.clone()).unwrap();
    }
    m.retire(now, ByeReason::Ack);
}

#[test]
fn the_initiator_says_bye_first_and_nothing_in_flight_is_lost() {
    let mut p = Pair::new(Mode::Noise);
    p.pump();
    let from_a: Vec<_> = (0..5).map(|i| numbered("a", i)).collect();
    let from_b: Vec<_> = (0..5).map(|i| numbered("b", i)).collect();
    for x in &from_a {
        p.send_a(x.clone());
    }
    p.a.retire(p.now, ByeReason::Closing);
    assert_eq!(p.a.send(numbered("a", 99)), Err(SendError::Closed));
    assert_eq!(p.a.ping([0; 8]), Err(SendError::Closed));
    // b had sent two before it heard, and has three more queued in its driver.
    for x in &from_b[..2] {
        p.send_b(x.clone());
    }
    p.pump();
    assert_eq!(p.b_events.last(), Some(&Event::PeerDone));
    assert_eq!(p.b.peer_bye_reason(), Some("closing"));
    assert_eq!(end_of(&p.a_events), None, "a drains until b's bye");
    answer_bye(&mut p.b, p.now, &from_b[2..]);
    p.pump();
    assert_eq!(end_of(&p.b_events), Some(LinkEnd::Orderly));
    assert_eq!(end_of(&p.a_events), Some(LinkEnd::Orderly));
    assert_eq!(payloads(&p.b_events), from_a);
    assert_eq!(payloads(&p.a_events), from_b);
    assert_eq!(p.a.peer_bye_reason(), Some("ack"));
    assert_eq!((p.a.poll_timeout(), p.b.poll_timeout()), (None, None));
}

#[test]
fn the_responder_says_bye_first() {
    let mut p = Pair::new(Mode::Noise);
    p.pump();
    p.send_a(numbered("a", 0));
    p.b.retire(p.now, ByeReason::Duplicate);
    p.pump();
    assert_eq!(p.a_events.last(), Some(&Event::PeerDone));
    assert_eq!(p.a.peer_bye_reason(), Some("duplicate"));
    answer_bye(&mut p.a, p.now, &[numbered("a", 1)]);
    p.pump();
    assert_eq!(end_of(&p.a_events), Some(LinkEnd::Orderly));
    assert_eq!(end_of(&p.b_events), Some(LinkEnd::Orderly));
    assert_eq!(
        payloads(&p.b_events),
        vec![numbered("a", 0), numbered("a", 1)]
    );
}

#[test]
fn both_say_bye_at_once_and_both_streams_arrive_whole() {
    let mut p = Pair::new(Mode::Noise);
    let from_a: Vec<_> = (0..20).map(|i| numbered("a", i)).collect();
    let from_b: Vec<_> = (0..20).map(|i| numbered("b", i)).collect();
    for (x, y) in from_a.iter().zip(&from_b) {
        p.send_a(x.clone());
        p.send_b(y.clone());
    }
    p.a.retire(p.now, ByeReason::Duplicate);
    p.b.retire(p.now, ByeReason::Duplicate);
    p.pump();
    assert_eq!(payloads(&p.b_events), from_a);
    assert_eq!(payloads(&p.a_events), from_b);
    for events in [&p.a_events, &p.b_events] {
        assert_eq!(end_of(events), Some(LinkEnd::Orderly));
        assert_eq!(count(events, |e| *e == Event::PeerDone), 0);
    }
}

#[test]
fn a_bye_that_is_never_answered_ends_at_the_drain_deadline() {
    let mut p = Pair::new(Mode::Noise);
    p.pump();
    p.a.retire(p.now, ByeReason::Closing);
    p.pump();
    assert_eq!(p.b_events.last(), Some(&Event::PeerDone));
    // b's driver never answers.
    let drain = limits().link_drain_ms;
    assert_eq!(p.a.poll_timeout(), Some(p.now + ms(drain)));
    p.advance(ms(drain - 1));
    assert_eq!(end_of(&p.a_events), None);
    p.advance(ms(1));
    assert_eq!(end_of(&p.a_events), Some(LinkEnd::Orderly));
    // The peer's own close after our bye is orderly too.
    let mut q = Pair::new(Mode::Noise);
    q.pump();
    q.b.retire(q.now, ByeReason::Closing);
    q.collect();
    q.b.handle_eof(q.now);
    q.collect();
    assert_eq!(end_of(&q.b_events), Some(LinkEnd::Orderly));
}

#[test]
fn end_of_stream_without_bye_is_lost_and_after_the_peers_bye_is_orderly() {
    let mut p = Pair::new(Mode::Noise);
    p.pump();
    p.a.handle_eof(p.now);
    p.collect();
    assert_eq!(end_of(&p.a_events), Some(LinkEnd::Lost(LinkFailure::Eof)));
    let mut q = Pair::new(Mode::Noise);
    q.pump();
    q.b.retire(q.now, ByeReason::Closing);
    q.pump();
    q.a.handle_eof(q.now);
    q.collect();
    assert_eq!(end_of(&q.a_events), Some(LinkEnd::Orderly));
}

#[test]
fn the_responder_closes_an_idle_link_and_pings_keep_it_open() {
    let mut p = Pair::new(Mode::Noise);
    p.pump();
    let idle = ms(limits().idle_timeout_ms);
    assert_eq!(p.b.poll_timeout(), Some(p.now + idle));
    // A ping from the initiator every half timeout restarts the responder's clock.
    for i in 0..4u8 {
        p.advance(idle / 2);
        p.a.ping([i; 8]).unwrap();
        p.pump();
    }
    assert_eq!(count(&p.b_events, |e| *e == Event::IdleTimeout), 0);
    assert_eq!(count(&p.a_events, |e| matches!(e, Event::Pong { .. })), 4);
    p.advance(idle - ms(1));
    assert_eq!(count(&p.b_events, |e| *e == Event::IdleTimeout), 0);
    p.advance(ms(1));
    assert_eq!(p.b_events.last(), Some(&Event::IdleTimeout));
    assert_eq!(
        p.a.poll_timeout(),
        None,
        "only the responder closes idle links"
    );
    // The timer is disarmed until the driver retires.
    assert_eq!(p.b.poll_timeout(), None);
    // The driver flushes one queued envelope, then says bye; an envelope crossing the bye
    // still arrives.
    p.send_b(numbered("b", 0));
    p.b.retire(p.now, ByeReason::Idle);
    p.send_a(numbered("a", 0));
    p.pump();
    assert_eq!(p.a.peer_bye_reason(), Some("idle"));
    answer_bye(&mut p.a, p.now, &[]);
    p.pump();
    assert_eq!(payloads(&p.a_events), vec![numbered("b", 0)]);
    assert_eq!(payloads(&p.b_events), vec![numbered("a", 0)]);
    assert_eq!(end_of(&p.a_events), Some(LinkEnd::Orderly));
    assert_eq!(end_of(&p.b_events), Some(LinkEnd::Orderly));
}

#[test]
fn a_responder_link_never_confirmed_ends_at_the_confirmation_deadline() {
    let mut p = Pair::new(Mode::Noise);
    // The initiator's bytes never arrive.
    p.collect();
    p.ab.clear();
    let confirm = ms(limits().handshake_timeout_ms);
    assert_eq!(p.b.poll_timeout(), Some(p.now + confirm));
    p.advance(confirm);
    assert_eq!(
        end_of(&p.b_events),
        Some(LinkEnd::Lost(LinkFailure::NotConfirmed(confirm)))
    );
    assert!(!p.b.is_confirmed());
    assert_eq!(count(&p.b_events, |e| *e == Event::Confirmed), 0);
}
