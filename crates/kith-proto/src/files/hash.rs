//! Content addresses of store items, the built-in hello item and nonce answers.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// The built-in hello item: type byte 0x01 (blob) followed by `hello`.
pub const HELLO_ITEM: &[u8] = b"\x01hello";

/// The content address of an item: sha256(type byte ‖ content), shown as 64 lowercase hex
/// digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemHash(pub [u8; 32]);

/// A string that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a 64-digit hex hash: {0:?}")]
pub struct BadHash(pub String);

impl ItemHash {
    /// The hash of a whole item (type byte first), as the spec addresses it: the type byte
    /// enters the hash without the reference's flags 0x04 (encrypted) and 0x08 (compressed),
    /// so an encrypted custody copy (`0x05 ‖ copy`) travels with its type byte and still
    /// hashes to its store address. (Compressed content is the store's business: callers pass
    /// it uncompressed.)
    pub fn of(item: &[u8]) -> ItemHash {
        let mut h = Sha256::new();
        if let Some((&type_byte, content)) = item.split_first() {
            h.update([type_byte & !0x0c]);
            h.update(content);
        }
        ItemHash(h.finalize().into())
    }

    /// The hello item's hash, `cceeb7a9…54ef`.
    pub fn hello() -> ItemHash {
        ItemHash::of(HELLO_ITEM)
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for ItemHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ItemHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ItemHash({self})")
    }
}

impl FromStr for ItemHash {
    type Err = BadHash;

    /// Accepts exactly 64 hex digits, either case.
    fn from_str(s: &str) -> Result<ItemHash, BadHash> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(BadHash(s.chars().take(80).collect()));
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            match (hex_val(pair[0]), hex_val(pair[1])) {
                (Some(h), Some(l)) => out[i] = (h << 4) | l,
                _ => return Err(BadHash(s.to_string())),
            }
        }
        Ok(ItemHash(out))
    }
}

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
    ItemHash(h.finalize().into()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_hash_matches_the_seed() {
        assert_eq!(
            ItemHash::hello().to_string(),
            "cceeb7a985ecc3dabcb4c8f666cd637f16f008e3c963db6aa6f83a7b288c54ef"
        );
        let parsed: ItemHash = "CCEEB7A985ECC3DABCB4C8F666CD637F16F008E3C963DB6AA6F83A7B288C54EF"
            .parse()
            .unwrap();
        assert_eq!(parsed, ItemHash::hello());
        assert!("cceeb7".parse::<ItemHash>().is_err());
        assert!("zz".repeat(32).parse::<ItemHash>().is_err());
    }

    #[test]
    fn nonce_answer_is_sha256_of_nonce_then_item() {
        let expected = ItemHash(Sha256::digest(b"abc\x01hello").into()).to_string();
        assert_eq!(nonce_answer("abc", HELLO_ITEM), expected);
    }

    #[test]
    fn the_encrypted_and_compressed_flags_stay_out_of_the_hash() {
        assert_eq!(ItemHash::of(b"\x05hello"), ItemHash::hello());
        assert_eq!(ItemHash::of(b"\x09hello"), ItemHash::hello());
        assert_ne!(ItemHash::of(b"\x11hello"), ItemHash::hello());
        assert_ne!(ItemHash::of(b"\x02hello"), ItemHash::hello());
    }
}
