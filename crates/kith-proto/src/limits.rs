//! The limits that bound what a peer can make us hold or wait for.
//!
//! The node's invariant is that no input from the network can make it allocate without bound or
//! wait forever. Every such bound lives in this one struct so that an operator can see (and
//! tune, in `kith.toml` under `[limits]`) all of them in one place, and so that a reviewer can
//! check that a new decoder or queue took its bound from here rather than inventing one.

use serde::{Deserialize, Serialize};

/// Every size, count and deadline limit the protocol cores and the node enforce.
///
/// Deserialised from the `[limits]` table of `kith.toml`; a missing key keeps its default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest `data` a received Datt envelope may declare, in bytes. Checked against the
    /// header before any buffer is grown. The default leaves room for a full 1,000,000-byte
    /// store item plus a small header of its own.
    pub max_envelope_data: u32,
    /// Largest file `kith content sign|verify|seal|open` will read, in bytes (the Datt layouts
    /// carry a `u32` length, and the whole content is held in memory to sign it).
    pub max_content_file: u64,
    /// How long a CLI command waits for the local control API to answer, in milliseconds.
    pub control_timeout_ms: u64,
    /// Largest request body the control API accepts, in bytes.
    pub max_control_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_envelope_data: 2 * 1024 * 1024,
            max_content_file: 256 * 1024 * 1024,
            control_timeout_ms: 10_000,
            max_control_body: 64 * 1024,
        }
    }
}
