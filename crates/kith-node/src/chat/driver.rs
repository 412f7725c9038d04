//! The chat task: owns the [`Router`], feeds it inputs and the clock, and carries out its
//! outputs in order (see the router's calling contract).

use super::links::Links;
use super::{chat_envelope, Chat, ChatInput};
use crate::clock::mono_now;
use bytes::Bytes;
use kith_chat::router::{ChannelRecord, ChannelStanding, QueuedMessage};
use kith_chat::{ChatConfig, NeighbourId, NeighbourInfo, NeighbourKind, Output, Router};
use kith_crypto::identity::AgentId;
use kith_crypto::Identity;
use kith_store::meta::{ChatChannelStateRow, ChatQueueRow};
use rand::RngCore;
use std::collections::HashMap;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Where a neighbour's messages go.
pub(super) enum Sink {
    Link(AgentId),
    Client(mpsc::Sender<Bytes>),
}

/// Link events, apart from the bounded input queue: they must never be lost or reordered,
/// and there are at most two per link, whose number `max_links` and the admission guard bound
/// (plus one result per background dial the chat task started, which it bounds).
pub(super) type LinkEvents = mpsc::UnboundedReceiver<ChatInput>;

pub(super) struct Driver {
    pub(super) chat: Chat,
    pub(super) router: Router,
    pub(super) sinks: HashMap<NeighbourId, Sink>,
    /// Linked kith nodes as chat neighbours, awake or asleep.
    pub(super) links: Links,
    /// CONNECT rendezvous waiting for the other node's key (bounded, with deadlines).
    pub(super) rendezvous: super::connect::Rendezvous,
    /// Our messages the router reported not stored since the last user request began.
    pub(super) not_stored: Vec<String>,
    /// Where the user's messages stand, as the router said since the request began:
    /// msg_id to (recipients, queued).
    pub(super) posted: HashMap<String, (usize, usize)>,
    /// Linked nodes chat cut off, and when chat takes them back (the secure link stays: other
    /// protocols ride it). Bounded by the links there are.
    pub(super) quarantine: HashMap<AgentId, (Instant, Option<std::net::IpAddr>)>,
    /// The ptpchat routers dialled, each with the token that stops its dialler.
    pub(super) routers: HashMap<String, CancellationToken>,
    /// People muted by the user (relayed, not logged).
    pub(super) muted: std::collections::HashSet<kith_crypto::NodeId>,
    /// When each author was last recorded as seen (so a chatty one costs one write a minute).
    pub(super) seen_written: HashMap<kith_crypto::NodeId, Instant>,
    /// What was held for sleeping links that came up, sent after the router's outputs.
    pub(super) held_for_up: Vec<(
        AgentId,
        std::collections::VecDeque<kith_proto::wire::Envelope>,
    )>,
    pub(super) cancel: CancellationToken,
}

/// Runs the chat task until the node stops. `identity` signs this node's messages.
pub async fn run(
    chat: Chat,
    identity: Identity,
    queues: super::ChatQueues,
    cancel: CancellationToken,
) {
    let super::ChatQueues {
        mut inputs,
        links: mut link_events,
    } = queues;
    let settings = chat.settings();
    let mut config = ChatConfig::from_limits(&settings.limits);
    config.name = settings.name.clone();
    config.auto_join_invites = settings.auto_join_invites;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let router = match Router::new(identity, config, mono_now(), seed) {
        Ok(router) => router,
        Err(e) => {
            tracing::error!("chat is unavailable: {e}");
            return;
        }
    };
    let mut driver = Driver {
        chat: chat.clone(),
        router,
        sinks: HashMap::new(),
        links: Links::new(mono_now()),
        rendezvous: super::connect::Rendezvous::default(),
        not_stored: Vec::new(),
        posted: HashMap::new(),
        quarantine: HashMap::new(),
        routers: HashMap::new(),
        muted: Default::default(),
        seen_written: HashMap::new(),
        held_for_up: Vec::new(),
        cancel: cancel.clone(),
    };
    driver.restore().await;
    loop {
        driver.carry_out().await;
        // Only a request waiting on its own message reads these (see `settle`).
        driver.not_stored.clear();
        driver.posted.clear();
        driver.advance_rendezvous().await;
        driver.publish_counters();
        driver.release_quarantine();
        driver.sweep_links();
        let deadline = [
            driver.router.poll_timeout(),
            driver.quarantine_ends(),
            Some(driver.links.next_sweep()),
        ]
        .into_iter()
        .flatten()
        .min();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            Some(event) = link_events.recv() => driver.handle(event).await,
            input = inputs.recv() => match input {
                Some(input) => driver.handle(input).await,
                None => return,
            },
            _ = sleep => driver.router.handle_timeout(mono_now()),
        }
    }
}

impl Driver {
    /// When the next quarantined node may be taken back.
    fn quarantine_ends(&self) -> Option<Instant> {
        self.quarantine.values().map(|(until, _)| *until).min()
    }

    /// Takes back every quarantined node whose time is up, if its link is still up.
    fn release_quarantine(&mut self) {
        let now = mono_now();
        let due: Vec<AgentId> = self
            .quarantine
            .iter()
            .filter(|(_, (until, _))| *until <= now)
            .map(|(agent, _)| *agent)
            .collect();
        for agent in due {
            if let Some((_, ip)) = self.quarantine.remove(&agent) {
                if self.chat.inner.endpoint.is_linked(&agent) {
                    self.link_up(agent, ip, now);
                }
            }
        }
    }

    /// Feeds back what was kept before a restart, before anything else happens: the
    /// channels (so no new one is made), blocks and mutes, the user's name, queued copies;
    /// and starts the dialled routers.
    async fn restore(&mut self) {
        let limit = self.chat.settings().limits.chat_max_queued;
        let stored = self
            .chat
            .inner
            .store
            .run(move |s| {
                let m = s.meta();
                Ok::<_, kith_store::MetaError>((
                    m.chat_queued(limit)?,
                    m.chat_channels()?,
                    m.chat_joined()?,
                    m.chat_nodes(100_000)?,
                    m.chat_setting("nick")?,
                    m.chat_peers()?,
                ))
            })
            .await;
        let (queued, channels, legacy, nodes, nick, peers) = match stored {
            Ok(stored) => stored,
            Err(e) => return tracing::error!("cannot read the chat state: {e}"),
        };
        let now = mono_now();
        if let (Some(nick), false) = (nick, self.chat.settings().name_given) {
            self.router.set_name(Some(nick));
        }
        for row in channels {
            match record_of(row) {
                Some(record) => {
                    if let Err(e) = self.router.restore_channel(now, record) {
                        tracing::warn!("a chat channel could not be restored: {e}");
                    }
                }
                None => tracing::warn!("a stored chat channel is unreadable; skipped"),
            }
        }
        // Memberships recorded before channels had records (by name only): a public one is
        // joined again, once, and carried over; a closed one's key was never kept.
        for channel in legacy {
            if !channel.closed {
                if let Err(e) = self.router.join(now, &channel.name, false) {
                    tracing::warn!("cannot join chat channel {} again: {e}", channel.name);
                }
            }
            let done = self
                .chat
                .inner
                .store
                .run(move |s| s.meta().chat_set_joined(&channel, false, 0))
                .await;
            if let Err(e) = done {
                tracing::warn!("an old chat membership could not be carried over: {e}");
            }
        }
        for node in nodes {
            let Ok(guid) = node.guid.parse() else {
                continue;
            };
            if node.blocked {
                self.router.block(now, guid, true);
            }
            if node.muted {
                self.muted.insert(guid);
            }
        }
        for row in queued {
            let Ok(target) = row.target.parse() else {
                continue;
            };
            let message = QueuedMessage {
                key: row.key,
                target,
                json: row.json,
            };
            if let Err(e) = self.router.restore(now, message) {
                tracing::warn!("a queued chat message could not be restored: {e}");
            }
        }
        for address in peers {
            self.start_router_dialler(address);
        }
    }

    async fn handle(&mut self, input: ChatInput) {
        let now = mono_now();
        match input {
            ChatInput::LinkUp(agent, ip) => {
                if let Some((_, last_ip)) = self.quarantine.get_mut(&agent) {
                    // Cut off lately: taken back when its time is up, if still linked.
                    *last_ip = ip;
                    return;
                }
                self.link_up(agent, ip, now);
            }
            ChatInput::LinkDown(agent) => self.link_down(agent),
            ChatInput::WakeFailed(agent) => self.wake_failed(agent, now),
            ChatInput::Redialled(results) => self.redialled(results, now),
            ChatInput::LinkFrame(agent, json) => {
                if let Some(id) = self.links.id_of(&agent) {
                    if let Err(e) = self.router.handle_frame(now, id, &json) {
                        tracing::debug!(peer = %agent, "refused chat message: {e}");
                    }
                }
            }
            ChatInput::ClientUp {
                id,
                ip,
                tx,
                dialled,
            } => {
                let id = NeighbourId(id);
                self.sinks.insert(id, Sink::Client(tx));
                let kind = if dialled {
                    NeighbourKind::Router
                } else {
                    NeighbourKind::Client
                };
                let info = NeighbourInfo {
                    kind,
                    observed_ip: Some(ip),
                };
                self.router.neighbour_up(now, id, info);
            }
            ChatInput::ClientDown(id) => {
                if self.sinks.remove(&NeighbourId(id)).is_some() {
                    self.router.neighbour_down(now, NeighbourId(id));
                }
            }
            ChatInput::ClientFrame(id, json) => {
                if let Err(e) = self.router.handle_frame(now, NeighbourId(id), &json) {
                    tracing::debug!(client = id, "refused chat message: {e}");
                }
            }
            ChatInput::ClientKeepAlive(id) => self.router.handle_keepalive(now, NeighbourId(id)),
            ChatInput::Request(request, reply) => {
                let answer = self.request(request).await;
                let _ = reply.send(answer);
            }
        }
    }

    /// Carries out every pending output, in order. A `Persist` is the router's question: the
    /// copy is committed, and the answer given, before the next output is acted on (the
    /// router acknowledges or sends only what it is told is stored).
    pub(super) async fn carry_out(&mut self) {
        while let Some(output) = self.router.poll_output() {
            match output {
                Output::Transmit { to, message } => self.transmit(to, message.encode()),
                Output::Deliver(event) => self.deliver(event).await,
                Output::Persist(message) => {
                    let key = message.key.clone();
                    let row = ChatQueueRow {
                        key: message.key,
                        target: message.target.to_string(),
                        json: message.json,
                    };
                    let now = self.chat.settings().clock.unix_secs();
                    let done = self
                        .chat
                        .inner
                        .store
                        .run(move |s| s.meta().chat_persist(&row, now))
                        .await;
                    let stored = done.is_ok();
                    if !stored {
                        self.chat.inner.counters.chat_persist_failed.bump();
                        tracing::error!("a chat message could not be stored: {done:?}");
                    }
                    self.router.persisted(mono_now(), &key, stored);
                }
                Output::Forget { key } => {
                    let done = self
                        .chat
                        .inner
                        .store
                        .run(move |s| s.meta().chat_forget(&key))
                        .await;
                    if done.is_err() {
                        tracing::warn!("a delivered chat message could not be dropped: {done:?}");
                    }
                }
                Output::SaveChannel(record) => {
                    if let Err(e) = self.save_channel(record).await {
                        tracing::warn!("a chat channel could not be saved: {e}");
                    }
                }
                Output::DropChannel { channel_id } => {
                    let done = self
                        .chat
                        .inner
                        .store
                        .run(move |s| s.meta().chat_drop_channel(&channel_id))
                        .await;
                    if let Err(e) = done {
                        tracing::warn!("a chat channel's record could not be dropped: {e}");
                    }
                }
                Output::Disconnect { neighbour, reason } => {
                    self.chat.inner.counters.chat_neighbours_cut_off.bump();
                    match self.sinks.remove(&neighbour) {
                        Some(Sink::Link(agent)) => {
                            // Only chat is cut off: the secure link carries other protocols
                            // and stays up. Chat takes the node back after the router's
                            // advice (`retry_after`), if the link is up then.
                            let after = reason.retry_after();
                            tracing::info!(peer = %agent, ?reason, ?after, "chat: cutting off a linked node");
                            self.links.forget(&agent);
                            self.quarantine.insert(agent, (mono_now() + after, None));
                        }
                        // Dropping the sender ends the client's connection task.
                        Some(Sink::Client(_)) => {
                            tracing::info!(?reason, "chat: cutting off a chat-port client");
                        }
                        None => {}
                    }
                }
            }
        }
        self.flush_held();
    }

    /// Stores what the router keeps of a channel.
    pub(super) async fn save_channel(
        &self,
        record: ChannelRecord,
    ) -> Result<(), crate::store::StoreFailure> {
        let members: Vec<String> = record.members.iter().map(ToString::to_string).collect();
        let row = ChatChannelStateRow {
            channel_id: record.channel_id,
            name: record.name,
            closed: record.closed,
            standing: record.standing.as_str().to_owned(),
            members: serde_json::to_string(&members).unwrap_or_else(|_| "[]".to_owned()),
            sealed_keys: record.sealed_keys,
        };
        let now = self.chat.settings().clock.unix_secs();
        self.chat
            .inner
            .store
            .run(move |s| s.meta().chat_save_channel(&row, now))
            .await
    }

    fn transmit(&mut self, to: NeighbourId, json: Vec<u8>) {
        let sent = match self.sinks.get(&to) {
            Some(Sink::Link(agent)) => {
                let agent = *agent;
                if json.len() > self.chat.settings().link_limits.max_envelope_data as usize {
                    false
                } else {
                    self.send_link(agent, chat_envelope(json))
                }
            }
            Some(Sink::Client(tx)) => match kith_chat::frame::frame_bytes(&json) {
                Ok(frame) => tx.try_send(frame).is_ok(),
                Err(_) => false,
            },
            None => false,
        };
        if !sent {
            // The router's ACK deadline re-routes what mattered.
            self.chat.inner.counters.chat_transmits_dropped.bump();
        }
    }

    /// Mirrors the router's counters into the node's (as `chat_*`), for `kith status`.
    fn publish_counters(&self) {
        self.chat.publish(self.router.counters().pairs().to_vec());
    }
}

/// A stored channel row as the router's record; `None` when unreadable.
fn record_of(row: ChatChannelStateRow) -> Option<ChannelRecord> {
    let members: Vec<String> = serde_json::from_str(&row.members).ok()?;
    Some(ChannelRecord {
        channel_id: row.channel_id,
        name: row.name,
        closed: row.closed,
        standing: ChannelStanding::parse(&row.standing)?,
        members: members.iter().filter_map(|m| m.parse().ok()).collect(),
        sealed_keys: row.sealed_keys,
    })
}
