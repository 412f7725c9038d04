//! Channels: what this node knows of each, membership that converges, closed-channel keys.
//!
//! Membership follows the seed: JOIN adds its sender, LEAVE removes it, CHANNEL lists the
//! members its sender knows and is merged in (a union). Each node is the authority on itself:
//! a member that sees a CHANNEL without itself floods JOIN again, a non-member listed in one
//! floods LEAVE. Departed members leave a tombstone so that a CHANNEL still in flight from a
//! node that has not heard the LEAVE does not bring them back; a later JOIN clears it.
//!
//! A closed channel is joined only by invitation (an unasked KEY), and only listed members'
//! JOINs and CHANNELs change it. A LEAVE with kith's `member` field removes someone else (a
//! kick) and is accepted only from a member. After a kick the kicker makes a new key; after a
//! voluntary LEAVE the remaining member with the smallest node id does, so one node rotates
//! without any coordination. Members keep `key_history` old keys to read messages that were
//! in flight during a rotation.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use kith_crypto::NodeId;

use super::forward::Origin;
use super::{jitter, ChatEvent, FileAttachment, PendingKey, Router};
use crate::crypto::{self, ChannelKey, KEY_CIPHER};
use crate::message::{
    Body, ChannelInfo, ChatId, ChatMessage, Envelope, GetKey, KeyData, Membership,
};

/// Where this node stands in a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// Knows of it, not a member.
    Outside,
    /// A member.
    Member,
    /// Holds an invitation (the key) and waits for the user to join.
    Invited,
    /// Asked a member for the key (GETKEY), joins when it comes.
    Joining,
    /// Was removed (kicked).
    Removed,
}

#[derive(Debug)]
pub(crate) struct Channel {
    pub name: String,
    pub id: String,
    pub closed: bool,
    pub members: BTreeMap<NodeId, ChatId>,
    pub departed: BTreeMap<NodeId, Instant>,
    pub standing: Standing,
    /// Newest first.
    pub keys: VecDeque<([u8; 8], ChannelKey)>,
    pub next_refresh: Option<Instant>,
}

impl Channel {
    pub fn new(id: String, name: String, closed: bool) -> Channel {
        Channel {
            name,
            id,
            closed,
            members: BTreeMap::new(),
            departed: BTreeMap::new(),
            standing: Standing::Outside,
            keys: VecDeque::new(),
            next_refresh: None,
        }
    }

    pub fn current_key(&self) -> Option<&ChannelKey> {
        self.keys.front().map(|(_, k)| k)
    }

    fn key_by_id(&self, id: &[u8; 8]) -> Option<&ChannelKey> {
        self.keys.iter().find(|(k, _)| k == id).map(|(_, k)| k)
    }

    /// Adds `key` as the current one (or brings it forward), keeping at most `history` keys.
    pub fn add_key(&mut self, key: ChannelKey, history: usize) {
        let id = crypto::key_id(&key);
        self.keys.retain(|(k, _)| *k != id);
        self.keys.push_front((id, key));
        self.keys.truncate(history.max(1));
    }

    fn depart(&mut self, member: NodeId, now: Instant, max: usize) {
        self.members.remove(&member);
        if self.departed.len() >= max.max(1) {
            if let Some(oldest) = self
                .departed
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(id, _)| *id)
            {
                self.departed.remove(&oldest);
            }
        }
        self.departed.insert(member, now);
    }
}

/// A channel as the user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelView {
    /// Name.
    pub name: String,
    /// Id.
    pub channel_id: String,
    /// Closed (invitation only, encrypted).
    pub closed: bool,
    /// This node is a member.
    pub joined: bool,
    /// This node holds an invitation it has not accepted yet.
    pub invited: bool,
    /// Members as this node knows them.
    pub members: Vec<ChatId>,
}

#[derive(Debug)]
pub(crate) struct Channels {
    by_id: BTreeMap<String, Channel>,
    max: usize,
}

impl Channels {
    pub fn new(max: usize) -> Channels {
        Channels {
            by_id: BTreeMap::new(),
            max,
        }
    }

    pub fn get(&self, id: &str) -> Option<&Channel> {
        self.by_id.get(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Channel> {
        self.by_id.get_mut(id)
    }

    /// The channel a user means by `name`: one we are in or invited to first, then any.
    pub fn id_by_name(&self, name: &str) -> Option<String> {
        let rank = |c: &Channel| match c.standing {
            Standing::Member => 0,
            Standing::Invited | Standing::Joining => 1,
            _ => 2,
        };
        self.by_id
            .values()
            .filter(|c| c.name == name)
            .min_by_key(|c| rank(c))
            .map(|c| c.id.clone())
    }

    /// Inserts a new channel; false when the table is full.
    pub fn insert(&mut self, channel: Channel) -> bool {
        if self.by_id.len() >= self.max {
            return false;
        }
        self.by_id.insert(channel.id.clone(), channel);
        true
    }

    pub fn ids(&self) -> Vec<String> {
        self.by_id.keys().cloned().collect()
    }

    pub fn next_refresh(&self) -> Option<Instant> {
        self.by_id.values().filter_map(|c| c.next_refresh).min()
    }

    pub fn views(&self) -> Vec<ChannelView> {
        self.by_id
            .values()
            .map(|c| ChannelView {
                name: c.name.clone(),
                channel_id: c.id.clone(),
                closed: c.closed,
                joined: c.standing == Standing::Member,
                invited: c.standing == Standing::Invited,
                members: c.members.values().cloned().collect(),
            })
            .collect()
    }
}

impl Router {
    /// The channel with `id`, created (and announced to the user) if new; `None` when the
    /// channel table is full.
    pub(crate) fn channel_entry(&mut self, id: &str, name: &str, closed: bool) -> Option<()> {
        if self.channels.get(id).is_some() {
            return Some(());
        }
        if !self
            .channels
            .insert(Channel::new(id.to_string(), name.to_string(), closed))
        {
            self.counters.refused += 1;
            return None;
        }
        self.deliver(ChatEvent::ChannelDiscovered {
            name: name.to_string(),
            channel_id: id.to_string(),
            closed,
        });
        Some(())
    }

    /// JOIN, LEAVE or CHANNEL, first copy.
    pub(crate) fn on_channel_verb(&mut self, now: Instant, body: Body) {
        match body {
            Body::Join(m) => self.on_join(m),
            Body::Leave(m) => self.on_leave(now, m),
            Body::Channel(m) => self.on_channel_info(now, m),
            _ => {}
        }
    }

    fn on_join(&mut self, m: Membership) {
        if self
            .channel_entry(&m.channel_id, &m.channel, false)
            .is_none()
        {
            return;
        }
        let max = self.config.max_members;
        let Some(ch) = self.channels.get_mut(&m.channel_id) else {
            return;
        };
        if ch.closed && !ch.members.contains_key(&m.node_id.guid) {
            self.counters.refused += 1;
            return;
        }
        ch.departed.remove(&m.node_id.guid);
        if ch.members.len() >= max && !ch.members.contains_key(&m.node_id.guid) {
            self.counters.refused += 1;
            return;
        }
        let new = ch
            .members
            .insert(m.node_id.guid, m.node_id.clone())
            .is_none();
        if new && ch.standing == Standing::Member {
            let channel_id = ch.id.clone();
            self.deliver(ChatEvent::MembershipChanged {
                channel_id,
                member: m.node_id,
                joined: true,
            });
        }
    }

    fn on_leave(&mut self, now: Instant, m: Membership) {
        let me = self.me.guid;
        let max = self.config.max_members;
        let Some(ch) = self.channels.get_mut(&m.channel_id) else {
            return;
        };
        let target = m.member.clone().unwrap_or_else(|| m.node_id.clone());
        let kick = target.guid != m.node_id.guid;
        if kick && !(ch.closed && ch.members.contains_key(&m.node_id.guid)) {
            self.counters.refused += 1;
            return;
        }
        let was_member = ch.members.contains_key(&target.guid);
        ch.depart(target.guid, now, max);
        let member_here = ch.standing == Standing::Member;
        let channel_id = ch.id.clone();
        let name = ch.name.clone();
        if target.guid == me {
            ch.standing = Standing::Removed;
            ch.keys.clear();
            ch.next_refresh = None;
            self.deliver(ChatEvent::Removed { name, channel_id });
            return;
        }
        if member_here && was_member {
            self.deliver(ChatEvent::MembershipChanged {
                channel_id: channel_id.clone(),
                member: target,
                joined: false,
            });
        }
        let Some(ch) = self.channels.get(&channel_id) else {
            return;
        };
        // After a voluntary leave the smallest remaining member rotates the key (the kicker
        // does it after a kick).
        let smallest = ch.members.keys().next().copied();
        if !kick && ch.closed && member_here && ch.current_key().is_some() && smallest == Some(me) {
            self.rotate_key(now, &channel_id);
        }
    }

    fn on_channel_info(&mut self, now: Instant, m: ChannelInfo) {
        if self
            .channel_entry(&m.channel_id, &m.channel, m.closed)
            .is_none()
        {
            return;
        }
        let me = self.me.guid;
        let max = self.config.max_members;
        let refresh = self.config.channel_refresh;
        let delay = jitter(&mut self.rng, refresh);
        let Some(ch) = self.channels.get_mut(&m.channel_id) else {
            return;
        };
        ch.closed |= m.closed;
        let trusted =
            !ch.closed || ch.members.is_empty() || ch.members.contains_key(&m.node_id.guid);
        if trusted {
            for member in m.members {
                if ch.departed.contains_key(&member.guid) || ch.members.len() >= max {
                    continue;
                }
                ch.members.entry(member.guid).or_insert(member);
            }
        } else {
            self.counters.refused += 1;
        }
        let listed = ch.members.contains_key(&me);
        let (id, name) = (ch.id.clone(), ch.name.clone());
        match ch.standing {
            Standing::Member => {
                // Someone refreshed the channel: ours can wait a whole period again.
                ch.next_refresh = Some(now + refresh + delay);
                if !listed {
                    ch.members.insert(me, self.me.clone());
                    self.flood_membership(now, &id, &name, true, None);
                }
            }
            // In a closed channel a listing is an invitation whose key is on its way.
            Standing::Outside | Standing::Removed if listed && !ch.closed => {
                ch.members.remove(&me);
                self.flood_membership(now, &id, &name, false, None);
            }
            _ => {}
        }
    }

    /// Floods a JOIN (`join`) or LEAVE of this node, or (`member`) a removal of another.
    pub(crate) fn flood_membership(
        &mut self,
        now: Instant,
        channel_id: &str,
        name: &str,
        join: bool,
        member: Option<ChatId>,
    ) {
        let m = Membership {
            msg_id: self.new_msg_id(),
            node_id: self.me.clone(),
            channel: name.to_string(),
            channel_id: channel_id.to_string(),
            member,
        };
        self.flood_local(now, if join { Body::Join(m) } else { Body::Leave(m) });
    }

    pub(crate) fn channel_body(&mut self, channel_id: &str) -> Option<Body> {
        let msg_id = self.new_msg_id();
        let ch = self.channels.get(channel_id)?;
        Some(Body::Channel(ChannelInfo {
            msg_id,
            node_id: self.me.clone(),
            channel: ch.name.clone(),
            channel_id: ch.id.clone(),
            members: ch.members.values().cloned().collect(),
            closed: ch.closed,
        }))
    }

    /// The seed's option: every channel we know, to a neighbour that just said HELLO (ttl 1,
    /// so it goes no further).
    pub(crate) fn announce_channels_to(&mut self, to: super::NeighbourId) {
        for id in self.channels.ids() {
            if let Some(body) = self.channel_body(&id) {
                let mut env = Envelope::new(1, body);
                env.flood = true;
                self.transmit(to, env);
            }
        }
    }

    /// The periodic CHANNEL of subscribed channels nobody else refreshed.
    pub(crate) fn refresh_channels(&mut self, now: Instant) {
        let due: Vec<String> = self
            .channels
            .views()
            .into_iter()
            .map(|v| v.channel_id)
            .filter(|id| {
                self.channels
                    .get(id)
                    .and_then(|c| c.next_refresh)
                    .is_some_and(|at| at <= now)
            })
            .collect();
        for id in due {
            let delay = jitter(&mut self.rng, self.config.channel_refresh);
            if let Some(ch) = self.channels.get_mut(&id) {
                ch.next_refresh = Some(now + self.config.channel_refresh + delay);
            }
            if let Some(body) = self.channel_body(&id) {
                self.flood_local(now, body);
            }
        }
    }

    /// A flooded MESSAGE of a channel: delivered (after verification) if we are a member.
    pub(crate) fn on_channel_message(&mut self, now: Instant, m: ChatMessage) {
        let member = self
            .channels
            .get(&m.channel_id)
            .is_some_and(|c| c.standing == Standing::Member);
        if member {
            self.accept_message(now, m);
        }
    }

    /// The readable text and attachments of a verified channel message body.
    pub(crate) fn open_channel_body(
        &mut self,
        m: &ChatMessage,
        body: &[u8],
    ) -> Option<(Vec<u8>, Vec<FileAttachment>)> {
        let ch = self.channels.get(&m.channel_id)?;
        if !ch.closed {
            let attachments = m
                .attachments
                .iter()
                .map(|a| FileAttachment {
                    mime_type: a.mime_type.clone(),
                    data: a.data.clone(),
                })
                .collect();
            return Some((body.to_vec(), attachments));
        }
        let open = |sealed: &[u8]| {
            let key = ch.key_by_id(&crypto::sealed_key_id(sealed)?)?;
            crypto::open_for_channel(key, &ch.id, sealed).ok()
        };
        let text = open(body);
        let attachments: Option<Vec<FileAttachment>> = m
            .attachments
            .iter()
            .map(|a| {
                Some(FileAttachment {
                    mime_type: a.mime_type.clone(),
                    data: open(&a.data)?,
                })
            })
            .collect();
        match (text, attachments) {
            (Some(t), Some(a)) => Some((t, a)),
            _ => {
                self.counters.undecryptable += 1;
                None
            }
        }
    }

    /// GETKEY for us: answered when the asker is a listed member of a closed channel whose
    /// key we hold.
    pub(crate) fn on_getkey(&mut self, now: Instant, m: GetKey) {
        let allowed = self.channels.get(&m.channel_id).is_some_and(|c| {
            c.closed
                && c.standing == Standing::Member
                && c.current_key().is_some()
                && c.members.contains_key(&m.node_id.guid)
        });
        if !allowed {
            self.counters.refused += 1;
            return;
        }
        self.send_key(now, &m.channel_id, m.node_id.guid, Some(m.msg_id));
    }

    /// Sends the current key of `channel_id` to `recipient`, once we have its certificate.
    pub(crate) fn send_key(
        &mut self,
        now: Instant,
        channel_id: &str,
        recipient: NodeId,
        reply_to: Option<String>,
    ) {
        let Some(agent) = self.certs.get(&recipient).copied() else {
            if self.pending_keys.len() >= self.config.max_pending_verify.max(1) {
                self.pending_keys.pop_front();
            }
            self.pending_keys.push_back(PendingKey {
                deadline: now + self.config.certificate_timeout,
                channel_id: channel_id.to_string(),
                recipient,
                reply_to,
            });
            self.request_certificate(now, recipient);
            return;
        };
        let Some(ch) = self.channels.get(channel_id) else {
            return;
        };
        let Some(key) = ch.current_key() else {
            return;
        };
        let wrapped = crypto::wrap_channel_key(&mut self.rng, key, &agent, channel_id);
        let name = ch.name.clone();
        let msg_id = reply_to.unwrap_or_else(|| self.new_msg_id());
        let body = Body::Key(KeyData {
            msg_id,
            node_id: self.me.clone(),
            recipient_id: ChatId::new(recipient),
            channel: name,
            channel_id: channel_id.to_string(),
            cipher: KEY_CIPHER.to_string(),
            key: wrapped,
        });
        let mut env = Envelope::new(self.config.default_ttl, body);
        env.target_id = Some(recipient);
        self.route_or_queue(now, env, recipient, Origin::LocalDurable);
    }

    /// A KEY for us: a rotation, the answer to our GETKEY, or an invitation.
    pub(crate) fn on_key(&mut self, now: Instant, m: KeyData) {
        let Ok(key) = crypto::unwrap_channel_key(&self.identity, &m.cipher, &m.key, &m.channel_id)
        else {
            self.counters.undecryptable += 1;
            return;
        };
        if self
            .channel_entry(&m.channel_id, &m.channel, true)
            .is_none()
        {
            return;
        }
        let history = self.config.key_history;
        let auto_join = self.config.auto_join_invites;
        let Some(ch) = self.channels.get_mut(&m.channel_id) else {
            return;
        };
        ch.closed = true;
        ch.add_key(key, history);
        ch.members
            .entry(m.node_id.guid)
            .or_insert_with(|| m.node_id.clone());
        match ch.standing {
            Standing::Member => {}
            Standing::Joining => self.become_member(now, &m.channel_id),
            Standing::Outside | Standing::Removed | Standing::Invited => {
                if auto_join {
                    self.become_member(now, &m.channel_id);
                } else {
                    ch.standing = Standing::Invited;
                    let (name, channel_id) = (ch.name.clone(), ch.id.clone());
                    self.deliver(ChatEvent::Invited {
                        name,
                        channel_id,
                        by: m.node_id,
                    });
                }
            }
        }
    }

    /// Marks us a member, floods JOIN and tells the user.
    pub(crate) fn become_member(&mut self, now: Instant, channel_id: &str) {
        self.become_member_announcing(now, channel_id, true);
    }

    /// [`Router::become_member`]; `announce` false skips the JOIN (a new channel is
    /// announced by its CHANNEL instead).
    pub(crate) fn become_member_announcing(
        &mut self,
        now: Instant,
        channel_id: &str,
        announce: bool,
    ) {
        let delay = jitter(&mut self.rng, self.config.channel_refresh);
        let me = self.me.clone();
        let Some(ch) = self.channels.get_mut(channel_id) else {
            return;
        };
        ch.standing = Standing::Member;
        ch.departed.remove(&me.guid);
        ch.members.insert(me.guid, me);
        ch.next_refresh = Some(now + self.config.channel_refresh + delay);
        let name = ch.name.clone();
        if announce {
            self.flood_membership(now, channel_id, &name, true, None);
        }
        self.deliver(ChatEvent::Joined {
            name,
            channel_id: channel_id.to_string(),
        });
    }

    /// A new key for a closed channel, sent to every other member.
    pub(crate) fn rotate_key(&mut self, now: Instant, channel_id: &str) {
        let key = crypto::new_channel_key(&mut self.rng);
        let history = self.config.key_history;
        let Some(ch) = self.channels.get_mut(channel_id) else {
            return;
        };
        ch.add_key(key, history);
        let others: Vec<NodeId> = ch
            .members
            .keys()
            .copied()
            .filter(|m| *m != self.me.guid)
            .collect();
        for member in others {
            self.send_key(now, channel_id, member, None);
        }
    }

    /// Asks a listed member of a closed channel for its key.
    pub(crate) fn ask_for_key(&mut self, now: Instant, channel_id: &str) {
        let Some(ch) = self.channels.get(channel_id) else {
            return;
        };
        // The nearest reachable member is the likeliest to answer soon.
        let member = ch
            .members
            .keys()
            .filter(|m| **m != self.me.guid)
            .filter_map(|m| self.table.route(m).map(|r| (r.hops, *m)))
            .min();
        let Some((_, member)) = member else {
            return;
        };
        let channel = ch.name.clone();
        let body = Body::GetKey(GetKey {
            msg_id: self.new_msg_id(),
            node_id: self.me.clone(),
            channel,
            channel_id: channel_id.to_string(),
            recipient_id: Some(member),
        });
        let mut env = Envelope::new(self.config.default_ttl, body);
        env.target_id = Some(member);
        self.route_or_queue(now, env, member, Origin::LocalQueued);
    }
}
