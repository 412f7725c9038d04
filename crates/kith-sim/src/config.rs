//! Network parameters: per-link latency, jitter, bandwidth and datagram faults, and the
//! network-wide timeouts.

use std::time::Duration;

/// How one link (an unordered pair of nodes) behaves. The same in both directions.
///
/// Streams model TCP: their bytes always arrive whole and in order, so `loss` and `reorder`
/// do **not** apply to them; a stream only fails as a whole (reset, or a partition that lasts
/// too long). Loss and reordering apply to the datagram channel only.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    /// One-way delay of every chunk and datagram.
    pub latency: Duration,
    /// Extra one-way delay, uniform in `[0, jitter]`, drawn per chunk or datagram. On a stream
    /// it never reorders: a chunk never arrives before the one sent before it.
    pub jitter: Duration,
    /// Bytes per second each direction of a stream can carry, or `None` for unlimited. A
    /// chunk occupies the direction for `len / bandwidth` before its latency starts.
    /// Datagrams ignore it.
    pub bandwidth: Option<u64>,
    /// Largest chunk a stream write is cut into (like a TCP segment); at least 1.
    pub mss: usize,
    /// Probability that a datagram is dropped.
    pub loss: f64,
    /// Probability that a datagram is held back by [`reorder_delay`](Self::reorder_delay)
    /// more, so that datagrams sent after it overtake it.
    pub reorder: f64,
    /// The extra delay of a reordered datagram.
    pub reorder_delay: Duration,
}

impl Default for LinkConfig {
    /// 20 ms one way, no jitter, unlimited bandwidth, 1,400-byte chunks, no datagram faults.
    fn default() -> Self {
        LinkConfig {
            latency: Duration::from_millis(20),
            jitter: Duration::ZERO,
            bandwidth: None,
            mss: 1400,
            loss: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(50),
        }
    }
}

impl LinkConfig {
    /// The default link with this one-way latency.
    pub fn with_latency(latency: Duration) -> Self {
        LinkConfig {
            latency,
            ..LinkConfig::default()
        }
    }
}

/// Network-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConfig {
    /// The link between any two nodes unless [`crate::Sim::set_link`] says otherwise.
    pub default_link: LinkConfig,
    /// How long a partition may stall a connection before both ends see it
    /// [`crate::CloseReason::TimedOut`] (TCP's retransmission timeout giving up). Counted from
    /// the partition, whether or not bytes are waiting.
    pub partition_break_after: Duration,
    /// How long a connect to a partitioned node takes to fail, counted from the connect.
    pub connect_timeout: Duration,
}

impl Default for NetConfig {
    /// The default link, connections break after 20 s of partition, connects fail after 5 s.
    fn default() -> Self {
        NetConfig {
            default_link: LinkConfig::default(),
            partition_break_after: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(5),
        }
    }
}
