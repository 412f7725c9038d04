//! Communities and their keys.
//!
//! **Derivation** (documented, so any client can compute it): the community's name is
//! normalised (surrounding whitespace removed, ASCII letters lowercased), then
//! `secret = sha256("kith community v1\n" ‖ name ‖ "\n" ‖ counter)` with `counter` a single
//! byte starting at 0 and raised only in the (2^-128 likely) case that the digest is not a
//! valid secp256k1 secret key. The community's public key is that secret's compressed
//! secp256k1 point, and its id is `sha256(public key)`. So "science" has one key everywhere,
//! and everyone who knows the name can open posts sealed to it, as the seed describes; the
//! seal keeps the content from relays and passers-by that do not know the name, no more.
//! A **closed** community has a random secret instead, handed over by invitation (out of band).

use kith_crypto::identity::ContentKey;
use sha2::{Digest, Sha256};

/// The longest community name (bytes, after normalisation).
pub const MAX_NAME: usize = 64;

/// A community id: sha256 of its public key.
pub type CommunityId = [u8; 32];

/// A community this node knows the key of.
#[derive(Clone)]
pub struct Community {
    /// Its name (normalised), as the user calls it.
    pub name: String,
    key: ContentKey,
    id: CommunityId,
    closed: bool,
}

impl std::fmt::Debug for Community {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Community")
            .field("name", &self.name)
            .field("id", &hex::encode(self.id))
            .finish_non_exhaustive()
    }
}

/// Why a community name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommunityError {
    /// Empty, too long, or with control characters.
    #[error("a community name is 1 to {MAX_NAME} bytes without control characters")]
    BadName,
    /// A closed community's secret is not a valid key.
    #[error("not a valid community secret")]
    BadSecret,
}

/// The normalised form of a community name.
pub fn normalise(name: &str) -> Result<String, CommunityError> {
    let name = name.trim().to_ascii_lowercase();
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(CommunityError::BadName);
    }
    Ok(name)
}

impl Community {
    /// The open community `name`, with the key everyone derives from it.
    pub fn open(name: &str) -> Result<Community, CommunityError> {
        let name = normalise(name)?;
        for counter in 0u8..=255 {
            let mut h = Sha256::new();
            h.update(b"kith community v1\n");
            h.update(name.as_bytes());
            h.update(b"\n");
            h.update([counter]);
            let secret: [u8; 32] = h.finalize().into();
            if let Ok(key) = ContentKey::from_secret(&secret) {
                return Ok(Community::with_key(name, key, false));
            }
        }
        Err(CommunityError::BadSecret)
    }

    /// A closed community: `name` for the user, `secret` shared by invitation.
    pub fn closed(name: &str, secret: &[u8; 32]) -> Result<Community, CommunityError> {
        let name = normalise(name)?;
        let key = ContentKey::from_secret(secret).map_err(|_| CommunityError::BadSecret)?;
        Ok(Community::with_key(name, key, true))
    }

    fn with_key(name: String, key: ContentKey, closed: bool) -> Community {
        let id = Sha256::digest(key.public_key()).into();
        Community {
            name,
            key,
            id,
            closed,
        }
    }

    /// Made from a secret ([`Community::closed`]), not from its name.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Its id.
    pub fn id(&self) -> CommunityId {
        self.id
    }

    /// Its public key (what sealed posts are addressed to).
    pub fn public_key(&self) -> [u8; 33] {
        self.key.public_key()
    }

    /// Its key (opens sealed posts).
    pub fn key(&self) -> &ContentKey {
        &self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_gives_the_same_key_everywhere() {
        let a = Community::open("Science").unwrap();
        let b = Community::open("  science ").unwrap();
        assert_eq!(a.public_key(), b.public_key());
        assert_eq!(a.id(), b.id());
        assert_ne!(a.id(), Community::open("sciences").unwrap().id());
        // The documented derivation, step by step.
        let secret: [u8; 32] = Sha256::digest(b"kith community v1\nscience\n\x00").into();
        assert_eq!(
            ContentKey::from_secret(&secret).unwrap().public_key(),
            a.public_key()
        );
    }

    #[test]
    fn bad_names_are_refused() {
        for name in ["", "   ", "a\nb", &"x".repeat(65)] {
            assert_eq!(Community::open(name).unwrap_err(), CommunityError::BadName);
        }
    }
}
