//! CHIP addresses and user certificates.
//!
//! A CHAD names a user at a site: `{cuid, agent, host, port}`, written `cuid:agent` or
//! `cuid:agent@host:port`. A certificate describes a user to its partners:
//! `{chad, type, name, public, date, ...}`, where `public` is the user's P-521 JWK and `agent`
//! the site's key (its Noise identity). The reference's certificates carry more (`connect`,
//! `place`, `identity`); a certificate is kept as the JSON it arrived as, so that what was
//! signed is what is verified.

use crate::keys::PublicKey;
use crate::ValueError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Longest user id accepted.
pub const MAX_CUID: usize = 64;

/// A CHIP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Chad {
    /// The user's id at its site.
    pub cuid: String,
    /// The site's agent id.
    pub agent: String,
    /// Where the site listens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Its port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl Chad {
    /// Parses `cuid:agent` or `cuid:agent@host:port`.
    pub fn parse(text: &str) -> Result<Chad, ValueError> {
        let bad = || ValueError::BadChad(text.to_owned());
        let (cuid, rest) = text.trim().split_once(':').ok_or_else(bad)?;
        let (agent, place) = match rest.split_once('@') {
            Some((agent, place)) => (agent, Some(place)),
            None => (rest, None),
        };
        check_cuid(cuid).map_err(|_| bad())?;
        if agent.is_empty() || agent.len() > 128 || agent.contains(char::is_whitespace) {
            return Err(bad());
        }
        let (host, port) = match place {
            Some(place) => {
                let (host, port) = place.rsplit_once(':').ok_or_else(bad)?;
                let port: u16 = port.parse().map_err(|_| bad())?;
                if host.is_empty() {
                    return Err(bad());
                }
                (Some(host.to_owned()), Some(port))
            }
            None => (None, None),
        };
        Ok(Chad {
            cuid: cuid.to_owned(),
            agent: agent.to_owned(),
            host,
            port,
        })
    }

    /// The CHAD of a JSON object (`cuid`, or the older `cid`, and `agent`).
    pub fn from_json(value: &Value) -> Result<Chad, ValueError> {
        let text = |name: &str| value.get(name).and_then(Value::as_str);
        let cuid = text("cuid")
            .or_else(|| text("cid"))
            .ok_or_else(|| ValueError::field("chad.cuid", "missing"))?;
        let agent = text("agent").ok_or_else(|| ValueError::field("chad.agent", "missing"))?;
        let port = value
            .get("port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok());
        Ok(Chad {
            cuid: cuid.to_owned(),
            agent: agent.to_owned(),
            host: text("host").map(str::to_owned),
            port,
        })
    }

    /// The JSON object form.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// `cuid:agent`, the part that names the user whatever its site's address.
    pub fn id(&self) -> String {
        format!("{}:{}", self.cuid, self.agent)
    }

    /// Whether two CHADs name the same user (addresses may differ).
    pub fn same_user(&self, other: &Chad) -> bool {
        self.cuid == other.cuid && self.agent == other.agent
    }
}

impl std::fmt::Display for Chad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.cuid, self.agent)?;
        if let (Some(host), Some(port)) = (&self.host, self.port) {
            write!(f, "@{host}:{port}")?;
        }
        Ok(())
    }
}

/// Checks a user id: 1 to [`MAX_CUID`] characters of letters, digits, `_`, `-`, `.`.
pub fn check_cuid(cuid: &str) -> Result<(), ValueError> {
    if cuid.is_empty()
        || cuid.len() > MAX_CUID
        || !cuid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(ValueError::field(
            "cuid",
            format!("{cuid:?} must be 1 to {MAX_CUID} letters, digits, '_', '-' or '.'"),
        ));
    }
    Ok(())
}

/// A user certificate, kept as its JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Certificate(pub Value);

impl Certificate {
    /// A person's certificate as kith issues it: `name` split into first names and surname
    /// at its last space.
    pub fn new(chad: &Chad, name: &str, public: &PublicKey, date: &str) -> Certificate {
        let name = name.trim();
        let name_json = match name.rsplit_once(' ') {
            Some((first, surname)) => json!({"first": first.trim(), "surname": surname}),
            None => json!({"surname": name}),
        };
        Certificate(json!({
            "chad": chad.to_json(),
            "date": date,
            "name": name_json,
            "public": public.to_jwk(),
            "type": "p",
        }))
    }

    /// Checks that it is an object with a CHAD and a P-521 public key.
    pub fn parse(value: Value) -> Result<Certificate, ValueError> {
        let cert = Certificate(value);
        cert.chad()?;
        cert.public()?;
        Ok(cert)
    }

    /// The user's CHAD.
    pub fn chad(&self) -> Result<Chad, ValueError> {
        Chad::from_json(
            self.0
                .get("chad")
                .ok_or_else(|| ValueError::field("cert.chad", "missing"))?,
        )
    }

    /// The user's public key.
    pub fn public(&self) -> Result<PublicKey, ValueError> {
        PublicKey::from_jwk(
            self.0
                .get("public")
                .ok_or_else(|| ValueError::field("cert.public", "missing"))?,
        )
    }

    /// A name for display: `prefer` or `first` with `surname`, or a plain string name.
    pub fn display_name(&self) -> String {
        match self.0.get("name") {
            Some(Value::String(name)) => name.clone(),
            Some(Value::Object(name)) => {
                let part = |k: &str| name.get(k).and_then(Value::as_str).unwrap_or("");
                let first = if part("prefer").is_empty() {
                    part("first")
                } else {
                    part("prefer")
                };
                format!("{first} {}", part("surname")).trim().to_owned()
            }
            _ => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chads_parse_in_both_forms() {
        let chad = Chad::parse("alice:AGENT@127.0.0.1:7420").unwrap();
        assert_eq!(chad.cuid, "alice");
        assert_eq!(chad.port, Some(7420));
        assert_eq!(chad.to_string(), "alice:AGENT@127.0.0.1:7420");
        assert_eq!(Chad::parse(&chad.to_string()).unwrap(), chad);
        let short = Chad::parse("bob:XYZ").unwrap();
        assert_eq!(short.host, None);
        assert!(short.same_user(&Chad::parse("bob:XYZ@h:1").unwrap()));
        for bad in ["", "alice", ":x", "a b:x", "a:x@h", "a:x@h:99999", "a:x@:1"] {
            assert!(Chad::parse(bad).is_err(), "{bad}");
        }
    }
}
