//! How a responder chooses its own command each turn.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::command::{Command, CommandKind, Target};
use super::hash::ContentHash;
use super::state::State;
use super::types::TurnContext;

/// Chooses the responder's own command after each of the initiator's turns (the answer to
/// [`super::Event::ChooseCommand`]) and the address offered for `pip` (the answer to
/// [`super::Event::PipAddress`]).
pub trait Policy {
    /// The command for this turn. It must be allowed by `ctx.state` (`get` in WG/WGP, `put`
    /// in WP/WGP, `chk` and `pip` always).
    fn choose(&mut self, ctx: &TurnContext) -> Command;
    /// The address to offer or answer for `pip`.
    fn pip_address(&mut self) -> String;
}

/// The reference's rule on its interactive test port, which only ever moves the hello file.
///
/// The reference keeps two counters. While the initiator has `put` a file we hold (its "prior
/// put"), each turn first counts towards `chk`: every 5th such count issues
/// `chk <prior put> <nonce>`. Otherwise the turn counts towards `pip`: every 3rd issues
/// `pip <address>`. Otherwise it `get`s the hello file in WG (after the initiator's `put`) and
/// `put`s it in WP (after its `get`), so after a `pip` it repeats what followed the transfer
/// before it. In seed session 1 the turns go put→get, get→put, put→pip, pip→get. Because the
/// `pip` count skips the `chk` turns, once the initiator has `put` something `chk` comes on turns
/// 5, 10, 15, … and `pip` on turns 3, 7, 11, 14, 18, … (the spec's words "every 3rd turn" are
/// the reference's counter, which this follows).
#[derive(Debug)]
pub struct InteractiveTestPolicy {
    chk_count: u32,
    pip_count: u32,
    peers: Vec<String>,
    rng: StdRng,
}

impl InteractiveTestPolicy {
    /// A policy whose nonces and address choices come from `seed`; `peers` are the other
    /// peers' addresses on the listener (`127.0.0.1` is offered when there are none).
    pub fn new(seed: u64, peers: Vec<String>) -> InteractiveTestPolicy {
        InteractiveTestPolicy {
            chk_count: 0,
            pip_count: 0,
            peers,
            rng: StdRng::seed_from_u64(seed),
        }
    }
}

impl Policy for InteractiveTestPolicy {
    fn choose(&mut self, ctx: &TurnContext) -> Command {
        if let Some(prior) = ctx.prior_put {
            self.chk_count = self.chk_count.wrapping_add(1);
            if self.chk_count.is_multiple_of(5) {
                let nonce: [u8; 16] = self.rng.gen();
                let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
                return Command::Chk {
                    target: Target::Hash(prior),
                    nonce: Some(nonce),
                };
            }
        }
        self.pip_count = self.pip_count.wrapping_add(1);
        if self.pip_count.is_multiple_of(3) {
            return Command::Pip {
                addr: self.pip_address(),
            };
        }
        let hash = ContentHash::hello();
        match ctx.state {
            State::WaitingForPut => Command::Put { hash },
            State::WaitingForGetOrPut if ctx.last_peer_command == CommandKind::Get => {
                Command::Put { hash }
            }
            _ => Command::Get { hash },
        }
    }

    fn pip_address(&mut self) -> String {
        if self.peers.is_empty() {
            "127.0.0.1".to_string()
        } else {
            let i = self.rng.gen_range(0..self.peers.len());
            self.peers[i].clone()
        }
    }
}
