//! Linked kith nodes as chat neighbours, virtually open like the links themselves.
//!
//! A node's link closes when it has been quiet (the responder's idle timeout) or is lost; its
//! chat neighbour does not leave but sleeps ([`kith_chat::Router::neighbour_asleep`]): its
//! routes stand, and the router spares it periodic traffic. What the router does send to a
//! sleeping neighbour is held here (bounded) while a background task opens the link again
//! (`Endpoint::ensure_link`, never awaited by the chat task); when the link is up the router
//! is told ([`kith_chat::Router::neighbour_relinked`]: a fresh HELLO and the whole table), and
//! what was held follows. A node that cannot be reached is given up
//! ([`kith_chat::Router::neighbour_down`]), and the router routes around it.
//!
//! While the router keeps copies it has no route for ([`kith_chat::Router::wants_links`]),
//! the sweep wakes every sleeping neighbour and dials the known peers that are not linked
//! (a few at a time, in the background), backing off while nothing changes, so a message
//! for a node that is away for a week does not keep every link open all week.

use super::driver::{Driver, Sink};
use super::ChatInput;
use crate::clock::mono_now;
use kith_chat::{NeighbourId, NeighbourInfo, NeighbourKind};
use kith_crypto::identity::AgentId;
use kith_proto::wire::Envelope;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Link neighbours are numbered from here up; chat-port clients below.
const LINK_IDS: u64 = 1 << 62;
/// Messages held for one sleeping link at most (the router's retries cover what is dropped).
const MAX_HELD: usize = 1_024;
/// The sweep's first and longest interval while copies wait for a route.
const SWEEP_MIN: Duration = Duration::from_secs(10);
const SWEEP_MAX: Duration = Duration::from_secs(600);
/// Known peers dialled by one sweep at most.
const REDIALS_PER_SWEEP: usize = 16;

/// What is held for a sleeping link.
#[derive(Debug, Default)]
struct Sleeping {
    held: VecDeque<Envelope>,
    waking: bool,
}

/// The link neighbours.
#[derive(Debug)]
pub(super) struct Links {
    by_agent: HashMap<AgentId, NeighbourId>,
    asleep: HashMap<AgentId, Sleeping>,
    next_id: u64,
    next_sweep: Instant,
    sweep_every: Duration,
    /// The router's queue at the last sweep (a sweep that changed nothing backs off).
    last_queued: usize,
    redialling: bool,
}

impl Links {
    pub(super) fn new(now: Instant) -> Links {
        Links {
            by_agent: HashMap::new(),
            asleep: HashMap::new(),
            next_id: LINK_IDS,
            next_sweep: now + SWEEP_MIN,
            sweep_every: SWEEP_MIN,
            last_queued: 0,
            redialling: false,
        }
    }

    pub(super) fn id_of(&self, agent: &AgentId) -> Option<NeighbourId> {
        self.by_agent.get(agent).copied()
    }

    /// Forgets a node (chat cut it off).
    pub(super) fn forget(&mut self, agent: &AgentId) {
        self.by_agent.remove(agent);
        self.asleep.remove(agent);
    }

    pub(super) fn next_sweep(&self) -> Instant {
        self.next_sweep
    }

    /// Whether `agent` is a neighbour whose link is closed.
    pub(super) fn is_asleep(&self, agent: &AgentId) -> bool {
        self.asleep.contains_key(agent)
    }
}

impl Driver {
    /// A link with `agent` is up: a new neighbour, or a sleeping one woken (what was held
    /// for it follows the router's HELLO and table).
    pub(super) fn link_up(&mut self, agent: AgentId, ip: Option<std::net::IpAddr>, now: Instant) {
        if let Some(id) = self.links.id_of(&agent) {
            if let Some(sleeping) = self.links.asleep.remove(&agent) {
                self.chat.inner.counters.chat_links_woken.bump();
                self.router.neighbour_relinked(now, id);
                // The HELLO and the table go first (the next carry_out), then what waited.
                self.held_for_up.push((agent, sleeping.held));
            }
            return;
        }
        let id = NeighbourId(self.links.next_id);
        self.links.next_id += 1;
        self.links.by_agent.insert(agent, id);
        self.sinks.insert(id, Sink::Link(agent));
        let info = NeighbourInfo {
            kind: NeighbourKind::Node { agent },
            observed_ip: ip,
        };
        self.router.neighbour_up(now, id, info);
    }

    /// The link with `agent` closed (idle or lost): its neighbour sleeps.
    pub(super) fn link_down(&mut self, agent: AgentId) {
        if let Some(id) = self.links.id_of(&agent) {
            self.links.asleep.entry(agent).or_default();
            self.router.neighbour_asleep(id);
        }
    }

    /// Sends to a linked node: at once when its link is up, else held and the link opened.
    pub(super) fn send_link(&mut self, agent: AgentId, envelope: Envelope) -> bool {
        if !self.links.is_asleep(&agent) {
            match self.chat.inner.endpoint.try_send(agent, envelope.clone()) {
                Ok(()) => return true,
                Err(crate::endpoint::TrySendError::Full) => return false,
                // Closed under us: its LinkDown is on the way; hold it meanwhile.
                Err(crate::endpoint::TrySendError::NotLinked) => {
                    self.link_down(agent);
                }
            }
        }
        let Some(sleeping) = self.links.asleep.get_mut(&agent) else {
            return false;
        };
        if sleeping.held.len() >= MAX_HELD {
            sleeping.held.pop_front();
            self.chat.inner.counters.chat_held_dropped.bump();
        }
        sleeping.held.push_back(envelope);
        self.chat.inner.counters.chat_frames_held.bump();
        self.wake(agent);
        true
    }

    /// Opens the link of sleeping neighbour `agent` in the background (once at a time).
    fn wake(&mut self, agent: AgentId) {
        let Some(sleeping) = self.links.asleep.get_mut(&agent) else {
            return;
        };
        if sleeping.waking {
            return;
        }
        sleeping.waking = true;
        let chat = self.chat.clone();
        tokio::spawn(async move {
            if let Err(e) = chat.inner.endpoint.ensure_link(agent).await {
                tracing::info!(peer = %agent, "chat could not open the link again: {e}");
                chat.report(ChatInput::WakeFailed(agent));
            }
        });
    }

    /// A sleeping neighbour could not be reached: the router gives it up and reroutes.
    pub(super) fn wake_failed(&mut self, agent: AgentId, now: Instant) {
        if self.chat.inner.endpoint.is_linked(&agent) {
            // It came up meanwhile (its own dial, say): its LinkUp is on the way.
            if let Some(s) = self.links.asleep.get_mut(&agent) {
                s.waking = false;
            }
            return;
        }
        if self.links.asleep.remove(&agent).is_none() {
            return;
        }
        self.chat.inner.counters.chat_wakes_failed.bump();
        if let Some(id) = self.links.by_agent.remove(&agent) {
            self.sinks.remove(&id);
            self.router.neighbour_down(now, id);
        }
    }

    /// Sends what was held for links that came up, after the router's own messages to them.
    pub(super) fn flush_held(&mut self) {
        for (agent, held) in std::mem::take(&mut self.held_for_up) {
            for envelope in held {
                if self.chat.inner.endpoint.try_send(agent, envelope).is_err() {
                    self.chat.inner.counters.chat_transmits_dropped.bump();
                }
            }
        }
    }

    /// While the router keeps copies it has no route for, wakes the sleeping neighbours and
    /// dials the known peers that are not linked, backing off while nothing changes.
    pub(super) fn sweep_links(&mut self) {
        let now = mono_now();
        if now < self.links.next_sweep {
            return;
        }
        let queued = self.router.queued_count();
        if !self.router.wants_links() {
            self.links.sweep_every = SWEEP_MIN;
            self.links.next_sweep = now + SWEEP_MIN;
            self.links.last_queued = 0;
            return;
        }
        // Something new waits: look again soon; nothing moved: wait longer.
        self.links.sweep_every = if queued > self.links.last_queued {
            SWEEP_MIN
        } else {
            (self.links.sweep_every * 2).min(SWEEP_MAX)
        };
        self.links.last_queued = queued;
        self.links.next_sweep = now + self.links.sweep_every;
        let sleeping: Vec<AgentId> = self.links.asleep.keys().copied().collect();
        for agent in sleeping {
            self.wake(agent);
        }
        if self.links.redialling {
            return;
        }
        self.links.redialling = true;
        let known: Vec<AgentId> = self.links.by_agent.keys().copied().collect();
        let chat = self.chat.clone();
        tokio::spawn(async move {
            let peers = chat
                .inner
                .store
                .run(|s| s.meta().list_peers())
                .await
                .unwrap_or_default();
            let mut results = Vec::new();
            for peer in peers {
                if results.len() >= REDIALS_PER_SWEEP {
                    break;
                }
                let Ok(agent) = peer.agent.parse::<AgentId>() else {
                    continue;
                };
                if peer.blocked
                    || peer.host.is_none()
                    || known.contains(&agent)
                    || chat.inner.endpoint.is_linked(&agent)
                {
                    continue;
                }
                chat.inner.counters.chat_peers_redialled.bump();
                let ok = chat.inner.endpoint.ensure_link(agent).await.is_ok();
                results.push((agent, ok));
            }
            chat.report(ChatInput::Redialled(results));
        });
    }

    /// The known peers dialled for the queue (their links, when up, came as LinkUp).
    pub(super) fn redialled(&mut self, results: Vec<(AgentId, bool)>, _now: Instant) {
        self.links.redialling = false;
        let failed = results.iter().filter(|(_, ok)| !ok).count();
        if failed > 0 {
            tracing::debug!("chat: {failed} known peer(s) not reachable for queued messages");
        }
    }
}
