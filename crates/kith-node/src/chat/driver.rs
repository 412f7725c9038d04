//! The chat task: owns the [`Router`], feeds it inputs and the clock, and carries out its
//! outputs in order (see the router's calling contract).

use super::{
    chat_envelope, parse_node_id, Attachment, ChannelInfo, ChatInput, ChatReply, ChatRequest,
};
use crate::links::Outgoing;
use crate::node::NodeState;
use base64::Engine;
use bytes::Bytes;
use kith_chat::router::{ChatEvent, FileAttachment, QueuedMessage, ReceivedMessage};
use kith_chat::{ChatConfig, NeighbourId, NeighbourInfo, NeighbourKind, Output, Router};
use kith_crypto::identity::AgentId;
use kith_crypto::Identity;
use kith_store::meta::{ChatChannelRow, ChatMessageRow, ChatQueueRow};
use rand::RngCore;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::sync::mpsc;

/// Link neighbours are numbered from here up; chat-port clients below.
const LINK_IDS: u64 = 1 << 62;

/// Where a neighbour's messages go.
enum Sink {
    Link(AgentId),
    Client(mpsc::Sender<Bytes>),
}

/// Link events, apart from the bounded input queue: they must never be lost or reordered,
/// and there are at most two per link, whose number `max_links` and the admission guard bound.
pub type LinkEvents = mpsc::UnboundedReceiver<ChatInput>;

pub(super) struct Driver {
    pub(super) state: Arc<NodeState>,
    pub(super) router: Router,
    links: HashMap<AgentId, NeighbourId>,
    sinks: HashMap<NeighbourId, Sink>,
    next_link: u64,
    /// CONNECT rendezvous waiting for the other node's key (bounded, with deadlines).
    pub(super) rendezvous: super::connect::Rendezvous,
    /// Our messages the router reported not stored since the last user request began.
    not_stored: Vec<String>,
}

/// Runs the chat task until the node stops. `identity` signs this node's messages.
pub async fn run(state: Arc<NodeState>, identity: Identity, queues: super::ChatQueues) {
    let super::ChatQueues {
        mut inputs,
        links: mut link_events,
    } = queues;
    let mut config = ChatConfig::from_limits(&state.config.limits);
    config.name = state.config.chat_name.clone();
    config.auto_join_invites = state.config.chat_auto_join_invites;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let router = match Router::new(identity, config, Instant::now(), seed) {
        Ok(router) => router,
        Err(e) => {
            tracing::error!("chat is unavailable: {e}");
            return;
        }
    };
    let mut driver = Driver {
        state: Arc::clone(&state),
        router,
        links: HashMap::new(),
        sinks: HashMap::new(),
        next_link: LINK_IDS,
        rendezvous: super::connect::Rendezvous::default(),
        not_stored: Vec::new(),
    };
    driver.restore().await;
    let mut stopping = state.stopping();
    loop {
        driver.carry_out().await;
        // Only a request waiting on its own message reads these (see `settle`).
        driver.not_stored.clear();
        driver.advance_rendezvous().await;
        driver.publish_counters();
        let deadline = driver.router.poll_timeout();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = stopping.changed() => return,
            Some(event) = link_events.recv() => driver.handle(event).await,
            input = inputs.recv() => match input {
                Some(input) => driver.handle(input).await,
                None => return,
            },
            _ = sleep => driver.router.handle_timeout(Instant::now()),
        }
    }
}

impl Driver {
    /// Feeds back what was kept before a restart: queued messages, and the public channels
    /// this node had joined.
    async fn restore(&mut self) {
        let limit = self.state.config.limits.chat_max_queued;
        let stored = self
            .state
            .with_store(move |s| {
                let queued = s.meta().chat_queued(limit)?;
                let joined = s.meta().chat_joined()?;
                Ok::<_, kith_store::MetaError>((queued, joined))
            })
            .await;
        let (queued, joined) = match stored {
            Ok(Ok(stored)) => stored,
            Ok(Err(e)) => return tracing::error!("cannot read the chat queue: {e}"),
            Err(e) => return tracing::error!("cannot read the chat queue: {e}"),
        };
        let now = Instant::now();
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
        let now = Instant::now();
        match input {
            ChatInput::LinkUp(agent, ip) => {
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
                    let now = crate::ticket::unix_secs(SystemTime::now());
                    let done = self
                        .state
                        .with_store(move |s| s.meta().chat_persist(&row, now))
                        .await;
                    let stored = matches!(done, Ok(Ok(())));
                    if !stored {
                        self.state.counters.bump("chat_persist_failed");
                        tracing::error!("a chat message could not be stored: {done:?}");
                    }
                    self.router.persisted(Instant::now(), &key, stored);
                }
                Output::Forget { key } => {
                    let done = self
                        .state
                        .with_store(move |s| s.meta().chat_forget(&key))
                        .await;
                    if !matches!(done, Ok(Ok(()))) {
                        tracing::warn!("a delivered chat message could not be dropped: {done:?}");
                    }
                }
                Output::Disconnect { neighbour, reason } => {
                    self.state.counters.bump("chat_neighbours_cut_off");
                    match self.sinks.remove(&neighbour) {
                        Some(Sink::Link(agent)) => {
                            // The router's advice on redialling is reason.retry_after(); the
                            // link layer decides (it owns dialling).
                            tracing::info!(peer = %agent, ?reason, retry_after = ?reason.retry_after(),
                                "chat: cutting off a linked node");
                            self.links.remove(&agent);
                            self.state.links.close(&agent);
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
                if json.len() > self.state.config.limits.max_envelope_data as usize {
                    false
                } else {
                    self.state.links.sender(agent).is_some_and(|tx| {
                        tx.try_send(Outgoing::Envelope(chat_envelope(json))).is_ok()
                    })
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
            self.state.counters.bump("chat_transmits_dropped");
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
    async fn record_joined(&self, name: String, closed: bool, joined: bool) -> Result<(), String> {
        let now = crate::ticket::unix_secs(SystemTime::now());
        let row = ChatChannelRow { name, closed };
        match self
            .state
            .with_store(move |s| s.meta().chat_set_joined(&row, joined, now))
            .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e),
        }
    }

    /// Carries out what a user request made the router do, and says whether anything of it
    /// could not be stored (then the request did not happen as asked).
    async fn settle(&mut self) -> Result<(), String> {
        self.carry_out().await;
        if self.not_stored.is_empty() {
            return Ok(());
        }
        self.not_stored.clear();
        Err("the message could not be stored (is the disk full?), so it was not sent".into())
    }

    fn is_member(&self, name: &str) -> bool {
        self.router
            .channels()
            .iter()
            .any(|c| c.name == name && c.joined)
    }

    async fn log(&self, row: ChatMessageRow) {
        let keep = self.state.config.limits.chat_log_messages;
        match self
            .state
            .with_store(move |s| s.meta().chat_append(&row, keep))
            .await
        {
            Ok(Ok(seq)) => self.state.chat.logged(seq),
            other => tracing::warn!("a chat message could not be logged: {other:?}"),
        }
    }

    async fn request(&mut self, request: ChatRequest) -> Result<ChatReply, String> {
        let now = Instant::now();
        let stamp = || humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        match request {
            ChatRequest::Join { name, closed } => {
                let was_member = self.is_member(&name);
                let channel_id = self.router.join(now, &name, closed).map_err(text)?;
                if was_member {
                    return Ok(ChatReply::Joined { channel_id });
                }
                if let Err(e) = self.record_joined(name.clone(), closed, true).await {
                    // Not recorded, so not joined: a restart would not know of it.
                    let _ = self.router.leave(now, &name);
                    self.carry_out().await;
                    return Err(format!(
                        "could not record the membership of {name} (is the disk full?): {e}; \
                         not joined"
                    ));
                }
                Ok(ChatReply::Joined { channel_id })
            }
            ChatRequest::Leave { name } => {
                if !self.is_member(&name) {
                    return Err(text(kith_chat::ChatError::NoSuchChannel(name)));
                }
                self.record_joined(name.clone(), false, false)
                    .await
                    .map_err(|e| {
                        format!("could not record leaving {name} (is the disk full?): {e}; still a member")
                    })?;
                self.router.leave(now, &name).map_err(text)?;
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
                    .say(now, &name, &body, files.clone(), &timestamp)
                    .map_err(text)?;
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
                let msg_id = self
                    .router
                    .send_direct(now, &[to], &body, files.clone(), &timestamp)
                    .map_err(text)?;
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
                self.router.invite(now, &name, node).map_err(text)?;
                self.settle().await?;
                Ok(ChatReply::Done)
            }
            ChatRequest::Kick { name, node_id } => {
                let node = parse_node_id(&node_id)?;
                self.router.kick(now, &name, node).map_err(text)?;
                Ok(ChatReply::Done)
            }
            ChatRequest::Connect { node_id } => {
                let peer = parse_node_id(&node_id)?;
                let port = self.state.listen_port().ok_or(
                    "this node has no secure-link listener (--listen off): nobody could dial it",
                )?;
                if self.router.connect(peer, port) {
                    self.state.counters.bump("chat_connects_requested");
                    Ok(ChatReply::Done)
                } else {
                    Err(format!("no route to {node_id}: no linked node knows it"))
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
        self.state
            .chat
            .publish(self.router.counters().pairs().to_vec());
    }
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn decode_attachments(list: &[Attachment]) -> Result<Vec<FileAttachment>, String> {
    list.iter()
        .map(|a| {
            let data = base64::engine::general_purpose::STANDARD
                .decode(a.data.as_bytes())
                .map_err(|e| format!("attachment is not base64: {e}"))?;
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
        received_at: crate::ticket::unix_secs(SystemTime::now()),
    }
}
