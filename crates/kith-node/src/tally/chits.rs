//! Chits: payments, invoices and their answers, refusals, the chain's messages, and
//! resynchronisation. Every change runs in the tally's transaction (`value_tally_tx`), and
//! messages leave only after it committed.

use super::{ledger, users, Tallies, TallyError};
use crate::api::value::{ChitAnswerBody, ChitView, PayBody, TallyIdBody, TallyView};
use kith_crypto::identity::AgentId;
use kith_store::meta::{MetaError, TallyRow};
use kith_value::chain::{Keys, Out, Outcome, Refusal};
use kith_value::chit::ChitType;
use kith_value::dialog::TallyState;
use kith_value::message::{Body, Message};
use kith_value::{new_uuid, Chad, Chit, Ledger, Side, Tally};
use serde_json::{json, Value};

/// What a chain operation does to a loaded ledger.
type Op<'a> = dyn FnMut(&mut Ledger, &Keys, &dyn kith_value::chain::Confirmed) -> Result<Outcome, Refusal>
    + Send
    + 'a;

fn keys_of(row: &TallyRow) -> Result<Keys, MetaError> {
    let doc: Value = serde_json::from_str(&row.doc)
        .map_err(|e| MetaError::BadRow(format!("tally {}: {e}", row.uuid)))?;
    let tally =
        Tally::from_json(doc).map_err(|e| MetaError::BadRow(format!("tally {}: {e}", row.uuid)))?;
    let key = |side| {
        tally
            .public(side)
            .map_err(|e| MetaError::BadRow(format!("tally {}: {e}", row.uuid)))
    };
    Ok(Keys {
        stock: key(Side::Stock)?,
        foil: key(Side::Foil)?,
    })
}

/// Whether a chained chit closes the tally (`set` with `ref.close`).
fn closes(chit: &Chit) -> bool {
    chit.kind == ChitType::Set
        && chit
            .reference
            .as_ref()
            .and_then(|r| r.get("close"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
}

impl Tallies {
    /// Runs `op` on the ledger of `(uuid, side)` in its transaction and saves the result:
    /// the outcome, or the refusal (nothing changed).
    async fn chain_op(
        &self,
        uuid: &str,
        side: Side,
        op: Box<Op<'static>>,
    ) -> Result<Result<(Outcome, TallyRow), Refusal>, TallyError> {
        let (uuid, now) = (uuid.to_owned(), self.now());
        let mut op = op;
        let result = self
            .inner
            .store
            .run(move |s| {
                let mut done: Option<Result<Outcome, Refusal>> = None;
                let row = s.meta().value_tally_tx(&uuid, side.as_str(), &mut |tx| {
                    done = None;
                    if !TallyState::parse(&tx.row.state).is_some_and(TallyState::carries_chits) {
                        done = Some(Err(Refusal::WrongTally));
                        return Err(MetaError::Aborted("the tally is not open".into()));
                    }
                    let keys = keys_of(&tx.row)?;
                    let mut ledger = ledger::load(tx)?;
                    let confirmed = ledger::TxConfirmed::new(tx);
                    let result = op(&mut ledger, &keys, &confirmed);
                    let (tx, error) = confirmed.into_inner();
                    if let Some(error) = error {
                        return Err(error);
                    }
                    match result {
                        Ok(outcome) => {
                            let closing = ledger
                                .settled
                                .iter()
                                .chain(ledger.tail.iter())
                                .any(|e| closes(&e.chit));
                            ledger::save(tx, &mut ledger, &outcome, now)?;
                            let mut row = tx.row.clone();
                            if closing && row.state == "open" {
                                row.state = "closing".into();
                            }
                            if row.state == "closing" && row.balance == 0 && ledger.tail.is_empty()
                            {
                                row.state = "close".into();
                            }
                            tx.set_row(row);
                            done = Some(Ok(outcome));
                            Ok(())
                        }
                        Err(refusal) => {
                            done = Some(Err(refusal));
                            Err(MetaError::Aborted("refused".into()))
                        }
                    }
                });
                match (row, done) {
                    (Ok(Some(row)), Some(Ok(outcome))) => Ok(Ok((outcome, row))),
                    (_, Some(Err(refusal))) => Ok(Err(refusal)),
                    (Ok(None), _) => Err(MetaError::Aborted(format!("no tally {uuid}"))),
                    (Err(e), _) => Err(e),
                    (Ok(Some(_)), None) => Err(MetaError::Aborted("no outcome".into())),
                }
            })
            .await?;
        if let Ok((outcome, _)) = &result {
            let chained = outcome
                .out
                .iter()
                .filter(|o| matches!(o, Out::Good { .. }))
                .count();
            self.inner.counters.chits_chained.add(chained as u64);
        }
        Ok(result)
    }

    /// The messages for a ledger outcome, from our side of `row`.
    fn messages(&self, row: &TallyRow, outs: Vec<Out>) -> Vec<Message> {
        let to = Chad::parse(&row.partner).unwrap_or_else(|_| Chad {
            cuid: String::new(),
            agent: row.partner_agent.clone(),
            host: None,
            port: None,
        });
        let from = self.chad_of(&row.cuid);
        outs.into_iter()
            .map(|out| {
                let body = match out {
                    Out::Good { chit, at, conf } => Body::Good {
                        chit,
                        at: Some(at),
                        conf: Some(conf),
                    },
                    Out::Chain(msg) => Body::Chain {
                        tally: row.uuid.clone(),
                        msg,
                    },
                    Out::Refuse { uuid, reason } => Body::Void {
                        tally: row.uuid.clone(),
                        uuid,
                        reason: Some(reason.to_string()),
                    },
                };
                Message {
                    to: to.clone(),
                    from: from.clone(),
                    body,
                }
            })
            .collect()
    }

    async fn tally_rows(&self) -> Result<Vec<TallyRow>, TallyError> {
        Ok(self.inner.store.run(|s| s.meta().value_tallies()).await?)
    }

    async fn resolve(&self, user: Option<&str>, partner: &str) -> Result<TallyRow, TallyError> {
        let rows = self.tally_rows().await?;
        super::resolve::resolve(rows, user, partner, |r| super::view_of(r).partner_name)
    }

    /// Signs `chit` (ours) and chains it; returns once the partner confirmed it.
    pub(super) async fn pay_chit(
        &self,
        row: &TallyRow,
        mut chit: Chit,
    ) -> Result<ChitView, TallyError> {
        let key = users::load_key(&self.inner.settings.keys_dir, &row.cuid)?;
        chit.sign_with(&key, &mut rand::rngs::OsRng)?;
        let side = ledger::side_of(row);
        let peer: AgentId = row.partner_agent.parse().map_err(|_| {
            TallyError::NotFound(format!("bad partner agent {}", row.partner_agent))
        })?;
        // The partner must be reachable before anything is chained: a payment that cannot be
        // delivered now changes nothing.
        self.inner.endpoint.ensure_link(peer).await?;
        let local = chit.clone();
        let result = self
            .chain_op(
                &row.uuid,
                side,
                Box::new(move |ledger, keys, _| ledger.local(local.clone(), keys)),
            )
            .await?;
        let (outcome, saved) = result.map_err(TallyError::Refused)?;
        for msg in self.messages(&saved, outcome.out) {
            if let Err(e) = self.send(peer, &msg).await {
                return Err(TallyError::Timeout(format!(
                    "chit {} is in the ledger but not delivered yet ({e}); it is sent again \
                     when the partner is back",
                    chit.uuid
                )));
            }
        }
        let (uuid, side_s, chit_id) = (row.uuid.clone(), side.as_str(), chit.uuid.clone());
        let confirmed = self
            .wait_for(super::ANSWER_WAIT, || {
                let (uuid, chit_id) = (uuid.clone(), chit_id.clone());
                async move {
                    self.inner
                        .store
                        .run(move |s| {
                            let tally = s.meta().value_tally(&uuid, side_s)?;
                            let chits = s.meta().value_chit(&chit_id)?;
                            Ok::<_, MetaError>((tally, chits))
                        })
                        .await
                        .ok()
                        .and_then(|(tally, chits)| {
                            let tally = tally?;
                            chits.into_iter().find(|c| {
                                c.tally == tally.uuid
                                    && c.side == tally.side
                                    && c.status == "chained"
                                    && c.chain_idx.is_some_and(|i| i <= tally.conf_index)
                            })
                        })
                }
            })
            .await;
        match confirmed {
            Some(chit) => Ok(super::chit_view(&chit)),
            None => Err(TallyError::Timeout(format!(
                "the partner has not acknowledged chit {} within {:?}; it stays in the ledger \
                 and is sent again until it does",
                chit.uuid,
                super::ANSWER_WAIT
            ))),
        }
    }

    /// Pays a partner: a signed `good` chit; returns once the partner acknowledged it.
    /// Refused at once, changing nothing, when it would pass the credit the partner grants.
    pub async fn pay(&self, body: PayBody) -> Result<ChitView, TallyError> {
        if body.units == 0 {
            return Err(TallyError::BadInput("pay at least 1 unit".into()));
        }
        let row = self.resolve(body.user.as_deref(), &body.partner).await?;
        let side = ledger::side_of(&row);
        let chit = Chit::tran(
            &row.uuid,
            new_uuid(&mut rand::rngs::OsRng),
            side,
            body.units,
            self.now_millis(),
            body.memo.clone(),
            None,
        );
        self.pay_chit(&row, chit).await
    }

    /// Invoices a partner: an unsigned chit pledging the partner's value, for it to accept
    /// or refuse.
    pub async fn invoice(&self, body: PayBody) -> Result<ChitView, TallyError> {
        self.request(body, None).await
    }

    /// Sends a payment request (an invoice) with `reference` (a Datt request names what it
    /// pays for).
    pub(crate) async fn request(
        &self,
        body: PayBody,
        reference: Option<Value>,
    ) -> Result<ChitView, TallyError> {
        if body.units == 0 || body.units > kith_value::tally::MAX_UNITS {
            return Err(TallyError::BadInput(
                "invoice between 1 and 2^53-1 units".into(),
            ));
        }
        let row = self.resolve(body.user.as_deref(), &body.partner).await?;
        let side = ledger::side_of(&row);
        let chit = Chit::tran(
            &row.uuid,
            new_uuid(&mut rand::rngs::OsRng),
            side.other(),
            body.units,
            self.now_millis(),
            body.memo.clone(),
            reference,
        );
        let record = ledger::row_of(&row, &chit, "pend_out", None, self.now());
        let saved = record.clone();
        self.inner
            .store
            .run(move |s| s.meta().value_put_chit(&saved))
            .await?;
        let peer: AgentId = row.partner_agent.parse().map_err(|_| {
            TallyError::NotFound(format!("bad partner agent {}", row.partner_agent))
        })?;
        let msg = Message {
            to: Chad::parse(&row.partner)?,
            from: self.chad_of(&row.cuid),
            body: Body::Pend { chit },
        };
        self.send(peer, &msg).await?;
        Ok(super::chit_view(&record))
    }

    /// Accepts (signs and pays) or refuses an invoice addressed to our user.
    pub async fn answer(&self, body: ChitAnswerBody) -> Result<ChitView, TallyError> {
        let id = body.id.trim().to_owned();
        let lookup = id.clone();
        let rows = self
            .inner
            .store
            .run(move |s| s.meta().value_chit(&lookup))
            .await?;
        let Some(invoice) = rows.into_iter().find(|c| c.status == "pend_in") else {
            return Err(TallyError::NotFound(format!(
                "no invoice {id} waits for an answer here (`kith tally show PARTNER` lists a \
                 tally's chits)"
            )));
        };
        let side = Side::parse(&invoice.side).unwrap_or(Side::Foil);
        let Some(row) = self.row(&invoice.tally, side).await? else {
            return Err(TallyError::NotFound(format!("no tally {}", invoice.tally)));
        };
        let chit = ledger::chit_of(&invoice)?;
        if body.accept {
            return self.pay_chit(&row, chit).await;
        }
        let mut void = invoice.clone();
        void.status = "void".into();
        let saved = void.clone();
        self.inner
            .store
            .run(move |s| s.meta().value_put_chit(&saved))
            .await?;
        let peer: AgentId = row.partner_agent.parse().map_err(|_| {
            TallyError::NotFound(format!("bad partner agent {}", row.partner_agent))
        })?;
        let msg = Message {
            to: Chad::parse(&row.partner)?,
            from: self.chad_of(&row.cuid),
            body: Body::Void {
                tally: row.uuid.clone(),
                uuid: chit.uuid.clone(),
                reason: Some("refused by the payer".into()),
            },
        };
        self.send(peer, &msg).await?;
        Ok(super::chit_view(&void))
    }

    /// Closes a tally: a `set` chit with `ref: {"close": true}`; the tally is `close` once
    /// the balance is zero (`closing` until then, when chits may still settle it).
    pub async fn close(&self, body: TallyIdBody) -> Result<TallyView, TallyError> {
        let row = self.resolve(body.user.as_deref(), &body.tally).await?;
        let side = ledger::side_of(&row);
        let chit = Chit {
            tally: row.uuid.clone(),
            uuid: new_uuid(&mut rand::rngs::OsRng),
            by: side,
            kind: ChitType::Set,
            date: kith_value::time::format_millis(self.now_millis()),
            units: 0,
            reference: Some(json!({"close": true})),
            memo: None,
            sign: None,
        };
        self.pay_chit(&row, chit).await?;
        let row = self.row(&row.uuid, side).await?.unwrap_or(row);
        Ok(super::view_of(&row))
    }

    /// One tally, its chits and its document.
    pub async fn show(
        &self,
        body: TallyIdBody,
    ) -> Result<crate::api::value::TallyDetail, TallyError> {
        let row = self.resolve(body.user.as_deref(), &body.tally).await?;
        let (uuid, side) = (row.uuid.clone(), row.side.clone());
        let chits = self
            .inner
            .store
            .run(move |s| s.meta().value_chits(&uuid, &side, 10_000))
            .await?;
        Ok(crate::api::value::TallyDetail {
            view: super::view_of(&row),
            chit_list: chits.iter().map(super::chit_view).collect(),
            document: serde_json::from_str(&row.doc).unwrap_or(Value::Null),
        })
    }

    /// The tally (our side) a chit message from `peer` is about, if `peer` holds its other
    /// side and `to` is our user there.
    async fn partner_row(
        &self,
        peer: AgentId,
        msg: &Message,
    ) -> Result<Option<TallyRow>, TallyError> {
        let Some(uuid) = msg.tally_uuid() else {
            return Ok(None);
        };
        if msg.from.agent != peer.to_string() {
            return Ok(None);
        }
        for side in [Side::Stock, Side::Foil] {
            if let Some(row) = self.row(uuid, side).await? {
                if row.partner_agent == peer.to_string() && row.cuid == msg.to.cuid {
                    return Ok(Some(row));
                }
            }
        }
        Ok(None)
    }

    /// A chit message from a partner.
    pub(super) async fn on_chit(&self, peer: AgentId, msg: Message) -> Result<(), TallyError> {
        let Some(row) = self.partner_row(peer, &msg).await? else {
            self.inner.counters.value_refused_not_party.bump();
            tracing::info!(peer = %peer, "chit message about a tally it is not party to");
            return Ok(());
        };
        let side = ledger::side_of(&row);
        let uuid = row.uuid.clone();
        let result = match msg.body {
            Body::Pend { chit } => return self.on_invoice(row, chit).await,
            Body::Void { uuid: chit_id, .. } => {
                let lookup = chit_id.clone();
                let ours = self
                    .inner
                    .store
                    .run(move |s| s.meta().value_chit(&lookup))
                    .await?
                    .into_iter()
                    .find(|c| c.tally == row.uuid && c.side == row.side);
                match ours {
                    Some(mut invoice) if invoice.status == "pend_out" => {
                        invoice.status = "void".into();
                        self.inner
                            .store
                            .run(move |s| s.meta().value_put_chit(&invoice))
                            .await?;
                        return Ok(());
                    }
                    Some(c) if c.status == "chained" => {
                        self.chain_op(
                            &uuid,
                            side,
                            Box::new(move |l, _, _| Ok(l.refused(&chit_id))),
                        )
                        .await?
                    }
                    _ => return Ok(()),
                }
            }
            Body::Good { chit, at, .. } => {
                let paid = chit.clone();
                // A payment of one of our invoices must be that invoice.
                let lookup = chit.uuid.clone();
                let invoice = self
                    .inner
                    .store
                    .run(move |s| s.meta().value_chit(&lookup))
                    .await?
                    .into_iter()
                    .find(|c| c.tally == row.uuid && c.side == row.side && c.status == "pend_out");
                let names_request = chit
                    .reference
                    .as_ref()
                    .is_some_and(|r| r.get("request").is_some());
                match invoice {
                    Some(invoice) => {
                        let asked = ledger::chit_of(&invoice)?;
                        if asked.units != chit.units
                            || asked.by != chit.by
                            || asked.reference != chit.reference
                        {
                            self.inner.counters.value_refused_chit.bump();
                            return Ok(());
                        }
                    }
                    // A payment for a request this site never made.
                    None if names_request => {
                        self.inner.counters.value_refused_chit.bump();
                        tracing::info!(peer = %peer, "payment for a request never made");
                        return Ok(());
                    }
                    None => {}
                }
                let tally = uuid.clone();
                let result = self
                    .chain_op(
                        &uuid,
                        side,
                        Box::new(move |l, keys, confirmed| {
                            l.remote_good(chit.clone(), at.clone(), &tally, keys, confirmed)
                        }),
                    )
                    .await?;
                if result.is_ok() && names_request {
                    self.grant(peer, &paid);
                }
                result
            }
            Body::Chain { msg: chain, .. } => {
                if matches!(&chain, kith_value::chain::ChainMsg::Ack(link) if link.index == 0) {
                    let mut opened = self.inner.opened.lock().unwrap_or_else(|e| e.into_inner());
                    if opened.len() >= 1024 {
                        opened.clear();
                    }
                    opened.insert(uuid.clone());
                }
                let tally = uuid.clone();
                self.chain_op(
                    &uuid,
                    side,
                    Box::new(move |l, keys, confirmed| {
                        l.remote_chain(chain.clone(), &tally, keys, confirmed)
                    }),
                )
                .await?
            }
            _ => return Ok(()),
        };
        match result {
            Ok((outcome, saved)) => {
                for m in self.messages(&saved, outcome.out) {
                    self.reply(peer, &m).await;
                }
            }
            Err(refusal) => {
                self.inner.counters.value_refused_chit.bump();
                tracing::info!(peer = %peer, tally = %uuid, "chit refused: {refusal}");
            }
        }
        Ok(())
    }

    /// An invoice for our user: recorded for `kith chit accept|refuse`.
    async fn on_invoice(&self, row: TallyRow, chit: Chit) -> Result<(), TallyError> {
        let side = ledger::side_of(&row);
        if chit.tally != row.uuid
            || chit.by != side
            || chit.kind != ChitType::Tran
            || chit.units == 0
        {
            self.inner.counters.value_refused_chit.bump();
            return Ok(());
        }
        let lookup = chit.uuid.clone();
        let known = self
            .inner
            .store
            .run(move |s| s.meta().value_chit(&lookup))
            .await?;
        if !known.is_empty() {
            return Ok(());
        }
        let record = ledger::row_of(&row, &chit, "pend_in", None, self.now());
        self.inner
            .store
            .run(move |s| s.meta().value_put_chit(&record))
            .await?;
        self.inner.counters.invoices_received.bump();
        // Small invoices are paid without asking (not Datt requests: those are paid by the
        // fetch that asked for them, within its own budget).
        let auto = self.inner.settings.value.auto_pay_max;
        let datt = chit
            .reference
            .as_ref()
            .is_some_and(|r| r.get("request").is_some());
        if !datt && chit.units <= auto {
            let this = self.clone();
            // Paying waits for the partner's ack, which this worker must be free to handle.
            tokio::spawn(async move {
                if let Err(e) = this.pay_chit(&row, chit).await {
                    tracing::info!("invoice not paid automatically: {e}");
                }
            });
        }
        Ok(())
    }

    /// Sends what brings partners up to date on unconfirmed chains (of `peer`'s tallies,
    /// or all).
    pub(super) async fn resync(&self, peer: Option<AgentId>) {
        let rows = match self.tally_rows().await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!("value resync: {e}");
                return;
            }
        };
        for row in rows {
            if !(row.state == "open" || row.state == "closing") {
                continue;
            }
            let Ok(agent) = row.partner_agent.parse::<AgentId>() else {
                continue;
            };
            if peer.is_some_and(|p| p != agent) {
                continue;
            }
            let side = ledger::side_of(&row);
            let result = self
                .chain_op(
                    &row.uuid,
                    side,
                    Box::new(|l, _, _| {
                        Ok(Outcome {
                            out: if l.unsettled() {
                                l.resync()
                            } else {
                                Vec::new()
                            },
                            removed: Vec::new(),
                        })
                    }),
                )
                .await;
            if let Ok(Ok((outcome, saved))) = result {
                if outcome.out.is_empty() {
                    continue;
                }
                let messages = self.messages(&saved, outcome.out);
                let this = self.clone();
                // Dialling a partner that is away must not hold the worker.
                tokio::spawn(async move {
                    for m in messages {
                        if this.send(agent, &m).await.is_err() {
                            break;
                        }
                    }
                });
            }
        }
    }

    /// Dispatches a message from `peer`.
    pub(super) async fn handle(&self, peer: AgentId, msg: Message) {
        let result = match &msg.body {
            Body::Ticket { .. } => self.on_ticket(peer, msg).await,
            Body::Tally { .. } => self.on_tally(peer, msg).await,
            Body::DattGet { .. } | Body::DattKeep { .. } | Body::DattAnswer { .. } => {
                self.on_datt(peer, msg).await
            }
            _ => self.on_chit(peer, msg).await,
        };
        if let Err(e) = result {
            tracing::warn!(peer = %peer, "value message: {e}");
        }
    }
}
