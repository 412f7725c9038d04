//! Time: what the router does when the clock reaches its next deadline.

use std::time::Instant;

use super::{jitter, CutOffReason, NeighbourId, Output, Router};

impl Router {
    /// The earliest instant [`Router::handle_timeout`] should be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.next_routing_flush,
            Some(self.next_routing_refresh),
            Some(self.next_idle_check),
            self.channels.next_refresh(),
            self.queue.next_expiry(),
            self.in_flight.next_deadline(),
            self.held.front().map(|h| h.deadline),
            self.receipts.next_deadline(),
            self.table.next_mark_expiry(),
            self.proof_deadlines.front().map(|(at, _)| *at),
            self.cert_request_order.front().map(|(at, _)| *at),
            self.pending_keys.front().map(|p| p.deadline),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Time has reached (at least) [`Router::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_routing_flush.is_some_and(|at| at <= now) {
            self.next_routing_flush = None;
            self.send_routing_update(false);
        }
        if self.next_routing_refresh <= now {
            let jitter = jitter(&mut self.rng, self.config.routing_refresh);
            self.next_routing_refresh = now + self.config.routing_refresh + jitter;
            self.send_routing_update(true);
            self.retry_queue(now);
        }
        if self.next_idle_check <= now {
            self.check_idle(now);
        }
        self.refresh_channels(now);
        for (key, waiting) in self.queue.expire(now) {
            self.counters.queue_dropped += 1;
            if self.receipts.forget(&key) {
                // Ours, and no route came in all that time: given up.
                self.counters.unconfirmed += 1;
                let msg_id = waiting.envelope.msg_id().unwrap_or_default().to_string();
                self.deliver(super::ChatEvent::Unconfirmed {
                    msg_id,
                    target: waiting.target,
                });
            }
            self.outputs.push_back(Output::Forget { key });
        }
        for (hop, copy) in self.in_flight.overdue(now) {
            // A next hop that does not even ACK is no path to that target.
            self.counters.ack_timeouts += 1;
            self.demote(now, copy.target, hop);
            self.reroute(now, copy);
        }
        self.receipt_timeouts(now);
        self.table.expire_marks(now);
        self.expire_claims(now);
        self.expire_waits(now);
        self.after_table_change(now);
    }

    fn check_idle(&mut self, now: Instant) {
        // A kith node's liveness is its link's business (pings, idle close, redials): only
        // chat-port connections are cut off for silence.
        let idle = self.config.neighbour_idle;
        let silent: Vec<NeighbourId> = self
            .neighbours
            .iter()
            .filter(|(_, n)| !matches!(n.info.kind, super::NeighbourKind::Node { .. }))
            .filter(|(_, n)| now.saturating_duration_since(n.last_heard) >= idle)
            .map(|(id, _)| *id)
            .collect();
        for id in silent {
            self.cut_off(now, id, CutOffReason::Idle);
        }
        let oldest = self
            .neighbours
            .values()
            .filter(|n| !matches!(n.info.kind, super::NeighbourKind::Node { .. }))
            .map(|n| n.last_heard)
            .min();
        self.next_idle_check = oldest.map_or(now, |t| t.max(now)) + idle;
    }
}
