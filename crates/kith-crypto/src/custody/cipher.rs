//! Custody encryption: XChaCha20-Poly1305 chunks under HKDF-SHA256 of an ECDH secret (format
//! `KC1`, in the module documentation).

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use rand::{CryptoRng, RngCore};
use secp256k1::{ecdh, PublicKey, Secp256k1, SecretKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{blob_hash, CustodyError};
use crate::identity::ContentKey;

/// The magic that starts a custody copy (format version 1).
pub const MAGIC: &[u8; 3] = b"KC1";
/// Length of the custody header: magic 3 + custodian public key 33 + nonce 24.
pub const HEADER_LEN: usize = 3 + 33 + 24;
/// Length of a frame's header: flag 1 + ciphertext length 4.
pub const FRAME_HEADER_LEN: usize = 5;
/// Length of the Poly1305 tag that ends every chunk's ciphertext.
pub const TAG_LEN: usize = 16;
/// Largest plaintext chunk (1 MiB).
pub const MAX_CHUNK_LEN: usize = 1 << 20;
/// Chunk length used by [`encrypt`] (64 KiB).
pub const DEFAULT_CHUNK_LEN: usize = 64 * 1024;
/// The HKDF info is this prefix followed by the 32-byte original content hash.
pub const HKDF_INFO_PREFIX: &[u8] = b"kith custody v1";

const FLAG_MORE: u8 = 0x00;
const FLAG_LAST: u8 = 0x01;

/// The header of a custody copy: the custodian's fresh public key and the base nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CustodyHeader {
    custodian_key: [u8; 33],
    nonce: [u8; 24],
}

impl CustodyHeader {
    /// Parses the header from the first [`HEADER_LEN`] bytes of `bytes` (later bytes are
    /// ignored: pass a whole copy or just its start). Checks the magic and that the custodian
    /// key is a valid compressed point.
    pub fn parse(bytes: &[u8]) -> Result<CustodyHeader, CustodyError> {
        let header = bytes
            .get(..HEADER_LEN)
            .ok_or(CustodyError::HeaderTruncated {
                expected: HEADER_LEN,
                got: bytes.len(),
            })?;
        let (magic, rest) = header.split_at(MAGIC.len());
        if magic != MAGIC {
            return Err(CustodyError::BadMagic);
        }
        let (key, nonce) = rest.split_at(33);
        let custodian_key: [u8; 33] =
            key.try_into().map_err(|_| CustodyError::InvalidPublicKey {
                field: "custodian public key",
            })?;
        PublicKey::from_slice(&custodian_key).map_err(|_| CustodyError::InvalidPublicKey {
            field: "custodian public key",
        })?;
        let nonce: [u8; 24] = nonce
            .try_into()
            .map_err(|_| CustodyError::HeaderTruncated {
                expected: HEADER_LEN,
                got: bytes.len(),
            })?;
        Ok(CustodyHeader {
            custodian_key,
            nonce,
        })
    }

    /// The 60 header bytes: `"KC1" || custodian public key || nonce`.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..3].copy_from_slice(MAGIC);
        out[3..36].copy_from_slice(&self.custodian_key);
        out[36..].copy_from_slice(&self.nonce);
        out
    }

    /// The custodian's fresh public key (compressed), the `pk:` peer key of its pull request.
    pub fn custodian_key(&self) -> [u8; 33] {
        self.custodian_key
    }

    /// The 24-byte base nonce.
    pub fn nonce(&self) -> [u8; 24] {
        self.nonce
    }
}

/// The per-copy AEAD key and what every chunk's nonce and AAD are built from.
struct ChunkCipher {
    key: Zeroizing<[u8; 32]>,
    header: [u8; HEADER_LEN],
    nonce: [u8; 24],
}

impl ChunkCipher {
    fn new(
        shared_x: &[u8],
        header: &CustodyHeader,
        owner_public: &[u8; 33],
        original_hash: &[u8; 32],
    ) -> Result<ChunkCipher, CustodyError> {
        let mut salt = [0u8; 66];
        salt[..33].copy_from_slice(&header.custodian_key);
        salt[33..].copy_from_slice(owner_public);
        let mut info = [0u8; HKDF_INFO_PREFIX.len() + 32];
        info[..HKDF_INFO_PREFIX.len()].copy_from_slice(HKDF_INFO_PREFIX);
        info[HKDF_INFO_PREFIX.len()..].copy_from_slice(original_hash);
        let mut key = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(Some(&salt), shared_x)
            .expand(&info, key.as_mut())
            .map_err(|_| CustodyError::Kdf("HKDF output length".into()))?;
        Ok(ChunkCipher {
            key,
            header: header.to_bytes(),
            nonce: header.nonce,
        })
    }

    fn nonce_and_aad(&self, index: u64, flag: u8) -> ([u8; 24], [u8; HEADER_LEN + 9]) {
        let mut nonce = self.nonce;
        for (n, c) in nonce[16..].iter_mut().zip(index.to_be_bytes()) {
            *n ^= c;
        }
        let mut aad = [0u8; HEADER_LEN + 9];
        aad[..HEADER_LEN].copy_from_slice(&self.header);
        aad[HEADER_LEN..HEADER_LEN + 8].copy_from_slice(&index.to_be_bytes());
        aad[HEADER_LEN + 8] = flag;
        (nonce, aad)
    }

    fn seal(&self, index: u64, flag: u8, plaintext: &[u8]) -> Result<Vec<u8>, CustodyError> {
        let (nonce, aad) = self.nonce_and_aad(index, flag);
        XChaCha20Poly1305::new(self.key.as_ref().into())
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            // Only fails for inputs beyond ChaCha20's 256 GiB limit, far above MAX_CHUNK_LEN.
            .map_err(|_| CustodyError::ChunkTooLong {
                len: plaintext.len(),
                max: MAX_CHUNK_LEN,
            })
    }

    fn open(&self, index: u64, flag: u8, ciphertext: &[u8]) -> Result<Vec<u8>, CustodyError> {
        let (nonce, aad) = self.nonce_and_aad(index, flag);
        XChaCha20Poly1305::new(self.key.as_ref().into())
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| CustodyError::Authentication { chunk: index })
    }
}

fn parse_owner_public(owner_public: &[u8; 33]) -> Result<PublicKey, CustodyError> {
    PublicKey::from_slice(owner_public).map_err(|_| CustodyError::InvalidPublicKey {
        field: "owner public key",
    })
}

/// The custodian's side: encrypts content, chunk by chunk, for the owner's public key.
///
/// The fresh secret is used once, in [`CustodyEncryptor::new`], and erased there; the
/// encryptor keeps only the derived AEAD key (zeroized on drop, never printed).
pub struct CustodyEncryptor {
    cipher: ChunkCipher,
    header: CustodyHeader,
    index: u64,
    finished: bool,
}

impl CustodyEncryptor {
    /// Starts a custody copy of the content whose CIYAM hash is `original_hash`, for the owner
    /// whose compressed public key is `owner_public`: draws a fresh key pair and a 24-byte
    /// nonce from `rng`, derives the AEAD key, and forgets the fresh secret. Write the returned
    /// header first, then every frame from [`CustodyEncryptor::encrypt_chunk`].
    pub fn new<R: RngCore + CryptoRng + ?Sized>(
        owner_public: &[u8; 33],
        original_hash: &[u8; 32],
        rng: &mut R,
    ) -> Result<(CustodyHeader, CustodyEncryptor), CustodyError> {
        let owner_pk = parse_owner_public(owner_public)?;
        let mut bytes = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(bytes.as_mut());
        let mut fresh = loop {
            if let Ok(sk) = SecretKey::from_byte_array(&bytes) {
                break sk;
            }
            // Out of range (probability ~2^-128, or a broken all-zero generator): rehash.
            let next: [u8; 32] = Sha256::digest(bytes.as_ref()).into();
            *bytes = next;
        };
        let custodian_key = PublicKey::from_secret_key(&Secp256k1::signing_only(), &fresh);
        let point = Zeroizing::new(ecdh::shared_secret_point(&owner_pk, &fresh));
        // SecretKey is Copy: erase this, the only copy (the candidate bytes zeroize on drop).
        fresh.non_secure_erase();

        let mut nonce = [0u8; 24];
        rng.fill_bytes(&mut nonce);
        let header = CustodyHeader {
            custodian_key: custodian_key.serialize(),
            nonce,
        };
        let cipher = ChunkCipher::new(&point[..32], &header, owner_public, original_hash)?;
        Ok((
            header,
            CustodyEncryptor {
                cipher,
                header,
                index: 0,
                finished: false,
            },
        ))
    }

    /// The copy's header (as returned by [`CustodyEncryptor::new`]).
    pub fn header(&self) -> CustodyHeader {
        self.header
    }

    /// Encrypts the next chunk (at most [`MAX_CHUNK_LEN`] bytes, possibly empty) and returns
    /// its frame. `last` marks the final chunk; after it the stream accepts nothing more.
    pub fn encrypt_chunk(&mut self, chunk: &[u8], last: bool) -> Result<Vec<u8>, CustodyError> {
        if self.finished {
            return Err(CustodyError::StreamFinished);
        }
        if chunk.len() > MAX_CHUNK_LEN {
            return Err(CustodyError::ChunkTooLong {
                len: chunk.len(),
                max: MAX_CHUNK_LEN,
            });
        }
        let next = self
            .index
            .checked_add(1)
            .ok_or(CustodyError::TooManyChunks)?;
        let flag = if last { FLAG_LAST } else { FLAG_MORE };
        let ciphertext = self.cipher.seal(self.index, flag, chunk)?;
        let len = u32::try_from(ciphertext.len()).map_err(|_| CustodyError::ChunkTooLong {
            len: chunk.len(),
            max: MAX_CHUNK_LEN,
        })?;
        let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + ciphertext.len());
        frame.push(flag);
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&ciphertext);
        self.index = next;
        self.finished = last;
        Ok(frame)
    }

    #[cfg(test)]
    pub(super) fn key_for_tests(&self) -> [u8; 32] {
        *self.cipher.key
    }

    /// Chunks encrypted so far.
    pub fn chunks(&self) -> u64 {
        self.index
    }

    /// True once the last chunk has been encrypted.
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

impl fmt::Debug for CustodyEncryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustodyEncryptor")
            .field("header", &self.header)
            .field("chunks", &self.index)
            .field("finished", &self.finished)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// One decrypted chunk.
#[derive(Clone, PartialEq, Eq)]
pub struct DecryptedChunk {
    /// The plaintext.
    pub data: Vec<u8>,
    /// True for the last chunk of the copy.
    pub last: bool,
}

impl fmt::Debug for DecryptedChunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecryptedChunk")
            .field("data_len", &self.data.len())
            .field("last", &self.last)
            .finish()
    }
}

/// The owner's side: decrypts and authenticates a custody copy chunk by chunk.
///
/// Feed it either exact frames ([`CustodyDecryptor::decrypt_frame`]) or the bytes after the
/// header split anywhere ([`CustodyDecryptor::update`], which buffers at most one frame), then
/// call [`CustodyDecryptor::finish`] to detect truncation. After any error every later call
/// fails with [`CustodyError::StreamFailed`].
pub struct CustodyDecryptor {
    cipher: ChunkCipher,
    index: u64,
    finished: bool,
    failed: bool,
    buf: Vec<u8>,
}

impl CustodyDecryptor {
    /// Prepares to decrypt the copy with this header, as the owner of `owner` (the
    /// password-derived key), for the content whose CIYAM hash is `original_hash`.
    pub fn new(
        owner: &ContentKey,
        original_hash: &[u8; 32],
        header: &CustodyHeader,
    ) -> Result<CustodyDecryptor, CustodyError> {
        let custodian = PublicKey::from_slice(&header.custodian_key).map_err(|_| {
            CustodyError::InvalidPublicKey {
                field: "custodian public key",
            }
        })?;
        let point = Zeroizing::new(ecdh::shared_secret_point(&custodian, owner.secret()));
        let cipher = ChunkCipher::new(&point[..32], header, &owner.public_key(), original_hash)?;
        Ok(CustodyDecryptor {
            cipher,
            index: 0,
            finished: false,
            failed: false,
            buf: Vec::new(),
        })
    }

    /// Total length of the frame starting at `bytes`, once its 5-byte header is present
    /// (`None` before). Checks the flag and length.
    fn frame_len(&self, bytes: &[u8]) -> Result<Option<usize>, CustodyError> {
        let Some(head) = bytes.get(..FRAME_HEADER_LEN) else {
            return Ok(None);
        };
        let flag = head[0];
        if flag != FLAG_MORE && flag != FLAG_LAST {
            return Err(CustodyError::BadFrameFlag {
                chunk: self.index,
                flag,
            });
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
        let ct_len = len as usize;
        if !(TAG_LEN..=MAX_CHUNK_LEN + TAG_LEN).contains(&ct_len) {
            return Err(CustodyError::BadFrameLength {
                chunk: self.index,
                len,
            });
        }
        Ok(Some(FRAME_HEADER_LEN + ct_len))
    }

    fn decrypt_exact(&mut self, frame: &[u8]) -> Result<DecryptedChunk, CustodyError> {
        if self.finished {
            return Err(CustodyError::TrailingData);
        }
        let declared = self.frame_len(frame)?.ok_or(CustodyError::FrameSize {
            chunk: self.index,
            declared: FRAME_HEADER_LEN,
            got: frame.len(),
        })?;
        if declared != frame.len() {
            return Err(CustodyError::FrameSize {
                chunk: self.index,
                declared,
                got: frame.len(),
            });
        }
        let next = self
            .index
            .checked_add(1)
            .ok_or(CustodyError::TooManyChunks)?;
        let (head, ciphertext) = frame.split_at(FRAME_HEADER_LEN);
        let flag = head[0];
        let data = self.cipher.open(self.index, flag, ciphertext)?;
        self.index = next;
        self.finished = flag == FLAG_LAST;
        Ok(DecryptedChunk {
            data,
            last: self.finished,
        })
    }

    fn guard<T>(&mut self, r: Result<T, CustodyError>) -> Result<T, CustodyError> {
        if r.is_err() {
            self.failed = true;
            self.buf.clear();
        }
        r
    }

    /// Decrypts exactly one frame (as returned by [`CustodyEncryptor::encrypt_chunk`]).
    pub fn decrypt_frame(&mut self, frame: &[u8]) -> Result<DecryptedChunk, CustodyError> {
        if self.failed {
            return Err(CustodyError::StreamFailed);
        }
        if !self.buf.is_empty() {
            return Err(CustodyError::PartialFrameBuffered);
        }
        let r = self.decrypt_exact(frame);
        self.guard(r)
    }

    /// Takes the next bytes of the copy after its header, split anywhere, and returns the
    /// plaintext of every frame they complete (each authenticated before it is returned).
    pub fn update(&mut self, bytes: &[u8]) -> Result<Vec<u8>, CustodyError> {
        if self.failed {
            return Err(CustodyError::StreamFailed);
        }
        let r = self.update_inner(bytes);
        self.guard(r)
    }

    fn update_inner(&mut self, mut input: &[u8]) -> Result<Vec<u8>, CustodyError> {
        let mut out = Vec::new();
        while !input.is_empty() {
            if self.finished {
                return Err(CustodyError::TrailingData);
            }
            if self.buf.is_empty() {
                // Whole frames straight from the input, without copying.
                if let Some(total) = self.frame_len(input)? {
                    if let Some(frame) = input.get(..total) {
                        let chunk = self.decrypt_exact(frame)?;
                        out.extend_from_slice(&chunk.data);
                        input = &input[total..];
                        continue;
                    }
                }
            }
            let want = match self.frame_len(&self.buf)? {
                Some(total) => total,
                None => FRAME_HEADER_LEN,
            };
            let take = want.saturating_sub(self.buf.len()).min(input.len());
            self.buf.extend_from_slice(&input[..take]);
            input = &input[take..];
            if let Some(total) = self.frame_len(&self.buf)? {
                if self.buf.len() == total {
                    let frame = std::mem::take(&mut self.buf);
                    let chunk = self.decrypt_exact(&frame)?;
                    out.extend_from_slice(&chunk.data);
                }
            }
        }
        Ok(out)
    }

    /// Checks that the copy ended with its last frame and nothing is left over.
    pub fn finish(&self) -> Result<(), CustodyError> {
        if self.failed {
            return Err(CustodyError::StreamFailed);
        }
        if !self.finished || !self.buf.is_empty() {
            return Err(CustodyError::Truncated);
        }
        Ok(())
    }

    #[cfg(test)]
    pub(super) fn key_for_tests(&self) -> [u8; 32] {
        *self.cipher.key
    }

    /// Chunks decrypted so far.
    pub fn chunks(&self) -> u64 {
        self.index
    }

    /// True once the last frame has been decrypted.
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

impl fmt::Debug for CustodyDecryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustodyDecryptor")
            .field("chunks", &self.index)
            .field("finished", &self.finished)
            .field("failed", &self.failed)
            .field("buffered", &self.buf.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Encrypts `content` held in memory into a whole custody copy (header and frames of
/// [`DEFAULT_CHUNK_LEN`] bytes; empty content gives one empty last frame).
pub fn encrypt<R: RngCore + CryptoRng + ?Sized>(
    owner_public: &[u8; 33],
    original_hash: &[u8; 32],
    content: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, CustodyError> {
    let (header, mut enc) = CustodyEncryptor::new(owner_public, original_hash, rng)?;
    let frames = content.len() / DEFAULT_CHUNK_LEN + 1;
    let mut out =
        Vec::with_capacity(HEADER_LEN + content.len() + frames * (FRAME_HEADER_LEN + TAG_LEN));
    out.extend_from_slice(&header.to_bytes());
    let mut chunks = content.chunks(DEFAULT_CHUNK_LEN).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&enc.encrypt_chunk(&[], true)?);
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        out.extend_from_slice(&enc.encrypt_chunk(chunk, last)?);
    }
    Ok(out)
}

/// Decrypts a whole custody copy held in memory (header and frames) as the owner of `owner`.
/// Does not check what the content hashes to: see [`decrypt_blob`].
pub fn decrypt(
    owner: &ContentKey,
    original_hash: &[u8; 32],
    copy: &[u8],
) -> Result<Vec<u8>, CustodyError> {
    let header = CustodyHeader::parse(copy)?;
    let mut dec = CustodyDecryptor::new(owner, original_hash, &header)?;
    let content = dec.update(&copy[HEADER_LEN..])?;
    dec.finish()?;
    Ok(content)
}

/// [`decrypt`], then checks that the content, as a blob, hashes to `original_hash`
/// (`sha256(0x01 || content)`): the owner's last check when the original was a single blob.
pub fn decrypt_blob(
    owner: &ContentKey,
    original_hash: &[u8; 32],
    copy: &[u8],
) -> Result<Vec<u8>, CustodyError> {
    let content = decrypt(owner, original_hash, copy)?;
    if blob_hash(&content) != *original_hash {
        return Err(CustodyError::OriginalHashMismatch);
    }
    Ok(content)
}
