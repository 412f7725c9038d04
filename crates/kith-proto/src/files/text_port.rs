//! The peer port: a [`Session`] spoken as CRLF text with base64 transfers.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::command::Reply;
use super::hash::ContentHash;
use super::session::Session;
use super::text::{
    chunk_chars, decode_chunk, encode_chunk, encode_header, parse_header, LineReader, TextError,
    CHUNK_BYTES, INLINE_MAX, MAX_CHUNK_CHARS, MAX_HEADER_LINE,
};
use super::types::{CloseReason, Event, Input, Transmit, Wants};
use crate::Limits;

/// The most undecoded input a text port holds: two of the longest lines.
pub const MAX_AHEAD: usize = 2 * (MAX_CHUNK_CHARS + 2);
/// Longest acknowledgement line we wait for while sending (`(okay more)`, `(error)…`).
const MAX_ACK_LINE: usize = 1_100;

#[derive(Debug)]
struct Sending {
    item: Bytes,
    chunk: usize,
    offset: usize,
}

#[derive(Debug)]
struct Receiving {
    hash: ContentHash,
    total: usize,
    chunk: usize,
    data: Vec<u8>,
}

/// A [`Session`] on the text peer port: bytes in, bytes out.
///
/// Calling contract: feed every read with [`handle_bytes`](Self::handle_bytes); drain
/// [`poll_transmit`](Self::poll_transmit) (write the bytes in order) and
/// [`poll_event`](Self::poll_event); answer questions through
/// [`session_mut`](Self::session_mut) and then call [`process`](Self::process) (buffered
/// input may be waiting for that answer, and the answer produces output); arm a timer for
/// [`poll_timeout`](Self::poll_timeout) and call [`handle_timeout`](Self::handle_timeout).
/// When [`is_finished`](Self::is_finished), write what is left and close the socket. The
/// input buffer never holds more than [`MAX_AHEAD`] bytes: stop reading while
/// [`wants_bytes`](Self::wants_bytes) is false (the session waits for its driver) so that a
/// fast peer meets TCP backpressure rather than this limit.
#[derive(Debug)]
pub struct TextPort {
    session: Session,
    input: BytesMut,
    reader: LineReader,
    output: BytesMut,
    sending: Option<Sending>,
    receiving: Option<Receiving>,
    chunk_timeout: Duration,
    transfer_deadline: Option<Instant>,
}

impl TextPort {
    /// Wraps `session` (built with the same limits).
    pub fn new(session: Session, limits: &Limits) -> TextPort {
        TextPort {
            session,
            input: BytesMut::new(),
            reader: LineReader::default(),
            output: BytesMut::new(),
            sending: None,
            receiving: None,
            chunk_timeout: Duration::from_millis(limits.ciyam_transfer_chunk_timeout_ms),
            transfer_deadline: None,
        }
    }

    /// The session.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The session, to answer its questions or issue commands. Call
    /// [`process`](Self::process) afterwards.
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    /// The next event or question from the session.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.session.poll_event()
    }

    /// Appends bytes read from the socket at `now` and processes them. A peer that sends
    /// more than [`MAX_AHEAD`] bytes beyond what can be decoded (while our driver is busy, say)
    /// breaks the protocol: no legitimate peer is ever that far ahead of its turn.
    pub fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) {
        if self.session.is_closed() {
            return;
        }
        if self.input.len().saturating_add(bytes.len()) > MAX_AHEAD {
            self.session
                .protocol_error("too much data ahead of its turn");
        } else {
            self.input.extend_from_slice(bytes);
        }
        self.process(now);
    }

    /// Decodes whatever buffered input the session wants now and encodes its output.
    pub fn process(&mut self, now: Instant) {
        self.pump_out(now);
        while !self.session.is_closed() {
            match self.step_in(now) {
                Ok(true) => self.pump_out(now),
                Ok(false) => break,
                Err(e) => {
                    self.session.protocol_error(&e.to_string());
                    self.pump_out(now);
                }
            }
        }
        if self.session.is_closed() {
            self.input.clear();
            self.sending = None;
            self.receiving = None;
            self.transfer_deadline = None;
            self.pump_out(now);
        }
    }

    /// Bytes to write, in order.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        (!self.output.is_empty()).then(|| self.output.split().freeze())
    }

    /// Bytes read but not yet decoded (at most one line of the longest kind allowed at the
    /// moment, plus the last read).
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// True while reading more is useful (the session or a transfer waits for the peer).
    pub fn wants_bytes(&self) -> bool {
        !self.session.is_closed()
            && (self.sending.is_some()
                || self.receiving.is_some()
                || self.session.wants() != Wants::Nothing)
    }

    /// The session has ended: write what [`poll_transmit`](Self::poll_transmit) still
    /// holds, then close.
    pub fn is_finished(&self) -> bool {
        self.session.is_closed()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.sending.is_some() || self.receiving.is_some() {
            self.transfer_deadline
        } else {
            self.session.poll_timeout()
        }
    }

    /// Ends the session if the peer missed its deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.sending.is_some() || self.receiving.is_some() {
            if self.transfer_deadline.is_some_and(|d| now >= d) {
                self.session.abort(CloseReason::Timeout);
                self.process(now);
            }
        } else {
            self.session.handle_timeout(now);
            self.process(now);
        }
    }

    fn write_line(&mut self, line: &str) {
        self.output.extend_from_slice(line.as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }

    fn progress(&mut self, now: Instant) {
        self.transfer_deadline = now.checked_add(self.chunk_timeout);
        self.session.touch(now);
    }

    /// Encodes the session's transmits, stopping while a large item waits for its receiver.
    fn pump_out(&mut self, now: Instant) {
        while self.sending.is_none() {
            let Some(t) = self.session.poll_transmit() else {
                break;
            };
            match t {
                Transmit::Command(c) => self.write_line(&c.to_string()),
                Transmit::Reply(Reply::Help(text)) => {
                    for line in text.split('\n') {
                        self.write_line(line);
                    }
                }
                Transmit::Reply(r) => self.write_line(&r.to_string()),
                Transmit::Item { item, .. } => {
                    self.write_line(&encode_header(&item));
                    if item.len() > INLINE_MAX {
                        self.sending = Some(Sending {
                            chunk: chunk_chars(item.len()),
                            item,
                            offset: 0,
                        });
                        self.progress(now);
                    }
                }
            }
        }
    }

    /// One unit of input; `Ok(false)` when nothing more can be done now.
    fn step_in(&mut self, now: Instant) -> Result<bool, TextError> {
        if self.sending.is_some() {
            let Some(line) = self.reader.take_line(&mut self.input, MAX_ACK_LINE)? else {
                return Ok(false);
            };
            return self.on_ack(now, &line).map(|()| true);
        }
        if let Some(rx) = &self.receiving {
            let chunk = rx.chunk;
            let Some(line) = self.reader.take_line(&mut self.input, chunk)? else {
                return Ok(false);
            };
            if let Reply::Error(text) = Reply::parse(&line) {
                self.session.abort(CloseReason::PeerError(text));
                return Ok(true);
            }
            return self.on_chunk(now, &line).map(|()| true);
        }
        match self.session.wants() {
            Wants::Nothing => Ok(false),
            Wants::Line { max } => match self.reader.take_line(&mut self.input, max)? {
                Some(line) => {
                    let _ = self.session.handle_input(now, Input::Line(line));
                    Ok(true)
                }
                None => Ok(false),
            },
            Wants::Item { hash, skip, max } => {
                let Some(line) = self.reader.take_line(&mut self.input, MAX_HEADER_LINE)? else {
                    return Ok(false);
                };
                if let Reply::Error(text) = Reply::parse(&line) {
                    self.session.abort(CloseReason::PeerError(text));
                    return Ok(true);
                }
                let header = parse_header(&line, max)?;
                if let Some(item) = header.inline {
                    let _ = self.session.handle_input(now, Input::Item(item.into()));
                } else if skip {
                    self.write_line(&Reply::OkaySkip.to_string());
                    let _ = self.session.handle_input(now, Input::ItemSkipped);
                } else {
                    self.write_line(&Reply::OkayMore.to_string());
                    self.receiving = Some(Receiving {
                        hash,
                        total: header.total,
                        chunk: header.chunk,
                        data: Vec::new(),
                    });
                    self.progress(now);
                }
                Ok(true)
            }
        }
    }

    fn on_chunk(&mut self, now: Instant, line: &str) -> Result<(), TextError> {
        let Some(rx) = self.receiving.as_mut() else {
            return Ok(());
        };
        let expected = (rx.total - rx.data.len()).min(CHUNK_BYTES);
        let bytes = decode_chunk(line, rx.chunk, expected)?;
        rx.data.extend_from_slice(&bytes);
        if rx.data.len() < rx.total {
            self.write_line(&Reply::OkayMore.to_string());
            self.progress(now);
            return Ok(());
        }
        let rx = self.receiving.take().map(|rx| (rx.hash, rx.data));
        self.transfer_deadline = None;
        if let Some((_, data)) = rx {
            self.session.touch(now);
            let _ = self.session.handle_input(now, Input::Item(data.into()));
        }
        Ok(())
    }

    fn on_ack(&mut self, now: Instant, line: &str) -> Result<(), TextError> {
        let Some(tx) = self.sending.as_mut() else {
            return Ok(());
        };
        match Reply::parse(line) {
            Reply::OkayMore => {
                let end = (tx.offset + CHUNK_BYTES).min(tx.item.len());
                let chunk = encode_chunk(&tx.item[tx.offset..end], tx.chunk);
                tx.offset = end;
                let done = end == tx.item.len();
                self.write_line(&chunk);
                if done {
                    self.sending = None;
                    self.transfer_deadline = None;
                    self.session.touch(now);
                } else {
                    self.progress(now);
                }
                Ok(())
            }
            Reply::OkaySkip if tx.offset == 0 => {
                self.sending = None;
                self.transfer_deadline = None;
                self.session.touch(now);
                Ok(())
            }
            Reply::Error(text) => {
                self.sending = None;
                self.session.abort(CloseReason::PeerError(text));
                Ok(())
            }
            _ => Err(TextError::BadAck),
        }
    }
}
