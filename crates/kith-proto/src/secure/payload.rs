//! The JSON payloads carried inside handshake messages, in the MyCHIPs reference's shapes.
//!
//! - `I` (IK message 1): a [`TicketRequest`],
//!   `{"target":"tally","action":"ticket","to":<chad>,"from":<chad>,"ticket":{"token":...}}`.
//! - `N` (Noise N message): the initiator's agent id as a JSON string, `"<43 characters>"`.
//!
//! Unknown fields are kept (in `extra`) rather than refused: the reference sends its whole
//! first protocol message as the `I` payload, and later versions may add to it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A CHIP address: a user (`cuid`, optional for a site as a whole) at an agent, and where the
/// agent listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chad {
    /// The user's CHIP user id, when the address names a user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuid: Option<String>,
    /// The agent (site) id: base64url of its Ed25519 key, 43 characters.
    pub agent: String,
    /// Host name or address where the agent listens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Port where the agent listens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// The ticket part of a first-contact request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketProof {
    /// The one-time token from the ticket (32 hex digits in the reference).
    pub token: String,
    /// The user certificate the reference may attach; carried, not interpreted here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<Value>,
}

/// The payload of an `I` frame: a request, under a ticket, to open a link for a new tally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRequest {
    /// `"tally"`.
    pub target: String,
    /// `"ticket"`.
    pub action: String,
    /// The address the ticket names (the responder's user).
    pub to: Chad,
    /// The initiator's address; `from.agent` must be the key the handshake proves.
    pub from: Chad,
    /// The ticket's token.
    pub ticket: TicketProof,
    /// Any other fields, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl TicketRequest {
    /// The value of [`TicketRequest::target`] for a ticket request.
    pub const TARGET: &'static str = "tally";
    /// The value of [`TicketRequest::action`] for a ticket request.
    pub const ACTION: &'static str = "ticket";

    /// A request to `to` from `from`, presenting `token`.
    pub fn new(to: Chad, from: Chad, token: impl Into<String>) -> TicketRequest {
        TicketRequest {
            target: TicketRequest::TARGET.into(),
            action: TicketRequest::ACTION.into(),
            to,
            from,
            ticket: TicketProof {
                token: token.into(),
                cert: None,
            },
            extra: Map::new(),
        }
    }

    /// The JSON bytes that go in the `I` payload.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising these plain types (string keys, no non-finite floats) cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses an `I` payload and checks `target` and `action`.
    pub fn from_json(bytes: &[u8]) -> Result<TicketRequest, String> {
        let req: TicketRequest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if req.target != TicketRequest::TARGET || req.action != TicketRequest::ACTION {
            return Err(format!(
                "expected target {:?} and action {:?}, got {:?} and {:?}",
                TicketRequest::TARGET,
                TicketRequest::ACTION,
                req.target,
                req.action
            ));
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_shape_round_trips() {
        let text = r#"{"target":"tally","action":"ticket","to":{"cuid":"a3","agent":"AAA","host":"a.example","port":65430},"from":{"agent":"BBB","host":"b.example","port":65431},"ticket":{"token":"0123456789abcdef0123456789abcdef"},"tally":{"x":1}}"#;
        let req = TicketRequest::from_json(text.as_bytes()).unwrap();
        assert_eq!(req.to.cuid.as_deref(), Some("a3"));
        assert_eq!(req.from.cuid, None);
        assert_eq!(req.from.port, Some(65431));
        assert_eq!(req.ticket.token, "0123456789abcdef0123456789abcdef");
        assert_eq!(req.extra["tally"]["x"], 1);
        let back: Value = serde_json::from_slice(&req.to_json()).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(text).unwrap());
    }

    #[test]
    fn wrong_target_or_missing_fields_refused() {
        assert!(TicketRequest::from_json(br#"{"target":"x","action":"ticket","to":{"agent":"a"},"from":{"agent":"b"},"ticket":{"token":"t"}}"#).is_err());
        assert!(TicketRequest::from_json(
            br#"{"target":"tally","action":"ticket","to":{"agent":"a"},"ticket":{"token":"t"}}"#
        )
        .is_err());
        assert!(TicketRequest::from_json(b"not json").is_err());
    }
}
