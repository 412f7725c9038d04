//! Feeds arbitrary bytes to the secure-link frame decoder in arbitrary splits: it must never
//! panic, never yield a frame over the cap, and never grow its buffer past what it was given
//! plus one capped frame.
#![no_main]

use bytes::BytesMut;
use kith_proto::secure::FrameDecoder;
use libfuzzer_sys::fuzz_target;

const CAP: u32 = 4096;

fuzz_target!(|input: &[u8]| {
    let decoder = FrameDecoder::with_max_len(CAP);
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
                Ok(Some(frame)) => assert!(frame.body.len() < CAP as usize),
                Ok(None) => break,
                Err(_) => return,
            }
        }
        // BytesMut may round capacity up as it grows, hence the factor of two.
        assert!(buf.capacity() <= 2 * (rest.len() + 4 + CAP as usize) + 64);
    }
});
