//! JOIN, LEAVE and CHANNEL: who is in a channel, changed only by who may say so.
//!
//! Every message here was verified on arrival ([`crate::router`]'s verification): its author
//! signed it, or is a plain client (no key) that its own node let speak only for itself.
//! - JOIN adds its author (in a closed channel, only an author already listed as a member);
//!   for a channel not heard of yet it counts only if the id is the public one of its name.
//! - LEAVE removes its author; a LEAVE naming another member (a kick) counts only in a
//!   closed channel, signed by a member.
//! - CHANNEL: its author is a member if it lists itself. In a public channel the others it
//!   lists are hints; in a closed one, a CHANNEL signed by a member invites those it lists
//!   (the first CHANNEL a node hears of a closed channel it is outside of is believed for
//!   display only: an invitation resets what a new member knows).

use std::time::Instant;

use super::{Router, Standing};
use crate::message::{ChannelInfo, Membership};

impl Router {
    pub(super) fn on_join(&mut self, m: Membership) {
        // A JOIN says nothing of whether a channel is closed: only the public id of a name
        // (which cannot be closed) comes into the table this way; others wait for a CHANNEL.
        let public = crate::auth::public_channel_id(&m.channel) == m.channel_id;
        if self.channels.get(&m.channel_id).is_none() && !public {
            return;
        }
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
        let new = !ch.members.contains_key(&m.node_id.guid);
        if new && ch.engaged() {
            self.dirty_channels.insert(m.channel_id.clone());
        }
        if !ch.admit(m.node_id.clone(), max) {
            self.counters.refused += 1;
            return;
        }
        if new && ch.standing == Standing::Member {
            let channel_id = ch.id.clone();
            self.deliver(super::ChatEvent::MembershipChanged {
                channel_id,
                member: m.node_id,
                joined: true,
            });
        }
    }

    pub(super) fn on_leave(&mut self, now: Instant, m: Membership, signed: bool) {
        let me = self.me.guid;
        let max = self.config.max_members;
        let Some(ch) = self.channels.get_mut(&m.channel_id) else {
            return;
        };
        let target = m.member.clone().unwrap_or_else(|| m.node_id.clone());
        let kick = target.guid != m.node_id.guid;
        // Removing someone else takes a member's signature, in a closed channel.
        if kick && !(signed && ch.closed && ch.members.contains_key(&m.node_id.guid)) {
            self.counters.refused += 1;
            return;
        }
        let was_member = ch.members.contains_key(&target.guid);
        ch.depart(target.guid, now, max);
        if was_member && ch.engaged() {
            self.dirty_channels.insert(m.channel_id.clone());
        }
        let member_here = ch.standing == Standing::Member;
        let channel_id = ch.id.clone();
        let name = ch.name.clone();
        if target.guid == me {
            if !kick {
                // A LEAVE in our name that we did not send: it was verified, so it is an old
                // one of ours come back; we stay where we are.
                if member_here {
                    ch.departed.remove(&me);
                    ch.members.insert(me, self.me.clone());
                }
                return;
            }
            ch.standing = Standing::Removed;
            ch.keys.clear();
            ch.next_refresh = None;
            self.dirty_channels.insert(m.channel_id.clone());
            self.deliver(super::ChatEvent::Removed { name, channel_id });
            return;
        }
        if member_here && was_member {
            self.deliver(super::ChatEvent::MembershipChanged {
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

    pub(super) fn on_channel_info(&mut self, now: Instant, m: ChannelInfo, signed: bool) {
        if self
            .channel_entry(&m.channel_id, &m.channel, m.closed)
            .is_none()
        {
            return;
        }
        let me = self.me.guid;
        let max = self.config.max_members;
        let refresh = self.config.channel_refresh;
        let delay = super::super::jitter(&mut self.rng, refresh);
        let Some(ch) = self.channels.get_mut(&m.channel_id) else {
            return;
        };
        let author = m.node_id.guid;
        let lists_itself = m.members.iter().any(|x| x.guid == author);
        let before = ch.members.len();
        if ch.closed {
            let member = ch.members.contains_key(&author);
            let first = ch.members.is_empty() && ch.standing == Standing::Outside;
            if signed && (member || (first && lists_itself)) {
                for x in &m.members {
                    if !ch.departed.contains_key(&x.guid) {
                        ch.admit(x.clone(), max);
                    }
                }
            } else {
                self.counters.refused += 1;
            }
        } else {
            if lists_itself && !ch.departed.contains_key(&author) {
                ch.admit(m.node_id.clone(), max);
            }
            for x in &m.members {
                let known = ch.members.contains_key(&x.guid) || ch.departed.contains_key(&x.guid);
                if x.guid != author && !known && ch.hinted.len() < max {
                    ch.hinted.insert(x.guid, x.clone());
                }
            }
        }
        let listed = m.members.iter().any(|x| x.guid == me);
        let (id, name) = (ch.id.clone(), ch.name.clone());
        if ch.members.len() != before && ch.engaged() {
            self.dirty_channels.insert(id.clone());
        }
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
                ch.hinted.remove(&me);
                self.flood_membership(now, &id, &name, false, None);
            }
            _ => {}
        }
    }
}
