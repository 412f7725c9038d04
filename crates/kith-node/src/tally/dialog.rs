//! The tally dialog: a tally ticket's first contact, offer, counter-offer, open and void.
//!
//! The user who issues the tally ticket holds the stock; the one who opens with it holds the
//! foil. The opener sends `ticket` (its certificate and the credit it grants); the issuer
//! claims the ticket (one use, unexpired, for this site only: `MetaDb::value_claim_tally_ticket`),
//! builds the tally, signs it and sends `offer`; the opener checks the offer against what it
//! asked (`kith_value::dialog::judge_offer`) and signs (`open`), counters (`draft`) or refuses
//! (`void`); the issuer checks both signatures over the terms it offered and answers `open`
//! with the chain's `ack` at index 0. Both derive the tally's UUID from the ticket's token, so
//! a retried first contact is the same tally, never a second one.

use super::{users, Tallies, TallyError};
use crate::api::value::{IssuedTallyTicket, TallyOpenBody, TallyTicketOrder, TallyView};
use crate::ticket::Ticket;
use kith_crypto::identity::AgentId;
use kith_store::meta::{TallyRow, TallyTicketRow, TicketClaim};
use kith_value::chain::{ChainMsg, Link};
use kith_value::dialog::{judge_offer, Decision, Expectation};
use kith_value::message::{Body, Message, TallyAction};
use kith_value::tally::{terms_with_limit, TallyDraft};
use kith_value::{Certificate, Chad, Side, Tally};
use serde_json::Value;
use sha2::Digest as _;
use std::time::Duration;

/// The tally's UUID for a ticket's token (both sides compute it).
pub(crate) fn tally_uuid_for(token: &str) -> String {
    let digest = sha2::Sha256::digest(format!("kith tally v1 {}", token.to_ascii_lowercase()));
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

impl Tallies {
    /// The user named, or the only one.
    async fn pick(
        &self,
        wanted: Option<String>,
    ) -> Result<kith_store::meta::ValueUser, TallyError> {
        Ok(self
            .inner
            .store
            .call(move |s| users::pick_user(s.meta(), wanted.as_deref()))
            .await??)
    }

    /// Issues a tally ticket for a user: a one-time connection ticket naming the user, and
    /// the terms it invites with.
    pub async fn issue_ticket(
        &self,
        order: TallyTicketOrder,
    ) -> Result<IssuedTallyTicket, TallyError> {
        if order.ttl_secs == 0 || order.ttl_secs > 366 * 24 * 3600 {
            return Err(TallyError::BadInput(
                "ticket lifetime must be between 1 second and a year".into(),
            ));
        }
        if order.limit > kith_value::tally::MAX_UNITS {
            return Err(TallyError::BadInput(
                "the limit is over 2^53-1 units".into(),
            ));
        }
        let for_chad = order
            .for_chad
            .as_deref()
            .map(|c| Chad::parse(c).map(|c| c.id()))
            .transpose()?;
        let user = self.pick(order.user.clone()).await?;
        let mut chad = self.inner.endpoint.own_chad();
        chad.cuid = Some(user.cuid.clone());
        let (ticket, record) = crate::ticket::issue(
            chad,
            self.inner.settings.clock.system_now(),
            Duration::from_secs(order.ttl_secs),
            false,
            &mut rand::rngs::OsRng,
        );
        let row = TallyTicketRow {
            token: ticket.token.clone(),
            cuid: user.cuid.clone(),
            limit: order.limit as i64,
            for_chad: for_chad.clone(),
            tally_uuid: None,
            created_at: self.now(),
        };
        self.inner
            .store
            .run(move |s| {
                s.meta().insert_ticket(&record)?;
                s.meta().value_insert_tally_ticket(&row)
            })
            .await?;
        Ok(IssuedTallyTicket {
            line: ticket.to_line(),
            ticket,
            user: user.cuid,
            limit: order.limit,
            for_chad,
        })
    }

    /// Opens a tally with a tally ticket: first contact if the site is new, then the dialog;
    /// returns once the tally is open (or refused, or the wait ran out).
    pub async fn open(&self, body: TallyOpenBody) -> Result<TallyView, TallyError> {
        let ticket =
            Ticket::parse(&body.ticket).map_err(|e| TallyError::BadInput(e.to_string()))?;
        let Some(their_cuid) = ticket.chad.cuid.clone() else {
            return Err(TallyError::BadInput(
                "this ticket names no user, so it is not a tally ticket: ask for one made \
                 with `kith tally ticket`"
                    .into(),
            ));
        };
        let site = ticket
            .agent()
            .map_err(|e| TallyError::BadInput(e.to_string()))?;
        if site == self.inner.endpoint.agent() {
            return Err(TallyError::BadInput(
                "this tally ticket was issued by this node itself".into(),
            ));
        }
        if body.limit > kith_value::tally::MAX_UNITS {
            return Err(TallyError::BadInput(
                "the limit is over 2^53-1 units".into(),
            ));
        }
        let (host, port) = ticket
            .site_address()
            .map_err(|e| TallyError::BadInput(e.to_string()))?;
        let partner = Chad {
            cuid: their_cuid,
            agent: site.to_string(),
            host: Some(host),
            port: Some(port),
        };
        let user = self.pick(body.user.clone()).await?;
        let key = users::load_key(&self.inner.settings.keys_dir, &user.cuid)?;
        let uuid = tally_uuid_for(&ticket.token);
        if let Some(row) = self.row(&uuid, Side::Foil).await? {
            if row.state == "open" {
                return Ok(super::view_of(&row));
            }
        }
        let now = self.now();
        let expectation = TallyRow {
            uuid: uuid.clone(),
            side: Side::Foil.as_str().into(),
            cuid: user.cuid.clone(),
            partner: partner.to_string(),
            partner_agent: site.to_string(),
            state: "draft".into(),
            doc: "{}".into(),
            our_limit: body.limit as i64,
            their_limit: 0,
            conf_index: 0,
            conf_digest: String::new(),
            balance: 0,
            chits: 0,
            created_at: now,
            updated_at: now,
        };
        self.inner
            .store
            .run(move |s| s.meta().value_put_tally(&expectation))
            .await?;
        let known = {
            let agent = site.to_string();
            self.inner
                .store
                .run(move |s| s.meta().get_peer(&agent))
                .await?
                .is_some()
        };
        if !known {
            self.inner.endpoint.connect_ticket(ticket.clone()).await?;
        }
        let me = self.chad_of(&user.cuid);
        let cert = users::certificate(&user, &key, &me, self.now_millis());
        let msg = Message {
            to: partner,
            from: me,
            body: Body::Ticket {
                token: ticket.token.clone(),
                cert,
                terms: Some(terms_with_limit(body.limit)),
            },
        };
        self.send(site, &msg).await?;
        let found = self
            .wait_for(super::ANSWER_WAIT, || async {
                self.row(&uuid, Side::Foil)
                    .await
                    .ok()
                    .flatten()
                    .filter(|r| r.state == "open" || r.state == "void")
            })
            .await;
        match found {
            Some(row) if row.state == "open" => {
                // Wait (briefly) for the issuer's ack of our `open`, so that when this
                // returns both sides hold the tally open.
                let _ = self
                    .wait_for(Duration::from_secs(10), || async {
                        self.inner
                            .opened
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .contains(&uuid)
                            .then_some(())
                    })
                    .await;
                Ok(super::view_of(&row))
            }
            Some(_) => Err(TallyError::PartnerRefused(
                "the tally was refused (void)".into(),
            )),
            None => Err(TallyError::Timeout(format!(
                "the partner has not opened tally {uuid} within {:?}; `kith tally ls` shows \
                 it when it does",
                super::ANSWER_WAIT
            ))),
        }
    }

    /// First contact with a tally ticket (we are the issuer).
    pub(super) async fn on_ticket(&self, peer: AgentId, msg: Message) -> Result<(), TallyError> {
        let Body::Ticket { token, cert, terms } = &msg.body else {
            return Ok(());
        };
        let refuse = |why: &str| {
            self.inner.counters.value_refused_ticket.bump();
            tracing::info!(peer = %peer, "tally ticket refused: {why}");
            Ok(())
        };
        if msg.from.agent != peer.to_string() {
            return refuse("the sender's CHAD is not the sending site");
        }
        if !cert.chad().is_ok_and(|c| c.same_user(&msg.from)) {
            return refuse("the certificate is not the sender's");
        }
        let uuid = tally_uuid_for(token);
        if let Some(row) = self.row(&uuid, Side::Stock).await? {
            if row.partner_agent != peer.to_string() {
                return refuse("tally ticket already used");
            }
            // A retry: say again what we said.
            if row.state == "offer" && row.partner_agent == peer.to_string() {
                if let Ok(tally) =
                    Tally::from_json(serde_json::from_str(&row.doc).unwrap_or_default())
                {
                    self.reply(peer, &self.tally_msg(&row, TallyAction::Offer, tally))
                        .await;
                }
            }
            return Ok(());
        }
        let (token_c, agent, uuid_c, now) =
            (token.clone(), peer.to_string(), uuid.clone(), self.now());
        let claim = self
            .inner
            .store
            .run(move |s| {
                s.meta()
                    .value_claim_tally_ticket(&token_c, &agent, &uuid_c, now)
            })
            .await?;
        let ticket = match claim {
            TicketClaim::Claimed(ticket) => ticket,
            TicketClaim::Refused(why) => return refuse(why),
        };
        if ticket.cuid != msg.to.cuid {
            return refuse("the ticket is for another user");
        }
        if let Some(only) = &ticket.for_chad {
            if !Chad::parse(only).is_ok_and(|c| c.same_user(&msg.from)) {
                return refuse("the ticket is for another partner");
            }
        }
        let user = self.pick(Some(ticket.cuid.clone())).await?;
        let key = users::load_key(&self.inner.settings.keys_dir, &user.cuid)?;
        let me = self.chad_of(&user.cuid);
        let date = kith_value::time::format_millis(self.now_millis());
        let foil_terms = terms.clone().unwrap_or_else(|| serde_json::json!({}));
        let mut tally = Tally::new(TallyDraft {
            uuid: uuid.clone(),
            date,
            stock: users::certificate(&user, &key, &me, self.now_millis()),
            stock_terms: terms_with_limit(ticket.limit.max(0) as u64),
            foil: Certificate(cert.0.clone()),
            foil_terms,
            memo: None,
        });
        let Ok(their_limit) = tally.limit(Side::Foil) else {
            return refuse("the partner's credit limit is not whole units");
        };
        tally.sign(Side::Stock, &key, &mut rand::rngs::OsRng)?;
        let now = self.now();
        let row = TallyRow {
            uuid: uuid.clone(),
            side: Side::Stock.as_str().into(),
            cuid: user.cuid.clone(),
            partner: msg.from.to_string(),
            partner_agent: peer.to_string(),
            state: "offer".into(),
            doc: tally.to_json().to_string(),
            our_limit: ticket.limit,
            their_limit: their_limit as i64,
            conf_index: 0,
            conf_digest: tally.hash(),
            balance: 0,
            chits: 0,
            created_at: now,
            updated_at: now,
        };
        let saved = row.clone();
        self.inner
            .store
            .run(move |s| s.meta().value_put_tally(&saved))
            .await?;
        self.reply(peer, &self.tally_msg(&row, TallyAction::Offer, tally))
            .await;
        Ok(())
    }

    /// A tally message addressed from our side of `row`.
    pub(super) fn tally_msg(&self, row: &TallyRow, action: TallyAction, tally: Tally) -> Message {
        Message {
            to: Chad::parse(&row.partner).unwrap_or_else(|_| Chad {
                cuid: String::new(),
                agent: row.partner_agent.clone(),
                host: None,
                port: None,
            }),
            from: self.chad_of(&row.cuid),
            body: Body::Tally { action, tally },
        }
    }

    /// A step of the dialog from the partner.
    pub(super) async fn on_tally(&self, peer: AgentId, msg: Message) -> Result<(), TallyError> {
        let Body::Tally { action, tally } = msg.body.clone() else {
            return Ok(());
        };
        let not_party = |why: &str| {
            self.inner.counters.value_refused_not_party.bump();
            tracing::info!(peer = %peer, "tally message refused: {why}");
            Ok(())
        };
        if msg.from.agent != peer.to_string() {
            return not_party("the sender's CHAD is not the sending site");
        }
        if msg.to.agent != self.inner.endpoint.agent().to_string() {
            return not_party("not addressed to this site");
        }
        let Some(side) = tally.side_of(&msg.to) else {
            return not_party("our user is not a party to it");
        };
        if !tally
            .chad(side.other())
            .is_ok_and(|c| c.agent == peer.to_string())
        {
            return not_party("the sending site does not hold the other side");
        }
        let Some(row) = self.row(tally.uuid(), side).await? else {
            // An offer nobody here asked for: kept for the user to see, nothing signed.
            if action == TallyAction::Offer {
                let now = self.now();
                let row = TallyRow {
                    uuid: tally.uuid().to_owned(),
                    side: side.as_str().into(),
                    cuid: msg.to.cuid.clone(),
                    partner: msg.from.to_string(),
                    partner_agent: peer.to_string(),
                    state: "peer_offer".into(),
                    doc: tally.to_json().to_string(),
                    our_limit: tally.limit(side).unwrap_or(0) as i64,
                    their_limit: tally.limit(side.other()).unwrap_or(0) as i64,
                    conf_index: 0,
                    conf_digest: tally.hash(),
                    balance: 0,
                    chits: 0,
                    created_at: now,
                    updated_at: now,
                };
                self.inner
                    .store
                    .run(move |s| s.meta().value_put_tally(&row))
                    .await?;
            }
            return Ok(());
        };
        if row.partner_agent != peer.to_string() || row.cuid != msg.to.cuid {
            return not_party("another site's tally");
        }
        let ours: Option<Tally> = serde_json::from_str::<Value>(&row.doc)
            .ok()
            .and_then(|v| Tally::from_json(v).ok());
        match (action, row.state.as_str()) {
            (TallyAction::Offer, "draft" | "peer_offer") => {
                self.judge(peer, row, tally, side).await
            }
            (TallyAction::Offer, "open") => {
                // The partner did not hear our `open`: say it again.
                if let Some(ours) = ours.filter(|o| o.same_terms(&tally)) {
                    self.reply(peer, &self.tally_msg(&row, TallyAction::Open, ours))
                        .await;
                }
                Ok(())
            }
            (TallyAction::Draft, "offer") => {
                let Some(ours) = ours else { return Ok(()) };
                self.counter_offer(peer, row, ours, tally, side).await
            }
            (TallyAction::Open, "offer" | "open") => {
                let Some(ours) = ours else { return Ok(()) };
                if tally.verify_both().is_err() || !tally.same_terms(&ours) {
                    self.inner.counters.value_refused_offer.bump();
                    return Ok(());
                }
                let link = Link {
                    index: 0,
                    digest: tally.hash(),
                };
                if row.state == "offer" {
                    let mut open = row.clone();
                    open.state = "open".into();
                    open.doc = tally.to_json().to_string();
                    open.conf_digest = link.digest.clone();
                    open.updated_at = self.now();
                    self.inner
                        .store
                        .run(move |s| s.meta().value_put_tally(&open))
                        .await?;
                    self.inner.counters.tallies_opened.bump();
                }
                let ack = Message {
                    to: msg.from.clone(),
                    from: self.chad_of(&row.cuid),
                    body: Body::Chain {
                        tally: row.uuid.clone(),
                        msg: ChainMsg::Ack(link),
                    },
                };
                self.reply(peer, &ack).await;
                Ok(())
            }
            (TallyAction::Void, "offer" | "draft" | "peer_offer") => {
                let mut void = row;
                void.state = "void".into();
                void.updated_at = self.now();
                self.inner
                    .store
                    .run(move |s| s.meta().value_put_tally(&void))
                    .await?;
                Ok(())
            }
            // Anything else does not fit the tally's state: nothing changes.
            _ => Ok(()),
        }
    }

    /// An offer for a tally we asked for: sign it, counter it, or refuse it.
    async fn judge(
        &self,
        peer: AgentId,
        row: TallyRow,
        offer: Tally,
        side: Side,
    ) -> Result<(), TallyError> {
        let expect = Expectation {
            side,
            user: self.chad_of(&row.cuid),
            partner_agent: peer.to_string(),
            terms: terms_with_limit(row.our_limit.max(0) as u64),
            uuid: Some(row.uuid.clone()),
        };
        let mut next = row.clone();
        next.updated_at = self.now();
        let (action, tally) = match judge_offer(&offer, &expect) {
            Decision::Accept => {
                let key = users::load_key(&self.inner.settings.keys_dir, &row.cuid)?;
                let mut tally = offer;
                tally.sign(side, &key, &mut rand::rngs::OsRng)?;
                next.state = "open".into();
                next.their_limit = tally.limit(side.other()).unwrap_or(0) as i64;
                next.conf_index = 0;
                next.conf_digest = tally.hash();
                self.inner.counters.tallies_opened.bump();
                (TallyAction::Open, tally)
            }
            Decision::Counter(draft) => {
                next.state = "draft".into();
                (TallyAction::Draft, draft)
            }
            Decision::Refuse(why) => {
                tracing::info!(peer = %peer, "tally offer refused: {why}");
                self.inner.counters.value_refused_offer.bump();
                next.state = "void".into();
                (TallyAction::Void, offer)
            }
        };
        next.doc = tally.to_json().to_string();
        let saved = next.clone();
        self.inner
            .store
            .run(move |s| s.meta().value_put_tally(&saved))
            .await?;
        self.reply(peer, &self.tally_msg(&next, action, tally))
            .await;
        Ok(())
    }

    /// The partner countered our offer: we sign again if it leaves our side, the agreement
    /// and the tally's identity as we offered them; otherwise we refuse.
    async fn counter_offer(
        &self,
        peer: AgentId,
        row: TallyRow,
        ours: Tally,
        draft: Tally,
        side: Side,
    ) -> Result<(), TallyError> {
        let same = |path: &str| ours.to_json().pointer(path) == draft.to_json().pointer(path);
        let acceptable = draft.uuid() == ours.uuid()
            && draft.revision() == ours.revision() + 1
            && same(&format!("/{side}"))
            && same("/agree")
            && same("/date")
            && draft.limit(side.other()).is_ok()
            && draft.cert(side.other()).is_ok_and(|c| {
                c.chad().is_ok_and(|c| c.agent == peer.to_string()) && c.public().is_ok()
            });
        let mut next = row.clone();
        next.updated_at = self.now();
        let (action, tally) = if acceptable {
            let key = users::load_key(&self.inner.settings.keys_dir, &row.cuid)?;
            let mut tally = draft;
            tally.clear_signatures();
            tally.sign(side, &key, &mut rand::rngs::OsRng)?;
            next.their_limit = tally.limit(side.other()).unwrap_or(0) as i64;
            next.conf_digest = tally.hash();
            (TallyAction::Offer, tally)
        } else {
            self.inner.counters.value_refused_offer.bump();
            next.state = "void".into();
            (TallyAction::Void, draft)
        };
        next.doc = tally.to_json().to_string();
        let saved = next.clone();
        self.inner
            .store
            .run(move |s| s.meta().value_put_tally(&saved))
            .await?;
        self.reply(peer, &self.tally_msg(&next, action, tally))
            .await;
        Ok(())
    }
}
