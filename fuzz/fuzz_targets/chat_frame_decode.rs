//! Feeds arbitrary bytes to the chat-port frame decoder in arbitrary splits, and every frame
//! it yields to the message decoder: neither may panic, no frame may exceed the cap, and the
//! buffer never grows past what it was given plus one capped frame.
#![no_main]

use bytes::BytesMut;
use kith_chat::frame::{ChatFrame, ChatFrameDecoder};
use kith_chat::message::{Envelope, MessageLimits};
use libfuzzer_sys::fuzz_target;

const CAP: u32 = 8192;

fuzz_target!(|input: &[u8]| {
    let decoder = ChatFrameDecoder::with_max_len(CAP);
    let limits = MessageLimits {
        max_frame: CAP,
        ..MessageLimits::default()
    };
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
                Ok(Some(ChatFrame::Message(json))) => {
                    assert!(json.len() <= CAP as usize);
                    if let Ok(env) = Envelope::decode(&json, &limits) {
                        // Whatever decodes re-encodes to something that decodes the same.
                        assert_eq!(Envelope::decode(&env.encode(), &limits).ok(), Some(env));
                    }
                }
                Ok(Some(ChatFrame::KeepAlive)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
        // BytesMut may round capacity up as it grows, hence the factor of two.
        assert!(buf.capacity() <= 2 * (rest.len() + 4 + CAP as usize) + 64);
    }
});
