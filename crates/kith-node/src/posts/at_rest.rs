//! A closed community's secret as this node keeps it on disk: sealed under a key only this
//! node can derive, bound to the community, so a copy of the database (a backup, a stolen
//! disk) does not hand out the community's posts. Chat keeps closed channels' keys the same
//! way (`kith_chat::crypto::seal_at_rest`).
//!
//! Layout: `nonce (24) ‖ XChaCha20-Poly1305(secret)`, key = SHA-256(`kith-posts-at-rest-v1` ‖
//! the node's content secret), AAD = `kith-posts-at-rest-v1` ‖ community id. The content
//! secret is uniformly random, so one hash with a domain is a sound key derivation here.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use kith_crypto::identity::ContentKey;
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Domain of the key derivation and prefix of the AAD.
pub(crate) const DOMAIN: &[u8] = b"kith-posts-at-rest-v1";

fn cipher(owner: &ContentKey) -> XChaCha20Poly1305 {
    let secret = Zeroizing::new(owner.secret_bytes());
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    hasher.update(secret.as_ref());
    let key = Zeroizing::new(<[u8; 32]>::from(hasher.finalize()));
    XChaCha20Poly1305::new(key.as_ref().into())
}

fn aad(community_id: &[u8; 32]) -> Vec<u8> {
    let mut aad = DOMAIN.to_vec();
    aad.extend_from_slice(community_id);
    aad
}

/// Seals `secret` of the community `community_id` for `owner`'s own disk.
pub(crate) fn seal<R: RngCore + CryptoRng>(
    rng: &mut R,
    owner: &ContentKey,
    community_id: &[u8; 32],
    secret: &[u8; 32],
) -> Vec<u8> {
    let mut nonce = [0u8; 24];
    rng.fill_bytes(&mut nonce);
    let aad = aad(community_id);
    // Encryption into a Vec cannot fail for a 32-byte message.
    let sealed = cipher(owner)
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: secret,
                aad: &aad,
            },
        )
        .unwrap_or_default();
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    out
}

/// Opens what [`seal`] made; `None` when it is not this node's, not this community's, or
/// damaged.
pub(crate) fn open(
    owner: &ContentKey,
    community_id: &[u8; 32],
    sealed: &[u8],
) -> Option<Zeroizing<[u8; 32]>> {
    if sealed.len() != 24 + 32 + 16 {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(24);
    let aad = aad(community_id);
    let plain = Zeroizing::new(
        cipher(owner)
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .ok()?,
    );
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&plain);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;

    #[test]
    fn a_sealed_secret_opens_only_for_its_node_and_community() {
        let owner = ContentKey::generate(&mut OsRng);
        let other = ContentKey::generate(&mut OsRng);
        let (id, other_id, secret) = ([1u8; 32], [2u8; 32], [7u8; 32]);
        let sealed = seal(&mut OsRng, &owner, &id, &secret);
        assert!(
            !sealed.windows(32).any(|w| w == secret),
            "the secret is not on disk"
        );
        assert_eq!(*open(&owner, &id, &sealed).unwrap(), secret);
        assert!(open(&other, &id, &sealed).is_none());
        assert!(open(&owner, &other_id, &sealed).is_none());
        let mut damaged = sealed.clone();
        damaged[30] ^= 1;
        assert!(open(&owner, &id, &damaged).is_none());
        assert!(open(&owner, &id, &sealed[..40]).is_none());
    }
}
