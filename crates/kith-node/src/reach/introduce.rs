//! A broker's and a target's side of an introduction (see the module docs of [`super`]):
//! the broker checks that both are linked, bounds the requester and passes on only the
//! addresses it observes; the target checks that the requester has business with it, then
//! dials.

use super::broker::Refusal;
use super::wire::{self, Msg};
use super::{lock, punch, Reach};
use crate::clock::mono_now;
use crate::endpoint::Via;
use kith_crypto::identity::AgentId;
use std::net::SocketAddr;
use std::sync::Arc;

impl Reach {
    /// R: `requester` asks to be introduced to `to`.
    pub(super) fn broker_connect(
        &self,
        requester: AgentId,
        id: u64,
        to: &str,
        proof: Option<String>,
        relay: bool,
    ) {
        let c = &self.inner.counters;
        let fail = |why: &str| {
            self.send(
                requester,
                &Msg::Fail {
                    id,
                    why: why.to_owned(),
                },
            )
        };
        let Ok(target) = to.parse::<AgentId>() else {
            c.punch_malformed.bump();
            return;
        };
        let endpoint = &self.inner.endpoint;
        let seen = |agent: &AgentId| {
            endpoint
                .link_view(agent)
                .filter(|v| v.via != Via::Relayed)
                .and_then(|v| v.remote.parse::<SocketAddr>().ok())
        };
        let (Some(requester_addr), Some(_)) = (seen(&requester), seen(&target)) else {
            c.punch_refused_not_linked.bump();
            return fail("not-linked");
        };
        if target == requester || target == endpoint.agent() {
            c.punch_refused_not_linked.bump();
            return fail("not-linked");
        }
        let now = mono_now();
        let expired = lock(&self.inner.broker).expire(now);
        for intro in expired {
            self.send(
                intro.requester,
                &Msg::Fail {
                    id: intro.requester_id,
                    why: "no-answer".into(),
                },
            );
        }
        let result = lock(&self.inner.broker).request(requester, id, target, relay, now);
        match result {
            Ok(offer) => {
                c.punch_introductions.bump();
                self.send(
                    target,
                    &Msg::Offer {
                        id: offer,
                        from: requester.to_string(),
                        addrs: vec![requester_addr.to_string()],
                        proof,
                    },
                );
            }
            Err(Refusal::RateLimited) => {
                c.punch_refused_rate.bump();
                fail("rate");
            }
            Err(Refusal::Busy) => {
                c.punch_refused_busy.bump();
                fail("busy");
            }
        }
    }

    /// R: the target answered an introduction.
    pub(super) fn broker_answer(&self, from: AgentId, id: u64, accepted: bool) {
        let Some(intro) = lock(&self.inner.broker).answer(from, id) else {
            self.inner.counters.punch_answers_unexpected.bump();
            return;
        };
        if intro.relay {
            if accepted {
                return self.open_circuit(intro.requester, intro.requester_id, from, id);
            }
            return self.send(
                intro.requester,
                &Msg::Fail {
                    id: intro.requester_id,
                    why: "refused".into(),
                },
            );
        }
        let msg = match self.inner.endpoint.link_view(&from) {
            Some(view) if accepted && view.via != Via::Relayed => Msg::Dial {
                id: intro.requester_id,
                addrs: vec![view.remote],
            },
            _ => Msg::Fail {
                id: intro.requester_id,
                why: "refused".into(),
            },
        };
        self.send(intro.requester, &msg);
    }

    /// B: broker `via` offers us a link with `from`.
    pub(super) fn offered(
        &self,
        via: AgentId,
        id: u64,
        from: &str,
        addrs: &[String],
        proof: Option<String>,
    ) {
        let c = &self.inner.counters;
        let addrs: Vec<SocketAddr> = addrs.iter().filter_map(|a| a.parse().ok()).collect();
        let Ok(from) = from.parse::<AgentId>() else {
            c.punch_malformed.bump();
            return;
        };
        if addrs.is_empty() || from == self.inner.endpoint.agent() {
            c.punch_malformed.bump();
            return self.send(via, &Msg::Refuse { id });
        }
        let Ok(permit) = Arc::clone(&self.inner.offers).try_acquire_owned() else {
            c.punch_offers_dropped.bump();
            return self.send(via, &Msg::Refuse { id });
        };
        let this = self.clone();
        self.inner.tracker.spawn(async move {
            let _permit = permit;
            let business = this.has_business(from, proof).await;
            if !business {
                this.inner.counters.punch_offers_refused.bump();
                tracing::info!(peer = %from, broker = %via, "refused an introduction: no business with us");
                return this.send(via, &Msg::Refuse { id });
            }
            this.inner.counters.punch_offers_accepted.bump();
            // Our first SYNs go out before the requester hears it may dial: they open our NAT
            // for its address by the time its own arrive.
            let endpoint = this.inner.endpoint.clone();
            let window = this.inner.settings.punch_window;
            let adopter = endpoint.clone();
            let mut dialling = tokio::spawn(async move {
                let linked = endpoint.clone();
                punch::punch_target(
                    &endpoint,
                    &addrs,
                    window,
                    move || linked.is_linked(&from),
                    move |conn| {
                        tracing::info!(peer = %from, remote = %conn.remote, "punched through to a peer");
                        adopter.adopt_inbound(conn);
                    },
                )
                .await
            });
            this.send(via, &Msg::Accept { id });
            let adopted = tokio::select! {
                r = &mut dialling => r.unwrap_or(0),
                _ = this.inner.cancel.cancelled() => return dialling.abort(),
            };
            if adopted > 0 && this.inner.endpoint.is_linked(&from) {
                this.inner.counters.punches_succeeded.bump();
            } else {
                this.inner.counters.punches_failed.bump();
                tracing::info!(peer = %from, "punch failed");
            }
        });
    }

    /// B: is `from` a known, unblocked peer, or does `proof` match a valid ticket of ours?
    pub(super) async fn has_business(&self, from: AgentId, proof: Option<String>) -> bool {
        let name = from.to_string();
        let now = crate::ticket::unix_secs(std::time::SystemTime::now());
        self.inner
            .store
            .run(move |s| {
                let meta = s.meta();
                if meta.is_agent_blocked(&name)? {
                    return Ok::<_, kith_store::MetaError>(false);
                }
                if meta.get_peer(&name)?.is_some_and(|p| !p.blocked) {
                    return Ok(true);
                }
                let Some(proof) = proof else {
                    return Ok(false);
                };
                Ok(meta.list_tickets()?.iter().any(|t| {
                    !t.revoked
                        && t.expires_at > now
                        && (t.reusable || t.used_at.is_none())
                        && wire::ticket_proof(&t.token, &name) == proof
                }))
            })
            .await
            .unwrap_or(false)
    }
}
