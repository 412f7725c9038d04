//! The chat task: owns the [`Router`], feeds it inputs and the clock, and carries out its
//! outputs in order (see the router's calling contract).

use super::Chat;
use super::{chat_envelope, parse_node_id, ChatInput, ChatRequestError};
use crate::api::{Attachment, ChannelInfo, ChatReply, ChatRequest};
use crate::clock::mono_now;
use base64::Engine;
use bytes::Bytes;
use kith_chat::router::{ChatEvent, FileAttachment, QueuedMessage, ReceivedMessage};
use kith_chat::{ChatConfig, NeighbourId, NeighbourInfo, NeighbourKind, Output, Router};
use kith_crypto::identity::AgentId;
use kith_crypto::Identity;
use kith_store::meta::{ChatChannelRow, ChatMessageRow, ChatQueueRow};
use rand::RngCore;
use std::collections::HashMap;
use std::time::{Instant, SystemTime};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Link neighbours are numbered from here up; chat-port clients below.
const LINK_IDS: u64 = 1 << 62;

/// Where a neighbour's messages go.
enum Sink {
    Link(AgentId),
    Client(mpsc::Sender<Bytes>),
}

/// Link events, apart from the bounded input queue: they must never be lost or reordered,
/// and there are at most two per link, whose number `max_links` and the admission guard bound.
pub(super) type LinkEvents = mpsc::UnboundedReceiver<ChatInput>;

pub(super) struct Driver {
    pub(super) chat: Chat,
    pub(super) router: Router,
    links: HashMap<AgentId, NeighbourId>,
    sinks: HashMap<NeighbourId, Sink>,
    next_link: u64,
    /// CONNECT rendezvous waiting for the other node's key (bounded, with deadlines).
    pub(super) rendezvous: super::connect::Rendezvous,
    /// Our messages the router reported not stored since the last user request began.
    not_stored: Vec<String>,
    /// Linked nodes chat cut off, and when chat takes them back (the secure link stays: other
    /// protocols ride it). Bounded by the links there are.
    quarantine: HashMap<AgentId, (Instant, Option<std::net::IpAddr>)>,
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
        links: HashMap::new(),
        sinks: HashMap::new(),
        next_link: LINK_IDS,
        rendezvous: super::connect::Rendezvous::default(),
        not_stored: Vec::new(),
        quarantine: HashMap::new(),
    };
    driver.restore().await;
    loop {
        driver.carry_out().await;
        // Only a request waiting on its own message reads these (see `settle`).
        driver.not_stored.clear();
        driver.advance_rendezvous().await;
        driver.publish_counters();
        driver.release_quarantine();
        let deadline = [driver.router.poll_timeout(), driver.quarantine_ends()]
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
                    self.neighbour_up(agent, ip, now);
                }
            }
        }
    }

    fn neighbour_up(&mut self, agent: AgentId, ip: Option<std::net::IpAddr>, now: Instant) {
        if self.links.contains_key(&agent) {
            return;
        }
        let id = NeighbourId(self.next_link);
        self.next_link += 1;
        self.links.insert(agent, id);
        self.sinks.insert(id, Sink::Link(agent));
        let info = NeighbourInfo {
            kind: NeighbourKind::Node { agent },
            observed_ip: ip,
        };
        self.router.neighbour_up(now, id, info);
    }

    /// Feeds back what was kept before a restart: queued messages, and the public channels
    /// this node had joined.
    async fn restore(&mut self) {
        let limit = self.chat.settings().limits.chat_max_queued;
        let stored = self
            .chat
            .inner
            .store
            .run(move |s| {
                let queued = s.meta().chat_queued(limit)?;
                let joined = s.meta().chat_joined()?;
                Ok::<_, kith_store::MetaError>((queued, joined))
            })
            .await;
        let (queued, joined) = match stored {
            Ok(stored) => stored,
            Err(e) => return tracing::error!("cannot read the chat queue: {e}"),
        };
        let now = mono_now();
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
        for channel in joined.into_iter().filter(|c| !c.closed) {
            if let Err(e) = self.router.join(now, &channel.name, false) {
                tracing::warn!("cannot join chat channel {} again: {e}", channel.name);
            }
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
                self.neighbour_up(agent, ip, now);
            }
            ChatInput::LinkDown(agent) => {
                if let Some(id) = self.links.remove(&agent) {
                    self.sinks.remove(&id);
                    self.router.neighbour_down(now, id);
                }
            }
            ChatInput::LinkFrame(agent, json) => {
                if let Some(&id) = self.links.get(&agent) {
                    if let Err(e) = self.router.handle_frame(now, id, &json) {
                        tracing::debug!(peer = %agent, "refused chat message: {e}");
                    }
                }
            }
            ChatInput::ClientUp { id, ip, tx } => {
                let id = NeighbourId(id);
                self.sinks.insert(id, Sink::Client(tx));
                let info = NeighbourInfo {
                    kind: NeighbourKind::Client,
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
    async fn carry_out(&mut self) {
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
                Output::Disconnect { neighbour, reason } => {
                    self.chat.inner.counters.chat_neighbours_cut_off.bump();
                    match self.sinks.remove(&neighbour) {
                        Some(Sink::Link(agent)) => {
                            // Only chat is cut off: the secure link carries other protocols
                            // and stays up. Chat takes the node back after the router's
                            // advice (`retry_after`), if the link is up then.
                            let after = reason.retry_after();
                            tracing::info!(peer = %agent, ?reason, ?after, "chat: cutting off a linked node");
                            self.links.remove(&agent);
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
    }

    fn transmit(&mut self, to: NeighbourId, json: Vec<u8>) {
        let sent = match self.sinks.get(&to) {
            Some(Sink::Link(agent)) => {
                if json.len() > self.chat.settings().link_limits.max_envelope_data as usize {
                    false
                } else {
                    self.chat
                        .inner
                        .endpoint
                        .try_send(*agent, chat_envelope(json))
                        .is_ok()
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

    async fn deliver(&mut self, event: ChatEvent) {
        match event {
            ChatEvent::Message(message) => self.log(row_of(message)).await,
            ChatEvent::Joined { name, channel_id } => {
                let closed = self
                    .router
                    .channels()
                    .iter()
                    .any(|c| c.channel_id == channel_id && c.closed);
                tracing::info!("chat: joined {name}");
                if let Err(e) = self.record_joined(name, closed, true).await {
                    tracing::warn!("chat channel membership could not be recorded: {e}");
                }
            }
            ChatEvent::Removed { name, .. } => {
                tracing::info!("chat: removed from {name}");
                if let Err(e) = self.record_joined(name, true, false).await {
                    tracing::warn!("chat channel membership could not be recorded: {e}");
                }
            }
            ChatEvent::ConnectRequested { peer, address } => {
                self.start_rendezvous(peer, address, super::connect::Step::Answer)
            }
            ChatEvent::ConnectReady { peer, address } => {
                self.start_rendezvous(peer, address, super::connect::Step::Dial)
            }
            ChatEvent::NotStored { msg_id } => self.not_stored.push(msg_id),
            other => tracing::debug!("chat: {other:?}"),
        }
    }

    /// Records (or removes) a membership, so that a restart joins the channel again.
    async fn record_joined(
        &self,
        name: String,
        closed: bool,
        joined: bool,
    ) -> Result<(), crate::store::StoreFailure> {
        let now = self.chat.settings().clock.unix_secs();
        let row = ChatChannelRow { name, closed };
        self.chat
            .inner
            .store
            .run(move |s| s.meta().chat_set_joined(&row, joined, now))
            .await
    }

    /// Carries out what a user request made the router do, and says whether anything of it
    /// could not be stored (then the request did not happen as asked).
    async fn settle(&mut self) -> Result<(), ChatRequestError> {
        self.carry_out().await;
        if self.not_stored.is_empty() {
            return Ok(());
        }
        self.not_stored.clear();
        Err(ChatRequestError::NotStored)
    }

    fn is_member(&self, name: &str) -> bool {
        self.router
            .channels()
            .iter()
            .any(|c| c.name == name && c.joined)
    }

    async fn log(&self, row: ChatMessageRow) {
        let keep = self.chat.settings().node_limits.chat_log_messages;
        match self
            .chat
            .inner
            .store
            .run(move |s| s.meta().chat_append(&row, keep))
            .await
        {
            Ok(seq) => self.chat.logged(seq),
            other => tracing::warn!("a chat message could not be logged: {other:?}"),
        }
    }

    async fn request(&mut self, request: ChatRequest) -> Result<ChatReply, ChatRequestError> {
        let now = mono_now();
        let stamp = || humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        match request {
            ChatRequest::Join { name, closed } => {
                let was_member = self.is_member(&name);
                let channel_id = self.router.join(now, &name, closed)?;
                if was_member {
                    return Ok(ChatReply::Joined { channel_id });
                }
                if let Err(e) = self.record_joined(name.clone(), closed, true).await {
                    // Not recorded, so not joined: a restart would not know of it.
                    let _ = self.router.leave(now, &name);
                    self.carry_out().await;
                    return Err(ChatRequestError::JoinNotRecorded { name, source: e });
                }
                Ok(ChatReply::Joined { channel_id })
            }
            ChatRequest::Leave { name } => {
                if !self.is_member(&name) {
                    return Err(kith_chat::ChatError::NoSuchChannel(name).into());
                }
                if let Err(source) = self.record_joined(name.clone(), false, false).await {
                    return Err(ChatRequestError::LeaveNotRecorded { name, source });
                }
                self.router.leave(now, &name)?;
                Ok(ChatReply::Done)
            }
            ChatRequest::Say {
                name,
                text: body,
                attachments,
            } => {
                let files = decode_attachments(&attachments)?;
                let timestamp = stamp();
                let msg_id = self
                    .router
                    .say(now, &name, &body, files.clone(), &timestamp)?;
                let channel_id = self
                    .router
                    .channels()
                    .into_iter()
                    .find_map(|c| (c.name == name && c.joined).then_some(c.channel_id));
                let own = ReceivedMessage {
                    msg_id: msg_id.clone(),
                    from: self.router.node_id().clone(),
                    signed: true,
                    channel: channel_id.map(|id| (name, id)),
                    timestamp,
                    text: body,
                    attachments: files,
                };
                self.log(row_of(own)).await;
                Ok(ChatReply::Sent { msg_id })
            }
            ChatRequest::Send {
                node_id,
                text: body,
                attachments,
            } => {
                let to = parse_node_id(&node_id)?;
                let files = decode_attachments(&attachments)?;
                let timestamp = stamp();
                self.not_stored.clear();
                let msg_id =
                    self.router
                        .send_direct(now, &[to], &body, files.clone(), &timestamp)?;
                self.settle().await?;
                let own = ReceivedMessage {
                    msg_id: msg_id.clone(),
                    from: self.router.node_id().clone(),
                    signed: true,
                    channel: None,
                    timestamp,
                    text: body,
                    attachments: files,
                };
                self.log(row_of(own)).await;
                Ok(ChatReply::Sent { msg_id })
            }
            ChatRequest::Invite { name, node_id } => {
                let node = parse_node_id(&node_id)?;
                self.not_stored.clear();
                self.router.invite(now, &name, node)?;
                self.settle().await?;
                Ok(ChatReply::Done)
            }
            ChatRequest::Kick { name, node_id } => {
                let node = parse_node_id(&node_id)?;
                self.router.kick(now, &name, node)?;
                Ok(ChatReply::Done)
            }
            ChatRequest::Connect { node_id } => {
                let peer = parse_node_id(&node_id)?;
                let port = self
                    .chat
                    .settings()
                    .listen_port
                    .ok_or(ChatRequestError::NoListener)?;
                if self.router.connect(peer, port) {
                    self.chat.inner.counters.chat_connects_requested.bump();
                    Ok(ChatReply::Done)
                } else {
                    Err(ChatRequestError::NoRoute(node_id))
                }
            }
            ChatRequest::Channels => Ok(ChatReply::Channels(
                self.router
                    .channels()
                    .into_iter()
                    .map(|c| ChannelInfo {
                        name: c.name,
                        channel_id: c.channel_id,
                        closed: c.closed,
                        joined: c.joined,
                        invited: c.invited,
                        members: c.members.iter().map(ToString::to_string).collect(),
                    })
                    .collect(),
            )),
            ChatRequest::Status => Ok(ChatReply::Status {
                node_id: self.router.node_id().to_string(),
                counters: self
                    .router
                    .counters()
                    .pairs()
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), *v))
                    .collect(),
                routes: self.router.route_count(),
                queued: self.router.queued_count(),
            }),
        }
    }

    /// Mirrors the router's counters into the node's (as `chat_*`), for `kith status`.
    fn publish_counters(&self) {
        self.chat.publish(self.router.counters().pairs().to_vec());
    }
}

fn decode_attachments(list: &[Attachment]) -> Result<Vec<FileAttachment>, ChatRequestError> {
    list.iter()
        .map(|a| {
            let data = base64::engine::general_purpose::STANDARD
                .decode(a.data.as_bytes())
                .map_err(ChatRequestError::BadAttachment)?;
            Ok(FileAttachment {
                mime_type: a.mime_type.clone(),
                data,
            })
        })
        .collect()
}

fn row_of(message: ReceivedMessage) -> ChatMessageRow {
    let attachments: Vec<serde_json::Value> = message
        .attachments
        .iter()
        .map(|a| {
            serde_json::json!({
                "mime_type": a.mime_type,
                "size": a.data.len(),
                "data": base64::engine::general_purpose::STANDARD.encode(&a.data),
            })
        })
        .collect();
    let (channel, channel_id) = match message.channel {
        Some((name, id)) => (Some(name), Some(id)),
        None => (None, None),
    };
    // A plain client's message carries no signature: its node vouches only that it came on
    // the author's own connection, and the reader should know.
    let sender = if message.signed {
        message.from.to_string()
    } else {
        format!("{} (unsigned)", message.from)
    };
    ChatMessageRow {
        seq: 0,
        msg_id: message.msg_id,
        channel,
        channel_id,
        sender,
        sent_at: message.timestamp,
        text: message.text,
        attachments: serde_json::Value::Array(attachments).to_string(),
        received_at: crate::clock::unix_secs(SystemTime::now()),
    }
}
