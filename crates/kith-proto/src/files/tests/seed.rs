//! The seed's first interactive session, line for line.

use std::time::Instant;

use super::driver::*;
use crate::files::*;

const H: &str = "cceeb7a985ecc3dabcb4c8f666cd637f16f008e3c963db6aa6f83a7b288c54ef";
const HELLO_XFER: &str = "6:8.b64!01aGVsbG8=";

/// The seed's first session as `ciyam_client` shows it: each command typed, then the lines
/// the client displays (the `~rm` lines are local shell commands and never reach the peer).
fn seed_display() -> Vec<(String, Vec<String>)> {
    let put = format!("put {H}");
    let get = format!("get {H}");
    vec![
        ("chk hello".into(), vec!["(not found)".into(), put.clone()]),
        (put.clone(), vec![get.clone()]),
        (get.clone(), vec![put.clone()]),
        (put.clone(), vec!["pip 127.0.0.1".into()]),
        (
            "pip 127.0.0.1".into(),
            vec!["127.0.0.1".into(), get.clone()],
        ),
        ("bye".into(), vec![]),
    ]
}

/// What the client does not display: `(okay)` and transfer lines.
fn displayed(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| *l != "(okay)" && text::parse_header(l, 1_000_000).is_err())
        .cloned()
        .collect()
}

#[test]
fn seed_session_one_on_the_wire() {
    let now = Instant::now();
    let mut d = Driver::new();
    let mut r = responder(now);
    // What the initiator sends (its typed commands plus the client's automatic answers:
    // the hello echo, the items the responder `get`s, its `pip` answer), and exactly what the
    // responder writes back after each line.
    let script: Vec<(String, Vec<String>)> = vec![
        (
            "chk hello".into(),
            vec!["(not found)".into(), format!("put {H}"), HELLO_XFER.into()],
        ),
        (HELLO_XFER.into(), vec!["(okay)".into()]),
        (format!("put {H}"), vec![]),
        (HELLO_XFER.into(), vec![format!("get {H}")]),
        (HELLO_XFER.into(), vec!["(okay)".into()]),
        (
            format!("get {H}"),
            vec![
                HELLO_XFER.into(),
                format!("put {H}"),
                HELLO_XFER.into(),
                "(okay)".into(),
            ],
        ),
        (format!("put {H}"), vec![]),
        (HELLO_XFER.into(), vec!["pip 127.0.0.1".into()]),
        ("127.0.0.1".into(), vec!["(okay)".into()]),
        (
            "pip 127.0.0.1".into(),
            vec!["127.0.0.1".into(), format!("get {H}")],
        ),
        (HELLO_XFER.into(), vec!["(okay)".into()]),
        ("bye".into(), vec![]),
    ];
    let mut transcript = Vec::new();
    for (line, expected) in &script {
        let got = say(&mut r, &mut d, now, line);
        assert_eq!(&got, expected, "after initiator line {line:?}");
        transcript.push((line.clone(), got));
    }
    assert!(r.is_finished());
    assert_eq!(d.closed(), Some(&CloseReason::Bye { by_peer: true }));

    // Fold the transcript into what the client displays per typed command.
    let mut shown: Vec<(String, Vec<String>)> = Vec::new();
    for (line, out) in transcript {
        let is_command = Command::parse(&line).is_ok() && line != "127.0.0.1";
        let is_answer = line == "127.0.0.1" || line == HELLO_XFER;
        if is_command && !is_answer {
            shown.push((line, displayed(&out)));
        } else if let Some(last) = shown.last_mut() {
            last.1.extend(displayed(&out));
        }
    }
    assert_eq!(shown, seed_display());
}

#[test]
fn seed_session_one_between_two_kith_ends() {
    let now = Instant::now();
    let (mut dr, mut di) = (Driver::new(), Driver::new());
    let mut r = responder(now);
    let mut i = initiator(now);
    let h = hello();
    let cmds = [
        Command::Chk {
            target: Target::Tag("hello".into()),
            nonce: None,
        },
        Command::Put { hash: h },
        Command::Get { hash: h },
        Command::Put { hash: h },
        Command::Pip {
            addr: "127.0.0.1".into(),
        },
        Command::Bye,
    ];
    let mut peer_commands = Vec::new();
    for cmd in cmds {
        di.settle_text(&mut i, now);
        assert!(
            di.events.iter().rev().any(|e| *e == Event::Ready),
            "initiator should have the turn before {cmd}"
        );
        di.events.clear();
        i.session_mut().send_command(now, cmd).unwrap();
        i.process(now);
        shuttle(&mut i, &mut r, &mut di, &mut dr, now);
        peer_commands.extend(di.events.iter().filter_map(|e| match e {
            Event::PeerCommand(c) => Some(c.to_string()),
            _ => None,
        }));
    }
    assert_eq!(
        peer_commands,
        vec![
            format!("put {H}"),
            format!("get {H}"),
            format!("put {H}"),
            "pip 127.0.0.1".to_string(),
            format!("get {H}"),
        ]
    );
    assert!(i.is_finished() && r.is_finished());
    assert_eq!(dr.closed(), Some(&CloseReason::Bye { by_peer: true }));
}
