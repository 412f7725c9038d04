//! Datt payment requests (HTTP 402) for priced file items.
//!
//! A node may price the file items it serves (`[value] price_per_mib`, free by default). A
//! requester asks first (`{target: "datt", action: "get", object: {hash}}`); the server
//! answers `free`, `refused` (with why: no tally shared, the file is not here, and how to
//! open a tally), or a payment request: a `pend` chit on the tally the two users share, with
//! `ref: {"request": {"file", "bytes"}}` (Datt's "request payment"). The requester pays it
//! automatically within its budget (`max_price`, `--max-price`) with the signed `good` chit
//! ("send payment"); the chain's `ack` is Datt's "payment ack". Once the chit is chained, the
//! server grants the peer that many bytes of items, and its file exchange serves items only
//! within what a peer was granted (the `ServeGate` hook of `crate::exchange`).
//!
//! Custody is priced the same way (`[value] custody_price_per_mib_day`): before a persist the
//! owner asks `{target: "datt", action: "keep", object: {hash, bytes, days}}`; the payment
//! request's `ref` is `{"request": {"custody", "bytes", "days"}}`; once paid, the custodian
//! takes custody of that content from that peer, with no more bytes of copy than were paid
//! for (once). A retrieve from a site that prices its items pays for the copy as a file get
//! does (the quote names the copy's size). What a node sends by its own commands (pull
//! requests, retention checks) is never priced.

use super::{ledger, Tallies, TallyError};
use crate::exchange::ServeGate;
use kith_crypto::identity::AgentId;
use kith_store::meta::{ChitRow, TallyRow};
use kith_store::ContentHash;
use kith_value::message::{Body, Message};
use kith_value::{new_uuid, Chad, Chit};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Mutex;

/// Most quotes awaited at once (a bound on what `buy` keeps).
const MAX_QUOTES: usize = 1024;
const MIB: u64 = 1 << 20;

/// What a server said about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Quote {
    Pending,
    Free,
    Refused(String),
}

/// Datt's state: bytes each peer paid for, and quotes awaited.
#[derive(Debug, Default)]
pub(crate) struct Datt {
    allowances: Mutex<HashMap<AgentId, u64>>,
    /// Custody paid for, by payer and content: bytes of copy. Every entry was paid for, and
    /// goes when the custody is taken.
    custody: Mutex<HashMap<(AgentId, String), u64>>,
    quotes: Mutex<HashMap<(AgentId, String), Quote>>,
}

/// What a payment request is for (the key under `ref.request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    /// File items (`file`).
    File,
    /// Encrypted custody (`custody`).
    Custody,
}

impl Request {
    fn key(self) -> &'static str {
        match self {
            Request::File => "file",
            Request::Custody => "custody",
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ServeGate for Tallies {
    fn may_send(&self, peer: &AgentId) -> bool {
        if self.inner.settings.value.price_per_mib == 0 {
            return true;
        }
        let allowed = lock(&self.inner.datt.allowances)
            .get(peer)
            .is_some_and(|left| *left > 0);
        if !allowed {
            self.inner.counters.datt_unpaid_items_refused.bump();
        }
        allowed
    }

    fn sent(&self, peer: &AgentId, bytes: u64) {
        if self.inner.settings.value.price_per_mib == 0 {
            return;
        }
        if let Some(left) = lock(&self.inner.datt.allowances).get_mut(peer) {
            *left = left.saturating_sub(bytes);
        }
    }

    fn custody_allowance(&self, payer: Option<&AgentId>, content: &ContentHash) -> Option<u64> {
        if self.inner.settings.value.custody_price_per_mib_day == 0 {
            return None;
        }
        let paid = payer.and_then(|payer| {
            lock(&self.inner.datt.custody)
                .get(&(*payer, content.to_hex()))
                .copied()
        });
        if paid.is_none() {
            self.inner.counters.datt_unpaid_custody_refused.bump();
        }
        Some(paid.unwrap_or(0))
    }

    fn custody_taken(&self, payer: &AgentId, content: &ContentHash) {
        lock(&self.inner.datt.custody).remove(&(*payer, content.to_hex()));
    }
}

impl Tallies {
    /// The first open tally with `peer`'s site, if any.
    async fn tally_with(&self, peer: AgentId) -> Result<Option<TallyRow>, TallyError> {
        let rows = self.inner.store.run(|s| s.meta().value_tallies()).await?;
        Ok(rows
            .into_iter()
            .find(|r| r.partner_agent == peer.to_string() && r.state == "open"))
    }

    /// The price of `bytes` of items, in units (at least 1 when priced).
    fn price_of(&self, bytes: u64) -> u64 {
        let per_mib = self.inner.settings.value.price_per_mib;
        if per_mib == 0 {
            return 0;
        }
        (u128::from(bytes) * u128::from(per_mib))
            .div_ceil(u128::from(MIB))
            .clamp(1, u128::from(kith_value::tally::MAX_UNITS)) as u64
    }

    /// The price of keeping `bytes` for `days` days, in units (at least 1 when priced).
    fn custody_price_of(&self, bytes: u64, days: u64) -> u64 {
        let per = self.inner.settings.value.custody_price_per_mib_day;
        if per == 0 {
            return 0;
        }
        (u128::from(bytes) * u128::from(per) * u128::from(days))
            .div_ceil(u128::from(MIB))
            .clamp(1, u128::from(kith_value::tally::MAX_UNITS)) as u64
    }

    /// Before fetching `hash` from `from`: asks its price and pays it if it is at most
    /// `max_price` units. Free files and paid ones return `Ok`; a price over the budget, a
    /// refusal or no shared tally is an error that says what to do.
    pub async fn buy(
        &self,
        hash: ContentHash,
        from: AgentId,
        max_price: u64,
    ) -> Result<(), TallyError> {
        let hex = hash.to_hex();
        let body = Body::DattGet { hash: hex.clone() };
        self.settle(from, hex, body, Request::File, max_price).await
    }

    /// Before persisting the content the stored push request `push` names with `to`: asks
    /// what keeping it `days` days costs there and pays it if it is at most `max_price`
    /// units (as [`Tallies::buy`]).
    pub async fn buy_custody(
        &self,
        push: ContentHash,
        to: AgentId,
        days: u64,
        max_price: u64,
    ) -> Result<(), TallyError> {
        let (content, bytes) = self
            .inner
            .store
            .run(move |s| {
                let item = s.blobs().get_item(&push)?;
                let content = kith_crypto::custody::PushRequest::parse(&item.content)
                    .map(|p| ContentHash(p.content_hash))
                    .map_err(|e| kith_store::StoreError::Corrupt {
                        hash: push,
                        reason: e.to_string(),
                    })?;
                let bytes = s.blobs().walk_file(&content)?.size;
                Ok::<_, kith_store::StoreError>((content, bytes))
            })
            .await
            .map_err(|e| TallyError::BadInput(format!("cannot price the custody: {e}")))?;
        let hex = content.to_hex();
        let body = Body::DattKeep {
            hash: hex.clone(),
            bytes,
            days,
        };
        self.settle(to, hex, body, Request::Custody, max_price)
            .await
    }

    /// Asks `from` what `body` costs and pays it within `max_price`.
    async fn settle(
        &self,
        from: AgentId,
        hex: String,
        body: Body,
        kind: Request,
        max_price: u64,
    ) -> Result<(), TallyError> {
        let Some(row) = self.tally_with(from).await? else {
            return Err(TallyError::NotFound(format!(
                "no open tally with {from}, so nothing can be paid there: ask its owner for a \
                 tally ticket (`kith tally ticket`) and open it (`kith tally open TICKET`)"
            )));
        };
        {
            let mut quotes = lock(&self.inner.datt.quotes);
            if quotes.len() >= MAX_QUOTES {
                quotes.retain(|_, q| *q == Quote::Pending);
            }
            quotes.insert((from, hex.clone()), Quote::Pending);
        }
        let msg = Message {
            to: Chad::parse(&row.partner)?,
            from: self.chad_of(&row.cuid),
            body,
        };
        self.send(from, &msg).await?;
        let (tally, side) = (row.uuid.clone(), row.side.clone());
        let answer = self
            .wait_for(super::ANSWER_WAIT, || {
                let (tally, side, hex) = (tally.clone(), side.clone(), hex.clone());
                async move {
                    let quote = lock(&self.inner.datt.quotes)
                        .get(&(from, hex.clone()))
                        .cloned();
                    if let Some(q) = quote.filter(|q| *q != Quote::Pending) {
                        return Some(Err(q));
                    }
                    let pending = self
                        .inner
                        .store
                        .run(|s| s.meta().value_chits_with_status("pend_in", 10_000))
                        .await
                        .ok()?;
                    pending
                        .into_iter()
                        .find(|c| {
                            c.tally == tally
                                && c.side == side
                                && requested(c, kind) == Some(hex.clone())
                        })
                        .map(Ok)
                }
            })
            .await;
        lock(&self.inner.datt.quotes).remove(&(from, hex.clone()));
        let invoice = match answer {
            Some(Ok(invoice)) => invoice,
            Some(Err(Quote::Free)) => return Ok(()),
            Some(Err(Quote::Refused(why))) => return Err(TallyError::PartnerRefused(why)),
            Some(Err(Quote::Pending)) | None => {
                return Err(TallyError::Timeout(format!(
                    "{from} did not quote {hex} within {:?}",
                    super::ANSWER_WAIT
                )))
            }
        };
        let units = invoice.units.max(0) as u64;
        if units > max_price {
            let _ = self
                .answer(crate::api::value::ChitAnswerBody {
                    id: invoice.uuid.clone(),
                    accept: false,
                })
                .await;
            let what = match kind {
                Request::File => "",
                Request::Custody => "keeping ",
            };
            return Err(TallyError::BadInput(format!(
                "{from} asks {units} units for {what}{hex}, more than the {max_price} you \
                 allow: nothing paid (raise --max-price, or max_price in [value] of kith.toml)"
            )));
        }
        let chit = ledger::chit_of(&invoice)?;
        self.pay_chit(&row, chit).await?;
        Ok(())
    }

    /// A peer asks for a file: quote it.
    pub(super) async fn on_datt(&self, peer: AgentId, msg: Message) -> Result<(), TallyError> {
        match msg.body {
            Body::DattAnswer {
                hash,
                answer,
                reason,
            } => {
                let mut quotes = lock(&self.inner.datt.quotes);
                if let Some(q) = quotes.get_mut(&(peer, hash)) {
                    *q = if answer == "free" {
                        Quote::Free
                    } else {
                        Quote::Refused(reason.unwrap_or_else(|| "refused".into()))
                    };
                }
                Ok(())
            }
            Body::DattGet { hash } => self.quote(peer, msg.from, msg.to, hash).await,
            Body::DattKeep { hash, bytes, days } => {
                let ask = Ask { hash, bytes, days };
                self.quote_custody(peer, msg.from, msg.to, ask).await
            }
            _ => Ok(()),
        }
    }

    async fn quote(
        &self,
        peer: AgentId,
        from: Chad,
        me: Chad,
        hex: String,
    ) -> Result<(), TallyError> {
        let answer = Answer::new(&from, &me, &hex);
        if from.agent != peer.to_string() {
            self.inner.counters.value_refused_not_party.bump();
            return Ok(());
        }
        let per_mib = self.inner.settings.value.price_per_mib;
        if per_mib == 0 {
            self.reply(peer, &answer.free()).await;
            return Ok(());
        }
        let Ok(hash) = hex.parse::<ContentHash>() else {
            return Ok(());
        };
        // A file here, or copies kept in custody (a retrieve: the largest copy's size).
        let size = self
            .inner
            .store
            .run(move |s| {
                if let Some(file) = s.meta().get_file(&hash)? {
                    return Ok(Some(file.size));
                }
                let copies = s.meta().custody_of(&hash)?;
                Ok::<_, kith_store::MetaError>(copies.iter().map(|c| c.size).max())
            })
            .await?;
        let Some(size) = size else {
            let why = format!("{hex} is not stored here");
            self.reply(peer, &answer.refused(why)).await;
            return Ok(());
        };
        let Some(row) = self.tally_with(peer).await? else {
            let why = no_tally(&format!("{per_mib} units per MiB"));
            self.inner.counters.datt_no_tally.bump();
            self.reply(peer, &answer.refused(why)).await;
            return Ok(());
        };
        let reference = json!({"request": {"file": hex, "bytes": size}});
        let memo = format!("file {hex}");
        self.request_payment(peer, &row, self.price_of(size), memo, reference)
            .await
    }

    /// A peer asks us to keep a file in custody for some days: quote it.
    async fn quote_custody(
        &self,
        peer: AgentId,
        from: Chad,
        me: Chad,
        ask: Ask,
    ) -> Result<(), TallyError> {
        let answer = Answer::new(&from, &me, &ask.hash);
        if from.agent != peer.to_string() {
            self.inner.counters.value_refused_not_party.bump();
            return Ok(());
        }
        let per = self.inner.settings.value.custody_price_per_mib_day;
        if per == 0 {
            self.reply(peer, &answer.free()).await;
            return Ok(());
        }
        let Some(row) = self.tally_with(peer).await? else {
            let why = no_tally(&format!("{per} units per MiB and day of custody"));
            self.inner.counters.datt_no_tally.bump();
            self.reply(peer, &answer.refused(why)).await;
            return Ok(());
        };
        let units = self.custody_price_of(ask.bytes, ask.days);
        let memo = format!("custody of {} for {} days", ask.hash, ask.days);
        let reference = json!({"request": {
            "custody": ask.hash, "bytes": ask.bytes, "days": ask.days,
        }});
        self.request_payment(peer, &row, units, memo, reference)
            .await
    }

    /// Records and sends a payment request (a `pend` chit, Datt's "request payment") for
    /// `units` on the tally `row`.
    async fn request_payment(
        &self,
        peer: AgentId,
        row: &TallyRow,
        units: u64,
        memo: String,
        reference: serde_json::Value,
    ) -> Result<(), TallyError> {
        let side = ledger::side_of(row);
        let chit = Chit::tran(
            &row.uuid,
            new_uuid(&mut rand::rngs::OsRng),
            side.other(),
            units,
            self.now_millis(),
            Some(memo),
            Some(reference),
        );
        let record = ledger::row_of(row, &chit, "pend_out", None, self.now());
        self.inner
            .store
            .run(move |s| s.meta().value_put_chit(&record))
            .await?;
        let request = Message {
            to: Chad::parse(&row.partner)?,
            from: self.chad_of(&row.cuid),
            body: Body::Pend { chit },
        };
        self.reply(peer, &request).await;
        Ok(())
    }

    /// A payment of one of our requests was chained: the peer may fetch what it paid for.
    pub(super) fn grant(&self, peer: AgentId, chit: &Chit) {
        let bytes = chit
            .reference
            .as_ref()
            .and_then(|r| r.get("request"))
            .and_then(|r| r.get("bytes"))
            .and_then(serde_json::Value::as_u64);
        let custody = chit
            .reference
            .as_ref()
            .and_then(|r| r.get("request"))
            .and_then(|r| r.get("custody"))
            .and_then(serde_json::Value::as_str);
        if let (Some(bytes), Some(content)) = (bytes, custody) {
            // The copy adds item headers and authentication tags to the file's own bytes.
            let slack = (bytes / 50).max(64 * 1024);
            let mut paid = lock(&self.inner.datt.custody);
            let left = paid.entry((peer, content.to_owned())).or_default();
            *left = left.saturating_add(bytes.saturating_add(slack));
            self.inner.counters.datt_payments_received.bump();
        } else if let Some(bytes) = bytes {
            // Lists and type bytes add a little to the file's own bytes.
            let slack = (bytes / 50).max(64 * 1024);
            let mut allowances = lock(&self.inner.datt.allowances);
            let left = allowances.entry(peer).or_default();
            *left = left.saturating_add(bytes.saturating_add(slack));
            self.inner.counters.datt_payments_received.bump();
        }
    }
}

/// The content an invoice asks payment for, if it is a Datt request of that kind.
fn requested(chit: &ChitRow, kind: Request) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_str(&chit.doc).ok()?;
    doc.get("ref")?
        .get("request")?
        .get(kind.key())?
        .as_str()
        .map(str::to_owned)
}

/// What a custody request asks for.
pub(super) struct Ask {
    hash: String,
    bytes: u64,
    days: u64,
}

/// Why a priced request from a site that shares no tally with ours is refused, and what to do.
fn no_tally(price: &str) -> String {
    format!(
        "this site charges {price} and shares no open tally with yours: ask its owner for a \
         tally ticket (`kith tally ticket`) and open it (`kith tally open TICKET`)"
    )
}

/// The answers to a Datt request that need no payment request.
struct Answer<'a> {
    to: &'a Chad,
    me: &'a Chad,
    hash: &'a str,
}

impl<'a> Answer<'a> {
    fn new(to: &'a Chad, me: &'a Chad, hash: &'a str) -> Answer<'a> {
        Answer { to, me, hash }
    }

    fn message(&self, answer: &str, reason: Option<String>) -> Message {
        Message {
            to: self.to.clone(),
            from: self.me.clone(),
            body: Body::DattAnswer {
                hash: self.hash.to_owned(),
                answer: answer.into(),
                reason,
            },
        }
    }

    fn free(&self) -> Message {
        self.message("free", None)
    }

    fn refused(&self, why: String) -> Message {
        self.message("refused", Some(why))
    }
}
