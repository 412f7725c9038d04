//! JSON to [`Envelope`]: field-by-field checks with errors that name the field.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use kith_crypto::NodeId;
use serde_json::{Map, Value};

use super::{
    Ack, Attachment, Auth, Body, CertificateData, ChannelInfo, ChatId, ChatMessage, Connect,
    Envelope, GetCertificate, GetKey, Hello, KeyData, Membership, MessageLimits, Nack, NodeType,
    RouteEntry, Routing, Verb,
};

/// Why a message was refused. Every variant that concerns a field names it, as a path from the
/// top of the message (`msg_data.members[2].node_id`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The text is larger than the frame cap.
    #[error("message of {len} bytes is over the limit of {limit}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The cap.
        limit: u32,
    },
    /// Not JSON, or not a JSON object at the top.
    #[error("not a JSON object: {0}")]
    NotJson(String),
    /// A required field is absent (or `null`).
    #[error("missing field {field}")]
    Missing {
        /// The field's path.
        field: String,
    },
    /// A field has the wrong JSON type.
    #[error("field {field} must be {expected}")]
    WrongType {
        /// The field's path.
        field: String,
        /// What it must be.
        expected: &'static str,
    },
    /// A field has the right type but an unacceptable value.
    #[error("field {field} is invalid: {reason}")]
    Invalid {
        /// The field's path.
        field: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A string field is longer than its cap.
    #[error("field {field} is longer than {max} bytes")]
    TooLong {
        /// The field's path.
        field: String,
        /// The cap.
        max: usize,
    },
    /// A list field has more entries than its cap.
    #[error("field {field} has more than {max} entries")]
    TooMany {
        /// The field's path.
        field: String,
        /// The cap.
        max: usize,
    },
    /// `msg_type` is none of the thirteen verbs.
    #[error("unknown msg_type {0:?}")]
    UnknownVerb(String),
    /// `ttl` outside `1..=max`.
    #[error("ttl {ttl} is outside 1..={max}")]
    TtlOutOfRange {
        /// The received value.
        ttl: u64,
        /// The cap.
        max: u8,
    },
    /// HELLO or ROUTING with a `ttl` other than 1.
    #[error("{verb} must have ttl 1, got {ttl}")]
    TtlMustBeOne {
        /// The verb.
        verb: Verb,
        /// The received value.
        ttl: u64,
    },
    /// `flood` true on a verb that is never flooded.
    #[error("{verb} must not be flooded")]
    MustNotFlood {
        /// The verb.
        verb: Verb,
    },
}

fn missing(field: &str) -> MessageError {
    MessageError::Missing {
        field: field.to_string(),
    }
}

fn wrong(field: &str, expected: &'static str) -> MessageError {
    MessageError::WrongType {
        field: field.to_string(),
        expected,
    }
}

fn invalid(field: &str, reason: &'static str) -> MessageError {
    MessageError::Invalid {
        field: field.to_string(),
        reason,
    }
}

/// Field access on one JSON object, with the path prefix for errors and the limits.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    path: String,
    limits: &'a MessageLimits,
    /// The later revision's top-level `sender_id` and `msg_id`, which stand in for
    /// `msg_data.node_id` and `msg_data.msg_id` when those are absent.
    top: Option<&'a TopLevel>,
}

/// The later revision's top-level identifiers.
#[derive(Debug, Default)]
struct TopLevel {
    msg_id: Option<String>,
    sender: Option<ChatId>,
}

impl<'a> Fields<'a> {
    fn of(value: &'a Value, path: String, limits: &'a MessageLimits) -> Result<Self, MessageError> {
        match value {
            Value::Object(obj) => Ok(Fields {
                obj,
                path,
                limits,
                top: None,
            }),
            _ => Err(wrong(&path, "an object")),
        }
    }

    fn path(&self, name: &str) -> String {
        if self.path.is_empty() {
            return name.to_string();
        }
        format!("{}.{name}", self.path)
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.obj.get(name).filter(|v| !v.is_null())
    }

    fn required(&self, name: &str) -> Result<&'a Value, MessageError> {
        self.get(name).ok_or_else(|| missing(&self.path(name)))
    }

    fn check_len(&self, name: &str, s: &str, max: usize) -> Result<(), MessageError> {
        if s.len() > max {
            return Err(MessageError::TooLong {
                field: self.path(name),
                max,
            });
        }
        Ok(())
    }

    /// A required string, bounded by `max_field`; `non_empty` refuses "".
    fn string(&self, name: &str, non_empty: bool) -> Result<String, MessageError> {
        let s = self
            .required(name)?
            .as_str()
            .ok_or_else(|| wrong(&self.path(name), "a string"))?;
        self.check_len(name, s, self.limits.max_field)?;
        if non_empty && s.is_empty() {
            return Err(invalid(&self.path(name), "must not be empty"));
        }
        // Fields are lines of signed bytes: a newline inside one could make two different
        // messages sign the same bytes.
        if s.chars().any(char::is_control) {
            return Err(invalid(&self.path(name), "contains a control character"));
        }
        Ok(s.to_string())
    }

    fn opt_string(&self, name: &str) -> Result<Option<String>, MessageError> {
        match self.get(name) {
            None => Ok(None),
            Some(_) => self.string(name, false).map(Some),
        }
    }

    /// The message's own id: `msg_data.msg_id`, or (later revision) the top-level one.
    fn msg_id(&self) -> Result<String, MessageError> {
        match (self.get("msg_id"), self.top.and_then(|t| t.msg_id.clone())) {
            (None, Some(top)) => Ok(top),
            _ => self.string("msg_id", true),
        }
    }

    /// The node a message speaks for: `msg_data.node_id` (the seed), or the top-level
    /// `sender_id` (the later revision). When both are present their GUIDs must agree: a
    /// message must not name one author to kith and another to the reference programs.
    fn author(&self) -> Result<ChatId, MessageError> {
        let sender = self.top.and_then(|t| t.sender.clone());
        match (self.get("node_id"), sender) {
            (None, Some(sender)) => Ok(sender),
            (_, sender) => {
                let id = self.id("node_id")?;
                if sender.is_some_and(|s| s.guid != id.guid) {
                    return Err(invalid(
                        "sender_id",
                        "names another node than msg_data.node_id",
                    ));
                }
                Ok(id)
            }
        }
    }

    fn id(&self, name: &str) -> Result<ChatId, MessageError> {
        let s = self.string(name, true)?;
        s.parse()
            .map_err(|_| invalid(&self.path(name), "not a GUID or name@GUID"))
    }

    fn opt_id(&self, name: &str) -> Result<Option<ChatId>, MessageError> {
        match self.get(name) {
            None => Ok(None),
            // The seed's ACK example leaves node_id blank: an empty string is "absent".
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(_) => self.id(name).map(Some),
        }
    }

    fn opt_guid(&self, name: &str) -> Result<Option<NodeId>, MessageError> {
        Ok(self.opt_id(name)?.map(|id| id.guid))
    }

    fn list(&self, name: &str) -> Result<&'a Vec<Value>, MessageError> {
        let list = self
            .required(name)?
            .as_array()
            .ok_or_else(|| wrong(&self.path(name), "a list"))?;
        if list.len() > self.limits.max_list {
            return Err(MessageError::TooMany {
                field: self.path(name),
                max: self.limits.max_list,
            });
        }
        Ok(list)
    }

    fn opt_list(&self, name: &str) -> Result<&'a [Value], MessageError> {
        match self.get(name) {
            None => Ok(&[]),
            Some(_) => self.list(name).map(Vec::as_slice),
        }
    }

    /// `[{ "node_id": ... }, ...]`.
    fn id_list(&self, name: &str, required: bool) -> Result<Vec<ChatId>, MessageError> {
        let list = if required {
            self.list(name)?.as_slice()
        } else {
            self.opt_list(name)?
        };
        list.iter()
            .enumerate()
            .map(|(i, item)| {
                Fields::of(item, format!("{}[{i}]", self.path(name)), self.limits)?.id("node_id")
            })
            .collect()
    }

    fn base64(&self, name: &str, max: usize) -> Result<Vec<u8>, MessageError> {
        let s = self
            .required(name)?
            .as_str()
            .ok_or_else(|| wrong(&self.path(name), "a base64 string"))?;
        // 4 characters carry 3 bytes: refuse from the length before decoding.
        self.check_len(name, s, max.div_ceil(3) * 4)?;
        STANDARD
            .decode(s)
            .map_err(|_| invalid(&self.path(name), "not standard base64"))
    }

    /// An optional base64 field of exactly `N` bytes.
    fn opt_fixed<const N: usize>(&self, name: &str) -> Result<Option<[u8; N]>, MessageError> {
        if self.get(name).is_none() {
            return Ok(None);
        }
        let bytes = self.base64(name, N)?;
        bytes
            .try_into()
            .map(Some)
            .map_err(|_| invalid(&self.path(name), "wrong length"))
    }

    /// kith's optional `public_key` and `signature`.
    fn auth(&self) -> Result<Auth, MessageError> {
        Ok(Auth {
            public_key: self.opt_fixed::<32>("public_key")?,
            signature: self.opt_fixed::<64>("signature")?,
        })
    }

    fn bool_or_text(&self, name: &str) -> Result<bool, MessageError> {
        match self.get(name) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") || s.is_empty() => Ok(false),
            Some(_) => Err(wrong(&self.path(name), "a boolean")),
        }
    }
}

impl Envelope {
    /// Decodes one message from its JSON text (a frame's payload), checking every rule of the
    /// module documentation against `limits`.
    pub fn decode(json: &[u8], limits: &MessageLimits) -> Result<Envelope, MessageError> {
        if json.len() > limits.max_frame as usize {
            return Err(MessageError::TooLarge {
                len: json.len(),
                limit: limits.max_frame,
            });
        }
        let value: Value =
            serde_json::from_slice(json).map_err(|e| MessageError::NotJson(e.to_string()))?;
        Envelope::from_json(&value, limits)
    }

    /// Decodes one message from an already parsed JSON value.
    pub fn from_json(value: &Value, limits: &MessageLimits) -> Result<Envelope, MessageError> {
        let top = match value {
            Value::Object(obj) => Fields {
                obj,
                path: String::new(),
                limits,
                top: None,
            },
            _ => return Err(MessageError::NotJson("top level is not an object".into())),
        };

        let name = top
            .required("msg_type")
            .map_err(|_| missing("msg_type"))?
            .as_str()
            .ok_or_else(|| wrong("msg_type", "a string"))?;
        let verb = Verb::from_name(name).ok_or_else(|| {
            MessageError::UnknownVerb(name.chars().take(limits.max_field).collect())
        })?;
        let ttl = top
            .get("ttl")
            .ok_or_else(|| missing("ttl"))?
            .as_u64()
            .ok_or_else(|| wrong("ttl", "a non-negative integer"))?;
        let flood = top
            .get("flood")
            .ok_or_else(|| missing("flood"))?
            .as_bool()
            .ok_or_else(|| wrong("flood", "a boolean"))?;
        if verb.neighbour_only() && ttl != 1 {
            return Err(MessageError::TtlMustBeOne { verb, ttl });
        }
        if ttl == 0 || ttl > u64::from(limits.max_ttl) {
            return Err(MessageError::TtlOutOfRange {
                ttl,
                max: limits.max_ttl,
            });
        }
        if flood && verb.never_flooded() {
            return Err(MessageError::MustNotFlood { verb });
        }
        let target_id = top_id(&top, "target_id")?;
        let msg_id = match top.get("msg_id") {
            None => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(_) => Some(top.string("msg_id", true)?),
        };
        // An unreadable sender_id is only an error where it is needed (no msg_data.node_id).
        let sender = top_id(&top, "sender_id");
        let mut data = Fields::of(
            top.get("msg_data").ok_or_else(|| missing("msg_data"))?,
            "msg_data".into(),
            limits,
        )?;
        let fallback = TopLevel {
            msg_id: msg_id.clone(),
            sender: sender.clone().ok().flatten(),
        };
        data.top = Some(&fallback);
        let body = match decode_body(verb, &data) {
            Err(MessageError::Missing { field }) if field == "msg_data.node_id" => {
                sender?;
                return Err(MessageError::Missing { field });
            }
            other => other?,
        };
        let mut env = Envelope {
            // In range: checked against max_ttl (a u8) above.
            ttl: ttl as u8,
            flood,
            msg_id,
            target_id,
            body,
        };
        // Kept only where it is not the body's own id (which is written for it anyway).
        if !matches!(env.body, Body::Ack(_) | Body::Nack(_))
            && env.msg_id.as_deref() == env.msg_id()
        {
            env.msg_id = None;
        }
        Ok(env)
    }
}

/// A top-level id field (`target_id`, `sender_id`): absent, `null` or empty is `None`.
fn top_id(top: &Fields<'_>, name: &str) -> Result<Option<ChatId>, MessageError> {
    match top.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(_)) => top.id(name).map(Some),
        Some(_) => Err(wrong(name, "a string")),
    }
}

/// The nil GUID, which the reference client writes for "no channel".
const NIL_GUID: &str = "00000000-0000-0000-0000-000000000000";

fn decode_body(verb: Verb, d: &Fields<'_>) -> Result<Body, MessageError> {
    Ok(match verb {
        Verb::Hello => {
            let attributes = Fields::of(d.required("attributes")?, d.path("attributes"), d.limits)?;
            let node_type = match attributes.string("node_type", true)?.as_str() {
                "client" => NodeType::Client,
                "server" => NodeType::Server,
                _ => {
                    return Err(invalid(
                        &attributes.path("node_type"),
                        "must be client or server",
                    ))
                }
            };
            let mut node_id = d.author()?;
            // kith announces its user's name in the attributes too (the reference programs
            // put it before the `@` of their ids).
            if let Some(name) = attributes.opt_string("name")?.filter(|n| !n.is_empty()) {
                node_id.name = Some(name);
            }
            Body::Hello(Hello {
                later_revision: d.get("node_id").is_none(),
                node_id,
                version: d.opt_string("version")?,
                node_type,
                challenge: d.opt_string("challenge")?,
                auth: d.auth()?,
            })
        }
        Verb::Ack => Body::Ack(Ack {
            node_id: match d.opt_id("node_id")? {
                None => d.top.and_then(|t| t.sender.clone()),
                id => id,
            },
            // The acknowledged message's id (the top-level one is the ACK's own).
            msg_id: d.string("msg_id", true)?,
            target_id: d.opt_guid("target_id")?,
            recipient_id: d.opt_guid("recipient_id")?,
            auth: d.auth()?,
        }),
        Verb::Nack => Body::Nack(Nack {
            node_id: d.author()?,
            msg_id: d.string("msg_id", true)?,
            recipient_id: d.opt_guid("recipient_id")?,
        }),
        Verb::Join | Verb::Leave => {
            let m = Membership {
                msg_id: d.msg_id()?,
                node_id: d.author()?,
                channel: d.string("channel", true)?,
                channel_id: d.string("channel_id", true)?,
                member: if verb == Verb::Leave {
                    d.opt_id("member")?
                } else {
                    None
                },
                auth: d.auth()?,
            };
            if verb == Verb::Join {
                Body::Join(m)
            } else {
                Body::Leave(m)
            }
        }
        Verb::Channel => Body::Channel(ChannelInfo {
            msg_id: d.msg_id()?,
            node_id: d.author()?,
            channel: d.string("channel", true)?,
            channel_id: d.string("channel_id", true)?,
            members: d.id_list("members", true)?,
            closed: d.bool_or_text("closed")?,
            auth: d.auth()?,
        }),
        Verb::GetCertificate => Body::GetCertificate(GetCertificate {
            msg_id: d.msg_id()?,
            node_id: d.author()?,
            recipient_id: d.opt_guid("recipient_id")?,
        }),
        Verb::Certificate => Body::Certificate(CertificateData {
            msg_id: d.msg_id()?,
            node_id: d.author()?,
            recipient_id: d.id("recipient_id")?,
            certificate: d.base64("certificate", CERTIFICATE_MAX)?,
        }),
        Verb::GetKey => Body::GetKey(GetKey {
            msg_id: d.msg_id()?,
            node_id: d.author()?,
            channel: d.string("channel", true)?,
            channel_id: d.string("channel_id", true)?,
            recipient_id: d.opt_guid("recipient_id")?,
        }),
        Verb::Key => Body::Key(KeyData {
            msg_id: d.msg_id()?,
            node_id: d.author()?,
            recipient_id: d.id("recipient_id")?,
            channel: d.string("channel", true)?,
            channel_id: d.string("channel_id", true)?,
            cipher: d.string("cipher", true)?,
            key: d.base64("key", WRAPPED_KEY_MAX)?,
            members: d.id_list("members", false)?,
            auth: d.auth()?,
        }),
        Verb::Message => decode_message(d)?,
        Verb::Routing => {
            let list = d.list("nodes")?;
            let mut nodes = Vec::with_capacity(list.len());
            for (i, item) in list.iter().enumerate() {
                let e = Fields::of(item, format!("{}[{i}]", d.path("nodes")), d.limits)?;
                let ttl_path = e.path("ttl");
                // The seed's example quotes the ttl ("ttl" : "ttl"): accept digits in a string.
                let ttl = match e.required("ttl")? {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.parse::<u64>().ok(),
                    _ => None,
                }
                .ok_or_else(|| wrong(&ttl_path, "a non-negative integer"))?;
                nodes.push(RouteEntry {
                    node_id: e.id("node_id")?,
                    ttl: u32::try_from(ttl).unwrap_or(u32::MAX),
                });
            }
            Body::Routing(Routing {
                node_id: d.author()?,
                nodes,
                seq: match d.get("seq") {
                    None => None,
                    Some(v) => Some(
                        v.as_u64()
                            .ok_or_else(|| wrong(&d.path("seq"), "a non-negative integer"))?,
                    ),
                },
                auth: d.auth()?,
            })
        }
        Verb::Connect => Body::Connect(Connect {
            src_node_id: d.id("src_node_id")?,
            dst_node_id: d.id("dst_node_id")?,
            dst: d.opt_string("dst")?.unwrap_or_default(),
            src: d.opt_string("src")?.unwrap_or_default(),
        }),
    })
}

/// Largest decoded certificate (an X.509 DER on an Ed25519 key is about 300 bytes).
pub(crate) const CERTIFICATE_MAX: usize = 4096;
/// Largest decoded wrapped key (ephemeral key, nonce, 32-byte key, tag: 104 bytes).
pub(crate) const WRAPPED_KEY_MAX: usize = 256;
/// Ed25519 signature length, the head of a MESSAGE's `message`.
pub(crate) const SIGNATURE_LEN: usize = 64;
/// Room a closed channel's encryption adds to a text (key id, nonce, tag).
pub(crate) const SEAL_OVERHEAD: usize = 8 + 24 + 16;

fn decode_message(d: &Fields<'_>) -> Result<Body, MessageError> {
    let timestamp = match d.required("timestamp")? {
        Value::String(s) => {
            d.check_len("timestamp", s, d.limits.max_field)?;
            s.clone()
        }
        Value::Number(n) => n.to_string(),
        _ => return Err(wrong(&d.path("timestamp"), "a string")),
    };
    let node_id = d.author()?;
    let (message, plain_text) = message_field(d, &node_id)?;
    let list = d.opt_list("attachment")?;
    // A closed channel encrypts each attachment, adding SEAL_OVERHEAD to each.
    let budget = d.limits.max_attachment_bytes + SEAL_OVERHEAD * list.len();
    let mut attachments = Vec::with_capacity(list.len());
    let mut total = 0usize;
    for (i, item) in list.iter().enumerate() {
        let a = Fields::of(item, format!("{}[{i}]", d.path("attachment")), d.limits)?;
        let data = a.base64("attachment", budget - total)?;
        total += data.len();
        if total > budget {
            return Err(MessageError::TooLong {
                field: d.path("attachment"),
                max: d.limits.max_attachment_bytes,
            });
        }
        attachments.push(Attachment {
            mime_type: a.string("attachment_type", true)?,
            data,
        });
    }
    let mut channel_id = d.opt_string("channel_id")?.unwrap_or_default();
    if channel_id == NIL_GUID {
        channel_id.clear();
    }
    let m = ChatMessage {
        msg_id: d.msg_id()?,
        node_id,
        recipient: d.id_list("recipient", false)?,
        timestamp,
        channel: d.opt_string("channel")?.unwrap_or_default(),
        channel_id,
        message,
        attachments,
        public_key: d.opt_fixed::<32>("public_key")?,
        unsigned: d.bool_or_text("unsigned")?,
        plain_text,
    };
    if m.channel_id.is_empty() && m.recipient.is_empty() {
        return Err(invalid(
            &d.path("recipient"),
            "a message needs a channel_id or at least one recipient",
        ));
    }
    Ok(Body::Message(m))
}

/// `msg_data.message`: base64 of `signature (64) ‖ body`, as both protocol documents say, or,
/// from an author whose id no key derives (who cannot sign anyway), the text itself, as the
/// reference client sends it. A plain author's `message` counts as the signed form only when
/// it decodes as base64 to at least 64 bytes followed by UTF-8 (the signature slot is then
/// ignored); anything else is its text. Returns the bytes as `slot ‖ body` and whether the
/// text came plain.
fn message_field(d: &Fields<'_>, author: &ChatId) -> Result<(Vec<u8>, bool), MessageError> {
    let max = SIGNATURE_LEN + SEAL_OVERHEAD + d.limits.max_text;
    if super::key_form(&author.guid) {
        let message = d.base64("message", max)?;
        if message.len() < SIGNATURE_LEN {
            return Err(invalid(
                &d.path("message"),
                "shorter than a 64-byte signature",
            ));
        }
        return Ok((message, false));
    }
    let text = d
        .required("message")?
        .as_str()
        .ok_or_else(|| wrong(&d.path("message"), "a string"))?;
    d.check_len("message", text, max.div_ceil(3) * 4)?;
    if let Ok(raw) = STANDARD.decode(text) {
        if raw.len() >= SIGNATURE_LEN && std::str::from_utf8(&raw[SIGNATURE_LEN..]).is_ok() {
            return Ok((raw, false));
        }
    }
    if text.len() > d.limits.max_text {
        return Err(MessageError::TooLong {
            field: d.path("message"),
            max: d.limits.max_text,
        });
    }
    let mut raw = vec![0u8; SIGNATURE_LEN];
    raw.extend_from_slice(text.as_bytes());
    Ok((raw, true))
}
