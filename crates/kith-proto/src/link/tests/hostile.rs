//! A peer that holds the link's keys and misbehaves (it writes with a bare `Link`), and bytes
//! that are not frames at all.

use super::*;

/// The attacker's transport (the initiator's keys) and our responder machine.
fn attacked() -> (Link, LinkMachine, Instant) {
    let now = Instant::now();
    let hs = handshake(&ident(1), &ident(2), Mode::Noise, now, 21);
    let victim = LinkMachine::new(hs.resp, settings("b.example:2"), now);
    (hs.init, victim, now)
}

fn sealed(attacker: &mut Link, plaintext: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    attacker.seal_into(plaintext, &mut out).unwrap();
    out
}

fn envelope_bytes(command: &str, data: &[u8]) -> Vec<u8> {
    env(command, data.to_vec()).to_bytes().unwrap().to_vec()
}

fn events(m: &mut LinkMachine) -> Vec<Event> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

#[test]
fn a_version_flood_costs_one_event() {
    let (mut attacker, mut victim, now) = attacked();
    let version = envelope_bytes("version", br#"{"protocols":[1],"announce":"evil:1"}"#);
    let mut stream = Vec::new();
    for _ in 0..100_000 {
        stream.extend_from_slice(&version);
    }
    // Fed in socket-sized reads, events drained between reads, as a driver does.
    let wire = sealed(&mut attacker, &stream);
    let mut seen = Vec::new();
    for chunk in wire.chunks(64 * 1024) {
        victim.handle_bytes(now, chunk);
        seen.extend(events(&mut victim));
    }
    assert_eq!(seen.len(), 2, "Confirmed and one Version: {seen:?}");
    assert_eq!(victim.stats().versions_ignored, 99_999);
    assert_eq!(victim.stats().envelopes_in, 100_000);
    assert!(victim.ended().is_none());
}

#[test]
fn a_ping_flood_from_a_peer_that_never_reads_is_bounded() {
    let (mut attacker, mut victim, now) = attacked();
    let ping = envelope_bytes("ping", &[7; 8]);
    let wire = sealed(&mut attacker, &ping.repeat(200_000));
    for chunk in wire.chunks(64 * 1024) {
        victim.handle_bytes(now, chunk);
        let _ = events(&mut victim);
        // The driver cannot write (the peer does not read), so it never drains.
    }
    let stats = victim.stats();
    assert!(victim.pending_transmit() < DEFAULT_MAX_PENDING_TRANSMIT + 100);
    assert!(stats.pings_unanswered > 100_000, "{stats:?}");
    assert_eq!(stats.pings_answered + stats.pings_unanswered, 200_000);
    // Unsolicited pongs never reach the driver.
    let pong = envelope_bytes("pong", &[1; 8]);
    victim.handle_bytes(now, &sealed(&mut attacker, &pong.repeat(1_000)));
    assert!(events(&mut victim).is_empty());
    assert_eq!(victim.stats().pongs_unmatched, 1_000);
    // Malformed ping/pong: ignored and counted.
    let odd = envelope_bytes("ping", &[1; 3]);
    victim.handle_bytes(now, &sealed(&mut attacker, &odd));
    assert!(events(&mut victim).is_empty());
    assert_eq!(victim.stats().malformed_ignored, 1);
}

#[test]
fn garbage_and_oversized_input_ends_the_link_as_lost() {
    type Attack = fn(&mut Link) -> Vec<u8>;
    type Verdict = fn(&LinkFailure) -> bool;
    let cases: Vec<(&str, Attack, Verdict)> = vec![
        (
            "a length prefix over the frame cap",
            |_| vec![0xff, 0xff, 0xff, 0xff],
            |f| matches!(f, LinkFailure::Frame(FrameError::TooLarge { .. })),
        ),
        (
            "an unknown header byte",
            |_| vec![0, 0, 0, 2, b'Z', 0],
            |f| matches!(f, LinkFailure::Frame(FrameError::UnknownHeader(b'Z'))),
        ),
        (
            "a T frame that does not decrypt",
            |_| {
                vec![
                    0, 0, 0, 20, b'T', 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17,
                    18, 19,
                ]
            },
            |f| *f == LinkFailure::Transport(LinkError::Decrypt),
        ),
        (
            "a handshake frame on the link",
            |_| vec![0, 0, 0, 1, b'A'],
            |f| matches!(f, LinkFailure::Transport(LinkError::UnexpectedFrame(_))),
        ),
        (
            "an envelope declaring 4 GiB",
            |l| {
                let mut header = envelope_bytes("file", b"")[..24].to_vec();
                header[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
                sealed(l, &header).to_vec()
            },
            |f| matches!(f, LinkFailure::Envelope(EnvelopeError::TooLarge { .. })),
        ),
        (
            "an envelope with a bad checksum",
            |l| {
                let mut bytes = envelope_bytes("file", b"data");
                bytes[20] ^= 1;
                sealed(l, &bytes).to_vec()
            },
            |f| matches!(f, LinkFailure::Envelope(EnvelopeError::BadChecksum { .. })),
        ),
        (
            "a frame starting with { that is not JSON",
            |l| sealed(l, b"{not json").to_vec(),
            |f| matches!(f, LinkFailure::Json(_)),
        ),
    ];
    for (what, attack, expected) in cases {
        let (mut attacker, mut victim, now) = attacked();
        // A good frame first, so the garbage follows a confirmed start.
        let chat = sealed(&mut attacker, &envelope_bytes("chat", b"hi"));
        victim.handle_bytes(now, &chat);
        let garbage = attack(&mut attacker);
        // Byte by byte: the verdict comes as soon as the bytes show it, never a panic.
        for b in &garbage {
            victim.handle_bytes(now, std::slice::from_ref(b));
        }
        victim.handle_bytes(now, &garbage);
        let seen = events(&mut victim);
        match end_of(&seen) {
            Some(LinkEnd::Lost(f)) => assert!(expected(&f), "{what}: {f:?}"),
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(seen[0], Event::Confirmed, "{what}");
        assert!(matches!(&seen[1], Event::Payload(_)), "{what}");
        assert_eq!(
            victim.pending_transmit(),
            0,
            "{what}: a lost link says nothing more"
        );
        assert_eq!(
            victim.send(Payload::Json("{}".into())),
            Err(SendError::Closed)
        );
    }
}

#[test]
fn a_brace_inside_an_envelope_stream_is_envelope_data() {
    let (mut attacker, mut victim, now) = attacked();
    let bytes = envelope_bytes("chat", &[b'{'; 40]);
    // Split so the second frame starts with `{` in the middle of an envelope.
    victim.handle_bytes(now, &sealed(&mut attacker, &bytes[..30]));
    victim.handle_bytes(now, &sealed(&mut attacker, &bytes[30..]));
    let seen = events(&mut victim);
    assert_eq!(
        payloads(&seen),
        vec![Payload::Envelope(env("chat", vec![b'{'; 40]))]
    );
    assert_eq!(victim.stats().json_in, 0);
}

#[test]
fn nothing_after_the_peers_bye_is_read() {
    let (mut attacker, mut victim, now) = attacked();
    let mut stream = envelope_bytes("bye", br#"{"reason":"closing"}"#);
    stream.extend(envelope_bytes("chat", b"late"));
    victim.handle_bytes(now, &sealed(&mut attacker, &stream));
    victim.handle_bytes(
        now,
        &sealed(&mut attacker, &envelope_bytes("chat", b"later")),
    );
    victim.handle_bytes(now, b"\xff\xff\xff\xff garbage");
    let seen = events(&mut victim);
    assert_eq!(seen, vec![Event::Confirmed, Event::PeerDone]);
    victim.retire(now, ByeReason::Ack);
    assert_eq!(victim.poll_event(), Some(Event::Ended(LinkEnd::Orderly)));
    let mut out = BytesMut::new();
    assert!(victim.poll_transmit(&mut out), "the ack bye goes out");
}

#[test]
fn a_header_alone_does_not_make_the_link_reserve_what_it_declares() {
    let (mut attacker, mut victim, now) = attacked();
    // A header declaring 2 MiB of data (within the limit) and a frame prefix declaring 64 KiB,
    // and nothing more: memory follows what arrived, not what was announced.
    let mut header = envelope_bytes("file", b"")[..24].to_vec();
    header[16..20].copy_from_slice(&(limits().max_envelope_data).to_be_bytes());
    victim.handle_bytes(now, &sealed(&mut attacker, &header));
    victim.handle_bytes(now, &[0, 1, 0, 0, b'T']);
    assert!(victim.ended().is_none());
    let held = victim.plain.capacity() + victim.inbuf.capacity();
    assert!(held < 4096, "{held} bytes held for 29 received");
}
