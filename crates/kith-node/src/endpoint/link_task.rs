//! One established link's task: payloads in `T` frames, both ways, until someone says `bye`.
//!
//! The application stream is a byte stream of Datt envelopes; one envelope may span many
//! frames and one frame may hold several envelopes. A `T` frame whose plaintext starts with
//! `{` where an envelope would begin is one JSON object (the MyCHIPs reference's messages,
//! which carry one JSON object per frame; an envelope starts with its version, a 0 byte).
//! Link-level commands:
//! - `version`: the first envelope each side sends, `{"protocols": [1], "software": ...,
//!   "announce": "host:port", "observed": "ip:port"}` (where the sender listens, and where it
//!   sees the receiver from); a peer that lists no protocol we speak is dropped. Only the
//!   first `version` of a link counts: later ones are counted and ignored, so a flood of them
//!   costs nothing upstream. An announced address is recorded only once checked
//!   ([`super::announce`]).
//! - `ping` (8 bytes) answered by `pong` echoing them;
//! - `bye` `{"reason": ...}`: "I will send nothing more on this link". The side that says it
//!   first keeps reading until the other's `bye` (or a drain deadline); the other side first
//!   flushes what it had queued, then answers `bye`. That is how a retired duplicate, an idle
//!   link or a removed peer closes without losing an envelope in flight.
//!
//! **Key confirmation.** A responder's link counts (is registered, replaces an older link
//! with the peer, records the peer and its address, delivers payloads) only once the first
//! `T` frame from the initiator has decrypted: a replayed handshake reaches `Established` on
//! the responder but can never produce that frame, so it disturbs nothing.
//!
//! Every other payload goes to the endpoint's [`Inbound`](super::Inbound) (the protocol
//! router), on this task, without waiting.

use super::handshake::Established;
use super::registry::{LinkHandle, LinkId, Outgoing, Registration, Side};
use super::transport::{ByteStream, Conn, Via};
use super::{announce, Payload, Shared};
use crate::clock::mono_now;
use bytes::{Bytes, BytesMut};
use kith_crypto::identity::AgentId;
use kith_proto::secure::{FrameDecoder, Link};
use kith_proto::wire::{Command, Envelope, EnvelopeDecoder};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// The link protocol versions this build speaks.
pub const PROTOCOLS: &[u32] = &[1];

/// How long one write may stall (the peer reads nothing) before the link counts as lost, so
/// a peer that stops reading cannot hold senders waiting on backpressure forever.
const WRITE_STALL: Duration = Duration::from_secs(60);

/// How a link ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LinkEnd {
    /// Both sides said `bye`, or we closed on purpose: nothing to redial.
    Orderly,
    /// The connection broke (EOF without `bye`, I/O or decrypt error): worth redialling.
    Lost,
}

/// A link the handshake just established.
pub(super) struct NewLink {
    pub conn: Conn,
    pub established: Established,
    pub side: Side,
    pub peer: AgentId,
}

/// An envelope for one of the link's fixed command names.
pub fn envelope(command: &'static str, data: impl Into<Bytes>) -> Envelope {
    Envelope::new(
        Command::new(command).unwrap_or_else(|_| unreachable!("{command} is a valid command name")),
        data,
    )
}

/// Starts a link's task. An initiator's link is registered before this returns (receiving
/// `A` proved the responder), so the caller can send on it at once; a responder's registers
/// when the first authenticated frame arrives.
pub(super) fn start(shared: &Arc<Shared>, link: NewLink) -> Option<Registration> {
    let (tx, rx) = mpsc::channel(shared.limits.link_queue_envelopes.max(1));
    let mut task = LinkTask::new(Arc::clone(shared), link, rx, tx);
    let registration = if task.side == Side::Initiator {
        Some(task.register())
    } else {
        None
    };
    shared.tracker.spawn(async move {
        let end = task.run().await;
        task.finish(end);
    });
    registration
}

/// A link's state, owned by its task.
struct LinkTask {
    shared: Arc<Shared>,
    stream: Box<dyn ByteStream>,
    remote: SocketAddr,
    via: Via,
    link: Link,
    frames: FrameDecoder,
    envelopes: EnvelopeDecoder,
    inbuf: BytesMut,
    plain: BytesMut,
    out: BytesMut,
    rx: mpsc::Receiver<Outgoing>,
    /// Our queue's sending end, until the link is registered (then the registry holds it).
    tx: Option<mpsc::Sender<Outgoing>>,
    id: LinkId,
    peer: AgentId,
    side: Side,
    registered: bool,
    heard_version: bool,
    heard_bye: bool,
    said_bye: bool,
}

impl LinkTask {
    fn new(
        shared: Arc<Shared>,
        link: NewLink,
        rx: mpsc::Receiver<Outgoing>,
        tx: mpsc::Sender<Outgoing>,
    ) -> LinkTask {
        let NewLink {
            conn,
            established,
            side,
            peer,
        } = link;
        let frames = FrameDecoder::new(&shared.limits);
        let envelopes = EnvelopeDecoder::new(shared.limits.max_envelope_data);
        let id = shared.registry.next_id();
        LinkTask {
            shared,
            stream: conn.stream,
            remote: conn.remote,
            via: conn.via,
            link: established.link,
            frames,
            envelopes,
            inbuf: established.leftover,
            plain: BytesMut::new(),
            out: BytesMut::new(),
            rx,
            tx: Some(tx),
            id,
            peer,
            side,
            registered: false,
            heard_version: false,
            heard_bye: false,
            said_bye: false,
        }
    }

    /// Makes this link count: registered with the registry (which tells the services if the
    /// peer just came up), and a retired duplicate told so.
    fn register(&mut self) -> Registration {
        let Some(tx) = self.tx.take() else {
            return Registration::Active; // registered already
        };
        let initiator = match self.side {
            Side::Initiator => self.shared.agent,
            Side::Responder => self.peer,
        };
        let handle = LinkHandle {
            id: self.id,
            side: self.side,
            initiator,
            remote: self.remote,
            via: self.via,
            since: Instant::now(),
            outgoing: tx.clone(),
        };
        let registration = self.shared.register(self.peer, handle);
        if registration == Registration::Retire {
            let _ = tx.try_send(Outgoing::Retire);
        }
        self.registered = true;
        self.shared.counters.links_established.bump();
        tracing::info!(peer = %self.peer, remote = %self.remote, side = ?self.side, "link up");
        registration
    }

    /// The responder's first authenticated frame: record where the peer was seen, then
    /// register.
    async fn confirmed(&mut self) {
        let now = self.shared.clock.unix_secs();
        let seen_at = self.remote.to_string();
        if let Err(e) = self.shared.directory.touch(self.peer, seen_at, now).await {
            tracing::warn!(peer = %self.peer, "could not record the peer: {e}");
        }
        self.register();
    }

    async fn write_out(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let write = self.stream.write_all(&self.out);
        let result = match tokio::time::timeout(WRITE_STALL, write).await {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the peer reads nothing",
            )),
        };
        self.out.clear();
        result
    }

    async fn send(&mut self, payload: &Payload) -> std::io::Result<()> {
        match payload {
            Payload::Envelope(envelope) => {
                let bytes = envelope.to_bytes().map_err(std::io::Error::other)?;
                self.link
                    .seal_into(&bytes, &mut self.out)
                    .map_err(std::io::Error::other)?;
            }
            Payload::Json(json) => {
                if json.len() > self.link.max_plaintext() {
                    return Err(std::io::Error::other("a JSON payload must fit one frame"));
                }
                self.link
                    .seal_into(json, &mut self.out)
                    .map_err(std::io::Error::other)?;
            }
        }
        self.shared.counters.envelopes_sent.bump();
        self.write_out().await
    }

    async fn send_envelope(&mut self, command: &'static str, data: Vec<u8>) -> std::io::Result<()> {
        self.send(&Payload::Envelope(envelope(command, data))).await
    }

    async fn bye(&mut self, reason: &str) -> std::io::Result<()> {
        let body = serde_json::to_vec(&json!({ "reason": reason })).unwrap_or_default();
        self.said_bye = true;
        self.send_envelope("bye", body).await
    }

    /// Stops taking new work (new sends go to another link, or dial one), sends what was
    /// queued, then says `bye`.
    async fn flush_and_bye(&mut self, reason: &str) -> std::io::Result<()> {
        self.shared.registry.unregister(&self.peer, self.id);
        self.rx.close();
        while let Some(item) = self.rx.recv().await {
            match item {
                Outgoing::Payload(payload) => self.send(&payload).await?,
                Outgoing::Ping(nonce) => self.send_envelope("ping", nonce.to_vec()).await?,
                Outgoing::Retire | Outgoing::Close => {}
            }
        }
        self.bye(reason).await
    }

    fn version(&self) -> Vec<u8> {
        let mut version = json!({
            "protocols": PROTOCOLS,
            "software": concat!("kith/", env!("CARGO_PKG_VERSION")),
            "observed": self.remote.to_string(),
        });
        if let Some((host, port)) = self.shared.announced() {
            // Where we listen now: a peer that knew an older address redials this one.
            version["announce"] = json!(format!("{host}:{port}"));
        }
        serde_json::to_vec(&version).unwrap_or_default()
    }

    async fn run(&mut self) -> LinkEnd {
        let version = self.version();
        if self.send_envelope("version", version).await.is_err() {
            return LinkEnd::Lost;
        }
        let drain = Duration::from_millis(self.shared.limits.link_drain_ms);
        let mut drain_deadline: Option<tokio::time::Instant> = None;
        // A responder's link that is never confirmed (a replayed handshake, or a peer that
        // says nothing) is dropped after the handshake's own deadline, not the idle one.
        let confirm_deadline = tokio::time::Instant::now()
            + Duration::from_millis(self.shared.limits.handshake_timeout_ms);
        let cancel = self.shared.cancel.clone();
        loop {
            // Frames already buffered first (the handshake may have read past its end).
            if let Err(e) = self.process_input().await {
                tracing::debug!(peer = %self.peer, "link error: {e}");
                self.shared.counters.links_broken.bump();
                return LinkEnd::Lost;
            }
            if self.heard_bye && !self.said_bye {
                // The peer is done sending: flush what is queued, answer, done.
                let _ = self.flush_and_bye("ack").await;
                return LinkEnd::Orderly;
            }
            if self.said_bye && self.heard_bye {
                return LinkEnd::Orderly;
            }
            let idle_at = if self.said_bye {
                None
            } else {
                self.link.idle_deadline()
            };
            let can_send = self.registered && !self.said_bye;
            tokio::select! {
                read = self.stream.read_buf(&mut self.inbuf) => match read {
                    Ok(0) | Err(_) => {
                        return if self.said_bye { LinkEnd::Orderly } else { LinkEnd::Lost };
                    }
                    Ok(_) => {}
                },
                item = self.rx.recv(), if can_send => {
                    let reason = match item {
                        Some(Outgoing::Payload(payload)) => {
                            if self.send(&payload).await.is_err() {
                                return LinkEnd::Lost;
                            }
                            continue;
                        }
                        Some(Outgoing::Ping(nonce)) => {
                            if self.send_envelope("ping", nonce.to_vec()).await.is_err() {
                                return LinkEnd::Lost;
                            }
                            continue;
                        }
                        Some(Outgoing::Retire) => "duplicate",
                        Some(Outgoing::Close) | None => "closing",
                    };
                    if self.flush_and_bye(reason).await.is_err() {
                        return LinkEnd::Lost;
                    }
                    drain_deadline = Some(tokio::time::Instant::now() + drain);
                },
                _ = cancel.cancelled(), if !self.said_bye => {
                    if self.flush_and_bye("closing").await.is_err() {
                        return LinkEnd::Orderly;
                    }
                    drain_deadline = Some(tokio::time::Instant::now() + drain);
                },
                _ = sleep_until_opt(idle_at.map(tokio::time::Instant::from_std)) => {
                    // Only the responder has an idle deadline: nothing arrived for too long.
                    // The link closes in order; the next send on either side dials again.
                    self.shared.counters.links_idle_closed.bump();
                    if self.flush_and_bye("idle").await.is_err() {
                        return LinkEnd::Orderly;
                    }
                    drain_deadline = Some(tokio::time::Instant::now() + drain);
                },
                _ = sleep_until_opt(drain_deadline) => return LinkEnd::Orderly,
                _ = tokio::time::sleep_until(confirm_deadline), if !self.registered => {
                    return LinkEnd::Orderly;
                }
            }
        }
    }

    /// Decodes every whole frame and envelope buffered so far and acts on each.
    async fn process_input(&mut self) -> Result<(), String> {
        while let Some(frame) = self
            .frames
            .decode(&mut self.inbuf)
            .map_err(|e| e.to_string())?
        {
            let plain = self
                .link
                .open(mono_now(), &frame)
                .map_err(|e| e.to_string())?;
            if !self.registered {
                self.confirmed().await;
            }
            if self.plain.is_empty() && plain.first() == Some(&b'{') {
                // One JSON object per frame (the MyCHIPs reference's messages).
                self.shared.counters.envelopes_received.bump();
                self.shared
                    .deliver(self.peer, Payload::Json(Bytes::from(plain)));
                continue;
            }
            self.plain.extend_from_slice(&plain);
            while let Some(env) = self
                .envelopes
                .decode(&mut self.plain)
                .map_err(|e| e.to_string())?
            {
                self.shared.counters.envelopes_received.bump();
                self.on_envelope(env).await?;
            }
        }
        Ok(())
    }

    async fn on_envelope(&mut self, env: Envelope) -> Result<(), String> {
        match env.command.as_str() {
            "version" if self.heard_version => {
                // Only the first counts; a flood of them costs one counter each.
                self.shared.counters.versions_ignored.bump();
            }
            "version" => {
                self.heard_version = true;
                let Some(version) = announce::parse_version(&env.data) else {
                    self.shared.counters.links_incompatible.bump();
                    return Err(format!(
                        "no common protocol version: we speak {PROTOCOLS:?}, the peer said {}",
                        String::from_utf8_lossy(&env.data)
                    ));
                };
                if let Some(address) = version.announce {
                    announce::check(&self.shared, self.peer, self.remote, address);
                }
            }
            "ping" if env.data.len() == 8 => {
                self.send_envelope("pong", env.data.to_vec())
                    .await
                    .map_err(|e| e.to_string())?;
            }
            "pong" if env.data.len() == 8 => {
                let mut nonce = [0u8; 8];
                nonce.copy_from_slice(&env.data);
                self.shared.registry.pong(&self.peer, nonce, Instant::now());
            }
            "bye" => self.heard_bye = true,
            _ => self.shared.deliver(self.peer, Payload::Envelope(env)),
        }
        Ok(())
    }

    /// After the task: unregister, tell the services if the peer is down now, free the
    /// guard's slot, and redial a link that was lost.
    fn finish(self, end: LinkEnd) {
        self.shared.link_ended(
            self.peer,
            self.id,
            self.side,
            self.remote,
            self.registered,
            end,
        );
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
