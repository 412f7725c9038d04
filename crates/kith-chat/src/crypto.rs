//! The chat overlay's cryptography: MESSAGE signatures, certificate keys, the wrapping of
//! channel keys in KEY messages, and closed-channel encryption. The byte layouts are written
//! out in the crate documentation ([`crate`]) for third-party clients.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use kith_crypto::{AgentId, Identity, NodeId};
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::message::{Attachment, ChatMessage};

/// The `cipher` field of every KEY kith sends: how the channel key is wrapped and what it is
/// used with.
pub const KEY_CIPHER: &str = "x25519-hkdf-sha256-xchacha20poly1305";
/// First line of the signed bytes of a MESSAGE.
pub const SIGNATURE_DOMAIN: &str = "kith-chat-message-v1";
/// HKDF info (and AAD prefix) of a wrapped channel key.
pub const KEY_WRAP_DOMAIN: &[u8] = b"kith-chat-key-v1";
/// AAD prefix of a closed channel's encrypted text and attachments.
pub const CHANNEL_DOMAIN: &[u8] = b"kith-chat-channel-v1";
/// Prefix hashed to name a channel key ([`key_id`]).
pub const KEY_ID_DOMAIN: &[u8] = b"kith-chat-key-id";

/// Length of the Ed25519 signature at the head of a MESSAGE's `message`.
pub const SIGNATURE_LEN: usize = 64;

/// A closed channel's 32-byte symmetric key.
pub type ChannelKey = Zeroizing<[u8; 32]>;

/// Why a cryptographic check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChatCryptoError {
    /// The certificate holds no Ed25519 key, or an invalid one.
    #[error("certificate carries no valid Ed25519 key")]
    BadCertificate,
    /// A wrapped key or ciphertext is malformed or fails authentication.
    #[error("cannot decrypt (wrong key or corrupted)")]
    Decrypt,
    /// The KEY names a cipher kith does not speak.
    #[error("unsupported cipher")]
    UnsupportedCipher,
}

/// The bytes a MESSAGE's signature covers (see the crate documentation): UTF-8 lines joined by
/// `\n`, each ending with `\n`.
pub fn signed_bytes(m: &ChatMessage, body: &[u8]) -> Vec<u8> {
    let mut recipients: Vec<String> = m.recipient.iter().map(|r| r.guid.to_string()).collect();
    recipients.sort();
    let mut out = String::with_capacity(256);
    for line in [
        SIGNATURE_DOMAIN,
        &m.msg_id,
        &m.node_id.guid.to_string(),
        &m.timestamp,
        &m.channel,
        &m.channel_id,
        &recipients.join(","),
        &hex::encode(Sha256::digest(body)),
    ] {
        out.push_str(line);
        out.push('\n');
    }
    for Attachment { mime_type, data } in &m.attachments {
        out.push_str(mime_type);
        out.push('\n');
        out.push_str(&hex::encode(Sha256::digest(data)));
        out.push('\n');
    }
    out.into_bytes()
}

/// Fills `m.message` with `signature ‖ body`, signed by `identity`. Every other field
/// (attachments included) must already be final.
pub fn sign_message(identity: &Identity, m: &mut ChatMessage, body: &[u8]) {
    let signature = identity.sign_agent(&signed_bytes(m, body));
    let mut message = Vec::with_capacity(64 + body.len());
    message.extend_from_slice(&signature);
    message.extend_from_slice(body);
    m.message = message;
}

/// Checks a MESSAGE's signature against its author's key; returns the body when it holds.
pub fn verify_message<'a>(key: &AgentId, m: &'a ChatMessage) -> Option<&'a [u8]> {
    let (signature, body) = m.message.split_at_checked(64)?;
    let signature: [u8; 64] = signature.try_into().ok()?;
    key.verify(&signed_bytes(m, body), &signature)
        .then_some(body)
}

/// The Ed25519 key a CERTIFICATE carries: either the raw 32-byte public key, or a DER X.509
/// certificate whose SubjectPublicKeyInfo is Ed25519 (RFC 8410), as kith nodes send.
pub fn certificate_key(certificate: &[u8]) -> Result<AgentId, ChatCryptoError> {
    const SPKI_PREFIX: [u8; 12] = [
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    let raw: [u8; 32] = if certificate.len() == 32 {
        certificate
            .try_into()
            .map_err(|_| ChatCryptoError::BadCertificate)?
    } else {
        let at = certificate
            .windows(SPKI_PREFIX.len())
            .position(|w| w == SPKI_PREFIX)
            .ok_or(ChatCryptoError::BadCertificate)?;
        certificate
            .get(at + SPKI_PREFIX.len()..at + SPKI_PREFIX.len() + 32)
            .and_then(|k| k.try_into().ok())
            .ok_or(ChatCryptoError::BadCertificate)?
    };
    AgentId::from_bytes(&raw).map_err(|_| ChatCryptoError::BadCertificate)
}

/// The 8-byte name of a channel key: the first 8 bytes of sha256(`kith-chat-key-id` ‖ key).
pub fn key_id(key: &[u8; 32]) -> [u8; 8] {
    let digest = Sha256::new()
        .chain_update(KEY_ID_DOMAIN)
        .chain_update(key)
        .finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    id
}

/// A fresh channel key.
pub fn new_channel_key<R: RngCore + CryptoRng>(rng: &mut R) -> ChannelKey {
    let mut key = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(key.as_mut());
    key
}

fn wrap_key_for(shared: &[u8; 32], ephemeral: &[u8; 32], recipient: &[u8; 32]) -> ChannelKey {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(ephemeral);
    salt[32..].copy_from_slice(recipient);
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = Hkdf::<Sha256>::new(Some(&salt), shared).expand(KEY_WRAP_DOMAIN, out.as_mut());
    out
}

fn wrap_aad(channel_id: &str, recipient: &NodeId) -> Vec<u8> {
    let mut aad = KEY_WRAP_DOMAIN.to_vec();
    aad.extend_from_slice(channel_id.as_bytes());
    aad.push(b'\n');
    aad.extend_from_slice(recipient.to_string().as_bytes());
    aad
}

/// Wraps `key` for `recipient` (the KEY's `key` field): `ephemeral X25519 public (32) ‖ nonce
/// (24) ‖ XChaCha20-Poly1305 ciphertext of the key (32 + 16)`.
pub fn wrap_channel_key<R: RngCore + CryptoRng>(
    rng: &mut R,
    key: &[u8; 32],
    recipient: &AgentId,
    channel_id: &str,
) -> Vec<u8> {
    let ephemeral = x25519_dalek::StaticSecret::random_from_rng(&mut *rng);
    let ephemeral_public = x25519_dalek::PublicKey::from(&ephemeral).to_bytes();
    let recipient_x = recipient.noise_public();
    let shared = Zeroizing::new(
        ephemeral
            .diffie_hellman(&x25519_dalek::PublicKey::from(recipient_x))
            .to_bytes(),
    );
    let wrap = wrap_key_for(&shared, &ephemeral_public, &recipient_x);
    let mut nonce = [0u8; 24];
    rng.fill_bytes(&mut nonce);
    let aad = wrap_aad(channel_id, &recipient.node_id());
    let sealed = XChaCha20Poly1305::new(wrap.as_ref().into())
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: key,
                aad: &aad,
            },
        )
        .unwrap_or_default();
    let mut out = Vec::with_capacity(32 + 24 + sealed.len());
    out.extend_from_slice(&ephemeral_public);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

/// Unwraps a KEY's `key` field with our identity.
pub fn unwrap_channel_key(
    identity: &Identity,
    cipher: &str,
    wrapped: &[u8],
    channel_id: &str,
) -> Result<ChannelKey, ChatCryptoError> {
    if cipher != KEY_CIPHER {
        return Err(ChatCryptoError::UnsupportedCipher);
    }
    if wrapped.len() != 32 + 24 + 32 + 16 {
        return Err(ChatCryptoError::Decrypt);
    }
    let (ephemeral_public, rest) = wrapped.split_at(32);
    let (nonce, sealed) = rest.split_at(24);
    let ephemeral_public: [u8; 32] = ephemeral_public
        .try_into()
        .map_err(|_| ChatCryptoError::Decrypt)?;
    let secret = Zeroizing::new(identity.noise_secret());
    let shared = Zeroizing::new(x25519_dalek::x25519(*secret, ephemeral_public));
    let wrap = wrap_key_for(&shared, &ephemeral_public, &identity.noise_public());
    let aad = wrap_aad(channel_id, &identity.node_id());
    let plain = Zeroizing::new(
        XChaCha20Poly1305::new(wrap.as_ref().into())
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| ChatCryptoError::Decrypt)?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(plain.get(..32).ok_or(ChatCryptoError::Decrypt)?);
    Ok(key)
}

/// Encrypts a closed channel's text or attachment: `key id (8) ‖ nonce (24) ‖
/// XChaCha20-Poly1305 ciphertext`, AAD = `kith-chat-channel-v1` ‖ channel id.
pub fn seal_for_channel<R: RngCore + CryptoRng>(
    rng: &mut R,
    key: &[u8; 32],
    channel_id: &str,
    plaintext: &[u8],
) -> Vec<u8> {
    let sealed =
        kith_crypto::sealed::seal(rng, key, CHANNEL_DOMAIN, channel_id.as_bytes(), plaintext);
    let mut out = Vec::with_capacity(8 + sealed.len());
    out.extend_from_slice(&key_id(key));
    out.extend_from_slice(&sealed);
    out
}

/// The key id a sealed channel text names.
pub fn sealed_key_id(sealed: &[u8]) -> Option<[u8; 8]> {
    sealed.get(..8)?.try_into().ok()
}

/// Decrypts what [`seal_for_channel`] made.
pub fn open_for_channel(
    key: &[u8; 32],
    channel_id: &str,
    sealed: &[u8],
) -> Result<Vec<u8>, ChatCryptoError> {
    let sealed = sealed.get(8..).ok_or(ChatCryptoError::Decrypt)?;
    kith_crypto::sealed::open(key, CHANNEL_DOMAIN, channel_id.as_bytes(), sealed)
        .map(|plain| plain.to_vec())
        .ok_or(ChatCryptoError::Decrypt)
}

/// HKDF info (and AAD prefix) of channel keys kept at rest by their member.
pub const AT_REST_DOMAIN: &[u8] = b"kith-chat-at-rest-v1";

fn at_rest_key(identity: &Identity) -> Zeroizing<[u8; 32]> {
    let seed = Zeroizing::new(identity.agent_seed());
    let hk = Hkdf::<Sha256>::new(None, seed.as_ref());
    let mut key = Zeroizing::new([0u8; 32]);
    // 32 bytes is a valid HKDF-SHA256 output length.
    let _ = hk.expand(AT_REST_DOMAIN, key.as_mut());
    key
}

/// Seals a closed channel's keys (newest first) for this node's own disk
/// ([`kith_crypto::sealed`]): `nonce (24) ‖ XChaCha20-Poly1305(keys concatenated)` under a
/// key derived from the node's Ed25519 seed (HKDF-SHA256, info `kith-chat-at-rest-v1`), AAD
/// `kith-chat-at-rest-v1` ‖ channel id. Only this node can read it back, and only for that
/// channel.
pub fn seal_at_rest<R: RngCore + CryptoRng>(
    rng: &mut R,
    identity: &Identity,
    channel_id: &str,
    keys: &[ChannelKey],
) -> Vec<u8> {
    let mut plain = Zeroizing::new(Vec::with_capacity(keys.len() * 32));
    for key in keys {
        plain.extend_from_slice(key.as_ref());
    }
    kith_crypto::sealed::seal(
        rng,
        &at_rest_key(identity),
        AT_REST_DOMAIN,
        channel_id.as_bytes(),
        &plain,
    )
}

/// Opens what [`seal_at_rest`] made (the keys, newest first).
pub fn open_at_rest(
    identity: &Identity,
    channel_id: &str,
    sealed: &[u8],
) -> Result<Vec<ChannelKey>, ChatCryptoError> {
    let plain = kith_crypto::sealed::open(
        &at_rest_key(identity),
        AT_REST_DOMAIN,
        channel_id.as_bytes(),
        sealed,
    )
    .ok_or(ChatCryptoError::Decrypt)?;
    if plain.len() % 32 != 0 {
        return Err(ChatCryptoError::Decrypt);
    }
    Ok(plain
        .chunks(32)
        .map(|c| {
            let mut key = Zeroizing::new([0u8; 32]);
            key.copy_from_slice(c);
            key
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ChatId;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn ident(seed: u64) -> Identity {
        Identity::generate(&mut StdRng::seed_from_u64(seed))
    }

    fn sample(author: &Identity) -> ChatMessage {
        ChatMessage {
            msg_id: "m1".into(),
            node_id: ChatId::new(author.node_id()),
            recipient: vec![ChatId::new(ident(9).node_id())],
            timestamp: "t".into(),
            channel: String::new(),
            channel_id: String::new(),
            message: Vec::new(),
            attachments: vec![Attachment {
                mime_type: "text/plain".into(),
                data: b"hi".to_vec(),
            }],
            public_key: None,
            unsigned: false,
            plain_text: false,
        }
    }

    #[test]
    fn signature_covers_every_field() {
        let alice = ident(1);
        let mut m = sample(&alice);
        sign_message(&alice, &mut m, b"hello");
        assert_eq!(verify_message(&alice.agent_id(), &m), Some(&b"hello"[..]));
        assert_eq!(verify_message(&ident(2).agent_id(), &m), None);
        let mut changed = m.clone();
        changed.timestamp = "u".into();
        assert_eq!(verify_message(&alice.agent_id(), &changed), None);
        let mut changed = m.clone();
        changed.attachments[0].data = b"ho".to_vec();
        assert_eq!(verify_message(&alice.agent_id(), &changed), None);
        let mut changed = m.clone();
        changed.recipient.clear();
        assert_eq!(verify_message(&alice.agent_id(), &changed), None);
        let mut changed = m;
        changed.message.truncate(10);
        assert_eq!(verify_message(&alice.agent_id(), &changed), None);
    }

    #[test]
    fn signed_bytes_golden_layout() {
        let alice = ident(1);
        let m = sample(&alice);
        let text = String::from_utf8(signed_bytes(&m, b"hello")).unwrap();
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(lines[0], "kith-chat-message-v1");
        assert_eq!(lines[1], "m1");
        assert_eq!(lines[2], alice.node_id().to_string());
        assert_eq!(lines[3], "t");
        assert_eq!((lines[4], lines[5]), ("", ""));
        assert_eq!(lines[6], ident(9).node_id().to_string());
        assert_eq!(
            lines[7],
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(lines[8], "text/plain");
        assert_eq!(lines[9], hex::encode(Sha256::digest(b"hi")));
        assert_eq!(lines[10], "");
        assert_eq!(lines.len(), 11);
    }

    #[test]
    fn certificate_key_from_der_and_raw() {
        let alice = ident(3);
        let der = alice.self_signed_certificate().unwrap().der;
        assert_eq!(certificate_key(&der).unwrap(), alice.agent_id());
        assert_eq!(
            certificate_key(&alice.agent_public()).unwrap(),
            alice.agent_id()
        );
        assert_eq!(
            certificate_key(b"garbage"),
            Err(ChatCryptoError::BadCertificate)
        );
    }

    #[test]
    fn wrapped_key_opens_only_for_its_recipient_and_channel() {
        let mut rng = StdRng::seed_from_u64(5);
        let bob = ident(4);
        let key = new_channel_key(&mut rng);
        let wrapped = wrap_channel_key(&mut rng, &key, &bob.agent_id(), "chan");
        let opened = unwrap_channel_key(&bob, KEY_CIPHER, &wrapped, "chan").unwrap();
        assert_eq!(*opened, *key);
        assert!(unwrap_channel_key(&ident(5), KEY_CIPHER, &wrapped, "chan").is_err());
        assert!(unwrap_channel_key(&bob, KEY_CIPHER, &wrapped, "other").is_err());
        assert_eq!(
            unwrap_channel_key(&bob, "rot13", &wrapped, "chan").unwrap_err(),
            ChatCryptoError::UnsupportedCipher
        );
    }

    #[test]
    fn channel_seal_round_trips_and_names_its_key() {
        let mut rng = StdRng::seed_from_u64(6);
        let key = new_channel_key(&mut rng);
        let sealed = seal_for_channel(&mut rng, &key, "c", b"secret");
        assert_eq!(sealed_key_id(&sealed), Some(key_id(&key)));
        assert_eq!(open_for_channel(&key, "c", &sealed).unwrap(), b"secret");
        assert!(open_for_channel(&key, "d", &sealed).is_err());
        let other = new_channel_key(&mut rng);
        assert!(open_for_channel(&other, "c", &sealed).is_err());
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
    }

    #[test]
    fn channel_keys_at_rest_open_only_for_their_node_and_channel() {
        let (me, other) = (ident(1), ident(2));
        let mut rng = StdRng::seed_from_u64(3);
        let keys = vec![new_channel_key(&mut rng), new_channel_key(&mut rng)];
        let sealed = seal_at_rest(&mut rng, &me, "chan", &keys);
        assert!(
            !sealed.windows(32).any(|w| w == keys[0].as_ref()),
            "no key in clear"
        );
        let opened = open_at_rest(&me, "chan", &sealed).unwrap();
        assert_eq!(opened.len(), 2);
        assert_eq!(opened[0].as_ref(), keys[0].as_ref());
        assert!(open_at_rest(&other, "chan", &sealed).is_err());
        assert!(open_at_rest(&me, "other", &sealed).is_err());
    }
}
