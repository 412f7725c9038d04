//! Drives one handshake machine over a byte stream until it yields a link or fails.
//!
//! The machine decides everything; this loop only moves bytes, answers the responder's
//! questions from the [`PeerDirectory`](super::directory::PeerDirectory), drops a replayed
//! handshake (an initiator ephemeral key seen before), and enforces the total deadline with a
//! timer (the machine also knows its deadline; the timer just makes sure we wake up for it
//! even if the peer sends nothing at all).

use super::transport::ByteStream;
use super::Shared;
use crate::clock::mono_now;
use crate::store::StoreFailure;
use bytes::BytesMut;
use kith_proto::secure::{
    Event, Frame, FrameDecoder, FrameError, HandshakeError, Initiator, Link, Mode, RefuseReason,
    Responder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One handshake machine, either role.
pub(super) enum Machine {
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

/// Why a handshake failed (as opposed to being refused by the responder's rules).
#[derive(Debug, thiserror::Error)]
pub enum HandshakeFailure {
    /// The other side closed the connection before the handshake completed (this is how a
    /// site refuses: without a word).
    #[error("the site closed the connection without answering")]
    PeerClosed,
    /// The deadline passed.
    #[error("the handshake did not complete within its deadline")]
    Deadline,
    /// The connection failed.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    /// The machine refused a frame or an answer.
    #[error(transparent)]
    Protocol(#[from] HandshakeError),
    /// A frame could not be decoded.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The directory could not answer.
    #[error("peer directory: {0}")]
    Directory(#[from] StoreFailure),
    /// The initiator's ephemeral key was seen before: a replayed handshake.
    #[error("replayed handshake")]
    Replayed,
}

/// How a handshake ended when it did not yield a link.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeOutcome {
    /// Refused by the responder's rules (ticket, unknown peer, key mismatch).
    #[error("refused ({0:?})")]
    Refused(RefuseReason),
    /// Protocol failure, deadline, replay or I/O error.
    #[error(transparent)]
    Failed(HandshakeFailure),
}

macro_rules! failed_from {
    ($($t:ty),*) => {$(
        impl From<$t> for HandshakeOutcome {
            fn from(e: $t) -> HandshakeOutcome {
                HandshakeOutcome::Failed(e.into())
            }
        }
    )*};
}
failed_from!(
    HandshakeFailure,
    std::io::Error,
    HandshakeError,
    FrameError,
    StoreFailure
);

/// What a successful handshake hands over.
pub(super) struct Established {
    /// The transport.
    pub link: Link,
    /// Bytes already read past the last handshake frame.
    pub leftover: BytesMut,
}

/// Runs `machine` over `stream` until established, refused or failed.
pub(super) async fn run(
    shared: &Shared,
    stream: &mut dyn ByteStream,
    mut machine: Machine,
) -> Result<Established, HandshakeOutcome> {
    let decoder = FrameDecoder::new(&shared.limits);
    let mut buf = BytesMut::with_capacity(1024);
    let mut out = BytesMut::new();
    loop {
        // Drain what the machine wants to say and do.
        out.clear();
        while let Some(frame) = both!(&mut machine, m => m.poll_transmit()) {
            frame.encode(&mut out)?;
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
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
                    });
                }
                Event::Refused { reason } => return Err(HandshakeOutcome::Refused(reason)),
                Event::CheckTicket {
                    token,
                    from_agent,
                    claimed_from,
                    ..
                } => {
                    let now = shared.clock.unix_secs();
                    let accepted = shared
                        .directory
                        .redeem_ticket(token, from_agent, now)
                        .await?;
                    if accepted {
                        // The holder of the key that redeemed the ticket is a peer now, at the
                        // address it claims; recorded before `A` goes out, so that the moment
                        // the initiator has its link, this node knows it (where it was seen
                        // from counts only once the link is confirmed).
                        let claimed = match (&claimed_from.host, claimed_from.port) {
                            (Some(host), Some(port)) if port != 0 => Some(super::PeerAddress {
                                host: host.clone(),
                                port,
                            }),
                            _ => None,
                        };
                        shared
                            .directory
                            .record_first_contact(from_agent, claimed, None, now)
                            .await?;
                    }
                    if let Machine::Responder(r) = &mut machine {
                        r.answer_ticket(mono_now(), accepted)?;
                    }
                    answered = true;
                }
                Event::LookupPeer { agent } => {
                    let known = shared.directory.is_known(agent).await?;
                    let key = known.then(|| agent.noise_public());
                    if let Machine::Responder(r) = &mut machine {
                        r.answer_peer(mono_now(), key)?;
                    }
                    answered = true;
                }
            }
        }
        if answered {
            continue; // the answer may have produced frames or events
        }
        // Feed whole frames already buffered before reading more.
        if let Some(frame) = decoder.decode(&mut buf)? {
            // A replayed handshake is dropped before the responder reads it (reading `K`
            // writes the answer at once): the initiator's ephemeral key opens the message in
            // the clear, and must be one never seen before.
            if matches!(machine, Machine::Responder(_)) && shared.secure.mode() == Mode::Noise {
                if let Some(ephemeral) = super::replay::initiator_ephemeral(&frame) {
                    if !shared.replay_fresh(ephemeral) {
                        return Err(HandshakeFailure::Replayed.into());
                    }
                }
            }
            feed(&mut machine, frame)?;
            continue;
        }
        let deadline = both!(&machine, m => m.poll_timeout());
        let read = stream.read_buf(&mut buf);
        let n = match deadline {
            Some(at) => {
                let at = tokio::time::Instant::from_std(at);
                match tokio::time::timeout_at(at, read).await {
                    Ok(r) => r?,
                    Err(_) => {
                        both!(&mut machine, m => m.handle_timeout(mono_now()))?;
                        return Err(HandshakeFailure::Deadline.into());
                    }
                }
            }
            None => read.await?,
        };
        if n == 0 {
            return Err(HandshakeFailure::PeerClosed.into());
        }
    }
}

fn feed(machine: &mut Machine, frame: Frame) -> Result<(), HandshakeError> {
    both!(machine, m => m.handle_frame(mono_now(), frame))
}
