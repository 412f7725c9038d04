//! One established link's task: the thin driver of [`kith_proto::link::LinkMachine`].
//!
//! The machine is the link protocol (`version`, `ping`/`pong`, `bye` and drain, the
//! responder's idle close, key confirmation; see its crate docs). This task moves bytes
//! between the stream and the machine, feeds it the queue of payloads the rest of the node
//! sends, arms its one timer, and acts on its events:
//! - `Confirmed`: a responder's link counts only now (registered, so it may replace an older
//!   link with the peer; the peer's address recorded): a replayed handshake reaches
//!   `Established` but can never produce an authenticated frame, so it disturbs nothing;
//! - `Version`: an announced address is checked before it is recorded ([`super::announce`]);
//!   the address the peer observes us at goes to the observed-address table
//!   ([`super::observed`]); only the first `version` of a link is ever an event;
//! - `Payload`: to the endpoint's [`Inbound`](super::Inbound) (the protocol router), at once;
//! - `PeerDone` / `IdleTimeout`: the link stops taking new sends (they go to another link,
//!   or dial one: links are virtually open), hands the machine what was queued, and says
//!   `bye`;
//! - `Ended`: the last bytes go out and the socket closes; a link lost while active is
//!   redialled.

use super::handshake::Established;
use super::registry::{LinkHandle, LinkId, Outgoing, Registration, Side};
use super::transport::{ByteStream, Conn, Via};
use super::{announce, Payload, Shared};
use crate::clock::mono_now;
use bytes::{Bytes, BytesMut};
use kith_crypto::identity::AgentId;
use kith_proto::link::{
    ByeReason, Event, LinkEnd as MachineEnd, LinkFailure, LinkMachine, LinkSettings, SendError,
};
use kith_proto::wire::{Command, Envelope};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch, Semaphore};

/// The link protocol versions this build speaks.
pub use kith_proto::link::PROTOCOLS;

/// How long one write may stall (the peer reads nothing) before the link counts as lost, so
/// a peer that stops reading cannot hold senders waiting on backpressure forever.
const WRITE_STALL: Duration = Duration::from_secs(60);

/// How a link ended, as far as redialling goes.
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

/// An envelope for one of the node's fixed command names.
pub fn envelope(command: &'static str, data: impl Into<Bytes>) -> Envelope {
    Envelope::new(
        Command::new(command).unwrap_or_else(|_| unreachable!("{command} is a valid command name")),
        data,
    )
}

/// Starts a link's task. An initiator's link is registered before this returns (receiving
/// `A` proved the responder), so the caller can send on it at once; a responder's registers
/// when the machine confirms it.
///
/// The peer's link options ([`super::LinkOptions`], asked of the directory) apply here,
/// before the machine exists: it sends `version`, the link's first transport frame, as soon
/// as it starts.
pub(super) async fn start(shared: &Arc<Shared>, mut link: NewLink) -> Option<Registration> {
    let options = match shared.directory.link_options(link.peer).await {
        Ok(options) => options,
        Err(e) => {
            // The specification's order: a peer that needs the other fails on its first
            // frame, counted, and is redialled like any broken link.
            tracing::warn!(peer = %link.peer, "link options unknown, using the defaults: {e}");
            Default::default()
        }
    };
    if options.reference_order {
        match link.established.link.use_reference_order() {
            Ok(()) => shared.counters.links_reference_order.bump(),
            // Not reachable for a fresh link; if it were, the link fails on its first frame.
            Err(e) => tracing::warn!(peer = %link.peer, "reference cipher order refused: {e}"),
        }
    }
    let (tx, rx) = mpsc::channel(shared.limits.link_queue_envelopes.max(1));
    let mut task = LinkTask::new(Arc::clone(shared), link, rx, tx);
    let registration = (task.side == Side::Initiator).then(|| task.register());
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
    machine: LinkMachine,
    /// Bytes the handshake read past its last frame, for the machine's first input.
    leftover: BytesMut,
    out: BytesMut,
    rx: mpsc::Receiver<Outgoing>,
    /// Our queue's sending end, until the link is registered (then the registry holds it).
    tx: Option<mpsc::Sender<Outgoing>>,
    /// The bytes that may wait in the queue; each payload holds permits until it is sent.
    budget: Arc<Semaphore>,
    /// The budget's permits in all (`link_queue_bytes`).
    budget_size: u32,
    /// The peer's capabilities, told to the registry's readers when its `version` comes.
    capabilities: watch::Sender<Option<Arc<[String]>>>,
    id: LinkId,
    peer: AgentId,
    side: Side,
    registered: bool,
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
        let mut settings = LinkSettings::new(&shared.limits);
        settings.software = concat!("kith/", env!("CARGO_PKG_VERSION")).to_owned();
        // Where we listen now (a peer that knew an older address redials this one), and
        // where we see the peer from (so a node behind a NAT learns its public address).
        settings.announce = shared
            .announced()
            .map(|(host, port)| crate::ticket::join_host_port(&host, port));
        // (A relayed link's remote is the relay's: nothing we could tell the peer about itself.)
        settings.observed =
            (conn.via != Via::Relayed).then(|| super::reuse::canonical(conn.remote).to_string());
        settings.capabilities = shared.capabilities.clone();
        let budget_size = shared.limits.link_queue_bytes.max(1);
        let budget = Arc::new(Semaphore::new(budget_size as usize));
        let machine = LinkMachine::new(established.link, settings, mono_now());
        let id = shared.registry.next_id();
        LinkTask {
            shared,
            stream: conn.stream,
            remote: conn.remote,
            via: conn.via,
            machine,
            leftover: established.leftover,
            out: BytesMut::new(),
            rx,
            tx: Some(tx),
            budget,
            budget_size,
            capabilities: watch::channel(None).0,
            id,
            peer,
            side,
            registered: false,
        }
    }

    /// Makes this link count: registered with the registry (which tells the services if the
    /// peer just came up), and told to retire if an older link wins the tie-break.
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
            budget: Arc::clone(&self.budget),
            budget_size: self.budget_size,
            capabilities: self.capabilities.subscribe(),
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

    /// Writes what the machine has to send.
    async fn write_out(&mut self) -> std::io::Result<()> {
        while self.machine.poll_transmit(&mut self.out) {}
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

    /// Hands one payload to the machine, writing out first if its buffer is full.
    async fn send(&mut self, payload: Payload) -> std::io::Result<()> {
        loop {
            match self.machine.send(payload.clone()) {
                Ok(()) => {
                    self.shared.counters.envelopes_sent.bump();
                    return self.write_out().await;
                }
                Err(SendError::Backpressure) => self.write_out().await?,
                Err(SendError::Closed) => return Ok(()),
                Err(e) => {
                    // A payload the link cannot carry (too large, a link command): the
                    // sender's mistake, not the link's.
                    tracing::warn!(peer = %self.peer, "payload not sent: {e:?}");
                    self.shared.counters.payloads_refused.bump();
                    return Ok(());
                }
            }
        }
    }

    async fn ping(&mut self, nonce: [u8; 8]) -> std::io::Result<()> {
        loop {
            match self.machine.ping(nonce) {
                Err(SendError::Backpressure) => self.write_out().await?,
                _ => return self.write_out().await,
            }
        }
    }

    /// Stops taking new work (new sends go to another link, or dial one), hands the machine
    /// what was queued, then says `bye`.
    async fn flush_and_retire(&mut self, reason: ByeReason) -> std::io::Result<()> {
        self.shared.registry.unregister(&self.peer, self.id);
        self.rx.close();
        while let Some(item) = self.rx.recv().await {
            match item {
                Outgoing::Payload(payload, _permit) => self.send(payload).await?,
                Outgoing::Ping(nonce) => self.ping(nonce).await?,
                Outgoing::Retire | Outgoing::Close => {}
            }
        }
        self.machine.retire(mono_now(), reason);
        self.write_out().await
    }

    async fn run(&mut self) -> MachineEnd {
        let leftover = std::mem::take(&mut self.leftover);
        self.machine.handle_bytes(mono_now(), &leftover);
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let cancel = self.shared.cancel.clone();
        loop {
            // Events first: a responder's link is registered (on `Confirmed`) before anything
            // the machine answered to the same frames goes out, so a peer that got an answer
            // knows this node counts the link.
            if let Some(end) = self.handle_events().await {
                let _ = self.write_out().await;
                return end;
            }
            if self.write_out().await.is_err() {
                return MachineEnd::Lost(kith_proto::link::LinkFailure::Eof);
            }
            let deadline = self
                .machine
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            let can_send = self.registered && !self.machine.said_bye();
            buf.clear();
            tokio::select! {
                read = self.stream.read_buf(&mut buf) => match read {
                    Ok(0) | Err(_) => self.machine.handle_eof(mono_now()),
                    Ok(_) => self.machine.handle_bytes(mono_now(), &buf),
                },
                item = self.rx.recv(), if can_send => {
                    let result = match item {
                        Some(Outgoing::Payload(payload, _permit)) => self.send(payload).await,
                        Some(Outgoing::Ping(nonce)) => self.ping(nonce).await,
                        Some(Outgoing::Retire) => self.flush_and_retire(ByeReason::Duplicate).await,
                        Some(Outgoing::Close) | None => {
                            self.flush_and_retire(ByeReason::Closing).await
                        }
                    };
                    if result.is_err() {
                        self.machine.handle_eof(mono_now());
                    }
                },
                _ = cancel.cancelled(), if !self.machine.said_bye() => {
                    if self.flush_and_retire(ByeReason::Closing).await.is_err() {
                        self.machine.handle_eof(mono_now());
                    }
                },
                _ = crate::clock::sleep_until_opt(deadline) => self.machine.handle_timeout(mono_now()),
            }
        }
    }

    /// Acts on every event the machine has; `Some` once it has ended.
    async fn handle_events(&mut self) -> Option<MachineEnd> {
        while let Some(event) = self.machine.poll_event() {
            match event {
                Event::Confirmed => {
                    if !self.registered {
                        self.confirmed().await;
                    }
                }
                Event::Version(version) => {
                    // Where the peer sees us from: our public address when we are behind a
                    // NAT (only the first `version` of a link is an event).
                    if let Some(addr) = version
                        .observed
                        .as_deref()
                        .and_then(|o| o.parse::<SocketAddr>().ok())
                    {
                        self.shared.observe(self.peer, addr);
                    }
                    let caps: Arc<[String]> = version.capabilities.clone().into();
                    self.capabilities.send_replace(Some(caps));
                    if let Some((host, port)) = version.announced_host_port() {
                        let address = super::PeerAddress {
                            host: host
                                .trim_start_matches('[')
                                .trim_end_matches(']')
                                .to_owned(),
                            port,
                        };
                        announce::check(&self.shared, self.peer, self.remote, address);
                    }
                }
                Event::Pong { nonce } => {
                    self.shared.registry.pong(&self.peer, nonce, Instant::now());
                }
                Event::Payload(payload) => {
                    self.shared.counters.envelopes_received.bump();
                    self.shared.deliver(self.peer, payload);
                }
                Event::PeerDone => {
                    // The peer is done sending: flush what is queued, answer.
                    if self.flush_and_retire(ByeReason::Ack).await.is_err() {
                        self.machine.handle_eof(mono_now());
                    }
                }
                Event::IdleTimeout => {
                    // Only the responder has an idle deadline: nothing arrived for too long.
                    // The link closes in order; the next send on either side dials again.
                    self.shared.counters.links_idle_closed.bump();
                    if self.flush_and_retire(ByeReason::Idle).await.is_err() {
                        self.machine.handle_eof(mono_now());
                    }
                }
                Event::Ended(end) => return Some(end),
            }
        }
        None
    }

    /// After the task: unregister, tell the services if the peer is down now, free the
    /// guard's slot, and redial a link that was lost.
    fn finish(self, end: MachineEnd) {
        let stats = self.machine.stats();
        let counters = &self.shared.counters;
        counters.versions_ignored.add(stats.versions_ignored);
        let end = match end {
            MachineEnd::Orderly => LinkEnd::Orderly,
            MachineEnd::Incompatible(e) => {
                tracing::debug!(peer = %self.peer, "link dropped: {e}");
                counters.links_incompatible.bump();
                LinkEnd::Orderly
            }
            MachineEnd::Lost(failure) => {
                tracing::debug!(peer = %self.peer, "link lost: {failure}");
                counters.links_broken.bump();
                if matches!(
                    failure,
                    LinkFailure::Transport(kith_proto::secure::LinkError::Decrypt)
                ) {
                    // Often two ends that disagree on the cipher order (one set the
                    // reference order for the other, the other did not).
                    counters.links_undecryptable.bump();
                }
                LinkEnd::Lost
            }
        };
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
