//! The same session over a secure link: one Datt envelope per line or item.
//!
//! Envelopes from the initiator to the responder have the command `ciyam`, envelopes back have
//! `ciyam-r`, so that two sessions over one link, one each way, never mix: a node can fetch
//! from a peer while the peer fetches from it. The data is one kind byte and a body:
//!
//! | kind | body |
//! |---|---|
//! | `L` | one line (a command or a reply), UTF-8, no line end |
//! | `I` | a whole item, raw (type byte first): no base64, no chunks, no acknowledgements |
//!
//! A `?` answer is several `L` envelopes, as on the text port. The envelope decoder already
//! bounds the size ([`crate::Limits::max_envelope_data`]); this layer checks a line against the
//! session's line limit and an item against its item limit, and refuses a kind it does not
//! know. Skipping a held item is not negotiated: the item arrives and the session drops it.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};

use super::command::Reply;
use super::session::Session;
use super::types::{Event, Input, Transmit, Wants};
use crate::secure::Role;
use crate::wire::{Command as EnvelopeCommand, Envelope};

/// The envelope command from a session's initiator to its responder.
pub const ENVELOPE_COMMAND: &str = "ciyam";
/// The envelope command from a session's responder back to its initiator.
pub const REPLY_ENVELOPE_COMMAND: &str = "ciyam-r";

/// The envelope command a session in `role` sends with.
pub fn command_sent_by(role: Role) -> &'static str {
    match role {
        Role::Initiator => ENVELOPE_COMMAND,
        Role::Responder => REPLY_ENVELOPE_COMMAND,
    }
}
/// Kind byte of a line.
pub const KIND_LINE: u8 = b'L';
/// Kind byte of an item.
pub const KIND_ITEM: u8 = b'I';
/// Envelopes a port holds while its session waits for the driver. The protocol never lets
/// a peer get more than two ahead (`put <hash>` and its item).
pub const MAX_QUEUED: usize = 4;

/// What is wrong with a received `ciyam` envelope. Each ends the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BinaryError {
    /// Not a `ciyam` envelope.
    #[error("unexpected envelope command '{0}'")]
    WrongCommand(String),
    /// Empty data, or a kind byte other than `L` and `I`.
    #[error("unknown ciyam envelope kind")]
    BadKind,
    /// A line that is not UTF-8 or contains CR/LF.
    #[error("invalid line")]
    BadLine,
    /// The peer sent more while we were busy than the protocol allows.
    #[error("too many messages ahead of their turn")]
    TooManyQueued,
}

/// Encodes one transmit of a session in `role` as envelopes (several for a `?` answer).
pub fn encode(t: &Transmit, role: Role) -> Vec<Envelope> {
    let command = command_sent_by(role);
    let line = |text: &str| {
        let mut data = BytesMut::with_capacity(1 + text.len());
        data.put_u8(KIND_LINE);
        data.put_slice(text.as_bytes());
        envelope(command, data.freeze())
    };
    match t {
        Transmit::Command(c) => vec![line(&c.to_string())],
        Transmit::Reply(Reply::Help(text)) => text.split('\n').map(line).collect(),
        Transmit::Reply(r) => vec![line(&r.to_string())],
        Transmit::Item { item, .. } => {
            let mut data = BytesMut::with_capacity(1 + item.len());
            data.put_u8(KIND_ITEM);
            data.put_slice(item);
            vec![envelope(command, data.freeze())]
        }
    }
}

fn envelope(command: &'static str, data: Bytes) -> Envelope {
    // Both names are fixed, valid command names.
    let cmd = EnvelopeCommand::new(command).unwrap_or_else(|_| unreachable!());
    Envelope::new(cmd, data)
}

/// Decodes one envelope received by a session in `role` into session input: it must come from
/// the other end of that session (`ciyam` to a responder, `ciyam-r` to an initiator).
pub fn decode(env: &Envelope, role: Role) -> Result<Input, BinaryError> {
    let expected = match role {
        Role::Initiator => REPLY_ENVELOPE_COMMAND,
        Role::Responder => ENVELOPE_COMMAND,
    };
    if env.command.as_str() != expected {
        return Err(BinaryError::WrongCommand(env.command.as_str().to_string()));
    }
    match env.data.split_first() {
        Some((&KIND_LINE, body)) => {
            let line = std::str::from_utf8(body).map_err(|_| BinaryError::BadLine)?;
            if line.contains(['\r', '\n']) {
                return Err(BinaryError::BadLine);
            }
            Ok(Input::Line(line.to_string()))
        }
        Some((&KIND_ITEM, _)) => Ok(Input::Item(env.data.slice(1..))),
        _ => Err(BinaryError::BadKind),
    }
}

/// A [`Session`] carried in envelopes over a secure link.
///
/// Calling contract: give every received `ciyam` envelope to
/// [`handle_envelope`](Self::handle_envelope); drain [`poll_transmit`](Self::poll_transmit)
/// (seal and send each envelope) and [`poll_event`](Self::poll_event); answer questions
/// through [`session_mut`](Self::session_mut), then call [`process`](Self::process); arm a
/// timer for [`poll_timeout`](Self::poll_timeout). When [`is_finished`](Self::is_finished),
/// send what is left and end the exchange (the link itself may stay up).
#[derive(Debug)]
pub struct EnvelopePort {
    session: Session,
    queued: VecDeque<Input>,
    output: VecDeque<Envelope>,
}

impl EnvelopePort {
    /// Wraps `session`.
    pub fn new(session: Session) -> EnvelopePort {
        EnvelopePort {
            session,
            queued: VecDeque::new(),
            output: VecDeque::new(),
        }
    }

    /// The session.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The session, to answer questions or issue commands; call [`process`](Self::process)
    /// afterwards.
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    /// The next event or question.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.session.poll_event()
    }

    /// The next envelope to send.
    pub fn poll_transmit(&mut self) -> Option<Envelope> {
        self.output.pop_front()
    }

    /// The session has ended.
    pub fn is_finished(&self) -> bool {
        self.session.is_closed()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.session.poll_timeout()
    }

    /// Ends the session if the peer missed its deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.session.handle_timeout(now);
        self.process(now);
    }

    /// Feeds one envelope received at `now`.
    pub fn handle_envelope(&mut self, now: Instant, env: &Envelope) {
        if self.session.is_closed() {
            return;
        }
        match decode(env, self.session.role()) {
            Ok(input) if self.queued.len() < MAX_QUEUED => self.queued.push_back(input),
            Ok(_) => self
                .session
                .protocol_error(&BinaryError::TooManyQueued.to_string()),
            Err(e) => self.session.protocol_error(&e.to_string()),
        }
        self.process(now);
    }

    /// Feeds queued input the session now wants, and encodes its output.
    pub fn process(&mut self, now: Instant) {
        while !self.session.is_closed() {
            let wants = self.session.wants();
            if wants == Wants::Nothing {
                break;
            }
            let Some(input) = self.queued.pop_front() else {
                break;
            };
            let too_long = match (&input, wants) {
                (Input::Line(l), Wants::Line { max }) => l.len() > max,
                (Input::Item(i), Wants::Item { max, .. }) => i.len() > max,
                _ => false,
            };
            if too_long {
                self.session.protocol_error("line or file too long");
                break;
            }
            let _ = self.session.handle_input(now, input);
        }
        if self.session.is_closed() {
            self.queued.clear();
        }
        while let Some(t) = self.session.poll_transmit() {
            self.output.extend(encode(&t, self.session.role()));
        }
    }
}
