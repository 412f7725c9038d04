//! A helper's mailbox for short codes (see [`super::code`]): nameplates claimed by issuers,
//! each opened once, bounded in all, per owner and per requester's rate, every refusal
//! counted.

use super::code::{Mail, CODE_LIFETIME, MAX_PLATES, MAX_PLATES_PER_OWNER, OPENS_PER_MINUTE};
use super::{lock, Reach};
use crate::clock::mono_now;
use kith_crypto::identity::AgentId;
use rand::Rng;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The helper's nameplates.
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    pub(super) plates: HashMap<u32, Plate>,
    opens: HashMap<AgentId, VecDeque<Instant>>,
}

#[derive(Debug)]
pub(super) struct Plate {
    pub(super) owner: AgentId,
    pub(super) opener: Option<(AgentId, u64)>,
    expires: Instant,
}

impl Reach {
    /// Helper: `owner` wants a nameplate.
    pub(super) fn helper_claim(&self, owner: AgentId, id: u64) {
        let now = mono_now();
        let mut mailbox = lock(&self.inner.mailbox);
        mailbox.plates.retain(|_, p| p.expires > now);
        let held = mailbox.plates.values().filter(|p| p.owner == owner).count();
        if mailbox.plates.len() >= MAX_PLATES || held >= MAX_PLATES_PER_OWNER {
            drop(mailbox);
            self.inner.counters.code_claims_refused.bump();
            return self.mail(
                owner,
                &Mail::Fail {
                    id,
                    why: "full".into(),
                },
            );
        }
        let mut rng = rand::thread_rng();
        let nameplate = loop {
            // Short numbers while few are in use, as wormhole's are.
            let n = rng.gen_range(1..=(99 + 10 * mailbox.plates.len() as u32));
            if !mailbox.plates.contains_key(&n) {
                break n;
            }
        };
        mailbox.plates.insert(
            nameplate,
            Plate {
                owner,
                opener: None,
                expires: now + CODE_LIFETIME,
            },
        );
        drop(mailbox);
        self.mail(owner, &Mail::Claimed { id, nameplate });
    }

    /// Helper: `from` opens `nameplate`.
    pub(super) fn helper_open(&self, from: AgentId, id: u64, nameplate: u32, pake: String) {
        let now = mono_now();
        let minute = Duration::from_secs(60);
        let mut mailbox = lock(&self.inner.mailbox);
        mailbox.plates.retain(|_, p| p.expires > now);
        if mailbox.opens.len() > 4 * MAX_PLATES {
            mailbox
                .opens
                .retain(|_, t| t.back().is_some_and(|t| now.duration_since(*t) < minute));
        }
        let opens = mailbox.opens.entry(from).or_default();
        while opens
            .front()
            .is_some_and(|t| now.duration_since(*t) >= minute)
        {
            opens.pop_front();
        }
        let rate_ok = opens.len() < OPENS_PER_MINUTE;
        if rate_ok {
            opens.push_back(now);
        }
        let owner = match mailbox.plates.get_mut(&nameplate) {
            Some(plate) if rate_ok && plate.opener.is_none() && plate.owner != from => {
                plate.opener = Some((from, id));
                Some(plate.owner)
            }
            _ => None,
        };
        drop(mailbox);
        match owner {
            Some(owner) => self.mail(
                owner,
                &Mail::Opened {
                    nameplate,
                    from: from.to_string(),
                    pake,
                },
            ),
            None => {
                self.inner.counters.code_opens_refused.bump();
                self.mail(
                    from,
                    &Mail::Fail {
                        id,
                        why: "no-nameplate".into(),
                    },
                );
            }
        }
    }

    /// Helper: the owner of `nameplate` answers its opener.
    pub(super) fn helper_answer(
        &self,
        owner: AgentId,
        nameplate: u32,
        pake: String,
        sealed: String,
    ) {
        let opener = lock(&self.inner.mailbox)
            .plates
            .get(&nameplate)
            .filter(|p| p.owner == owner)
            .and_then(|p| p.opener);
        match opener {
            Some((opener, id)) => self.mail(opener, &Mail::Answered { id, pake, sealed }),
            None => self.inner.counters.punch_answers_unexpected.bump(),
        }
    }
}
