//! What a peer says about itself in `version`, and how much of it we believe.
//!
//! A peer announces where it listens (`announce`, `host:port`) so that a node that came back
//! on another port is redialled there. An announcement is a claim, and a linked peer could
//! use it to point our redials anywhere; so it is recorded only once checked:
//! - the same host as the link's own remote address (only the port may differ): the peer
//!   demonstrably sends from there;
//! - any other host: we dial it and run an anonymous query handshake (NK) against the
//!   peer's key, which only the holder of that key can complete. One check per peer at a
//!   time; only the first `version` of a link counts at all.

use super::{PeerAddress, Shared};
use crate::clock::mono_now;
use kith_crypto::identity::AgentId;
use kith_proto::secure::Initiator;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// What a `version` envelope says, as far as the link layer reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// Protocol versions the peer speaks that we speak too (never empty).
    pub protocols: Vec<u32>,
    /// Where the peer says it listens, if it says so and it could be dialled.
    pub announce: Option<PeerAddress>,
}

/// The useful part of a `version` envelope; `None` when it lists no protocol we speak (or
/// cannot be read): such a peer cannot be understood.
pub fn parse_version(data: &[u8]) -> Option<VersionInfo> {
    #[derive(serde::Deserialize)]
    struct Version {
        protocols: Vec<u32>,
        announce: Option<String>,
    }
    let version: Version = serde_json::from_slice(data).ok()?;
    let protocols: Vec<u32> = version
        .protocols
        .into_iter()
        .filter(|p| super::link_task::PROTOCOLS.contains(p))
        .collect();
    if protocols.is_empty() {
        return None;
    }
    Some(VersionInfo {
        protocols,
        announce: version.announce.as_deref().and_then(dialable),
    })
}

/// `host:port` if it could be dialled.
fn dialable(announce: &str) -> Option<PeerAddress> {
    let (host, port) = announce.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let valid = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
    valid.then(|| PeerAddress {
        host: host.to_owned(),
        port,
    })
}

/// Checks and records `address` as where `peer` listens (in the background).
pub(super) fn check(shared: &Arc<Shared>, peer: AgentId, remote: SocketAddr, address: PeerAddress) {
    if !shared.begin_announce_check(peer) {
        shared.counters.announcements_ignored.bump();
        return;
    }
    let shared_task = Arc::clone(shared);
    shared.tracker.spawn(async move {
        let same_host = address.host.parse::<IpAddr>().ok() == Some(remote.ip());
        let proven = same_host || proves_key(&shared_task, peer, &address).await;
        if proven {
            let now = shared_task.clock.unix_secs();
            match shared_task.directory.set_address(peer, address, now).await {
                Ok(true) => shared_task.counters.peer_addresses_updated.bump(),
                Ok(false) => {}
                Err(e) => tracing::warn!(peer = %peer, "could not record an address: {e}"),
            }
        } else {
            shared_task.counters.announcements_unproven.bump();
        }
        shared_task.end_announce_check(peer);
    });
}

/// True when whoever answers at `address` holds `peer`'s key (an NK handshake completes).
async fn proves_key(shared: &Shared, peer: AgentId, address: &PeerAddress) -> bool {
    let timeout = Duration::from_millis(shared.limits.connect_timeout_ms);
    let Ok(mut conn) = shared
        .dialer
        .dial(&address.host, address.port, timeout)
        .await
    else {
        return false;
    };
    let Ok(machine) = Initiator::query(
        &shared.secure,
        peer,
        b"",
        mono_now(),
        &mut rand::rngs::OsRng,
    ) else {
        return false;
    };
    let machine = super::handshake::Machine::Initiator(Box::new(machine));
    super::handshake::run(shared, conn.stream.as_mut(), machine)
        .await
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announced_address_must_be_dialable() {
        let at = |s: &str| {
            parse_version(format!(r#"{{"protocols":[1],"announce":"{s}"}}"#).as_bytes())
                .and_then(|v| v.announce)
                .map(|a| (a.host, a.port))
        };
        assert_eq!(at("127.0.0.1:7420"), Some(("127.0.0.1".into(), 7420)));
        assert_eq!(
            at("kith.example.org:9"),
            Some(("kith.example.org".into(), 9))
        );
        assert_eq!(at("[::1]:9"), Some(("::1".into(), 9)));
        assert_eq!(at("127.0.0.1:0"), None);
        assert_eq!(at("no port"), None);
        assert_eq!(at("bad host!:80"), None);
    }

    #[test]
    fn a_version_envelope_must_share_a_protocol_with_us() {
        assert!(parse_version(br#"{"protocols":[1],"software":"kith/9"}"#).is_some());
        assert!(parse_version(br#"{"protocols":[7,1]}"#).is_some());
        assert!(parse_version(br#"{"protocols":[2]}"#).is_none());
        assert!(parse_version(b"garbage").is_none());
    }
}
