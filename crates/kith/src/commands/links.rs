//! `kith ticket`, `kith connect`, `kith peers`, `kith ping`: secure links between sites.
//!
//! Commands that need the network go through the running node; those that only read or change
//! the key store (`ticket --list|--revoke`, `peers` and its flags) also work with no node
//! running, directly on the database the node shares.

use super::node::client;
use super::Env;
use crate::cli::{PeersArgs, TicketArgs};
use crate::output::{print_json, report};
use anyhow::{anyhow, bail, Context, Result};
use kith_node::api::CheckReport;
use kith_node::api::{
    AgentBody, BlockBody, Changed, ConnectBody, IssuedTicket, PeerView, PingReport,
    ReferenceOrderBody, TicketOrder, TokenBody, BLOCK_PEER_PATH, CHECK_PEER_PATH, CONNECT_PATH,
    NEARBY_PATH, PEERS_PATH, PING_PATH, REFERENCE_ORDER_PATH, REMOVE_PEER_PATH, REVOKE_PATH,
    TICKETS_PATH,
};
use kith_node::control::{ControlClient, ControlError};
use kith_node::nearby::NearbyNode;
use kith_node::ticket::{format_time, unix_secs, Chad, Ticket};
use kith_store::meta::{PeerRecord, TicketRecord};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `kith ticket`.
pub fn ticket(env: &Env, args: TicketArgs) -> Result<()> {
    let control = client(env);
    if args.list {
        let tickets: Vec<TicketRecord> = if control.is_running() {
            control.get(TICKETS_PATH)?
        } else {
            env.config.open_file_store()?.meta().list_tickets()?
        };
        return print_tickets(env, &tickets);
    }
    if let Some(token) = args.revoke {
        let token = token.trim().to_ascii_lowercase();
        let changed = if control.is_running() {
            control
                .post::<_, Changed>(
                    REVOKE_PATH,
                    &TokenBody {
                        token: token.clone(),
                    },
                )?
                .changed
        } else {
            env.config.open_file_store()?.meta().revoke_ticket(&token)?
        };
        if !changed {
            bail!("no issued ticket has the token {token}");
        }
        return report(
            env.json,
            serde_json::json!({"revoked": token}),
            &format!("revoked {token}"),
        );
    }
    let ttl = humantime::parse_duration(&args.ttl)
        .with_context(|| format!("--ttl {:?} is not a duration like 45m, 2h or 7d", args.ttl))?;
    let order = TicketOrder {
        reusable: args.reusable,
        ttl_secs: ttl.as_secs(),
        cuid: args.cuid,
        code: args.code,
    };
    let issued: IssuedTicket = if control.is_running() {
        control.post(TICKETS_PATH, &order)?
    } else if order.code {
        bail!("a short code needs the running node (`kith up`): its helper holds the mailbox");
    } else {
        issue_offline(env, order)?
    };
    if let Some(code) = &issued.code {
        for warning in &issued.warnings {
            eprintln!("warning: {warning}");
        }
        if env.json {
            print_json(&serde_json::json!({"code": code, "expires": issued.ticket.expires}))?;
        } else {
            println!("{code}");
            eprintln!("one use; on the other node: kith connect {code}");
        }
        return Ok(());
    }
    // The ticket is the only line on stdout; what may keep it from working goes to stderr.
    for warning in &issued.warnings {
        eprintln!("warning: {warning}");
    }
    if env.json {
        print_json(&issued.ticket)?;
    } else {
        println!("{}", issued.line);
        let uses = if issued.reusable {
            "reusable"
        } else {
            "one use"
        };
        eprintln!(
            "expires {} ({uses}); hand it over privately: whoever holds it can connect",
            issued.ticket.expires
        );
    }
    if args.qr {
        eprintln!("{}", qr_code(&issued.line)?);
    }
    Ok(())
}

/// Issues a ticket: through the running node, or with none running, from the settings.
pub(super) fn issue_ticket(env: &Env, order: TicketOrder) -> Result<IssuedTicket> {
    let control = client(env);
    if control.is_running() {
        Ok(control.post(TICKETS_PATH, &order)?)
    } else {
        issue_offline(env, order)
    }
}

/// Issues a ticket with no node running: the address comes from the settings, so it must be
/// fixed (`--announce` in kith.toml, or a `listen` address with a port).
fn issue_offline(env: &Env, order: TicketOrder) -> Result<IssuedTicket> {
    let config = &env.config;
    let (host, port) = match (&config.announce, config.listen) {
        (Some(announce), _) => announce.clone(),
        (None, Some(addr)) if addr.port() != 0 => {
            let host = if addr.ip().is_unspecified() { "127.0.0.1".to_owned() } else { addr.ip().to_string() };
            (host, addr.port())
        }
        _ => bail!("no node is running and no fixed address is configured; start the node (`kith up`) or set `announce` in kith.toml"),
    };
    let identity = env.identity()?;
    let chad = Chad {
        cuid: order.cuid,
        agent: identity.agent_id().to_string(),
        host: Some(host),
        port: Some(port),
    };
    let (ticket, record) = kith_node::ticket::issue(
        chad,
        SystemTime::now(),
        Duration::from_secs(order.ttl_secs),
        order.reusable,
        &mut rand::rngs::OsRng,
    );
    env.config
        .open_file_store()?
        .meta()
        .insert_ticket(&record)?;
    Ok(IssuedTicket {
        line: ticket.to_line(),
        ticket,
        reusable: order.reusable,
        warnings: Vec::new(),
        code: None,
    })
}

fn print_tickets(env: &Env, tickets: &[TicketRecord]) -> Result<()> {
    if env.json {
        return print_json(&tickets);
    }
    let now = unix_secs(SystemTime::now());
    for t in tickets {
        let state = if t.revoked {
            "revoked"
        } else if t.expires_at <= now {
            "expired"
        } else if t.used_at.is_some() && !t.reusable {
            "used"
        } else {
            "valid"
        };
        let expires = format_time(UNIX_EPOCH + Duration::from_secs(t.expires_at.max(0) as u64));
        let kind = if t.reusable { "reusable" } else { "one-time" };
        println!("{}  {state:<7}  {kind:<8}  expires {expires}", t.token);
    }
    Ok(())
}

fn qr_code(text: &str) -> Result<String> {
    use qrcode::render::unicode::Dense1x2;
    let code =
        qrcode::QrCode::new(text.as_bytes()).map_err(|e| anyhow!("cannot draw a QR code: {e}"))?;
    Ok(code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .build())
}

/// How much longer `kith connect` waits for the node when it may reach the site through a
/// mutual peer (a mailbox for a code, an introduction, a punch window, a relay).
const REACH_ALLOWANCE_MS: u64 = 40_000;

/// `kith connect TICKET`.
pub fn connect(env: &Env, ticket: &str) -> Result<()> {
    // Check the ticket here too, so a mistyped one fails before anything is sent anywhere.
    if !kith_node::reach::code::looks_like_code(ticket) {
        let parsed = Ticket::parse(ticket)?;
        parsed.check_unexpired(SystemTime::now())?;
    }
    // The node dials and runs the handshake, each with its own deadline: wait for those too,
    // so an unreachable site is reported as such, not as our node not answering; and a
    // mailbox, an introduction, a punch and perhaps a relay when no address answers.
    let limits = &env.config.limits;
    let dial = Duration::from_millis(
        limits.connect_timeout_ms + limits.handshake_timeout_ms + REACH_ALLOWANCE_MS,
    );
    let peer: PeerRecord = client(env).allowing(dial).post(
        CONNECT_PATH,
        &ConnectBody {
            ticket: ticket.to_owned(),
        },
    )?;
    let addr = kith_node::ticket::join_host_port(
        peer.host.as_deref().unwrap_or("?"),
        peer.port.unwrap_or(0),
    );
    report(
        env.json,
        serde_json::to_value(&peer)?,
        &format!("linked with {} at {addr}", peer.agent),
    )
}

/// `kith peers [--remove A | --block A | --unblock A]`.
pub fn peers(env: &Env, args: PeersArgs) -> Result<()> {
    let control = client(env);
    let running = control.is_running();
    if let Some(agent) = args.remove {
        let changed = if running {
            control
                .post::<_, Changed>(
                    REMOVE_PEER_PATH,
                    &AgentBody {
                        agent: agent.clone(),
                    },
                )?
                .changed
        } else {
            env.config
                .open_file_store()?
                .meta()
                .remove_peer(agent.trim())?
        };
        if !changed {
            bail!("{agent} is not a known peer");
        }
        return report(
            env.json,
            serde_json::json!({"removed": agent}),
            &format!("forgot {agent}"),
        );
    }
    if let Some((agent, blocked)) = args
        .block
        .map(|a| (a, true))
        .or(args.unblock.map(|a| (a, false)))
    {
        let changed = if running {
            let body = BlockBody {
                agent: agent.clone(),
                blocked,
            };
            control.post::<_, Changed>(BLOCK_PEER_PATH, &body)?.changed
        } else {
            let now = unix_secs(SystemTime::now());
            env.config
                .open_file_store()?
                .meta()
                .set_peer_blocked(agent.trim(), blocked, now)?
        };
        let what = if blocked { "blocked" } else { "unblocked" };
        let text = if changed {
            format!("{what} {agent}")
        } else {
            format!("{agent} was already {what}")
        };
        return report(
            env.json,
            serde_json::json!({ what: agent, "changed": changed }),
            &text,
        );
    }
    if let Some(agent) = args.reference_order {
        return reference_order(env, &control, &agent, !args.undo);
    }
    if let Some(agent) = args.check {
        return check_peer(env, &agent);
    }
    if args.nearby {
        return nearby(env);
    }
    let views: Vec<PeerView> = match control.get(PEERS_PATH) {
        Ok(views) => views,
        Err(ControlError::NotRunning { .. }) => {
            let store = env.config.open_file_store()?;
            let mut retention = store.meta().retention_by_peer()?;
            store
                .meta()
                .list_peers()?
                .into_iter()
                .map(|record| PeerView {
                    state: if record.blocked { "blocked" } else { "offline" }.to_owned(),
                    retention: retention
                        .iter()
                        .position(|r| r.agent == record.agent)
                        .map(|i| retention.swap_remove(i)),
                    record,
                    link: None,
                    exchanged: Default::default(),
                })
                .collect()
        }
        Err(e) => return Err(e.into()),
    };
    // Each peer's chat identity: the node id its agent key derives, and the name it goes by.
    let names = chat_names(env, &control);
    let chat_of = |agent: &str| -> (Option<String>, Option<String>) {
        let Ok(agent) = agent.parse::<kith_crypto::identity::AgentId>() else {
            return (None, None);
        };
        let guid = agent.node_id().to_string();
        let name = names.get(&guid).cloned();
        (Some(guid), name)
    };
    if env.json {
        let mut list = serde_json::to_value(&views)?;
        if let Some(items) = list.as_array_mut() {
            for (item, view) in items.iter_mut().zip(&views) {
                let (guid, name) = chat_of(&view.record.agent);
                item["chat_node_id"] = serde_json::json!(guid);
                item["chat_name"] = serde_json::json!(name);
            }
        }
        return print_json(&list);
    }
    if views.is_empty() {
        println!("no peers yet: `kith ticket` on one node, `kith connect TICKET` on the other");
    }
    for view in &views {
        let r = &view.record;
        // A linked peer shows how it is reached (`direct`, `punched`, `relayed`) and the
        // link's remote address; any other, `-` and the address it would be dialled at.
        let link = view.link.as_ref();
        let field = |name: &str| link.and_then(|l| l[name].as_str()).map(str::to_owned);
        let via = field("via").unwrap_or_else(|| "-".to_owned());
        let addr = match (field("remote"), &r.host, r.port) {
            (Some(remote), _, _) => remote,
            (None, Some(h), Some(p)) => kith_node::ticket::join_host_port(h, p),
            _ => "-".to_owned(),
        };
        let ledger = &view.exchanged;
        let exchanged = if ledger.bytes_received + ledger.bytes_sent > 0 {
            format!(
                "  gave us {}, got {}",
                crate::progress::human_bytes(ledger.bytes_received as f64),
                crate::progress::human_bytes(ledger.bytes_sent as f64)
            )
        } else {
            String::new()
        };
        let held = match &view.retention {
            Some(k) => {
                let mut text = format!(
                    "  holds {} file(s): {} check(s) passed, {} failed",
                    k.files_held, k.checks_passed, k.checks_failed
                );
                if k.checks_inconclusive > 0 {
                    text.push_str(&format!(", {} inconclusive", k.checks_inconclusive));
                }
                if let Some(why) = &k.last_failure {
                    let when = k
                        .last_failure_at
                        .and_then(|at| u64::try_from(at).ok())
                        .map(|at| format_time(UNIX_EPOCH + Duration::from_secs(at)))
                        .unwrap_or_default();
                    text.push_str(&format!("; last failure {when}: {why}"));
                }
                text
            }
            None => String::new(),
        };
        let chat = match chat_of(&r.agent) {
            (Some(guid), Some(name)) => format!("  chat {name}@{guid}"),
            (Some(guid), None) => format!("  chat {guid}"),
            _ => String::new(),
        };
        let order = if r.reference_order {
            "  reference cipher order"
        } else {
            ""
        };
        // One line per peer: scripts take the first column of the first line.
        println!(
            "{}  {:<7}  {via:<8}  {addr}{exchanged}{held}{chat}{order}",
            r.agent, view.state
        );
    }
    Ok(())
}

/// `kith peers --reference-order AGENT [--undo]`: through the node when it runs (which also
/// closes a link up now, so the next one takes the option), else in the database.
fn reference_order(env: &Env, control: &ControlClient, agent: &str, on: bool) -> Result<()> {
    let agent = agent.trim();
    let recorded = if control.is_running() {
        let body = ReferenceOrderBody {
            agent: agent.to_owned(),
            on,
        };
        control
            .post::<_, Changed>(REFERENCE_ORDER_PATH, &body)?
            .changed
    } else {
        env.config
            .open_file_store()?
            .meta()
            .set_peer_reference_order(agent, on)?
    };
    if !recorded {
        bail!("{agent} is not a known peer (connect with a ticket first)");
    }
    let order = if on {
        "the MyCHIPs reference cipher order"
    } else {
        "the Noise specification's cipher order"
    };
    report(
        env.json,
        serde_json::json!({"agent": agent, "reference_order": on}),
        &format!("links with {agent} use {order}"),
    )
}

/// The names chat knows, by GUID: from the running node, or from the database.
fn chat_names(env: &Env, control: &ControlClient) -> std::collections::HashMap<String, String> {
    if let Ok(people) = super::chat::people(control) {
        return people
            .into_iter()
            .filter_map(|p| Some((p.guid, p.name?)))
            .collect();
    }
    env.config
        .open_file_store()
        .and_then(|s| Ok(s.meta().chat_nodes(100_000)?))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| Some((n.guid, n.name?)))
        .collect()
}

/// `kith peers --nearby`: what the running node heard on the LAN.
fn nearby(env: &Env) -> Result<()> {
    let nodes: Vec<NearbyNode> = client(env).get(NEARBY_PATH)?;
    if env.json {
        return print_json(&nodes);
    }
    if nodes.is_empty() {
        println!(
            "no kith node heard on the LAN (the node must listen on a LAN address, not loopback)"
        );
    }
    for n in &nodes {
        let proof = if n.verified { "verified" } else { "unverified" };
        println!(
            "{}  {proof:<10}  {}  heard {}s ago",
            n.agent,
            n.addrs.join(","),
            n.heard_secs_ago
        );
    }
    Ok(())
}

/// `kith peers --check AGENT`: proof-of-retention checks of that peer, now.
fn check_peer(env: &Env, agent: &str) -> Result<()> {
    let dir = &env.config.data_dir;
    // A round may hold several sessions, each allowed the protocol's own waits.
    let control = ControlClient::new(
        dir.root(),
        dir.control_socket(),
        Duration::from_millis(env.config.node_limits.exchange_fetch_timeout_ms),
    );
    let reports: Vec<CheckReport> = control.post(
        CHECK_PEER_PATH,
        &AgentBody {
            agent: agent.trim().to_owned(),
        },
    )?;
    if env.json {
        return print_json(&reports);
    }
    if reports.is_empty() {
        println!("{agent} holds no file of ours that is due for a check");
    }
    for r in &reports {
        match &r.reason {
            Some(why) => println!("{}  {}  {why}", r.hash, r.result),
            None => println!("{}  {}", r.hash, r.result),
        }
    }
    Ok(())
}

/// `kith ping AGENT`.
pub fn ping(env: &Env, agent: &str) -> Result<()> {
    // The node bounds the whole ping (dial included) by `ping_timeout_ms` and then says the
    // peer did not answer (exit 1); only a node that does not answer at all gets past this.
    let ping = Duration::from_millis(env.config.limits.ping_timeout_ms);
    let report_: PingReport = client(env).allowing(ping).post(
        PING_PATH,
        &AgentBody {
            agent: agent.to_owned(),
        },
    )?;
    report(
        env.json,
        serde_json::to_value(&report_)?,
        &format!("pong from {}: {:.3} ms", report_.agent, report_.rtt_ms),
    )
}
