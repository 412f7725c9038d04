//! Content addresses: the CIYAM rule, shared with the protocol ([`kith_crypto::address`]).

pub use kith_crypto::address::*;
