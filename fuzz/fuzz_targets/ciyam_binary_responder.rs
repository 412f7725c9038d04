//! Feeds arbitrary `ciyam` envelopes (as a linked peer's initiator would send them) to a
//! responder session over the binary port, answering its store questions from a small
//! in-memory store, as the node's responder does: it must never panic, never hold more than
//! the items it was given plus what it stored, and every envelope it sends must be a valid
//! `ciyam-r` envelope within the envelope cap.
#![no_main]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kith_crypto::address::ContentHash;
use kith_proto::files::binary::{EnvelopePort, REPLY_ENVELOPE_COMMAND};
use kith_proto::files::{
    Command, Event, Role, Session, SessionConfig, Target, HELLO_ITEM,
};
use kith_proto::wire::{Command as EnvelopeCommand, Envelope};
use kith_proto::Limits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let limits = Limits::default();
    let config = SessionConfig {
        alternate: false,
        max_item: 64 * 1024,
        ..SessionConfig::new(&limits)
    };
    let mut now = Instant::now();
    let mut port = EnvelopePort::new(Session::new(Role::Responder, config, now));
    let mut store: HashMap<ContentHash, Bytes> = HashMap::new();
    store.insert(ContentHash::of(HELLO_ITEM), Bytes::from_static(HELLO_ITEM));
    let command = EnvelopeCommand::new("ciyam").unwrap();
    // The input is a sequence of envelopes: a u16 length, then that many bytes of data.
    let mut rest = input;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let data = Bytes::copy_from_slice(&rest[2..2 + len]);
        rest = &rest[2 + len..];
        let envelope = Envelope::new(command.clone(), data);
        port.handle_envelope(now, &envelope);
        for _ in 0..64 {
            let Some(event) = port.poll_event() else {
                break;
            };
            let session = port.session_mut();
            let _ = match event {
                Event::ResolveTag { .. } => session.answer_tag(now, None),
                Event::HaveItem { hash } => session.answer_have(now, store.contains_key(&hash)),
                Event::ReadItem { hash } => session.supply_item(now, store.get(&hash).cloned()),
                Event::StoreItem { hash, item } => {
                    // The session hashed the item before asking: the address must match.
                    assert_eq!(ContentHash::of(&item), hash);
                    if store.len() < 64 {
                        store.insert(hash, item);
                    }
                    session.stored(now, true)
                }
                Event::ChooseCommand(_) => session.answer_command(
                    now,
                    Command::Chk {
                        target: Target::Hash(ContentHash::hello()),
                        nonce: None,
                    },
                ),
                Event::PipAddress => session.answer_pip(now, "127.0.0.1"),
                _ => Ok(()),
            };
            port.process(now);
        }
        while let Some(reply) = port.poll_transmit() {
            assert_eq!(reply.command.as_str(), REPLY_ENVELOPE_COMMAND);
            assert!(reply.data.len() <= limits.max_envelope_data as usize);
        }
        if port.is_finished() {
            break;
        }
        now += Duration::from_millis(10);
    }
    port.handle_timeout(now + Duration::from_secs(3600));
});
