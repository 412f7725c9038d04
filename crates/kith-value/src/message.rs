//! The reference's wire messages: one JSON object per frame,
//! `{target, action, to, from, object}` (and `ticket` for first contact).
//!
//! - `{target: "tally", action: "ticket", to, from, ticket: {token, cert, terms?}}`: first
//!   contact with a tally ticket (`terms`, the credit the sender grants, is kith's addition;
//!   the reference ignores it and a counter-offer carries it instead);
//! - `{target: "tally", action: "offer"|"draft"|"open"|"void", to, from, object: <tally>}`;
//! - `{target: "chit", action: "good", to, from, object: <chit> + chain: {cmd: "new", index,
//!   hash, conf}}`: a signed chit and where its sender put it;
//! - `{target: "chit", action: "pend", ..., object: <unsigned chit>}`: an invoice (Datt's
//!   "request payment");
//! - `{target: "chit", action: "void", ..., object: {tally, uuid, reason?}}`: a refusal;
//! - `{target: "chit", action: "chain", ..., object: {cmd: "ack"|"nak"|"upd", tally, index,
//!   hash, conf?, chits?}}`: consensus (an `ack` is Datt's "payment ack").
//!
//! Parsing checks every field it reads; the frame that carries a message is already bounded
//! by the link (64 KiB), and an `upd` is bounded to [`MAX_UPD`] chits.

use crate::cert::{Certificate, Chad};
use crate::chain::{ChainMsg, Entry, Link};
use crate::chit::Chit;
use crate::tally::Tally;
use crate::{is_uuid, ValueError};
use serde_json::{json, Map, Value};

/// Most days one custody request asks for (a hundred years).
pub const MAX_KEEP_DAYS: u64 = 36_500;

/// Most chits in one `upd`.
pub const MAX_UPD: usize = 256;

/// What a tally message does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TallyAction {
    /// A signed proposal.
    Offer,
    /// A counter-proposal (next revision, signatures cleared).
    Draft,
    /// Both signatures: the tally is open.
    Open,
    /// A refusal.
    Void,
}

impl TallyAction {
    /// The action's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            TallyAction::Offer => "offer",
            TallyAction::Draft => "draft",
            TallyAction::Open => "open",
            TallyAction::Void => "void",
        }
    }
}

/// A message's content.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// First contact with a tally ticket.
    Ticket {
        /// The ticket's token.
        token: String,
        /// The sender's certificate.
        cert: Certificate,
        /// The credit the sender grants (kith's addition).
        terms: Option<Value>,
    },
    /// A tally dialog step.
    Tally {
        /// Which step.
        action: TallyAction,
        /// The tally.
        tally: Tally,
    },
    /// A signed chit, with where its sender put it.
    Good {
        /// The chit.
        chit: Chit,
        /// Its position in the sender's chain.
        at: Option<Link>,
        /// The sender's confirmed index.
        conf: Option<u64>,
    },
    /// An invoice: an unsigned chit for the receiver to sign.
    Pend {
        /// The chit.
        chit: Chit,
    },
    /// A refusal of a chit or an invoice.
    Void {
        /// The tally.
        tally: String,
        /// The chit.
        uuid: String,
        /// Why, for people.
        reason: Option<String>,
    },
    /// Chain consensus.
    Chain {
        /// The tally.
        tally: String,
        /// The message.
        msg: ChainMsg,
    },
    /// Datt: "may I have this file?" The answer is a payment request (`pend` with
    /// `ref: {"request": {"file", "bytes"}}`), or [`Body::DattAnswer`].
    DattGet {
        /// The file's content address.
        hash: String,
    },
    /// Datt: "will you keep this file (in encrypted custody) for so many days?" Answered
    /// like [`Body::DattGet`], the payment request's `ref` being `{"request": {"custody",
    /// "bytes", "days"}}`.
    DattKeep {
        /// The file's content address.
        hash: String,
        /// Its size, as the owner states it (the custodian keeps no more than was paid for).
        bytes: u64,
        /// How many days, 1 to [`MAX_KEEP_DAYS`].
        days: u64,
    },
    /// Datt: the answer to a get that needs no payment (`free`) or cannot have one
    /// (`refused`, with the reason: no shared tally, unknown file).
    DattAnswer {
        /// The file's content address.
        hash: String,
        /// `free` or `refused`.
        answer: String,
        /// Why, for people.
        reason: Option<String>,
    },
}

/// A message between sites.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The receiving user.
    pub to: Chad,
    /// The sending user.
    pub from: Chad,
    /// What it says.
    pub body: Body,
}

fn field(what: &str, why: &str) -> ValueError {
    ValueError::field(what, why)
}

fn uuid_of(value: &Value, what: &str) -> Result<String, ValueError> {
    value
        .as_str()
        .filter(|u| is_uuid(u))
        .map(str::to_owned)
        .ok_or_else(|| field(what, "not a UUID"))
}

fn link_of(value: &Value) -> Option<Link> {
    Some(Link {
        index: value.get("index")?.as_u64()?,
        digest: value.get("hash")?.as_str()?.to_owned(),
    })
}

impl Message {
    /// The tally this message is about, if it names one.
    pub fn tally_uuid(&self) -> Option<&str> {
        match &self.body {
            Body::Ticket { .. } => None,
            Body::Tally { tally, .. } => Some(tally.uuid()),
            Body::Good { chit, .. } | Body::Pend { chit } => Some(&chit.tally),
            Body::Void { tally, .. } | Body::Chain { tally, .. } => Some(tally),
            Body::DattGet { .. } | Body::DattKeep { .. } | Body::DattAnswer { .. } => None,
        }
    }

    /// Parses one frame's JSON.
    pub fn parse(bytes: &[u8]) -> Result<Message, ValueError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| field("message", &e.to_string()))?;
        Message::from_json(&value)
    }

    /// Reads a message from its JSON.
    pub fn from_json(value: &Value) -> Result<Message, ValueError> {
        let text = |name: &str| value.get(name).and_then(Value::as_str);
        let target = text("target").ok_or_else(|| field("target", "missing"))?;
        let action = text("action").ok_or_else(|| field("action", "missing"))?;
        let to = Chad::from_json(value.get("to").ok_or_else(|| field("to", "missing"))?)?;
        let from = Chad::from_json(value.get("from").ok_or_else(|| field("from", "missing"))?)?;
        let object = value.get("object").unwrap_or(&Value::Null);
        let body = match (target, action) {
            ("tally", "ticket") => {
                let ticket = value
                    .get("ticket")
                    .ok_or_else(|| field("ticket", "missing"))?;
                let token = ticket
                    .get("token")
                    .and_then(Value::as_str)
                    .filter(|t| t.len() <= 64)
                    .ok_or_else(|| field("ticket.token", "missing"))?
                    .to_owned();
                let cert = Certificate::parse(
                    ticket
                        .get("cert")
                        .cloned()
                        .ok_or_else(|| field("ticket.cert", "missing"))?,
                )?;
                let terms = ticket.get("terms").filter(|t| t.is_object()).cloned();
                Body::Ticket { token, cert, terms }
            }
            ("tally", action) => {
                let action = match action {
                    "offer" => TallyAction::Offer,
                    "draft" => TallyAction::Draft,
                    "open" => TallyAction::Open,
                    "void" => TallyAction::Void,
                    _ => return Err(field("action", "unknown tally action")),
                };
                Body::Tally {
                    action,
                    tally: Tally::from_json(object.clone())?,
                }
            }
            ("chit", "good") => {
                let chain = object.get("chain");
                Body::Good {
                    chit: Chit::from_json(&strip(object, &["chain", "hash"]))?,
                    at: chain.and_then(link_of),
                    conf: chain.and_then(|c| c.get("conf")).and_then(Value::as_u64),
                }
            }
            ("chit", "pend") => {
                let chit = Chit::from_json(&strip(object, &["chain", "hash", "sign"]))?;
                Body::Pend { chit }
            }
            ("chit", "void") => Body::Void {
                tally: uuid_of(&object["tally"], "object.tally")?,
                uuid: uuid_of(&object["uuid"], "object.uuid")?,
                reason: object
                    .get("reason")
                    .and_then(Value::as_str)
                    .map(|r| r.chars().take(200).collect()),
            },
            ("chit", "chain") => {
                let tally = uuid_of(&object["tally"], "object.tally")?;
                let cmd = object.get("cmd").and_then(Value::as_str).unwrap_or("");
                let msg = match cmd {
                    "ack" => ChainMsg::Ack(
                        link_of(object).ok_or_else(|| field("object", "ack without index/hash"))?,
                    ),
                    "nak" => ChainMsg::Nak {
                        index: object.get("index").and_then(Value::as_u64).unwrap_or(0),
                        hash: object
                            .get("hash")
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                        conf: object.get("conf").and_then(Value::as_u64).unwrap_or(0),
                    },
                    "upd" => {
                        let chits = object
                            .get("chits")
                            .and_then(Value::as_array)
                            .ok_or_else(|| field("object.chits", "missing"))?;
                        if chits.len() > MAX_UPD {
                            return Err(field("object.chits", "too many"));
                        }
                        let mut entries = Vec::with_capacity(chits.len());
                        for chit in chits {
                            let link = chit
                                .get("chain")
                                .and_then(link_of)
                                .ok_or_else(|| field("object.chits[].chain", "missing"))?;
                            entries.push(Entry {
                                chit: Chit::from_json(&strip(chit, &["chain", "hash"]))?,
                                index: link.index,
                                digest: link.digest,
                            });
                        }
                        ChainMsg::Upd(entries)
                    }
                    _ => return Err(field("object.cmd", "unknown chain command")),
                };
                Body::Chain { tally, msg }
            }
            ("datt", "get") => Body::DattGet {
                hash: hash_of(object)?,
            },
            ("datt", "keep") => Body::DattKeep {
                hash: hash_of(object)?,
                bytes: object
                    .get("bytes")
                    .and_then(Value::as_u64)
                    .filter(|b| *b <= crate::tally::MAX_UNITS)
                    .ok_or_else(|| field("object.bytes", "not a size"))?,
                days: object
                    .get("days")
                    .and_then(Value::as_u64)
                    .filter(|d| (1..=MAX_KEEP_DAYS).contains(d))
                    .ok_or_else(|| field("object.days", "not 1 to 36500 days"))?,
            },
            ("datt", "free" | "refused") => Body::DattAnswer {
                hash: hash_of(object)?,
                answer: action.to_owned(),
                reason: object
                    .get("reason")
                    .and_then(Value::as_str)
                    .map(|r| r.chars().take(300).collect()),
            },
            _ => return Err(field("target", "unknown target or action")),
        };
        Ok(Message { to, from, body })
    }

    /// The message's JSON.
    pub fn to_json(&self) -> Value {
        if let Some(datt) = self.datt_json() {
            return datt;
        }
        let (target, action, object) = match &self.body {
            Body::Ticket { token, cert, terms } => {
                let mut ticket = json!({"token": token, "cert": cert.0});
                if let Some(terms) = terms {
                    ticket["terms"] = terms.clone();
                }
                return json!({
                    "target": "tally", "action": "ticket",
                    "to": self.to.to_json(), "from": self.from.to_json(), "ticket": ticket,
                });
            }
            Body::Tally { action, tally } => ("tally", action.as_str(), tally.to_json()),
            Body::Good { chit, at, conf } => {
                let mut object = chit.to_json();
                if let Some(at) = at {
                    object["chain"] = json!({
                        "cmd": "new", "index": at.index, "hash": at.digest, "conf": conf.unwrap_or(0),
                    });
                }
                ("chit", "good", object)
            }
            Body::Pend { chit } => ("chit", "pend", chit.to_json()),
            Body::Void {
                tally,
                uuid,
                reason,
            } => {
                let mut object = json!({"tally": tally, "uuid": uuid});
                if let Some(reason) = reason {
                    object["reason"] = json!(reason);
                }
                ("chit", "void", object)
            }
            Body::Chain { tally, msg } => {
                let object = match msg {
                    ChainMsg::Ack(link) => {
                        json!({"cmd": "ack", "tally": tally, "index": link.index, "hash": link.digest})
                    }
                    ChainMsg::Nak { index, hash, conf } => {
                        let mut o =
                            json!({"cmd": "nak", "tally": tally, "index": index, "conf": conf});
                        if let Some(hash) = hash {
                            o["hash"] = json!(hash);
                        }
                        o
                    }
                    ChainMsg::Upd(entries) => {
                        let chits: Vec<Value> = entries
                            .iter()
                            .map(|e| {
                                let mut c = e.chit.to_json();
                                c["chain"] = json!({"index": e.index, "hash": e.digest});
                                c
                            })
                            .collect();
                        let last = entries.last();
                        json!({
                            "cmd": "upd", "tally": tally, "chits": chits,
                            "index": last.map(|e| e.index), "hash": last.map(|e| e.digest.clone()),
                        })
                    }
                };
                ("chit", "chain", object)
            }
            Body::DattGet { .. } | Body::DattKeep { .. } | Body::DattAnswer { .. } => {
                unreachable!("datt_json")
            }
        };
        json!({
            "target": target, "action": action,
            "to": self.to.to_json(), "from": self.from.to_json(), "object": object,
        })
    }

    fn datt_json(&self) -> Option<Value> {
        let (action, object) = match &self.body {
            Body::DattGet { hash } => ("get", json!({ "hash": hash })),
            Body::DattKeep { hash, bytes, days } => {
                ("keep", json!({"hash": hash, "bytes": bytes, "days": days}))
            }
            Body::DattAnswer {
                hash,
                answer,
                reason,
            } => (answer.as_str(), json!({"hash": hash, "reason": reason})),
            _ => return None,
        };
        Some(json!({
            "target": "datt", "action": action,
            "to": self.to.to_json(), "from": self.from.to_json(), "object": object,
        }))
    }

    /// The message as the bytes of one frame.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_json()).unwrap_or_default()
    }
}

/// A content address (64 lowercase hex) in `object.hash`.
fn hash_of(object: &Value) -> Result<String, ValueError> {
    object
        .get("hash")
        .and_then(Value::as_str)
        .filter(|h| {
            h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .map(str::to_owned)
        .ok_or_else(|| field("object.hash", "not a content address"))
}

/// `value` without the members `names`.
fn strip(value: &Value, names: &[&str]) -> Value {
    match value {
        Value::Object(map) => {
            let map: Map<String, Value> = map
                .iter()
                .filter(|(k, _)| !names.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Value::Object(map)
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chad(cuid: &str) -> Chad {
        Chad::parse(&format!(
            "{cuid}:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA@h:1"
        ))
        .unwrap()
    }

    #[test]
    fn a_custody_request_round_trips_and_its_bounds_are_checked() {
        let keep = Message {
            to: chad("a"),
            from: chad("b"),
            body: Body::DattKeep {
                hash: "ab".repeat(32),
                bytes: 5 << 20,
                days: 30,
            },
        };
        assert_eq!(Message::parse(&keep.to_bytes()).unwrap(), keep);
        for (bytes, days) in [(1u64, 0u64), (1, MAX_KEEP_DAYS + 1), (1 << 53, 1)] {
            let mut json = keep.to_json();
            json["object"]["bytes"] = json!(bytes);
            json["object"]["days"] = json!(days);
            assert!(
                Message::from_json(&json).is_err(),
                "{bytes} bytes, {days} days"
            );
        }
    }
}
