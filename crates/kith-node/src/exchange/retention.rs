//! One proof-of-retention check over a link: an initiator session that opens with
//! `chk ITEM NONCE` and ends with `bye` (`../shared/spec/ciyam-peer.md`).
//!
//! The item asked about is one of the file's items picked at random along a path from the
//! root down to a chunk (for a single-item file, the file itself), so that over many checks a
//! peer that kept only the file's list item, or only its first chunk, is caught. The nonce is
//! fresh (16 bytes from the OS, as 32 hex digits), so an answer cannot be kept from an earlier
//! check; the answer we expect is computed here from our own copy before the session opens.
//!
//! The opening `chk` is answered before any turn-taking, so the session machine hands its
//! reply to us without judging it; [`Conversation`] (no I/O: the unit tests drive it with a
//! scripted peer) judges it:
//! - the expected hash: passed;
//! - `(not found)`, another hash or any other reply, an `(error)` line, a protocol violation,
//!   or the peer ending the session before answering: failed, with the reason;
//! - the link going down, the peer not answering in time, or our own trouble (busy slot, store
//!   error): inconclusive, which says nothing about the file.
//!
//! After a `(not found)` the responder runs the hello exchange, which the session machine
//! completes by itself; we then say `bye` on our first turn.

use super::answer;
use super::turns::describe;
use super::{
    Exchange, ExchangeError, InitiatorSession, NodePolicy, COLLISION_BACKOFF, OPENING_RETRIES,
};
use crate::clock::mono_now;
use bytes::Bytes;
use kith_crypto::identity::AgentId;
use kith_proto::files::{CloseReason, Command, Event, Policy, Reply, Target};
use kith_store::meta::CheckResult;
use kith_store::tree::{parse_list, MAX_TREE_DEPTH};
use kith_store::{ContentHash, ItemKind};
use rand::{Rng, RngCore};

/// Where a check's conversation is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Conversation {
    item: ContentHash,
    nonce: String,
    expected: String,
    verdict: Option<CheckResult>,
    asked: bool,
}

impl Conversation {
    /// A check of `item`, whose local copy (type byte first) is `local`, with `nonce`.
    pub(crate) fn new(item: ContentHash, nonce: String, local: &[u8]) -> Conversation {
        Conversation {
            expected: kith_proto::files::nonce_answer(&nonce, local),
            item,
            nonce,
            verdict: None,
            asked: false,
        }
    }

    /// Our command on our turn: the `chk` first, `bye` once it is answered.
    pub(crate) fn on_ready(&mut self) -> Command {
        if self.asked {
            return Command::Bye;
        }
        self.asked = true;
        Command::Chk {
            target: Target::Hash(self.item),
            nonce: Some(self.nonce.clone()),
        }
    }

    /// The peer's reply to our `chk`.
    pub(crate) fn on_reply(&mut self, reply: &Reply) {
        if self.verdict.is_some() {
            return;
        }
        self.verdict = Some(match reply {
            Reply::Hash(answer) if *answer == self.expected => CheckResult::Passed,
            Reply::Hash(answer) => {
                CheckResult::Failed(format!("wrong answer for {}: {answer}", self.item))
            }
            Reply::NotFound => CheckResult::Failed(format!("{} (not found)", self.item)),
            other => CheckResult::Failed(format!("unexpected reply to chk: {other:?}")),
        });
    }

    /// The verdict once the session has closed for `reason`.
    pub(crate) fn on_closed(&mut self, reason: &CloseReason) -> CheckResult {
        if let Some(verdict) = self.verdict.take() {
            return verdict;
        }
        match reason {
            CloseReason::Timeout => CheckResult::Inconclusive("no answer in time".to_owned()),
            CloseReason::Local(text) => CheckResult::Inconclusive(text.clone()),
            reason => CheckResult::Failed(describe(reason)),
        }
    }
}

/// What a check did: the item asked about, and the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The check ran (or could not: [`CheckResult::Inconclusive`]).
    Checked {
        /// The item of the file that was asked about.
        item: ContentHash,
        /// What the check showed.
        result: CheckResult,
    },
    /// We no longer hold the file ourselves, so there is nothing to compare with.
    NotHeldHere,
}

impl Exchange {
    /// Checks that `peer` still holds the file `hash` (which we hold): see the module
    /// comment. Never fails: whatever went wrong is in the result.
    pub async fn check_retention(&self, peer: AgentId, hash: ContentHash) -> CheckOutcome {
        check_retention(self, peer, hash).await
    }
}

async fn check_retention(ex: &Exchange, peer: AgentId, hash: ContentHash) -> CheckOutcome {
    let (item, local) = match pick_item(ex, hash).await {
        Ok(Some(picked)) => picked,
        Ok(None) => return CheckOutcome::NotHeldHere,
        Err(e) => {
            return CheckOutcome::Checked {
                item: hash,
                result: CheckResult::Inconclusive(format!("our copy of {hash}: {e}")),
            }
        }
    };
    let mut attempt = 0;
    let result = loop {
        attempt += 1;
        let mut nonce = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let talk = Conversation::new(item, hex::encode(nonce), &local);
        match run(ex, peer, talk).await {
            Err(ExchangeError::GaveWay(_)) if attempt < OPENING_RETRIES => {
                tokio::time::sleep(COLLISION_BACKOFF * attempt as u32).await;
            }
            Err(e) => break CheckResult::Inconclusive(e.to_string()),
            Ok(result) => break result,
        }
    };
    CheckOutcome::Checked { item, result }
}

/// One check session.
async fn run(
    ex: &Exchange,
    peer: AgentId,
    mut talk: Conversation,
) -> Result<CheckResult, ExchangeError> {
    let mut link = InitiatorSession::open(ex, peer).await?;
    while let Some(event) = link.next_event().await? {
        let now = mono_now();
        let result = match event {
            Event::Ready => {
                let command = talk.on_ready();
                link.port.session_mut().send_command(now, command)
            }
            Event::Reply {
                to: Command::Chk { nonce: Some(_), .. },
                reply,
            } => {
                link.opened();
                talk.on_reply(&reply);
                Ok(())
            }
            Event::PipAddress => link
                .port
                .session_mut()
                .answer_pip(now, &NodePolicy.pip_address()),
            Event::StoreItem { .. } => {
                // Nothing is asked for in a check: refuse what the peer pushes.
                link.port.session_mut().stored(now, false)
            }
            Event::Closed(reason) => {
                link.closed(&reason).await?;
                return Ok(talk.on_closed(&reason));
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            return Ok(talk.on_closed(&CloseReason::Violation(e.to_string())));
        }
        link.port.process(mono_now());
    }
    Ok(talk.on_closed(&CloseReason::Bye { by_peer: true }))
}

/// Picks the item to ask about: from the root, a random entry of each list down to a chunk.
/// `None` when we do not hold the file (its root item) any more.
async fn pick_item(
    ex: &Exchange,
    hash: ContentHash,
) -> Result<Option<(ContentHash, Bytes)>, String> {
    let mut at = hash;
    for _ in 0..=MAX_TREE_DEPTH {
        let Some(item) = answer::read_item(&ex.store, at)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let (item_type, content) = answer::split_item(&item).map_err(|e| e.to_string())?;
        if item_type.kind() != ItemKind::List {
            return Ok(Some((at, item)));
        }
        let entries =
            parse_list(content).map_err(|e| format!("list item {at} is malformed: {e}"))?;
        let Some(next) =
            (!entries.is_empty()).then(|| entries[rand::rngs::OsRng.gen_range(0..entries.len())])
        else {
            return Ok(Some((at, item)));
        };
        // Stop at this list now and then, so list items get checked too.
        if rand::rngs::OsRng.gen_range(0..4) == 0 {
            return Ok(Some((at, item)));
        }
        at = next;
    }
    Err(format!(
        "{hash}: lists nested deeper than {MAX_TREE_DEPTH} levels"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::turns::item_bytes;
    use kith_proto::files::{Input, Role, Session, SessionConfig};
    use kith_proto::Limits;
    use std::time::Instant;

    /// An initiator session driven with the peer's lines as given, and the check's
    /// conversation on top; returns the verdict.
    fn check_against(peer_lines: &[&str]) -> CheckResult {
        let local = item_bytes(1, b"the file");
        let item = ContentHash::of(&local);
        let mut talk = Conversation::new(item, "00ff".repeat(8), &local);
        let now = Instant::now();
        let config = SessionConfig {
            alternate: false,
            ..SessionConfig::new(&Limits::default())
        };
        let mut session = Session::new(Role::Initiator, config, now);
        let mut lines = peer_lines.iter();
        loop {
            while let Some(event) = session.poll_event() {
                match event {
                    Event::Ready => session.send_command(now, talk.on_ready()).unwrap(),
                    Event::ReadItem { .. } => {
                        session.supply_item(now, Some(local.clone())).unwrap()
                    }
                    Event::Reply { reply, .. } => talk.on_reply(&reply),
                    Event::Closed(reason) => return talk.on_closed(&reason),
                    _ => {}
                }
            }
            while session.poll_transmit().is_some() {}
            let line = lines.next().expect("the session wants more from the peer");
            session
                .handle_input(now, Input::Line((*line).to_owned()))
                .unwrap();
        }
    }

    fn expected_answer() -> String {
        kith_proto::files::nonce_answer(&"00ff".repeat(8), &item_bytes(1, b"the file"))
    }

    #[test]
    fn an_honest_answer_passes() {
        let answer = expected_answer();
        assert_eq!(check_against(&[&answer, "(okay)"]), CheckResult::Passed);
    }

    #[test]
    fn a_peer_that_lies_fails() {
        // The plain hash of the file (what a peer that kept only the address could say) and
        // an answer for another nonce are both wrong.
        let plain = ContentHash::of(&item_bytes(1, b"the file")).to_string();
        let stale = kith_proto::files::nonce_answer("an old nonce", &item_bytes(1, b"the file"));
        for lie in [plain, stale] {
            let verdict = check_against(&[&lie, "(okay)"]);
            assert!(
                matches!(&verdict, CheckResult::Failed(why) if why.contains("wrong answer")),
                "{verdict:?}"
            );
        }
    }

    #[test]
    fn not_found_fails_and_an_error_line_fails() {
        let verdict = check_against(&["(not found)", "(error)bad luck"]);
        assert!(
            matches!(&verdict, CheckResult::Failed(why) if why.contains("(not found)")),
            "{verdict:?}"
        );
        let verdict = check_against(&["(error)no such thing"]);
        assert!(
            matches!(&verdict, CheckResult::Failed(why) if why.contains("no such thing")),
            "{verdict:?}"
        );
    }

    #[test]
    fn no_answer_in_time_is_inconclusive() {
        let local = item_bytes(1, b"the file");
        let mut talk = Conversation::new(ContentHash::of(&local), "n".into(), &local);
        talk.on_ready();
        assert!(matches!(
            talk.on_closed(&CloseReason::Timeout),
            CheckResult::Inconclusive(_)
        ));
    }
}
