//! `kith user`, `kith tally`, `kith pay`, `kith invoice`, `kith chit`: MyCHIPs tallies and
//! chits between this site's users and their partners.
//!
//! `user add|ls` work on the data dir directly (a node need not run); `tally verify` needs
//! neither a node nor a data dir; everything else goes through the running node.

use super::node::client;
use super::Env;
use crate::cli::{ChitCommand, TallyCommand, UserCommand};
use crate::output::{print_json, read_bounded};
use anyhow::{bail, Context, Result};
use kith_node::api::value::*;
use kith_node::tally::{users, ANSWER_WAIT};
use kith_value::tally::{Side, SignCheck, Tally};
use std::path::Path;

/// `kith user ...`.
pub fn user(env: &Env, command: UserCommand) -> Result<()> {
    let store = env.config.open_file_store()?;
    match command {
        UserCommand::Add { cuid, name } => {
            let agent = env.identity()?.agent_id().to_string();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            let user = users::add_user(
                &env.config.data_dir,
                store.meta(),
                &cuid,
                name.as_deref().unwrap_or(&cuid),
                &agent,
                now,
            )?;
            if env.json {
                print_json(&serde_json::json!({
                    "cuid": user.cuid, "name": user.name, "chad": format!("{}:{agent}", user.cuid),
                    "cert": serde_json::from_str::<serde_json::Value>(&user.cert)?,
                }))
            } else {
                println!("{}:{agent}  {}", user.cuid, user.name);
                Ok(())
            }
        }
        UserCommand::Ls => {
            let agent = env.identity()?.agent_id().to_string();
            let list = store.meta().value_users()?;
            if env.json {
                let docs: Vec<_> = list
                    .iter()
                    .map(|u| {
                        serde_json::json!({
                            "cuid": u.cuid, "name": u.name, "chad": format!("{}:{agent}", u.cuid),
                        })
                    })
                    .collect();
                return print_json(&docs);
            }
            if list.is_empty() {
                eprintln!("no users yet: `kith user add CUID --name NAME` adds one");
            }
            for u in list {
                println!("{}:{agent}  {}", u.cuid, u.name);
            }
            Ok(())
        }
    }
}

/// `kith tally verify FILE`: both signatures of a tally JSON file; no node, no data dir.
pub fn verify(path: &Path, json: bool) -> Result<()> {
    let bytes = read_bounded(path, 1 << 20)?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not JSON", path.display()))?;
    let tally =
        Tally::from_json(value).with_context(|| format!("{} is not a tally", path.display()))?;
    let mut failed = Vec::new();
    let mut report = serde_json::Map::new();
    for side in [Side::Stock, Side::Foil] {
        let (ok, text) = match tally.check(side) {
            SignCheck::Valid => (true, "valid".to_owned()),
            SignCheck::Missing => (false, "missing".to_owned()),
            SignCheck::Invalid(why) => (false, format!("invalid ({why})")),
        };
        if !ok {
            failed.push(side.as_str());
        }
        report.insert(
            side.as_str().into(),
            serde_json::json!({"valid": ok, "detail": text}),
        );
        if !json {
            println!("{side}: {text}");
        }
    }
    if json {
        report.insert("tally".into(), serde_json::json!(tally.uuid()));
        report.insert("valid".into(), serde_json::json!(failed.is_empty()));
        print_json(&report)?;
    }
    if !failed.is_empty() {
        if failed.len() == 2 {
            bail!("neither signature verifies (stock and foil)");
        }
        bail!("the {} signature does not verify", failed[0]);
    }
    Ok(())
}

fn print_tallies(env: &Env, list: &[TallyView]) -> Result<()> {
    if env.json {
        return print_json(&list);
    }
    if list.is_empty() {
        eprintln!("no tallies yet: `kith tally ticket` invites a partner, `kith tally open TICKET` accepts");
    }
    for t in list {
        let name = if t.partner_name.is_empty() {
            &t.partner
        } else {
            &t.partner_name
        };
        println!(
            "{}  {}  {:<8} with {name}  balance {:+}  limit {} (partner's {})  chits {}",
            t.tally, t.user, t.state, t.balance, t.limit, t.partner_limit, t.chits
        );
    }
    Ok(())
}

fn print_chit(env: &Env, chit: &ChitView, verb: &str) -> Result<()> {
    if env.json {
        return print_json(chit);
    }
    println!(
        "{verb} {}: {:+} units on tally {} ({})",
        chit.id, chit.units, chit.tally, chit.status
    );
    Ok(())
}

/// `kith tally ...` (all but `verify`, handled before the settings load).
pub fn tally(env: &Env, command: TallyCommand) -> Result<()> {
    let control = client(env);
    match command {
        TallyCommand::Ticket {
            user,
            limit,
            for_chad,
            ttl,
        } => {
            let ttl = humantime::parse_duration(&ttl)
                .with_context(|| format!("--ttl {ttl:?} is not a duration like 45m, 2h or 7d"))?;
            let issued: IssuedTallyTicket = control.post(
                TALLY_TICKET_PATH,
                &TallyTicketOrder {
                    user,
                    limit,
                    for_chad,
                    ttl_secs: ttl.as_secs(),
                },
            )?;
            if env.json {
                print_json(&issued)
            } else {
                eprintln!(
                    "tally ticket for {} (credit granted: {} units); one use, expires {}",
                    issued.user, issued.limit, issued.ticket.expires
                );
                println!("{}", issued.line);
                Ok(())
            }
        }
        TallyCommand::Open {
            ticket,
            user,
            limit,
        } => {
            let view: TallyView = control
                .allowing(ANSWER_WAIT + std::time::Duration::from_secs(30))
                .post(
                    TALLY_OPEN_PATH,
                    &TallyOpenBody {
                        ticket,
                        user,
                        limit,
                    },
                )?;
            if env.json {
                print_json(&view)
            } else {
                print_tallies(env, std::slice::from_ref(&view))
            }
        }
        TallyCommand::Ls => {
            let list: Vec<TallyView> = control.get(TALLIES_PATH)?;
            print_tallies(env, &list)
        }
        TallyCommand::Show { tally, user } => {
            let detail: TallyDetail =
                control.post(TALLY_SHOW_PATH, &TallyIdBody { tally, user })?;
            if env.json {
                return print_json(&detail);
            }
            print_tallies(env, std::slice::from_ref(&detail.view))?;
            for c in &detail.chit_list {
                let index = c
                    .index
                    .map(|i| format!("#{i}"))
                    .unwrap_or_else(|| "-".into());
                println!(
                    "  {index:>5}  {:+}  {}  {}  {}{}",
                    c.units,
                    c.status,
                    c.id,
                    c.date,
                    c.memo
                        .as_deref()
                        .map(|m| format!("  {m}"))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        TallyCommand::Close { tally, user } => {
            let view: TallyView = control
                .allowing(ANSWER_WAIT)
                .post(TALLY_CLOSE_PATH, &TallyIdBody { tally, user })?;
            print_tallies(env, std::slice::from_ref(&view))
        }
        TallyCommand::Verify { .. } => unreachable!("handled before the settings load"),
    }
}

/// `kith pay`.
pub fn pay(
    env: &Env,
    partner: String,
    units: u64,
    memo: Option<String>,
    user: Option<String>,
) -> Result<()> {
    let body = PayBody {
        partner,
        units,
        memo,
        user,
    };
    post_chit(env, PAY_PATH, &body, "paid")
}

/// `kith invoice`.
pub fn invoice(
    env: &Env,
    partner: String,
    units: u64,
    memo: Option<String>,
    user: Option<String>,
) -> Result<()> {
    let body = PayBody {
        partner,
        units,
        memo,
        user,
    };
    post_chit(env, INVOICE_PATH, &body, "invoiced")
}

/// Asks the node for a chit (a payment or an invoice) and prints it once the node answers.
fn post_chit(env: &Env, path: &str, body: &PayBody, done: &str) -> Result<()> {
    let chit: ChitView = client(env).allowing(ANSWER_WAIT).post(path, body)?;
    print_chit(env, &chit, done)
}

/// `kith chit accept|refuse`.
pub fn chit(env: &Env, command: ChitCommand) -> Result<()> {
    let (id, accept) = match command {
        ChitCommand::Accept { id } => (id, true),
        ChitCommand::Refuse { id } => (id, false),
    };
    let chit: ChitView = client(env)
        .allowing(ANSWER_WAIT)
        .post(CHIT_ANSWER_PATH, &ChitAnswerBody { id, accept })?;
    print_chit(env, &chit, if accept { "paid" } else { "refused" })
}
