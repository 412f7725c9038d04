//! Our end of a relayed circuit, as a transport value: a [`Conn`] with `via: Relayed` whose
//! byte stream travels in `relay` envelopes over our link with the relay.
//!
//! The stream is one half of a `tokio::io::duplex`; two pump tasks move the other half's
//! bytes. Outbound: read up to [`CHUNK`] bytes, wait for that much credit (the other end's
//! window, [`WINDOW`] to begin with), send them as a data frame. Inbound: write each arriving
//! chunk into the duplex (which makes us wait while the link's reader lags) and give the sender
//! that much credit back. So at most a window's worth is ever in flight, and the relay's
//! per-circuit queue (sized for a window) never overflows unless a peer breaks the rule, which
//! closes the circuit. The link over the circuit is end to end Noise: the relay sees frames.

use super::wire::{FrameKind, RelayFrame, RELAY};
use crate::endpoint::{envelope, Conn, Endpoint, Via};
use bytes::Bytes;
use kith_crypto::identity::AgentId;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::task::TaskTracker;

/// Bytes per data frame.
pub(crate) const CHUNK: usize = 16 * 1024;
/// Bytes a sender may have unacknowledged on one circuit.
pub(crate) const WINDOW: usize = 512 * 1024;
/// Frames queued per circuit and direction (a window's chunks, credits and a close).
pub(crate) const QUEUE: usize = WINDOW / CHUNK + 16;
/// Circuits we are an end of, at once.
const MAX_ENDS: usize = 64;

struct End {
    inbound: mpsc::Sender<Bytes>,
    credit: Arc<Semaphore>,
}

/// What became of a frame for one of our circuits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Passed on.
    Delivered,
    /// For no circuit of ours.
    Unknown,
    /// The other end closed the circuit.
    Closed,
    /// It broke the window (more data or credit than allowed): the circuit is closed.
    Broken,
}

/// The circuits we are an end of, by relay and number.
#[derive(Default)]
pub(crate) struct Ends {
    ends: Mutex<HashMap<(AgentId, u64), End>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Ends {
    /// Opens our end of circuit `circuit` through `relay` (whose link is at `remote`): the
    /// connection, or `None` when we are an end of too many circuits already.
    pub(crate) fn open(
        &self,
        endpoint: &Endpoint,
        tracker: &TaskTracker,
        relay: AgentId,
        circuit: u64,
        remote: SocketAddr,
    ) -> Option<Conn> {
        let (ours, pump) = tokio::io::duplex(WINDOW);
        let (inbound_tx, mut inbound_rx) = mpsc::channel::<Bytes>(QUEUE);
        let credit = Arc::new(Semaphore::new(WINDOW));
        {
            let mut ends = lock(&self.ends);
            if ends.len() >= MAX_ENDS {
                return None;
            }
            ends.insert(
                (relay, circuit),
                End {
                    inbound: inbound_tx,
                    credit: Arc::clone(&credit),
                },
            );
        }
        let (mut from_link, mut to_link) = tokio::io::split(pump);
        let frame = move |kind| {
            envelope(
                RELAY,
                RelayFrame {
                    circuit,
                    from_relay: false,
                    kind,
                }
                .encode(),
            )
        };
        // Outbound: our link's bytes, within the other end's credit.
        let out = endpoint.clone();
        tracker.spawn(async move {
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = match from_link.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let Ok(permit) = credit.acquire_many(n as u32).await else {
                    break; // closed
                };
                permit.forget();
                let data = FrameKind::Data(Bytes::copy_from_slice(&buf[..n]));
                if out.send_linked(relay, frame(data)).await.is_err() {
                    break;
                }
            }
            let _ = out.try_send(relay, frame(FrameKind::Close));
        });
        // Inbound: the other end's bytes into our link; credit back for each chunk.
        let back = endpoint.clone();
        tracker.spawn(async move {
            while let Some(chunk) = inbound_rx.recv().await {
                if to_link.write_all(&chunk).await.is_err() {
                    break;
                }
                let n = chunk.len() as u32;
                if back
                    .send_linked(relay, frame(FrameKind::Credit(n)))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            let _ = to_link.shutdown().await;
        });
        Some(Conn {
            stream: Box::new(ours),
            remote,
            via: Via::Relayed,
        })
    }

    /// A frame from `relay` for one of our circuits.
    pub(crate) fn deliver(&self, relay: AgentId, circuit: u64, kind: FrameKind) -> Delivery {
        let mut ends = lock(&self.ends);
        let key = (relay, circuit);
        let Some(end) = ends.get(&key) else {
            return Delivery::Unknown;
        };
        let outcome = match kind {
            FrameKind::Data(data) => match end.inbound.try_send(data) {
                Ok(()) => Delivery::Delivered,
                Err(_) => Delivery::Broken,
            },
            FrameKind::Credit(n) => {
                let n = n as usize;
                if end.credit.available_permits() + n > WINDOW {
                    Delivery::Broken
                } else {
                    end.credit.add_permits(n);
                    Delivery::Delivered
                }
            }
            FrameKind::Close => Delivery::Closed,
        };
        if outcome != Delivery::Delivered {
            // Closed by the other end, or it broke the window: drop our end (the link over it
            // reads EOF; the outbound pump stops at its next credit wait).
            if let Some(end) = ends.remove(&key) {
                end.credit.close();
            }
        }
        outcome
    }

    /// Drops every circuit through `relay` (its link went down).
    pub(crate) fn relay_down(&self, relay: &AgentId) {
        lock(&self.ends).retain(|(r, _), end| {
            if r == relay {
                end.credit.close();
            }
            r != relay
        });
    }
}
