//! kith-store
#![deny(missing_docs)]
