//! A fake node: an in-memory store and a policy answering the session's questions.

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;

use crate::files::*;
use crate::Limits;

pub(super) fn hello() -> ContentHash {
    ContentHash::hello()
}

pub(super) struct Driver {
    pub items: HashMap<ContentHash, Bytes>,
    pub tags: HashMap<String, ContentHash>,
    pub policy: InteractiveTestPolicy,
    pub store_ok: bool,
    pub events: Vec<Event>,
    pub stored: Vec<ContentHash>,
    pub pip: String,
}

impl Driver {
    pub(super) fn new() -> Driver {
        let mut items = HashMap::new();
        items.insert(hello(), Bytes::from_static(HELLO_ITEM));
        Driver {
            items,
            tags: HashMap::new(),
            policy: InteractiveTestPolicy::new(7, Vec::new()),
            store_ok: true,
            events: Vec::new(),
            stored: Vec::new(),
            pip: "127.0.0.1".into(),
        }
    }

    pub(super) fn with_item(mut self, item: &[u8]) -> Driver {
        self.items
            .insert(ContentHash::of(item), Bytes::copy_from_slice(item));
        self
    }

    /// Answers one question (ignores informational events); records every event.
    pub(super) fn answer(&mut self, s: &mut Session, now: Instant, ev: Event) {
        if s.is_closed() {
            self.events.push(ev);
            return;
        }
        match &ev {
            Event::ResolveTag { tag } => {
                s.answer_tag(now, self.tags.get(tag).copied()).unwrap();
            }
            Event::HaveItem { hash } => s.answer_have(now, self.items.contains_key(hash)).unwrap(),
            Event::ReadItem { hash } => s.supply_item(now, self.items.get(hash).cloned()).unwrap(),
            Event::StoreItem { hash, item } => {
                if self.store_ok {
                    self.items.insert(*hash, item.clone());
                    self.stored.push(*hash);
                }
                s.stored(now, self.store_ok).unwrap();
            }
            Event::PipAddress => s.answer_pip(now, &self.pip.clone()).unwrap(),
            Event::ChooseCommand(ctx) => {
                let cmd = self.policy.choose(ctx);
                s.answer_command(now, cmd).unwrap();
            }
            Event::StartTls => s.tls_started(now).unwrap(),
            _ => {}
        }
        self.events.push(ev);
    }

    pub(super) fn settle_text(&mut self, port: &mut TextPort, now: Instant) {
        while let Some(ev) = port.poll_event() {
            self.answer(port.session_mut(), now, ev);
            port.process(now);
        }
    }

    pub(super) fn settle_env(&mut self, port: &mut EnvelopePort, now: Instant) {
        while let Some(ev) = port.poll_event() {
            self.answer(port.session_mut(), now, ev);
            port.process(now);
        }
    }

    pub(super) fn settle(&mut self, s: &mut Session, now: Instant) {
        while let Some(ev) = s.poll_event() {
            self.answer(s, now, ev);
        }
    }

    pub(super) fn closed(&self) -> Option<&CloseReason> {
        self.events.iter().find_map(|e| match e {
            Event::Closed(r) => Some(r),
            _ => None,
        })
    }
}

pub(super) fn limits() -> Limits {
    Limits::default()
}

pub(super) fn responder(now: Instant) -> TextPort {
    let l = limits();
    TextPort::new(
        Session::new(Role::Responder, SessionConfig::interactive(&l), now),
        &l,
    )
}

pub(super) fn initiator(now: Instant) -> TextPort {
    let l = limits();
    TextPort::new(
        Session::new(Role::Initiator, SessionConfig::interactive(&l), now),
        &l,
    )
}

/// Everything the port has to write, as text.
pub(super) fn drain(port: &mut TextPort) -> String {
    let mut out = Vec::new();
    while let Some(b) = port.poll_transmit() {
        out.extend_from_slice(&b);
    }
    String::from_utf8(out).unwrap()
}

/// Lines of CRLF text (the last, empty piece dropped).
pub(super) fn lines(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text.split("\r\n").map(str::to_string).collect();
    if v.last().is_some_and(|l| l.is_empty()) {
        v.pop();
    }
    v
}

/// Feeds `line` + CRLF to a responder port, answers its questions, returns what it wrote.
pub(super) fn say(port: &mut TextPort, d: &mut Driver, now: Instant, line: &str) -> Vec<String> {
    port.handle_bytes(now, format!("{line}\r\n").as_bytes());
    d.settle_text(port, now);
    lines(&drain(port))
}

/// Moves bytes between two text ports (answering both drivers) until both are quiet.
pub(super) fn shuttle(
    i: &mut TextPort,
    r: &mut TextPort,
    di: &mut Driver,
    dr: &mut Driver,
    now: Instant,
) {
    loop {
        di.settle_text(i, now);
        dr.settle_text(r, now);
        let a = drain(i);
        let b = drain(r);
        if a.is_empty() && b.is_empty() {
            break;
        }
        r.handle_bytes(now, a.as_bytes());
        i.handle_bytes(now, b.as_bytes());
    }
}

/// A responder with its own configuration.
pub(super) fn responder_with(now: Instant, config: SessionConfig) -> TextPort {
    TextPort::new(Session::new(Role::Responder, config, now), &limits())
}
