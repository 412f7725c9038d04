//! kith-chat: the sans-IO core of kith's ptpchat overlay.
#![deny(missing_docs)]

pub mod config;
pub mod frame;
pub mod message;

pub use config::ChatConfig;
