//! The broker's bookkeeping: introductions under way and each requester's rate. Plain state
//! with the time passed in.
//!
//! A linked peer may ask us to introduce it to another linked peer; each request costs us two
//! envelopes and the target a few dials, so requests are bounded: per requester
//! (`per_minute` in a sliding minute), in all (`max_pending` introductions waiting for the
//! target's answer, each for at most `wait`). Only the target of an introduction may answer
//! it; anything else is counted and dropped.

use kith_crypto::identity::AgentId;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The broker's bounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BrokerLimits {
    /// Requests one peer may make in a minute.
    pub per_minute: usize,
    /// Introductions waiting for an answer, in all.
    pub max_pending: usize,
    /// How long an introduction waits for the target's answer.
    pub wait: Duration,
}

/// One introduction waiting for the target's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Intro {
    /// Who asked.
    pub requester: AgentId,
    /// The requester's id for it.
    pub requester_id: u64,
    /// Whom it wants.
    pub target: AgentId,
    /// It asked for a relay if punching fails.
    pub relay: bool,
    deadline: Instant,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The requester asked too often.
    RateLimited,
    /// Too many introductions are waiting.
    Busy,
}

/// Requesters whose rate is remembered (only linked peers request, so this is generous).
const MAX_TRACKED: usize = 4096;

/// The broker's state (see the module docs).
#[derive(Debug)]
pub(crate) struct Broker {
    limits: BrokerLimits,
    next_id: u64,
    pending: HashMap<u64, Intro>,
    rates: HashMap<AgentId, VecDeque<Instant>>,
}

impl Broker {
    pub(crate) fn new(limits: BrokerLimits) -> Broker {
        Broker {
            limits,
            next_id: 1,
            pending: HashMap::new(),
            rates: HashMap::new(),
        }
    }

    /// `requester` asks to be introduced to `target`: the id of the offer to send, or why not.
    pub(crate) fn request(
        &mut self,
        requester: AgentId,
        requester_id: u64,
        target: AgentId,
        relay: bool,
        now: Instant,
    ) -> Result<u64, Refusal> {
        let minute = Duration::from_secs(60);
        if self.rates.len() >= MAX_TRACKED {
            self.rates.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < minute)
            });
        }
        let times = self.rates.entry(requester).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= minute)
        {
            times.pop_front();
        }
        if times.len() >= self.limits.per_minute {
            return Err(Refusal::RateLimited);
        }
        times.push_back(now);
        if self.pending.len() >= self.limits.max_pending {
            return Err(Refusal::Busy);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(
            id,
            Intro {
                requester,
                requester_id,
                target,
                relay,
                deadline: now + self.limits.wait,
            },
        );
        Ok(id)
    }

    /// `from` answers introduction `id`: the introduction if `from` is its target.
    pub(crate) fn answer(&mut self, from: AgentId, id: u64) -> Option<Intro> {
        match self.pending.get(&id) {
            Some(intro) if intro.target == from => self.pending.remove(&id),
            _ => None,
        }
    }

    /// Introductions whose target did not answer in time (tell their requesters).
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Intro> {
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, i)| i.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        expired
            .into_iter()
            .filter_map(|id| self.pending.remove(&id))
            .collect()
    }

    /// Introductions waiting now.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kith_crypto::identity::Identity;

    fn agent() -> AgentId {
        Identity::generate(&mut rand::rngs::OsRng).agent_id()
    }

    fn limits() -> BrokerLimits {
        BrokerLimits {
            per_minute: 3,
            max_pending: 4,
            wait: Duration::from_secs(10),
        }
    }

    #[test]
    fn a_requester_is_held_to_its_rate_and_only_the_target_answers() {
        let mut b = Broker::new(limits());
        let (a, t, other) = (agent(), agent(), agent());
        let now = Instant::now();
        let id = b.request(a, 1, t, false, now).unwrap();
        b.request(a, 2, t, false, now).unwrap();
        b.request(a, 3, t, false, now).unwrap();
        assert_eq!(b.request(a, 4, t, false, now), Err(Refusal::RateLimited));
        assert!(b
            .request(a, 5, t, false, now + Duration::from_secs(61))
            .is_ok());
        assert_eq!(b.answer(other, id), None, "not the target");
        assert_eq!(b.answer(t, id).map(|i| i.requester_id), Some(1));
        assert_eq!(b.answer(t, id), None, "answered once");
    }

    #[test]
    fn introductions_are_bounded_and_expire() {
        let mut b = Broker::new(limits());
        let t = agent();
        let now = Instant::now();
        for i in 0..4 {
            b.request(agent(), i, t, false, now).unwrap();
        }
        assert_eq!(b.request(agent(), 9, t, false, now), Err(Refusal::Busy));
        assert_eq!(b.expire(now + Duration::from_secs(10)).len(), 4);
        assert_eq!(b.pending(), 0);
    }
}
