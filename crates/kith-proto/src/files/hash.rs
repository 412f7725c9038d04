//! Content addresses of store items, the built-in hello item and nonce answers.

use sha2::{Digest, Sha256};

/// The built-in hello item: type byte 0x01 (blob) followed by `hello`.
pub const HELLO_ITEM: &[u8] = b"\x01hello";

/// The content address of an item: sha256(type byte ‖ content), one type with the store's.
pub use kith_crypto::address::{ContentHash, ParseHashError};

pub(crate) fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The proof-of-retention answer to `chk <hash> <nonce>`: lowercase hex
/// sha256(nonce as ASCII ‖ type byte ‖ uncompressed content).
pub fn nonce_answer(nonce: &str, item: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(nonce.as_bytes());
    h.update(item);
    ContentHash(h.finalize().into()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_hash_matches_the_seed() {
        assert_eq!(
            ContentHash::hello().to_string(),
            "cceeb7a985ecc3dabcb4c8f666cd637f16f008e3c963db6aa6f83a7b288c54ef"
        );
        let parsed: ContentHash =
            "CCEEB7A985ECC3DABCB4C8F666CD637F16F008E3C963DB6AA6F83A7B288C54EF"
                .parse()
                .unwrap();
        assert_eq!(parsed, ContentHash::hello());
        assert!("cceeb7".parse::<ContentHash>().is_err());
        assert!("zz".repeat(32).parse::<ContentHash>().is_err());
    }

    #[test]
    fn nonce_answer_is_sha256_of_nonce_then_item() {
        let expected = ContentHash(Sha256::digest(b"abc\x01hello").into()).to_string();
        assert_eq!(nonce_answer("abc", HELLO_ITEM), expected);
    }

    #[test]
    fn the_encrypted_and_compressed_flags_stay_out_of_the_hash() {
        assert_eq!(ContentHash::of(b"\x05hello"), ContentHash::hello());
        assert_eq!(ContentHash::of(b"\x09hello"), ContentHash::hello());
        assert_ne!(ContentHash::of(b"\x11hello"), ContentHash::hello());
        assert_ne!(ContentHash::of(b"\x02hello"), ContentHash::hello());
    }
}
