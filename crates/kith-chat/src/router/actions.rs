//! What the local user does: join, leave, say, send, invite, kick.

use std::time::Instant;

use kith_crypto::NodeId;

use super::channels::{Channel, ChannelView, Standing};
use super::forward::Origin;
use super::{ChatError, FileAttachment, Router};
use crate::message::{Attachment, Body, ChatId, ChatMessage, Envelope};
use crate::{auth, crypto};

impl Router {
    /// Channels this node knows, with its standing in each.
    pub fn channels(&self) -> Vec<ChannelView> {
        self.channels.views()
    }

    fn check_name(&self, name: &str) -> Result<(), ChatError> {
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(ChatError::InvalidName);
        }
        if name.len() > self.config.message.max_field {
            return Err(ChatError::TooLarge("channel name"));
        }
        Ok(())
    }

    fn member_channel(&self, name: &str) -> Result<String, ChatError> {
        self.channels
            .find(name, |c| c.standing == Standing::Member)
            .ok_or_else(|| ChatError::NoSuchChannel(name.to_string()))
    }

    /// Joins channel `name`. A channel of that name this node is in, invited to or listed in
    /// comes first: a held invitation is accepted, a listed member without the key asks a
    /// member for it (GETKEY; the join completes when the KEY comes). Otherwise `closed`
    /// creates a closed channel with a fresh key, and a public join goes to the public
    /// channel of that name, whose id everyone derives from the name
    /// ([`crate::auth::public_channel_id`]): created if nobody announced it yet. Returns the
    /// channel id.
    pub fn join(&mut self, now: Instant, name: &str, closed: bool) -> Result<String, ChatError> {
        self.check_name(name)?;
        let me = self.me.guid;
        let mine = self.channels.find(name, |c| {
            c.engaged()
                || (c.closed && c.members.contains_key(&me) && c.standing != Standing::Removed)
        });
        if let Some(id) = mine {
            self.take_as_own(&id)?;
            let Some(ch) = self.channels.get_mut(&id) else {
                return Err(ChatError::NoSuchChannel(name.to_string()));
            };
            match ch.standing {
                Standing::Member | Standing::Joining => {}
                Standing::Invited => self.become_member(now, &id),
                _ if ch.current_key().is_some() => self.become_member(now, &id),
                _ => {
                    ch.standing = Standing::Joining;
                    self.ask_for_key(now, &id);
                }
            }
            return Ok(id);
        }
        if !closed {
            let id = auth::public_channel_id(name);
            if self.channels.get(&id).is_some() {
                self.take_as_own(&id)?;
                self.become_member(now, &id);
                return Ok(id);
            }
            // A closed channel of that name that we were not invited to, and no public one:
            // say so rather than make a public twin the user did not mean.
            if self.channels.find(name, |c| c.closed).is_some() {
                return Err(ChatError::NotInvited(name.to_string()));
            }
            return self.create(now, id, name, false);
        }
        let id = self.new_msg_id();
        self.create(now, id, name, true)
    }

    /// Counts channel `id` as the user's own from now on.
    fn take_as_own(&mut self, id: &str) -> Result<(), ChatError> {
        let room = self.channels.room_for_own();
        let Some(ch) = self.channels.get_mut(id) else {
            return Ok(());
        };
        if !ch.by_user {
            if !room {
                return Err(ChatError::LimitReached("channels"));
            }
            ch.by_user = true;
        }
        Ok(())
    }

    fn create(
        &mut self,
        now: Instant,
        id: String,
        name: &str,
        closed: bool,
    ) -> Result<String, ChatError> {
        let mut channel = Channel::new(id.clone(), name.to_string(), closed);
        if closed {
            channel.add_key(
                crypto::new_channel_key(&mut self.rng),
                self.config.key_history,
            );
        }
        if !self.channels.insert_own(channel) {
            return Err(ChatError::LimitReached("channels"));
        }
        self.become_member_announcing(now, &id, false);
        if let Some(body) = self.channel_body(&id) {
            self.flood_local(now, body);
        }
        Ok(id)
    }

    /// Leaves channel `name` (floods LEAVE; in a closed channel the others rotate the key).
    pub fn leave(&mut self, now: Instant, name: &str) -> Result<(), ChatError> {
        let id = self.member_channel(name)?;
        let me = self.me.guid;
        if let Some(ch) = self.channels.get_mut(&id) {
            ch.standing = Standing::Outside;
            ch.by_user = false;
            ch.members.remove(&me);
            ch.keys.clear();
            ch.next_refresh = None;
        }
        self.flood_membership(now, &id, name, false, None);
        Ok(())
    }

    fn check_payload(&self, text: &str, attachments: &[FileAttachment]) -> Result<(), ChatError> {
        if text.len() > self.config.message.max_text {
            return Err(ChatError::TooLarge("text"));
        }
        let total: usize = attachments.iter().map(|a| a.data.len()).sum();
        if total > self.config.message.max_attachment_bytes {
            return Err(ChatError::TooLarge("attachments"));
        }
        if attachments.len() > self.config.message.max_list {
            return Err(ChatError::LimitReached("attachments"));
        }
        if attachments
            .iter()
            .any(|a| a.mime_type.is_empty() || a.mime_type.len() > self.config.message.max_field)
        {
            return Err(ChatError::TooLarge("attachment type"));
        }
        Ok(())
    }

    /// Says `text` (with attachments) in channel `name`, signed, and encrypted with the
    /// channel key if the channel is closed. `timestamp` is the author's clock, as text.
    /// Returns the message id.
    pub fn say(
        &mut self,
        now: Instant,
        name: &str,
        text: &str,
        attachments: Vec<FileAttachment>,
        timestamp: &str,
    ) -> Result<String, ChatError> {
        self.check_payload(text, &attachments)?;
        let id = self.member_channel(name)?;
        let Some(ch) = self.channels.get(&id) else {
            return Err(ChatError::NoSuchChannel(name.to_string()));
        };
        let (channel, closed) = (ch.name.clone(), ch.closed);
        let key = ch.current_key().cloned();
        let (body, attachments) = match (closed, key) {
            (false, _) => (
                text.as_bytes().to_vec(),
                attachments
                    .into_iter()
                    .map(|a| Attachment {
                        mime_type: a.mime_type,
                        data: a.data,
                    })
                    .collect(),
            ),
            (true, Some(key)) => {
                let rng = &mut self.rng;
                let body = crypto::seal_for_channel(rng, &key, &id, text.as_bytes());
                let sealed = attachments
                    .into_iter()
                    .map(|a| Attachment {
                        mime_type: a.mime_type,
                        data: crypto::seal_for_channel(rng, &key, &id, &a.data),
                    })
                    .collect();
                (body, sealed)
            }
            (true, None) => return Err(ChatError::NotInvited(name.to_string())),
        };
        let mut m = ChatMessage {
            msg_id: self.new_msg_id(),
            node_id: self.me.clone(),
            recipient: Vec::new(),
            timestamp: timestamp.to_string(),
            channel,
            channel_id: id,
            message: Vec::new(),
            attachments,
            public_key: Some(self.identity.agent_public()),
            unsigned: false,
        };
        crypto::sign_message(&self.identity, &mut m, &body);
        let msg_id = m.msg_id.clone();
        self.flood_local(now, Body::Message(m));
        Ok(msg_id)
    }

    /// Sends a signed direct message to each of `to` (one routed copy per recipient, kept and
    /// retried while a recipient is unreachable). Returns the message id.
    pub fn send_direct(
        &mut self,
        now: Instant,
        to: &[NodeId],
        text: &str,
        attachments: Vec<FileAttachment>,
        timestamp: &str,
    ) -> Result<String, ChatError> {
        self.check_payload(text, &attachments)?;
        let mut recipients: Vec<NodeId> = to.to_vec();
        recipients.sort();
        recipients.dedup();
        if recipients.is_empty() || recipients.len() > self.config.message.max_list {
            return Err(ChatError::LimitReached("recipients"));
        }
        let mut m = ChatMessage {
            msg_id: self.new_msg_id(),
            node_id: self.me.clone(),
            recipient: recipients.iter().map(|r| ChatId::new(*r)).collect(),
            timestamp: timestamp.to_string(),
            channel: String::new(),
            channel_id: String::new(),
            message: Vec::new(),
            attachments: attachments
                .into_iter()
                .map(|a| Attachment {
                    mime_type: a.mime_type,
                    data: a.data,
                })
                .collect(),
            public_key: Some(self.identity.agent_public()),
            unsigned: false,
        };
        crypto::sign_message(&self.identity, &mut m, text.as_bytes());
        let msg_id = m.msg_id.clone();
        for target in recipients {
            let mut env = Envelope::new(self.config.default_ttl, Body::Message(m.clone()));
            env.target_id = Some(target);
            self.route_or_queue(now, env, target, Origin::LocalDurable);
        }
        Ok(msg_id)
    }

    /// Invites `node` to closed channel `name`: lists it as a member and sends it the key
    /// unasked (fetching its certificate first if need be).
    pub fn invite(&mut self, now: Instant, name: &str, node: NodeId) -> Result<(), ChatError> {
        let id = self.member_channel(name)?;
        let max = self.config.max_members;
        let Some(ch) = self.channels.get_mut(&id) else {
            return Err(ChatError::NoSuchChannel(name.to_string()));
        };
        if !ch.closed {
            return Err(ChatError::PublicChannel(name.to_string()));
        }
        if ch.members.len() >= max && !ch.members.contains_key(&node) {
            return Err(ChatError::LimitReached("members"));
        }
        ch.departed.remove(&node);
        ch.hinted.remove(&node);
        ch.members.entry(node).or_insert_with(|| ChatId::new(node));
        if let Some(body) = self.channel_body(&id) {
            self.flood_local(now, body);
        }
        self.send_key(now, &id, node, None);
        Ok(())
    }

    /// Removes `node` from closed channel `name`: floods the removal and gives every remaining
    /// member a new key, so the removed node cannot read what follows.
    pub fn kick(&mut self, now: Instant, name: &str, node: NodeId) -> Result<(), ChatError> {
        let id = self.member_channel(name)?;
        let max = self.config.max_members;
        let Some(ch) = self.channels.get_mut(&id) else {
            return Err(ChatError::NoSuchChannel(name.to_string()));
        };
        if !ch.closed {
            return Err(ChatError::PublicChannel(name.to_string()));
        }
        let member = ch
            .members
            .get(&node)
            .cloned()
            .unwrap_or_else(|| ChatId::new(node));
        ch.members.remove(&node);
        ch.departed.insert(node, now);
        if ch.departed.len() > max {
            ch.departed.pop_first();
        }
        self.flood_membership(now, &id, name, false, Some(member));
        if let Some(body) = self.channel_body(&id) {
            self.flood_local(now, body);
        }
        self.rotate_key(now, &id);
        Ok(())
    }
}
