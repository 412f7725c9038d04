//! Content addresses: the hash that names every stored item, and the type byte in front of it.
//!
//! One type for the CIYAM rule, used by the store (which names items by it) and by the
//! protocol (which asks for items by it): [`ContentHash`].
//!
//! kith must name files exactly as the CIYAM reference does, byte for byte, or two nodes would
//! disagree about which file a hash means. An item is stored as `type byte ‖ content` and its
//! address is `sha256(type byte without the encrypted/compressed flags ‖ uncompressed content)`.
//! The flags 0x04 and 0x08 describe how the bytes are *kept*, not what they *are*, which is why
//! they are left out of the hash; the other flags (core, mime) are part of the item's identity.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// A 32-byte SHA-256 content address, shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// The address of a whole item as it travels (type byte first): the type byte enters the
    /// hash without the flags 0x04 (encrypted) and 0x08 (compressed), so an encrypted custody
    /// copy (`0x05 ‖ copy`) travels with its type byte and still hashes to its store address.
    /// (Compressed content is the store's business: callers pass it uncompressed.) An empty
    /// item hashes as nothing at all.
    pub fn of(item: &[u8]) -> ContentHash {
        let mut hasher = Sha256::new();
        if let Some((&type_byte, content)) = item.split_first() {
            hasher.update([type_byte & !ItemType::STORAGE_FLAGS]);
            hasher.update(content);
        }
        ContentHash(hasher.finalize().into())
    }

    /// The built-in hello item's address (`0x01 ‖ hello`), `cceeb7a9…54ef`.
    pub fn hello() -> ContentHash {
        ContentHash::compute(ItemType::BLOB, b"hello")
    }

    /// The address of an item of type `item_type` holding `content`.
    pub fn compute(item_type: ItemType, content: &[u8]) -> ContentHash {
        let mut hasher = Sha256::new();
        hasher.update([item_type.hash_byte()]);
        hasher.update(content);
        ContentHash(hasher.finalize().into())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The address as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses exactly 64 lowercase hex digits (the canonical form, as written in lists).
    pub fn from_lower_hex(text: &[u8]) -> Option<ContentHash> {
        if text.len() != 64 || !text.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(ContentHash(out))
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 64];
        // Cannot fail: the buffer is exactly twice the input length.
        if hex::encode_to_slice(self.0, &mut buf).is_err() {
            return Err(fmt::Error);
        }
        // hex output is ASCII.
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({self})")
    }
}

/// Why a string is not a content hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseHashError {
    /// The text is not 64 characters long.
    #[error("a content hash is 64 hex digits, got {0} characters")]
    Length(usize),
    /// The text holds a character that is not a hex digit.
    #[error("a content hash holds only hex digits 0-9 a-f")]
    NotHex,
}

impl FromStr for ContentHash {
    type Err = ParseHashError;

    /// Accepts 64 hex digits in either case (a user may paste upper case); shows lower case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 64 {
            return Err(ParseHashError::Length(s.chars().count()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseHashError::NotHex)?;
        Ok(ContentHash(out))
    }
}

impl Serialize for ContentHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What an item is: raw bytes, or a list of other items' hashes (how large files are stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    /// Raw content (type byte 0x01).
    Blob,
    /// Lines that start with the hash of another item (type byte 0x02).
    List,
}

impl ItemKind {
    /// The lowercase name used in the database and in JSON: `blob` or `list`.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Blob => "blob",
            ItemKind::List => "list",
        }
    }

    /// The inverse of [`ItemKind::as_str`].
    pub fn from_name(name: &str) -> Option<ItemKind> {
        match name {
            "blob" => Some(ItemKind::Blob),
            "list" => Some(ItemKind::List),
            _ => None,
        }
    }
}

impl fmt::Display for ItemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The type byte stored in front of an item's content: a kind plus flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ItemType(u8);

/// A type byte that kith does not understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid item type byte 0x{0:02x}")]
pub struct InvalidItemType(pub u8);

impl ItemType {
    /// A plain blob (0x01).
    pub const BLOB: ItemType = ItemType(0x01);
    /// A plain list (0x02).
    pub const LIST: ItemType = ItemType(0x02);
    /// Flag: content is encrypted (hashed over the stored bytes; not part of the hash byte).
    pub const FLAG_ENCRYPTED: u8 = 0x04;
    /// Flag: content is zlib-compressed (hashed uncompressed; not part of the hash byte).
    pub const FLAG_COMPRESSED: u8 = 0x08;
    /// Flag: a core file of the reference.
    pub const FLAG_CORE: u8 = 0x10;

    const KIND_MASK: u8 = 0x03;
    /// The kind bits and the reference's four flags (encrypted, compressed, core, and 0x20:
    /// content starts with a MIME type, which kith never sets but accepts).
    const KNOWN: u8 = 0x3f;
    const STORAGE_FLAGS: u8 = Self::FLAG_ENCRYPTED | Self::FLAG_COMPRESSED;

    /// Parses a stored type byte: kind 1 or 2, only known flags.
    pub fn from_byte(byte: u8) -> Result<ItemType, InvalidItemType> {
        let kind = byte & Self::KIND_MASK;
        if byte & !Self::KNOWN != 0 || !(kind == 0x01 || kind == 0x02) {
            return Err(InvalidItemType(byte));
        }
        Ok(ItemType(byte))
    }

    /// This type with `flags` added (only the four known flags are allowed).
    pub fn with_flags(self, flags: u8) -> Result<ItemType, InvalidItemType> {
        ItemType::from_byte(self.0 | flags)
    }

    /// The stored byte, flags included.
    pub fn byte(self) -> u8 {
        self.0
    }

    /// The byte that enters the hash: the stored byte without 0x04 and 0x08.
    pub fn hash_byte(self) -> u8 {
        self.0 & !Self::STORAGE_FLAGS
    }

    /// Blob or list.
    pub fn kind(self) -> ItemKind {
        if self.0 & Self::KIND_MASK == 0x02 {
            ItemKind::List
        } else {
            ItemKind::Blob
        }
    }

    /// Whether `flag` (one of the `FLAG_*` constants) is set.
    pub fn has_flag(self, flag: u8) -> bool {
        self.0 & flag == flag
    }
}

impl From<ItemKind> for ItemType {
    fn from(kind: ItemKind) -> ItemType {
        match kind {
            ItemKind::Blob => ItemType::BLOB,
            ItemKind::List => ItemType::LIST,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_blob_matches_reference_check_value() {
        let hash = ContentHash::compute(ItemType::BLOB, b"hello");
        assert_eq!(
            hash.to_string(),
            "cceeb7a985ecc3dabcb4c8f666cd637f16f008e3c963db6aa6f83a7b288c54ef"
        );
    }

    #[test]
    fn storage_flags_do_not_change_the_hash_but_core_does() {
        let plain = ContentHash::compute(ItemType::BLOB, b"x");
        let compressed = ItemType::BLOB
            .with_flags(ItemType::FLAG_COMPRESSED)
            .unwrap();
        let encrypted = ItemType::BLOB.with_flags(ItemType::FLAG_ENCRYPTED).unwrap();
        let core = ItemType::BLOB.with_flags(ItemType::FLAG_CORE).unwrap();
        assert_eq!(ContentHash::compute(compressed, b"x"), plain);
        assert_eq!(ContentHash::compute(encrypted, b"x"), plain);
        assert_ne!(ContentHash::compute(core, b"x"), plain);
    }

    #[test]
    fn type_bytes_are_validated() {
        assert_eq!(ItemType::from_byte(0x01).unwrap().kind(), ItemKind::Blob);
        assert_eq!(ItemType::from_byte(0x22).unwrap().kind(), ItemKind::List);
        for bad in [0x00, 0x03, 0x40, 0x81, 0xff] {
            assert_eq!(ItemType::from_byte(bad), Err(InvalidItemType(bad)));
        }
    }

    #[test]
    fn hash_text_round_trips_and_rejects_garbage() {
        let hash = ContentHash::compute(ItemType::BLOB, b"hello");
        let text = hash.to_string();
        assert_eq!(text.parse::<ContentHash>().unwrap(), hash);
        assert_eq!(text.to_uppercase().parse::<ContentHash>().unwrap(), hash);
        assert_eq!(ContentHash::from_lower_hex(text.as_bytes()), Some(hash));
        assert_eq!(
            ContentHash::from_lower_hex(text.to_uppercase().as_bytes()),
            None
        );
        assert!(matches!(
            "abc".parse::<ContentHash>(),
            Err(ParseHashError::Length(3))
        ));
        assert!(matches!(
            "g".repeat(64).parse::<ContentHash>(),
            Err(ParseHashError::NotHex)
        ));
        assert!("é".repeat(32).parse::<ContentHash>().is_err());
    }

    #[test]
    fn hash_serializes_as_hex_string() {
        let hash = ContentHash::compute(ItemType::BLOB, b"hello");
        let json = serde_json::to_string(&hash).unwrap();
        assert_eq!(json, format!("\"{hash}\""));
        let back: ContentHash = serde_json::from_str(&json).unwrap();
        assert_eq!(back, hash);
        assert!(serde_json::from_str::<ContentHash>("\"zz\"").is_err());
    }
}
