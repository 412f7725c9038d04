//! Secure links: tickets handed from A to B and from B to C (Noise IK), a used ticket refused,
//! B restarted and re-linked by itself (Noise N + KK), ping.

use super::nodes::{wait_for, DemoNode};
use super::Step;
use anyhow::{bail, Context, Result};
use kith_node::api::{
    AgentBody, ConnectBody, IssuedTicket, PeerView, PingReport, TicketOrder, CONNECT_PATH,
    PEERS_PATH, PING_PATH, TICKETS_PATH,
};
use kith_store::meta::{PeerRecord, TicketRecord};

/// A ticket from A to B.
pub const TICKET_A_TO_B: Step = Step {
    title: "A issues a one-time ticket, B connects with it",
    proves: "first contact needs only the ticket: a Noise IK handshake proves both keys, and each side records the other",
    run: |demo| {
        let (ticket, facts) = introduce(&demo.a, &demo.b)?;
        demo.ticket_ab = Some(ticket);
        Ok(facts)
    },
};

/// A ticket from B to C.
pub const TICKET_B_TO_C: Step = Step {
    title: "B issues a ticket, C connects with it",
    proves: "the same works from any node: A - B - C are now linked in a line, A and C do not know each other",
    run: |demo| Ok(introduce(&demo.b, &demo.c)?.1),
};

/// The used ticket again.
pub const USED_TICKET: Step = Step {
    title: "C tries A's ticket, which B already used",
    proves: "a one-time ticket works once; A says nothing to a stranger, and the client explains what probably happened",
    run: |demo| {
        let ticket = demo.ticket_ab.clone().context("no ticket from the first step")?;
        let body = ConnectBody { ticket };
        match demo.c.post::<_, PeerRecord>(CONNECT_PATH, &body) {
            Ok(_) => bail!("A accepted a ticket that was already used"),
            Err(refused) => {
                let refused = refused.root_cause().to_string();
                let counter = demo.a.counter("refused_ticket")?;
                if counter != 1 {
                    bail!("A counted {counter} refused tickets, expected 1");
                }
                if linked(&demo.a, &demo.c.agent)? {
                    bail!("A and C are linked after all");
                }
                Ok(format!(
                    "refused without a word (A's refused_ticket counter is 1); C was told: {refused}"
                ))
            }
        }
    },
};

/// B restarts and re-links.
pub const RESTART_B: Step = Step {
    title: "B stops and starts again",
    proves: "known peers re-link by themselves with no ticket (Noise N + KK: the key each side recorded is the proof)",
    run: |demo| {
        let issued_before = tickets(&demo.a)? + tickets(&demo.b)?;
        let a_links = demo.a.counter("links_established")?;
        let c_links = demo.c.counter("links_established")?;
        let old_pid = demo.b.status()?.pid;
        demo.b.restart(&demo.cleanup)?;
        let (a, b, c) = (&demo.a, &demo.b, &demo.c);
        wait_for("B to re-link with A", || linked(a, &b.agent))?;
        wait_for("B to re-link with C", || linked(c, &b.agent))?;
        wait_for("B to see both links", || Ok(b.status()?.links == 2))?;
        let issued_after = tickets(a)? + tickets(b)?;
        if issued_after != issued_before {
            bail!("a ticket was issued during the restart");
        }
        Ok(format!(
            "B (pid {} -> {}) linked again with A and C by itself (A's links_established {} -> {}, C's {} -> {}), no new ticket",
            old_pid, b.status()?.pid,
            a_links,
            a.counter("links_established")?,
            c_links,
            c.counter("links_established")?
        ))
    },
};

/// Ping.
pub const PING: Step = Step {
    title: "A pings B, B pings C",
    proves: "the links carry traffic both ways: a round trip over the encrypted link",
    run: |demo| {
        let ab = ping(&demo.a, &demo.b)?;
        let bc = ping(&demo.b, &demo.c)?;
        Ok(format!("A-B {ab:.2} ms, B-C {bc:.2} ms"))
    },
};

/// `from` issues a one-time ticket and `to` connects with it; returns the ticket line.
fn introduce(from: &DemoNode, to: &DemoNode) -> Result<(String, String)> {
    let order = TicketOrder {
        reusable: false,
        ttl_secs: 45 * 60,
        cuid: None,
        code: false,
    };
    let issued: IssuedTicket = from.post(TICKETS_PATH, &order)?;
    let body = ConnectBody {
        ticket: issued.line.clone(),
    };
    let record: PeerRecord = to.post(CONNECT_PATH, &body)?;
    if record.agent != from.agent {
        bail!(
            "{} linked with {} instead of {}",
            to.name,
            record.agent,
            from.agent
        );
    }
    wait_for(
        &format!("{} to list {} as linked", from.name, to.name),
        || linked(from, &to.agent),
    )?;
    if !linked(to, &from.agent)? {
        bail!("{} does not list {} as linked", to.name, from.name);
    }
    Ok((
        issued.line.clone(),
        format!(
            "the ticket (one {}-character line) named {}'s key and address {}; {} and {} list each other as linked",
            issued.line.len(),
            from.name,
            from.listen,
            from.name,
            to.name,
        ),
    ))
}

/// How many tickets `node` has issued (its database's records, which outlive a restart).
fn tickets(node: &DemoNode) -> Result<usize> {
    Ok(node.get::<Vec<TicketRecord>>(TICKETS_PATH)?.len())
}

/// True when `node` lists `agent` as a linked peer.
pub fn linked(node: &DemoNode, agent: &str) -> Result<bool> {
    let peers: Vec<PeerView> = node.get(PEERS_PATH)?;
    Ok(peers
        .iter()
        .any(|p| p.record.agent == agent && p.state == "linked"))
}

fn ping(from: &DemoNode, to: &DemoNode) -> Result<f64> {
    let report: PingReport = from.post(
        PING_PATH,
        &AgentBody {
            agent: to.agent.clone(),
        },
    )?;
    Ok(report.rtt_ms)
}
