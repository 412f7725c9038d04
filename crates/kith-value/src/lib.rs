//! The value layer of kith: MyCHIPs tallies and chits, sans-IO.
//!
//! A *tally* is a signed credit relationship between two users, each at a site; a *chit* is
//! one payment on it. This crate holds what both ends must compute identically, with no I/O,
//! no clock and no randomness of its own (time and an RNG are passed in):
//! - [`canonical`]: the canonical JSON the reference signs (`json-stable-stringify`) and
//!   hashes (Python's `json.dumps(sort_keys=True)`);
//! - [`keys`]: P-521 user keys, ECDSA with a SHA-384 digest, raw `r ‖ s` signatures;
//! - [`cert`]: CHIP addresses (CHADs) and user certificates;
//! - [`tally`]: the tally document, its two signatures and its hash (block 0 of the chain);
//! - [`dialog`]: the tally dialog (offer, counter-offer, open, void, close) as a state table;
//! - [`chit`]: chits, their signatures, hashes and chain digests;
//! - [`chain`]: the chit chain held in consensus by both sides (the foil holder orders, the
//!   stock holder conforms; `conf` only moves forward; retries and duplicates are harmless),
//!   with credit limits enforced;
//! - [`message`]: the reference's wire messages (`{target, action, to, from, object}`).
//!
//! The formats are those of `../shared/spec/mychips-tallies.md` (the reference repository's
//! `lib/tally.js`, `lib/chit.js`, `schema/chits.wms`, `schema/chains.wms`).
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

pub mod canonical;
pub mod cert;
pub mod chain;
pub mod chit;
pub mod dialog;
pub mod keys;
pub mod message;
pub mod tally;
pub mod time;

pub use cert::{Certificate, Chad};
pub use chain::{ChainMsg, Ledger};
pub use chit::{Chit, ChitType};
pub use keys::{PublicKey, UserKey};
pub use tally::{Side, Tally};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// What can be wrong with value-layer data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// A key is malformed.
    #[error("{0}")]
    BadKey(String),
    /// A signature is malformed or does not verify.
    #[error("signature {0}")]
    BadSignature(&'static str),
    /// A document lacks a field or has a wrong one.
    #[error("{what}: {why}")]
    BadField {
        /// The field, as a path (`stock.cert.public`).
        what: String,
        /// What is wrong with it.
        why: String,
    },
    /// A CHIP address that does not parse.
    #[error("not a CHIP address ({0}): expected cuid:agent or cuid:agent@host:port")]
    BadChad(String),
}

impl ValueError {
    pub(crate) fn field(what: impl Into<String>, why: impl Into<String>) -> ValueError {
        ValueError::BadField {
            what: what.into(),
            why: why.into(),
        }
    }
}

/// Base64url without padding (RFC 4648 §5), the encoding of every hash, key and signature.
pub fn b64_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url, with or without padding.
pub fn b64_decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('='))
}

/// SHA-256 in base64url: the reference's `ba2b64v(j2h(...))`.
pub fn sha256_b64(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    b64_encode(&sha2::Sha256::digest(bytes))
}

/// A random (version 4) UUID in its text form.
pub fn new_uuid(rng: &mut impl rand::RngCore) -> String {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Whether `text` is a UUID in its lowercase text form.
pub fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}
