//! Encrypted custody of other people's files (the CIYAM `peer_persist_file` flow, as kith
//! does it).
//!
//! An *owner* asks a *custodian* peer to keep a file it may later lose. The custodian never
//! stores the plain content and cannot read what it keeps; only the owner, who knows a password,
//! can decrypt it.
//!
//! 1. The owner derives a secp256k1 key pair from its password and the file's content hash
//!    ([`derive_owner_key_argon2`] by default; [`derive_owner_key_ciyam_compat`] to interoperate
//!    with the reference's derivation) and `put`s a [`PushRequest`] (a raw blob naming its public
//!    key and the content hash).
//! 2. The custodian `get`s the content and encrypts it at once ([`CustodyEncryptor`], or
//!    [`encrypt`] for content held in memory) under a fresh key pair, ECDH with the owner's
//!    public key. It keeps the fresh public key (in the [`CustodyHeader`]) and forgets the fresh
//!    secret. It never needs the owner's secret.
//! 3. To retrieve, the owner sends `chk <original hash>`; the custodian `put`s a
//!    [`PullRequest`] naming its fresh public key, the encrypted copy's hash and the original
//!    hash; the owner `get`s the encrypted copy and decrypts it ([`CustodyDecryptor`], [`decrypt`],
//!    [`decrypt_blob`]) with the password-derived key, then checks the original hash.
//!
//! # Request formats (the reference's "raw" blobs)
//!
//! Stored as CIYAM blobs (type byte `0x01`, uncompressed); lines separated by a single `\n`, no
//! trailing newline; values are standard base64 with padding (RFC 4648 §4, canonical):
//!
//! ```text
//! push: "md:raw\npk:" b64(owner public key, 33) "\nsh:" b64(content hash, 32)
//! pull: "md:raw\npk:" b64(peer public key, 33) ["-" b64(owner public key, 33)]
//!       "\nsh:" b64(encrypted copy hash, 32) "\nth:" b64(original content hash, 32)
//! ```
//!
//! # Encrypted custody copy (format `KC1`), byte for byte
//!
//! ```text
//! header  = "KC1" (4b 43 31) || custodian public key (33, compressed) || nonce N (24)   60 bytes
//! frame_i = flag (1: 00 = more follow, 01 = last) || L (u32 big-endian) || ciphertext_i (L)
//! copy    = header || frame_0 || frame_1 || ... || frame_last          (exactly one last frame)
//! ```
//!
//! - `x = x-coordinate (32 bytes, big-endian) of fresh_secret * owner_public`
//!   (= `owner_secret * custodian_public`).
//! - `k = HKDF-SHA256(ikm = x, salt = custodian public key (33) || owner public key (33),
//!   info = "kith custody v1" || original content hash (32), L = 32)`.
//! - Chunk `i` (counting from 0): `nonce_i = N XOR (16 zero bytes || u64 big-endian i)`,
//!   `aad_i = header (60) || u64 big-endian i || flag`,
//!   `ciphertext_i = XChaCha20-Poly1305(k, nonce_i, aad_i, plaintext_i)` (ciphertext then the
//!   16-byte tag, so `L = len(plaintext_i) + 16`).
//! - `len(plaintext_i) <= MAX_CHUNK_LEN` (1 MiB); empty content is one last frame with an empty
//!   plaintext. Any chunking is valid: the custodian may encrypt item by item.
//!
//! Every chunk is authenticated; the counter in the nonce and the flag in the AAD make
//! reordered, dropped, duplicated or spliced chunks fail, and a stream that ends without its
//! last frame (or continues after it) is an error. The original hash in `info` binds the copy to
//! the file it claims to be.
//!
//! # Content addresses
//!
//! A copy is stored as an encrypted blob: type byte `0x05` (blob `0x01` | encrypted `0x04`)
//! then the copy bytes, and, as the reference does for encrypted files, it is addressed by the
//! hash of its stored bytes under the CIYAM rule that the hash leaves the encrypted and
//! compressed flags out of the type byte (the store computes it the same way):
//! [`encrypted_copy_hash`] = `sha256(0x01 || copy)`. The plain content
//! is addressed as a blob: [`blob_hash`] = `sha256(0x01 || content)`. (A copy too large for one
//! stored item is the node's business to split, and kith's custody copies of whole files carry
//! an item stream rather than the bare content: see `kith_store::custody_copy`; the hash
//! helpers cover the single-blob case.)

mod cipher;
mod owner_key;
mod request;

use sha2::{Digest, Sha256};

pub use cipher::{
    decrypt, decrypt_blob, encrypt, CustodyDecryptor, CustodyEncryptor, CustodyHeader,
    DecryptedChunk, DEFAULT_CHUNK_LEN, FRAME_HEADER_LEN, HEADER_LEN, HKDF_INFO_PREFIX, MAGIC,
    MAX_CHUNK_LEN, TAG_LEN,
};
pub use owner_key::{
    derive_owner_key_argon2, derive_owner_key_ciyam_compat, derive_owner_key_ciyam_general,
    Argon2Params, ARGON2_SALT_DOMAIN, CIYAM_TEST_PASSWORD,
};
pub use request::{PullRequest, PushRequest};

/// CIYAM type byte of a plain blob.
pub const BLOB_TYPE: u8 = 0x01;
/// CIYAM type byte of an encrypted blob (blob `0x01` | encrypted flag `0x04`).
pub const ENCRYPTED_BLOB_TYPE: u8 = 0x05;

/// Errors from custody requests, owner keys, and custody encryption and decryption.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustodyError {
    /// A request does not have the expected number of `\n`-separated lines (a trailing newline
    /// counts as an extra, empty line).
    #[error("{kind} request must have {expected} lines, got {got}")]
    RequestLineCount {
        /// `"push"` or `"pull"`.
        kind: &'static str,
        /// Lines the format has.
        expected: usize,
        /// Lines received.
        got: usize,
    },
    /// A request line does not start with its prefix (lines in the fixed order
    /// `md:raw`, `pk:`, `sh:`, `th:`).
    #[error("{kind} request line {line} must start with {expected:?}")]
    RequestPrefix {
        /// `"push"` or `"pull"`.
        kind: &'static str,
        /// Line number, from 1.
        line: usize,
        /// The expected prefix (for line 1, the whole line `md:raw`).
        expected: &'static str,
    },
    /// A request field is not canonical padded standard base64.
    #[error("request field {field} is not canonical padded standard base64")]
    RequestBase64 {
        /// Field name (`pk`, `pk peer`, `pk owner`, `sh`, `th`).
        field: &'static str,
    },
    /// A request field decodes to the wrong number of bytes.
    #[error("request field {field} decodes to {got} bytes, expected {expected}")]
    RequestFieldLength {
        /// Field name.
        field: &'static str,
        /// Bytes the field must hold.
        expected: usize,
        /// Bytes it holds.
        got: usize,
    },
    /// A public key is not a valid compressed secp256k1 point.
    #[error("{field} is not a valid compressed secp256k1 public key")]
    InvalidPublicKey {
        /// Which key.
        field: &'static str,
    },
    /// The Argon2 parameters are out of range.
    #[error("invalid Argon2 parameters: {0}")]
    KdfParams(String),
    /// Argon2 failed (for example it could not allocate its memory).
    #[error("Argon2 failed: {0}")]
    Kdf(String),
    /// A chunk to encrypt is longer than [`MAX_CHUNK_LEN`].
    #[error("chunk of {len} bytes exceeds the maximum of {max}")]
    ChunkTooLong {
        /// Length of the chunk.
        len: usize,
        /// [`MAX_CHUNK_LEN`].
        max: usize,
    },
    /// A chunk was given after the last one.
    #[error("the custody stream already ended with its last chunk")]
    StreamFinished,
    /// The chunk counter would overflow.
    #[error("too many chunks")]
    TooManyChunks,
    /// Fewer bytes than a custody header.
    #[error("custody header needs {expected} bytes, got {got}")]
    HeaderTruncated {
        /// [`HEADER_LEN`].
        expected: usize,
        /// Bytes available.
        got: usize,
    },
    /// The copy does not start with the magic `KC1`.
    #[error("not a kith custody copy (bad magic)")]
    BadMagic,
    /// A frame's flag byte is neither `00` nor `01`.
    #[error("chunk {chunk}: bad frame flag {flag:#04x}")]
    BadFrameFlag {
        /// Index of the chunk.
        chunk: u64,
        /// The flag byte.
        flag: u8,
    },
    /// A frame's length is below the tag length or above the maximum.
    #[error("chunk {chunk}: bad frame length {len}")]
    BadFrameLength {
        /// Index of the chunk.
        chunk: u64,
        /// The length field.
        len: u32,
    },
    /// A frame given to [`CustodyDecryptor::decrypt_frame`] is not exactly one frame.
    #[error("chunk {chunk}: frame is {got} bytes, its header declares {declared}")]
    FrameSize {
        /// Index of the chunk.
        chunk: u64,
        /// Total frame bytes its header declares.
        declared: usize,
        /// Bytes given.
        got: usize,
    },
    /// A chunk failed authentication: wrong password or owner key, wrong original hash, or a
    /// tampered, reordered, dropped or spliced chunk.
    #[error("chunk {chunk} failed authentication (wrong key, wrong original hash, or tampered)")]
    Authentication {
        /// Index of the chunk.
        chunk: u64,
    },
    /// The copy ended before its last frame.
    #[error("custody copy is truncated (no last chunk)")]
    Truncated,
    /// Bytes follow the last frame.
    #[error("bytes follow the last chunk of the custody copy")]
    TrailingData,
    /// [`CustodyDecryptor::decrypt_frame`] was called while [`CustodyDecryptor::update`] holds
    /// part of a frame.
    #[error("a partial frame is buffered; keep using update")]
    PartialFrameBuffered,
    /// An earlier error ended this decryption.
    #[error("custody decryption already failed")]
    StreamFailed,
    /// The decrypted content's blob hash is not the original hash.
    #[error("decrypted content does not hash to the original hash")]
    OriginalHashMismatch,
}

/// The CIYAM address of plain content stored as a blob: `sha256(0x01 || content)`.
pub fn blob_hash(content: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([BLOB_TYPE]);
    h.update(content);
    h.finalize().into()
}

/// The CIYAM address of a custody copy stored as an encrypted blob, over its stored bytes.
/// The type byte is hashed without its encrypted flag (`../shared/spec/ciyam-peer.md`: flags
/// 0x04 and 0x08 are left out), so this is `sha256(0x01 || copy)`, the address the store gives
/// the item `0x05 || copy`.
pub fn encrypted_copy_hash(copy: &[u8]) -> [u8; 32] {
    blob_hash(copy)
}

#[cfg(test)]
mod tests;
