//! [`LinkMachine`]: the link protocol's state. See the module docs of [`crate::link`] for the
//! protocol and the calling contract.

use std::collections::VecDeque;
use std::fmt;
use std::time::Instant;

use bytes::BytesMut;
use kith_crypto::AgentId;

use super::version::bye_body;
use super::{
    ByeReason, Event, LinkEnd, LinkFailure, LinkSettings, LinkStats, Payload, SendError,
    VersionInfo, LINK_COMMANDS, PINGS_REMEMBERED,
};
use crate::secure::{FrameDecoder, HandshakeKind, Link, Mode, Role};
use crate::wire::envelope::HEADER_LEN;
use crate::wire::{Command, Envelope, EnvelopeDecoder};

/// The sans-IO link protocol on one established secure link. See [`crate::link`].
pub struct LinkMachine {
    pub(super) link: Link,
    pub(super) settings: LinkSettings,
    pub(super) frames: FrameDecoder,
    pub(super) envelopes: EnvelopeDecoder,
    /// Received bytes not yet a whole frame.
    pub(super) inbuf: BytesMut,
    /// Opened plaintext not yet a whole envelope; empty at an envelope boundary.
    pub(super) plain: BytesMut,
    /// Sealed bytes waiting for `poll_transmit`.
    pub(super) transmit: BytesMut,
    /// The first frame of an envelope being sealed (its header and the start of its data).
    pub(super) scratch: BytesMut,
    pub(super) events: VecDeque<Event>,
    pub(super) confirmed: bool,
    pub(super) confirm_deadline: Option<Instant>,
    pub(super) peer_version: Option<VersionInfo>,
    pub(super) pings: VecDeque<[u8; 8]>,
    pub(super) said_bye: bool,
    pub(super) peer_bye_reason: Option<String>,
    pub(super) heard_bye: bool,
    pub(super) drain_deadline: Option<Instant>,
    pub(super) idle_fired: bool,
    pub(super) ended: Option<LinkEnd>,
    pub(super) stats: LinkStats,
    /// Envelope checksums are left out both ways ([`super::UNSUMMED_CAPABILITY`]).
    pub(super) unsummed: bool,
}

fn command(name: &'static str) -> Command {
    // Only the fixed names of this module, all valid.
    Command::new(name).unwrap_or_else(|_| unreachable!("{name} is a valid command"))
}

impl LinkMachine {
    /// Takes over `link` at `now` and queues our `version` (from `settings`). On the
    /// initiator, [`Event::Confirmed`] is the first event.
    pub fn new(link: Link, settings: LinkSettings, now: Instant) -> LinkMachine {
        let role = link.role();
        let mut machine = LinkMachine {
            frames: FrameDecoder::with_max_len(settings.max_frame),
            envelopes: EnvelopeDecoder::new(settings.max_envelope_data),
            confirm_deadline: (role == Role::Responder)
                .then(|| now.checked_add(settings.confirm_timeout))
                .flatten(),
            link,
            settings,
            inbuf: BytesMut::new(),
            plain: BytesMut::new(),
            transmit: BytesMut::new(),
            scratch: BytesMut::new(),
            events: VecDeque::new(),
            confirmed: role == Role::Initiator,
            peer_version: None,
            pings: VecDeque::new(),
            said_bye: false,
            peer_bye_reason: None,
            heard_bye: false,
            drain_deadline: None,
            idle_fired: false,
            ended: None,
            stats: LinkStats::default(),
            unsummed: false,
        };
        if machine.confirmed {
            machine.events.push_back(Event::Confirmed);
        }
        let version = Envelope::new(command("version"), machine.settings.version().to_json());
        machine.seal_envelope(&version);
        machine
    }

    /// Feeds bytes read from the socket at `now`, in any split.
    pub fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) {
        if self.ended.is_some() {
            return;
        }
        self.stats.bytes_in += bytes.len() as u64;
        if self.heard_bye {
            // The peer said it sends nothing more; whatever follows is not read.
            return;
        }
        self.inbuf.extend_from_slice(bytes);
        while self.ended.is_none() && !self.heard_bye {
            // `check` first: `decode` of a partial frame reserves its whole declared length,
            // and the buffers here should hold only what arrived.
            match self.frames.check(&self.inbuf) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return self.lose(e.into()),
            }
            let frame = match self.frames.decode(&mut self.inbuf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => return self.lose(e.into()),
            };
            let start = self.plain.len();
            if let Err(e) = self.link.open_into(now, &frame, &mut self.plain) {
                return self.lose(e.into());
            }
            self.stats.frames_in += 1;
            if !self.confirmed {
                self.confirmed = true;
                self.confirm_deadline = None;
                self.events.push_back(Event::Confirmed);
            }
            self.on_plaintext(now, start);
        }
        if self.heard_bye {
            self.inbuf = BytesMut::new();
            self.plain = BytesMut::new();
        }
    }

    /// The connection ended (read returned 0, or failed) at `now`.
    pub fn handle_eof(&mut self, now: Instant) {
        // No deadline depends on it; taken for symmetry with the other inputs.
        let _ = now;
        if self.ended.is_some() {
            return;
        }
        if self.heard_bye || self.said_bye {
            // The peer said it was done, or we did and do not wait for more: nothing lost
            // that either side still meant to deliver.
            self.end(LinkEnd::Orderly);
        } else {
            self.lose(LinkFailure::Eof);
        }
    }

    /// The timer from [`poll_timeout`](Self::poll_timeout) fired (or any time passed).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ended.is_some() {
            return;
        }
        if self.drain_deadline.is_some_and(|d| now >= d) {
            return self.end(LinkEnd::Orderly);
        }
        if self.confirm_deadline.is_some_and(|d| now >= d) {
            return self.lose(LinkFailure::NotConfirmed(self.settings.confirm_timeout));
        }
        if self.idle_armed() && self.link.is_idle(now) {
            self.idle_fired = true;
            self.events.push_back(Event::IdleTimeout);
        }
    }

    /// Queues `payload` to send. See [`SendError`] for the refusals.
    pub fn send(&mut self, payload: Payload) -> Result<(), SendError> {
        self.ready_to_send()?;
        match payload {
            Payload::Envelope(env) => {
                if LINK_COMMANDS.contains(&env.command.as_str()) {
                    return Err(SendError::LinkCommand(env.command.to_string()));
                }
                if env.version.to_be_bytes()[0] == b'{' {
                    return Err(SendError::EnvelopeVersion(env.version));
                }
                let limit = self.settings.max_envelope_data as usize;
                if env.data.len() > limit {
                    return Err(SendError::TooLarge {
                        len: env.data.len(),
                        limit,
                    });
                }
                self.seal_envelope(&env);
            }
            Payload::Json(json) => {
                let limit = self.link.max_plaintext();
                if json.len() > limit {
                    return Err(SendError::TooLarge {
                        len: json.len(),
                        limit,
                    });
                }
                if !is_json_object(&json) {
                    return Err(SendError::NotJsonObject);
                }
                // One frame of its own, so it starts at an envelope boundary on the other
                // side (every seal ends at a frame boundary).
                if self.seal(&json) {
                    self.stats.json_out += 1;
                }
            }
        }
        self.closed_if_ended()
    }

    /// Sends `ping` with `nonce`; the answer comes as [`Event::Pong`]. The machine remembers
    /// the last [`PINGS_REMEMBERED`] nonces; a pong for an older one is dropped.
    pub fn ping(&mut self, nonce: [u8; 8]) -> Result<(), SendError> {
        self.ready_to_send()?;
        if self.pings.len() >= PINGS_REMEMBERED {
            self.pings.pop_front();
        }
        self.pings.push_back(nonce);
        self.seal_envelope(&Envelope::new(command("ping"), nonce.to_vec()));
        self.closed_if_ended()
    }

    /// Says `bye` with `reason` at `now`, after everything already queued; from now on
    /// nothing more is sent. The machine reads on until the peer's `bye` (then
    /// [`Event::Ended`] with [`LinkEnd::Orderly`]) or the drain deadline. Does nothing if we
    /// already said `bye` or the link ended.
    pub fn retire(&mut self, now: Instant, reason: ByeReason) {
        if self.ended.is_some() || self.said_bye {
            return;
        }
        self.seal_envelope(&Envelope::new(command("bye"), bye_body(reason.as_str())));
        self.said_bye = true;
        if self.ended.is_some() {
            return;
        }
        if self.heard_bye {
            self.end(LinkEnd::Orderly);
        } else {
            self.drain_deadline = Some(now.checked_add(self.settings.drain_timeout).unwrap_or(now));
        }
    }

    /// Appends the bytes to write to `out`. False when there were none.
    pub fn poll_transmit(&mut self, out: &mut BytesMut) -> bool {
        if self.transmit.is_empty() {
            return false;
        }
        if out.is_empty() {
            // Hand over the buffer itself, no copy.
            std::mem::swap(out, &mut self.transmit);
        } else {
            out.extend_from_slice(&self.transmit);
            self.transmit.clear();
        }
        true
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout): the drain deadline after our
    /// `bye`, the confirmation deadline of a responder link, or its idle deadline. `None`
    /// once ended.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ended.is_some() {
            return None;
        }
        let idle = self
            .idle_armed()
            .then(|| self.link.idle_deadline())
            .flatten();
        [self.drain_deadline, self.confirm_deadline, idle]
            .into_iter()
            .flatten()
            .min()
    }

    /// True once the peer proved it holds the handshake's keys (see [`Event::Confirmed`]).
    pub fn is_confirmed(&self) -> bool {
        self.confirmed
    }

    /// The agent at the other end (see [`Link::peer`]).
    pub fn peer(&self) -> Option<AgentId> {
        self.link.peer()
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.link.role()
    }

    /// Which handshake opened the link.
    pub fn kind(&self) -> HandshakeKind {
        self.link.kind()
    }

    /// Noise or raw.
    pub fn mode(&self) -> Mode {
        self.link.mode()
    }

    /// The transport, for its handshake hash and limits.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// The peer's first `version`, once it arrived.
    pub fn peer_version(&self) -> Option<&VersionInfo> {
        self.peer_version.as_ref()
    }

    /// True once we said `bye`.
    pub fn said_bye(&self) -> bool {
        self.said_bye
    }

    /// The peer's `bye` reason (clipped), once it said `bye`; empty if it gave none.
    pub fn peer_bye_reason(&self) -> Option<&str> {
        self.heard_bye
            .then(|| self.peer_bye_reason.as_deref().unwrap_or(""))
    }

    /// How the link ended, once it has.
    pub fn ended(&self) -> Option<&LinkEnd> {
        self.ended.as_ref()
    }

    /// Counters.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// True once both sides agreed to leave envelope checksums out on this encrypted link
    /// ([`super::UNSUMMED_CAPABILITY`]).
    pub fn is_unsummed(&self) -> bool {
        self.unsummed
    }

    /// Bytes waiting for [`poll_transmit`](Self::poll_transmit).
    pub fn pending_transmit(&self) -> usize {
        self.transmit.len()
    }

    fn idle_armed(&self) -> bool {
        self.role() == Role::Responder && !self.said_bye && !self.heard_bye && !self.idle_fired
    }

    fn ready_to_send(&self) -> Result<(), SendError> {
        if self.ended.is_some() || self.said_bye {
            return Err(SendError::Closed);
        }
        if self.transmit.len() >= self.settings.max_pending_transmit {
            return Err(SendError::Backpressure);
        }
        Ok(())
    }

    fn closed_if_ended(&self) -> Result<(), SendError> {
        match self.ended {
            Some(_) => Err(SendError::Closed),
            None => Ok(()),
        }
    }

    /// Seals one envelope without copying its data: the header and the start of the data
    /// go through the scratch buffer as the first frame, the rest straight from `data`.
    pub(super) fn seal_envelope(&mut self, env: &Envelope) {
        let header = if self.unsummed {
            env.header_unsummed()
        } else {
            env.header()
        };
        let header = match header {
            Ok(header) => header,
            // Only data over 4 GiB has no header; `send` refuses far less than that.
            Err(e) => return self.lose(e.into()),
        };
        let first = self
            .link
            .max_plaintext()
            .saturating_sub(HEADER_LEN)
            .min(env.data.len());
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.extend_from_slice(&header);
        scratch.extend_from_slice(&env.data[..first]);
        let sealed = self.seal(&scratch) && self.seal(&env.data[first..]);
        self.scratch = scratch;
        if sealed {
            self.stats.envelopes_out += 1;
        }
    }

    /// Seals `plaintext` into the transmit buffer; on failure the link is lost.
    fn seal(&mut self, plaintext: &[u8]) -> bool {
        let before = self.transmit.len();
        match self.link.seal_into(plaintext, &mut self.transmit) {
            Ok(frames) => {
                self.stats.frames_out += frames as u64;
                self.stats.bytes_out += (self.transmit.len() - before) as u64;
                true
            }
            Err(e) => {
                self.lose(e.into());
                false
            }
        }
    }

    pub(super) fn lose(&mut self, failure: LinkFailure) {
        self.end(LinkEnd::Lost(failure));
    }

    pub(super) fn end(&mut self, end: LinkEnd) {
        if self.ended.is_some() {
            return;
        }
        if end != LinkEnd::Orderly {
            // A broken link says nothing more.
            self.transmit.clear();
        }
        self.inbuf = BytesMut::new();
        self.plain = BytesMut::new();
        self.drain_deadline = None;
        self.confirm_deadline = None;
        self.ended = Some(end.clone());
        self.events.push_back(Event::Ended(end));
    }
}

/// True when `json` starts with `{` and is one valid JSON value (so an object).
fn is_json_object(json: &[u8]) -> bool {
    json.first() == Some(&b'{') && serde_json::from_slice::<serde::de::IgnoredAny>(json).is_ok()
}

impl fmt::Debug for LinkMachine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkMachine")
            .field("link", &self.link)
            .field("confirmed", &self.confirmed)
            .field("said_bye", &self.said_bye)
            .field("heard_bye", &self.heard_bye)
            .field("ended", &self.ended)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}
