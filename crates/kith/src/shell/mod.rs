//! `kith shell HOST:PORT`: the interactive CIYAM peer-protocol client, kith's `ciyam_client`.
//!
//! A synchronous loop drives an initiator [`TextPort`] over a blocking socket: each line the
//! user types (or a script pipes in) is parsed with [`Command::parse`] and sent with
//! [`kith_proto::files::Session::send_command`] when the session is [`Event::Ready`]; the
//! peer's replies ([`Event::Reply`]) and its own commands ([`Event::PeerCommand`]) are printed,
//! one per line, which reproduces the seed's transcripts. Everything else the protocol needs
//! is answered from the data dir's store without a word: the peer's `get` gets the local item,
//! its `put` and the answer to our own `get` are stored (the machine has checked the hash),
//! our `put` sends the local item, a `pip` is answered `127.0.0.1`.
//!
//! From a pipe nothing else is printed (no banner, prompt or echo), so a script can compare
//! the output with a transcript. Lines starting with `~` are local commands ([`local`]).

mod conn;
mod input;
mod local;

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use kith_proto::files::{
    CloseReason, Command, CommandKind, Event, Reply, Role, Session, SessionConfig, SessionError,
    TextPort, HELLO_ITEM, MAX_AHEAD,
};
use kith_store::{ContentHash, FileStore, ItemType, StoreError};

use crate::env::Env;
use conn::Conn;
use input::LineSource;

/// The prompt on a terminal.
const PROMPT: &str = "> ";
/// The address we offer when the peer asks `pip` (we are a client: we know no other peers).
const PIP_ADDRESS: &str = "127.0.0.1";
/// Longest single read wait when the session sets no deadline.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// History file in the data dir.
const HISTORY_FILE: &str = "shell_history";

/// Runs `kith shell TARGET`.
pub fn run(env: &Env, target: &str) -> Result<()> {
    let limits = &env.config.limits;
    let mut store = env
        .config
        .open_file_store()
        .context("cannot open the file store")?;
    let request = Duration::from_millis(limits.ciyam_request_timeout_ms);
    let chunk = Duration::from_millis(limits.ciyam_transfer_chunk_timeout_ms);
    let conn = Conn::connect(target, request, chunk)?;
    let source = LineSource::open(Some(env.config.data_dir.root().join(HISTORY_FILE)));
    if source.interactive() {
        println!(
            "kith shell: connected to {target} (CIYAM peer protocol: ? for the peer's help, \
             ~rm/~cat/~diff for local files, bye or Ctrl-D to leave)"
        );
    }
    let session = Session::new(
        Role::Initiator,
        SessionConfig::interactive(limits),
        Instant::now(),
    );
    let mut shell = Shell {
        port: TextPort::new(session, limits),
        conn: Some(conn),
        store: &mut store,
        source,
        handshake_timeout: request,
        ready: false,
        closed: None,
        refused: None,
    };
    let result = shell.drive();
    if let Some(conn) = shell.conn.take() {
        conn.close();
    }
    result
}

/// The lines the shell prints for one event: the peer's replies and its own commands, and the
/// error line it ended the session with. Everything else (`(okay)`, transfers, our automatic
/// answers) is not shown, as ciyam_client does not show it.
pub fn display(event: &Event) -> Vec<String> {
    match event {
        Event::PeerCommand(cmd) => vec![cmd.to_string()],
        Event::Reply {
            reply: Reply::Help(text),
            ..
        } => text.lines().map(str::to_string).collect(),
        Event::Reply { reply, .. } => vec![reply.to_string()],
        Event::Closed(CloseReason::PeerError(text)) => vec![Reply::Error(text.clone()).to_string()],
        _ => Vec::new(),
    }
}

struct Shell<'a> {
    port: TextPort,
    /// `None` only while TLS is being set up.
    conn: Option<Conn>,
    store: &'a mut FileStore,
    source: LineSource,
    handshake_timeout: Duration,
    /// Our turn: read the next command.
    ready: bool,
    closed: Option<CloseReason>,
    /// A command we refused locally (its `(error)` text), which ended the session.
    refused: Option<String>,
}

impl Shell<'_> {
    fn conn(&mut self) -> Result<&mut Conn> {
        self.conn
            .as_mut()
            .ok_or_else(|| anyhow!("the connection is gone"))
    }

    /// Runs the session to its end.
    fn drive(&mut self) -> Result<()> {
        loop {
            self.settle()?;
            if let Some(reason) = self.closed.take() {
                return self.outcome(reason);
            }
            if self.ready {
                self.ready = false;
                self.next_command()?;
            } else if self.port.wants_bytes() {
                self.read_peer()?;
            } else {
                bail!("the peer-protocol session stalled");
            }
        }
    }

    /// How the session ended, as the shell's result.
    fn outcome(&mut self, reason: CloseReason) -> Result<()> {
        if let Some(text) = self.refused.take() {
            bail!("session ended: {text}");
        }
        match reason {
            CloseReason::Bye { .. } => Ok(()),
            CloseReason::PeerError(text) => bail!("the peer ended the session: {text}"),
            CloseReason::Violation(text) => bail!("the peer broke the protocol: {text}"),
            CloseReason::Timeout => bail!("the peer did not answer in time"),
            CloseReason::Local(text) => bail!("session ended: {text}"),
        }
    }

    /// Writes what the port has to send and handles its events until both are quiet.
    fn settle(&mut self) -> Result<()> {
        loop {
            self.write_out()?;
            let Some(event) = self.port.poll_event() else {
                return Ok(());
            };
            self.on_event(event)?;
        }
    }

    fn write_out(&mut self) -> Result<()> {
        let mut wrote = false;
        while let Some(bytes) = self.port.poll_transmit() {
            self.conn()?
                .write_all(&bytes)
                .context("connection to the peer lost")?;
            wrote = true;
        }
        if wrote {
            self.conn()?
                .flush()
                .context("connection to the peer lost")?;
        }
        Ok(())
    }

    fn on_event(&mut self, event: Event) -> Result<()> {
        let lines = display(&event);
        if !lines.is_empty() {
            let mut out = std::io::stdout().lock();
            for line in lines {
                writeln!(out, "{line}")?;
            }
            out.flush()?;
        }
        let now = Instant::now();
        let answered = match event {
            Event::Ready => {
                self.ready = true;
                Ok(())
            }
            Event::ResolveTag { .. } => self.port.session_mut().answer_tag(now, None),
            Event::HaveItem { hash } => {
                let have = self.store_has(hash);
                self.port.session_mut().answer_have(now, have)
            }
            Event::ReadItem { hash } => {
                let item = self.read_item(hash);
                self.port.session_mut().supply_item(now, item)
            }
            Event::StoreItem { hash, item } => {
                let ok = self.store_item(hash, &item);
                self.port.session_mut().stored(now, ok)
            }
            Event::PipAddress => self.port.session_mut().answer_pip(now, PIP_ADDRESS),
            // Only a responder chooses its own commands; we are the initiator.
            Event::ChooseCommand(_) => self.port.session_mut().answer_command(now, Command::Bye),
            Event::StartTls => {
                // The `tls` line is already written (settle writes before each event).
                let conn = self.conn.take().ok_or_else(|| anyhow!("no connection"))?;
                self.conn = Some(conn.start_tls(self.handshake_timeout)?);
                self.port.session_mut().tls_started(Instant::now())
            }
            Event::PeerCommand(Command::Put { hash }) if hash == ContentHash::hello() => {
                // Keep the hello file, as ciyam_client does, also from the opening hello
                // exchange (where the machine only echoes it back, checked). Its bytes are
                // built in; any other `put` of it would be stored the same way.
                if !self.store_has(hash) {
                    self.store_item(hash, HELLO_ITEM);
                }
                Ok(())
            }
            Event::Closed(reason) => {
                self.closed = Some(reason);
                Ok(())
            }
            Event::PeerCommand(_) | Event::Reply { .. } => Ok(()),
        };
        match answered {
            Ok(()) | Err(SessionError::Closed) => {}
            Err(e) => bail!("peer-protocol session: {e}"),
        }
        self.port.process(Instant::now());
        Ok(())
    }

    /// Reads lines until one is a command, runs `~` lines, and issues the command. End of
    /// input sends `bye`.
    fn next_command(&mut self) -> Result<()> {
        loop {
            let Some(line) = self.source.next_line(PROMPT) else {
                return self.send(Command::Bye);
            };
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(local) = line.strip_prefix('~') {
                let mut out = std::io::stdout().lock();
                if let Err(e) = local::run(self.store, local, &mut out) {
                    drop(out);
                    eprintln!("kith: ~{}: {e}", local.trim());
                } else {
                    out.flush()?;
                }
                continue;
            }
            let cmd = match Command::parse(line) {
                Ok(cmd) => cmd,
                Err(e) => return self.refuse(e.to_string()),
            };
            if let Command::Put { hash } = &cmd {
                let allowed = self.port.session().state().allows(CommandKind::Put);
                if allowed && self.read_item(*hash).is_none() {
                    eprintln!("kith: put {hash}: not in the local store");
                    continue;
                }
            }
            return self.send(cmd);
        }
    }

    fn send(&mut self, cmd: Command) -> Result<()> {
        match self.port.session_mut().send_command(Instant::now(), cmd) {
            Ok(()) => {
                self.port.process(Instant::now());
                Ok(())
            }
            Err(SessionError::Refused(text)) => self.refuse(text),
            Err(e) => bail!("peer-protocol session: {e}"),
        }
    }

    /// A command the peer would refuse: print the `(error)` line it would send and end the
    /// session, as the peer would.
    fn refuse(&mut self, text: String) -> Result<()> {
        println!("{}", Reply::Error(text.clone()));
        self.refused = Some(text);
        match self
            .port
            .session_mut()
            .send_command(Instant::now(), Command::Bye)
        {
            Ok(()) | Err(SessionError::Closed) => {}
            Err(e) => bail!("peer-protocol session: {e}"),
        }
        self.port.process(Instant::now());
        Ok(())
    }

    /// One read from the peer, bounded by the session's deadline.
    fn read_peer(&mut self) -> Result<()> {
        let now = Instant::now();
        let deadline = self.port.poll_timeout();
        if deadline.is_some_and(|d| now >= d) {
            self.port.handle_timeout(now);
            return Ok(());
        }
        let wait = deadline.map_or(IDLE_WAIT, |d| d.saturating_duration_since(now));
        let room = MAX_AHEAD.saturating_sub(self.port.buffered()).max(1);
        let mut buf = vec![0u8; room.min(64 * 1024)];
        let conn = self.conn()?;
        conn.set_read_timeout(wait)
            .context("connection to the peer lost")?;
        match conn.read(&mut buf) {
            Ok(0) => bail!("the peer closed the connection"),
            Ok(n) => self.port.handle_bytes(Instant::now(), &buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                self.port.handle_timeout(Instant::now());
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                bail!("the peer closed the connection")
            }
            Err(e) => return Err(e).context("connection to the peer lost"),
        }
        Ok(())
    }

    // ----- the local store -----

    fn store_has(&self, hash: ContentHash) -> bool {
        self.store.blobs().contains(&hash).unwrap_or(false)
    }

    /// The local item (type byte first); the hello file is built in.
    fn read_item(&self, hash: ContentHash) -> Option<Bytes> {
        match self.store.blobs().get_item(&hash) {
            Ok(item) => {
                let mut bytes = Vec::with_capacity(item.content.len() + 1);
                bytes.push(item.item_type.byte());
                bytes.extend_from_slice(&item.content);
                Some(bytes.into())
            }
            Err(_) if hash == ContentHash::hello() => Some(Bytes::from_static(HELLO_ITEM)),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => {
                eprintln!("kith: {e}");
                None
            }
        }
    }

    /// Stores a received item durably; false (with the reason on stderr) when it could not be.
    fn store_item(&mut self, hash: ContentHash, item: &[u8]) -> bool {
        let stored = (|| {
            let (&type_byte, content) = item.split_first().ok_or_else(|| anyhow!("empty item"))?;
            let item_type = ItemType::from_byte(type_byte)?;
            let got = self.store.blobs().put_item(item_type, content)?;
            if got.0 != hash.0 {
                // Flags the store leaves out of the address (encrypted, compressed): not an
                // item kith can keep under the name the peer used.
                let _ = self.store.blobs().remove_item(&got);
                bail!("the store names it {got}");
            }
            Ok(())
        })();
        match stored {
            Ok(()) => true,
            Err(e) => {
                eprintln!("kith: cannot store {hash}: {e}");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kith_proto::files::Target;

    #[test]
    fn display_shows_replies_and_peer_commands_only() {
        let h = ContentHash::hello();
        let chk = Command::Chk {
            target: Target::Tag("hello".into()),
            nonce: None,
        };
        let pip = Command::Pip {
            addr: "127.0.0.1".into(),
        };
        let cases: Vec<(Event, Vec<&str>)> = vec![
            (
                Event::Reply {
                    to: chk,
                    reply: Reply::NotFound,
                },
                vec!["(not found)"],
            ),
            (
                Event::PeerCommand(Command::Put { hash: h }),
                vec!["put cceeb7a985ecc3dabcb4c8f666cd637f16f008e3c963db6aa6f83a7b288c54ef"],
            ),
            (
                Event::Reply {
                    to: pip.clone(),
                    reply: Reply::Line("127.0.0.1".into()),
                },
                vec!["127.0.0.1"],
            ),
            (Event::PeerCommand(pip), vec!["pip 127.0.0.1"]),
            (
                Event::Reply {
                    to: Command::Help,
                    reply: Reply::Help("commands:\n=========\nbye (terminate session)".into()),
                },
                vec!["commands:", "=========", "bye (terminate session)"],
            ),
            (
                Event::Closed(CloseReason::PeerError("invalid state for get".into())),
                vec!["(error)invalid state for get"],
            ),
            (Event::Ready, vec![]),
            (Event::HaveItem { hash: h }, vec![]),
            (Event::ReadItem { hash: h }, vec![]),
            (
                Event::StoreItem {
                    hash: h,
                    item: Bytes::from_static(HELLO_ITEM),
                },
                vec![],
            ),
            (Event::PipAddress, vec![]),
            (Event::StartTls, vec![]),
            (Event::Closed(CloseReason::Bye { by_peer: true }), vec![]),
            (Event::Closed(CloseReason::Timeout), vec![]),
        ];
        for (event, want) in cases {
            assert_eq!(display(&event), want, "{event:?}");
        }
    }
}
