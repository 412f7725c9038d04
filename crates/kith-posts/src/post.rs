//! The post item: what travels, is stored and is addressed by its hash.
//!
//! ```text
//! [version u8 = 1][sealed u8: 0 or 1][community id 32][content]
//! ```
//! `content` is Datt signed content (`[pubkey 33][sig 64][len u32][data]`, see
//! `kith_crypto::content`) or, sealed, Datt ECIES content to the community's public key
//! (which carries the author's key and signature inside). In both, `data` is
//! `[community id 32][time u64 big-endian, unix seconds][body]`: the community is inside the
//! signature, so a post cannot be moved to another community, and its time is the author's
//! claim. The post's address is sha256 of the whole item.
//!
//! Checks, all before a post is stored or passed on: the size (against the limit, first),
//! the layout, the signature (a signed post: always; a sealed post: only a node that knows
//! the community can open it and check the signature inside, so a node refuses sealed posts
//! of communities it does not know rather than relay what it cannot check), the community
//! inside equal to the one outside, and the body UTF-8.

use crate::community::{Community, CommunityId};
use kith_crypto::content;
use kith_crypto::identity::ContentKey;
use sha2::{Digest, Sha256};

/// A post's address: sha256 of its item.
pub type PostHash = [u8; 32];

const VERSION: u8 = 1;
const HEADER: usize = 2 + 32;

/// Why a post was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    /// Larger than the limit.
    #[error("post of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not the layout above.
    #[error("malformed post: {0}")]
    Malformed(&'static str),
    /// The signature (or the seal) did not verify.
    #[error("bad signature or seal")]
    BadSignature,
    /// Sealed to a community this node does not know.
    #[error("sealed to a community this node does not know")]
    UnknownCommunity,
}

/// A post that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Post {
    /// Its address.
    pub hash: PostHash,
    /// Its community.
    pub community: CommunityId,
    /// The author's content key (compressed secp256k1).
    pub author: [u8; 33],
    /// The author's time, unix seconds.
    pub time: u64,
    /// The text (UTF-8, checked).
    pub body: String,
    /// Sealed to the community.
    pub sealed: bool,
    /// The item as it travels.
    pub item: Vec<u8>,
}

/// Writes a post item.
pub fn create(
    author: &ContentKey,
    community: &Community,
    time: u64,
    body: &str,
    sealed: bool,
    rng: &mut (impl rand::RngCore + rand::CryptoRng),
) -> Result<Vec<u8>, PostError> {
    let mut data = Vec::with_capacity(40 + body.len());
    data.extend_from_slice(&community.id());
    data.extend_from_slice(&time.to_be_bytes());
    data.extend_from_slice(body.as_bytes());
    let content = if sealed {
        content::seal(author, &community.public_key(), &data, rng)
    } else {
        content::sign(author, &data)
    }
    .map_err(|_| PostError::Malformed("body too long"))?;
    let mut item = Vec::with_capacity(HEADER + content.len());
    item.push(VERSION);
    item.push(u8::from(sealed));
    item.extend_from_slice(&community.id());
    item.extend_from_slice(&content);
    Ok(item)
}

/// The community an item says it belongs to (before any other check; `None` if too short).
pub fn community_of(item: &[u8]) -> Option<CommunityId> {
    item.get(2..HEADER).and_then(|id| id.try_into().ok())
}

/// Checks an item (see the module docs); `known` finds a community's key by id.
pub fn check<'a>(
    item: &[u8],
    max: usize,
    known: impl Fn(&CommunityId) -> Option<&'a Community>,
) -> Result<Post, PostError> {
    if item.len() > max {
        return Err(PostError::TooLarge {
            len: item.len(),
            max,
        });
    }
    if item.len() < HEADER {
        return Err(PostError::Malformed("shorter than its header"));
    }
    if item[0] != VERSION {
        return Err(PostError::Malformed("unknown version"));
    }
    let sealed = match item[1] {
        0 => false,
        1 => true,
        _ => return Err(PostError::Malformed("neither signed nor sealed")),
    };
    let community: CommunityId = item[2..HEADER].try_into().expect("32 bytes");
    let content = &item[HEADER..];
    let (author, data) = if sealed {
        let key = known(&community).ok_or(PostError::UnknownCommunity)?;
        let opened = content::open(key.key(), content).map_err(|_| PostError::BadSignature)?;
        (opened.sender, opened.data)
    } else {
        let signed = content::verify(content).map_err(|_| PostError::BadSignature)?;
        (signed.signer, signed.data.to_vec())
    };
    if data.len() < 40 || data[..32] != community {
        return Err(PostError::Malformed(
            "the community inside is not the one outside",
        ));
    }
    let time = u64::from_be_bytes(data[32..40].try_into().expect("8 bytes"));
    let body = String::from_utf8(data[40..].to_vec())
        .map_err(|_| PostError::Malformed("body is not UTF-8"))?;
    Ok(Post {
        hash: Sha256::digest(item).into(),
        community,
        author,
        time,
        body,
        sealed,
        item: item.to_vec(),
    })
}
