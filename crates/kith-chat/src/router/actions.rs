//! What the local user does: join, leave, say, send, invite, kick.
//!
//! **Nothing said is lost.** A channel message is flooded to whoever is reachable now, and
//! also kept, like a direct message, once per member whose id a key derives (one routed copy
//! each, stored before anything leaves): a member that gets it (flooded or routed) signs a
//! receipt, and the copies of members whose receipt does not come are routed to them, or
//! wait in the store-and-forward queue until a route to them appears (after a partition, an
//! idle link, a restart of either side). A member with a plain id (a client that proves no
//! key) cannot sign receipts: it gets the flood only. Once every copy of a message is stored,
//! the router tells the user where it stands ([`ChatEvent::Posted`]: for how many, and how many
//! of them have no route yet).

use std::collections::HashMap;
use std::time::Instant;

use kith_crypto::NodeId;

use super::channels::{Channel, ChannelView, Standing};
use super::store::AfterStore;
use super::{ChatError, ChatEvent, FileAttachment, Output, QueuedMessage, Router};
use crate::message::{Attachment, Body, ChatId, ChatMessage, Envelope};
use crate::{auth, crypto};

/// One of the user's messages whose copies are being stored.
#[derive(Debug)]
struct Post {
    /// A channel message's flood, sent once every copy is stored.
    flood: Option<Envelope>,
    recipients: Vec<NodeId>,
    waiting: usize,
    failed: bool,
    queued: usize,
}

/// The user's messages whose copies are being stored, by msg_id.
#[derive(Debug, Default)]
pub(crate) struct Saying {
    posts: HashMap<String, Post>,
}

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

    /// The channel called `name` (or whose id `name` is) that this node is a member of.
    fn member_channel(&self, name: &str) -> Result<String, ChatError> {
        if is_channel_id(name) {
            let id = name.to_ascii_lowercase();
            if self
                .channels
                .get(&id)
                .is_some_and(|c| c.standing == Standing::Member)
            {
                return Ok(id);
            }
        }
        self.channels
            .find(name, |c| c.standing == Standing::Member)
            .ok_or_else(|| ChatError::NoSuchChannel(name.to_string()))
    }

    /// Joins channel `name`, or the channel whose id `name` is (a GUID is always taken as an
    /// id: no channel is ever made with an id for a name). A channel of that name this node
    /// is in, invited to or listed in comes first: a held invitation is accepted, a listed
    /// member without the key asks a member for it (GETKEY; the join completes when the KEY
    /// comes). Otherwise `closed` creates a closed channel with a fresh key, and a public join
    /// goes to the public channel of that name, whose id everyone derives from the name
    /// ([`crate::auth::public_channel_id`]): created if nobody announced it yet. Returns the
    /// channel id.
    pub fn join(&mut self, now: Instant, name: &str, closed: bool) -> Result<String, ChatError> {
        if is_channel_id(name) {
            let id = name.to_ascii_lowercase();
            let Some(ch) = self.channels.get(&id) else {
                return Err(ChatError::UnknownChannelId(name.to_string()));
            };
            let me = self.me.guid;
            if ch.closed && !ch.engaged() && ch.current_key().is_none() {
                let listed = ch.members.contains_key(&me) && ch.standing != Standing::Removed;
                if !listed {
                    return Err(ChatError::NotInvited(ch.name.clone()));
                }
            }
            return self.join_known(now, id);
        }
        self.check_name(name)?;
        let me = self.me.guid;
        let mine = self.channels.find(name, |c| {
            c.engaged()
                || (c.closed && c.members.contains_key(&me) && c.standing != Standing::Removed)
        });
        if let Some(id) = mine {
            return self.join_known(now, id);
        }
        if !closed {
            let id = auth::public_channel_id(name);
            if self.channels.get(&id).is_some() {
                return self.join_known(now, id);
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

    /// Joins the known channel `id` (see [`Router::join`]).
    fn join_known(&mut self, now: Instant, id: String) -> Result<String, ChatError> {
        self.take_as_own(&id)?;
        let Some(ch) = self.channels.get_mut(&id) else {
            return Err(ChatError::UnknownChannelId(id));
        };
        match ch.standing {
            Standing::Member | Standing::Joining => {}
            Standing::Invited => self.become_member(now, &id),
            _ if !ch.closed || ch.current_key().is_some() => self.become_member(now, &id),
            _ => {
                ch.standing = Standing::Joining;
                self.touch_channel(&id);
                self.ask_for_key(now, &id);
            }
        }
        Ok(id)
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
        self.touch_channel(&id);
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
            channel_id: id.clone(),
            message: Vec::new(),
            attachments,
            public_key: Some(self.identity.agent_public()),
            unsigned: false,
            plain_text: false,
        };
        crypto::sign_message(&self.identity, &mut m, &body);
        let msg_id = m.msg_id.clone();
        let recipients: Vec<NodeId> = self
            .channels
            .get(&id)
            .map(|c| {
                c.members
                    .keys()
                    .copied()
                    .filter(|g| *g != self.me.guid && auth::key_form(g))
                    .filter(|g| !self.people.is_blocked(g))
                    .collect()
            })
            .unwrap_or_default();
        let flood = Envelope {
            ttl: self.config.default_ttl,
            flood: true,
            msg_id: None,
            target_id: None,
            body: Body::Message(m.clone()),
        };
        self.post(now, msg_id.clone(), m, recipients, Some(flood));
        Ok(msg_id)
    }

    /// Stores one routed copy of the user's message `m` per recipient, then (as each store is
    /// answered, [`Router::posted`]) sends or keeps it, and floods `flood` once all are stored.
    fn post(
        &mut self,
        now: Instant,
        msg_id: String,
        m: ChatMessage,
        recipients: Vec<NodeId>,
        flood: Option<Envelope>,
    ) {
        let channel = flood.is_some();
        if recipients.is_empty() {
            if let Some(flood) = flood {
                self.flood_local(now, flood.body);
            }
            self.deliver(ChatEvent::Posted {
                msg_id,
                recipients: 0,
                queued: 0,
            });
            return;
        }
        self.saying.posts.insert(
            msg_id,
            Post {
                flood,
                recipients: recipients.clone(),
                waiting: recipients.len(),
                failed: false,
                queued: 0,
            },
        );
        for target in recipients {
            let mut env = Envelope::new(self.config.default_ttl, Body::Message(m.clone()));
            env.target_id = Some(self.chat_id(target));
            let key = QueuedMessage::key_for(&m.msg_id, &target);
            self.store_then(now, key, env, target, AfterStore::Post { channel });
        }
    }

    /// One copy of a post was stored (or not) and sent or kept (`queued`: no route yet). When
    /// the last is answered: the flood goes and the user is told, or, if any store failed,
    /// nothing goes, what was stored is dropped, and the user is told it was not stored.
    pub(crate) fn posted(&mut self, now: Instant, msg_id: &str, stored: bool, queued: bool) {
        let Some(post) = self.saying.posts.get_mut(msg_id) else {
            return;
        };
        post.waiting = post.waiting.saturating_sub(1);
        post.failed |= !stored;
        post.queued += usize::from(stored && queued);
        if post.waiting > 0 {
            return;
        }
        let Some(post) = self.saying.posts.remove(msg_id) else {
            return;
        };
        if post.failed {
            for target in &post.recipients {
                let key = QueuedMessage::key_for(msg_id, target);
                self.receipts.forget(&key);
                self.queue.remove(&key);
                self.outputs.push_back(Output::Forget { key });
            }
            self.deliver(ChatEvent::NotStored {
                msg_id: msg_id.to_string(),
            });
            return;
        }
        if let Some(flood) = post.flood {
            self.flood_local(now, flood.body);
        }
        self.deliver(ChatEvent::Posted {
            msg_id: msg_id.to_string(),
            recipients: post.recipients.len(),
            queued: post.queued,
        });
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
            plain_text: false,
        };
        crypto::sign_message(&self.identity, &mut m, text.as_bytes());
        let msg_id = m.msg_id.clone();
        self.post(now, msg_id.clone(), m, recipients, None);
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
        self.touch_channel(&id);
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
        self.touch_channel(&id);
        self.flood_membership(now, &id, name, false, Some(member));
        if let Some(body) = self.channel_body(&id) {
            self.flood_local(now, body);
        }
        self.rotate_key(now, &id);
        Ok(())
    }
}

/// Whether `text` has the form of a channel id (a GUID, `8-4-4-4-12` hex).
pub fn is_channel_id(text: &str) -> bool {
    text.parse::<NodeId>().is_ok() && !text.contains('@')
}
