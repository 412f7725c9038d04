//! Verification before anything is acted on or passed on.
//!
//! Every message that speaks for a key-derived id is checked against the key that derives
//! it, at every node, before it is forwarded, flooded or acted on: a MESSAGE's signature (in
//! `message`), the signature of JOIN, LEAVE, CHANNEL and KEY ([`auth::state_bytes`]), of an
//! end-to-end receipt ([`auth::receipt_bytes`]). The key is the message's `public_key` when
//! it carries one (refused unless it derives the id), else the certificate cache, else the
//! message waits (bounded) while the author's certificate is fetched. A certificate binds
//! only a key that derives its id, on every path, asked for or not.
//!
//! A message whose author has a plain id (a client that proves no key) cannot be verified by
//! anyone: it passes as unsigned, and what it may change is limited accordingly.

use std::time::Instant;

use kith_crypto::{AgentId, NodeId};

use super::caches::BindOutcome;
use super::forward::Origin;
use super::{NeighbourId, Router};
use crate::auth;
use crate::crypto;
use crate::message::{Body, CertificateData, Envelope, GetCertificate};

/// What verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Signed by the key that derives its author's id.
    Signed,
    /// Its author has a plain id: nobody can verify it.
    Unsigned,
    /// Nothing to verify (a request, a per-hop ACK, a valid certificate).
    Pass,
    /// The author's key is not known yet: held while it is fetched.
    Wait,
    /// Refused and counted (a bad signature, a missing one, a key or certificate that does
    /// not derive the id).
    Refuse,
}

/// A message held until its author's key comes.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub deadline: Instant,
    pub from: NeighbourId,
    pub author: NodeId,
    pub envelope: Envelope,
}

impl Router {
    /// The key of `author`: the one a message names (which must derive the id), or the one
    /// known; `Err` when the named key is wrong.
    fn key_for(&mut self, author: NodeId, named: Option<&[u8; 32]>) -> Result<Option<AgentId>, ()> {
        match named {
            Some(raw) => {
                let key = AgentId::from_bytes(raw).map_err(|_| ())?;
                if self.certs.bind(author, key) == BindOutcome::Refused {
                    return Err(());
                }
                Ok(Some(key))
            }
            None => Ok(self.certs.get(&author).copied()),
        }
    }

    /// Checks `env` (see the module documentation); counts what it refuses.
    pub(crate) fn authenticate(&mut self, env: &Envelope) -> Gate {
        let gate = match &env.body {
            Body::Message(m) => {
                let author = m.node_id.guid;
                if !auth::key_form(&author) {
                    return Gate::Unsigned;
                }
                match self.key_for(author, m.public_key.as_ref()) {
                    Ok(Some(key)) if crypto::verify_message(&key, m).is_some() => Gate::Signed,
                    Ok(None) => Gate::Wait,
                    _ => Gate::Refuse,
                }
            }
            Body::Join(_) | Body::Leave(_) | Body::Channel(_) | Body::Key(_) => {
                let Some(author) = env.body.author().map(|a| a.guid) else {
                    return Gate::Refuse;
                };
                if !auth::key_form(&author) {
                    return Gate::Unsigned;
                }
                let (Some(signed), Some(bytes)) =
                    (auth::state_auth(&env.body), auth::state_bytes(&env.body))
                else {
                    return Gate::Refuse;
                };
                if signed.signature.is_none() {
                    Gate::Refuse
                } else {
                    match self.key_for(author, signed.public_key.as_ref()) {
                        Ok(Some(key)) if auth::check(&key, signed, &bytes).is_ok() => Gate::Signed,
                        Ok(None) => Gate::Wait,
                        _ => Gate::Refuse,
                    }
                }
            }
            Body::Ack(a) => match (a.recipient_id, &a.node_id) {
                (None, _) => Gate::Pass,
                (Some(author), Some(signer)) if auth::key_form(&signer.guid) => {
                    let signer = signer.guid;
                    let bytes = auth::receipt_bytes(&a.msg_id, &signer, &author);
                    match self.key_for(signer, a.auth.public_key.as_ref()) {
                        Ok(Some(key)) if auth::check(&key, &a.auth, &bytes).is_ok() => Gate::Signed,
                        Ok(None) => Gate::Wait,
                        _ => Gate::Refuse,
                    }
                }
                _ => Gate::Refuse,
            },
            Body::Certificate(c) => {
                let derives = crypto::certificate_key(&c.certificate)
                    .is_ok_and(|key| c.node_id.guid.is_derived_from(key.as_bytes()));
                if !derives {
                    self.counters.certificates_refused += 1;
                    return Gate::Refuse;
                }
                Gate::Pass
            }
            _ => Gate::Pass,
        };
        if gate == Gate::Refuse {
            self.counters.forged += 1;
        }
        gate
    }

    /// Keeps `env` until its author's key comes (fetching the certificate), bounded.
    pub(crate) fn hold(&mut self, now: Instant, from: NeighbourId, env: Envelope) {
        let Some(author) = env.body.author().map(|a| a.guid).or(match &env.body {
            Body::Ack(a) => a.node_id.as_ref().map(|i| i.guid),
            _ => None,
        }) else {
            return;
        };
        let same = |h: &Held| h.author == author && h.envelope.msg_id() == env.msg_id();
        if self.held.iter().any(same) {
            return;
        }
        if self.held.len() >= self.config.max_pending_verify.max(1) {
            self.held.pop_front();
            self.counters.unverifiable += 1;
        }
        self.held.push_back(Held {
            deadline: now + self.config.certificate_timeout,
            from,
            author,
            envelope: env,
        });
        self.request_certificate(now, author);
    }

    /// A CERTIFICATE for us (its key derives its id: checked on arrival): binds the key and
    /// goes on with what waited for it.
    pub(crate) fn on_certificate(&mut self, now: Instant, m: CertificateData) {
        let Ok(key) = crypto::certificate_key(&m.certificate) else {
            return;
        };
        let guid = m.node_id.guid;
        if self.certs.bind(guid, key) == BindOutcome::Refused {
            self.counters.certificates_refused += 1;
            return;
        }
        self.cert_requests.remove(&guid);
        let (ready, keep): (Vec<Held>, Vec<Held>) =
            self.held.drain(..).partition(|h| h.author == guid);
        self.held = keep.into();
        for h in ready {
            self.dispatch(now, h.from, h.envelope);
        }
        let keys: Vec<_> = {
            let (hit, keep): (Vec<_>, Vec<_>) = self
                .pending_keys
                .drain(..)
                .partition(|p| p.recipient == guid);
            self.pending_keys = keep.into();
            hit
        };
        for p in keys {
            self.send_key(now, &p.channel_id, p.recipient, p.reply_to);
        }
    }

    /// Asks `target` for its certificate, unless a request is already out.
    pub(crate) fn request_certificate(&mut self, now: Instant, target: NodeId) {
        if self.cert_requests.contains_key(&target) {
            return;
        }
        let deadline = now + self.config.certificate_timeout;
        self.cert_requests.insert(target, deadline);
        self.cert_request_order.push_back((deadline, target));
        let body = Body::GetCertificate(GetCertificate {
            msg_id: self.new_msg_id(),
            node_id: self.me.clone(),
            recipient_id: Some(target),
        });
        let mut env = Envelope::new(self.config.default_ttl, body);
        env.target_id = Some(self.chat_id(target));
        self.route_or_queue(now, env, target, Origin::LocalQueued);
    }

    /// Drops what waited too long for a certificate.
    pub(crate) fn expire_waits(&mut self, now: Instant) {
        while self.held.front().is_some_and(|h| h.deadline <= now) {
            self.held.pop_front();
            self.counters.unverifiable += 1;
        }
        while let Some((at, target)) = self.cert_request_order.front().copied() {
            if at > now {
                break;
            }
            self.cert_request_order.pop_front();
            if self.cert_requests.get(&target) == Some(&at) {
                self.cert_requests.remove(&target);
            }
        }
        while self.pending_keys.front().is_some_and(|p| p.deadline <= now) {
            self.pending_keys.pop_front();
        }
    }
}
