//! One established link: Datt envelopes in `T` frames, both ways, until someone says `bye`.
//!
//! The application stream is a byte stream of envelopes; one envelope may span many frames
//! and one frame may hold several envelopes. Link-level commands:
//! - `version`: the first envelope each side sends, `{"protocols": [1], "software": ...,
//!   "announce": "host:port"}` (where the sender listens now, recorded for redials), so
//!   later releases can negotiate; a peer that lists no protocol we speak is dropped;
//! - `ping` (8 bytes) answered by `pong` echoing them;
//! - `bye` `{"reason": ...}`: "I will send nothing more on this link". The side that says it
//!   first keeps reading until the other's `bye` (or a drain deadline); the other side first
//!   flushes what it had queued, then answers `bye`. That is how a retired duplicate, an idle
//!   link or a removed peer closes without losing an envelope in flight.
//!
//! Any other command goes to [`crate::node::NodeState::dispatch`], the seam where the file and
//! chat protocols plug in.

use super::handshake::Established;
use crate::links::{LinkHandle, LinkId, Outgoing, Registration, Side};
use crate::node::NodeState;
use bytes::{Bytes, BytesMut};
use kith_crypto::identity::AgentId;
use kith_proto::secure::{FrameDecoder, Link};
use kith_proto::wire::{Command, Envelope, EnvelopeDecoder};
use kith_store::meta::PeerUpsert;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// The link protocol versions this build speaks.
pub const PROTOCOLS: &[u32] = &[1];

/// How a link ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEnd {
    /// Both sides said `bye`, or we closed on purpose: nothing to redial.
    Orderly,
    /// The connection broke (EOF without `bye`, I/O or decrypt error): worth redialling.
    Lost,
}

/// Registers an established link with the manager and spawns its task. Returns once the link
/// is registered, so a caller can send on it at once.
pub fn start(
    state: &Arc<NodeState>,
    stream: TcpStream,
    established: Established,
    side: Side,
    peer: AgentId,
    remote: SocketAddr,
) -> Registration {
    let initiator = match side {
        Side::Initiator => state.agent,
        Side::Responder => peer,
    };
    let (tx, rx) = mpsc::channel(state.config.limits.link_queue_envelopes.max(1));
    let id = state.links.next_id();
    let handle = LinkHandle {
        id,
        side,
        initiator,
        remote,
        since: Instant::now(),
        outgoing: tx.clone(),
    };
    let registration = state.links.register(peer, handle);
    if registration == Registration::Retire {
        let _ = tx.try_send(Outgoing::Retire);
    } else {
        crate::sharing::link_up(state, peer);
    }
    state.chat.link_up(peer, Some(remote.ip()));
    state.counters.bump("links_established");
    tracing::info!(peer = %peer, %remote, ?side, "link up");
    let task_state = Arc::clone(state);
    tokio::spawn(async move {
        let end = run(&task_state, stream, established, rx, id, peer).await;
        state_after_link(&task_state, peer, id, side, remote, end).await;
    });
    registration
}

async fn state_after_link(
    state: &Arc<NodeState>,
    peer: AgentId,
    id: LinkId,
    side: Side,
    remote: SocketAddr,
    end: LinkEnd,
) {
    let was_active = state.links.unregister(&peer, id);
    if !state.links.is_linked(&peer) {
        // The peer's file-exchange session (either end) died with the link.
        state.exchange.link_down(&peer);
        state.chat.link_down(peer);
    }
    if side == Side::Responder {
        state.guard().link_closed(remote.ip());
    }
    tracing::info!(peer = %peer, ?end, "link down");
    if end == LinkEnd::Lost && was_active && !state.is_stopping() {
        state.counters.bump("links_lost");
        super::spawn_redial(Arc::clone(state), peer);
    }
}

struct LinkIo {
    stream: TcpStream,
    link: Link,
    frames: FrameDecoder,
    envelopes: EnvelopeDecoder,
    inbuf: BytesMut,
    plain: BytesMut,
    out: BytesMut,
}

impl LinkIo {
    async fn send(&mut self, envelope: &Envelope) -> std::io::Result<()> {
        let bytes = envelope.to_bytes().map_err(std::io::Error::other)?;
        self.out.clear();
        self.link
            .seal_into(&bytes, &mut self.out)
            .map_err(std::io::Error::other)?;
        self.stream.write_all(&self.out).await
    }

    async fn bye(&mut self, reason: &str) -> std::io::Result<()> {
        let body = serde_json::to_vec(&json!({ "reason": reason })).unwrap_or_default();
        self.send(&envelope("bye", body)).await
    }
}

/// An envelope for one of the node's fixed command names (`version`, `bye`, `chat`, `offer`,
/// ...), which are all valid command names.
pub fn envelope(command: &'static str, data: impl Into<Bytes>) -> Envelope {
    Envelope::new(
        Command::new(command).unwrap_or_else(|_| unreachable!("{command} is a valid command name")),
        data,
    )
}

async fn run(
    state: &Arc<NodeState>,
    stream: TcpStream,
    established: Established,
    mut rx: mpsc::Receiver<Outgoing>,
    id: LinkId,
    peer: AgentId,
) -> LinkEnd {
    let limits = &state.config.limits;
    let mut io = LinkIo {
        stream,
        link: established.link,
        frames: FrameDecoder::new(limits),
        envelopes: EnvelopeDecoder::new(limits.max_envelope_data),
        inbuf: established.leftover,
        plain: BytesMut::new(),
        out: BytesMut::new(),
    };
    let chad = state.own_chad();
    let mut version =
        json!({ "protocols": PROTOCOLS, "software": concat!("kith/", env!("CARGO_PKG_VERSION")) });
    if let (Some(host), Some(port)) = (chad.host, chad.port.filter(|p| *p != 0)) {
        // Where we listen now: a peer that knew an older address redials this one.
        version["announce"] = json!(format!("{host}:{port}"));
    }
    if io
        .send(&envelope(
            "version",
            serde_json::to_vec(&version).unwrap_or_default(),
        ))
        .await
        .is_err()
    {
        return LinkEnd::Lost;
    }
    let mut said_bye = false;
    let mut heard_bye = false;
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    let drain = Duration::from_millis(limits.link_drain_ms);
    loop {
        // Frames already buffered first (the handshake may have read past its end).
        match process_input(state, &mut io, peer, &mut heard_bye).await {
            Ok(()) => {}
            Err(e) => {
                tracing::debug!(peer = %peer, "link error: {e}");
                state.counters.bump("links_broken");
                return LinkEnd::Lost;
            }
        }
        if heard_bye && !said_bye {
            // The peer is done sending: stop taking new work, flush what is queued, answer.
            state.links.unregister(&peer, id);
            rx.close();
            while let Some(item) = rx.recv().await {
                if let Outgoing::Envelope(env) = item {
                    if io.send(&env).await.is_err() {
                        return LinkEnd::Lost;
                    }
                }
            }
            let _ = io.bye("ack").await;
            return LinkEnd::Orderly;
        }
        if said_bye && heard_bye {
            return LinkEnd::Orderly;
        }
        let idle_at = if said_bye {
            None
        } else {
            io.link.idle_deadline()
        };
        tokio::select! {
            read = io.stream.read_buf(&mut io.inbuf) => match read {
                Ok(0) | Err(_) => return if said_bye { LinkEnd::Orderly } else { LinkEnd::Lost },
                Ok(_) => {}
            },
            item = rx.recv(), if !said_bye => {
                let reason = match item {
                    Some(Outgoing::Envelope(env)) => {
                        if io.send(&env).await.is_err() {
                            return LinkEnd::Lost;
                        }
                        continue;
                    }
                    Some(Outgoing::Retire) => "duplicate",
                    Some(Outgoing::Close) | None => "closing",
                };
                state.links.unregister(&peer, id);
                rx.close();
                while let Some(Outgoing::Envelope(env)) = rx.recv().await {
                    if io.send(&env).await.is_err() {
                        return LinkEnd::Lost;
                    }
                }
                if io.bye(reason).await.is_err() {
                    return LinkEnd::Lost;
                }
                said_bye = true;
                drain_deadline = Some(tokio::time::Instant::now() + drain);
            },
            _ = sleep_until_opt(idle_at.map(tokio::time::Instant::from_std)) => {
                // Only the responder has an idle deadline: nothing arrived for too long.
                state.counters.bump("links_idle_closed");
                state.links.unregister(&peer, id);
                rx.close();
                while let Some(Outgoing::Envelope(env)) = rx.recv().await {
                    let _ = io.send(&env).await;
                }
                if io.bye("idle").await.is_err() {
                    return LinkEnd::Orderly;
                }
                said_bye = true;
                drain_deadline = Some(tokio::time::Instant::now() + drain);
            },
            _ = sleep_until_opt(drain_deadline) => return LinkEnd::Orderly,
        }
    }
}

/// True when a `version` envelope lists a protocol this build speaks. A peer that announces
/// none (or something unreadable) cannot be understood, so the link is dropped.
fn speaks_a_common_version(data: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Version {
        protocols: Vec<u32>,
    }
    serde_json::from_slice::<Version>(data)
        .map(|v| v.protocols.iter().any(|p| PROTOCOLS.contains(p)))
        .unwrap_or(false)
}

/// The address a `version` envelope says the peer listens on (`announce`, `host:port`), if
/// it names one that could be dialled.
fn announced_address(data: &[u8]) -> Option<(String, u16)> {
    #[derive(serde::Deserialize)]
    struct Version {
        announce: Option<String>,
    }
    let announce = serde_json::from_slice::<Version>(data).ok()?.announce?;
    let (host, port) = announce.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let valid = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    valid.then(|| (host.to_owned(), port))
}

/// Remembers where an authenticated peer says it listens (its link proved its key), so that a
/// peer that came back on another port is redialled there. Only known peers are updated.
async fn record_announced(state: Arc<NodeState>, peer: AgentId, host: String, port: u16) {
    let agent = peer.to_string();
    let updated = state
        .with_store(move |s| {
            let Some(known) = s.meta().get_peer(&agent)? else {
                return Ok(false);
            };
            if known.host.as_deref() == Some(host.as_str()) && known.port == Some(port) {
                return Ok(false);
            }
            let mut up = PeerUpsert::new(&peer);
            up.host = Some(host);
            up.port = Some(port);
            let now = crate::ticket::unix_secs(std::time::SystemTime::now());
            s.meta().upsert_peer(&up, now).map(|_| true)
        })
        .await;
    if matches!(updated, Ok(Ok(true))) {
        state.counters.bump("peer_addresses_updated");
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Decodes every whole frame and envelope buffered so far and acts on each.
async fn process_input(
    state: &Arc<NodeState>,
    io: &mut LinkIo,
    peer: AgentId,
    heard_bye: &mut bool,
) -> Result<(), String> {
    while let Some(frame) = io.frames.decode(&mut io.inbuf).map_err(|e| e.to_string())? {
        let plain = io
            .link
            .open(Instant::now(), &frame)
            .map_err(|e| e.to_string())?;
        io.plain.extend_from_slice(&plain);
        while let Some(env) = io
            .envelopes
            .decode(&mut io.plain)
            .map_err(|e| e.to_string())?
        {
            state.counters.bump("envelopes_received");
            match env.command.as_str() {
                "version" => {
                    if !speaks_a_common_version(&env.data) {
                        state.counters.bump("links_incompatible");
                        return Err(format!(
                            "no common protocol version: we speak {PROTOCOLS:?}, the peer said {}",
                            String::from_utf8_lossy(&env.data)
                        ));
                    }
                    if let Some((host, port)) = announced_address(&env.data) {
                        tokio::spawn(record_announced(Arc::clone(state), peer, host, port));
                    }
                }
                "ping" if env.data.len() == 8 => {
                    io.send(&envelope("pong", env.data.clone()))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                "pong" if env.data.len() == 8 => {
                    let mut nonce = [0u8; 8];
                    nonce.copy_from_slice(&env.data);
                    state.links.pong(&peer, nonce, Instant::now());
                }
                "bye" => *heard_bye = true,
                _ => state.dispatch(peer, env),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{announced_address, speaks_a_common_version};

    #[test]
    fn an_announced_address_must_be_dialable() {
        let at = |s: &str| announced_address(s.as_bytes());
        assert_eq!(
            at(r#"{"protocols":[1],"announce":"127.0.0.1:7420"}"#),
            Some(("127.0.0.1".into(), 7420))
        );
        assert_eq!(
            at(r#"{"announce":"kith.example.org:9"}"#),
            Some(("kith.example.org".into(), 9))
        );
        assert_eq!(at(r#"{"protocols":[1]}"#), None);
        assert_eq!(at(r#"{"announce":"127.0.0.1:0"}"#), None);
        assert_eq!(at(r#"{"announce":"no port"}"#), None);
        assert_eq!(at(r#"{"announce":"bad host!:80"}"#), None);
    }

    #[test]
    fn a_version_envelope_must_share_a_protocol_with_us() {
        assert!(speaks_a_common_version(
            br#"{"protocols":[1],"software":"kith/9"}"#
        ));
        assert!(speaks_a_common_version(br#"{"protocols":[7,1]}"#));
        assert!(!speaks_a_common_version(br#"{"protocols":[2]}"#));
        assert!(!speaks_a_common_version(b"garbage"));
    }
}
