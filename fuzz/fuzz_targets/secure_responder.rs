//! Feeds arbitrary bytes, decoded as secure-link frames, to a handshake responder (Noise mode
//! or raw mode, chosen by the first byte), answering its questions with bits of the input: it
//! must never panic, and must never transmit anything but a single `A`.
#![no_main]

use std::time::Instant;

use bytes::BytesMut;
use kith_crypto::Identity;
use kith_proto::secure::{Event, FrameDecoder, FrameKind, Mode, Responder, SecureConfig};
use kith_proto::Limits;
use libfuzzer_sys::fuzz_target;
use rand::rngs::StdRng;
use rand::SeedableRng;

fuzz_target!(|input: &[u8]| {
    let Some((&control, rest)) = input.split_first() else {
        return;
    };
    let identity = Identity::generate(&mut StdRng::seed_from_u64(2));
    let mode = if control & 1 == 1 { Mode::Raw } else { Mode::Noise };
    let config = SecureConfig::new(&identity, &Limits::default())
        .with_mode(mode)
        .with_queries(control & 2 == 2);
    let now = Instant::now();
    let mut responder = Responder::new(&config, now, &mut StdRng::seed_from_u64(1));
    let decoder = FrameDecoder::new(&Limits::default());
    let mut buf = BytesMut::from(rest);
    let mut sent = 0;
    while let Ok(Some(frame)) = decoder.decode(&mut buf) {
        if responder.handle_frame(now, frame).is_err() {
            break;
        }
        while let Some(event) = responder.poll_event() {
            let _ = match event {
                Event::CheckTicket { .. } => responder.answer_ticket(now, control & 4 == 4),
                Event::LookupPeer { agent } => responder
                    .answer_peer(now, (control & 8 == 8).then(|| agent.noise_public())),
                _ => Ok(()),
            };
        }
        while let Some(frame) = responder.poll_transmit() {
            assert_eq!(frame.kind, FrameKind::Accept);
            sent += 1;
        }
    }
    assert!(sent <= 1);
});
