//! Verbs addressed to this node or to the link itself: HELLO, ROUTING, CONNECT, certificates,
//! direct messages, NACKs; and the certificate fetching that verification waits on.

use std::net::IpAddr;
use std::time::Instant;

use kith_crypto::NodeId;

use super::caches::BindOutcome;
use super::forward::Origin;
use super::{ChatEvent, CutOffReason, NeighbourId, NeighbourKind, ReceivedMessage, Router};
use crate::crypto;
use crate::message::{
    Body, CertificateData, ChatId, ChatMessage, Connect, Envelope, GetCertificate, Hello, Routing,
};

impl Router {
    pub(crate) fn on_hello(&mut self, now: Instant, from: NeighbourId, hello: Hello) {
        let Some(n) = self.neighbours.get(&from) else {
            return;
        };
        if let Some(known) = &n.node_id {
            // A second HELLO on the same connection: harmless if it says the same.
            if *known != hello.node_id {
                self.refuse(now, from);
            }
            return;
        }
        let guid = hello.node_id.guid;
        let allowed = match &n.info.kind {
            NeighbourKind::Node { agent } => agent.node_id() == guid,
            NeighbourKind::Client => {
                // Any GUID not in use: not ours, not another neighbour's, not reachable
                // through anyone else.
                guid != self.me.guid
                    && !self
                        .neighbours
                        .values()
                        .any(|o| o.node_id.as_ref().is_some_and(|id| id.guid == guid))
                    && self.table.route(&guid).is_none()
            }
        };
        if !allowed {
            self.counters.hello_refused += 1;
            self.cut_off(now, from, CutOffReason::IdentityRefused);
            return;
        }
        if let NeighbourKind::Node { agent } = n.info.kind.clone() {
            self.certs.bind(guid, agent);
        }
        if let Some(n) = self.neighbours.get_mut(&from) {
            n.node_id = Some(hello.node_id.clone());
            n.node_type = Some(hello.node_type);
        }
        self.send_hello(from);
        self.deliver(ChatEvent::NeighbourIdentified {
            neighbour: from,
            node_id: hello.node_id,
        });
        self.table.add_neighbour(from, guid);
        self.send_table_to(from, guid);
        self.announce_channels_to(from);
    }

    pub(crate) fn on_routing(&mut self, now: Instant, from: NeighbourId, routing: Routing) {
        let Some(n) = self.neighbours.get(&from) else {
            return;
        };
        let from_node = matches!(n.info.kind, NeighbourKind::Node { .. });
        let same = n
            .node_id
            .as_ref()
            .is_some_and(|id| id.guid == routing.node_id.guid);
        if !from_node || !same {
            // Clients are leaves: believing their routes would let anyone hijack an id.
            self.refuse(now, from);
            return;
        }
        self.table.apply(
            from,
            routing.nodes.into_iter().map(|e| (e.node_id.guid, e.ttl)),
        );
    }

    /// A routed copy whose target is this node.
    pub(crate) fn on_local(&mut self, now: Instant, _from: NeighbourId, env: Envelope) {
        match env.body {
            Body::GetCertificate(m) => {
                let body = Body::Certificate(CertificateData {
                    msg_id: m.msg_id,
                    node_id: self.me.clone(),
                    recipient_id: m.node_id.clone(),
                    certificate: self.certificate.clone(),
                });
                let mut out = Envelope::new(self.config.default_ttl, body);
                out.target_id = Some(m.node_id.guid);
                self.route_or_queue(now, out, m.node_id.guid, Origin::LocalQueued);
            }
            Body::Certificate(m) => self.on_certificate(now, m),
            Body::GetKey(m) => self.on_getkey(now, m),
            Body::Key(m) => self.on_key(now, m),
            Body::Message(m) => self.accept_message(now, m),
            Body::Nack(m) => self.deliver(ChatEvent::Nacked {
                msg_id: m.msg_id,
                by: m.node_id,
            }),
            _ => {}
        }
    }

    fn on_certificate(&mut self, now: Instant, m: CertificateData) {
        let Ok(key) = crypto::certificate_key(&m.certificate) else {
            self.counters.refused += 1;
            return;
        };
        let guid = m.node_id.guid;
        if self.certs.bind(guid, key) == BindOutcome::Conflict {
            self.counters.refused += 1;
            return;
        }
        self.cert_requests.remove(&guid);
        let waiting: Vec<ChatMessage> = {
            let (hit, keep): (Vec<_>, Vec<_>) = self
                .pending_verify
                .drain(..)
                .partition(|(_, msg)| msg.node_id.guid == guid);
            self.pending_verify = keep.into();
            hit.into_iter().map(|(_, msg)| msg).collect()
        };
        for msg in waiting {
            self.accept_message(now, msg);
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
        env.target_id = Some(target);
        self.route_or_queue(now, env, target, Origin::LocalQueued);
    }

    /// A MESSAGE for the local user: verified against its author's key (fetched first if
    /// need be), decrypted in a closed channel, then delivered.
    pub(crate) fn accept_message(&mut self, now: Instant, m: ChatMessage) {
        let Some(key) = self.certs.get(&m.node_id.guid).copied() else {
            if self.pending_verify.len() >= self.config.max_pending_verify.max(1) {
                self.pending_verify.pop_front();
                self.counters.unverifiable += 1;
            }
            let author = m.node_id.guid;
            self.pending_verify
                .push_back((now + self.config.certificate_timeout, m));
            self.request_certificate(now, author);
            return;
        };
        let Some(body) = crypto::verify_message(&key, &m) else {
            self.counters.forged += 1;
            return;
        };
        let (text, attachments) = if m.is_channel() {
            match self.open_channel_body(&m, body) {
                Some(opened) => opened,
                None => return,
            }
        } else {
            let attachments = m
                .attachments
                .iter()
                .map(|a| super::FileAttachment {
                    mime_type: a.mime_type.clone(),
                    data: a.data.clone(),
                })
                .collect();
            (body.to_vec(), attachments)
        };
        let Ok(text) = String::from_utf8(text) else {
            self.counters.invalid += 1;
            return;
        };
        self.counters.delivered += 1;
        let channel = m
            .is_channel()
            .then(|| (m.channel.clone(), m.channel_id.clone()));
        self.deliver(ChatEvent::Message(ReceivedMessage {
            msg_id: m.msg_id,
            from: m.node_id,
            channel,
            timestamp: m.timestamp,
            text,
            attachments,
        }));
    }

    /// Drops what waited too long for a certificate.
    pub(crate) fn expire_waits(&mut self, now: Instant) {
        while self
            .pending_verify
            .front()
            .is_some_and(|(at, _)| *at <= now)
        {
            self.pending_verify.pop_front();
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

    /// CONNECT: fill in the observed address of the neighbour it came from when that
    /// neighbour is one of the two ends and gave only a port, then pass it on (towards the
    /// target while `dst` is empty, back towards the initiator once it is filled) or, at its
    /// end, tell the user.
    pub(crate) fn on_connect(&mut self, _now: Instant, from: NeighbourId, env: Envelope) {
        let Body::Connect(mut c) = env.body else {
            return;
        };
        let Some(n) = self.neighbours.get(&from) else {
            return;
        };
        let neighbour_guid = n.node_id.as_ref().map(|id| id.guid);
        let observed = n.info.observed_ip;
        if neighbour_guid == Some(c.src_node_id.guid) && is_port(&c.src) {
            if let Some(ip) = observed {
                c.src = socket(ip, &c.src);
            }
        }
        if neighbour_guid == Some(c.dst_node_id.guid) && is_port(&c.dst) {
            if let Some(ip) = observed {
                c.dst = socket(ip, &c.dst);
            }
        }
        let answer = !c.dst.is_empty();
        let target = if answer {
            c.src_node_id.guid
        } else {
            c.dst_node_id.guid
        };
        if target == self.me.guid {
            self.deliver(if answer {
                ChatEvent::ConnectReady {
                    peer: c.dst_node_id,
                    address: c.dst,
                }
            } else {
                ChatEvent::ConnectRequested {
                    peer: c.src_node_id,
                    address: c.src,
                }
            });
            return;
        }
        let ttl = env.ttl.saturating_sub(1);
        if ttl == 0 {
            self.counters.ttl_expired += 1;
            return;
        }
        self.send_connect(c, ttl, Some(from));
    }

    /// Routes a CONNECT (never queued: a rendezvous is only useful now). False without a
    /// route.
    pub(crate) fn send_connect(&mut self, c: Connect, ttl: u8, from: Option<NeighbourId>) -> bool {
        let target = if c.dst.is_empty() {
            c.dst_node_id.guid
        } else {
            c.src_node_id.guid
        };
        match self
            .table
            .route(&target)
            .filter(|r| Some(r.next_hop) != from)
        {
            Some(route) => {
                self.counters.routed += u64::from(from.is_some());
                self.transmit(route.next_hop, Envelope::new(ttl, Body::Connect(c)));
                true
            }
            None => false,
        }
    }

    /// CONNECT step 1: ask `peer`, through whoever routes to it, for a direct connection;
    /// `local_port` is the port this node opened for it. False without a route.
    pub fn connect(&mut self, peer: NodeId, local_port: u16) -> bool {
        let c = Connect {
            src_node_id: self.me.clone(),
            dst_node_id: ChatId::new(peer),
            dst: String::new(),
            src: local_port.to_string(),
        };
        let ttl = self.config.default_ttl;
        self.send_connect(c, ttl, None)
    }

    /// CONNECT step 3: answer a [`ChatEvent::ConnectRequested`] with the port this node opened.
    pub fn answer_connect(&mut self, peer: &ChatId, peer_address: &str, local_port: u16) -> bool {
        let c = Connect {
            src_node_id: peer.clone(),
            dst_node_id: self.me.clone(),
            dst: local_port.to_string(),
            src: peer_address.to_string(),
        };
        let ttl = self.config.default_ttl;
        self.send_connect(c, ttl, None)
    }
}

/// A partial socket: a port alone.
fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

fn socket(ip: IpAddr, port: &str) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}
