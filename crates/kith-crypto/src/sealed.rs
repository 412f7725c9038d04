//! Small secrets sealed with XChaCha20-Poly1305 under a 32-byte key, bound to a domain and a
//! context: a node's own secrets for its disk (a closed chat channel's keys, a closed
//! community's secret: a copy of the database then hands out nothing without the node's
//! key) and a closed channel's texts. Each caller derives its key its own way and names its
//! domain; this is the one sealing they share.
//!
//! Layout: `nonce (24) ‖ XChaCha20-Poly1305(plain)`, AAD = `domain ‖ context` (the context
//! binds a sealed secret to what it belongs to: a channel, a community).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::{CryptoRng, RngCore};
use zeroize::Zeroizing;

/// Bytes a sealing adds to its plain text: the nonce and the tag.
pub const OVERHEAD: usize = 24 + 16;

fn aad(domain: &[u8], context: &[u8]) -> Vec<u8> {
    let mut aad = domain.to_vec();
    aad.extend_from_slice(context);
    aad
}

/// Seals `plain` under `key` for `context` within `domain`.
pub fn seal<R: RngCore + CryptoRng>(
    rng: &mut R,
    key: &[u8; 32],
    domain: &[u8],
    context: &[u8],
    plain: &[u8],
) -> Vec<u8> {
    let mut nonce = [0u8; 24];
    rng.fill_bytes(&mut nonce);
    let aad = aad(domain, context);
    // Encryption into a Vec fails only for messages far beyond any secret's size.
    let sealed = XChaCha20Poly1305::new(key.into())
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: &aad,
            },
        )
        .unwrap_or_default();
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    out
}

/// Opens what [`seal`] made; `None` when it was sealed under another key, domain or context,
/// or is damaged.
pub fn open(
    key: &[u8; 32],
    domain: &[u8],
    context: &[u8],
    sealed: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < OVERHEAD {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(24);
    let aad = aad(domain, context);
    XChaCha20Poly1305::new(key.into())
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        )
        .ok()
        .map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;

    #[test]
    fn a_sealed_secret_opens_only_under_its_key_domain_and_context() {
        let (key, other_key) = ([3u8; 32], [4u8; 32]);
        let secret = [7u8; 32];
        let sealed = seal(&mut OsRng, &key, b"d", b"ctx", &secret);
        assert_eq!(sealed.len(), secret.len() + OVERHEAD);
        assert!(!sealed.windows(32).any(|w| w == secret), "not in clear");
        assert_eq!(
            open(&key, b"d", b"ctx", &sealed).unwrap().as_slice(),
            secret
        );
        assert!(open(&other_key, b"d", b"ctx", &sealed).is_none());
        assert!(open(&key, b"e", b"ctx", &sealed).is_none());
        assert!(open(&key, b"d", b"other", &sealed).is_none());
        let mut damaged = sealed.clone();
        damaged[30] ^= 1;
        assert!(open(&key, b"d", b"ctx", &damaged).is_none());
        assert!(open(&key, b"d", b"ctx", &sealed[..OVERHEAD - 1]).is_none());
    }
}
