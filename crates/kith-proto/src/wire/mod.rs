//! Byte-level codecs. Every decoder here is incremental (running out of input is the normal
//! `Ok(None)` case, not an error), checks each declared length against a [`crate::Limits`]
//! value before it allocates, and never panics on any input.

pub mod envelope;

pub use envelope::{Command, Envelope, EnvelopeDecoder, EnvelopeError};
