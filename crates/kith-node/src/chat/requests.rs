//! The user's chat actions (from the control API), each answered once it is durable.

use super::driver::Driver;
use super::log::row_of;
use super::{parse_node_id, ChatRequestError};
use crate::api::{Attachment, ChannelInfo, ChatReply, ChatRequest, PersonInfo};
use crate::clock::mono_now;
use base64::Engine;
use kith_chat::router::{FileAttachment, ReceivedMessage};
use kith_crypto::NodeId;
use std::time::SystemTime;

/// The longest name a user may take.
const MAX_NAME: usize = 32;

/// Whether `name` is one a user may take: 1 to 32 letters, digits, `-`, `_` or `.`.
pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Driver {
    /// The node the user means: a node id (`GUID`, `name@GUID`), an agent id, or a name
    /// that exactly one node heard of goes by.
    async fn resolve(&self, text: &str) -> Result<NodeId, ChatRequestError> {
        if let Ok(id) = parse_node_id(text) {
            return Ok(id);
        }
        let name = text.trim().to_owned();
        let mut ids: Vec<NodeId> = self
            .router
            .ids_named(&name)
            .into_iter()
            .map(|i| i.guid)
            .collect();
        let lookup = name.clone();
        let stored = self
            .chat
            .inner
            .store
            .run(move |s| s.meta().chat_nodes(100_000))
            .await
            .unwrap_or_default();
        for node in stored {
            if node
                .name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(&lookup))
            {
                if let Ok(id) = node.guid.parse() {
                    ids.push(id);
                }
            }
        }
        ids.sort();
        ids.dedup();
        match ids.as_slice() {
            [one] => Ok(*one),
            [] => Err(ChatRequestError::UnknownName(name)),
            many => Err(ChatRequestError::AmbiguousName {
                name,
                ids: many
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
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
            .any(|c| (c.name == name || c.channel_id == name) && c.joined)
    }

    /// Logs the user's own message, where it stands, and the reply.
    async fn sent(
        &mut self,
        message: ReceivedMessage,
        to: Option<String>,
        unknown_recipient: bool,
    ) -> ChatReply {
        let msg_id = message.msg_id.clone();
        let (recipients, queued) = self.posted.get(&msg_id).copied().unwrap_or((0, 0));
        let state = if queued > 0 { "queued" } else { "sent" }.to_owned();
        self.log(row_of(
            message,
            Some((state.clone(), recipients, to.clone())),
        ))
        .await;
        ChatReply::Sent {
            msg_id,
            state,
            recipients,
            queued,
            unknown_recipient,
            to,
        }
    }

    pub(super) async fn request(
        &mut self,
        request: ChatRequest,
    ) -> Result<ChatReply, ChatRequestError> {
        let now = mono_now();
        let stamp = || humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        self.not_stored.clear();
        self.posted.clear();
        match request {
            ChatRequest::Join { name, closed } => {
                let was_member = self.is_member(&name);
                let channel_id = self.router.join(now, &name, closed)?;
                if was_member {
                    return Ok(ChatReply::Joined { channel_id });
                }
                // Recorded before it counts: a restart must find the same channel.
                if let Some(record) = self.router.channel_record(&channel_id) {
                    if let Err(e) = self.save_channel(record).await {
                        let _ = self.router.leave(now, &channel_id);
                        self.carry_out().await;
                        return Err(ChatRequestError::JoinNotRecorded { name, source: e });
                    }
                }
                Ok(ChatReply::Joined { channel_id })
            }
            ChatRequest::Leave { name } => {
                let Some(id) = self
                    .router
                    .channels()
                    .into_iter()
                    .find(|c| (c.name == name || c.channel_id == name) && c.joined)
                    .map(|c| c.channel_id)
                else {
                    return Err(ChatRequestError::NotInChannel(name));
                };
                let drop = id.clone();
                let done = self
                    .chat
                    .inner
                    .store
                    .run(move |s| s.meta().chat_drop_channel(&drop))
                    .await;
                if let Err(source) = done {
                    return Err(ChatRequestError::LeaveNotRecorded { name, source });
                }
                self.router.leave(now, &id)?;
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
                self.settle().await?;
                let channel = self
                    .router
                    .channels()
                    .into_iter()
                    .find(|c| (c.name == name || c.channel_id == name) && c.joined)
                    .map(|c| (c.name, c.channel_id));
                let own = ReceivedMessage {
                    msg_id,
                    from: self.router.node_id().clone(),
                    signed: true,
                    channel,
                    timestamp,
                    text: body,
                    attachments: files,
                };
                Ok(self.sent(own, None, false).await)
            }
            ChatRequest::Send {
                node_id,
                text: body,
                attachments,
            } => {
                let to = self.resolve(&node_id).await?;
                let files = decode_attachments(&attachments)?;
                let unknown = !self.knows(&to).await;
                let timestamp = stamp();
                let msg_id =
                    self.router
                        .send_direct(now, &[to], &body, files.clone(), &timestamp)?;
                self.settle().await?;
                let own = ReceivedMessage {
                    msg_id,
                    from: self.router.node_id().clone(),
                    signed: true,
                    channel: None,
                    timestamp,
                    text: body,
                    attachments: files,
                };
                let people = self.router.people();
                let to_id = people
                    .iter()
                    .find(|p| p.id.guid == to)
                    .map(|p| p.id.to_string())
                    .unwrap_or_else(|| to.to_string());
                Ok(self.sent(own, Some(to_id), unknown).await)
            }
            ChatRequest::Invite { name, node_id } => {
                let node = self.resolve(&node_id).await?;
                self.router.invite(now, &name, node)?;
                self.settle().await?;
                Ok(ChatReply::Done)
            }
            ChatRequest::Kick { name, node_id } => {
                let node = self.resolve(&node_id).await?;
                self.router.kick(now, &name, node)?;
                Ok(ChatReply::Done)
            }
            ChatRequest::Connect { node_id } => {
                let peer = self.resolve(&node_id).await?;
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
                awaiting_receipts: self.router.awaiting_receipts(),
                name: self.router.node_id().name.clone(),
            }),
            ChatRequest::Nick { name } => {
                let name = name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
                if name.as_deref().is_some_and(|n| !valid_name(n)) {
                    return Err(ChatRequestError::BadName);
                }
                let value = name.clone();
                self.chat
                    .inner
                    .store
                    .run(move |s| s.meta().chat_set_setting("nick", value.as_deref()))
                    .await
                    .map_err(|source| ChatRequestError::Store { source })?;
                self.router.set_name(name.clone());
                Ok(ChatReply::Nick {
                    name,
                    node_id: self.router.node_id().to_string(),
                })
            }
            ChatRequest::People => Ok(ChatReply::People(self.people().await)),
            ChatRequest::Block { node_id, blocked } => {
                let node = self.resolve(&node_id).await?;
                let guid = node.to_string();
                self.chat
                    .inner
                    .store
                    .run(move |s| s.meta().chat_set_node_flags(&guid, Some(blocked), None))
                    .await
                    .map_err(|source| ChatRequestError::Store { source })?;
                self.router.block(now, node, blocked);
                Ok(ChatReply::Done)
            }
            ChatRequest::Mute { node_id, muted } => {
                let node = self.resolve(&node_id).await?;
                let guid = node.to_string();
                self.chat
                    .inner
                    .store
                    .run(move |s| s.meta().chat_set_node_flags(&guid, None, Some(muted)))
                    .await
                    .map_err(|source| ChatRequestError::Store { source })?;
                if muted {
                    self.muted.insert(node);
                } else {
                    self.muted.remove(&node);
                }
                Ok(ChatReply::Done)
            }
            ChatRequest::Peer { address, remove } => {
                let Some(address) = address else {
                    let mut all: Vec<String> = self.routers.keys().cloned().collect();
                    all.sort();
                    return Ok(ChatReply::Peers(all));
                };
                let address = address.trim().to_owned();
                if super::dial::host_port(&address).is_none() {
                    return Err(ChatRequestError::BadAddress(address));
                }
                let at = self.chat.settings().clock.unix_secs();
                let stored = address.clone();
                self.chat
                    .inner
                    .store
                    .run(move |s| s.meta().chat_set_peer(&stored, !remove, at))
                    .await
                    .map_err(|source| ChatRequestError::Store { source })?;
                if remove {
                    if let Some(stop) = self.routers.remove(&address) {
                        stop.cancel();
                    }
                } else {
                    self.start_router_dialler(address);
                }
                let mut all: Vec<String> = self.routers.keys().cloned().collect();
                all.sort();
                Ok(ChatReply::Peers(all))
            }
            ChatRequest::Backlog { name, limit } => {
                let channel = name.clone();
                let rows = self
                    .chat
                    .inner
                    .store
                    .run(move |s| s.meta().chat_read(0, Some(&channel), usize::MAX >> 1))
                    .await
                    .map_err(|source| ChatRequestError::Store { source })?;
                let skip = rows.len().saturating_sub(limit);
                Ok(ChatReply::Backlog(rows.into_iter().skip(skip).collect()))
            }
        }
    }

    /// Whether anyone here knows `id`: the router (a route, a key, heard of it), a peer of
    /// this node (its node id derives from the agent), or the people kept.
    async fn knows(&self, id: &NodeId) -> bool {
        if self.router.knows(id) {
            return true;
        }
        let id = id.to_string();
        self.chat
            .inner
            .store
            .run(move |s| {
                let m = s.meta();
                let peer = m.list_peers()?.into_iter().any(|p| {
                    p.agent
                        .parse::<kith_crypto::identity::AgentId>()
                        .is_ok_and(|a| a.node_id().to_string() == id)
                });
                Ok::<_, kith_store::MetaError>(
                    peer || m.chat_nodes(100_000)?.iter().any(|n| n.guid == id),
                )
            })
            .await
            .unwrap_or(false)
    }

    /// Everyone heard of: the router's view (now) merged with what was kept (names, last
    /// seen, blocks, mutes).
    async fn people(&self) -> Vec<PersonInfo> {
        let stored = self
            .chat
            .inner
            .store
            .run(|s| s.meta().chat_nodes(10_000))
            .await
            .unwrap_or_default();
        let now_unix = self.chat.settings().clock.unix_secs();
        let now = mono_now();
        let mut out: Vec<PersonInfo> = self
            .router
            .people()
            .into_iter()
            .map(|p| {
                let kept = stored.iter().find(|n| n.guid == p.id.guid.to_string());
                let ago = now.saturating_duration_since(p.last_seen).as_secs() as i64;
                let last_seen = (now_unix - ago).max(kept.and_then(|k| k.last_seen).unwrap_or(0));
                PersonInfo {
                    node_id: p.id.to_string(),
                    guid: p.id.guid.to_string(),
                    name: p
                        .id
                        .name
                        .clone()
                        .or_else(|| kept.and_then(|k| k.name.clone())),
                    agent: self.router.key_of(&p.id.guid).map(|k| k.to_string()),
                    linked: p.neighbour,
                    hops: p.hops,
                    last_seen: Some(last_seen),
                    blocked: p.blocked || kept.is_some_and(|k| k.blocked),
                    muted: self.muted.contains(&p.id.guid),
                }
            })
            .collect();
        for kept in stored {
            if out.iter().any(|p| p.guid == kept.guid) {
                continue;
            }
            let node_id = match &kept.name {
                Some(n) => format!("{n}@{}", kept.guid),
                None => kept.guid.clone(),
            };
            out.push(PersonInfo {
                node_id,
                guid: kept.guid,
                name: kept.name,
                agent: None,
                linked: false,
                hops: None,
                last_seen: kept.last_seen,
                blocked: kept.blocked,
                muted: kept.muted,
            });
        }
        out
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

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn names_are_short_and_plain() {
        assert!(valid_name("alice"));
        assert!(valid_name("bob_smith-2.0"));
        assert!(!valid_name(""));
        assert!(!valid_name("a b"));
        assert!(!valid_name("x@y"));
        assert!(!valid_name(&"a".repeat(33)));
    }
}
