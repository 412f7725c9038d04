//! Short codes: `kith ticket --code` prints `7-purple-sausage`, and `kith connect
//! 7-purple-sausage` links, as magic-wormhole does it.
//!
//! The issuer B claims a *nameplate* (the number) in the mailbox of a helper it is linked with
//! (one of its brokers); the two words are the rest of the password, drawn at random, never
//! sent. The claimant A asks its linked peers to open that nameplate, sending the first SPAKE2
//! message (symmetric, the whole code as the password); the helper passes it to B, who answers
//! with its own SPAKE2 message and the ticket sealed under the agreed key
//! (ChaCha20-Poly1305); A opens it and sends back a key confirmation, which the helper passes
//! on, then links with the ticket (punched or relayed like any ticket naming the helper).
//!
//! Someone who guesses a code learns nothing: SPAKE2 gives one guess per exchange and no
//! offline test, and the sealed ticket is under a key only the right password yields. The
//! issuer notices: an exchange without a valid confirmation counts as a failed guess
//! (`code_guesses_failed`, logged), burns the code and revokes its ticket. A code is good for
//! one exchange and expires with its nameplate. The helper's mailbox is bounded: nameplates in
//! all ([`MAX_PLATES`]) and per owner ([`MAX_PLATES_PER_OWNER`]), one opener per nameplate,
//! opens per requester and minute ([`OPENS_PER_MINUTE`]), each refusal counted.

use super::words::WORDS;
use super::{lock, Reach};
use crate::clock::mono_now;
use crate::endpoint::{envelope, Via};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use kith_crypto::identity::AgentId;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spake2::{Ed25519Group, Identity, Password, Spake2};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The envelope command of the mailbox.
pub const MAILBOX: &str = "mailbox";
/// The largest body parsed.
const MAX_BODY: usize = 4096;
/// Nameplates a mailbox holds at once.
pub const MAX_PLATES: usize = 256;
/// Nameplates one owner may hold at once.
pub const MAX_PLATES_PER_OWNER: usize = 4;
/// Nameplates a requester may try to open in a minute.
pub const OPENS_PER_MINUTE: usize = 10;
/// How long a nameplate (and so a code) lives at most.
pub const CODE_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// Codes we issued that wait for their claimant, at once.
const MAX_ISSUED: usize = 16;
/// How long the issuer waits for the key confirmation after answering.
const CONFIRM_WAIT: Duration = Duration::from_secs(60);
/// How long a request to a mailbox waits for its answer.
const ASK_WAIT: Duration = Duration::from_secs(10);

/// One mailbox message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Mail {
    /// Issuer to helper: a nameplate, please.
    Claim {
        /// The issuer's id for the request.
        id: u64,
    },
    /// Helper to issuer: yours.
    Claimed {
        /// The issuer's id.
        id: u64,
        /// The nameplate.
        nameplate: u32,
    },
    /// Claimant to helper: open this nameplate; here is my SPAKE2 message.
    Open {
        /// The claimant's id for the request.
        id: u64,
        /// The nameplate.
        nameplate: u32,
        /// SPAKE2 message, hex.
        pake: String,
    },
    /// Helper to issuer: someone opened your nameplate.
    Opened {
        /// The nameplate.
        nameplate: u32,
        /// Who (proven by its link with the helper).
        from: String,
        /// Its SPAKE2 message, hex.
        pake: String,
    },
    /// Issuer to helper: my SPAKE2 message and the sealed ticket, for the opener.
    Answer {
        /// The nameplate.
        nameplate: u32,
        /// SPAKE2 message, hex.
        pake: String,
        /// The ticket line sealed under the agreed key, hex.
        sealed: String,
    },
    /// Helper to claimant: the issuer's answer.
    Answered {
        /// The claimant's id.
        id: u64,
        /// SPAKE2 message, hex.
        pake: String,
        /// The sealed ticket, hex.
        sealed: String,
    },
    /// Claimant to helper, and helper to issuer: proof of the agreed key.
    Confirm {
        /// The nameplate.
        nameplate: u32,
        /// sha256 over a domain line and the key, hex.
        proof: String,
    },
    /// Helper to a requester: no.
    Fail {
        /// The requester's id.
        id: u64,
        /// Why, in a word.
        why: String,
    },
}

impl Mail {
    fn decode(body: &[u8]) -> Option<Mail> {
        (body.len() <= MAX_BODY)
            .then(|| serde_json::from_slice(body).ok())
            .flatten()
    }

    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Why a code could not be issued or redeemed.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    /// Not of the form `NUMBER-WORD-WORD`.
    #[error("{0:?} is not a code like 7-purple-sausage")]
    Malformed(String),
    /// No linked peer holds a mailbox for us.
    #[error("no linked peer to hold the code's mailbox: link to a helper first (`kith connect` with its ticket)")]
    NoHelper,
    /// The helper refused or did not answer.
    #[error("the helper's mailbox: {0}")]
    Mailbox(String),
    /// The code did not open the ticket: mistyped, already used or expired.
    #[error("the code did not work: mistyped, already used, or expired (ask for a new one)")]
    Wrong,
    /// We issue too many codes at once.
    #[error("too many codes are waiting to be used; let some expire first")]
    TooMany,
}

/// True for text shaped like a code (`kith connect` tells codes from tickets by it).
pub fn looks_like_code(text: &str) -> bool {
    parse(text).is_some()
}

/// The nameplate and the words of a code.
fn parse(text: &str) -> Option<(u32, String)> {
    let text = text.trim().to_ascii_lowercase();
    let mut parts = text.splitn(2, '-');
    let nameplate: u32 = parts.next()?.parse().ok()?;
    let words = parts.next()?;
    let ok = words.split('-').count() == 2 && words.split('-').all(|w| WORDS.contains(&w));
    (ok && nameplate > 0).then(|| (nameplate, text.clone()))
}

fn key_proof(key: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"kith code confirm v1\n");
    h.update(key);
    hex::encode(h.finalize())
}

fn cipher(key: &[u8]) -> ChaCha20Poly1305 {
    let mut h = Sha256::new();
    h.update(b"kith code seal v1\n");
    h.update(key);
    ChaCha20Poly1305::new(&h.finalize())
}

fn pake_start(code: &str) -> (Spake2<Ed25519Group>, Vec<u8>) {
    Spake2::<Ed25519Group>::start_symmetric(
        &Password::new(code.as_bytes()),
        &Identity::new(b"kith short code v1"),
    )
}

/// What we issued and wait to be redeemed, by helper and nameplate.
#[derive(Default)]
pub(crate) struct Issued {
    codes: HashMap<(AgentId, u32), IssuedCode>,
    claims: HashMap<u64, oneshot::Sender<Result<u32, String>>>,
}

struct IssuedCode {
    code: String,
    token: String,
    ticket: String,
    expires: Instant,
    /// The key agreed with an opener, waiting for its confirmation.
    answered: Option<Vec<u8>>,
}

/// The issuer's answer as a claimant receives it: its SPAKE2 message and the sealed ticket, or
/// why the helper refused.
type Answer = Result<(Vec<u8>, Vec<u8>), String>;

/// The claimant's requests waiting for an answer, with the helper asked.
#[derive(Default)]
pub(crate) struct Claiming {
    waiting: HashMap<u64, (AgentId, oneshot::Sender<Answer>)>,
}

impl Reach {
    pub(super) fn mail(&self, to: AgentId, mail: &Mail) {
        let _ = self
            .inner
            .endpoint
            .try_send(to, envelope(MAILBOX, mail.encode()));
    }

    /// A `mailbox` envelope from `peer`.
    pub(super) fn on_mail(&self, peer: AgentId, body: &[u8]) {
        let c = &self.inner.counters;
        let Some(mail) = Mail::decode(body) else {
            c.punch_malformed.bump();
            return;
        };
        match mail {
            Mail::Claim { id } => self.helper_claim(peer, id),
            Mail::Open {
                id,
                nameplate,
                pake,
            } => self.helper_open(peer, id, nameplate, pake),
            Mail::Answer {
                nameplate,
                pake,
                sealed,
            } => self.helper_answer(peer, nameplate, pake, sealed),
            Mail::Confirm { nameplate, proof } => self.on_confirm(peer, nameplate, proof),
            Mail::Claimed { id, nameplate } => {
                if let Some(tx) = lock(&self.inner.issued).claims.remove(&id) {
                    let _ = tx.send(Ok(nameplate));
                }
            }
            Mail::Fail { id, why } => {
                let mut issued = lock(&self.inner.issued);
                if let Some(tx) = issued.claims.remove(&id) {
                    let _ = tx.send(Err(why));
                } else if let Some((from, tx)) = lock(&self.inner.claiming).waiting.remove(&id) {
                    if from == peer {
                        let _ = tx.send(Err(why));
                    }
                }
            }
            Mail::Opened {
                nameplate,
                from,
                pake,
            } => self.issuer_opened(peer, nameplate, &from, &pake),
            Mail::Answered { id, pake, sealed } => {
                let waiting = lock(&self.inner.claiming).waiting.remove(&id);
                match waiting {
                    Some((helper, tx)) if helper == peer => {
                        let parsed = hex::decode(pake).ok().zip(hex::decode(sealed).ok());
                        let _ = tx.send(parsed.ok_or_else(|| "malformed answer".to_owned()));
                    }
                    _ => c.punch_answers_unexpected.bump(),
                }
            }
        }
    }

    /// Helper: the opener confirms (passed on to the owner, and the nameplate goes); or
    /// issuer: the confirmation arrives.
    fn on_confirm(&self, peer: AgentId, nameplate: u32, proof: String) {
        let mut mailbox = lock(&self.inner.mailbox);
        let plate = mailbox.plates.get(&nameplate);
        if let Some(owner) = plate
            .filter(|p| p.opener.is_some_and(|(o, _)| o == peer))
            .map(|p| p.owner)
        {
            mailbox.plates.remove(&nameplate);
            drop(mailbox);
            return self.mail(owner, &Mail::Confirm { nameplate, proof });
        }
        drop(mailbox);
        // We are the issuer: the helper passes the claimant's proof on.
        let mut issued = lock(&self.inner.issued);
        let Some(code) = issued.codes.get(&(peer, nameplate)) else {
            drop(issued);
            self.inner.counters.punch_answers_unexpected.bump();
            return;
        };
        let good = code
            .answered
            .as_deref()
            .is_some_and(|k| key_proof(k) == proof);
        let code = issued.codes.remove(&(peer, nameplate));
        drop(issued);
        if good {
            self.inner.counters.codes_redeemed.bump();
        } else if let Some(code) = code {
            self.failed_guess(code.token, nameplate);
        }
    }

    /// Issuer: a wrong code was tried; the code is burned and its ticket revoked.
    fn failed_guess(&self, token: String, nameplate: u32) {
        self.inner.counters.code_guesses_failed.bump();
        tracing::warn!(
            nameplate,
            "someone tried a wrong code for a code of ours; it is used up now (issue a new one)"
        );
        let store = self.inner.store.clone();
        self.inner.tracker.spawn(async move {
            let _ = store.run(move |s| s.meta().revoke_ticket(&token)).await;
        });
    }

    /// Issuer: someone opened our nameplate at `helper`.
    fn issuer_opened(&self, helper: AgentId, nameplate: u32, from: &str, pake: &str) {
        let now = mono_now();
        let mut issued = lock(&self.inner.issued);
        let Some(code) = issued
            .codes
            .get_mut(&(helper, nameplate))
            .filter(|c| c.answered.is_none() && c.expires > now)
        else {
            drop(issued);
            self.inner.counters.punch_answers_unexpected.bump();
            return;
        };
        let (state, ours) = pake_start(&code.code);
        let key = hex::decode(pake)
            .ok()
            .and_then(|theirs| state.finish(&theirs).ok());
        let Some(key) = key else {
            let token = code.token.clone();
            issued.codes.remove(&(helper, nameplate));
            drop(issued);
            return self.failed_guess(token, nameplate);
        };
        let sealed = cipher(&key)
            .encrypt(&[0u8; 12].into(), code.ticket.as_bytes())
            .unwrap_or_default();
        code.answered = Some(key);
        drop(issued);
        tracing::info!(nameplate, claimant = from, "a code of ours was opened");
        self.mail(
            helper,
            &Mail::Answer {
                nameplate,
                pake: hex::encode(ours),
                sealed: hex::encode(sealed),
            },
        );
        // No confirmation in time: a failed guess.
        let this = self.clone();
        self.inner.tracker.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(CONFIRM_WAIT) => {}
                _ = this.inner.cancel.cancelled() => return,
            }
            let left = lock(&this.inner.issued).codes.remove(&(helper, nameplate));
            if let Some(code) = left {
                this.failed_guess(code.token, nameplate);
            }
        });
    }

    /// Issues a code for `ticket` (its one-line form and token): a nameplate at one of our
    /// brokers, and two random words.
    pub async fn issue_code(&self, ticket: String, token: String) -> Result<String, CodeError> {
        let helpers = super::advertise::brokers(&self.inner.endpoint, true);
        let Some(helper) = helpers.first().copied() else {
            return Err(CodeError::NoHelper);
        };
        if lock(&self.inner.issued).codes.len() >= MAX_ISSUED {
            let now = mono_now();
            lock(&self.inner.issued)
                .codes
                .retain(|_, c| c.expires > now);
            if lock(&self.inner.issued).codes.len() >= MAX_ISSUED {
                return Err(CodeError::TooMany);
            }
        }
        let id = self
            .inner
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.inner.issued).claims.insert(id, tx);
        self.mail(helper, &Mail::Claim { id });
        let answer = tokio::time::timeout(ASK_WAIT, rx).await;
        lock(&self.inner.issued).claims.remove(&id);
        let nameplate = match answer {
            Ok(Ok(Ok(n))) => n,
            Ok(Ok(Err(why))) => return Err(CodeError::Mailbox(why)),
            _ => return Err(CodeError::Mailbox("no answer".into())),
        };
        let mut rng = rand::thread_rng();
        let code = format!(
            "{nameplate}-{}-{}",
            WORDS[rng.gen_range(0..256)],
            WORDS[rng.gen_range(0..256)]
        );
        lock(&self.inner.issued).codes.insert(
            (helper, nameplate),
            IssuedCode {
                code: code.clone(),
                token,
                ticket,
                expires: mono_now() + CODE_LIFETIME,
                answered: None,
            },
        );
        Ok(code)
    }

    /// Redeems a code: the ticket it stands for (then link with it as with any ticket).
    pub async fn redeem_code(&self, text: &str) -> Result<crate::ticket::Ticket, CodeError> {
        let (nameplate, code) = parse(text).ok_or_else(|| CodeError::Malformed(text.to_owned()))?;
        let endpoint = &self.inner.endpoint;
        let helpers: Vec<AgentId> = endpoint
            .linked()
            .into_iter()
            .filter(|p| endpoint.link_view(p).is_some_and(|v| v.via != Via::Relayed))
            .take(super::MAX_BROKERS)
            .collect();
        if helpers.is_empty() {
            return Err(CodeError::NoHelper);
        }
        let mut why = String::from("no linked peer holds that nameplate");
        for helper in helpers {
            let (state, ours) = pake_start(&code);
            let id = self
                .inner
                .next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            lock(&self.inner.claiming).waiting.insert(id, (helper, tx));
            self.mail(
                helper,
                &Mail::Open {
                    id,
                    nameplate,
                    pake: hex::encode(ours),
                },
            );
            let answer = tokio::time::timeout(ASK_WAIT, rx).await;
            lock(&self.inner.claiming).waiting.remove(&id);
            let (theirs, sealed) = match answer {
                Ok(Ok(Ok(answer))) => answer,
                Ok(Ok(Err(e))) => {
                    why = e;
                    continue;
                }
                _ => continue,
            };
            let key = state.finish(&theirs).map_err(|_| CodeError::Wrong)?;
            let line = cipher(&key)
                .decrypt(&[0u8; 12].into(), sealed.as_slice())
                .map_err(|_| CodeError::Wrong)?;
            self.mail(
                helper,
                &Mail::Confirm {
                    nameplate,
                    proof: key_proof(&key),
                },
            );
            let line = String::from_utf8(line).map_err(|_| CodeError::Wrong)?;
            return crate::ticket::Ticket::parse(&line).map_err(|_| CodeError::Wrong);
        }
        Err(CodeError::Mailbox(why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_told_from_tickets() {
        assert!(looks_like_code("7-purple-sausage"));
        assert!(looks_like_code(" 123-Acorn-zebra "));
        assert!(!looks_like_code("7-purple"));
        assert!(!looks_like_code("0-purple-sausage"));
        assert!(!looks_like_code("7-purple-notaword"));
        assert!(!looks_like_code("kith-ticket:abc"));
    }

    #[test]
    fn the_right_code_opens_the_ticket_and_a_wrong_one_does_not() {
        let (a, a_msg) = pake_start("7-purple-sausage");
        let (b, b_msg) = pake_start("7-purple-sausage");
        let (wrong, w_msg) = pake_start("7-purple-acorn");
        let kb = b.finish(&a_msg).unwrap();
        let ka = a.finish(&b_msg).unwrap();
        assert_eq!(ka, kb);
        let sealed = cipher(&kb)
            .encrypt(&[0u8; 12].into(), &b"ticket"[..])
            .unwrap();
        assert_eq!(
            cipher(&ka)
                .decrypt(&[0u8; 12].into(), sealed.as_slice())
                .unwrap(),
            b"ticket"
        );
        let kw = wrong.finish(&b_msg).unwrap();
        assert!(cipher(&kw)
            .decrypt(&[0u8; 12].into(), sealed.as_slice())
            .is_err());
        assert_ne!(key_proof(&kw), key_proof(&kb));
        let _ = w_msg;
    }
}
