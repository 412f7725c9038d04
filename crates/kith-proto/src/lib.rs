//! kith-proto
#![deny(missing_docs)]
