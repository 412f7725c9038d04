//! The bodies of the link-level envelopes: `version` and `bye` (JSON), and the bounds every
//! field of a received `version` is held to.
//!
//! A `version` is `{"protocols": [1], "software": "kith/0.1.0", "announce": "host:port",
//! "observed": "ip:port", "capabilities": ["..."]}`. Only `protocols` is required; unknown
//! keys are ignored, so later releases can add to it. Decoding never trusts a length: the
//! whole body is refused above [`MAX_VERSION_LEN`] before it is parsed, and each field is
//! clipped to its own bound (entries beyond a count are ignored, an over-long address is
//! dropped, an over-long software name is cut), so a peer cannot make the node hold more than
//! a few kilobytes per link, whatever it sends.

use serde_json::{json, Map, Value};

/// The largest `version` body accepted, in bytes; a larger one ends the link as
/// incompatible before it is parsed.
pub const MAX_VERSION_LEN: usize = 4096;
/// Protocol numbers kept from a `version` (further ones are ignored).
pub const MAX_PROTOCOLS: usize = 32;
/// Longest software name kept, in bytes (cut at a character boundary).
pub const MAX_SOFTWARE_LEN: usize = 128;
/// Longest `announce` or `observed` address kept, in bytes (a DNS name of 253 plus a port
/// and brackets fits); a longer one is ignored.
pub const MAX_ADDRESS_LEN: usize = 300;
/// Capabilities kept from a `version` (further ones are ignored).
pub const MAX_CAPABILITIES: usize = 32;
/// Longest capability name kept, in bytes; a longer one is ignored.
pub const MAX_CAPABILITY_LEN: usize = 64;
/// Longest `bye` reason kept, in bytes; a `bye` body over 256 bytes is not parsed at all.
pub const MAX_BYE_REASON_LEN: usize = 32;

/// What a `version` envelope says (ours, or the peer's after decoding and clipping).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VersionInfo {
    /// Link protocol versions the sender speaks.
    pub protocols: Vec<u32>,
    /// The sender's software, e.g. `kith/0.1.0`.
    pub software: String,
    /// Where the sender says it listens (`host:port`); a claim, to be checked before use.
    pub announce: Option<String>,
    /// The receiver's address as the sender sees it (`ip:port`), so a node behind NAT learns
    /// its public address.
    pub observed: Option<String>,
    /// Feature flags for later negotiation.
    pub capabilities: Vec<String>,
}

/// Why a peer's `version` ends the link as incompatible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// The body is larger than [`MAX_VERSION_LEN`]; it was not parsed.
    #[error("version body of {0} bytes is over the limit of {MAX_VERSION_LEN}")]
    TooLarge(usize),
    /// The body is not a JSON object with a `protocols` array.
    #[error("version body is not a JSON object with a protocols list: {0}")]
    Malformed(String),
    /// The peer speaks none of our protocol versions.
    #[error("no common protocol version: we speak {ours:?}, the peer speaks {theirs:?}")]
    NoCommonProtocol {
        /// Ours.
        ours: Vec<u32>,
        /// Theirs (clipped to [`MAX_PROTOCOLS`]).
        theirs: Vec<u32>,
    },
}

impl VersionInfo {
    /// This value with every field clipped to the bounds a receiver applies, so what we send
    /// is exactly what a peer with the same rules keeps.
    pub fn bounded(&self) -> VersionInfo {
        VersionInfo {
            protocols: self.protocols.iter().copied().take(MAX_PROTOCOLS).collect(),
            software: clip(&self.software, MAX_SOFTWARE_LEN),
            announce: self.announce.clone().filter(|a| a.len() <= MAX_ADDRESS_LEN),
            observed: self.observed.clone().filter(|a| a.len() <= MAX_ADDRESS_LEN),
            capabilities: self
                .capabilities
                .iter()
                .filter(|c| c.len() <= MAX_CAPABILITY_LEN)
                .take(MAX_CAPABILITIES)
                .cloned()
                .collect(),
        }
    }

    /// The JSON body of a `version` envelope (clipped as by [`bounded`](Self::bounded)).
    /// Absent addresses and an empty capability list are left out.
    pub fn to_json(&self) -> Vec<u8> {
        let v = self.bounded();
        let mut body = Map::new();
        body.insert("protocols".into(), json!(v.protocols));
        body.insert("software".into(), json!(v.software));
        if let Some(a) = v.announce {
            body.insert("announce".into(), json!(a));
        }
        if let Some(o) = v.observed {
            body.insert("observed".into(), json!(o));
        }
        if !v.capabilities.is_empty() {
            body.insert("capabilities".into(), json!(v.capabilities));
        }
        // A map of strings and numbers always serialises.
        serde_json::to_vec(&Value::Object(body)).unwrap_or_default()
    }

    /// Decodes a received `version` body, clipping every field (see the module docs). Fails
    /// only when the body is too large, is not JSON, or has no `protocols` array; fields of
    /// the wrong type are ignored.
    pub fn from_json(data: &[u8]) -> Result<VersionInfo, VersionError> {
        if data.len() > MAX_VERSION_LEN {
            return Err(VersionError::TooLarge(data.len()));
        }
        let value: Value =
            serde_json::from_slice(data).map_err(|e| VersionError::Malformed(e.to_string()))?;
        let Value::Object(map) = value else {
            return Err(VersionError::Malformed("not an object".into()));
        };
        let Some(Value::Array(protocols)) = map.get("protocols") else {
            return Err(VersionError::Malformed("no protocols array".into()));
        };
        let protocols = protocols
            .iter()
            .filter_map(|p| p.as_u64().and_then(|p| u32::try_from(p).ok()))
            .take(MAX_PROTOCOLS)
            .collect();
        let text = |key: &str| map.get(key).and_then(Value::as_str);
        let address = |key: &str| {
            text(key)
                .filter(|a| a.len() <= MAX_ADDRESS_LEN)
                .map(str::to_owned)
        };
        let capabilities = match map.get("capabilities") {
            Some(Value::Array(caps)) => caps
                .iter()
                .filter_map(Value::as_str)
                .filter(|c| c.len() <= MAX_CAPABILITY_LEN)
                .take(MAX_CAPABILITIES)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        Ok(VersionInfo {
            protocols,
            software: clip(text("software").unwrap_or(""), MAX_SOFTWARE_LEN),
            announce: address("announce"),
            observed: address("observed"),
            capabilities,
        })
    }

    /// The protocol versions both `ours` and this version list, in our order of preference.
    pub fn common_protocols(&self, ours: &[u32]) -> Vec<u32> {
        ours.iter()
            .copied()
            .filter(|p| self.protocols.contains(p))
            .collect()
    }

    /// [`announce`](Self::announce) as a host and port, if it could be dialled (see
    /// [`parse_host_port`]). Still only the peer's claim.
    pub fn announced_host_port(&self) -> Option<(&str, u16)> {
        parse_host_port(self.announce.as_deref()?)
    }
}

/// Splits `host:port` and checks it could be dialled: a non-zero port, and a host of at most
/// 253 characters made of letters, digits, `.`, `-`, and (for IPv6) `:`, `[`, `]`.
pub fn parse_host_port(text: &str) -> Option<(&str, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let valid = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    valid.then_some((host, port))
}

/// The JSON body of a `bye`: `{"reason": "..."}`.
pub(crate) fn bye_body(reason: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "reason": reason })).unwrap_or_default()
}

/// The reason in a received `bye` body, clipped, if the body is small and says one.
pub(crate) fn bye_reason(data: &[u8]) -> Option<String> {
    if data.len() > 256 {
        return None;
    }
    let value: Value = serde_json::from_slice(data).ok()?;
    let reason = value.get("reason")?.as_str()?;
    Some(clip(reason, MAX_BYE_REASON_LEN))
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ours_round_trips_and_leaves_out_what_is_absent() {
        let v = VersionInfo {
            protocols: vec![1],
            software: "kith/0.1.0".into(),
            announce: Some("node.example:7420".into()),
            observed: None,
            capabilities: vec![],
        };
        let text = String::from_utf8(v.to_json()).unwrap();
        assert_eq!(
            text,
            r#"{"announce":"node.example:7420","protocols":[1],"software":"kith/0.1.0"}"#
        );
        assert_eq!(VersionInfo::from_json(text.as_bytes()).unwrap(), v);
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_ignored() {
        let v = VersionInfo::from_json(
            br#"{"protocols":[7,1,"x",-1,4294967296],"software":5,"announce":3,"extra":{"a":[1]},"capabilities":["w",2]}"#,
        )
        .unwrap();
        assert_eq!(v.protocols, vec![7, 1]);
        assert_eq!(v.software, "");
        assert_eq!(v.announce, None);
        assert_eq!(v.capabilities, vec!["w".to_string()]);
        assert_eq!(v.common_protocols(&[1, 2]), vec![1]);
    }

    #[test]
    fn every_field_is_bounded() {
        let long = "a".repeat(MAX_ADDRESS_LEN + 1);
        let caps: Vec<String> = (0..100).map(|i| format!("c{i}")).collect();
        let body = json!({
            "protocols": (0..100).collect::<Vec<u32>>(),
            "software": "é".repeat(100),
            "announce": long,
            "observed": "1.2.3.4:5",
            "capabilities": caps,
        });
        let v = VersionInfo::from_json(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!(v.protocols.len(), MAX_PROTOCOLS);
        assert!(v.software.len() <= MAX_SOFTWARE_LEN && v.software.starts_with('é'));
        assert_eq!(v.announce, None);
        assert_eq!(v.observed.as_deref(), Some("1.2.3.4:5"));
        assert_eq!(v.capabilities.len(), MAX_CAPABILITIES);
        assert_eq!(v.bounded(), v);
        let big = vec![b' '; MAX_VERSION_LEN + 1];
        assert_eq!(
            VersionInfo::from_json(&big),
            Err(VersionError::TooLarge(MAX_VERSION_LEN + 1))
        );
    }

    #[test]
    fn a_version_needs_a_protocols_array() {
        for bad in [
            &b"garbage"[..],
            b"[1]",
            br#"{"software":"x"}"#,
            br#"{"protocols":1}"#,
        ] {
            assert!(matches!(
                VersionInfo::from_json(bad),
                Err(VersionError::Malformed(_))
            ));
        }
    }

    #[test]
    fn an_announced_address_must_be_dialable() {
        assert_eq!(parse_host_port("127.0.0.1:7420"), Some(("127.0.0.1", 7420)));
        assert_eq!(
            parse_host_port("kith.example.org:9"),
            Some(("kith.example.org", 9))
        );
        assert_eq!(parse_host_port("[::1]:9"), Some(("[::1]", 9)));
        assert_eq!(parse_host_port("127.0.0.1:0"), None);
        assert_eq!(parse_host_port("no port"), None);
        assert_eq!(parse_host_port("bad host!:80"), None);
    }

    #[test]
    fn bye_reasons() {
        assert_eq!(bye_body("idle"), br#"{"reason":"idle"}"#);
        assert_eq!(bye_reason(br#"{"reason":"idle"}"#).as_deref(), Some("idle"));
        assert_eq!(bye_reason(b"").as_deref(), None);
        let long = format!(r#"{{"reason":"{}"}}"#, "x".repeat(100));
        assert_eq!(
            bye_reason(long.as_bytes()).unwrap().len(),
            MAX_BYE_REASON_LEN
        );
        assert_eq!(bye_reason(&[b' '; 300]), None);
    }
}
