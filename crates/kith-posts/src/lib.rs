//! Datt posts and communities, sans IO (no sockets, no clock: time is passed in).
//!
//! The seed's network: users post content, signed and optionally sealed to a community, to
//! nodes that each hold their own overlapping set of it and fetch it by hash; no DHT, no
//! global consensus. This crate is that, as plain state:
//! - [`community`]: a community's key, derived from its name (anyone who knows the name can
//!   read, as the seed intends), or random for a closed community shared by invitation;
//! - [`post`]: the post item (Datt signed layout, or sealed to the community key), its
//!   address, and its checks;
//! - [`message`]: the three exchange messages (`announce`, `getdata`, `postdata`), each the
//!   payload of one Datt envelope, with bounded decoders;
//! - [`store`]: the bounded post store and its eviction policy;
//! - [`node`]: [`node::PostsNode`], one node's exchange machine (what to ask for, what to
//!   serve, what to pass on).
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

pub mod community;
pub mod message;
pub mod node;
pub mod post;
pub mod store;

pub use community::Community;
pub use node::{PostsLimits, PostsNode};
pub use post::{Post, PostError, PostHash};
