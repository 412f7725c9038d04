//! Signed and sealed content: the Datt layouts, as kith writes them on the wire.
//!
//! All integers are big-endian. Public keys are compressed secp256k1 points (33 bytes,
//! prefix `02`/`03`).
//!
//! # Signature
//!
//! `sig` is a 64-byte compact ECDSA signature `r || s` (each 32 bytes, big-endian) over
//! secp256k1, with deterministic nonce (RFC 6979) and low S (`s <= n/2`; a high-S signature is
//! rejected). It signs the Bitcoin Signed Message digest of a byte string `m`
//! ([`message_digest`]):
//!
//! ```text
//! digest(m) = sha256(sha256(varint(24) || "Bitcoin Signed Message:\n" || varint(len(m)) || m))
//! ```
//!
//! where `varint` is Bitcoin's CompactSize (`< 0xfd`: one byte; `<= 0xffff`: `fd` + u16
//! little-endian; `<= 0xffff_ffff`: `fe` + u32 little-endian; otherwise `ff` + u64
//! little-endian).
//!
//! # Signed content ([`sign`], [`verify`])
//!
//! ```text
//! [pubkey 33][sig 64][datalen u32][data datalen]
//! ```
//!
//! `sig` signs `m = data`. The total length must be exactly `101 + datalen`.
//!
//! # Sealed content ([`seal`], [`open`]): bitcore-style ECIES, authenticated twice
//!
//! ```text
//! [mac 32][pubkey_receiver 33][pubkey_sender 33][sig 64][datalen u32][data datalen]
//! data = iv 16 || AES-256-CBC(kE, iv, PKCS#7(plaintext))
//! ```
//!
//! - `P = sender_secret * pubkey_receiver` (= `receiver_secret * pubkey_sender`), and
//!   `kE || kM = sha512(x(P))` where `x(P)` is the 32-byte big-endian x-coordinate; `kE` is the
//!   first 32 bytes (AES-256 key), `kM` the last 32 (HMAC key).
//! - `iv` is 16 fresh random bytes per message.
//! - `sig` is the sender's signature (as above) over
//!   `m = pubkey_receiver || datalen || data`.
//! - `mac = HMAC-SHA256(kM, pubkey_receiver || pubkey_sender || sig || datalen || data)`, i.e.
//!   over every byte after the mac field.
//! - `datalen >= 32` and `datalen % 16 == 0` (an IV and at least one block); the total length
//!   must be exactly `166 + datalen`.
//!
//! [`open`] checks, in this order: the layout and lengths; that `pubkey_receiver` is the
//! opener's key ([`ContentError::NotForThisKey`]); the sender's signature; the MAC (compared in
//! constant time); and only then decrypts, where a bad padding gives
//! [`ContentError::Corrupt`].

use aes::Aes256;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use rand::{CryptoRng, RngCore};
use secp256k1::{ecdh, ecdsa, Message, PublicKey, Secp256k1};
use sha2::{Digest, Sha256, Sha512};
use zeroize::Zeroizing;

use crate::identity::ContentKey;

/// Length of a compressed secp256k1 public key.
pub const PUBKEY_LEN: usize = 33;
/// Length of a compact signature.
pub const SIG_LEN: usize = 64;
/// Length of the HMAC-SHA256 tag of sealed content.
pub const MAC_LEN: usize = 32;
/// Length of the AES-CBC IV at the start of sealed data.
pub const IV_LEN: usize = 16;
/// Bytes of signed content before its data.
pub const SIGNED_HEADER_LEN: usize = PUBKEY_LEN + SIG_LEN + 4;
/// Bytes of sealed content before its data.
pub const SEALED_HEADER_LEN: usize = MAC_LEN + 2 * PUBKEY_LEN + SIG_LEN + 4;

const BSM_MAGIC: &[u8] = b"Bitcoin Signed Message:\n";
const AES_BLOCK: usize = 16;

/// Errors from signing, verifying, sealing and opening content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    /// The input is shorter than its fixed header.
    #[error("truncated: need at least {needed} bytes, got {got}")]
    Truncated {
        /// Minimum length of the layout.
        needed: usize,
        /// Length received.
        got: usize,
    },
    /// The declared data length does not match the bytes present (missing or trailing bytes).
    #[error("data length mismatch: header declares {declared} bytes, {actual} present")]
    LengthMismatch {
        /// Length in the datalen field.
        declared: u32,
        /// Bytes actually following the header.
        actual: usize,
    },
    /// A public key field is not a valid compressed secp256k1 point.
    #[error("invalid secp256k1 public key")]
    BadPublicKey,
    /// The signature does not parse, is high-S, or does not verify.
    #[error("invalid signature")]
    BadSignature,
    /// The data does not fit the 32-bit length field.
    #[error("data too long for a 32-bit length")]
    DataTooLong,
    /// Sealed data is not an IV followed by whole AES blocks.
    #[error("sealed data length {len} is not 16 + a positive multiple of 16")]
    BadCiphertextLength {
        /// The datalen of the sealed content.
        len: u32,
    },
    /// Sealed content addressed to another key.
    #[error("sealed content is for another key")]
    NotForThisKey,
    /// The MAC of sealed content does not match.
    #[error("sealed content MAC mismatch")]
    BadMac,
    /// Authenticated sealed content failed to decrypt (bad padding).
    #[error("sealed content is corrupt")]
    Corrupt,
}

/// Signed content that verified: who signed it and the data (borrowed from the input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedContent<'a> {
    /// Compressed secp256k1 public key of the signer.
    pub signer: [u8; 33],
    /// The signed data.
    pub data: &'a [u8],
}

/// Sealed content that opened: the sender and the decrypted data.
#[derive(Clone, PartialEq, Eq)]
pub struct OpenedContent {
    /// Compressed secp256k1 public key of the sender (whose signature verified).
    pub sender: [u8; 33],
    /// The plaintext.
    pub data: Vec<u8>,
}

impl std::fmt::Debug for OpenedContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The plaintext was secret: print only its length.
        f.debug_struct("OpenedContent")
            .field("sender", &self.sender)
            .field("data_len", &self.data.len())
            .finish()
    }
}

fn compact_size(n: u64) -> ([u8; 9], usize) {
    let mut out = [0u8; 9];
    if n < 0xfd {
        out[0] = n as u8;
        (out, 1)
    } else if n <= 0xffff {
        out[0] = 0xfd;
        out[1..3].copy_from_slice(&(n as u16).to_le_bytes());
        (out, 3)
    } else if n <= 0xffff_ffff {
        out[0] = 0xfe;
        out[1..5].copy_from_slice(&(n as u32).to_le_bytes());
        (out, 5)
    } else {
        out[0] = 0xff;
        out[1..9].copy_from_slice(&n.to_le_bytes());
        (out, 9)
    }
}

/// The Bitcoin Signed Message digest of the concatenation of `parts`.
fn digest_parts(parts: &[&[u8]]) -> [u8; 32] {
    let total: u64 = parts.iter().map(|p| p.len() as u64).sum();
    let mut h = Sha256::new();
    let (magic_len, n) = compact_size(BSM_MAGIC.len() as u64);
    h.update(&magic_len[..n]);
    h.update(BSM_MAGIC);
    let (len, n) = compact_size(total);
    h.update(&len[..n]);
    for p in parts {
        h.update(p);
    }
    Sha256::digest(h.finalize()).into()
}

/// The Bitcoin Signed Message digest that content signatures sign:
/// `sha256(sha256(varint(24) || "Bitcoin Signed Message:\n" || varint(len(data)) || data))`.
pub fn message_digest(data: &[u8]) -> [u8; 32] {
    digest_parts(&[data])
}

fn sign_parts(key: &ContentKey, parts: &[&[u8]]) -> [u8; 64] {
    let secp = Secp256k1::signing_only();
    let msg = Message::from_digest(digest_parts(parts));
    // libsecp256k1 signs with RFC 6979 nonces and always returns low-S signatures.
    secp.sign_ecdsa(&msg, key.secret()).serialize_compact()
}

fn verify_parts(signer: &PublicKey, sig: &[u8], parts: &[&[u8]]) -> Result<(), ContentError> {
    let sig = ecdsa::Signature::from_compact(sig).map_err(|_| ContentError::BadSignature)?;
    let msg = Message::from_digest(digest_parts(parts));
    // libsecp256k1 verification rejects high-S signatures.
    Secp256k1::verification_only()
        .verify_ecdsa(&msg, &sig, signer)
        .map_err(|_| ContentError::BadSignature)
}

fn parse_pubkey(bytes: &[u8]) -> Result<PublicKey, ContentError> {
    if bytes.len() != PUBKEY_LEN {
        return Err(ContentError::BadPublicKey);
    }
    PublicKey::from_slice(bytes).map_err(|_| ContentError::BadPublicKey)
}

fn data_len(len: usize) -> Result<[u8; 4], ContentError> {
    u32::try_from(len)
        .map(u32::to_be_bytes)
        .map_err(|_| ContentError::DataTooLong)
}

/// Splits `bytes` into (header, data) after checking the total length against `header_len`
/// and the big-endian u32 datalen that ends the header.
fn split_checked(bytes: &[u8], header_len: usize) -> Result<(&[u8], &[u8], u32), ContentError> {
    if bytes.len() < header_len {
        return Err(ContentError::Truncated {
            needed: header_len,
            got: bytes.len(),
        });
    }
    let (header, data) = bytes.split_at(header_len);
    let mut len = [0u8; 4];
    len.copy_from_slice(&header[header_len - 4..]);
    let declared = u32::from_be_bytes(len);
    if u64::from(declared) != data.len() as u64 {
        return Err(ContentError::LengthMismatch {
            declared,
            actual: data.len(),
        });
    }
    Ok((header, data, declared))
}

/// Signs `data` with `key`: `[pubkey 33][sig 64][datalen u32][data]`.
///
/// Fails only with [`ContentError::DataTooLong`] when `data` is longer than `u32::MAX`.
pub fn sign(key: &ContentKey, data: &[u8]) -> Result<Vec<u8>, ContentError> {
    let len = data_len(data.len())?;
    let sig = sign_parts(key, &[data]);
    let mut out = Vec::with_capacity(SIGNED_HEADER_LEN + data.len());
    out.extend_from_slice(&key.public_key());
    out.extend_from_slice(&sig);
    out.extend_from_slice(&len);
    out.extend_from_slice(data);
    Ok(out)
}

/// Verifies signed content and returns the signer and the data.
pub fn verify(bytes: &[u8]) -> Result<SignedContent<'_>, ContentError> {
    let (header, data, _) = split_checked(bytes, SIGNED_HEADER_LEN)?;
    let (pk_bytes, rest) = header.split_at(PUBKEY_LEN);
    let sig = &rest[..SIG_LEN];
    let signer = parse_pubkey(pk_bytes)?;
    verify_parts(&signer, sig, &[data])?;
    Ok(SignedContent {
        signer: signer.serialize(),
        data,
    })
}

struct Keys {
    enc: Zeroizing<[u8; 32]>,
    mac: Zeroizing<[u8; 32]>,
}

fn derive_keys(public: &PublicKey, secret: &ContentKey) -> Keys {
    let point = Zeroizing::new(ecdh::shared_secret_point(public, secret.secret()));
    let h: Zeroizing<[u8; 64]> = Zeroizing::new(Sha512::digest(&point[..32]).into());
    let mut enc = Zeroizing::new([0u8; 32]);
    let mut mac = Zeroizing::new([0u8; 32]);
    enc.copy_from_slice(&h[..32]);
    mac.copy_from_slice(&h[32..]);
    Keys { enc, mac }
}

fn new_mac(key: &[u8; 32]) -> Result<Hmac<Sha256>, ContentError> {
    // HMAC accepts keys of any length, so this cannot fail in practice.
    <Hmac<Sha256> as Mac>::new_from_slice(key).map_err(|_| ContentError::Corrupt)
}

/// Seals `plaintext` from `sender` to the holder of the `receiver` public key (layout in the
/// module documentation). A fresh IV is drawn from `rng`.
pub fn seal<R: RngCore + CryptoRng + ?Sized>(
    sender: &ContentKey,
    receiver: &[u8; 33],
    plaintext: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, ContentError> {
    let receiver_pk = parse_pubkey(receiver)?;
    // iv + padded ciphertext (PKCS#7 always adds 1..=16 bytes).
    let data_size = plaintext
        .len()
        .checked_add(IV_LEN + AES_BLOCK - plaintext.len() % AES_BLOCK)
        .ok_or(ContentError::DataTooLong)?;
    let len = data_len(data_size)?;
    let keys = derive_keys(&receiver_pk, sender);
    let mut iv = [0u8; IV_LEN];
    rng.fill_bytes(&mut iv);
    let ciphertext = cbc::Encryptor::<Aes256>::new(&(*keys.enc).into(), &iv.into())
        .encrypt_padded_vec_mut::<Pkcs7>(plaintext);
    let mut data = Vec::with_capacity(data_size);
    data.extend_from_slice(&iv);
    data.extend_from_slice(&ciphertext);
    if data.len() != data_size {
        return Err(ContentError::Corrupt);
    }

    let sender_pub = sender.public_key();
    let sig = sign_parts(sender, &[receiver, &len, &data]);
    let mut mac = new_mac(&keys.mac)?;
    mac.update(receiver);
    mac.update(&sender_pub);
    mac.update(&sig);
    mac.update(&len);
    mac.update(&data);
    let tag = mac.finalize().into_bytes();

    let mut out = Vec::with_capacity(SEALED_HEADER_LEN + data.len());
    out.extend_from_slice(&tag);
    out.extend_from_slice(receiver);
    out.extend_from_slice(&sender_pub);
    out.extend_from_slice(&sig);
    out.extend_from_slice(&len);
    out.extend_from_slice(&data);
    Ok(out)
}

/// Opens sealed content addressed to `receiver`, checking (in order) layout, addressee,
/// sender signature and MAC before decrypting.
pub fn open(receiver: &ContentKey, bytes: &[u8]) -> Result<OpenedContent, ContentError> {
    let (header, data, declared) = split_checked(bytes, SEALED_HEADER_LEN)?;
    if data.len() < IV_LEN + AES_BLOCK || data.len() % AES_BLOCK != 0 {
        return Err(ContentError::BadCiphertextLength { len: declared });
    }
    let (tag, rest) = header.split_at(MAC_LEN);
    let (receiver_bytes, rest) = rest.split_at(PUBKEY_LEN);
    let (sender_bytes, rest) = rest.split_at(PUBKEY_LEN);
    let (sig, len) = rest.split_at(SIG_LEN);

    if receiver_bytes != receiver.public_key().as_slice() {
        return Err(ContentError::NotForThisKey);
    }
    let sender_pk = parse_pubkey(sender_bytes)?;
    verify_parts(&sender_pk, sig, &[receiver_bytes, len, data])?;

    let keys = derive_keys(&sender_pk, receiver);
    let mut mac = new_mac(&keys.mac)?;
    mac.update(receiver_bytes);
    mac.update(sender_bytes);
    mac.update(sig);
    mac.update(len);
    mac.update(data);
    mac.verify_slice(tag).map_err(|_| ContentError::BadMac)?;

    let (iv, ciphertext) = data.split_at(IV_LEN);
    let mut iv_arr = [0u8; IV_LEN];
    iv_arr.copy_from_slice(iv);
    let plaintext = cbc::Decryptor::<Aes256>::new(&(*keys.enc).into(), &iv_arr.into())
        .decrypt_padded_vec_mut::<Pkcs7>(ciphertext)
        .map_err(|_| ContentError::Corrupt)?;
    Ok(OpenedContent {
        sender: sender_pk.serialize(),
        data: plaintext,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn key(seed: u64) -> ContentKey {
        ContentKey::generate(&mut StdRng::seed_from_u64(seed))
    }

    #[test]
    fn compact_size_encoding() {
        assert_eq!(compact_size(0).1, 1);
        assert_eq!(&compact_size(0xfc).0[..1], &[0xfc]);
        assert_eq!(&compact_size(0xfd).0[..3], &[0xfd, 0xfd, 0x00]);
        assert_eq!(&compact_size(0xffff).0[..3], &[0xfd, 0xff, 0xff]);
        assert_eq!(&compact_size(0x1_0000).0[..5], &[0xfe, 0, 0, 1, 0]);
        assert_eq!(compact_size(0x1_0000_0000).1, 9);
    }

    #[test]
    fn digest_matches_manual_construction() {
        for len in [0usize, 1, 252, 253, 300, 70_000] {
            let data = vec![0x5a; len];
            let mut pre = vec![24u8];
            pre.extend_from_slice(b"Bitcoin Signed Message:\n");
            let (v, n) = compact_size(len as u64);
            pre.extend_from_slice(&v[..n]);
            pre.extend_from_slice(&data);
            let expect: [u8; 32] = Sha256::digest(Sha256::digest(&pre)).into();
            assert_eq!(message_digest(&data), expect);
            assert_eq!(digest_parts(&[&data[..len / 2], &data[len / 2..]]), expect);
        }
    }

    #[test]
    fn sign_verify_round_trip() {
        let k = key(1);
        for data in [&b""[..], b"x", &[7u8; 1000]] {
            let signed = sign(&k, data).unwrap();
            assert_eq!(signed.len(), SIGNED_HEADER_LEN + data.len());
            let v = verify(&signed).unwrap();
            assert_eq!(v.signer, k.public_key());
            assert_eq!(v.data, data);
            // Deterministic (RFC 6979).
            assert_eq!(sign(&k, data).unwrap(), signed);
        }
    }

    #[test]
    fn signature_is_low_s() {
        // n / 2 for secp256k1, big-endian.
        let half_n: [u8; 32] = [
            0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4, 0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46,
            0x68, 0x1b, 0x20, 0xa0,
        ];
        for i in 0..32u8 {
            let signed = sign(&key(u64::from(i)), &[i; 5]).unwrap();
            let s = &signed[PUBKEY_LEN + 32..PUBKEY_LEN + 64];
            assert!(s <= &half_n[..]);
        }
    }

    #[test]
    fn high_s_rejected() {
        let k = key(2);
        let mut signed = sign(&k, b"hello").unwrap();
        let mut sig = ecdsa::Signature::from_compact(&signed[33..97]).unwrap();
        // Build the high-S twin: s' = n - s.
        let n: [u8; 32] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xfe, 0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c,
            0xd0, 0x36, 0x41, 0x41,
        ];
        let compact = sig.serialize_compact();
        let mut s_high = [0u8; 32];
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let d = i16::from(n[i]) - i16::from(compact[32 + i]) - borrow;
            borrow = i16::from(d < 0);
            s_high[i] = (d + 256 * borrow) as u8;
        }
        signed[65..97].copy_from_slice(&s_high);
        assert_eq!(verify(&signed).unwrap_err(), ContentError::BadSignature);
        // Normalizing gives back the original.
        sig = ecdsa::Signature::from_compact(&signed[33..97]).unwrap();
        sig.normalize_s();
        assert_eq!(sig.serialize_compact(), compact);
    }

    #[test]
    fn verify_errors_name_the_problem() {
        let k = key(3);
        let signed = sign(&k, b"hello").unwrap();
        assert_eq!(
            verify(&signed[..50]).unwrap_err(),
            ContentError::Truncated {
                needed: 101,
                got: 50
            }
        );
        assert_eq!(
            verify(&signed[..signed.len() - 1]).unwrap_err(),
            ContentError::LengthMismatch {
                declared: 5,
                actual: 4
            }
        );
        let mut extra = signed.clone();
        extra.push(0);
        assert_eq!(
            verify(&extra).unwrap_err(),
            ContentError::LengthMismatch {
                declared: 5,
                actual: 6
            }
        );
        let mut badpk = signed.clone();
        badpk[0] = 0x04;
        assert_eq!(verify(&badpk).unwrap_err(), ContentError::BadPublicKey);
        let mut baddata = signed.clone();
        let last = baddata.len() - 1;
        baddata[last] ^= 1;
        assert_eq!(verify(&baddata).unwrap_err(), ContentError::BadSignature);
        let mut overflow = signed;
        overflow[33..65].copy_from_slice(&[0xff; 32]);
        assert_eq!(verify(&overflow).unwrap_err(), ContentError::BadSignature);
    }

    #[test]
    fn signed_tamper_any_byte() {
        let k = key(4);
        let signed = sign(&k, b"tamper me please").unwrap();
        for i in 0..signed.len() {
            for bit in [0x01u8, 0x80] {
                let mut t = signed.clone();
                t[i] ^= bit;
                assert!(verify(&t).is_err(), "byte {i} bit {bit:#x}");
            }
        }
    }

    #[test]
    fn seal_open_round_trip() {
        let mut rng = StdRng::seed_from_u64(9);
        let alice = key(5);
        let bob = key(6);
        for len in [0usize, 1, 15, 16, 17, 31, 32, 1000] {
            let pt: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let sealed = seal(&alice, &bob.public_key(), &pt, &mut rng).unwrap();
            let datalen = IV_LEN + (len / 16 + 1) * 16;
            assert_eq!(sealed.len(), SEALED_HEADER_LEN + datalen);
            let opened = open(&bob, &sealed).unwrap();
            assert_eq!(opened.sender, alice.public_key());
            assert_eq!(opened.data, pt);
            assert_eq!(
                open(&alice, &sealed).unwrap_err(),
                ContentError::NotForThisKey
            );
            // Fresh IV every time.
            let again = seal(&alice, &bob.public_key(), &pt, &mut rng).unwrap();
            assert_ne!(again, sealed);
            assert_eq!(open(&bob, &again).unwrap().data, pt);
        }
        // Sealing to oneself works too.
        let sealed = seal(&alice, &alice.public_key(), b"note", &mut rng).unwrap();
        assert_eq!(open(&alice, &sealed).unwrap().data, b"note");
    }

    #[test]
    fn seal_rejects_bad_receiver() {
        let mut rng = StdRng::seed_from_u64(10);
        let mut bad = [0u8; 33];
        bad[0] = 0x02;
        assert_eq!(
            seal(&key(1), &bad, b"x", &mut rng).unwrap_err(),
            ContentError::BadPublicKey
        );
    }

    #[test]
    fn open_check_order() {
        let mut rng = StdRng::seed_from_u64(11);
        let alice = key(7);
        let bob = key(8);
        let sealed = seal(&alice, &bob.public_key(), b"secret", &mut rng).unwrap();
        assert_eq!(
            open(&bob, &sealed[..100]).unwrap_err(),
            ContentError::Truncated {
                needed: 166,
                got: 100
            }
        );
        let mut short = sealed[..SEALED_HEADER_LEN].to_vec();
        short[SEALED_HEADER_LEN - 4..].copy_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            open(&bob, &short).unwrap_err(),
            ContentError::BadCiphertextLength { len: 0 }
        );
        // Bad MAC (but good signature) => BadMac.
        let mut badmac = sealed.clone();
        badmac[0] ^= 1;
        assert_eq!(open(&bob, &badmac).unwrap_err(), ContentError::BadMac);
        // Bad signature is reported before the MAC.
        let mut badsig = sealed.clone();
        badsig[0] ^= 1;
        badsig[MAC_LEN + 66] ^= 1;
        assert_eq!(open(&bob, &badsig).unwrap_err(), ContentError::BadSignature);
        // Wrong receiver before anything cryptographic.
        let mut wrong = badsig.clone();
        wrong[MAC_LEN..MAC_LEN + 33].copy_from_slice(&alice.public_key());
        assert_eq!(open(&bob, &wrong).unwrap_err(), ContentError::NotForThisKey);
    }

    #[test]
    fn bad_padding_is_corrupt() {
        // Hand-build a message whose signature and MAC are valid but whose padding is wrong.
        let alice = key(9);
        let bob = key(10);
        let keys = derive_keys(&PublicKey::from_slice(&bob.public_key()).unwrap(), &alice);
        let iv = [3u8; 16];
        let mut block = [0u8; 16]; // last byte 0 => invalid PKCS#7
        use cbc::cipher::BlockEncryptMut as _;
        let mut enc = cbc::Encryptor::<Aes256>::new(&(*keys.enc).into(), &iv.into());
        enc.encrypt_block_mut((&mut block).into());
        let mut data = iv.to_vec();
        data.extend_from_slice(&block);
        let len = (data.len() as u32).to_be_bytes();
        let receiver = bob.public_key();
        let sender = alice.public_key();
        let sig = sign_parts(&alice, &[&receiver, &len, &data]);
        let mut mac = new_mac(&keys.mac).unwrap();
        for p in [&receiver[..], &sender, &sig, &len, &data] {
            mac.update(p);
        }
        let mut msg = mac.finalize().into_bytes().to_vec();
        for p in [&receiver[..], &sender, &sig, &len, &data] {
            msg.extend_from_slice(p);
        }
        assert_eq!(open(&bob, &msg).unwrap_err(), ContentError::Corrupt);
    }

    #[test]
    fn sealed_tamper_any_byte() {
        let mut rng = StdRng::seed_from_u64(13);
        let alice = key(11);
        let bob = key(12);
        let sealed = seal(&alice, &bob.public_key(), b"flip a bit anywhere", &mut rng).unwrap();
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert!(open(&bob, &t).is_err(), "byte {i}");
        }
    }

    #[test]
    fn debug_hides_plaintext() {
        let opened = OpenedContent {
            sender: [2; 33],
            data: b"topsecret".to_vec(),
        };
        assert!(!format!("{opened:?}").contains("116"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn verify_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = verify(&bytes);
        }

        #[test]
        fn open_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = open(&key(1), &bytes);
        }

        #[test]
        fn verify_never_panics_near_valid(
            data in proptest::collection::vec(any::<u8>(), 0..64),
            pos in any::<usize>(),
            val in any::<u8>(),
            cut in any::<usize>(),
        ) {
            let mut signed = sign(&key(2), &data).unwrap();
            let i = pos % signed.len();
            let changed = signed[i] != val;
            signed[i] = val;
            if changed {
                prop_assert!(verify(&signed).is_err());
            }
            let cut = cut % (signed.len() + 1);
            let _ = verify(&signed[..cut]);
        }

        #[test]
        fn open_never_panics_near_valid(
            data in proptest::collection::vec(any::<u8>(), 0..64),
            pos in any::<usize>(),
            val in any::<u8>(),
            seed in any::<u64>(),
        ) {
            let bob = key(3);
            let mut sealed = seal(&key(4), &bob.public_key(), &data, &mut StdRng::seed_from_u64(seed)).unwrap();
            prop_assert_eq!(&open(&bob, &sealed).unwrap().data, &data);
            let i = pos % sealed.len();
            let changed = sealed[i] != val;
            sealed[i] = val;
            if changed {
                prop_assert!(open(&bob, &sealed).is_err());
            }
        }
    }
}
