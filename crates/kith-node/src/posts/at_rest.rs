//! A closed community's secret as this node keeps it on disk: sealed under a key only this
//! node can derive, bound to the community, so a copy of the database (a backup, a stolen
//! disk) does not hand out the community's posts. Chat keeps closed channels' keys the same
//! way (`kith_chat::crypto::seal_at_rest`).
//!
//! Layout ([`kith_crypto::sealed`]): `nonce (24) ‖ XChaCha20-Poly1305(secret)`, key =
//! SHA-256(`kith-posts-at-rest-v1` ‖ the node's content secret), AAD = `kith-posts-at-rest-v1`
//! ‖ community id. The content secret is uniformly random, so one hash with a domain is a
//! sound key derivation here.

use kith_crypto::identity::ContentKey;
use kith_crypto::sealed;
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Domain of the key derivation and prefix of the AAD.
pub(crate) const DOMAIN: &[u8] = b"kith-posts-at-rest-v1";

fn key(owner: &ContentKey) -> Zeroizing<[u8; 32]> {
    let secret = Zeroizing::new(owner.secret_bytes());
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    hasher.update(secret.as_ref());
    Zeroizing::new(hasher.finalize().into())
}

/// Seals `secret` of the community `community_id` for `owner`'s own disk.
pub(crate) fn seal<R: RngCore + CryptoRng>(
    rng: &mut R,
    owner: &ContentKey,
    community_id: &[u8; 32],
    secret: &[u8; 32],
) -> Vec<u8> {
    sealed::seal(rng, &key(owner), DOMAIN, community_id, secret)
}

/// Opens what [`seal`] made; `None` when it is not this node's, not this community's, or
/// damaged.
pub(crate) fn open(
    owner: &ContentKey,
    community_id: &[u8; 32],
    sealed: &[u8],
) -> Option<Zeroizing<[u8; 32]>> {
    let plain = sealed::open(&key(owner), DOMAIN, community_id, sealed)?;
    let secret: [u8; 32] = plain.as_slice().try_into().ok()?;
    Some(Zeroizing::new(secret))
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
