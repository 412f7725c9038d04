//! What the user sees: the router's events turned into the message log, the standing of the
//! user's own messages, and the people heard from.

use super::driver::Driver;
use crate::clock::mono_now;
use base64::Engine;
use kith_chat::router::{ChatEvent, ReceivedMessage};
use kith_crypto::NodeId;
use kith_store::meta::ChatMessageRow;
use std::time::{Duration, SystemTime};

/// How often one node's "last seen" is written at most.
const SEEN_EVERY: Duration = Duration::from_secs(60);

impl Driver {
    pub(super) async fn deliver(&mut self, event: ChatEvent) {
        match event {
            ChatEvent::Message(message) => {
                let author = message.from.clone();
                self.seen(author.guid, author.name.clone()).await;
                if self.muted.contains(&author.guid) {
                    return;
                }
                self.log(row_of(message, None)).await
            }
            ChatEvent::Joined { name, .. } => tracing::info!("chat: joined {name}"),
            ChatEvent::Removed { name, .. } => tracing::info!("chat: removed from {name}"),
            ChatEvent::ConnectRequested { peer, address } => {
                self.start_rendezvous(peer, address, super::connect::Step::Answer)
            }
            ChatEvent::ConnectReady { peer, address } => {
                self.start_rendezvous(peer, address, super::connect::Step::Dial)
            }
            ChatEvent::NotStored { msg_id } => self.not_stored.push(msg_id),
            ChatEvent::Posted {
                msg_id,
                recipients,
                queued,
            } => {
                self.posted.insert(msg_id.clone(), (recipients, queued));
                // A message posted again after a restart (or before its row was logged)
                // updates what the log says.
                let done = self
                    .chat
                    .inner
                    .store
                    .run(move |s| {
                        s.meta()
                            .chat_set_posted(&msg_id, recipients as i64, queued > 0)
                    })
                    .await;
                if let Err(e) = done {
                    tracing::warn!("a chat message's standing could not be recorded: {e}");
                }
            }
            ChatEvent::Delivered { msg_id, .. } => {
                let at = self.chat.settings().clock.unix_secs();
                let done = self
                    .chat
                    .inner
                    .store
                    .run(move |s| s.meta().chat_mark_delivered(&msg_id, at))
                    .await;
                match done {
                    Ok(Some(row)) => self.chat.logged(row.seq),
                    Ok(None) => {}
                    Err(e) => tracing::warn!("a chat receipt could not be recorded: {e}"),
                }
            }
            ChatEvent::Unconfirmed { msg_id, .. } => {
                let done = self
                    .chat
                    .inner
                    .store
                    .run(move |s| s.meta().chat_mark_unconfirmed(&msg_id))
                    .await;
                if let Err(e) = done {
                    tracing::warn!("a chat message's standing could not be recorded: {e}");
                }
            }
            ChatEvent::NeighbourIdentified { node_id, .. } => {
                self.seen(node_id.guid, node_id.name).await
            }
            other => tracing::debug!("chat: {other:?}"),
        }
    }

    /// Records that `guid` was heard from (at most once a minute per node).
    async fn seen(&mut self, guid: NodeId, name: Option<String>) {
        let now = mono_now();
        if self
            .seen_written
            .get(&guid)
            .is_some_and(|at| now.saturating_duration_since(*at) < SEEN_EVERY)
        {
            return;
        }
        if self.seen_written.len() >= 4_096 {
            self.seen_written
                .retain(|_, at| now.saturating_duration_since(*at) < SEEN_EVERY);
        }
        self.seen_written.insert(guid, now);
        let at = self.chat.settings().clock.unix_secs();
        let guid = guid.to_string();
        let done = self
            .chat
            .inner
            .store
            .run(move |s| s.meta().chat_node_seen(&guid, name.as_deref(), at))
            .await;
        if let Err(e) = done {
            tracing::debug!("chat: could not record a node as seen: {e}");
        }
    }

    pub(super) async fn log(&self, row: ChatMessageRow) {
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
}

/// A message as a log row; `own` for the user's own: (its state, recipients, recipient).
pub(super) fn row_of(
    message: ReceivedMessage,
    own: Option<(String, usize, Option<String>)>,
) -> ChatMessageRow {
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
    let (state, recipients, recipient) = match own {
        Some((state, n, to)) => (Some(state), n as i64, to),
        None => (None, 0, None),
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
        sender_guid: Some(message.from.guid.to_string()),
        recipient,
        state,
        recipients,
        delivered: 0,
        delivered_at: None,
    }
}
