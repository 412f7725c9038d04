//! Large transfers on the text port, skipping, a long session, and the envelope port.

use std::time::Instant;

use bytes::Bytes;

use super::driver::*;
use crate::files::text::{CHUNK_BYTES, MAX_CHUNK_CHARS};
use crate::files::*;

fn big_item(len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    v[0] = 0x01;
    v
}

/// A responder in WP that has just been told `put <hash>` for `item`.
fn responder_expecting_put(item: &[u8], have: bool) -> (TextPort, Driver, Instant) {
    let now = Instant::now();
    let mut d = Driver::new();
    if have {
        d = d.with_item(item);
    }
    let mut r = responder(now);
    say(&mut r, &mut d, now, "chk hello");
    say(&mut r, &mut d, now, "6:8.b64!01aGVsbG8=");
    assert!(say(
        &mut r,
        &mut d,
        now,
        &format!("put {}", ContentHash::of(item))
    )
    .is_empty());
    (r, d, now)
}

#[test]
fn chunked_put_on_the_wire() {
    let item = big_item(2 * CHUNK_BYTES + 10);
    let hash = ContentHash::of(&item);
    let (mut r, mut d, now) = responder_expecting_put(&item, false);
    let header = text::encode_header(&item);
    assert_eq!(header, format!("{}:100000.b64", item.len()));
    assert_eq!(say(&mut r, &mut d, now, &header), ["(okay more)"]);
    let chunks: Vec<&[u8]> = item.chunks(CHUNK_BYTES).collect();
    assert_eq!(chunks.len(), 3);
    let c0 = text::encode_chunk(chunks[0], MAX_CHUNK_CHARS);
    assert_eq!(c0.len(), MAX_CHUNK_CHARS);
    assert_eq!(say(&mut r, &mut d, now, &c0), ["(okay more)"]);
    // Feed the second chunk one byte at a time.
    let c1 = format!("{}\r\n", text::encode_chunk(chunks[1], MAX_CHUNK_CHARS));
    for b in c1.as_bytes() {
        r.handle_bytes(now, std::slice::from_ref(b));
    }
    d.settle_text(&mut r, now);
    assert_eq!(lines(&drain(&mut r)), ["(okay more)"]);
    let c2 = text::encode_chunk(chunks[2], MAX_CHUNK_CHARS);
    assert!(c2.ends_with('.'));
    // The last chunk is not acknowledged: the responder's own command follows.
    assert_eq!(say(&mut r, &mut d, now, &c2), [format!("get {}", hello())]);
    assert_eq!(d.stored, [hash]);
}

#[test]
fn held_item_is_skipped() {
    let item = big_item(5_000);
    let (mut r, mut d, now) = responder_expecting_put(&item, true);
    let out = say(&mut r, &mut d, now, &text::encode_header(&item));
    assert_eq!(out, ["(okay skip)".to_string(), format!("get {}", hello())]);
    assert!(d.stored.is_empty());
}

#[test]
fn bad_chunk_ends_the_session() {
    let item = big_item(5_000);
    let (mut r, mut d, now) = responder_expecting_put(&item, false);
    say(&mut r, &mut d, now, &text::encode_header(&item));
    let out = say(&mut r, &mut d, now, "short....");
    assert_eq!(out, ["(error)invalid file transfer chunk"]);
    assert!(r.is_finished());
}

#[test]
fn oversized_header_is_refused_before_buffering() {
    let (mut r, mut d, now) = responder_expecting_put(b"\x01x", false);
    let out = say(&mut r, &mut d, now, "2000000:100000.b64");
    assert!(
        out[0].starts_with("(error)file of 2000000 bytes exceeds"),
        "{out:?}"
    );
}

/// Two kith ends moving large files both ways for fifteen turns (the responder's 5th, 10th
/// and 15th own commands are nonce `chk`s of the initiator's first put).
#[test]
fn long_session_between_two_ends() {
    let now = Instant::now();
    let a = big_item(200_000);
    let b = big_item(3_000);
    let (ha, hb) = (ContentHash::of(&a), ContentHash::of(&b));
    let mut di = Driver::new().with_item(&a).with_item(&b);
    let mut dr = Driver::new();
    let mut i = initiator(now);
    let mut r = responder(now);
    let chk = Command::Chk {
        target: Target::Tag("hello".into()),
        nonce: None,
    };
    i.session_mut().send_command(now, chk).unwrap();
    i.process(now);
    shuttle(&mut i, &mut r, &mut di, &mut dr, now);
    let mut turn = 0;
    while turn < 15 {
        turn += 1;
        let cmd = match i.session().state() {
            State::WaitingForPut if turn % 4 == 0 => Command::Pip {
                addr: "1.2.3.4".into(),
            },
            State::WaitingForPut => Command::Put {
                hash: if turn < 3 { ha } else { hb },
            },
            _ => Command::Get {
                hash: if dr.items.contains_key(&ha) {
                    ha
                } else {
                    hello()
                },
            },
        };
        i.session_mut().send_command(now, cmd).unwrap();
        i.process(now);
        shuttle(&mut i, &mut r, &mut di, &mut dr, now);
        assert!(
            !i.is_finished() && !r.is_finished(),
            "turn {turn}: {:?}",
            dr.closed()
        );
    }
    assert!(dr.items.contains_key(&ha) && dr.items.contains_key(&hb));
    let own_chks = dr
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::Reply {
                    to: Command::Chk { nonce: Some(_), .. },
                    ..
                }
            )
        })
        .count();
    assert_eq!(own_chks, 3);
}

fn shuttle_env(
    i: &mut EnvelopePort,
    r: &mut EnvelopePort,
    di: &mut Driver,
    dr: &mut Driver,
    now: Instant,
) {
    loop {
        di.settle_env(i, now);
        dr.settle_env(r, now);
        let a: Vec<_> = std::iter::from_fn(|| i.poll_transmit()).collect();
        let b: Vec<_> = std::iter::from_fn(|| r.poll_transmit()).collect();
        if a.is_empty() && b.is_empty() {
            break;
        }
        for env in a {
            // Through the real envelope encoding and decoder.
            let bytes = env.to_bytes().unwrap();
            let mut buf = bytes::BytesMut::from(&bytes[..]);
            let dec = crate::wire::EnvelopeDecoder::new(limits().max_envelope_data);
            r.handle_envelope(now, &dec.decode(&mut buf).unwrap().unwrap());
        }
        for env in b {
            i.handle_envelope(now, &env);
        }
    }
}

#[test]
fn envelope_port_carries_the_same_session() {
    let now = Instant::now();
    let item = big_item(900_000);
    let hash = ContentHash::of(&item);
    let mut di = Driver::new().with_item(&item);
    let mut dr = Driver::new();
    let cfg = SessionConfig::interactive(&limits());
    let mut i = EnvelopePort::new(Session::new(Role::Initiator, cfg.clone(), now));
    let mut r = EnvelopePort::new(Session::new(Role::Responder, cfg, now));
    for cmd in [
        Command::Chk {
            target: Target::Tag("hello".into()),
            nonce: None,
        },
        Command::Put { hash },
        Command::Get { hash: hello() },
        Command::Bye,
    ] {
        i.session_mut().send_command(now, cmd).unwrap();
        i.process(now);
        shuttle_env(&mut i, &mut r, &mut di, &mut dr, now);
    }
    assert_eq!(dr.items.get(&hash), Some(&Bytes::from(item)));
    assert!(r.is_finished() && i.is_finished());
    assert_eq!(dr.closed(), Some(&CloseReason::Bye { by_peer: true }));
}

#[test]
fn envelope_codec_round_trip_and_refusals() {
    use crate::files::binary::{decode, encode};
    let t = Transmit::Item {
        hash: hello(),
        item: HELLO_ITEM.into(),
    };
    // The initiator sends `ciyam`, which only a responder accepts; replies come back as
    // `ciyam-r`, which only an initiator accepts.
    let envs = encode(&t, Role::Initiator);
    assert_eq!(envs.len(), 1);
    assert_eq!(envs[0].command.as_str(), "ciyam");
    assert_eq!(&envs[0].data[..], b"I\x01hello");
    assert_eq!(
        decode(&envs[0], Role::Responder),
        Ok(Input::Item(HELLO_ITEM.into()))
    );
    assert!(
        decode(&envs[0], Role::Initiator).is_err(),
        "a session never takes its own direction"
    );
    let back = encode(&t, Role::Responder);
    assert_eq!(back[0].command.as_str(), "ciyam-r");
    assert_eq!(
        decode(&back[0], Role::Initiator),
        Ok(Input::Item(HELLO_ITEM.into()))
    );
    let help = encode(
        &Transmit::Reply(Reply::Help(HELP_TEXT.into())),
        Role::Responder,
    );
    assert_eq!(help.len(), HELP_TEXT.lines().count());
    let bad = crate::wire::Envelope::new(crate::wire::Command::new("ciyam").unwrap(), &b"Xz"[..]);
    assert!(decode(&bad, Role::Responder).is_err());
    let crlf = crate::wire::Envelope::new(
        crate::wire::Command::new("ciyam").unwrap(),
        &b"Lbye\r\n"[..],
    );
    assert!(decode(&crlf, Role::Responder).is_err());
    let other = crate::wire::Envelope::new(crate::wire::Command::new("ping").unwrap(), &b"L"[..]);
    assert!(decode(&other, Role::Responder).is_err());
}

#[test]
fn flooding_while_the_driver_is_busy_is_refused() {
    let now = Instant::now();
    let mut r = responder(now);
    // `chk <hash>` makes the session wait for its driver (HaveItem), then a flood arrives.
    r.handle_bytes(now, format!("chk {}\r\n", hello()).as_bytes());
    r.handle_bytes(now, &vec![b'x'; MAX_AHEAD + 1]);
    assert!(r.is_finished());
    assert!(r.buffered() <= MAX_AHEAD);
    assert_eq!(
        lines(&drain(&mut r)),
        ["(error)too much data ahead of its turn"]
    );
}

#[test]
fn peer_error_lines_end_the_session_quietly() {
    let now = Instant::now();
    let mut d = Driver::new();
    let mut r = responder(now);
    assert!(say(&mut r, &mut d, now, "(error)bad thing").is_empty());
    assert_eq!(
        d.closed(),
        Some(&CloseReason::PeerError("bad thing".into()))
    );
}
