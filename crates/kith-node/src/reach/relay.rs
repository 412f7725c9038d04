//! Relaying: circuits between two linked peers that could not punch through, on a node that
//! allows it (`relay = true`, off by default; on for a public helper).
//!
//! As libp2p's circuit relay v2 does, every circuit is limited: in all
//! (`relay_max_circuits`), per pair of peers (`relay_max_circuits_per_pair`), in bytes
//! (`relay_max_bytes`, both ways together) and in time (`relay_max_secs`); a request over a
//! limit is refused and a circuit that reaches one is closed, each with its counter, and no
//! link is touched. The relay passes frames on (the link between the two ends is Noise end to
//! end) through one bounded queue and one task per direction, so a slow end makes only its own
//! circuit wait; an end that sends beyond its window (the queue is sized for it) loses the
//! circuit.

use super::circuit::{Delivery, QUEUE};
use super::wire::{FrameKind, Msg, RelayFrame, RELAY};
use super::{lock, Reach, Reply};
use crate::endpoint::{envelope, Via};
use crate::limits::NodeLimits;
use bytes::Bytes;
use kith_crypto::identity::AgentId;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One relayed circuit.
struct Circuit {
    a: AgentId,
    b: AgentId,
    bytes: u64,
    to_a: mpsc::Sender<Bytes>,
    to_b: mpsc::Sender<Bytes>,
    stop: CancellationToken,
}

/// The circuits this node relays.
#[derive(Default)]
pub(crate) struct Relays {
    circuits: std::sync::Mutex<HashMap<u64, Circuit>>,
}

/// Why a circuit was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Over {
    Total,
    Pair,
}

fn over(
    limits: &NodeLimits,
    circuits: &HashMap<u64, Circuit>,
    a: AgentId,
    b: AgentId,
) -> Option<Over> {
    if circuits.len() >= limits.relay_max_circuits {
        return Some(Over::Total);
    }
    let pair = circuits
        .values()
        .filter(|c| (c.a == a && c.b == b) || (c.a == b && c.b == a))
        .count();
    (pair >= limits.relay_max_circuits_per_pair).then_some(Over::Pair)
}

impl Reach {
    fn limits(&self) -> &NodeLimits {
        &self.inner.node_limits
    }

    /// R: `requester` asks for a circuit to `to`.
    pub(super) fn broker_circuit(
        &self,
        requester: AgentId,
        id: u64,
        to: &str,
        proof: Option<String>,
    ) {
        let c = &self.inner.counters;
        let fail = |why: &str| {
            self.send(
                requester,
                &Msg::Fail {
                    id,
                    why: why.to_owned(),
                },
            )
        };
        if !self.inner.settings.relay {
            c.relay_refused_off.bump();
            return fail("no-relay");
        }
        let Ok(target) = to.parse::<AgentId>() else {
            c.punch_malformed.bump();
            return;
        };
        let endpoint = &self.inner.endpoint;
        let direct = |agent: &AgentId| {
            endpoint
                .link_view(agent)
                .is_some_and(|v| v.via != Via::Relayed)
        };
        if !direct(&requester)
            || !direct(&target)
            || target == requester
            || target == endpoint.agent()
        {
            c.punch_refused_not_linked.bump();
            return fail("not-linked");
        }
        if over(
            self.limits(),
            &lock(&self.inner.relays.circuits),
            requester,
            target,
        )
        .is_some()
        {
            c.relay_refused_limit.bump();
            return fail("relay-limit");
        }
        let now = crate::clock::mono_now();
        match lock(&self.inner.broker).request(requester, id, target, true, now) {
            Ok(circuit) => self.send(
                target,
                &Msg::Incoming {
                    id: circuit,
                    from: requester.to_string(),
                    circuit,
                    proof,
                },
            ),
            Err(super::broker::Refusal::RateLimited) => {
                c.punch_refused_rate.bump();
                fail("rate");
            }
            Err(super::broker::Refusal::Busy) => {
                c.punch_refused_busy.bump();
                fail("busy");
            }
        }
    }

    /// R: the target accepted circuit `circuit` for `requester`; opens it and tells the
    /// requester (or that it could not).
    pub(super) fn open_circuit(
        &self,
        requester: AgentId,
        requester_id: u64,
        target: AgentId,
        circuit: u64,
    ) {
        let c = &self.inner.counters;
        let (to_a, rx_a) = mpsc::channel(QUEUE);
        let (to_b, rx_b) = mpsc::channel(QUEUE);
        let stop = self.inner.cancel.child_token();
        {
            let mut circuits = lock(&self.inner.relays.circuits);
            if over(self.limits(), &circuits, requester, target).is_some() {
                drop(circuits);
                c.relay_refused_limit.bump();
                return self.send(
                    requester,
                    &Msg::Fail {
                        id: requester_id,
                        why: "relay-limit".into(),
                    },
                );
            }
            circuits.insert(
                circuit,
                Circuit {
                    a: requester,
                    b: target,
                    bytes: 0,
                    to_a,
                    to_b,
                    stop: stop.clone(),
                },
            );
        }
        c.relay_circuits_opened.bump();
        for (peer, mut rx) in [(requester, rx_a), (target, rx_b)] {
            let endpoint = self.inner.endpoint.clone();
            self.inner.tracker.spawn(async move {
                while let Some(body) = rx.recv().await {
                    if endpoint
                        .send_linked(peer, envelope(RELAY, body))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
        let this = self.clone();
        let max = Duration::from_secs(self.limits().relay_max_secs);
        self.inner.tracker.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(max) => {
                    this.inner.counters.relay_closed_limit.bump();
                    this.close_circuit(circuit);
                }
                _ = stop.cancelled() => {}
            }
        });
        self.send(
            requester,
            &Msg::Opened {
                id: requester_id,
                circuit,
            },
        );
    }

    /// R: closes `circuit`, telling both ends.
    fn close_circuit(&self, circuit: u64) {
        let Some(gone) = lock(&self.inner.relays.circuits).remove(&circuit) else {
            return;
        };
        gone.stop.cancel();
        let close = RelayFrame {
            circuit,
            from_relay: true,
            kind: FrameKind::Close,
        }
        .encode();
        for peer in [gone.a, gone.b] {
            let _ = self
                .inner
                .endpoint
                .try_send(peer, envelope(RELAY, close.clone()));
        }
    }

    /// R: a frame from one end of `circuit`, for the other.
    fn relay_frame(&self, from: AgentId, circuit: u64, kind: FrameKind) {
        let c = &self.inner.counters;
        let mut circuits = lock(&self.inner.relays.circuits);
        let Some(entry) = circuits.get_mut(&circuit) else {
            c.relay_frames_unexpected.bump();
            return;
        };
        let to = if from == entry.a {
            &entry.to_b
        } else if from == entry.b {
            &entry.to_a
        } else {
            c.relay_frames_unexpected.bump();
            return;
        };
        if let FrameKind::Data(data) = &kind {
            entry.bytes += data.len() as u64;
            if entry.bytes > self.limits().relay_max_bytes {
                drop(circuits);
                c.relay_closed_limit.bump();
                return self.close_circuit(circuit);
            }
            c.relay_bytes.add(data.len() as u64);
        }
        let closing = kind == FrameKind::Close;
        let body = RelayFrame {
            circuit,
            from_relay: true,
            kind,
        }
        .encode();
        let sent = to.try_send(body).is_ok();
        drop(circuits);
        if closing {
            if let Some(gone) = lock(&self.inner.relays.circuits).remove(&circuit) {
                gone.stop.cancel();
            }
        } else if !sent {
            // More than a window in flight: the end broke the rule.
            c.relay_closed_window.bump();
            self.close_circuit(circuit);
        }
    }

    /// A `relay` envelope from `peer`: for a circuit we relay, or one we are an end of.
    pub(super) fn on_relay(&self, peer: AgentId, body: &Bytes) {
        let Some(frame) = RelayFrame::decode(body) else {
            self.inner.counters.punch_malformed.bump();
            return;
        };
        if !frame.from_relay {
            return self.relay_frame(peer, frame.circuit, frame.kind);
        }
        match self.inner.ends.deliver(peer, frame.circuit, frame.kind) {
            Delivery::Delivered | Delivery::Closed => {}
            Delivery::Unknown => self.inner.counters.relay_frames_unexpected.bump(),
            Delivery::Broken => self.inner.counters.relay_closed_window.bump(),
        }
    }

    /// A peer's link went down: the circuits through or with it end.
    pub(super) fn relay_peer_down(&self, peer: &AgentId) {
        let with: Vec<u64> = lock(&self.inner.relays.circuits)
            .iter()
            .filter(|(_, c)| c.a == *peer || c.b == *peer)
            .map(|(id, _)| *id)
            .collect();
        for circuit in with {
            self.close_circuit(circuit);
        }
        self.inner.ends.relay_down(peer);
    }

    /// B: relay `via` offers us a circuit from `from`.
    pub(super) fn incoming(
        &self,
        via: AgentId,
        id: u64,
        from: &str,
        circuit: u64,
        proof: Option<String>,
    ) {
        let c = &self.inner.counters;
        let Ok(from) = from.parse::<AgentId>() else {
            c.punch_malformed.bump();
            return;
        };
        let remote = self
            .inner
            .endpoint
            .link_view(&via)
            .and_then(|v| v.remote.parse::<SocketAddr>().ok());
        let (Some(remote), false) = (remote, from == self.inner.endpoint.agent()) else {
            return self.send(via, &Msg::Refuse { id });
        };
        let Ok(permit) = std::sync::Arc::clone(&self.inner.offers).try_acquire_owned() else {
            c.punch_offers_dropped.bump();
            return self.send(via, &Msg::Refuse { id });
        };
        let this = self.clone();
        self.inner.tracker.spawn(async move {
            let _permit = permit;
            if !this.has_business(from, proof).await {
                this.inner.counters.punch_offers_refused.bump();
                tracing::info!(peer = %from, relay = %via, "refused a relayed link: no business with us");
                return this.send(via, &Msg::Refuse { id });
            }
            let endpoint = this.inner.endpoint.clone();
            let Some(conn) = this.inner.ends.open(&endpoint, &this.inner.tracker, via, circuit, remote) else {
                this.inner.counters.punch_offers_dropped.bump();
                return this.send(via, &Msg::Refuse { id });
            };
            this.inner.counters.punch_offers_accepted.bump();
            this.send(via, &Msg::Accept { id });
            tracing::info!(peer = %from, relay = %via, "relayed link from a peer");
            endpoint.adopt_inbound(conn);
        });
    }

    /// A: asks `relay` for a circuit to `peer`.
    pub(super) async fn relay_through(
        &self,
        relay: AgentId,
        peer: AgentId,
        proof: Option<String>,
    ) -> std::io::Result<crate::endpoint::Conn> {
        let (tx, mut rx) = mpsc::channel(1);
        let id = self.ask(relay, tx)?;
        self.send(
            relay,
            &Msg::Circuit {
                id,
                to: peer.to_string(),
                proof,
            },
        );
        let answer = tokio::time::timeout(self.inner.settings.ask_timeout, rx.recv()).await;
        lock(&self.inner.asking).remove(&id);
        let circuit = match answer {
            Ok(Some(Reply::Opened(circuit))) => circuit,
            Ok(Some(Reply::Fail(why))) => {
                return Err(std::io::Error::other(format!("the relay said {why}")))
            }
            _ => return Err(std::io::Error::other("the relay did not answer")),
        };
        let remote = self
            .inner
            .endpoint
            .link_view(&relay)
            .and_then(|v| v.remote.parse::<SocketAddr>().ok())
            .ok_or_else(|| std::io::Error::other("the relay's link went down"))?;
        self.inner
            .ends
            .open(
                &self.inner.endpoint,
                &self.inner.tracker,
                relay,
                circuit,
                remote,
            )
            .ok_or_else(|| std::io::Error::other("too many relayed circuits"))
    }
}
