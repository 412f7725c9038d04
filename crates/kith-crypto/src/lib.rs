//! kith-crypto
#![deny(missing_docs)]
