//! Feeds arbitrary bytes to the envelope decoder in arbitrary splits: it must never panic, and
//! must never grow its buffer past what it was given plus one capped envelope.
#![no_main]

use bytes::BytesMut;
use kith_proto::wire::EnvelopeDecoder;
use libfuzzer_sys::fuzz_target;

const CAP: u32 = 4096;

fuzz_target!(|input: &[u8]| {
    let decoder = EnvelopeDecoder::new(CAP);
    let mut buf = BytesMut::new();
    // The first byte chooses how the rest is split into reads, so partial input is exercised.
    let (step, rest) = match input.split_first() {
        Some((s, rest)) => (usize::from(*s).max(1), rest),
        None => return,
    };
    for chunk in rest.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(envelope)) => assert!(envelope.data.len() <= CAP as usize),
                Ok(None) => break,
                Err(_) => return,
            }
        }
        // BytesMut may round capacity up as it grows, hence the factor of two.
        assert!(buf.capacity() <= 2 * (rest.len() + 24 + CAP as usize) + 64);
    }
});
