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
pub(super) async fn proves_key(shared: &Shared, peer: AgentId, address: &PeerAddress) -> bool {
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
