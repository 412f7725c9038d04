//! Channels: what this node knows of each, membership that converges, closed-channel keys.
//!
//! Membership follows the seed: JOIN adds its sender, LEAVE removes it, CHANNEL lists the
//! members its sender knows. Each node is the authority on itself: a member that sees a
//! CHANNEL without itself floods JOIN again, a non-member listed in one floods LEAVE.
//! Departed members leave a tombstone so that a CHANNEL still in flight from a node that has
//! not heard the LEAVE does not bring them back; a later JOIN clears it.
//!
//! **State about a node counts only when that node said it** ([`state`]): every JOIN, LEAVE,
//! CHANNEL and KEY is verified before it gets here, so a member entry comes from the member's
//! own JOIN or CHANNEL (or, for a plain client, from its own connection); in a public channel
//! what a CHANNEL says about others is only a hint, shown but never acted on. A closed
//! channel changes only by what a member signed: its CHANNEL listing new members is an
//! invitation, its LEAVE naming another member a removal; a KEY is accepted only from a
//! member, and an unasked KEY (an invitation) tells the new member whom it joins.
//!
//! **A channel is what its id says.** A public channel's id is derived from its name
//! ([`crate::auth::public_channel_id`]) and it is never closed; any other channel is public
//! or closed from the first time it is heard of, and no CHANNEL or KEY changes that for a
//! node in it (only an invitation, signed by a member, overrides what an outsider heard); a
//! CHANNEL may not bring a second channel of a known name (other than the public one).
//!
//! **Strangers cannot fill the table.** Channels the user joined or created count against
//! `max_channels`; channels learned from others (announced, or joined by invitation) against
//! `max_foreign_channels`, and when those are full the oldest one this node is not in is
//! forgotten.
//!
//! After a kick the kicker makes a new key; after a voluntary LEAVE the remaining member with
//! the smallest node id does, so one node rotates without any coordination. Members keep
//! `key_history` old keys to read messages that were in flight during a rotation.

mod keys;
mod record;
mod state;

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use kith_crypto::NodeId;

use super::{ChatEvent, Router};
use crate::auth;
use crate::crypto::{self, ChannelKey};
use crate::message::{Body, ChannelInfo, ChatId, Envelope, Membership};

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
    /// Members that spoke for themselves (or, in a closed channel, were invited by a member).
    pub members: BTreeMap<NodeId, ChatId>,
    /// Public channels: nodes someone else's CHANNEL listed (shown, never trusted).
    pub hinted: BTreeMap<NodeId, ChatId>,
    pub departed: BTreeMap<NodeId, Instant>,
    pub standing: Standing,
    /// Newest first.
    pub keys: VecDeque<([u8; 8], ChannelKey)>,
    pub next_refresh: Option<Instant>,
    /// Joined or created by the local user (counts against `max_channels`), rather than
    /// learned from others.
    pub by_user: bool,
}

impl Channel {
    pub(crate) fn new(id: String, name: String, closed: bool) -> Channel {
        Channel {
            name,
            id,
            closed,
            members: BTreeMap::new(),
            hinted: BTreeMap::new(),
            departed: BTreeMap::new(),
            standing: Standing::Outside,
            keys: VecDeque::new(),
            next_refresh: None,
            by_user: false,
        }
    }

    pub(crate) fn current_key(&self) -> Option<&ChannelKey> {
        self.keys.front().map(|(_, k)| k)
    }

    fn key_by_id(&self, id: &[u8; 8]) -> Option<&ChannelKey> {
        self.keys.iter().find(|(k, _)| k == id).map(|(_, k)| k)
    }

    /// Adds `key` as the current one (or brings it forward), keeping at most `history` keys.
    pub(crate) fn add_key(&mut self, key: ChannelKey, history: usize) {
        let id = crypto::key_id(&key);
        self.keys.retain(|(k, _)| *k != id);
        self.keys.push_front((id, key));
        self.keys.truncate(history.max(1));
    }

    /// Adds a member that spoke for itself (or was invited); false when the list is full.
    fn admit(&mut self, member: ChatId, max: usize) -> bool {
        self.hinted.remove(&member.guid);
        if self.members.contains_key(&member.guid) {
            return true;
        }
        if self.members.len() >= max {
            return false;
        }
        self.members.insert(member.guid, member);
        true
    }

    fn depart(&mut self, member: NodeId, now: Instant, max: usize) {
        self.members.remove(&member);
        self.hinted.remove(&member);
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

    /// Whether the node is in the channel (a member, or on its way in).
    pub(crate) fn engaged(&self) -> bool {
        matches!(
            self.standing,
            Standing::Member | Standing::Invited | Standing::Joining
        )
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
    /// Members as this node knows them (in a public channel, also those others listed).
    pub members: Vec<ChatId>,
}

#[derive(Debug)]
pub(crate) struct Channels {
    by_id: BTreeMap<String, Channel>,
    max_own: usize,
    max_foreign: usize,
    /// Ids of channels learned from others, oldest first (may name channels since removed or
    /// joined by the user: skipped when evicting).
    foreign: VecDeque<String>,
}

impl Channels {
    pub(crate) fn new(max_own: usize, max_foreign: usize) -> Channels {
        Channels {
            by_id: BTreeMap::new(),
            max_own: max_own.max(1),
            max_foreign: max_foreign.max(1),
            foreign: VecDeque::new(),
        }
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Channel> {
        self.by_id.get(id)
    }

    pub(crate) fn get_mut(&mut self, id: &str) -> Option<&mut Channel> {
        self.by_id.get_mut(id)
    }

    /// A channel called `name` that `want` accepts: the user's own first, then by id.
    pub(crate) fn find(&self, name: &str, want: impl Fn(&Channel) -> bool) -> Option<String> {
        self.by_id
            .values()
            .filter(|c| c.name == name && want(c))
            .min_by_key(|c| !c.by_user)
            .map(|c| c.id.clone())
    }

    fn own_count(&self) -> usize {
        self.by_id.values().filter(|c| c.by_user).count()
    }

    /// Whether the user may take one more channel as its own.
    pub(crate) fn room_for_own(&self) -> bool {
        self.own_count() < self.max_own
    }

    /// Inserts a channel the user creates; false when the user's own table is full.
    pub(crate) fn insert_own(&mut self, mut channel: Channel) -> bool {
        if !self.room_for_own() {
            return false;
        }
        channel.by_user = true;
        self.by_id.insert(channel.id.clone(), channel);
        true
    }

    /// Inserts a channel learned from others, forgetting the oldest such channel this node
    /// is not in when their room is full; false when none can go.
    pub(crate) fn insert_foreign(&mut self, channel: Channel) -> bool {
        let count = self.by_id.len() - self.own_count();
        if count >= self.max_foreign {
            let evictable = |c: &Channel| !c.by_user && !c.engaged();
            let at = self
                .foreign
                .iter()
                .position(|id| self.by_id.get(id).is_some_and(evictable));
            let Some(at) = at else {
                return false;
            };
            if let Some(id) = self.foreign.remove(at) {
                self.by_id.remove(&id);
            }
        }
        // Entries that left the foreign set are dropped from the order now and then.
        if self.foreign.len() > 2 * self.max_foreign {
            let by_id = &self.by_id;
            self.foreign
                .retain(|id| by_id.get(id).is_some_and(|c| !c.by_user));
        }
        self.foreign.push_back(channel.id.clone());
        self.by_id.insert(channel.id.clone(), channel);
        true
    }

    pub(crate) fn ids(&self) -> Vec<String> {
        self.by_id.keys().cloned().collect()
    }

    pub(crate) fn next_refresh(&self) -> Option<Instant> {
        self.by_id.values().filter_map(|c| c.next_refresh).min()
    }

    pub(crate) fn views(&self) -> Vec<ChannelView> {
        self.by_id
            .values()
            .map(|c| ChannelView {
                name: c.name.clone(),
                channel_id: c.id.clone(),
                closed: c.closed,
                joined: c.standing == Standing::Member,
                invited: c.standing == Standing::Invited,
                members: c
                    .members
                    .values()
                    .chain(c.hinted.values())
                    .cloned()
                    .collect(),
            })
            .collect()
    }
}

/// Whether a message about channel `id` called `name` may bring it into the table: the
/// public channel of a name is never closed, and no second channel of a known name comes in
/// (except the public one of that name, which anyone computes).
fn may_create(channels: &Channels, id: &str, name: &str, closed: bool) -> bool {
    let public = auth::public_channel_id(name) == id;
    if public {
        return !closed;
    }
    channels.find(name, |_| true).is_none()
}

impl Router {
    /// The channel with `id`, learned from others and created (announced to the user) if new;
    /// `None` (counted) when it may not come in or there is no room.
    pub(crate) fn channel_entry(&mut self, id: &str, name: &str, closed: bool) -> Option<()> {
        if let Some(ch) = self.channels.get(id) {
            if ch.closed != closed {
                // Public or closed from the first time it was heard of.
                self.counters.refused += 1;
                return None;
            }
            return Some(());
        }
        if !may_create(&self.channels, id, name, closed)
            || !self
                .channels
                .insert_foreign(Channel::new(id.to_string(), name.to_string(), closed))
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

    /// JOIN, LEAVE or CHANNEL, first copy, verified (`signed`) or a plain client's.
    pub(crate) fn on_channel_verb(&mut self, now: Instant, body: Body, signed: bool) {
        match body {
            Body::Join(m) => self.on_join(m),
            Body::Leave(m) => self.on_leave(now, m, signed),
            Body::Channel(m) => self.on_channel_info(now, m, signed),
            _ => {}
        }
    }

    /// Floods a JOIN (`join`) or LEAVE of this node, or (`member`) a removal of another,
    /// signed.
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
            auth: Default::default(),
        };
        let mut body = if join { Body::Join(m) } else { Body::Leave(m) };
        auth::sign_state(&self.identity, &mut body);
        self.flood_local(now, body);
    }

    /// Our signed CHANNEL for `channel_id`, listing the members that spoke for themselves.
    pub(crate) fn channel_body(&mut self, channel_id: &str) -> Option<Body> {
        let msg_id = self.new_msg_id();
        let ch = self.channels.get(channel_id)?;
        let mut body = Body::Channel(ChannelInfo {
            msg_id,
            node_id: self.me.clone(),
            channel: ch.name.clone(),
            channel_id: ch.id.clone(),
            members: ch.members.values().cloned().collect(),
            closed: ch.closed,
            auth: Default::default(),
        });
        auth::sign_state(&self.identity, &mut body);
        Some(body)
    }

    /// The seed's option: the channels we know, to a neighbour that just said HELLO (ttl 1,
    /// so it goes no further): public ones, and closed ones we are a member of.
    pub(crate) fn announce_channels_to(&mut self, to: super::NeighbourId) {
        for id in self.channels.ids() {
            let shown = self
                .channels
                .get(&id)
                .is_some_and(|c| !c.closed || c.standing == Standing::Member);
            if !shown {
                continue;
            }
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
            .ids()
            .into_iter()
            .filter(|id| {
                self.channels
                    .get(id)
                    .and_then(|c| c.next_refresh)
                    .is_some_and(|at| at <= now)
            })
            .collect();
        for id in due {
            let delay = super::jitter(&mut self.rng, self.config.channel_refresh);
            if let Some(ch) = self.channels.get_mut(&id) {
                ch.next_refresh = Some(now + self.config.channel_refresh + delay);
            }
            if let Some(body) = self.channel_body(&id) {
                self.flood_local(now, body);
            }
        }
    }
}
