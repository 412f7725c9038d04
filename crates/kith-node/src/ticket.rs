//! Connection tickets: what one site hands another, out of band, for first contact.
//!
//! The JSON form is the MyCHIPs one:
//! `{"token": <32 hex>, "expires": <RFC 3339>, "chad": {"cuid": ..., "agent": ..., "host": ...,
//! "port": ...}}`. The one-line form that people paste into chats and mail is that JSON,
//! base64url-encoded without padding, after the prefix `kith-ticket:`; `kith connect` accepts
//! either form.
//!
//! kith adds two optional keys, which a MyCHIPs reader ignores: `addrs`, further addresses of
//! the site (`IP:PORT`, what its peers observe it at, IPv6 next to IPv4; at most
//! [`MAX_ADDRS`]), and `via`, agent ids of the site's peers that broker a hole punch or relay
//! to it when no address answers (at most [`MAX_VIA`]).
//!
//! A ticket is a bearer secret until it is used: whoever holds it may connect once. Its
//! validity (exists, unexpired, unused, unrevoked) is decided by the issuing node's database
//! when it is redeemed, never by the ticket itself.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use kith_crypto::identity::AgentId;
pub use kith_proto::secure::Chad;
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The prefix of the one-line form.
pub const LINE_PREFIX: &str = "kith-ticket:";

/// Why a ticket was not accepted as input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TicketError {
    /// Neither JSON nor a `kith-ticket:` line.
    #[error("not a ticket: expected JSON or a line starting with {LINE_PREFIX}")]
    Unrecognised,
    /// The line's base64 or JSON is broken.
    #[error("ticket is malformed: {0}")]
    Malformed(String),
    /// A field has an impossible value.
    #[error("ticket field {field} is invalid: {reason}")]
    BadField {
        /// Which field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The ticket's own expiry has passed (the issuer would refuse it anyway).
    #[error("ticket expired at {0}; ask its issuer for a new one")]
    Expired(String),
}

/// A connection ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// 16 random bytes, hex.
    pub token: String,
    /// When the ticket stops working, RFC 3339 in UTC.
    pub expires: String,
    /// The issuing site.
    pub chad: Chad,
    /// Further addresses of the site (`IP:PORT`), tried after `chad`'s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addrs: Vec<String>,
    /// Peers of the site that broker a punch or relay to it (agent ids).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub via: Vec<String>,
}

/// `HOST:PORT`, an IPv6 host in brackets (`[2001:db8::1]:7420`), as addresses are written
/// wherever one is shown or sent.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Addresses a ticket may list in `addrs`.
pub const MAX_ADDRS: usize = 8;
/// Brokers a ticket may list in `via`.
pub const MAX_VIA: usize = 4;

impl Ticket {
    /// A new ticket with a fresh token for the site `chad`, valid for `ttl` from `now`.
    pub fn issue(chad: Chad, now: SystemTime, ttl: Duration, token: [u8; 16]) -> Ticket {
        Ticket {
            token: hex::encode(token),
            expires: format_time(now + ttl),
            chad,
            addrs: Vec::new(),
            via: Vec::new(),
        }
    }

    /// The one-line form.
    pub fn to_line(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("{LINE_PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
    }

    /// Parses either form and checks every field.
    pub fn parse(text: &str) -> Result<Ticket, TicketError> {
        let text = text.trim();
        let ticket: Ticket = if let Some(encoded) = text.strip_prefix(LINE_PREFIX) {
            let json = URL_SAFE_NO_PAD
                .decode(encoded.trim())
                .map_err(|e| TicketError::Malformed(format!("base64: {e}")))?;
            serde_json::from_slice(&json).map_err(|e| TicketError::Malformed(e.to_string()))?
        } else if text.starts_with('{') {
            serde_json::from_str(text).map_err(|e| TicketError::Malformed(e.to_string()))?
        } else {
            return Err(TicketError::Unrecognised);
        };
        ticket.validate()?;
        Ok(ticket)
    }

    fn validate(&self) -> Result<(), TicketError> {
        let bad = |field, reason: &str| TicketError::BadField {
            field,
            reason: reason.to_owned(),
        };
        if self.token.len() != 32 || !self.token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("token", "must be 32 hex digits"));
        }
        self.expires_at()?;
        self.agent()?;
        self.site_address()?;
        if self.addrs.len() > MAX_ADDRS {
            return Err(bad("addrs", "lists too many addresses"));
        }
        if self
            .addrs
            .iter()
            .any(|a| a.parse::<std::net::SocketAddr>().is_err())
        {
            return Err(bad("addrs", "every entry must be IP:PORT"));
        }
        if self.via.len() > MAX_VIA {
            return Err(bad("via", "lists too many peers"));
        }
        if self.via.iter().any(|a| a.parse::<AgentId>().is_err()) {
            return Err(bad("via", "every entry must be an agent id"));
        }
        Ok(())
    }

    /// Every address to try, `chad`'s first, without repeats.
    pub fn addresses(&self) -> Vec<(String, u16)> {
        let mut out: Vec<(String, u16)> = self.site_address().into_iter().collect();
        for a in &self.addrs {
            if let Ok(addr) = a.parse::<std::net::SocketAddr>() {
                let entry = (addr.ip().to_string(), addr.port());
                if !out.contains(&entry) {
                    out.push(entry);
                }
            }
        }
        out
    }

    /// The brokers the ticket names.
    pub fn brokers(&self) -> Vec<AgentId> {
        self.via.iter().filter_map(|a| a.parse().ok()).collect()
    }

    /// Where the issuing site listens: a ticket must name a host and a non-zero port.
    pub fn site_address(&self) -> Result<(String, u16), TicketError> {
        let bad = |field, reason: &str| TicketError::BadField {
            field,
            reason: reason.to_owned(),
        };
        let host = match self.chad.host.as_deref() {
            Some(host) if !host.is_empty() && host.len() <= 253 => host.to_owned(),
            _ => return Err(bad("chad.host", "must be a host name or address")),
        };
        match self.chad.port {
            Some(port) if port != 0 => Ok((host, port)),
            _ => Err(bad("chad.port", "must be a port between 1 and 65535")),
        }
    }

    /// The issuing site's agent id.
    pub fn agent(&self) -> Result<AgentId, TicketError> {
        self.chad
            .agent
            .parse()
            .map_err(
                |e: kith_crypto::identity::IdentityError| TicketError::BadField {
                    field: "chad.agent",
                    reason: e.to_string(),
                },
            )
    }

    /// The expiry as a time.
    pub fn expires_at(&self) -> Result<SystemTime, TicketError> {
        parse_time(&self.expires).ok_or_else(|| TicketError::BadField {
            field: "expires",
            reason: "not RFC 3339".into(),
        })
    }

    /// Fails when the ticket's expiry is not after `now`.
    pub fn check_unexpired(&self, now: SystemTime) -> Result<(), TicketError> {
        if self.expires_at()? <= now {
            return Err(TicketError::Expired(self.expires.clone()));
        }
        Ok(())
    }
}

/// Issues a ticket for the site `chad`: the ticket to hand over and the record that the
/// issuing node's database keeps (the node or the CLI inserts it).
pub fn issue(
    chad: Chad,
    now: SystemTime,
    ttl: Duration,
    reusable: bool,
    rng: &mut impl rand::RngCore,
) -> (Ticket, kith_store::meta::TicketRecord) {
    let mut token = [0u8; 16];
    rng.fill_bytes(&mut token);
    let cuid = chad.cuid.clone();
    let ticket = Ticket::issue(chad, now, ttl, token);
    let issued = unix_secs(now);
    let mut record = kith_store::meta::TicketRecord::new(
        ticket.token.clone(),
        issued,
        issued.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
    );
    record.reusable = reusable;
    record.cuid = cuid;
    (ticket, record)
}

/// Seconds since the Unix epoch (0 before it).
pub fn unix_secs(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// RFC 3339 in UTC, whole seconds.
pub fn format_time(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Parses RFC 3339 as humantime does (UTC `Z` form, optional fraction).
pub fn parse_time(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text.trim_end_matches('Z')).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Chad {
        Chad {
            cuid: Some("alice".into()),
            agent: kith_crypto::identity::Identity::generate(&mut rand::rngs::OsRng)
                .agent_id()
                .to_string(),
            host: Some("127.0.0.1".into()),
            port: Some(7420),
        }
    }

    #[test]
    fn json_and_line_forms_round_trip() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ticket = Ticket::issue(site(), now, Duration::from_secs(45 * 60), [0xab; 16]);
        assert_eq!(ticket.expires, "2027-01-15T08:45:00Z");
        let json = serde_json::to_string(&ticket).unwrap();
        assert_eq!(Ticket::parse(&json).unwrap(), ticket);
        let line = ticket.to_line();
        assert!(line.starts_with(LINE_PREFIX) && !line.contains(char::is_whitespace));
        assert_eq!(Ticket::parse(&format!("  {line}\n")).unwrap(), ticket);
        assert!(ticket.check_unexpired(now).is_ok());
        let later = now + Duration::from_secs(45 * 60);
        assert!(matches!(
            ticket.check_unexpired(later),
            Err(TicketError::Expired(_))
        ));
    }

    #[test]
    fn bad_tickets_name_what_is_wrong() {
        let now = SystemTime::now();
        let good = Ticket::issue(site(), now, Duration::from_secs(60), [1; 16]);
        assert_eq!(Ticket::parse("hello"), Err(TicketError::Unrecognised));
        assert!(matches!(
            Ticket::parse("kith-ticket:!!!"),
            Err(TicketError::Malformed(_))
        ));
        let mut t = good.clone();
        t.token = "xyz".into();
        let err = Ticket::parse(&serde_json::to_string(&t).unwrap()).unwrap_err();
        assert!(err.to_string().contains("token"), "{err}");
        let mut t = good.clone();
        t.chad.agent = "not-an-agent".into();
        let err = Ticket::parse(&serde_json::to_string(&t).unwrap()).unwrap_err();
        assert!(err.to_string().contains("chad.agent"), "{err}");
        let mut t = good;
        t.chad.port = Some(0);
        assert!(Ticket::parse(&serde_json::to_string(&t).unwrap()).is_err());
    }
}
