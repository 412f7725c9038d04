//! Feeds arbitrary bytes to the `offer` payload decoder: it must never panic, must accept
//! exactly the 40-byte payloads, and must re-encode what it accepted to the same bytes.
#![no_main]

use kith_proto::files::offer::{Offer, OFFER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    match Offer::decode(input) {
        Some(offer) => {
            assert_eq!(input.len(), OFFER_LEN);
            assert_eq!(offer.encode().as_ref(), input);
        }
        None => assert_ne!(input.len(), OFFER_LEN),
    }
});
