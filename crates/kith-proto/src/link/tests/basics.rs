//! Version exchange, ping/pong, JSON frames and envelopes, sending limits.

use super::*;

#[test]
fn versions_are_exchanged_once_and_confirmation_comes_first() {
    let mut sb = settings("b.example:2");
    sb.observed = Some("203.0.113.5:40000".into());
    sb.capabilities = vec!["fetch-window".into()];
    let mut p = Pair::with(Mode::Noise, settings("a.example:1"), sb);
    // The initiator is confirmed at once; the responder only once a T frame decrypted.
    assert!(p.a.is_confirmed() && !p.b.is_confirmed());
    assert_eq!(p.a.poll_event(), Some(Event::Confirmed));
    p.pump();
    assert!(p.b.is_confirmed());
    let b_version = VersionInfo {
        protocols: vec![1],
        software: SOFTWARE.into(),
        announce: Some("b.example:2".into()),
        observed: Some("203.0.113.5:40000".into()),
        capabilities: vec!["fetch-window".into()],
    };
    assert_eq!(p.a_events, vec![Event::Version(b_version.clone())]);
    assert_eq!(p.b_events[0], Event::Confirmed);
    assert!(
        matches!(&p.b_events[1], Event::Version(v) if v.announce.as_deref() == Some("a.example:1"))
    );
    assert_eq!(p.b_events.len(), 2);
    assert_eq!(p.a.peer_version(), Some(&b_version));
    assert_eq!(p.a.peer(), Some(ident(2).agent_id()));
    assert_eq!(p.b.peer(), Some(ident(1).agent_id()));
    assert_eq!((p.a.role(), p.b.role()), (Role::Initiator, Role::Responder));
    assert_eq!(p.a.stats().envelopes_out, 1);
    assert_eq!(p.b.stats().envelopes_in, 1);
    assert_eq!(
        p.a.poll_timeout(),
        None,
        "the initiator has no timer while open"
    );
}

#[test]
fn a_peer_that_speaks_none_of_our_protocols_is_incompatible() {
    let sb = LinkSettings {
        protocols: vec![2, 3],
        ..settings("b.example:2")
    };
    let mut p = Pair::with(Mode::Noise, settings("a.example:1"), sb);
    p.pump();
    let want = LinkEnd::Incompatible(VersionError::NoCommonProtocol {
        ours: vec![1],
        theirs: vec![2, 3],
    });
    assert_eq!(end_of(&p.a_events), Some(want));
    assert!(matches!(
        end_of(&p.b_events),
        Some(LinkEnd::Incompatible(VersionError::NoCommonProtocol { .. }))
    ));
    assert_eq!(count(&p.a_events, |e| matches!(e, Event::Version(_))), 0);
    assert_eq!(p.a.send(Payload::Json("{}".into())), Err(SendError::Closed));
    assert_eq!(p.a.poll_timeout(), None);
}

#[test]
fn pings_are_answered_by_the_machine_and_only_our_pongs_are_reported() {
    let mut p = Pair::new(Mode::Noise);
    p.pump();
    p.a.ping(*b"nonce-01").unwrap();
    p.b.ping(*b"nonce-02").unwrap();
    p.pump();
    assert!(p.a_events.contains(&Event::Pong {
        nonce: *b"nonce-01"
    }));
    assert!(p.b_events.contains(&Event::Pong {
        nonce: *b"nonce-02"
    }));
    assert_eq!(p.a.stats().pings_answered, 1);
    assert_eq!(p.b.stats().pings_answered, 1);
    assert!(payloads(&p.a_events).is_empty() && payloads(&p.b_events).is_empty());
    // Only the last PINGS_REMEMBERED nonces are recognised.
    for i in 0..(PINGS_REMEMBERED as u8 + 1) {
        p.a.ping([i; 8]).unwrap();
    }
    p.pump();
    let pongs = count(&p.a_events, |e| matches!(e, Event::Pong { .. }));
    assert_eq!(pongs, 1 + PINGS_REMEMBERED);
    assert!(!p.a_events.contains(&Event::Pong { nonce: [0; 8] }));
    assert_eq!(p.a.stats().pongs_unmatched, 1);
}

#[test]
fn envelopes_and_json_frames_travel_both_ways_in_order() {
    for mode in [Mode::Noise, Mode::Raw] {
        let mut p = Pair::new(mode);
        let big = env("file", vec![9u8; 200_000]);
        let sent_a = vec![
            Payload::Envelope(env("chat", b"one".to_vec())),
            Payload::Json(r#"{"target":"tally","action":"x"}"#.into()),
            Payload::Envelope(big.clone()),
            Payload::Json(r#"{"n":2}"#.into()),
            Payload::Json(r#"{"n":3}"#.into()),
            Payload::Envelope(env("chat", vec![b'{'; 10])),
        ];
        for x in &sent_a {
            p.send_a(x.clone());
        }
        let sent_b = vec![
            Payload::Json(r#"{"reply":true}"#.into()),
            Payload::Envelope(env("ciyam-r", b"ok".to_vec())),
        ];
        for x in &sent_b {
            p.send_b(x.clone());
        }
        p.pump();
        assert_eq!(payloads(&p.b_events), sent_a, "{mode:?}");
        assert_eq!(payloads(&p.a_events), sent_b, "{mode:?}");
        assert_eq!(p.a.stats().json_out, 3);
        assert_eq!(p.b.stats().json_in, 3);
        assert_eq!(p.a.stats().json_in, 1);
    }
}

#[test]
fn json_payloads_must_be_one_object_in_one_frame() {
    let mut p = Pair::new(Mode::Noise);
    for bad in [&b"[1]"[..], b" {}", b"{", b"{}x", b""] {
        assert_eq!(
            p.a.send(Payload::Json(bytes::Bytes::copy_from_slice(bad))),
            Err(SendError::NotJsonObject)
        );
    }
    let max = p.a.link().max_plaintext();
    let mut big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(max));
    assert!(matches!(
        p.a.send(Payload::Json(big.clone().into())),
        Err(SendError::TooLarge { .. })
    ));
    big.truncate(max - 2);
    big.push_str("\"}");
    assert_eq!(big.len(), max);
    p.send_a(Payload::Json(big.clone().into()));
    p.pump();
    assert_eq!(payloads(&p.b_events), vec![Payload::Json(big.into())]);
}

#[test]
fn link_commands_and_oversized_envelopes_are_refused_for_sending() {
    let mut p = Pair::new(Mode::Noise);
    for c in LINK_COMMANDS {
        assert_eq!(
            p.a.send(Payload::Envelope(env(c, vec![0u8; 8]))),
            Err(SendError::LinkCommand(c.into()))
        );
    }
    let mut odd = env("chat", b"x".to_vec());
    odd.version = u32::from_be_bytes(*b"{ab}");
    assert_eq!(
        p.a.send(Payload::Envelope(odd.clone())),
        Err(SendError::EnvelopeVersion(odd.version))
    );
    odd.version = 7;
    p.send_a(Payload::Envelope(odd));
    let limit = limits().max_envelope_data as usize;
    assert_eq!(
        p.a.send(Payload::Envelope(env("file", vec![0u8; limit + 1]))),
        Err(SendError::TooLarge {
            len: limit + 1,
            limit
        })
    );
    p.send_a(Payload::Envelope(env("file", vec![1u8; limit])));
    p.pump();
    let got = payloads(&p.b_events);
    assert_eq!(got.len(), 2);
    assert!(
        matches!(&got[0], Payload::Envelope(e) if e.version == 7),
        "carried, not read"
    );
}

#[test]
fn backpressure_bounds_what_waits_and_a_drain_clears_it() {
    let sa = LinkSettings {
        max_pending_transmit: 10_000,
        ..settings("a.example:1")
    };
    let mut p = Pair::with(Mode::Noise, sa, settings("b.example:2"));
    let chunk = || Payload::Envelope(env("chat", vec![5u8; 3_000]));
    let mut accepted = 0;
    loop {
        match p.a.send(chunk()) {
            Ok(()) => accepted += 1,
            Err(SendError::Backpressure) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(accepted, 4, "sends are taken while under 10,000 bytes wait");
    assert!(p.a.pending_transmit() < 10_000 + 3_100);
    assert_eq!(p.a.ping([1; 8]), Err(SendError::Backpressure));
    let mut out = BytesMut::new();
    assert!(p.a.poll_transmit(&mut out));
    assert!(!p.a.poll_transmit(&mut out));
    p.ab.extend_from_slice(&out);
    p.send_a(chunk());
    p.pump();
    assert_eq!(payloads(&p.b_events).len(), accepted + 1);
}
