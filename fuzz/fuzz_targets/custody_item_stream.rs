//! Feeds arbitrary bytes, in arbitrary splits, to the reader of a custody copy's item stream
//! (what an owner decrypts from a custodian it does not trust): it must never panic, never
//! hand on more bytes than it was given, and never buffer more than one record.
#![no_main]

use kith_store::custody_copy::{ItemStreamReader, RECORD_HEADER_LEN};
use kith_store::ContentHash;
use libfuzzer_sys::fuzz_target;

const MAX_CONTENT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    // The root: a hash the stream may or may not match (the first 32 bytes when present).
    let (root, stream) = if rest.len() >= 32 {
        let mut root = [0u8; 32];
        root.copy_from_slice(&rest[..32]);
        (ContentHash(root), &rest[32..])
    } else {
        (ContentHash([0; 32]), rest)
    };
    let mut reader = ItemStreamReader::new(root, MAX_CONTENT);
    let mut out = 0usize;
    for piece in stream.chunks(usize::from(split).max(1)) {
        let result = reader.update(piece, &mut |content| {
            assert!(content.len() <= MAX_CONTENT);
            out += content.len();
            Ok(())
        });
        if result.is_err() {
            break;
        }
    }
    let _ = reader.finish();
    assert!(out <= stream.len().saturating_sub(RECORD_HEADER_LEN) || out == 0);
});
