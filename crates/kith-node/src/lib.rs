//! kith-node
#![deny(missing_docs)]
