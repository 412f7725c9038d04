//! Property tests: no input makes the machine or the text port panic or buffer without bound.

use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;

use super::driver::*;
use crate::files::text::MAX_CHUNK_CHARS;
use crate::files::*;

fn line_strategy() -> impl Strategy<Value = String> {
    let h = hello().to_string();
    prop_oneof![
        Just("chk hello".to_string()),
        Just(format!("chk {h}")),
        Just(format!("chk {h} n")),
        Just(format!("get {h}")),
        Just(format!("put {h}")),
        Just("pip 1.2.3.4".to_string()),
        Just("tls".to_string()),
        Just("?".to_string()),
        Just("bye".to_string()),
        Just("(okay)".to_string()),
        Just("(not found)".to_string()),
        Just("6:8.b64!01aGVsbG8=".to_string()),
        Just(h.clone()),
        "[ -~]{0,40}",
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Line(String),
    Item(Vec<u8>),
    Hello,
    Skipped,
    Have(bool),
    Tag(bool),
    Supply(Option<Vec<u8>>),
    SupplyHello,
    Stored(bool),
    Pip,
    Choose(u8),
    Send(u8),
    Tls,
    Timeout(u8),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        line_strategy().prop_map(Op::Line),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(Op::Item),
        Just(Op::Hello),
        Just(Op::Skipped),
        any::<bool>().prop_map(Op::Have),
        any::<bool>().prop_map(Op::Tag),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)).prop_map(Op::Supply),
        Just(Op::SupplyHello),
        any::<bool>().prop_map(Op::Stored),
        Just(Op::Pip),
        any::<u8>().prop_map(Op::Choose),
        any::<u8>().prop_map(Op::Send),
        Just(Op::Tls),
        any::<u8>().prop_map(Op::Timeout),
    ]
}

fn some_command(n: u8) -> Command {
    let hash = hello();
    match n % 8 {
        0 => Command::Chk {
            target: Target::Hash(hash),
            nonce: None,
        },
        1 => Command::Chk {
            target: Target::Tag("hello".into()),
            nonce: Some("n".into()),
        },
        2 => Command::Get { hash },
        3 => Command::Put { hash },
        4 => Command::Pip {
            addr: "a.key".into(),
        },
        5 => Command::Tls,
        6 => Command::Help,
        _ => Command::Bye,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_call_sequences_never_panic(
        responder in any::<bool>(),
        ops in proptest::collection::vec(op_strategy(), 0..40),
    ) {
        let start = Instant::now();
        let mut now = start;
        let role = if responder { Role::Responder } else { Role::Initiator };
        let mut s = Session::new(role, SessionConfig::interactive(&limits()), now);
        for op in ops {
            let _ = match op {
                Op::Line(l) => s.handle_input(now, Input::Line(l)),
                Op::Item(i) => s.handle_input(now, Input::Item(Bytes::from(i))),
                Op::Hello => s.handle_input(now, Input::Item(HELLO_ITEM.into())),
                Op::Skipped => s.handle_input(now, Input::ItemSkipped),
                Op::Have(b) => s.answer_have(now, b),
                Op::Tag(b) => s.answer_tag(now, b.then(hello)),
                Op::Supply(i) => s.supply_item(now, i.map(Bytes::from)),
                Op::SupplyHello => s.supply_item(now, Some(HELLO_ITEM.into())),
                Op::Stored(b) => s.stored(now, b),
                Op::Pip => s.answer_pip(now, "127.0.0.1"),
                Op::Choose(n) => s.answer_command(now, some_command(n)),
                Op::Send(n) => s.send_command(now, some_command(n)),
                Op::Tls => s.tls_started(now),
                Op::Timeout(secs) => {
                    now += Duration::from_secs(u64::from(secs) / 4);
                    s.handle_timeout(now);
                    Ok(())
                }
            };
            while s.poll_transmit().is_some() {}
            while s.poll_event().is_some() {}
            if s.is_closed() {
                prop_assert_eq!(s.state(), State::Invalid);
                prop_assert_eq!(s.wants(), Wants::Nothing);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_into_the_text_port_never_panic(
        responder_side in any::<bool>(),
        prefix in proptest::collection::vec(line_strategy(), 0..6),
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..12),
    ) {
        let now = Instant::now();
        let mut d = Driver::new();
        let mut port = if responder_side { responder(now) } else { initiator(now) };
        if !responder_side {
            let chk = Command::Chk { target: Target::Tag("hello".into()), nonce: None };
            port.session_mut().send_command(now, chk).unwrap();
            port.process(now);
        }
        let mut bytes = Vec::new();
        for l in prefix {
            bytes.extend_from_slice(l.as_bytes());
            bytes.extend_from_slice(b"\r\n");
        }
        let mut reads: Vec<Vec<u8>> = vec![bytes];
        reads.extend(chunks);
        for read in reads {
            port.handle_bytes(now, &read);
            d.settle_text(&mut port, now);
            while port.poll_transmit().is_some() {}
            prop_assert!(port.buffered() <= MAX_CHUNK_CHARS + 2 + read.len());
        }
    }
}
