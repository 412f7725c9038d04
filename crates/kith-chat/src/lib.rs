//! kith-chat: the sans-IO core of kith's ptpchat overlay.
#![deny(missing_docs)]

pub mod config;
pub mod crypto;
pub mod frame;
pub mod message;
pub mod router;

pub use config::ChatConfig;
pub use router::{ChatError, ChatEvent, NeighbourId, NeighbourInfo, NeighbourKind, Output, Router};
