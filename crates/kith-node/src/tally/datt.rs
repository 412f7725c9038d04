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
    quotes: Mutex<HashMap<(AgentId, String), Quote>>,
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
            body: Body::DattGet { hash: hex.clone() },
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
                                && requested_file(c) == Some(hex.clone())
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
            return Err(TallyError::BadInput(format!(
                "{from} asks {units} units for {hex}, more than the {max_price} you allow: \
                 nothing paid (raise --max-price, or max_price in [value] of kith.toml)"
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
        let answer = |answer: &str, reason: Option<String>| Message {
            to: from.clone(),
            from: me.clone(),
            body: Body::DattAnswer {
                hash: hex.clone(),
                answer: answer.into(),
                reason,
            },
        };
        if from.agent != peer.to_string() {
            self.inner.counters.value_refused_not_party.bump();
            return Ok(());
        }
        if self.inner.settings.value.price_per_mib == 0 {
            self.reply(peer, &answer("free", None)).await;
            return Ok(());
        }
        let Ok(hash) = hex.parse::<ContentHash>() else {
            return Ok(());
        };
        let Some(file) = self
            .inner
            .store
            .run(move |s| s.meta().get_file(&hash))
            .await?
        else {
            self.reply(
                peer,
                &answer("refused", Some(format!("{hex} is not stored here"))),
            )
            .await;
            return Ok(());
        };
        let Some(row) = self.tally_with(peer).await? else {
            self.inner.counters.datt_no_tally.bump();
            let why = format!(
                "this site charges {} units per MiB and shares no open tally with yours: ask \
                 its owner for a tally ticket (`kith tally ticket`) and open it (`kith tally \
                 open TICKET`)",
                self.inner.settings.value.price_per_mib
            );
            self.reply(peer, &answer("refused", Some(why))).await;
            return Ok(());
        };
        let units = self.price_of(file.size);
        let side = ledger::side_of(&row);
        let chit = Chit::tran(
            &row.uuid,
            new_uuid(&mut rand::rngs::OsRng),
            side.other(),
            units,
            self.now_millis(),
            Some(format!("file {hex}")),
            Some(json!({"request": {"file": hex, "bytes": file.size}})),
        );
        let record = ChitRow {
            tally: row.uuid.clone(),
            side: row.side.clone(),
            uuid: chit.uuid.clone(),
            doc: chit.to_json().to_string(),
            by_side: chit.by.as_str().into(),
            units: units as i64,
            status: "pend_out".into(),
            chain_idx: None,
            chain_digest: None,
            created_at: self.now(),
        };
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
        if let Some(bytes) = bytes {
            // Lists and type bytes add a little to the file's own bytes.
            let slack = (bytes / 50).max(64 * 1024);
            let mut allowances = lock(&self.inner.datt.allowances);
            let left = allowances.entry(peer).or_default();
            *left = left.saturating_add(bytes.saturating_add(slack));
            self.inner.counters.datt_payments_received.bump();
        }
    }
}

/// The file an invoice asks payment for, if it is a Datt request.
fn requested_file(chit: &ChitRow) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_str(&chit.doc).ok()?;
    doc.get("ref")?
        .get("request")?
        .get("file")?
        .as_str()
        .map(str::to_owned)
}
