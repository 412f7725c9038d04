//! Verbs addressed to this node: certificate requests, direct messages, keys, receipts,
//! NACKs; and CONNECT, the rendezvous.

use std::net::IpAddr;
use std::time::Instant;

use kith_crypto::NodeId;

use super::forward::Origin;
use super::{ChatEvent, NeighbourId, ReceivedMessage, Router};
use crate::crypto;
use crate::message::{Body, CertificateData, ChatId, ChatMessage, Connect, Envelope};

impl Router {
    /// A routed copy whose target is this node (verified: `signed` when its author's key
    /// checked out, false for a plain client's).
    pub(crate) fn on_local(
        &mut self,
        now: Instant,
        _from: NeighbourId,
        env: Envelope,
        signed: bool,
    ) {
        match env.body {
            Body::GetCertificate(m) => {
                let body = Body::Certificate(CertificateData {
                    msg_id: m.msg_id,
                    node_id: self.me.clone(),
                    recipient_id: m.node_id.clone(),
                    certificate: self.certificate.clone(),
                });
                let mut out = Envelope::new(self.config.default_ttl, body);
                out.target_id = Some(m.node_id.clone());
                self.route_or_queue(now, out, m.node_id.guid, Origin::LocalQueued);
            }
            Body::Certificate(m) => self.on_certificate(now, m),
            Body::GetKey(m) => self.on_getkey(now, m),
            Body::Key(m) => self.on_key(now, m, signed),
            Body::Message(m) if m.is_channel() => self.on_channel_message(now, m, signed, false),
            Body::Message(m) => self.accept_message(m, signed),
            Body::Ack(m) => self.on_receipt(now, &m),
            Body::Nack(m) => self.deliver(ChatEvent::Nacked {
                msg_id: m.msg_id,
                by: m.node_id,
            }),
            _ => {}
        }
    }

    /// A MESSAGE for the local user, already verified (`signed`) or a plain client's
    /// (unsigned): decrypted in a closed channel, then delivered.
    pub(crate) fn accept_message(&mut self, m: ChatMessage, signed: bool) {
        // The first 64 bytes are the signature slot (ignored for a plain client).
        let Some(body) = m.message.get(crypto::SIGNATURE_LEN..) else {
            self.counters.invalid += 1;
            return;
        };
        if m.is_channel() && !signed {
            // Closed channels are sealed by members, who all have keys; an unsigned message
            // can only be in a public one.
            if self.channels.get(&m.channel_id).is_none_or(|c| c.closed) {
                self.counters.refused += 1;
                return;
            }
        }
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
        if !signed {
            self.counters.unsigned += 1;
        }
        let channel = m
            .is_channel()
            .then(|| (m.channel.clone(), m.channel_id.clone()));
        self.deliver(ChatEvent::Message(ReceivedMessage {
            msg_id: m.msg_id,
            from: m.node_id,
            signed,
            channel,
            timestamp: m.timestamp,
            text,
            attachments,
        }));
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
