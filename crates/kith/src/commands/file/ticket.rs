//! File tickets (`kith file share HASH --ticket`, `kith file get TICKET`): the format lives in
//! the node ([`kith_node::file_ticket`]), whose control API's fetch accepts one too.

pub use kith_node::file_ticket::{FileTicket, PREFIX};
