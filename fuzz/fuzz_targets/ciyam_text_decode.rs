//! Feeds arbitrary bytes, in arbitrary splits, to a CIYAM text peer port (either end) whose
//! driver answers every question: it must never panic, and its input buffer must stay within
//! one line of the longest kind plus the last read.
#![no_main]

use std::time::Instant;

use kith_proto::files::{
    text::MAX_CHUNK_CHARS, Command, Event, InteractiveTestPolicy, ContentHash, Policy, Role, Session,
    SessionConfig, Target, TextPort, HELLO_ITEM,
};
use kith_proto::Limits;
use libfuzzer_sys::fuzz_target;

fn answer(port: &mut TextPort, policy: &mut InteractiveTestPolicy, now: Instant) {
    while let Some(ev) = port.poll_event() {
        let s = port.session_mut();
        let _ = match ev {
            Event::ResolveTag { .. } => s.answer_tag(now, None),
            Event::HaveItem { hash } => s.answer_have(now, hash == ContentHash::hello()),
            Event::ReadItem { hash } => {
                s.supply_item(now, (hash == ContentHash::hello()).then(|| HELLO_ITEM.into()))
            }
            Event::StoreItem { .. } => s.stored(now, true),
            Event::PipAddress => s.answer_pip(now, "127.0.0.1"),
            Event::ChooseCommand(ctx) => s.answer_command(now, policy.choose(&ctx)),
            Event::StartTls => s.tls_started(now),
            _ => Ok(()),
        };
        port.process(now);
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&control, rest)) = input.split_first() else {
        return;
    };
    let now = Instant::now();
    let limits = Limits::default();
    let role = if control & 1 == 0 {
        Role::Responder
    } else {
        Role::Initiator
    };
    let step = usize::from(control >> 1).max(1);
    let mut port = TextPort::new(
        Session::new(role, SessionConfig::interactive(&limits), now),
        &limits,
    );
    if role == Role::Initiator {
        let chk = Command::Chk {
            target: Target::Tag("hello".into()),
            nonce: None,
        };
        let _ = port.session_mut().send_command(now, chk);
        port.process(now);
    }
    let mut policy = InteractiveTestPolicy::new(0, Vec::new());
    for read in rest.chunks(step) {
        port.handle_bytes(now, read);
        answer(&mut port, &mut policy, now);
        while port.poll_transmit().is_some() {}
        assert!(port.buffered() <= MAX_CHUNK_CHARS + 2 + read.len());
    }
});
