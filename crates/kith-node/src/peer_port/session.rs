//! One peer-port session: moves bytes between a socket and its [`TextPort`], and answers the
//! session's questions: store questions through [`Access`] (what this client may see),
//! received items as anonymous items or into a custody copy, own commands from the
//! reference's interactive rule with custody's first.

use super::access::Access;
use super::{other_client, other_clients, Client, PeerPort};
use crate::clock::mono_now;
use crate::exchange::answer::{answer_from_store, read_item, split_item};
use crate::exchange::custodian::{Custodian, CustodianPolicy};
use crate::exchange::Exchange;
use crate::store::StoreFailure;
use bytes::Bytes;
use kith_proto::files::{
    Command, ContentHash, Event, InteractiveTestPolicy, Policy, Role, Session, SessionConfig,
    State, Target, TextPort, HELLO_ITEM,
};
use kith_store::meta::AnonymousOutcome;
use kith_store::{AnonymousPut, AnonymousStored};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How one pass over a stream ended.
pub(super) enum Pass {
    /// The session is over.
    Finished,
    /// The client asked for TLS: switch the socket, then continue.
    StartTls,
}

/// A session's state across the plain and the TLS pass.
pub(super) struct PeerSession<'a> {
    state: &'a PeerPort,
    client: &'a Client,
    port: TextPort,
    policy: InteractiveTestPolicy,
    custodian: Custodian,
    access: Access,
}

impl<'a> PeerSession<'a> {
    pub(super) fn new(state: &'a PeerPort, client: &'a Client) -> PeerSession<'a> {
        let limits = state.inner.exchange.limits();
        let session = Session::new(
            Role::Responder,
            SessionConfig::interactive(limits),
            mono_now(),
        );
        let others = other_clients(state, client.id)
            .iter()
            .map(ToString::to_string)
            .collect();
        PeerSession {
            state,
            client,
            port: TextPort::new(session, limits),
            policy: InteractiveTestPolicy::new(rand::random(), others),
            custodian: Custodian::default(),
            access: Access::new(state.inner.settings.open_store),
        }
    }

    fn ex(&self) -> &'a Exchange {
        &self.state.inner.exchange
    }

    /// TLS is up: the session says `(okay)` over it.
    pub(super) fn tls_started(&mut self) -> Result<(), String> {
        self.port
            .session_mut()
            .tls_started(mono_now())
            .map_err(|e| e.to_string())?;
        self.port.process(mono_now());
        Ok(())
    }

    /// Runs the session over `stream` until it ends or asks for TLS.
    pub(super) async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
    ) -> Result<Pass, String> {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let out = self.pending();
            if !out.is_empty() {
                stream.write_all(&out).await.map_err(|e| e.to_string())?;
                stream.flush().await.map_err(|e| e.to_string())?;
            }
            if let Some(event) = self.port.poll_event() {
                if let Some(pass) = self.answer(event).await? {
                    // Whatever the session still had to say goes out before we stop or switch.
                    let out = self.pending();
                    let _ = stream.write_all(&out).await;
                    let _ = stream.flush().await;
                    return Ok(pass);
                }
                self.port.process(mono_now());
                continue;
            }
            if self.port.is_finished() {
                return Ok(Pass::Finished);
            }
            let deadline = self.port.poll_timeout().map(tokio::time::Instant::from_std);
            let sleep = crate::clock::sleep_until_opt(deadline);
            // Until the first command is in, read a byte at a time: if it is `tls`, the
            // client's TLS handshake follows it at once and must not be swallowed as text.
            let read_len = if self.port.session().state() == State::Fresh {
                1
            } else {
                buf.len()
            };
            tokio::select! {
                read = stream.read(&mut buf[..read_len]), if self.port.wants_bytes() => {
                    let n = read.map_err(|e| e.to_string())?;
                    if n == 0 {
                        return Ok(Pass::Finished);
                    }
                    self.port.handle_bytes(mono_now(), &buf[..n]);
                }
                _ = sleep => self.port.handle_timeout(mono_now()),
            }
        }
    }

    fn pending(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(bytes) = self.port.poll_transmit() {
            out.extend_from_slice(&bytes);
        }
        out
    }

    /// Answers one session event. Returns `Some` when the pass must end.
    async fn answer(&mut self, event: Event) -> Result<Option<Pass>, String> {
        let ex = self.ex();
        let now = mono_now;
        let result = match event {
            Event::HaveItem { hash } => {
                let seen = self.may_see(hash).await?;
                if !seen {
                    self.state.inner.counters.peer_items_hidden.bump();
                }
                let have = seen && {
                    let item = hash;
                    ex.store()
                        .run(move |s| s.blobs().contains(&item))
                        .await
                        .map_err(|e| e.to_string())?
                };
                self.port.session_mut().answer_have(now(), have)
            }
            Event::ReadItem { hash } => {
                let item = self.read(hash).await?;
                self.port.session_mut().supply_verified_item(now(), item)
            }
            Event::StoreItem { hash, item } => {
                let ok = self.store(hash, item).await;
                self.port.session_mut().stored(now(), ok)
            }
            Event::PeerCommand(Command::Chk {
                target: Target::Hash(hash),
                nonce: None,
            }) => {
                if self.may_see(hash).await? {
                    self.custodian.on_chk(ex, hash).await;
                } else {
                    // The plain content, if here, is not this client's to see: custody
                    // answers as it does when only copies are here.
                    self.custodian.on_chk_unseen(ex, hash).await;
                }
                Ok(())
            }
            Event::PeerCommand(Command::Put { hash }) => {
                // An item the client may not see is not skipped: it arrives, and custody
                // looks at it when it has been stored.
                if self.may_see(hash).await? {
                    self.custodian.on_put(ex, hash).await;
                }
                Ok(())
            }
            Event::PipAddress => {
                let addr = other_client(self.state, self.client.id);
                self.port.session_mut().answer_pip(now(), &addr)
            }
            Event::ChooseCommand(ctx) => {
                let mut policy = CustodianPolicy {
                    custodian: &mut self.custodian,
                    inner: &mut self.policy,
                };
                let cmd = policy.choose(&ctx);
                self.access.note_own(&cmd);
                self.port.session_mut().answer_command(now(), cmd)
            }
            Event::StartTls => return Ok(Some(Pass::StartTls)),
            Event::Closed(reason) => {
                tracing::debug!(?reason, "peer session closed");
                return Ok(Some(Pass::Finished));
            }
            other @ Event::ResolveTag { .. } => {
                answer_from_store(ex.store(), self.port.session_mut(), other)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(())
            }
            Event::Ready | Event::PeerCommand(_) | Event::Reply { .. } => Ok(()),
        };
        result.map(|()| None).map_err(|e| e.to_string())
    }

    async fn may_see(&self, hash: ContentHash) -> Result<bool, String> {
        self.access
            .may_see(self.ex(), hash)
            .await
            .map_err(|e| e.to_string())
    }

    /// Reads `hash` for the session: for our own command as it is, for the client only if it
    /// may see it (otherwise as if it were not here). The hello file is built in.
    async fn read(&mut self, hash: ContentHash) -> Result<Option<Bytes>, String> {
        let own = self.access.take_own(hash);
        if !own && !self.may_see(hash).await? {
            self.state.inner.counters.peer_items_hidden.bump();
            return Ok(None);
        }
        let mut item = read_item(self.ex().store(), hash)
            .await
            .map_err(|e| e.to_string())?;
        if item.is_none() && hash == ContentHash::hello() {
            item = Some(Bytes::from_static(HELLO_ITEM));
        }
        if let Some(item) = &item {
            if own {
                self.access.on_own_item(hash, item);
            } else {
                self.access.on_served(hash, item);
            }
        }
        Ok(item)
    }

    /// Keeps an item the client sent: into the custody copy being made if custody asked for
    /// it, otherwise as an anonymous item (the hello file is built in and not stored). Returns
    /// whether it is kept.
    async fn store(&mut self, hash: ContentHash, item: Bytes) -> bool {
        let ex = self.ex();
        let counters = &self.state.inner.counters;
        let ok = match self
            .custodian
            .take_into_custody(ex, hash, item.clone())
            .await
        {
            Some(custody) => custody.is_ok(),
            None => {
                let kept = hash == ContentHash::hello()
                    || match self.store_anonymous(hash, item.clone()).await {
                        Ok(stored) => {
                            match stored.outcome {
                                AnonymousOutcome::Recorded { evicted } => {
                                    counters.anonymous_items_stored.bump();
                                    counters.anonymous_items_evicted.add(evicted as u64);
                                }
                                AnonymousOutcome::AlreadyHeld => {}
                                AnonymousOutcome::Refused => {
                                    counters.anonymous_items_refused.bump();
                                }
                            }
                            stored.is_stored()
                        }
                        Err(e) => {
                            tracing::info!("could not store a peer-port item: {e}");
                            counters.anonymous_items_refused.bump();
                            false
                        }
                    };
                if kept {
                    self.access.note_put(hash);
                    self.custodian.on_item_stored(ex, &item).await;
                }
                kept
            }
        };
        if ok {
            counters.peer_items_received.bump();
        }
        ok
    }

    async fn store_anonymous(
        &self,
        hash: ContentHash,
        item: Bytes,
    ) -> Result<AnonymousStored, StoreFailure> {
        let limits = self.ex().node_limits();
        let quota = self.state.anonymous_quota();
        let ttl_secs = limits.anonymous_item_secs;
        let now = self.state.inner.settings.clock.unix_secs();
        let client = self.client.key.clone();
        self.ex()
            .store()
            .run(move |s| {
                let (item_type, content) = split_item(&item)?;
                let put = AnonymousPut {
                    client: &client,
                    quota,
                    ttl_secs,
                    now,
                };
                s.put_anonymous(Some(hash), item_type, content, &put)
            })
            .await
    }
}
