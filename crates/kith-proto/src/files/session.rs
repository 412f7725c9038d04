//! The session machine: one type for both ends. See the module documentation of
//! [`crate::files`] for the conversation it implements and the calling contract.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use super::command::{Command, CommandKind, ParseError, Reply, Target, HELP_TEXT};
use super::hash::{nonce_answer, ContentHash, HELLO_ITEM};
use super::state::State;
use super::types::{
    CloseReason, Event, Input, SessionConfig, SessionError, Transmit, TurnContext, Wants,
};
use super::Role;

/// Longest help answer, in lines, an initiator accepts.
const MAX_HELP_LINES: usize = 64;
/// Reply lines may quote a whole command line (`(error)invalid command usage '<line>'`).
const REPLY_LINE_SLACK: usize = 64;

/// A step in serving a command the peer issued.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Serve {
    /// `chk <tag>`: waiting for [`Session::answer_tag`].
    Resolve,
    /// `chk`/`put`: waiting for [`Session::answer_have`].
    Have(ContentHash),
    /// `chk <hash> <nonce>`: waiting for the item to hash with the nonce.
    ReadForNonce(ContentHash, String),
    /// `get`: waiting for the item to send.
    ReadForGet(ContentHash),
    /// `put`: waiting for the item from the peer.
    Recv(ContentHash, bool),
    /// `put`: waiting for [`Session::stored`].
    Store(ContentHash),
    /// `pip`: waiting for [`Session::answer_pip`].
    Pip,
}

/// A step in completing a command we issued.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Own {
    /// `put`, or `chk` with a nonce: waiting for the item before sending the command.
    Read(ContentHash),
    /// `chk`/`pip`: waiting for the peer's reply line (and the nonce answer we expect).
    Reply(Option<String>),
    /// `get`: waiting for the item.
    Recv(ContentHash),
    /// `get`: waiting for [`Session::stored`].
    Store(ContentHash),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Responder: waiting for the initiator's command.
    AwaitCommand,
    /// Initiator: our turn, waiting for [`Session::send_command`].
    Ready,
    /// Serving the peer's command.
    Serve(Command, Serve),
    /// Completing our own command.
    Own(Command, Own),
    /// Responder: the hello exchange, waiting for the initiator to send the hello back.
    HelloEcho,
    /// Initiator: after `(not found)` to the first `chk`, waiting for `put <hello>`.
    HelloPut,
    /// Initiator: waiting for the hello item, to send it back.
    HelloItem,
    /// Initiator: waiting for the `(okay)` that gives us the turn.
    AwaitOkay,
    /// Initiator: collecting the `?` answer until `(okay)`.
    AwaitHelp(Vec<String>),
    /// Initiator: waiting for the responder's own command.
    AwaitPeerCommand,
    /// Responder: waiting for [`Session::answer_command`].
    Choose,
    /// Waiting for [`Session::tls_started`].
    TlsStart,
    /// Ended.
    Closed,
}

/// One CIYAM peer session, either end, independent of how its lines and items are encoded.
#[derive(Debug)]
pub struct Session {
    role: Role,
    config: SessionConfig,
    state: State,
    phase: Phase,
    since: Instant,
    help_used: bool,
    turn: u32,
    prior_put: Option<ContentHash>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl Session {
    /// A fresh session at connect time `now`. An initiator starts with [`Event::Ready`].
    pub fn new(role: Role, config: SessionConfig, now: Instant) -> Session {
        let mut s = Session {
            role,
            config,
            state: State::Fresh,
            phase: Phase::AwaitCommand,
            since: now,
            help_used: false,
            turn: 0,
            prior_put: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        if role == Role::Initiator {
            s.ready(now);
        }
        s
    }

    /// Our end.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Where the session is in the state table.
    pub fn state(&self) -> State {
        self.state
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// True once the session has ended (drain the transmits, then close).
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// What the session expects from the peer next.
    pub fn wants(&self) -> Wants {
        let line = Wants::Line {
            max: self.config.max_line,
        };
        let reply = Wants::Line {
            max: self.config.max_line * 2 + REPLY_LINE_SLACK,
        };
        let item = |hash, skip| Wants::Item {
            hash,
            skip,
            max: self.config.max_item,
        };
        match &self.phase {
            Phase::AwaitCommand | Phase::AwaitPeerCommand | Phase::HelloPut => line,
            Phase::AwaitOkay | Phase::AwaitHelp(_) | Phase::Own(_, Own::Reply(_)) => reply,
            Phase::HelloEcho | Phase::HelloItem => item(ContentHash::hello(), false),
            Phase::Serve(_, Serve::Recv(h, skip)) => item(*h, *skip),
            Phase::Own(_, Own::Recv(h)) => item(*h, false),
            _ => Wants::Nothing,
        }
    }

    /// The next thing to send, in order.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event or question for the driver.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called: set while waiting for
    /// the peer, `None` while waiting for the driver (or on our own turn).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.wants() {
            Wants::Line { .. } => self
                .config
                .request_timeout
                .and_then(|t| self.since.checked_add(t)),
            Wants::Item { .. } => self.since.checked_add(self.config.item_timeout),
            Wants::Nothing => None,
        }
    }

    /// Ends the session if the peer has kept us waiting past the deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|d| now >= d) {
            self.close(CloseReason::Timeout);
        }
    }

    /// Ends the session because the codec found the peer's bytes unusable: sends
    /// `(error)<text>` and closes.
    pub fn protocol_error(&mut self, text: &str) {
        if !self.is_closed() {
            self.fail(text.to_string());
        }
    }

    /// Ends the session without a word (the peer sent `(error)…` in a transfer, or a codec
    /// timed out).
    pub fn abort(&mut self, reason: CloseReason) {
        self.close(reason);
    }

    /// Restarts the wait clock: a codec calls this whenever a multi-part transfer makes
    /// progress, so that a long transfer does not count against the next wait.
    pub fn touch(&mut self, now: Instant) {
        if now > self.since {
            self.since = now;
        }
    }

    /// Feeds one decoded unit from the peer. Peer misbehaviour is not an error here: it ends
    /// the session (with an `(error)` line where the protocol has one) and reports
    /// [`Event::Closed`]. `Err` means the driver called at the wrong moment (check
    /// [`wants`](Self::wants) first).
    pub fn handle_input(&mut self, now: Instant, input: Input) -> Result<(), SessionError> {
        if self.is_closed() {
            return Err(SessionError::Closed);
        }
        match (self.wants(), input) {
            (Wants::Line { .. }, Input::Line(line)) => self.on_line(now, line),
            (Wants::Item { hash, .. }, Input::Item(item)) => self.on_item(now, hash, item),
            (Wants::Item { skip: true, .. }, Input::ItemSkipped) => self.on_skipped(now),
            (Wants::Nothing, _) => return Err(SessionError::NotWanted),
            (Wants::Item { .. }, Input::Line(line)) if line.starts_with("(error)") => {
                self.close(CloseReason::PeerError(line["(error)".len()..].to_string()))
            }
            (Wants::Line { .. }, _) => self.fail("unexpected file transfer".into()),
            (Wants::Item { .. }, _) => self.fail("expected a file transfer".into()),
        }
        Ok(())
    }

    // ----- driver answers -----

    /// Answers [`Event::ResolveTag`]: the hash the tag names, if any.
    pub fn answer_tag(
        &mut self,
        now: Instant,
        hash: Option<ContentHash>,
    ) -> Result<(), SessionError> {
        let Phase::Serve(cmd, Serve::Resolve) = self.phase.clone() else {
            return Err(self.no_question());
        };
        match (hash, &cmd) {
            (Some(h), Command::Chk { nonce: Some(n), .. }) => {
                self.ask_read(now, cmd.clone(), Serve::ReadForNonce(h, n.clone()), h)
            }
            (Some(h), _) => self.chk_found(now, Reply::Hash(h.to_string())),
            (None, _) => self.chk_not_found(now),
        }
        Ok(())
    }

    /// Answers [`Event::HaveItem`].
    pub fn answer_have(&mut self, now: Instant, have: bool) -> Result<(), SessionError> {
        let Phase::Serve(cmd, Serve::Have(h)) = self.phase.clone() else {
            return Err(self.no_question());
        };
        match (&cmd, have) {
            (Command::Put { .. }, _) => {
                self.set_phase(now, Phase::Serve(cmd, Serve::Recv(h, have)))
            }
            (Command::Chk { nonce: Some(n), .. }, true) => {
                self.ask_read(now, cmd.clone(), Serve::ReadForNonce(h, n.clone()), h)
            }
            (_, true) => self.chk_found(now, Reply::Hash(h.to_string())),
            (_, false) => self.chk_not_found(now),
        }
        Ok(())
    }

    /// Answers [`Event::ReadItem`] with the item (type byte first), or `None` if it is gone.
    /// An item that does not hash to what was asked ends the session ([`CloseReason::Local`]).
    pub fn supply_item(&mut self, now: Instant, item: Option<Bytes>) -> Result<(), SessionError> {
        self.supply(now, item, true)
    }

    /// [`Session::supply_item`] for a driver whose store has just verified the item against
    /// the hash asked for (kith's store hashes every item it reads): the session does not hash
    /// it again. A megabyte item costs a millisecond of SHA-256, so on the serving side of a
    /// transfer this is a third of the hashing.
    pub fn supply_verified_item(
        &mut self,
        now: Instant,
        item: Option<Bytes>,
    ) -> Result<(), SessionError> {
        self.supply(now, item, false)
    }

    fn supply(
        &mut self,
        now: Instant,
        item: Option<Bytes>,
        check: bool,
    ) -> Result<(), SessionError> {
        let (hash, phase) = match &self.phase {
            Phase::Serve(_, Serve::ReadForNonce(h, _) | Serve::ReadForGet(h))
            | Phase::Own(_, Own::Read(h)) => (*h, self.phase.clone()),
            _ => return Err(self.no_question()),
        };
        if let Some(item) = &item {
            if check && ContentHash::of(item) != hash {
                self.close(CloseReason::Local(format!("stored item {hash} is corrupt")));
                return Ok(());
            }
            debug_assert!(check || ContentHash::of(item) == hash, "an unverified item");
        }
        match (phase, item) {
            (Phase::Serve(_, Serve::ReadForNonce(_, n)), Some(item)) => {
                self.chk_found(now, Reply::Hash(nonce_answer(&n, &item)))
            }
            (Phase::Serve(_, Serve::ReadForNonce(..)), None) => self.chk_not_found(now),
            (Phase::Serve(cmd, Serve::ReadForGet(_)), Some(item)) => {
                self.transmits.push_back(Transmit::Item { hash, item });
                self.served(now, cmd);
            }
            (Phase::Serve(..), None) => self.fail(format!("file '{hash}' was not found")),
            (Phase::Own(cmd @ Command::Put { .. }, _), Some(item)) => {
                self.transmits.push_back(Transmit::Command(cmd.clone()));
                self.transmits.push_back(Transmit::Item { hash, item });
                self.own_done(now, &cmd);
            }
            (Phase::Own(cmd, _), item) => {
                // A `chk` with a nonce: the answer we expect, if we still hold the item.
                let expected = match (&cmd, item) {
                    (Command::Chk { nonce: Some(n), .. }, Some(item)) => {
                        Some(nonce_answer(n, &item))
                    }
                    _ => None,
                };
                if matches!(cmd, Command::Put { .. }) {
                    self.close(CloseReason::Local(format!("file '{hash}' was not found")));
                    return Ok(());
                }
                self.transmits.push_back(Transmit::Command(cmd.clone()));
                self.set_phase(now, Phase::Own(cmd, Own::Reply(expected)));
            }
            _ => {}
        }
        Ok(())
    }

    /// Answers [`Event::StoreItem`]: `true` once the item is durable. `false` ends the session.
    pub fn stored(&mut self, now: Instant, ok: bool) -> Result<(), SessionError> {
        match self.phase.clone() {
            Phase::Serve(cmd, Serve::Store(h)) => {
                if !ok {
                    self.fail(format!("file '{h}' could not be stored"));
                } else {
                    if self.prior_put.is_none() {
                        self.prior_put = Some(h);
                    }
                    self.served(now, cmd);
                }
            }
            Phase::Own(cmd, Own::Store(h)) => {
                if !ok {
                    self.close(CloseReason::Local(format!(
                        "file '{h}' could not be stored"
                    )));
                } else {
                    self.own_done(now, &cmd);
                }
            }
            _ => return Err(self.no_question()),
        }
        Ok(())
    }

    /// Answers [`Event::PipAddress`].
    pub fn answer_pip(&mut self, now: Instant, addr: &str) -> Result<(), SessionError> {
        let Phase::Serve(cmd, Serve::Pip) = self.phase.clone() else {
            return Err(self.no_question());
        };
        self.transmits
            .push_back(Transmit::Reply(Reply::Line(addr.to_string())));
        self.served(now, cmd);
        Ok(())
    }

    /// Answers [`Event::StartTls`] once TLS is up on the connection.
    pub fn tls_started(&mut self, now: Instant) -> Result<(), SessionError> {
        if self.phase != Phase::TlsStart {
            return Err(self.no_question());
        }
        self.state = State::AfterTls;
        match self.role {
            Role::Responder => {
                self.transmits.push_back(Transmit::Reply(Reply::Okay));
                self.set_phase(now, Phase::AwaitCommand);
            }
            Role::Initiator => self.set_phase(now, Phase::AwaitOkay),
        }
        Ok(())
    }

    /// (Responder.) Answers [`Event::ChooseCommand`] with our own command for this turn:
    /// `chk`, `pip`, the transfer the state allows, or `bye`. A command the state does not
    /// allow is refused and the question stays open.
    pub fn answer_command(&mut self, now: Instant, cmd: Command) -> Result<(), SessionError> {
        if self.phase != Phase::Choose {
            return Err(self.no_question());
        }
        if cmd == Command::Bye {
            self.transmits.push_back(Transmit::Command(Command::Bye));
            self.close(CloseReason::Bye { by_peer: false });
            return Ok(());
        }
        if !self.state.allows_from_responder(cmd.kind()) {
            return Err(SessionError::Refused(invalid_state(cmd.kind())));
        }
        self.check_args(&cmd).map_err(SessionError::Refused)?;
        self.issue(now, cmd);
        Ok(())
    }

    /// (Initiator.) Issues our next command, on our turn ([`Event::Ready`]). Refused (with the
    /// text the peer would answer) if the state table does not allow it.
    pub fn send_command(&mut self, now: Instant, cmd: Command) -> Result<(), SessionError> {
        if self.is_closed() {
            return Err(SessionError::Closed);
        }
        if self.role != Role::Initiator || self.phase != Phase::Ready {
            return Err(SessionError::NotOurTurn);
        }
        let line = cmd.to_string();
        if line.len() > self.config.max_line {
            return Err(SessionError::Refused(format!(
                "invalid command usage '{line}'"
            )));
        }
        let kind = cmd.kind();
        if kind == CommandKind::Help && self.help_used {
            // A second `?` is a `bye`, as the peer would take it.
            self.transmits.push_back(Transmit::Command(Command::Bye));
            self.close(CloseReason::Bye { by_peer: false });
            return Ok(());
        }
        if !self.state.allows(kind) {
            return Err(SessionError::Refused(invalid_state(kind)));
        }
        self.check_args(&cmd).map_err(SessionError::Refused)?;
        match cmd {
            Command::Bye => {
                self.transmits.push_back(Transmit::Command(cmd));
                self.close(CloseReason::Bye { by_peer: false });
            }
            Command::Help => {
                self.help_used = true;
                self.transmits.push_back(Transmit::Command(cmd));
                self.set_phase(now, Phase::AwaitHelp(Vec::new()));
            }
            Command::Tls => {
                self.transmits.push_back(Transmit::Command(cmd));
                self.events.push_back(Event::StartTls);
                self.set_phase(now, Phase::TlsStart);
            }
            cmd => self.issue(now, cmd),
        }
        Ok(())
    }

    // ----- internals -----

    fn no_question(&self) -> SessionError {
        if self.is_closed() {
            SessionError::Closed
        } else {
            SessionError::NoQuestion
        }
    }

    fn set_phase(&mut self, now: Instant, phase: Phase) {
        self.phase = phase;
        self.since = now;
    }

    fn ready(&mut self, now: Instant) {
        self.set_phase(now, Phase::Ready);
        self.events.push_back(Event::Ready);
    }

    fn close(&mut self, reason: CloseReason) {
        if self.is_closed() {
            return;
        }
        self.phase = Phase::Closed;
        self.state = State::Invalid;
        self.events.push_back(Event::Closed(reason));
    }

    /// Tells the peer `(error)<text>` and ends the session.
    fn fail(&mut self, text: String) {
        self.transmits
            .push_back(Transmit::Reply(Reply::Error(text.clone())));
        self.close(CloseReason::Violation(text));
    }

    fn check_args(&self, cmd: &Command) -> Result<(), String> {
        for arg in cmd.free_text_args() {
            if arg.contains(".key") {
                return Err(format!("invalid suspicious argument '{arg}'"));
            }
        }
        if let Command::Chk {
            target: Target::Tag(tag),
            ..
        } = cmd
        {
            if !self.config.interactive_test && !tag.starts_with("bc.") {
                return Err("invalid non-blockchain prefixed tag".into());
            }
        }
        Ok(())
    }

    /// Issues our own command (both roles; `tls`, `?`, `bye` are handled by the callers).
    fn issue(&mut self, now: Instant, cmd: Command) {
        match &cmd {
            Command::Put { hash }
            | Command::Chk {
                target: Target::Hash(hash),
                nonce: Some(_),
            } => {
                let hash = *hash;
                self.events.push_back(Event::ReadItem { hash });
                self.set_phase(now, Phase::Own(cmd, Own::Read(hash)));
            }
            Command::Get { hash } => {
                let hash = *hash;
                self.transmits.push_back(Transmit::Command(cmd.clone()));
                self.set_phase(now, Phase::Own(cmd, Own::Recv(hash)));
            }
            _ => {
                self.transmits.push_back(Transmit::Command(cmd.clone()));
                self.set_phase(now, Phase::Own(cmd, Own::Reply(None)));
            }
        }
    }

    fn ask_read(&mut self, now: Instant, cmd: Command, step: Serve, hash: ContentHash) {
        self.events.push_back(Event::ReadItem { hash });
        self.set_phase(now, Phase::Serve(cmd, step));
    }

    fn on_line(&mut self, now: Instant, line: String) {
        match self.phase.clone() {
            Phase::AwaitCommand | Phase::AwaitPeerCommand => self.on_command_line(now, line),
            Phase::HelloPut => match Command::parse(&line) {
                Ok(cmd @ Command::Put { hash }) if hash == ContentHash::hello() => {
                    self.events.push_back(Event::PeerCommand(cmd));
                    self.set_phase(now, Phase::HelloItem);
                }
                _ => self.on_bad_reply(&line, "expected put of the hello file"),
            },
            Phase::AwaitOkay => match Reply::parse(&line) {
                Reply::Okay => self.ready(now),
                _ => self.on_bad_reply(&line, "unexpected non-okay response from peer"),
            },
            Phase::AwaitHelp(mut lines) => match Reply::parse(&line) {
                Reply::Okay => {
                    self.events.push_back(Event::Reply {
                        to: Command::Help,
                        reply: Reply::Help(lines.join("\n")),
                    });
                    self.ready(now);
                }
                Reply::Error(text) => self.close(CloseReason::PeerError(text)),
                _ if lines.len() >= MAX_HELP_LINES => {
                    self.close(CloseReason::Violation("help answer too long".into()))
                }
                _ => {
                    lines.push(line);
                    self.phase = Phase::AwaitHelp(lines);
                }
            },
            Phase::Own(cmd, Own::Reply(expected)) => self.on_reply(now, cmd, expected, line),
            _ => {}
        }
    }

    /// A reply line where the reply is not what the protocol allows.
    fn on_bad_reply(&mut self, line: &str, what: &str) {
        match Reply::parse(line) {
            Reply::Error(text) => self.close(CloseReason::PeerError(text)),
            _ => self.close(CloseReason::Violation(what.to_string())),
        }
    }

    fn on_command_line(&mut self, now: Instant, line: String) {
        let responder = self.role == Role::Responder;
        if responder && line.is_empty() {
            return;
        }
        if responder && (line == "(okay)" || line == "(okay more)") {
            // The reference takes a stray acknowledgement as the end of the session.
            self.close(CloseReason::Bye { by_peer: true });
            return;
        }
        if let Reply::Error(text) = Reply::parse(&line) {
            self.close(CloseReason::PeerError(text));
            return;
        }
        let cmd = match Command::parse(&line) {
            Ok(cmd) => cmd,
            Err(e @ (ParseError::Unknown(_) | ParseError::InvalidUsage(_))) => {
                return self.fail(e.to_string())
            }
        };
        let kind = cmd.kind();
        if kind == CommandKind::Bye || (kind == CommandKind::Help && self.help_used) {
            self.close(CloseReason::Bye { by_peer: true });
            return;
        }
        let allowed = if responder {
            self.state.allows(kind)
        } else {
            self.state.allows_from_responder(kind)
        };
        if !allowed {
            return self.fail(invalid_state(kind));
        }
        if let Err(text) = self.check_args(&cmd) {
            return self.fail(text);
        }
        self.events.push_back(Event::PeerCommand(cmd.clone()));
        match cmd {
            Command::Help => {
                self.help_used = true;
                self.transmits
                    .push_back(Transmit::Reply(Reply::Help(HELP_TEXT.to_string())));
                self.transmits.push_back(Transmit::Reply(Reply::Okay));
                self.set_phase(now, Phase::AwaitCommand);
            }
            Command::Tls => {
                self.events.push_back(Event::StartTls);
                self.set_phase(now, Phase::TlsStart);
            }
            Command::Chk {
                target: Target::Tag(ref tag),
                ..
            } => {
                self.events
                    .push_back(Event::ResolveTag { tag: tag.clone() });
                self.set_phase(now, Phase::Serve(cmd, Serve::Resolve));
            }
            Command::Chk {
                target: Target::Hash(hash),
                ..
            }
            | Command::Put { hash } => {
                self.events.push_back(Event::HaveItem { hash });
                self.set_phase(now, Phase::Serve(cmd, Serve::Have(hash)));
            }
            Command::Get { hash } => self.ask_read(now, cmd, Serve::ReadForGet(hash), hash),
            Command::Pip { .. } => {
                self.events.push_back(Event::PipAddress);
                self.set_phase(now, Phase::Serve(cmd, Serve::Pip));
            }
            Command::Bye => {}
        }
    }

    fn on_reply(&mut self, now: Instant, cmd: Command, expected: Option<String>, line: String) {
        let reply = Reply::parse(&line);
        if let Reply::Error(text) = reply {
            self.close(CloseReason::PeerError(text));
            return;
        }
        let first = !self.state.is_transferring();
        self.events.push_back(Event::Reply {
            to: cmd.clone(),
            reply: reply.clone(),
        });
        if first {
            // Our opening `chk` (initiator).
            if reply == Reply::NotFound {
                self.set_phase(now, Phase::HelloPut);
            } else {
                self.state = self.transfer_state(State::WaitingForGet);
                self.set_phase(now, Phase::AwaitOkay);
            }
            return;
        }
        if let Some(expected) = expected {
            if reply != Reply::Hash(expected) {
                return self.fail(format!("unexpected invalid chk response: {line}"));
            }
        }
        self.own_done(now, &cmd);
    }

    fn on_item(&mut self, now: Instant, hash: ContentHash, item: Bytes) {
        if ContentHash::of(&item) != hash {
            return self.fail(format!("file content does not match hash {hash}"));
        }
        match self.phase.clone() {
            Phase::HelloEcho => {
                self.state = self.transfer_state(State::WaitingForPut);
                self.transmits.push_back(Transmit::Reply(Reply::Okay));
                self.set_phase(now, Phase::AwaitCommand);
            }
            Phase::HelloItem => {
                self.transmits.push_back(Transmit::Item { hash, item });
                self.state = self.transfer_state(State::WaitingForPut);
                self.set_phase(now, Phase::AwaitOkay);
            }
            Phase::Serve(cmd, Serve::Recv(_, skip)) => {
                if skip {
                    // We hold it already: nothing to store.
                    self.on_skipped(now);
                } else {
                    self.events.push_back(Event::StoreItem { hash, item });
                    self.set_phase(now, Phase::Serve(cmd, Serve::Store(hash)));
                }
            }
            Phase::Own(cmd, Own::Recv(_)) => {
                self.events.push_back(Event::StoreItem { hash, item });
                self.set_phase(now, Phase::Own(cmd, Own::Store(hash)));
            }
            _ => {}
        }
    }

    fn on_skipped(&mut self, now: Instant) {
        if let Phase::Serve(cmd, Serve::Recv(h, true)) = self.phase.clone() {
            if self.prior_put.is_none() {
                self.prior_put = Some(h);
            }
            self.served(now, cmd);
        }
    }

    fn transfer_state(&self, strict: State) -> State {
        if self.config.alternate {
            strict
        } else {
            State::WaitingForGetOrPut
        }
    }

    fn chk_found(&mut self, now: Instant, reply: Reply) {
        let Phase::Serve(cmd, _) = self.phase.clone() else {
            return;
        };
        self.transmits.push_back(Transmit::Reply(reply));
        if self.role == Role::Responder && !self.state.is_transferring() {
            // The opening `chk`, found: `(okay)` and the initiator may `get`.
            self.state = self.transfer_state(State::WaitingForGet);
            self.transmits.push_back(Transmit::Reply(Reply::Okay));
            self.set_phase(now, Phase::AwaitCommand);
        } else {
            self.served(now, cmd);
        }
    }

    fn chk_not_found(&mut self, now: Instant) {
        let Phase::Serve(cmd, _) = self.phase.clone() else {
            return;
        };
        self.transmits.push_back(Transmit::Reply(Reply::NotFound));
        if self.role == Role::Responder && !self.state.is_transferring() {
            // The opening `chk`, not found: the hello exchange.
            let hello = ContentHash::hello();
            self.transmits
                .push_back(Transmit::Command(Command::Put { hash: hello }));
            self.transmits.push_back(Transmit::Item {
                hash: hello,
                item: Bytes::from_static(HELLO_ITEM),
            });
            self.set_phase(now, Phase::HelloEcho);
        } else {
            self.served(now, cmd);
        }
    }

    /// The peer's command is answered: the responder takes its own turn, the initiator waits
    /// for `(okay)`.
    fn served(&mut self, now: Instant, cmd: Command) {
        match self.role {
            Role::Responder => {
                self.state = self
                    .state
                    .after_initiator(cmd.kind(), self.config.alternate);
                self.turn = self.turn.saturating_add(1);
                self.events.push_back(Event::ChooseCommand(TurnContext {
                    turn: self.turn,
                    state: self.state,
                    last_peer_command: cmd.kind(),
                    prior_put: self.prior_put,
                }));
                self.set_phase(now, Phase::Choose);
            }
            Role::Initiator => self.set_phase(now, Phase::AwaitOkay),
        }
    }

    /// Our command is complete: the responder hands the turn back with `(okay)`, the
    /// initiator waits for the responder's command.
    fn own_done(&mut self, now: Instant, cmd: &Command) {
        match self.role {
            Role::Responder => {
                self.transmits.push_back(Transmit::Reply(Reply::Okay));
                self.set_phase(now, Phase::AwaitCommand);
            }
            Role::Initiator => {
                self.state = self
                    .state
                    .after_initiator(cmd.kind(), self.config.alternate);
                self.set_phase(now, Phase::AwaitPeerCommand);
            }
        }
    }
}

fn invalid_state(kind: CommandKind) -> String {
    format!("invalid state for {}", kind.name())
}
