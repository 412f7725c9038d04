//! What a node keeps of its channels across restarts: a [`ChannelRecord`] per channel it is
//! in, saved whenever the channel's state changes (coalesced: once per channel before the
//! router's outputs run dry) and restored before anything else happens after a restart, so
//! that the same channel (id, members, keys) comes back and no new one is made.

use std::time::Instant;

use super::{Channel, Router, Standing};
use crate::crypto;
use crate::router::{ChannelRecord, ChannelStanding, ChatError, Output};

impl Router {
    /// Marks channel `id` for saving.
    pub(crate) fn touch_channel(&mut self, id: &str) {
        if self.dirty_channels.len() < self.config.max_channels.max(1) * 2 {
            self.dirty_channels.insert(id.to_string());
        }
    }

    /// Emits a save (or a drop) for every channel whose record is out of date.
    pub(crate) fn save_dirty_channels(&mut self) {
        for id in std::mem::take(&mut self.dirty_channels) {
            match self.channel_record(&id) {
                Some(record) => {
                    self.saved_channels.insert(id);
                    self.outputs.push_back(Output::SaveChannel(record));
                }
                // Only what was saved needs dropping (strangers' channels never are).
                None if self.saved_channels.remove(&id) => self
                    .outputs
                    .push_back(Output::DropChannel { channel_id: id }),
                None => {}
            }
        }
    }

    /// What to keep of channel `id`, if this node is in it.
    pub fn channel_record(&mut self, id: &str) -> Option<ChannelRecord> {
        let ch = self.channels.get(id)?;
        let standing = match ch.standing {
            Standing::Member => ChannelStanding::Member,
            Standing::Invited => ChannelStanding::Invited,
            Standing::Joining => ChannelStanding::Joining,
            Standing::Outside | Standing::Removed => return None,
        };
        let keys: Vec<crypto::ChannelKey> = ch.keys.iter().map(|(_, k)| k.clone()).collect();
        let (channel_id, name, closed) = (ch.id.clone(), ch.name.clone(), ch.closed);
        let members = ch.members.values().cloned().collect();
        let sealed_keys = if keys.is_empty() {
            Vec::new()
        } else {
            crypto::seal_at_rest(&mut self.rng, &self.identity, &channel_id, &keys)
        };
        Some(ChannelRecord {
            channel_id,
            name,
            closed,
            standing,
            members,
            sealed_keys,
        })
    }

    /// Puts back a channel this node was in before a restart (call before anything else).
    /// Its keys are opened with this node's key; a closed channel whose keys cannot be read
    /// comes back as joining (a member is asked for the key when one is reachable).
    pub fn restore_channel(
        &mut self,
        now: Instant,
        record: ChannelRecord,
    ) -> Result<(), ChatError> {
        if self.channels.get(&record.channel_id).is_some() {
            return Ok(());
        }
        let mut channel = Channel::new(record.channel_id.clone(), record.name, record.closed);
        let max = self.config.max_members;
        for member in record.members.into_iter().take(max) {
            channel.members.insert(member.guid, member);
        }
        let keys = if record.sealed_keys.is_empty() {
            Vec::new()
        } else {
            crypto::open_at_rest(&self.identity, &record.channel_id, &record.sealed_keys)
                .unwrap_or_default()
        };
        // Stored newest first; add_key puts each in front.
        for key in keys.into_iter().rev() {
            channel.add_key(key, self.config.key_history);
        }
        channel.standing = match record.standing {
            _ if record.closed && channel.keys.is_empty() => Standing::Joining,
            ChannelStanding::Member => Standing::Member,
            ChannelStanding::Invited => Standing::Invited,
            ChannelStanding::Joining => Standing::Joining,
        };
        if channel.standing == Standing::Member {
            channel.members.insert(self.me.guid, self.me.clone());
            let delay = crate::router::jitter(&mut self.rng, self.config.channel_refresh);
            channel.next_refresh = Some(now + self.config.channel_refresh + delay);
        }
        for member in channel.members.values().filter(|m| m.guid != self.me.guid) {
            self.people
                .heard(now, member, crate::router::people::Source::Hearsay);
        }
        let id = channel.id.clone();
        if !self.channels.insert_own(channel) {
            return Err(ChatError::LimitReached("channels"));
        }
        self.saved_channels.insert(id.clone());
        if self
            .channels
            .get(&id)
            .is_some_and(|c| c.standing == Standing::Joining)
        {
            self.ask_for_key(now, &id);
        }
        Ok(())
    }
}
