//! The chit chain, held in consensus by the two holders of a tally.
//!
//! Every valid chit is linked into a hash chain: chit `i`'s digest covers chit `i`, its
//! index and digest `i-1` (block 0 is the tally's hash), so equal digests at one index mean
//! equal ledgers up to it. The rules (after the reference's `mychips.chain_consense`, made
//! total so that every message is safe to lose, repeat or reorder):
//!
//! - **The foil holder orders.** Its chain only grows at the end: a chit it makes or
//!   receives is appended, and it never rewrites an index it has confirmed.
//! - **The stock holder conforms.** It appends what it makes and proposes the position
//!   (`good` with `chain: {cmd: "new", index, hash, conf}`); when the foil's order differs
//!   it takes the foil's (`upd`) beyond its own `conf` and re-proposes its chits that moved.
//! - **`conf` only moves forward**: each side's `conf` is the highest index at which it has
//!   seen its digest equal the other side's (a proposal that matched, or an `ack`). Nothing
//!   at or below `conf` is ever rewritten, by either side.
//! - **Duplicates are harmless**: a chit already chained is answered with the chain's view of
//!   it (`ack`, or an `upd`), never chained twice; a transition applies only where it fits.
//! - **Credit limits**: a side pays only while its balance stays at or above minus the
//!   credit its partner grants; it accepts a payment only while its balance stays at or
//!   below the credit it grants. A refusal changes nothing in the ledger.
//!
//! [`Ledger`] holds only what consensus needs: the confirmed end (`conf`, its digest), the
//! unconfirmed chits after it (`tail`), and the balance; a lookup answers for chits already
//! confirmed. The caller persists the ledger after each call (every call returns what it
//! changed).

use crate::chit::{Chit, ChitType};
use crate::keys::PublicKey;
use crate::tally::{Side, MAX_UNITS};
use serde::{Deserialize, Serialize};

/// A chained chit.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The chit (signed).
    pub chit: Chit,
    /// Its index in the chain (1 and up).
    pub index: u64,
    /// Its chain digest.
    pub digest: String,
}

/// A point of the chain: an index and the digest there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The index (0: the tally itself).
    pub index: u64,
    /// The digest at that index.
    pub digest: String,
}

/// A chain message (the `object` of `{target: "chit", action: "chain"}`, and the `chain`
/// member of a `good` chit).
#[derive(Debug, Clone, PartialEq)]
pub enum ChainMsg {
    /// "My chain has `hash` at `index`; I confirm it."
    Ack(Link),
    /// "I could not take your proposal at `index`; send me your chain after `conf`."
    Nak {
        /// The index that did not fit.
        index: u64,
        /// Our digest there, if we placed something.
        hash: Option<String>,
        /// Our confirmed index.
        conf: u64,
    },
    /// The foil's chain after its confirmed index: chits with their positions.
    Upd(Vec<Entry>),
}

/// What a ledger operation asks the caller to send.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// A chit of ours, with its proposed position (`good` with `chain: {cmd: "new", ..}`).
    Good {
        /// The chit.
        chit: Chit,
        /// Where it sits in our chain.
        at: Link,
        /// Our confirmed index.
        conf: u64,
    },
    /// A chain message.
    Chain(ChainMsg),
    /// A chit of the partner's that we refuse (`{target: "chit", action: "void"}`).
    Refuse {
        /// The chit's UUID.
        uuid: String,
        /// Why.
        reason: Refusal,
    },
}

/// Why a chit or a chain message was refused. The ledger is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The signature does not verify with the pledgor's key.
    #[error("the chit's signature does not verify with the pledgor's key")]
    BadSignature,
    /// The chit is for another tally.
    #[error("the chit is for another tally")]
    WrongTally,
    /// A `good` from the partner pledging our value.
    #[error("a partner can only pledge its own side's value")]
    NotTheirPledge,
    /// The payment would take the payer past the credit it was granted.
    #[error("over the credit limit: balance {balance}, limit {limit}, units {units}")]
    OverLimit {
        /// The balance before, from the checking side.
        balance: i64,
        /// The credit limit that applies.
        limit: u64,
        /// The chit's units.
        units: u64,
    },
    /// A chit with a known UUID but different contents (a forgery or a replay).
    #[error("a different chit with the same uuid is already in the chain")]
    Conflict,
    /// The partner placed a new chit at or below our confirmed index: a fork.
    #[error("chain fork: the partner rewrites index {0}, which both sides confirmed")]
    Fork(u64),
    /// An update whose digests do not chain.
    #[error("chain update does not chain: digest mismatch at index {0}")]
    BadChain(u64),
    /// Too many unconfirmed chits: the partner must confirm some first.
    #[error("too many unconfirmed chits ({0}); wait for the partner to confirm")]
    Busy(usize),
    /// Units over 2^53-1, or a balance that would overflow.
    #[error("units out of range")]
    Units,
}

/// The keys of both holders.
#[derive(Debug, Clone)]
pub struct Keys {
    /// The stock holder's key.
    pub stock: PublicKey,
    /// The foil holder's key.
    pub foil: PublicKey,
}

impl Keys {
    fn of(&self, side: Side) -> &PublicKey {
        match side {
            Side::Stock => &self.stock,
            Side::Foil => &self.foil,
        }
    }
}

/// What an operation changed, for the caller to persist and send.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    /// Messages to send, in order.
    pub out: Vec<Out>,
    /// UUIDs of chits taken out of the chain (refused by the partner).
    pub removed: Vec<String>,
}

/// Answers whether a chit is chained at or below `conf`: its index and digest.
pub trait Confirmed {
    /// The confirmed position of the chit `uuid`, if it is confirmed.
    fn confirmed(&self, uuid: &str) -> Option<Link>;
    /// The confirmed chit at `index` (at or below `conf`), if any.
    fn at(&self, index: u64) -> Option<Link>;
    /// Confirmed chits after `index` (up to `conf`), in chain order, at most `limit`: what a
    /// partner that fell behind (a restore from an older backup) needs again.
    fn entries_after(&self, index: u64, limit: usize) -> Vec<Entry> {
        let _ = (index, limit);
        Vec::new()
    }
}

/// Most chits sent in one `upd`.
pub const MAX_UPD_CHITS: usize = 256;

/// One holder's view of a tally's chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Ledger {
    /// Our side.
    pub side: Side,
    /// The highest index both sides agree on, and its digest.
    pub conf: Link,
    /// Chained chits after `conf`, by index (`conf.index + 1`, ...).
    pub tail: Vec<Entry>,
    /// The balance from our side over every chained chit: what we received minus what we
    /// gave.
    pub balance: i64,
    /// The credit we grant the partner.
    pub our_limit: u64,
    /// The credit the partner grants us.
    pub their_limit: u64,
    /// The most unconfirmed chits kept.
    pub max_tail: usize,
    /// Entries confirmed (moved out of `tail`) since the caller last took them: the caller
    /// persists them with the tail, then clears this.
    pub settled: Vec<Entry>,
}

impl Ledger {
    /// A fresh ledger: nothing chained, `conf` at the tally (index 0, its hash).
    pub fn new(side: Side, tally_hash: String, our_limit: u64, their_limit: u64) -> Ledger {
        Ledger {
            side,
            conf: Link {
                index: 0,
                digest: tally_hash,
            },
            tail: Vec::new(),
            balance: 0,
            our_limit,
            their_limit,
            max_tail: 1000,
            settled: Vec::new(),
        }
    }

    /// The next free index.
    pub fn next_index(&self) -> u64 {
        self.tail
            .last()
            .map_or(self.conf.index + 1, |entry| entry.index + 1)
    }

    /// The end of our chain.
    pub fn head(&self) -> Link {
        self.tail.last().map_or(self.conf.clone(), |entry| Link {
            index: entry.index,
            digest: entry.digest.clone(),
        })
    }

    fn find(&self, uuid: &str) -> Option<usize> {
        self.tail.iter().position(|e| e.chit.uuid == uuid)
    }

    fn link_at(&self, index: u64, confirmed: &dyn Confirmed) -> Option<Link> {
        if index == self.conf.index {
            return Some(self.conf.clone());
        }
        if index < self.conf.index {
            return confirmed.at(index);
        }
        self.tail.iter().find(|e| e.index == index).map(|e| Link {
            index,
            digest: e.digest.clone(),
        })
    }

    /// Whether we may pay `units` now: our balance stays at or above minus the credit the
    /// partner grants us.
    pub fn can_pay(&self, units: u64) -> Result<(), Refusal> {
        let units_i = i64::try_from(units).map_err(|_| Refusal::Units)?;
        if units > MAX_UNITS {
            return Err(Refusal::Units);
        }
        let after = self.balance.checked_sub(units_i).ok_or(Refusal::Units)?;
        if after < -(self.their_limit as i64) {
            return Err(Refusal::OverLimit {
                balance: self.balance,
                limit: self.their_limit,
                units,
            });
        }
        if self.tail.len() >= self.max_tail {
            return Err(Refusal::Busy(self.tail.len()));
        }
        Ok(())
    }

    /// Whether we may accept `units` from the partner: our balance stays at or below the
    /// credit we grant.
    pub fn can_receive(&self, units: u64) -> Result<(), Refusal> {
        let units_i = i64::try_from(units).map_err(|_| Refusal::Units)?;
        let after = self.balance.checked_add(units_i).ok_or(Refusal::Units)?;
        if after > self.our_limit as i64 {
            return Err(Refusal::OverLimit {
                balance: self.balance,
                limit: self.our_limit,
                units,
            });
        }
        if self.tail.len() >= self.max_tail {
            return Err(Refusal::Busy(self.tail.len()));
        }
        Ok(())
    }

    fn push(&mut self, chit: Chit) -> Link {
        let prior = self.head();
        let index = prior.index + 1;
        let digest = chit.chain_digest(index, &prior.digest);
        self.balance += chit.signed_units(self.side);
        self.tail.push(Entry {
            chit,
            index,
            digest: digest.clone(),
        });
        Link { index, digest }
    }

    /// Recomputes indices and digests from tail position `from` on.
    fn rechain(&mut self, from: usize) {
        let mut prior = if from == 0 {
            self.conf.clone()
        } else {
            let e = &self.tail[from - 1];
            Link {
                index: e.index,
                digest: e.digest.clone(),
            }
        };
        for entry in &mut self.tail[from..] {
            entry.index = prior.index + 1;
            entry.digest = entry.chit.chain_digest(entry.index, &prior.digest);
            prior = Link {
                index: entry.index,
                digest: entry.digest.clone(),
            };
        }
    }

    /// Moves `conf` forward to `index` (never back) if our digest there is `digest`.
    fn ratchet(&mut self, index: u64, digest: &str) -> bool {
        if index <= self.conf.index {
            return index == self.conf.index && digest == self.conf.digest;
        }
        let Some(pos) = self.tail.iter().position(|e| e.index == index) else {
            return false;
        };
        if self.tail[pos].digest != digest {
            return false;
        }
        self.conf = Link {
            index,
            digest: digest.to_owned(),
        };
        let settled: Vec<Entry> = self.tail.drain(..=pos).collect();
        self.settled.extend(settled);
        true
    }

    /// Our own chit, signed by us (a payment, an accepted invoice, a setting): checked
    /// against the credit the partner grants, appended, and proposed to the partner.
    pub fn local(&mut self, chit: Chit, keys: &Keys) -> Result<Outcome, Refusal> {
        if chit.by != self.side {
            return Err(Refusal::NotTheirPledge);
        }
        if chit.verify(keys.of(self.side)).is_err() {
            return Err(Refusal::BadSignature);
        }
        if self.find(&chit.uuid).is_some() {
            return Err(Refusal::Conflict);
        }
        if chit.kind == ChitType::Tran {
            self.can_pay(chit.units)?;
        } else if self.tail.len() >= self.max_tail {
            return Err(Refusal::Busy(self.tail.len()));
        }
        let at = self.push(chit.clone());
        Ok(Outcome {
            out: vec![Out::Good {
                chit,
                at,
                conf: self.conf.index,
            }],
            removed: Vec::new(),
        })
    }

    /// A `good` chit from the partner, with its proposed position if it gave one.
    pub fn remote_good(
        &mut self,
        chit: Chit,
        proposal: Option<Link>,
        tally_uuid: &str,
        keys: &Keys,
        confirmed: &dyn Confirmed,
    ) -> Result<Outcome, Refusal> {
        if chit.tally != tally_uuid {
            return Err(Refusal::WrongTally);
        }
        if chit.by != self.side.other() {
            return Err(Refusal::NotTheirPledge);
        }
        if chit.verify(keys.of(chit.by)).is_err() {
            return Err(Refusal::BadSignature);
        }
        let mut outcome = Outcome::default();
        // Already confirmed: tell the partner where it is.
        if let Some(link) = confirmed.confirmed(&chit.uuid) {
            outcome.out.push(Out::Chain(ChainMsg::Ack(link)));
            return Ok(outcome);
        }
        if let Some(pos) = self.find(&chit.uuid) {
            if self.tail[pos].chit != chit {
                return Err(Refusal::Conflict);
            }
            return Ok(self.answer_proposal(pos, proposal, confirmed));
        }
        if chit.kind == ChitType::Tran {
            self.can_receive(chit.units)?;
        } else if self.tail.len() >= self.max_tail {
            return Err(Refusal::Busy(self.tail.len()));
        }
        match self.side {
            Side::Foil => {
                self.push(chit);
                let pos = self.tail.len() - 1;
                Ok(self.answer_proposal(pos, proposal, confirmed))
            }
            Side::Stock => self.conform(chit, proposal),
        }
    }

    /// What we say about our chit at tail position `pos` given the partner's proposal.
    fn answer_proposal(
        &mut self,
        pos: usize,
        proposal: Option<Link>,
        confirmed: &dyn Confirmed,
    ) -> Outcome {
        let mut outcome = Outcome::default();
        let ours = Link {
            index: self.tail[pos].index,
            digest: self.tail[pos].digest.clone(),
        };
        if proposal.as_ref() == Some(&ours) {
            self.ratchet(ours.index, &ours.digest);
            outcome.out.push(Out::Chain(ChainMsg::Ack(ours)));
            return outcome;
        }
        match self.side {
            // We order: our chain is the answer.
            Side::Foil => outcome
                .out
                .push(Out::Chain(ChainMsg::Upd(self.tail.clone()))),
            // We conform: take the foil's position if it can still move.
            Side::Stock => {
                if let Some(p) = proposal {
                    if p.index > self.conf.index && p.index < self.next_index() {
                        let before = self.clone();
                        let entry = self.tail.remove(pos);
                        self.balance -= entry.chit.signed_units(self.side);
                        return match self.conform(entry.chit, Some(p)) {
                            Ok(outcome) => outcome,
                            Err(_) => {
                                // Cannot happen (the position is past conf), but a refusal
                                // must leave the ledger as it was.
                                *self = before;
                                Outcome::default()
                            }
                        };
                    }
                }
                let _ = confirmed;
                outcome.out.push(Out::Chain(ChainMsg::Nak {
                    index: ours.index,
                    hash: Some(ours.digest),
                    conf: self.conf.index,
                }));
            }
        }
        outcome
    }

    /// The stock holder places a new chit of the foil's where the foil put it.
    fn conform(&mut self, chit: Chit, proposal: Option<Link>) -> Result<Outcome, Refusal> {
        let mut outcome = Outcome::default();
        let next = self.next_index();
        let Some(p) = proposal else {
            // No position given: keep it at the end and ask for the foil's chain.
            let at = self.push(chit);
            outcome.out.push(Out::Chain(ChainMsg::Nak {
                index: at.index,
                hash: Some(at.digest),
                conf: self.conf.index,
            }));
            return Ok(outcome);
        };
        if p.index <= self.conf.index {
            return Err(Refusal::Fork(p.index));
        }
        if p.index >= next {
            let at = self.push(chit);
            if p.index == at.index && p.digest == at.digest {
                self.ratchet(at.index, &at.digest);
                outcome.out.push(Out::Chain(ChainMsg::Ack(at)));
            } else {
                // Our prefix differs, or we miss chits before it: ask for the foil's chain.
                outcome.out.push(Out::Chain(ChainMsg::Nak {
                    index: p.index,
                    hash: (p.index == at.index).then_some(at.digest),
                    conf: self.conf.index,
                }));
            }
            return Ok(outcome);
        }
        // Inside our unconfirmed tail: insert there, ours move after it.
        let pos = (p.index - self.conf.index - 1) as usize;
        self.balance += chit.signed_units(self.side);
        self.tail.insert(
            pos,
            Entry {
                chit,
                index: 0,
                digest: String::new(),
            },
        );
        self.rechain(pos);
        let at = Link {
            index: self.tail[pos].index,
            digest: self.tail[pos].digest.clone(),
        };
        let matched = at == p;
        let moved: Vec<Entry> = self.tail[pos + 1..].to_vec();
        if matched {
            self.ratchet(at.index, &at.digest);
            outcome.out.push(Out::Chain(ChainMsg::Ack(at)));
        } else {
            outcome.out.push(Out::Chain(ChainMsg::Nak {
                index: p.index,
                hash: Some(at.digest),
                conf: self.conf.index,
            }));
        }
        outcome.out.extend(self.proposals(&moved));
        Ok(outcome)
    }

    /// Re-proposals for our own chits among `entries`.
    fn proposals(&self, entries: &[Entry]) -> Vec<Out> {
        entries
            .iter()
            .filter(|e| e.chit.by == self.side)
            .map(|e| Out::Good {
                chit: e.chit.clone(),
                at: Link {
                    index: e.index,
                    digest: e.digest.clone(),
                },
                conf: self.conf.index,
            })
            .collect()
    }

    /// A chain message from the partner.
    pub fn remote_chain(
        &mut self,
        msg: ChainMsg,
        tally_uuid: &str,
        keys: &Keys,
        confirmed: &dyn Confirmed,
    ) -> Result<Outcome, Refusal> {
        let mut outcome = Outcome::default();
        match msg {
            ChainMsg::Ack(link) => {
                if !self.ratchet(link.index, &link.digest) {
                    let known = self.link_at(link.index, confirmed);
                    if known.as_ref() != Some(&link) {
                        // Stale or wrong: the foil answers with its chain, the stock asks.
                        outcome.out.extend(self.resync());
                    }
                }
            }
            ChainMsg::Nak { conf, .. } if self.side == Side::Foil && conf < self.conf.index => {
                // The stock is behind what we confirmed: our chain from its conf on.
                let mut entries = confirmed.entries_after(conf, MAX_UPD_CHITS);
                let room = MAX_UPD_CHITS.saturating_sub(entries.len());
                entries.extend(self.tail.iter().take(room).cloned());
                if entries.is_empty() {
                    outcome.out.extend(self.resync());
                } else {
                    outcome.out.push(Out::Chain(ChainMsg::Upd(entries)));
                }
            }
            ChainMsg::Nak { .. } => outcome.out.extend(self.resync()),
            ChainMsg::Upd(entries) => match self.side {
                Side::Stock => return self.apply_upd(entries, tally_uuid, keys, confirmed),
                Side::Foil => {
                    // A stock's update: chain what we miss; our order stands.
                    for entry in entries {
                        if entry.chit.by == self.side
                            || confirmed.confirmed(&entry.chit.uuid).is_some()
                            || self.find(&entry.chit.uuid).is_some()
                        {
                            continue;
                        }
                        let got =
                            self.remote_good(entry.chit, None, tally_uuid, keys, confirmed)?;
                        outcome.out.extend(
                            got.out
                                .into_iter()
                                .filter(|o| !matches!(o, Out::Chain(ChainMsg::Upd(_)))),
                        );
                    }
                    outcome.out.extend(self.resync());
                }
            },
        }
        Ok(outcome)
    }

    /// The stock holder takes the foil's chain after `conf`.
    ///
    /// The update may start past our `conf` (the foil saw a match we have not heard of yet):
    /// its first chit must then chain onto our own digest just before it, which proves our
    /// chain equals the foil's up to there.
    fn apply_upd(
        &mut self,
        entries: Vec<Entry>,
        tally_uuid: &str,
        keys: &Keys,
        confirmed: &dyn Confirmed,
    ) -> Result<Outcome, Refusal> {
        let mut outcome = Outcome::default();
        // Everything is checked before anything changes.
        let mut chain: Vec<Entry> = Vec::new();
        let mut prior: Option<Link> = None;
        for entry in entries {
            if entry.chit.tally != tally_uuid {
                return Err(Refusal::WrongTally);
            }
            if entry.chit.verify(keys.of(entry.chit.by)).is_err() {
                return Err(Refusal::BadSignature);
            }
            if entry.index <= self.conf.index {
                // Confirmed on our side: it must be what we have.
                if self.link_at(entry.index, confirmed).map(|l| l.digest)
                    != Some(entry.digest.clone())
                {
                    return Err(Refusal::Fork(entry.index));
                }
                continue;
            }
            let before = match &prior {
                Some(link) if entry.index == link.index + 1 => link.clone(),
                Some(_) => return Err(Refusal::BadChain(entry.index)),
                None => match self.link_at(entry.index - 1, confirmed) {
                    Some(link) => link,
                    None => {
                        // We miss chits before it: ask for the chain from our conf.
                        outcome.out.push(Out::Chain(ChainMsg::Nak {
                            index: entry.index,
                            hash: None,
                            conf: self.conf.index,
                        }));
                        return Ok(outcome);
                    }
                },
            };
            let digest = entry.chit.chain_digest(entry.index, &before.digest);
            if digest != entry.digest {
                return Err(Refusal::BadChain(entry.index));
            }
            if let Some(pos) = self.find(&entry.chit.uuid) {
                if self.tail[pos].chit != entry.chit {
                    return Err(Refusal::Conflict);
                }
            } else if confirmed.confirmed(&entry.chit.uuid).is_some() {
                return Err(Refusal::Conflict);
            }
            prior = Some(Link {
                index: entry.index,
                digest,
            });
            chain.push(entry);
        }
        let (Some(end), Some(first)) = (prior, chain.first().map(|e| e.index)) else {
            // Nothing beyond our conf: confirm where we are.
            outcome
                .out
                .push(Out::Chain(ChainMsg::Ack(self.conf.clone())));
            return Ok(outcome);
        };
        // Our chits before the update's first index stay; the update follows; the rest of
        // ours that it lacks are appended after it.
        let kept = self.tail.iter().take_while(|e| e.index < first).count();
        let mut balance = self.balance;
        for entry in &self.tail[kept..] {
            balance -= entry.chit.signed_units(self.side);
        }
        for entry in &chain {
            let new = !self.tail.iter().any(|e| e.chit.uuid == entry.chit.uuid);
            if new && entry.chit.by != self.side && entry.chit.kind == ChitType::Tran {
                let after = balance + entry.chit.signed_units(self.side);
                if after > self.our_limit as i64 {
                    return Err(Refusal::OverLimit {
                        balance,
                        limit: self.our_limit,
                        units: entry.chit.units,
                    });
                }
            }
            balance += entry.chit.signed_units(self.side);
        }
        let rest = self.tail.split_off(kept);
        let leftovers: Vec<Chit> = rest
            .into_iter()
            .filter(|e| !chain.iter().any(|c| c.chit.uuid == e.chit.uuid))
            .map(|e| e.chit)
            .collect();
        self.tail.extend(chain);
        self.balance = balance;
        self.ratchet(end.index, &end.digest);
        outcome.out.push(Out::Chain(ChainMsg::Ack(end)));
        let start = self.tail.len();
        for chit in leftovers {
            self.push(chit);
        }
        let moved = self.tail[start..].to_vec();
        outcome.out.extend(self.proposals(&moved));
        Ok(outcome)
    }

    /// The partner refused one of our chits: it leaves the chain if it is not confirmed.
    pub fn refused(&mut self, uuid: &str) -> Outcome {
        let mut outcome = Outcome::default();
        let Some(pos) = self.find(uuid) else {
            return outcome;
        };
        if self.tail[pos].chit.by != self.side {
            return outcome;
        }
        let entry = self.tail.remove(pos);
        self.balance -= entry.chit.signed_units(self.side);
        self.rechain(pos);
        outcome.removed.push(entry.chit.uuid);
        let moved = self.tail[pos..].to_vec();
        match self.side {
            Side::Stock => outcome.out.extend(self.proposals(&moved)),
            Side::Foil => outcome.out.extend(self.resync()),
        }
        outcome
    }

    /// What to send to bring the partner up to date after lost messages (on link up, and
    /// from time to time while anything is unconfirmed): the foil its chain after `conf`,
    /// the stock its own unconfirmed chits again (or a `nak` asking for the foil's chain).
    pub fn resync(&self) -> Vec<Out> {
        match self.side {
            Side::Foil => {
                if self.tail.is_empty() {
                    vec![Out::Chain(ChainMsg::Ack(self.conf.clone()))]
                } else {
                    let entries = self.tail.iter().take(MAX_UPD_CHITS).cloned().collect();
                    vec![Out::Chain(ChainMsg::Upd(entries))]
                }
            }
            Side::Stock => {
                let mut out = self.proposals(&self.tail);
                if out.is_empty() || self.tail.iter().any(|e| e.chit.by != self.side) {
                    out.push(Out::Chain(ChainMsg::Nak {
                        index: self.next_index(),
                        hash: None,
                        conf: self.conf.index,
                    }));
                }
                out
            }
        }
    }

    /// Whether anything is unconfirmed.
    pub fn unsettled(&self) -> bool {
        !self.tail.is_empty()
    }
}
