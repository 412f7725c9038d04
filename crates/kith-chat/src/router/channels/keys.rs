//! Closed channels' keys: reading a channel's messages, GETKEY, KEY (invitations,
//! rotations, answers), rotation after a departure.
//!
//! A KEY counts only when signed by its sender (verified on arrival) and, for a channel this
//! node is in, only from a member; a key is sent only to a member whose key this node holds
//! from a certificate that derives its id, wrapped to that key. An unasked KEY for a channel
//! this node is not in is an invitation: refused for the public id of a name, or when this
//! node is already in another channel of that name (a stranger's look-alike); accepted, it
//! resets what this node knew of the channel as an outsider (closed, members) to what the
//! inviter signed.

use std::time::Instant;

use kith_crypto::NodeId;

use super::super::caches::SHOWN;
use super::super::forward::Origin;
use super::super::{FileAttachment, PendingKey};
use super::{Channel, Router, Standing};
use crate::auth;
use crate::crypto::{self, KEY_CIPHER};
use crate::message::{Body, ChatId, ChatMessage, Envelope, GetKey, KeyData};

impl Router {
    /// A MESSAGE of a channel, flooded (`flooded`) or routed to us, verified: shown once if we
    /// are a member; a flooded one that its author signed is answered with a receipt (a routed
    /// copy's receipt goes from the routing code, member or not, so its author stops).
    pub(crate) fn on_channel_message(
        &mut self,
        now: Instant,
        m: ChatMessage,
        signed: bool,
        flooded: bool,
    ) {
        let member = self
            .channels
            .get(&m.channel_id)
            .is_some_and(|c| c.standing == Standing::Member);
        let author = m.node_id.guid;
        // Our own, come back (a replay, or a flood older than the flood cache): the user
        // has it already.
        if !member || author == self.me.guid {
            return;
        }
        if flooded && signed && author != self.me.guid {
            self.send_receipt(now, &m.msg_id, author);
        }
        if self
            .delivered
            .insert(now, (m.msg_id.clone(), author, SHOWN))
        {
            self.accept_message(m, signed);
        } else {
            self.counters.duplicates += 1;
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
        let members = ch.members.values().cloned().collect();
        let msg_id = reply_to.unwrap_or_else(|| self.new_msg_id());
        let mut body = Body::Key(KeyData {
            msg_id,
            node_id: self.me.clone(),
            recipient_id: ChatId::new(recipient),
            channel: name,
            channel_id: channel_id.to_string(),
            cipher: KEY_CIPHER.to_string(),
            key: wrapped,
            members,
            auth: Default::default(),
        });
        auth::sign_state(&self.identity, &mut body);
        let mut env = Envelope::new(self.config.default_ttl, body);
        env.target_id = Some(self.chat_id(recipient));
        self.route_or_queue(now, env, recipient, Origin::LocalDurable);
    }

    /// A KEY for us (verified: `signed` by its sender): a rotation, the answer to our GETKEY,
    /// or an invitation.
    pub(crate) fn on_key(&mut self, now: Instant, m: KeyData, signed: bool) {
        let sender = m.node_id.guid;
        let known = self.channels.get(&m.channel_id);
        let in_it =
            known.is_some_and(|c| matches!(c.standing, Standing::Member | Standing::Joining));
        let allowed = signed
            && auth::public_channel_id(&m.channel) != m.channel_id
            && match known {
                // A channel we are in: only a member hands out its keys, and no key makes a
                // public one closed.
                Some(c) if in_it => c.closed && c.members.contains_key(&sender),
                // An invitation (what we heard of the channel as an outsider does not count
                // against it): not to a look-alike of a channel we are in.
                _ => self
                    .channels
                    .find(&m.channel, |c| c.engaged() && c.id != m.channel_id)
                    .is_none(),
            };
        if !allowed {
            self.counters.refused += 1;
            return;
        }
        let Ok(key) = crypto::unwrap_channel_key(&self.identity, &m.cipher, &m.key, &m.channel_id)
        else {
            self.counters.undecryptable += 1;
            return;
        };
        if known.is_none() {
            let channel = Channel::new(m.channel_id.clone(), m.channel.clone(), true);
            if !self.channels.insert_foreign(channel) {
                self.counters.refused += 1;
                return;
            }
            self.deliver(super::ChatEvent::ChannelDiscovered {
                name: m.channel.clone(),
                channel_id: m.channel_id.clone(),
                closed: true,
            });
        }
        let history = self.config.key_history;
        let max = self.config.max_members;
        let auto_join = self.config.auto_join_invites;
        let me = self.me.guid;
        let Some(ch) = self.channels.get_mut(&m.channel_id) else {
            return;
        };
        if !in_it {
            // Whom we join, and that it is closed, is what the inviter signed, not what we
            // heard as an outsider.
            ch.closed = true;
            ch.members.clear();
            ch.hinted.clear();
            ch.departed.clear();
            ch.keys.clear();
        }
        ch.add_key(key, history);
        ch.admit(m.node_id.clone(), max);
        self.dirty_channels.insert(m.channel_id.clone());
        for x in m.members.iter().filter(|x| x.guid != me) {
            if !ch.departed.contains_key(&x.guid) {
                ch.admit(x.clone(), max);
            }
        }
        match ch.standing {
            Standing::Member => {}
            Standing::Joining => self.become_member(now, &m.channel_id),
            Standing::Outside | Standing::Removed | Standing::Invited => {
                if auto_join {
                    self.become_member(now, &m.channel_id);
                } else {
                    ch.standing = Standing::Invited;
                    let (name, channel_id) = (ch.name.clone(), ch.id.clone());
                    self.deliver(super::ChatEvent::Invited {
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
        let delay = super::super::jitter(&mut self.rng, self.config.channel_refresh);
        let me = self.me.clone();
        let Some(ch) = self.channels.get_mut(channel_id) else {
            return;
        };
        ch.standing = Standing::Member;
        ch.departed.remove(&me.guid);
        ch.hinted.remove(&me.guid);
        ch.members.insert(me.guid, me);
        ch.next_refresh = Some(now + self.config.channel_refresh + delay);
        let name = ch.name.clone();
        self.touch_channel(channel_id);
        if announce {
            self.flood_membership(now, channel_id, &name, true, None);
        }
        self.deliver(super::ChatEvent::Joined {
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
        self.dirty_channels.insert(channel_id.to_string());
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
        env.target_id = Some(self.chat_id(member));
        self.route_or_queue(now, env, member, Origin::LocalQueued);
    }
}
