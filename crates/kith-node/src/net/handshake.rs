//! Drives one handshake machine over a TCP stream until it yields a link or fails.
//!
//! The machine decides everything; this loop only moves bytes, answers the responder's
//! questions from the database, and enforces the total deadline with a timer (the machine also
//! knows its deadline; the timer just makes sure we wake up for it even if the peer sends
//! nothing at all).

use crate::node::NodeState;
use crate::ticket::unix_secs;
use bytes::BytesMut;
use kith_proto::secure::{
    Event, Frame, FrameDecoder, HandshakeError, Initiator, Link, RefuseReason, Responder,
};
use kith_store::meta::TicketVerdict;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One handshake machine, either role.
pub enum Machine {
    /// We dialled.
    Initiator(Box<Initiator>),
    /// They dialled.
    Responder(Box<Responder>),
}

macro_rules! both {
    ($self:expr, $m:ident => $body:expr) => {
        match $self {
            Machine::Initiator($m) => $body,
            Machine::Responder($m) => $body,
        }
    };
}

/// How a handshake ended when it did not yield a link.
#[derive(Debug)]
pub enum HandshakeOutcome {
    /// Refused by the responder's rules (ticket, unknown peer, key mismatch).
    Refused(RefuseReason),
    /// Protocol failure, deadline, or I/O error.
    Failed(String),
}

impl HandshakeOutcome {
    /// The counter this outcome bumps.
    pub fn counter(&self) -> &'static str {
        match self {
            HandshakeOutcome::Refused(RefuseReason::TicketRefused) => "refused_ticket",
            HandshakeOutcome::Refused(RefuseReason::UnknownPeer) => "refused_unknown_peer",
            HandshakeOutcome::Refused(RefuseReason::AgentKeyMismatch) => {
                "refused_agent_key_mismatch"
            }
            HandshakeOutcome::Refused(_) => "refused_handshake_other",
            HandshakeOutcome::Failed(_) => "handshake_failed",
        }
    }
}

/// What a successful handshake hands over.
pub struct Established {
    /// The transport.
    pub link: Link,
    /// Bytes already read past the last handshake frame.
    pub leftover: BytesMut,
    /// For a responder of a ticket handshake: the initiator's claimed address.
    pub ticket_from: Option<kith_proto::secure::Chad>,
}

/// Runs `machine` over `stream` until established, refused or failed.
pub async fn run(
    state: &Arc<NodeState>,
    stream: &mut TcpStream,
    mut machine: Machine,
) -> Result<Established, HandshakeOutcome> {
    let decoder = FrameDecoder::new(&state.config.limits);
    let mut buf = BytesMut::with_capacity(1024);
    let mut out = BytesMut::new();
    let mut ticket_from = None;
    loop {
        // Drain what the machine wants to say and do.
        out.clear();
        while let Some(frame) = both!(&mut machine, m => m.poll_transmit()) {
            frame
                .encode(&mut out)
                .map_err(|e| HandshakeOutcome::Failed(e.to_string()))?;
        }
        if !out.is_empty() {
            stream
                .write_all(&out)
                .await
                .map_err(|e| HandshakeOutcome::Failed(e.to_string()))?;
        }
        // One event per turn: answering a question queues frames (the `A`), and they must go
        // out before an `Established` that follows is acted on.
        let mut answered = false;
        if let Some(event) = both!(&mut machine, m => m.poll_event()) {
            match event {
                Event::Established(link) => {
                    return Ok(Established {
                        link,
                        leftover: buf,
                        ticket_from,
                    });
                }
                Event::Refused { reason } => return Err(HandshakeOutcome::Refused(reason)),
                Event::CheckTicket {
                    token,
                    from_agent,
                    claimed_from,
                    ..
                } => {
                    let agent = from_agent.to_string();
                    let now = unix_secs(SystemTime::now());
                    let verdict = state
                        .with_store(move |s| s.meta().redeem_ticket(&token, &agent, now))
                        .await
                        .map_err(HandshakeOutcome::Failed)?
                        .map_err(|e| HandshakeOutcome::Failed(e.to_string()))?;
                    let accepted = verdict == TicketVerdict::Accepted;
                    ticket_from = Some(claimed_from);
                    if let Machine::Responder(r) = &mut machine {
                        r.answer_ticket(Instant::now(), accepted).map_err(fail)?;
                    }
                    answered = true;
                }
                Event::LookupPeer { agent } => {
                    let name = agent.to_string();
                    let known = state
                        .with_store(move |s| {
                            let peer = s.meta().get_peer(&name)?;
                            let blocked = s.meta().is_agent_blocked(&name)?;
                            Ok::<_, kith_store::MetaError>(peer.filter(|p| !p.blocked && !blocked))
                        })
                        .await
                        .map_err(HandshakeOutcome::Failed)?
                        .map_err(|e| HandshakeOutcome::Failed(e.to_string()))?;
                    let key = known.map(|_| agent.noise_public());
                    if let Machine::Responder(r) = &mut machine {
                        r.answer_peer(Instant::now(), key).map_err(fail)?;
                    }
                    answered = true;
                }
            }
        }
        if answered {
            continue; // the answer may have produced frames or events
        }
        // Feed whole frames already buffered before reading more.
        match decoder.decode(&mut buf) {
            Ok(Some(frame)) => {
                feed(&mut machine, frame)?;
                continue;
            }
            Ok(None) => {}
            Err(e) => return Err(HandshakeOutcome::Failed(e.to_string())),
        }
        let deadline = both!(&machine, m => m.poll_timeout());
        let read = stream.read_buf(&mut buf);
        let n = match deadline {
            Some(at) => {
                let at = tokio::time::Instant::from_std(at);
                match tokio::time::timeout_at(at, read).await {
                    Ok(r) => r,
                    Err(_) => {
                        both!(&mut machine, m => m.handle_timeout(Instant::now())).map_err(fail)?;
                        return Err(HandshakeOutcome::Failed("handshake deadline".into()));
                    }
                }
            }
            None => read.await,
        }
        .map_err(|e| HandshakeOutcome::Failed(e.to_string()))?;
        if n == 0 {
            return Err(HandshakeOutcome::Failed(
                "peer closed during handshake".into(),
            ));
        }
    }
}

fn feed(machine: &mut Machine, frame: Frame) -> Result<(), HandshakeOutcome> {
    both!(machine, m => m.handle_frame(Instant::now(), frame)).map_err(fail)
}

fn fail(e: HandshakeError) -> HandshakeOutcome {
    HandshakeOutcome::Failed(e.to_string())
}
