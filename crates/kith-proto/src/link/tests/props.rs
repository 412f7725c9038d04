//! Properties: whatever the split of the byte streams and the interleaving of sends, pings
//! and `bye`s, every payload arrives once, in order, and both ends close in order.

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Op {
    /// Side 0 is the initiator, 1 the responder.
    Envelope(usize, usize),
    Json(usize, usize),
    Ping(usize),
    Retire(usize),
    /// Deliver up to this many in-flight bytes in one direction (from that side).
    Deliver(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    let side = 0usize..2;
    prop_oneof![
        4 => (side.clone(), prop_oneof![0usize..200, 60_000usize..140_000])
            .prop_map(|(s, n)| Op::Envelope(s, n)),
        2 => (side.clone(), 0usize..300).prop_map(|(s, n)| Op::Json(s, n)),
        1 => side.clone().prop_map(Op::Ping),
        1 => side.clone().prop_map(Op::Retire),
        6 => (side, 1usize..100_000).prop_map(|(s, n)| Op::Deliver(s, n)),
    ]
}

struct Side {
    m: LinkMachine,
    out: BytesMut,
    sent: Vec<Payload>,
    got: Vec<Payload>,
    end: Option<LinkEnd>,
}

impl Side {
    /// The driver: drain transmits, act on events as the calling contract says.
    fn drive(&mut self, now: Instant) {
        while let Some(e) = self.m.poll_event() {
            match e {
                Event::Payload(p) => self.got.push(p),
                Event::PeerDone => self.m.retire(now, ByeReason::Ack),
                Event::IdleTimeout => self.m.retire(now, ByeReason::Idle),
                Event::Ended(end) => {
                    assert!(self.end.is_none(), "two Ended");
                    self.end = Some(end);
                }
                Event::Confirmed | Event::Version(_) | Event::Pong { .. } => {}
            }
        }
        self.m.poll_transmit(&mut self.out);
    }

    fn send(&mut self, now: Instant, p: Payload) {
        match self.m.send(p.clone()) {
            Ok(()) => self.sent.push(p),
            Err(SendError::Closed) => {}
            Err(e) => panic!("{e}"),
        }
        self.drive(now);
    }
}

/// Moves up to `n` bytes from `from`'s output into `to`.
fn deliver(from: &mut Side, to: &mut Side, n: usize, now: Instant) {
    let n = n.min(from.out.len());
    let chunk = from.out.split_to(n);
    to.m.handle_bytes(now, &chunk);
    to.drive(now);
}

fn run(mode: Mode, ops: Vec<Op>, splits: Vec<usize>) {
    let now = Instant::now();
    let hs = handshake(&ident(1), &ident(2), mode, now, 99);
    let side = |link| Side {
        m: LinkMachine::new(link, LinkSettings::new(&limits()), now),
        out: BytesMut::new(),
        sent: Vec::new(),
        got: Vec::new(),
        end: None,
    };
    let mut s = [side(hs.init), side(hs.resp)];
    s.iter_mut().for_each(|x| x.drive(now));
    let mut counter = 0u32;
    for op in ops {
        counter += 1;
        match op {
            Op::Envelope(i, n) => {
                let mut data = counter.to_be_bytes().to_vec();
                data.resize(n.max(4), b'{');
                s[i].send(now, Payload::Envelope(env("chat", data)));
            }
            Op::Json(i, n) => {
                let json = format!(r#"{{"n":{counter},"pad":"{}"}}"#, "x".repeat(n));
                s[i].send(now, Payload::Json(json.into()));
            }
            Op::Ping(i) => {
                let _ = s[i].m.ping([counter as u8; 8]);
                s[i].drive(now);
            }
            Op::Retire(i) => {
                s[i].m.retire(now, ByeReason::Closing);
                s[i].drive(now);
            }
            Op::Deliver(i, n) => {
                let [a, b] = &mut s;
                let (from, to) = if i == 0 { (a, b) } else { (b, a) };
                deliver(from, to, n, now);
            }
        }
    }
    // Close: the initiator retires (if it has not), then everything is delivered in the
    // given splits until both ends are done.
    s[0].m.retire(now, ByeReason::Closing);
    s[0].drive(now);
    let mut split = splits.iter().cycle();
    let mut rounds = 0;
    while s[0].end.is_none() || s[1].end.is_none() {
        rounds += 1;
        assert!(rounds < 100_000, "no progress");
        let n = *split.next().unwrap_or(&1);
        let [a, b] = &mut s;
        deliver(a, b, n, now);
        deliver(b, a, n, now);
    }
    assert_eq!(s[0].end, Some(LinkEnd::Orderly));
    assert_eq!(s[1].end, Some(LinkEnd::Orderly));
    assert_eq!(s[1].got, s[0].sent, "initiator to responder");
    assert_eq!(s[0].got, s[1].sent, "responder to initiator");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_payload_arrives_once_in_order_whatever_the_splits(
        ops in proptest::collection::vec(op(), 0..40),
        splits in proptest::collection::vec(1usize..5_000, 1..8),
        raw in any::<bool>(),
    ) {
        run(if raw { Mode::Raw } else { Mode::Noise }, ops, splits);
    }
}
