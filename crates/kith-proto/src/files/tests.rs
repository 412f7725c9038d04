//! Tests of the session machine and its codecs, driven in memory.

mod driver;
mod machine;
mod ports;
mod props;
mod seed;
