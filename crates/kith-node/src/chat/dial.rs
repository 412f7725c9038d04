//! `kith chat peer HOST:PORT`: ptpchat routers this node keeps dialled. Each has one task
//! that connects (plain TCP, the reference's framing), runs the connection as a chat-port
//! neighbour of kind [`kith_chat::NeighbourKind::Router`] (this node says HELLO first, and
//! the router's ROUTING is taken: untrusted and capped if its id is plain), and when it ends
//! dials again, waiting twice as long after each failure (1 s up to 5 min; back to 1 s after
//! a connection that lasted). The list is kept in the database and dialled at start-up.

use super::driver::Driver;
use super::Chat;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A connection that lasted this long resets the backoff.
const LASTED: Duration = Duration::from_secs(60);
/// Routers dialled at most (each is a task and a connection).
const MAX_ROUTERS: usize = 64;

/// `HOST:PORT` split, the port parsed.
pub(super) fn host_port(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_owned(), port.parse().ok()?))
}

impl Driver {
    /// Starts dialling `address` (once; a bounded number of routers).
    pub(super) fn start_router_dialler(&mut self, address: String) {
        if self.routers.contains_key(&address) || self.routers.len() >= MAX_ROUTERS {
            return;
        }
        let stop = self.cancel.child_token();
        self.routers.insert(address.clone(), stop.clone());
        tokio::spawn(keep_dialled(self.chat.clone(), address, stop));
    }
}

async fn keep_dialled(chat: Chat, address: String, stop: CancellationToken) {
    let Some((host, port)) = host_port(&address) else {
        return;
    };
    let timeout = Duration::from_millis(chat.settings().link_limits.connect_timeout_ms);
    let mut wait = BACKOFF_MIN;
    loop {
        let connect = tokio::time::timeout(
            timeout,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        );
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            r = connect => r,
        };
        match stream {
            Ok(Ok(stream)) => {
                chat.counters().chat_routers_dialled.bump();
                let ip = stream
                    .peer_addr()
                    .map(|a| a.ip())
                    .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
                let _ = stream.set_nodelay(true);
                let started = tokio::time::Instant::now();
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = super::port::client(&chat, stream, ip, true) => {}
                }
                if started.elapsed() >= LASTED {
                    wait = BACKOFF_MIN;
                }
                tracing::info!(router = %address, "chat: connection to the router ended; dialling again");
            }
            Ok(Err(e)) => {
                chat.counters().chat_router_dial_failures.bump();
                tracing::debug!(router = %address, "chat: cannot reach the router: {e}");
            }
            Err(_) => {
                chat.counters().chat_router_dial_failures.bump();
                tracing::debug!(router = %address, "chat: the router did not answer in time");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn router_addresses_are_host_and_port() {
        assert_eq!(host_port("10.0.0.1:9001"), Some(("10.0.0.1".into(), 9001)));
        assert_eq!(host_port("[::1]:9001"), Some(("::1".into(), 9001)));
        assert_eq!(
            host_port("example.org:9001"),
            Some(("example.org".into(), 9001))
        );
        assert_eq!(host_port("9001"), None);
        assert_eq!(host_port(":9001"), None);
        assert_eq!(host_port("h:x"), None);
    }
}
