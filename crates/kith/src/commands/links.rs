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
    AgentBody, BlockBody, Changed, ConnectBody, IssuedTicket, PeerView, PingReport, TicketOrder,
    TokenBody, BLOCK_PEER_PATH, CHECK_PEER_PATH, CONNECT_PATH, PEERS_PATH, PING_PATH,
    REMOVE_PEER_PATH, REVOKE_PATH, TICKETS_PATH,
};
use kith_node::control::{ControlClient, ControlError};
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
    };
    let issued = issue_ticket(env, order)?;
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

/// `kith connect TICKET`.
pub fn connect(env: &Env, ticket: &str) -> Result<()> {
    // Check the ticket here too, so a mistyped one fails before anything is sent anywhere.
    let parsed = Ticket::parse(ticket)?;
    parsed.check_unexpired(SystemTime::now())?;
    // The node dials and runs the handshake, each with its own deadline: wait for those too,
    // so an unreachable site is reported as such, not as our node not answering.
    let limits = &env.config.limits;
    let dial = Duration::from_millis(limits.connect_timeout_ms + limits.handshake_timeout_ms);
    let peer: PeerRecord = client(env).allowing(dial).post(
        CONNECT_PATH,
        &ConnectBody {
            ticket: ticket.to_owned(),
        },
    )?;
    let addr = format!(
        "{}:{}",
        peer.host.as_deref().unwrap_or("?"),
        peer.port.unwrap_or(0)
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
    if let Some(agent) = args.check {
        return check_peer(env, &agent);
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
    if env.json {
        return print_json(&views);
    }
    if views.is_empty() {
        println!("no peers yet: `kith ticket` on one node, `kith connect TICKET` on the other");
    }
    for view in &views {
        let r = &view.record;
        let addr = match (&r.host, r.port) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
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
        // One line per peer: scripts take the first column of the first line.
        println!("{}  {:<7}  {addr}{exchanged}{held}", r.agent, view.state);
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
