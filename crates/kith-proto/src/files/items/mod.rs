//! Windowed item exchange: many item requests in flight over a secure link, from many
//! sources at once, for peers that both list the [`CAPABILITY`] in their link `version`.
//!
//! The CIYAM session ([`super::Session`]) takes turns: one `get`, its item, the responder's
//! own command, its answer, `(okay)`, then the next `get`. Across a 50 ms round trip that is
//! two round trips per 1 MB item, 8 MB/s however wide the link. Between kith nodes the same
//! items move here instead with as many requests in flight as the bandwidth-delay product
//! needs ([`Scheduler`]), the holder reading ahead ([`ItemServer`]); a peer that does not
//! list the capability (an older node, another implementation) still gets the turn-taking
//! session, and the CIYAM peer port is unchanged.
//!
//! Nothing here trusts the peer: items are hashed by the receiver before they count (the
//! scheduler is told [`Scheduler::wrong`] of one that is not what it claims), an item nobody asked
//! for drops its source, every length is checked before it is allocated ([`wire`]), a holder
//! queues at most [`ServerConfig::max_queued`] requests per peer, and a fetcher holds at most
//! [`SchedulerConfig::max_window`] bytes whatever its sources do.

mod scheduler;
mod server;
mod source;
#[cfg(test)]
mod tests;
pub mod wire;

pub use scheduler::{Arrival, SchedEvent, Scheduler, SchedulerConfig, SourceReport};
pub use server::{ItemServer, ServerConfig, ServerEvent, ServerStats};
pub use source::DropReason;
pub use wire::{
    is_plain_name, item_envelope, item_prefix, output_name, Answer, Holding, Request, Response,
    WireError, CAPABILITY, ITEMS_COMMAND, ITEMS_REPLY_COMMAND, MAX_BATCH, MAX_NAME_LEN,
};
