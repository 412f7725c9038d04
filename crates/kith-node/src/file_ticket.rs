//! File tickets: one line that carries a node ticket and a file's address, so that whoever
//! holds it links to the node and fetches the file in one step (as an iroh blob ticket does):
//! `kith file get TICKET`, or the web page's fetch box, both through the control API's fetch.
//!
//! The line is `kith-file:` followed by the base64url (no padding) of the JSON
//! `{"hash": <64 hex>, "name": ..., "size": ..., "ticket": <the node ticket's JSON>}`. Like
//! the node ticket inside it, it is a bearer secret until used: whoever holds it may link
//! once (a one-time ticket) and fetch the file.

use crate::ticket::{Ticket, TicketError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use kith_store::ContentHash;
use serde::{Deserialize, Serialize};

/// The prefix of a file ticket.
pub const PREFIX: &str = "kith-file:";

/// The longest file ticket line accepted (a node ticket with its addresses and brokers is a
/// few hundred bytes; this leaves room without letting a paste be unbounded).
pub const MAX_LINE: usize = 16 * 1024;

/// Why a file ticket was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FileTicketError {
    /// It does not start with [`PREFIX`].
    #[error("not a file ticket: expected a line starting with {PREFIX}")]
    NotAFileTicket,
    /// Longer than [`MAX_LINE`].
    #[error("the file ticket is longer than {MAX_LINE} bytes")]
    TooLong,
    /// Bad base64 or JSON.
    #[error("the file ticket is malformed ({0})")]
    Malformed(String),
    /// The hash is not a content address.
    #[error("the file ticket names {0:?}, not a content address")]
    BadHash(String),
    /// The node ticket inside is not valid.
    #[error("the file ticket's node ticket: {0}")]
    Ticket(#[from] TicketError),
}

/// A file ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileTicket {
    /// The file (64 hex).
    pub hash: String,
    /// Its name at the issuing node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The issuing node's ticket.
    pub ticket: Ticket,
}

impl FileTicket {
    /// The one-line form.
    pub fn to_line(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
    }

    /// True when `text` looks like a file ticket (whether or not it is a valid one).
    pub fn looks_like(text: &str) -> bool {
        text.trim().starts_with(PREFIX)
    }

    /// Parses the one-line form and checks the hash and the node ticket.
    pub fn parse(text: &str) -> Result<FileTicket, FileTicketError> {
        let text = text.trim();
        if text.len() > MAX_LINE {
            return Err(FileTicketError::TooLong);
        }
        let encoded = text
            .strip_prefix(PREFIX)
            .ok_or(FileTicketError::NotAFileTicket)?;
        let json = URL_SAFE_NO_PAD
            .decode(encoded.trim())
            .map_err(|e| FileTicketError::Malformed(format!("base64: {e}")))?;
        let ticket: FileTicket = serde_json::from_slice(&json)
            .map_err(|e| FileTicketError::Malformed(format!("JSON: {e}")))?;
        ticket.content_hash()?;
        // The same checks as `kith connect`'s (fields, agent id).
        let inner = serde_json::to_string(&ticket.ticket)
            .map_err(|e| FileTicketError::Malformed(e.to_string()))?;
        Ticket::parse(&inner)?;
        Ok(ticket)
    }

    /// The file's address.
    pub fn content_hash(&self) -> Result<ContentHash, FileTicketError> {
        self.hash
            .parse()
            .map_err(|_| FileTicketError::BadHash(self.hash.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::Chad;
    use std::time::{Duration, SystemTime};

    #[test]
    fn a_file_ticket_round_trips_and_a_damaged_one_is_refused() {
        let identity = kith_crypto::identity::Identity::generate(&mut rand::rngs::OsRng);
        let chad = Chad {
            cuid: None,
            agent: identity.agent_id().to_string(),
            host: Some("127.0.0.1".into()),
            port: Some(7420),
        };
        let ticket = Ticket::issue(chad, SystemTime::now(), Duration::from_secs(60), [7; 16]);
        let file = FileTicket {
            hash: "ab".repeat(32),
            name: Some("photo.jpg".into()),
            size: Some(6708),
            ticket,
        };
        let line = file.to_line();
        assert!(FileTicket::looks_like(&line));
        assert!(!line.contains(char::is_whitespace));
        assert_eq!(FileTicket::parse(&line).unwrap(), file);
        assert!(FileTicket::parse(&line[..line.len() - 5]).is_err());
        let mut bad = file.clone();
        bad.hash = "not a hash".into();
        assert_eq!(
            FileTicket::parse(&bad.to_line()),
            Err(FileTicketError::BadHash("not a hash".into()))
        );
        assert_eq!(
            FileTicket::parse("kith-ticket:abc"),
            Err(FileTicketError::NotAFileTicket)
        );
        let long = format!("{PREFIX}{}", "A".repeat(MAX_LINE));
        assert_eq!(FileTicket::parse(&long), Err(FileTicketError::TooLong));
    }
}
