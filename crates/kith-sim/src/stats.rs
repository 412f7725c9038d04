//! Counters the network keeps, for assertions.

/// What the simulated network did (all counts since the start).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Connects asked for.
    pub connects: u64,
    /// Connections the far end accepted.
    pub accepted: u64,
    /// Connects that failed (no such node, or partitioned past the connect timeout).
    pub connect_failures: u64,
    /// Connections ended by a partition that lasted too long.
    pub broken_by_partition: u64,
    /// Connections reset by the harness.
    pub resets: u64,
    /// Stream bytes written.
    pub bytes_sent: u64,
    /// Stream bytes delivered.
    pub bytes_delivered: u64,
    /// Stream chunks held back by a partition (delivered on heal, or lost with the connection).
    pub chunks_stalled: u64,
    /// Datagrams sent.
    pub datagrams_sent: u64,
    /// Datagrams dropped by the loss probability (or sent to no node).
    pub datagrams_lost: u64,
    /// Datagrams held back by the reorder probability.
    pub datagrams_delayed: u64,
    /// Datagrams dropped because a partition stood when they arrived.
    pub datagrams_partitioned: u64,
    /// Datagrams delivered.
    pub datagrams_delivered: u64,
}
