//! Envelope checksums left out on encrypted links between peers that both list
//! [`UNSUMMED_CAPABILITY`], and kept everywhere else.

use super::*;

fn with_caps(announce: &str, unsummed: bool) -> LinkSettings {
    let mut s = settings(announce);
    if unsummed {
        s.capabilities.push(UNSUMMED_CAPABILITY.to_owned());
    }
    s
}

/// Sends one envelope from `a` and returns the payloads `b` was handed.
fn delivered(pair: &mut Pair, data: &[u8]) -> Vec<Payload> {
    pair.a_events.clear();
    pair.b_events.clear();
    pair.a
        .send(Payload::Envelope(env("file", data.to_vec())))
        .unwrap();
    pair.pump();
    pair.b_events
        .iter()
        .filter_map(|e| match e {
            Event::Payload(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn both_listing_it_on_an_encrypted_link_leave_checksums_out_and_still_deliver() {
    let mut pair = Pair::with(
        Mode::Noise,
        with_caps("a.example:1", true),
        with_caps("b.example:2", true),
    );
    pair.pump();
    assert!(pair.a.is_unsummed() && pair.b.is_unsummed());
    let got = delivered(&mut pair, &[9u8; 100_000]);
    assert_eq!(got.len(), 1);
    match &got[0] {
        Payload::Envelope(e) => assert_eq!(e.data.as_ref(), &[9u8; 100_000][..]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn one_side_alone_or_a_raw_link_keeps_the_checksums() {
    for (mode, a, b) in [
        (Mode::Noise, true, false),
        (Mode::Noise, false, true),
        (Mode::Raw, true, true),
    ] {
        let mut pair = Pair::with(
            mode,
            with_caps("a.example:1", a),
            with_caps("b.example:2", b),
        );
        pair.pump();
        assert!(
            !pair.a.is_unsummed() && !pair.b.is_unsummed(),
            "{mode:?} {a} {b}"
        );
        assert_eq!(delivered(&mut pair, b"x").len(), 1);
    }
}

#[test]
fn on_a_raw_link_the_wire_still_carries_the_seed_checksum() {
    let mut pair = Pair::with(
        Mode::Raw,
        with_caps("a.example:1", true),
        with_caps("b.example:2", true),
    );
    pair.pump();
    pair.a
        .send(Payload::Envelope(env("file", b"data".to_vec())))
        .unwrap();
    let mut wire = BytesMut::new();
    pair.a.poll_transmit(&mut wire);
    let frames = frames_of(wire);
    // One frame: [header 24][data]; the checksum is bytes 20..24 of the plaintext.
    let body = &frames[0].body;
    assert_eq!(&body[20..24], &crate::wire::envelope::checksum(b"data"));
}

#[test]
fn a_bad_checksum_is_still_refused_from_a_peer_that_did_not_agree() {
    // The victim lists the capability, the attacker's version does not: checksums count.
    let now = Instant::now();
    let hs = handshake(&ident(1), &ident(2), Mode::Noise, now, 33);
    let mut victim = LinkMachine::new(hs.resp, with_caps("b.example:2", true), now);
    let mut attacker = hs.init;
    let mut stream = env("version", br#"{"protocols":[1]}"#.to_vec())
        .to_bytes()
        .unwrap()
        .to_vec();
    let mut bad = env("file", b"data".to_vec()).to_bytes().unwrap().to_vec();
    bad[20] ^= 1;
    stream.extend_from_slice(&bad);
    let mut wire = BytesMut::new();
    attacker.seal_into(&stream, &mut wire).unwrap();
    victim.handle_bytes(now, &wire);
    assert!(matches!(
        victim.ended(),
        Some(LinkEnd::Lost(LinkFailure::Envelope(
            crate::wire::EnvelopeError::BadChecksum { .. }
        )))
    ));
}
