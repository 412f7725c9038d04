//! kith-crypto: a kith node's keys and the Datt content formats.
//!
//! - [`identity`]: the Ed25519 agent key (agent id, node id, Noise static key, self-signed
//!   certificate) and the secp256k1 content key.
//! - [`content`]: signed and sealed (ECIES) content, in the Datt layouts.
//! - [`custody`]: encrypted custody of other people's files (push and pull requests, the
//!   owner's password-derived key, chunked XChaCha20-Poly1305 custody copies).
//!
//! This crate does no I/O, reads no clock and spawns nothing; randomness is passed in.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

pub mod address;
pub mod content;
pub mod custody;
pub mod identity;
pub mod sealed;

pub use address::{ContentHash, ItemKind, ItemType};
pub use content::{
    message_digest, open, seal, sign, verify, ContentError, OpenedContent, SignedContent,
};
pub use identity::{
    agent_key_to_noise_public, AgentId, Certificate, ContentKey, Identity, IdentityError, NodeId,
};
