//! [`Envelope`] to JSON. Keys are written in a fixed order (serde_json's map keeps insertion
//! order only with a feature; the order does not matter to a reader anyway).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::{Auth, Body, ChatId, Envelope};

fn id(id: &ChatId) -> Value {
    Value::String(id.to_string())
}

fn id_list(ids: &[ChatId]) -> Value {
    Value::Array(ids.iter().map(|i| json!({ "node_id": id(i) })).collect())
}

fn b64(bytes: &[u8]) -> Value {
    Value::String(STANDARD.encode(bytes))
}

/// Adds kith's `public_key` and `signature` to a `msg_data` object.
fn put_auth(data: &mut Value, auth: &Auth) {
    if let Value::Object(obj) = data {
        if let Some(k) = &auth.public_key {
            obj.insert("public_key".into(), b64(k));
        }
        if let Some(s) = &auth.signature {
            obj.insert("signature".into(), b64(s));
        }
    }
}

impl Envelope {
    /// The message as a JSON value.
    pub fn to_json(&self) -> Value {
        let (verb, data) = (self.verb(), body_json(&self.body));
        let mut top = Map::new();
        top.insert("msg_type".into(), Value::String(verb.as_str().into()));
        top.insert("msg_data".into(), data);
        top.insert("ttl".into(), Value::from(self.ttl));
        top.insert("flood".into(), Value::Bool(self.flood));
        // The later revision's fields, ids as name@GUID.
        let own_id = match &self.body {
            Body::Ack(_) | Body::Nack(_) => None,
            _ => self.msg_id(),
        };
        if let Some(id) = self.msg_id.as_deref().or(own_id) {
            top.insert("msg_id".into(), Value::String(id.to_string()));
        }
        let sender = match &self.body {
            Body::Connect(c) => Some(&c.src_node_id),
            body => body.author(),
        };
        if let Some(sender) = sender {
            top.insert("sender_id".into(), Value::String(sender.wire()));
        }
        if let Some(target) = &self.target_id {
            top.insert("target_id".into(), Value::String(target.wire()));
        }
        Value::Object(top)
    }

    /// The message as JSON text (a frame's payload).
    pub fn encode(&self) -> Vec<u8> {
        // Serialising a Value built from strings and numbers cannot fail.
        serde_json::to_vec(&self.to_json()).unwrap_or_default()
    }
}

fn body_json(body: &Body) -> Value {
    match body {
        Body::Hello(m) => {
            let mut attributes = Map::new();
            attributes.insert("node_type".into(), m.node_type.as_str().into());
            if let Some(name) = &m.node_id.name {
                attributes.insert("name".into(), Value::String(name.clone()));
            }
            let mut data = json!({
                "node_id": id(&m.node_id),
                "attributes": attributes,
            });
            if let (Some(v), Value::Object(obj)) = (&m.version, &mut data) {
                obj.insert("version".into(), Value::String(v.clone()));
            }
            if let (Some(c), Value::Object(obj)) = (&m.challenge, &mut data) {
                obj.insert("challenge".into(), Value::String(c.clone()));
            }
            put_auth(&mut data, &m.auth);
            data
        }
        Body::Ack(m) => {
            let mut obj = Map::new();
            if let Some(node) = &m.node_id {
                obj.insert("node_id".into(), id(node));
            }
            obj.insert("msg_id".into(), Value::String(m.msg_id.clone()));
            if let Some(t) = &m.target_id {
                obj.insert("target_id".into(), Value::String(t.to_string()));
            }
            if let Some(r) = &m.recipient_id {
                obj.insert("recipient_id".into(), Value::String(r.to_string()));
            }
            let mut data = Value::Object(obj);
            put_auth(&mut data, &m.auth);
            data
        }
        Body::Nack(m) => {
            let mut obj = Map::new();
            obj.insert("node_id".into(), id(&m.node_id));
            obj.insert("msg_id".into(), Value::String(m.msg_id.clone()));
            if let Some(r) = &m.recipient_id {
                obj.insert("recipient_id".into(), Value::String(r.to_string()));
            }
            Value::Object(obj)
        }
        Body::Join(m) | Body::Leave(m) => {
            let mut obj = Map::new();
            obj.insert("msg_id".into(), Value::String(m.msg_id.clone()));
            obj.insert("node_id".into(), id(&m.node_id));
            obj.insert("channel".into(), Value::String(m.channel.clone()));
            obj.insert("channel_id".into(), Value::String(m.channel_id.clone()));
            if let Some(member) = &m.member {
                obj.insert("member".into(), id(member));
            }
            let mut data = Value::Object(obj);
            put_auth(&mut data, &m.auth);
            data
        }
        Body::Channel(m) => {
            let mut data = json!({
                "msg_id": m.msg_id,
                "node_id": id(&m.node_id),
                "channel": m.channel,
                "channel_id": m.channel_id,
                "members": id_list(&m.members),
                "closed": m.closed,
            });
            put_auth(&mut data, &m.auth);
            data
        }
        Body::GetCertificate(m) => {
            let mut obj = Map::new();
            obj.insert("msg_id".into(), Value::String(m.msg_id.clone()));
            obj.insert("node_id".into(), id(&m.node_id));
            if let Some(r) = &m.recipient_id {
                obj.insert("recipient_id".into(), Value::String(r.to_string()));
            }
            Value::Object(obj)
        }
        Body::Certificate(m) => json!({
            "msg_id": m.msg_id,
            "node_id": id(&m.node_id),
            "recipient_id": id(&m.recipient_id),
            "certificate": b64(&m.certificate),
        }),
        Body::GetKey(m) => {
            let mut obj = Map::new();
            obj.insert("msg_id".into(), Value::String(m.msg_id.clone()));
            obj.insert("node_id".into(), id(&m.node_id));
            obj.insert("channel".into(), Value::String(m.channel.clone()));
            obj.insert("channel_id".into(), Value::String(m.channel_id.clone()));
            if let Some(r) = &m.recipient_id {
                obj.insert("recipient_id".into(), Value::String(r.to_string()));
            }
            Value::Object(obj)
        }
        Body::Key(m) => {
            let mut data = json!({
                "msg_id": m.msg_id,
                "node_id": id(&m.node_id),
                "recipient_id": id(&m.recipient_id),
                "channel": m.channel,
                "channel_id": m.channel_id,
                "cipher": m.cipher,
                "key": b64(&m.key),
            });
            if let (false, Value::Object(obj)) = (m.members.is_empty(), &mut data) {
                obj.insert("members".into(), id_list(&m.members));
            }
            put_auth(&mut data, &m.auth);
            data
        }
        Body::Message(m) => {
            let mut obj = Map::new();
            obj.insert("msg_id".into(), Value::String(m.msg_id.clone()));
            obj.insert("node_id".into(), id(&m.node_id));
            obj.insert("recipient".into(), id_list(&m.recipient));
            obj.insert("timestamp".into(), Value::String(m.timestamp.clone()));
            obj.insert("channel".into(), Value::String(m.channel.clone()));
            obj.insert("channel_id".into(), Value::String(m.channel_id.clone()));
            let message = match (m.plain_text, m.message.get(64..)) {
                (true, Some(text)) => Value::String(String::from_utf8_lossy(text).into_owned()),
                _ => b64(&m.message),
            };
            obj.insert("message".into(), message);
            if !m.attachments.is_empty() {
                let list = m
                    .attachments
                    .iter()
                    .map(|a| json!({ "attachment": b64(&a.data), "attachment_type": a.mime_type }))
                    .collect();
                obj.insert("attachment".into(), Value::Array(list));
            }
            if let Some(k) = &m.public_key {
                obj.insert("public_key".into(), b64(k));
            }
            if m.unsigned {
                obj.insert("unsigned".into(), Value::Bool(true));
            }
            Value::Object(obj)
        }
        Body::Routing(m) => {
            let mut data = json!({
                "node_id": id(&m.node_id),
                "nodes": m.nodes.iter()
                    .map(|e| json!({ "node_id": e.node_id.wire(), "ttl": e.ttl }))
                    .collect::<Vec<_>>(),
            });
            if let (Some(seq), Value::Object(obj)) = (m.seq, &mut data) {
                obj.insert("seq".into(), Value::from(seq));
            }
            put_auth(&mut data, &m.auth);
            data
        }
        Body::Connect(m) => json!({
            "src_node_id": id(&m.src_node_id),
            "dst_node_id": id(&m.dst_node_id),
            "dst": m.dst,
            "src": m.src,
        }),
    }
}
