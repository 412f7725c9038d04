//! The state table, the hello exchange, and every refusal, on the responder and initiator.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::driver::*;
use crate::files::*;

fn h() -> String {
    hello().to_string()
}

/// A responder brought into `state` (and the time used).
fn responder_in(state: State) -> (TextPort, Driver, Instant) {
    let now = Instant::now();
    let mut d = Driver::new();
    let l = limits();
    let mut r = match state {
        State::WaitingForGetOrPut => responder_with(
            now,
            SessionConfig {
                alternate: false,
                ..SessionConfig::interactive(&l)
            },
        ),
        _ => responder(now),
    };
    match state {
        State::Fresh => {}
        State::AfterTls => assert_eq!(say(&mut r, &mut d, now, "tls"), ["(okay)"]),
        State::WaitingForGet | State::WaitingForGetOrPut => {
            assert_eq!(
                say(&mut r, &mut d, now, &format!("chk {}", h())),
                [h(), "(okay)".into()]
            )
        }
        State::WaitingForPut => {
            say(&mut r, &mut d, now, "chk hello");
            assert_eq!(say(&mut r, &mut d, now, "6:8.b64!01aGVsbG8="), ["(okay)"]);
        }
        State::Invalid => {
            say(&mut r, &mut d, now, "bye");
        }
    }
    assert_eq!(r.session().state(), state);
    d.events.clear();
    (r, d, now)
}

/// The spec table, written out independently of the code.
fn spec_allows(state: State, kind: CommandKind) -> bool {
    use CommandKind::*;
    use State::*;
    let row: &[CommandKind] = match state {
        Fresh => &[Chk, Tls, Bye, Help],
        AfterTls => &[Chk, Bye, Help],
        WaitingForGet => &[Chk, Get, Pip, Bye, Help],
        WaitingForPut => &[Chk, Put, Pip, Bye, Help],
        WaitingForGetOrPut => &[Chk, Get, Put, Pip, Bye, Help],
        Invalid => &[],
    };
    row.contains(&kind)
}

fn line_for(kind: CommandKind) -> String {
    match kind {
        CommandKind::Chk => format!("chk {}", h()),
        CommandKind::Get => format!("get {}", h()),
        CommandKind::Put => format!("put {}", h()),
        CommandKind::Pip => "pip 10.0.0.1".into(),
        CommandKind::Tls => "tls".into(),
        CommandKind::Bye => "bye".into(),
        CommandKind::Help => "?".into(),
    }
}

#[test]
fn state_table_matches_the_spec() {
    for state in State::ALL {
        for kind in CommandKind::ALL {
            assert_eq!(
                state.allows(kind),
                spec_allows(state, kind),
                "{state:?} {kind:?}"
            );
        }
    }
}

#[test]
fn every_transition_on_the_responder() {
    for state in State::ALL {
        for kind in CommandKind::ALL {
            let (mut r, mut d, now) = responder_in(state);
            let out = say(&mut r, &mut d, now, &line_for(kind));
            let refused = vec![format!("(error)invalid state for {}", kind.name())];
            if state == State::Invalid {
                assert!(out.is_empty() && r.is_finished());
            } else if !spec_allows(state, kind) {
                assert_eq!(out, refused, "{state:?} {kind:?}");
                assert!(r.is_finished());
                assert!(matches!(d.closed(), Some(CloseReason::Violation(_))));
            } else if kind == CommandKind::Bye {
                assert!(out.is_empty() && r.is_finished());
            } else {
                assert_ne!(out, refused, "{state:?} {kind:?}");
                assert!(
                    !out.iter().any(|l| l.starts_with("(error)")),
                    "{state:?} {kind:?}: {out:?}"
                );
            }
        }
    }
}

#[test]
fn transfers_alternate() {
    // WP: put → WG; then the initiator may not put again.
    let (mut r, mut d, now) = responder_in(State::WaitingForPut);
    say(&mut r, &mut d, now, &format!("put {}", h()));
    assert_eq!(
        say(&mut r, &mut d, now, "6:8.b64!01aGVsbG8="),
        [format!("get {}", h())]
    );
    assert_eq!(say(&mut r, &mut d, now, "6:8.b64!01aGVsbG8="), ["(okay)"]);
    assert_eq!(r.session().state(), State::WaitingForGet);
    assert_eq!(
        say(&mut r, &mut d, now, &format!("put {}", h())),
        ["(error)invalid state for put"]
    );
}

#[test]
fn responder_commands_are_checked_by_the_initiator() {
    let now = Instant::now();
    let l = limits();
    let mut s = Session::new(Role::Initiator, SessionConfig::interactive(&l), now);
    let mut d = Driver::new();
    d.settle(&mut s, now);
    assert_eq!(
        s.send_command(now, Command::Get { hash: hello() }),
        Err(SessionError::Refused("invalid state for get".into()))
    );
    s.send_command(
        now,
        Command::Chk {
            target: Target::Hash(hello()),
            nonce: None,
        },
    )
    .unwrap();
    s.handle_input(now, Input::Line(h())).unwrap();
    s.handle_input(now, Input::Line("(okay)".into())).unwrap();
    assert_eq!(s.state(), State::WaitingForGet);
    d.settle(&mut s, now);
    s.send_command(now, Command::Get { hash: hello() }).unwrap();
    s.handle_input(now, Input::Item(HELLO_ITEM.into())).unwrap();
    d.settle(&mut s, now);
    assert_eq!(s.state(), State::WaitingForPut);
    // The responder may `put` now, not `get`.
    while s.poll_transmit().is_some() {}
    s.handle_input(now, Input::Line(format!("get {}", h())))
        .unwrap();
    assert!(s.is_closed());
    assert_eq!(
        s.poll_transmit(),
        Some(Transmit::Reply(Reply::Error(
            "invalid state for get".into()
        )))
    );
}

#[test]
fn hello_exchange_mismatch_ends_the_session() {
    let (mut r, mut d, now) = responder_in(State::Fresh);
    say(&mut r, &mut d, now, "chk hello");
    // "hellp" instead of "hello".
    let out = say(&mut r, &mut d, now, "6:8.b64!01aGVsbHA=");
    assert_eq!(out.len(), 1);
    assert!(out[0].starts_with("(error)"));
    assert!(r.is_finished());
    assert!(d.stored.is_empty());
}

#[test]
fn initiator_echoes_the_hello() {
    let now = Instant::now();
    let l = limits();
    let mut s = Session::new(Role::Initiator, SessionConfig::interactive(&l), now);
    s.send_command(
        now,
        Command::Chk {
            target: Target::Tag("hello".into()),
            nonce: None,
        },
    )
    .unwrap();
    assert!(s.poll_transmit().is_some());
    for line in ["(not found)".to_string(), format!("put {}", h())] {
        s.handle_input(now, Input::Line(line)).unwrap();
    }
    s.handle_input(now, Input::Item(HELLO_ITEM.into())).unwrap();
    assert_eq!(
        s.poll_transmit(),
        Some(Transmit::Item {
            hash: hello(),
            item: HELLO_ITEM.into()
        })
    );
    s.handle_input(now, Input::Line("(okay)".into())).unwrap();
    assert_eq!(s.state(), State::WaitingForPut);
    // A responder that puts something else than the hello is refused.
    let mut s = Session::new(Role::Initiator, SessionConfig::interactive(&l), now);
    s.send_command(
        now,
        Command::Chk {
            target: Target::Tag("hello".into()),
            nonce: None,
        },
    )
    .unwrap();
    s.handle_input(now, Input::Line("(not found)".into()))
        .unwrap();
    s.handle_input(now, Input::Line(format!("put {}", "ab".repeat(32))))
        .unwrap();
    assert!(s.is_closed());
}

#[test]
fn help_once_then_bye() {
    let (mut r, mut d, now) = responder_in(State::Fresh);
    let out = say(&mut r, &mut d, now, "?");
    assert_eq!(out.first().map(String::as_str), Some("commands:"));
    assert_eq!(out.last().map(String::as_str), Some("(okay)"));
    assert_eq!(out.len(), HELP_TEXT.lines().count() + 1);
    assert!(!r.is_finished());
    assert!(say(&mut r, &mut d, now, "help").is_empty());
    assert!(r.is_finished());
    assert_eq!(d.closed(), Some(&CloseReason::Bye { by_peer: true }));
}

#[test]
fn key_arguments_are_refused() {
    for line in ["chk my.key", "chk bc.x.key", &format!("chk {} a.key", h())] {
        let (mut r, mut d, now) = responder_in(State::Fresh);
        let out = say(&mut r, &mut d, now, line);
        assert_eq!(out.len(), 1, "{line}");
        assert!(
            out[0].starts_with("(error)invalid suspicious argument"),
            "{out:?}"
        );
    }
    let (mut r, mut d, now) = responder_in(State::WaitingForGet);
    let out = say(&mut r, &mut d, now, "pip x.key");
    assert!(out[0].starts_with("(error)invalid suspicious argument"));
}

#[test]
fn tags_need_the_blockchain_prefix_outside_interactive_testing() {
    let now = Instant::now();
    let l = limits();
    let mut d = Driver::new();
    let mut r = responder_with(now, SessionConfig::new(&l));
    assert_eq!(
        say(&mut r, &mut d, now, "chk hello"),
        ["(error)invalid non-blockchain prefixed tag"]
    );
    let mut r = responder_with(now, SessionConfig::new(&l));
    let out = say(&mut r, &mut d, now, "chk bc.da667b8c4");
    assert_eq!(out[0], "(not found)");
    // A tag that resolves is answered with its hash.
    let mut d = Driver::new();
    d.tags.insert("bc.x".into(), hello());
    let mut r = responder_with(now, SessionConfig::new(&l));
    assert_eq!(say(&mut r, &mut d, now, "chk bc.x"), [h(), "(okay)".into()]);
    // Interactive testing accepts a bare tag.
    let (mut r, mut d, now) = responder_in(State::Fresh);
    assert_eq!(say(&mut r, &mut d, now, "chk hello")[0], "(not found)");
}

#[test]
fn nonce_answers() {
    let expected = {
        let mut s = Sha256::new();
        s.update(b"n0nce");
        s.update(b"\x01hello");
        hex::encode(s.finalize())
    };
    let (mut r, mut d, now) = responder_in(State::Fresh);
    assert_eq!(
        say(&mut r, &mut d, now, &format!("chk {} n0nce", h())),
        [expected.clone(), "(okay)".into()]
    );
    // Later in the session too, followed by the responder's own command.
    let (mut r, mut d, now) = responder_in(State::WaitingForGet);
    let out = say(&mut r, &mut d, now, &format!("chk {} n0nce", h()));
    assert_eq!(out[0], expected);
    // Not held: not found.
    let (mut r, mut d, now) = responder_in(State::WaitingForGet);
    let out = say(
        &mut r,
        &mut d,
        now,
        &format!("chk {} n0nce", "ab".repeat(32)),
    );
    assert_eq!(out[0], "(not found)");
}

#[test]
fn responder_checks_the_nonce_answer_it_gets() {
    let now = Instant::now();
    let l = limits();
    let mut s = Session::new(Role::Responder, SessionConfig::interactive(&l), now);
    let mut d = Driver::new();
    for line in [format!("chk {}", h()), format!("get {}", h())] {
        s.handle_input(now, Input::Line(line)).unwrap();
        while let Some(ev) = s.poll_event() {
            if let Event::ChooseCommand(_) = ev {
                let cmd = Command::Chk {
                    target: Target::Hash(hello()),
                    nonce: Some("x".into()),
                };
                s.answer_command(now, cmd).unwrap();
            } else {
                d.answer(&mut s, now, ev);
            }
        }
    }
    while s.poll_transmit().is_some() {}
    s.handle_input(now, Input::Line("ab".repeat(32))).unwrap();
    assert!(s.is_closed());
    match s.poll_transmit() {
        Some(Transmit::Reply(Reply::Error(t))) => {
            assert!(t.starts_with("unexpected invalid chk response"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn corrupt_item_is_refused_and_nothing_is_stored() {
    let (mut r, mut d, now) = responder_in(State::WaitingForPut);
    let claimed = ContentHash::of(b"\x01other");
    assert!(say(&mut r, &mut d, now, &format!("put {claimed}")).is_empty());
    let out = say(&mut r, &mut d, now, &text::encode_header(b"\x01bogus"));
    assert_eq!(
        out,
        [format!("(error)file content does not match hash {claimed}")]
    );
    assert!(d.stored.is_empty());
    assert!(!d
        .events
        .iter()
        .any(|e| matches!(e, Event::StoreItem { .. })));
}

#[test]
fn put_is_stored_before_the_turn_moves_on() {
    let (mut r, mut d, now) = responder_in(State::WaitingForPut);
    let item = b"\x01new content".to_vec();
    let hash = ContentHash::of(&item);
    say(&mut r, &mut d, now, &format!("put {hash}"));
    let out = say(&mut r, &mut d, now, &text::encode_header(&item));
    assert_eq!(d.stored, [hash]);
    assert_eq!(out, [format!("get {}", h())]);
}

#[test]
fn store_failure_and_missing_files_end_the_session() {
    let (mut r, mut d, now) = responder_in(State::WaitingForPut);
    d.store_ok = false;
    let item = b"\x01x".to_vec();
    say(
        &mut r,
        &mut d,
        now,
        &format!("put {}", ContentHash::of(&item)),
    );
    let out = say(&mut r, &mut d, now, &text::encode_header(&item));
    assert!(out[0].ends_with("could not be stored"), "{out:?}");
    let (mut r, mut d, now) = responder_in(State::WaitingForGet);
    let missing = "ab".repeat(32);
    assert_eq!(
        say(&mut r, &mut d, now, &format!("get {missing}")),
        [format!("(error)file '{missing}' was not found")]
    );
}

#[test]
fn unknown_and_malformed_commands() {
    let (mut r, mut d, now) = responder_in(State::Fresh);
    assert_eq!(
        say(&mut r, &mut d, now, "foo bar"),
        ["(error)unknown command 'foo'"]
    );
    let (mut r, mut d, now) = responder_in(State::WaitingForGet);
    assert_eq!(
        say(&mut r, &mut d, now, "get hello"),
        ["(error)invalid command usage 'get hello'"]
    );
    let (mut r, mut d, now) = responder_in(State::Fresh);
    let long = format!("chk {}", "a".repeat(600));
    let out = say(&mut r, &mut d, now, &long);
    assert!(out[0].starts_with("(error)line too long"), "{out:?}");
}

#[test]
fn timeouts() {
    let (mut r, mut d, now) = responder_in(State::Fresh);
    let deadline = r.poll_timeout().unwrap();
    assert_eq!(deadline, now + Duration::from_secs(30));
    r.handle_timeout(now + Duration::from_secs(29));
    assert!(!r.is_finished());
    r.handle_timeout(deadline);
    d.settle_text(&mut r, deadline);
    assert_eq!(d.closed(), Some(&CloseReason::Timeout));
    // Waiting for an item: 25 s.
    let (mut r, mut d, now) = responder_in(State::WaitingForPut);
    say(&mut r, &mut d, now, &format!("put {}", h()));
    assert_eq!(r.poll_timeout(), Some(now + Duration::from_secs(25)));
    // Waiting for our own driver: no deadline.
    let now = Instant::now();
    let mut s = Session::new(Role::Responder, SessionConfig::interactive(&limits()), now);
    s.handle_input(now, Input::Line(format!("chk {}", h())))
        .unwrap();
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn interactive_policy_counts_turns_like_the_reference() {
    let mut p = InteractiveTestPolicy::new(1, Vec::new());
    let mut kinds = Vec::new();
    for turn in 1..=11u32 {
        let state = if turn % 2 == 1 {
            State::WaitingForGet
        } else {
            State::WaitingForPut
        };
        let ctx = TurnContext {
            turn,
            state,
            last_peer_command: CommandKind::Put,
            prior_put: Some(hello()),
        };
        kinds.push(p.choose(&ctx).kind());
    }
    use CommandKind::*;
    assert_eq!(
        kinds,
        [Get, Put, Pip, Put, Chk, Put, Pip, Put, Get, Chk, Pip]
    );
}

#[test]
fn driver_misuse_is_an_error_not_a_panic() {
    let now = Instant::now();
    let l = limits();
    let mut s = Session::new(Role::Responder, SessionConfig::interactive(&l), now);
    assert_eq!(s.answer_have(now, true), Err(SessionError::NoQuestion));
    assert_eq!(s.stored(now, true), Err(SessionError::NoQuestion));
    assert_eq!(
        s.send_command(now, Command::Bye),
        Err(SessionError::NotOurTurn)
    );
    assert_eq!(s.handle_input(now, Input::ItemSkipped).ok(), Some(()));
    assert!(s.is_closed());
    assert_eq!(
        s.handle_input(now, Input::Line("bye".into())),
        Err(SessionError::Closed)
    );
}
