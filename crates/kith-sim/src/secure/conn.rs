//! One connection of a secure node: its handshake machine, then its link.

use std::time::Instant;

use bytes::BytesMut;
use kith_crypto::AgentId;
use kith_proto::link::LinkMachine;
use kith_proto::secure::{Event, Frame, HandshakeError, Initiator, Responder};

use crate::node::Addr;

/// How we came to dial.
#[derive(Debug, Clone)]
pub(crate) enum Dial {
    /// First contact under a ticket.
    Ticket {
        agent: AgentId,
        addr: Addr,
        token: String,
    },
    /// A known peer (N+KK).
    Known { agent: AgentId, addr: Addr },
}

impl Dial {
    pub(crate) fn agent(&self) -> AgentId {
        match self {
            Dial::Ticket { agent, .. } | Dial::Known { agent, .. } => *agent,
        }
    }

    pub(crate) fn addr(&self) -> Addr {
        match self {
            Dial::Ticket { addr, .. } | Dial::Known { addr, .. } => *addr,
        }
    }
}

/// A handshake machine of either role.
pub(crate) enum Machine {
    Initiator(Box<Initiator>),
    Responder(Box<Responder>),
}

macro_rules! both {
    ($m:expr, $x:ident => $body:expr) => {
        match $m {
            Machine::Initiator($x) => $body,
            Machine::Responder($x) => $body,
        }
    };
}

impl Machine {
    pub(super) fn poll_transmit(&mut self) -> Option<Frame> {
        both!(self, m => m.poll_transmit())
    }

    pub(super) fn poll_event(&mut self) -> Option<Event> {
        both!(self, m => m.poll_event())
    }

    pub(super) fn handle_frame(
        &mut self,
        now: Instant,
        frame: Frame,
    ) -> Result<(), HandshakeError> {
        both!(self, m => m.handle_frame(now, frame))
    }

    pub(super) fn handle_timeout(&mut self, now: Instant) -> Result<(), HandshakeError> {
        both!(self, m => m.handle_timeout(now))
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        both!(self, m => m.poll_timeout())
    }

    /// The initiator's ephemeral key, once a responder has read the message carrying it.
    pub(super) fn remote_ephemeral(&self) -> Option<[u8; 32]> {
        match self {
            Machine::Responder(r) => r.remote_ephemeral(),
            Machine::Initiator(_) => None,
        }
    }
}

/// An established link: the link machine that speaks the link protocol on it.
pub(crate) struct Linked {
    pub machine: LinkMachine,
    pub peer: AgentId,
    pub since: Instant,
}

pub(crate) enum State {
    Handshake(Machine),
    Linked(Box<Linked>),
}

/// One connection.
pub(crate) struct Conn {
    pub peer_addr: Addr,
    /// Set when we dialled it.
    pub dial: Option<Dial>,
    /// Received bytes not yet a whole handshake frame (handed to the link machine once the
    /// handshake is over).
    pub inbuf: BytesMut,
    pub bytes_received: usize,
    /// Whether the initiator's ephemeral has been put to the replay cache (responder).
    pub replay_checked: bool,
    pub state: State,
}

impl Conn {
    pub(super) fn deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Handshake(m) => m.poll_timeout(),
            State::Linked(l) => l.machine.poll_timeout(),
        }
    }
}
