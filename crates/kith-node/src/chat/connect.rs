//! CONNECT, the seed's rendezvous, as the node carries it out: two nodes that know each other
//! only through a third learn each other's addresses (the relay fills in what it observed)
//! and open a direct secure link.
//!
//! A link needs the other node's Ed25519 key (N + KK), which CONNECT does not carry: the
//! driver asks for the node's certificate and goes on once the router has bound a key to the
//! node id, and only if the node id is the one derived from that key (a kith node's), so a
//! relay cannot steer us to an impostor. Then:
//! - the node asked ([`Step::Answer`]) records the asker as a peer at its observed address
//!   and answers with its own secure-link port (step 3), so that the asker's dial is accepted;
//! - the asker ([`Step::Dial`], on the answer, step 5) records the other node and dials it.
//!
//! Pending rendezvous are bounded ([`MAX_PENDING`]) and expire after [`WAIT`].

use super::driver::Driver;
use kith_chat::message::ChatId;
use kith_crypto::identity::AgentId;
use kith_store::meta::PeerUpsert;
use std::time::{Duration, Instant};

/// Rendezvous waiting for a key at once.
pub(super) const MAX_PENDING: usize = 64;

/// How long a rendezvous waits for the other node's certificate.
pub(super) const WAIT: Duration = Duration::from_secs(30);

/// What to do once the other node's key is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// We were asked: record the asker, answer with our port.
    Answer,
    /// Our request was answered: record the node and dial it.
    Dial,
}

#[derive(Debug)]
struct Pending {
    peer: ChatId,
    address: String,
    step: Step,
    deadline: Instant,
}

/// Rendezvous waiting for keys.
#[derive(Debug, Default)]
pub(super) struct Rendezvous {
    pending: Vec<Pending>,
}

/// `host:port` split, the port parsed.
fn host_port(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_owned(), port.parse().ok()?))
}

impl Driver {
    pub(super) fn start_rendezvous(&mut self, peer: ChatId, address: String, step: Step) {
        if host_port(&address).is_none() {
            self.chat.inner.counters.chat_connects_refused.bump();
            return;
        }
        let pending = &mut self.rendezvous.pending;
        if pending.len() >= MAX_PENDING {
            pending.remove(0);
            self.chat.inner.counters.chat_connects_dropped.bump();
        }
        self.router
            .fetch_certificate(crate::clock::mono_now(), peer.guid);
        self.rendezvous.pending.push(Pending {
            peer,
            address,
            step,
            deadline: crate::clock::mono_now() + WAIT,
        });
    }

    /// Goes on with every rendezvous whose key has come; drops the expired ones.
    pub(super) async fn advance_rendezvous(&mut self) {
        if self.rendezvous.pending.is_empty() {
            return;
        }
        let now = crate::clock::mono_now();
        let mut ready = Vec::new();
        let mut keep = Vec::new();
        for p in std::mem::take(&mut self.rendezvous.pending) {
            match self.router.key_of(&p.peer.guid) {
                Some(key) => ready.push((p, key)),
                None if now < p.deadline => keep.push(p),
                None => self.chat.inner.counters.chat_connects_expired.bump(),
            }
        }
        self.rendezvous.pending = keep;
        for (p, key) in ready {
            self.complete(p, key).await;
        }
    }

    async fn complete(&mut self, p: Pending, key: AgentId) {
        if key.node_id() != p.peer.guid {
            // Not a kith node's own id: no secure link to open.
            self.chat.inner.counters.chat_connects_refused.bump();
            return;
        }
        let Some((host, port)) = host_port(&p.address) else {
            return;
        };
        if key == self.chat.inner.endpoint.agent() {
            return;
        }
        let mut up = PeerUpsert::new(&key);
        up.host = Some(host);
        up.port = Some(port);
        up.notes = Some("introduced by a chat CONNECT".to_owned());
        let now = self.chat.settings().clock.unix_secs();
        let recorded = self
            .chat
            .inner
            .store
            .run(move |s| {
                // A blocked agent stays blocked.
                if s.meta().is_agent_blocked(&up.agent)? {
                    return Ok(false);
                }
                s.meta().upsert_peer(&up, now).map(|_| true)
            })
            .await;
        if !matches!(recorded, Ok(true)) {
            self.chat.inner.counters.chat_connects_refused.bump();
            return;
        }
        match p.step {
            Step::Answer => {
                let Some(our_port) = self.chat.settings().listen_port else {
                    return;
                };
                self.router.answer_connect(&p.peer, &p.address, our_port);
                self.chat.inner.counters.chat_connects_answered.bump();
            }
            Step::Dial => {
                let chat = self.chat.clone();
                tokio::spawn(async move {
                    match chat.inner.endpoint.ensure_link(key).await {
                        Ok(()) => chat.inner.counters.chat_connects_linked.bump(),
                        Err(e) => {
                            chat.inner.counters.chat_connects_failed.bump();
                            tracing::info!(peer = %key, "CONNECT: could not link: {e}");
                        }
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(
            host_port("127.0.0.1:7420"),
            Some(("127.0.0.1".into(), 7420))
        );
        assert_eq!(host_port("[::1]:7420"), Some(("::1".into(), 7420)));
        assert_eq!(host_port("7420"), None);
        assert_eq!(host_port("host:port"), None);
    }
}
