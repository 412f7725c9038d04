//! `kith chat ...`: every action goes to the running node's chat task over the control API;
//! `read --follow` and the interactive `kith chat` (`chat_interactive.rs`) long-poll the
//! node's message log.

use super::node::client;
use super::Env;
use crate::cli::ChatCommand;
use crate::output::{print_json, report};
use anyhow::{bail, Context, Result};
use base64::Engine;
use kith_node::api::{Attachment, ChannelInfo, ChatReply, ChatRequest, PersonInfo};
use kith_node::api::{ChatReadBody, CHAT_PATH, CHAT_READ_PATH};
use kith_node::control::ControlClient;
use kith_store::meta::ChatMessageRow;
use serde_json::json;
use std::path::PathBuf;

/// Runs one `kith chat` subcommand, or the interactive chat.
pub fn run(env: &Env, command: Option<ChatCommand>) -> Result<()> {
    let control = client(env);
    let Some(command) = command else {
        return super::chat_interactive::run(env, &control);
    };
    match command {
        ChatCommand::Join { name, closed } => {
            let ChatReply::Joined { channel_id } = ask(
                &control,
                ChatRequest::Join {
                    name: name.clone(),
                    closed,
                },
            )?
            else {
                bail!("unexpected answer from the node");
            };
            let kind = if closed { "closed channel" } else { "channel" };
            report(
                env.json,
                json!({"name": name, "channel_id": channel_id, "closed": closed}),
                &format!("joined {kind} {name} ({channel_id})"),
            )
        }
        ChatCommand::Leave { name } => {
            ask(&control, ChatRequest::Leave { name: name.clone() })?;
            report(env.json, json!({"left": name}), &format!("left {name}"))
        }
        ChatCommand::Say { name, text, attach } => {
            let attachments = read_attachments(&attach)?;
            let reply = ask(
                &control,
                ChatRequest::Say {
                    name,
                    text,
                    attachments,
                },
            )?;
            sent(env, reply)
        }
        ChatCommand::Send {
            node_id,
            text,
            attach,
        } => {
            let attachments = read_attachments(&attach)?;
            let reply = ask(
                &control,
                ChatRequest::Send {
                    node_id,
                    text,
                    attachments,
                },
            )?;
            sent(env, reply)
        }
        ChatCommand::Invite { name, node_id } => {
            let request = ChatRequest::Invite {
                name: name.clone(),
                node_id: node_id.clone(),
            };
            ask(&control, request)?;
            report(
                env.json,
                json!({"invited": node_id, "channel": name}),
                &format!("sent {node_id} the key of {name}"),
            )
        }
        ChatCommand::Kick { name, node_id } => {
            let request = ChatRequest::Kick {
                name: name.clone(),
                node_id: node_id.clone(),
            };
            ask(&control, request)?;
            report(
                env.json,
                json!({"removed": node_id, "channel": name}),
                &format!("removed {node_id} from {name}; the other members get a new key"),
            )
        }
        ChatCommand::Channels => {
            let ChatReply::Channels(channels) = ask(&control, ChatRequest::Channels)? else {
                bail!("unexpected answer from the node");
            };
            if env.json {
                return print_json(&channels);
            }
            if channels.is_empty() {
                println!("no channels yet: `kith chat join NAME` creates one");
            }
            for channel in &channels {
                println!("{}", describe_channel(channel));
            }
            Ok(())
        }
        ChatCommand::Read { name, follow } => read(env, &control, name, follow),
        ChatCommand::Connect { node_id } => {
            ask(
                &control,
                ChatRequest::Connect {
                    node_id: node_id.clone(),
                },
            )?;
            report(
                env.json,
                json!({"connect": node_id}),
                &format!("asked {node_id} for a direct link; `kith peers` shows it once linked"),
            )
        }
        ChatCommand::Nick { name } => {
            let ChatReply::Nick { name, node_id } = ask(&control, ChatRequest::Nick { name })?
            else {
                bail!("unexpected answer from the node");
            };
            let text = match &name {
                Some(n) => format!("you are {n} now ({node_id})"),
                None => format!("no name now ({node_id})"),
            };
            report(env.json, json!({"name": name, "node_id": node_id}), &text)
        }
        ChatCommand::Who => {
            let people = people(&control)?;
            if env.json {
                return print_json(&people);
            }
            if people.is_empty() {
                println!("nobody heard of yet");
            }
            for p in &people {
                println!("{}", describe_person(p));
            }
            Ok(())
        }
        ChatCommand::Peer { address, remove } => {
            let request = ChatRequest::Peer {
                address: address.clone(),
                remove,
            };
            let ChatReply::Peers(peers) = ask(&control, request)? else {
                bail!("unexpected answer from the node");
            };
            match (address, env.json) {
                (_, true) => print_json(&peers),
                (Some(a), false) if remove => {
                    println!("no longer dialling {a}");
                    Ok(())
                }
                (Some(a), false) => {
                    println!("dialling {a} (and again whenever the connection ends)");
                    Ok(())
                }
                (None, false) => {
                    if peers.is_empty() {
                        println!("no ptpchat routers: `kith chat peer HOST:PORT` dials one");
                    }
                    for p in peers {
                        println!("{p}");
                    }
                    Ok(())
                }
            }
        }
        ChatCommand::Block { node_id, undo } => {
            ask(
                &control,
                ChatRequest::Block {
                    node_id: node_id.clone(),
                    blocked: !undo,
                },
            )?;
            let what = if undo { "unblocked" } else { "blocked" };
            report(
                env.json,
                json!({ what: node_id }),
                &format!("{what} {node_id}"),
            )
        }
        ChatCommand::Mute { node_id, undo } => {
            ask(
                &control,
                ChatRequest::Mute {
                    node_id: node_id.clone(),
                    muted: !undo,
                },
            )?;
            let what = if undo { "unmuted" } else { "muted" };
            report(
                env.json,
                json!({ what: node_id }),
                &format!("{what} {node_id}"),
            )
        }
    }
}

pub(super) fn ask(control: &ControlClient, request: ChatRequest) -> Result<ChatReply> {
    Ok(control.post(CHAT_PATH, &request)?)
}

/// Everyone the node heard of.
pub(super) fn people(control: &ControlClient) -> Result<Vec<PersonInfo>> {
    match ask(control, ChatRequest::People)? {
        ChatReply::People(people) => Ok(people),
        _ => bail!("unexpected answer from the node"),
    }
}

/// "sent" or "queued", and whether the recipient is one nobody here knows.
pub(super) fn sent_text(reply: &ChatReply) -> Option<String> {
    let ChatReply::Sent {
        msg_id,
        state,
        recipients,
        queued,
        unknown_recipient,
        to,
    } = reply
    else {
        return None;
    };
    let mut text = match (state.as_str(), to) {
        ("queued", Some(to)) => format!(
            "queued for {to} ({msg_id}): no route yet; it goes when there is one (`kith chat read` shows when it arrives)"
        ),
        ("queued", None) => format!(
            "queued ({msg_id}): {queued} of {recipients} member(s) cannot be reached yet; it goes to them when they can"
        ),
        (_, Some(to)) => format!("sent to {to} ({msg_id})"),
        _ => format!("sent ({msg_id})"),
    };
    if *unknown_recipient {
        text.push_str(
            "\nnote: no node here has heard of that id (no route, not a peer, never seen): check it with `kith chat who` or `kith peers`",
        );
    }
    Some(text)
}

fn sent(env: &Env, reply: ChatReply) -> Result<()> {
    let Some(text) = sent_text(&reply) else {
        bail!("unexpected answer from the node");
    };
    report(
        env.json,
        serde_json::to_value(&reply)?["sent"].clone(),
        &text,
    )
}

pub(super) fn describe_channel(c: &ChannelInfo) -> String {
    let state = match (c.joined, c.invited) {
        (true, _) => "joined",
        (false, true) => "invited (kith chat join to accept)",
        _ => "known",
    };
    let kind = if c.closed { "closed" } else { "public" };
    format!(
        "{:<20} {kind:<6} {state:<8} {} member(s)  {}",
        c.name,
        c.members.len(),
        c.channel_id
    )
}

pub(super) fn describe_person(p: &PersonInfo) -> String {
    let presence = if p.linked {
        "here now".to_owned()
    } else {
        match p.last_seen {
            Some(at) => format!("last seen {}", time(at)),
            None => "never seen".to_owned(),
        }
    };
    let hops = p
        .hops
        .map(|h| format!(", {h} hop(s) away"))
        .unwrap_or_default();
    let mut flags = String::new();
    if p.blocked {
        flags.push_str(" [blocked]");
    }
    if p.muted {
        flags.push_str(" [muted]");
    }
    format!(
        "{:<24} {presence}{hops}{flags}\n  {}",
        p.name.as_deref().unwrap_or("-"),
        p.node_id
    )
}

/// Unix seconds as RFC 3339.
pub(super) fn time(secs: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// MIME types by extension, for attachments; anything else is `application/octet-stream`.
fn mime_type(path: &std::path::Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "txt" | "md" => "text/plain",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

fn read_attachments(paths: &[PathBuf]) -> Result<Vec<Attachment>> {
    paths
        .iter()
        .map(|path| {
            let data = std::fs::read(path)
                .with_context(|| format!("cannot read attachment {}", path.display()))?;
            Ok(Attachment {
                mime_type: mime_type(path).to_owned(),
                data: base64::engine::general_purpose::STANDARD.encode(data),
            })
        })
        .collect()
}

/// Where one of the user's own messages stands, for display.
fn standing(m: &ChatMessageRow) -> String {
    match m.state.as_deref() {
        None => String::new(),
        Some("delivered") => match (m.recipients, m.delivered_at) {
            (n, Some(at)) if n > 1 => format!(" [delivered to all {n}, {}]", time(at)),
            (_, Some(at)) => format!(" [delivered {}]", time(at)),
            _ => " [delivered]".to_owned(),
        },
        Some("unconfirmed") => format!(
            " [not confirmed: {}/{} receipts]",
            m.delivered, m.recipients
        ),
        Some(state) if m.delivered > 0 => {
            format!(" [{state}, delivered to {}/{}]", m.delivered, m.recipients)
        }
        Some(state) => format!(" [{state}]"),
    }
}

/// One message as a line of text.
pub(super) fn format_message(m: &ChatMessageRow) -> String {
    let place = match (&m.channel, &m.recipient) {
        (Some(name), _) => format!("#{name}"),
        (None, Some(to)) => format!("(to {to})"),
        (None, None) => "(direct)".to_owned(),
    };
    let attachments: Vec<serde_json::Value> =
        serde_json::from_str(&m.attachments).unwrap_or_default();
    let extra = if attachments.is_empty() {
        String::new()
    } else {
        format!(" [{} attachment(s)]", attachments.len())
    };
    format!(
        "{} {place} {}: {}{extra}{}",
        m.sent_at,
        m.sender,
        m.text,
        standing(m)
    )
}

fn print_message(env: &Env, m: &ChatMessageRow) -> Result<()> {
    if env.json {
        print_json(m)
    } else {
        println!("{}", format_message(m));
        Ok(())
    }
}

/// Fetches messages after `after`, waiting up to `wait_ms` for one.
pub(super) fn fetch(
    control: &ControlClient,
    channel: &Option<String>,
    after: i64,
    wait_ms: u64,
) -> Result<Vec<ChatMessageRow>> {
    let body = ChatReadBody {
        channel: channel.clone(),
        after,
        limit: 1_000,
        wait_ms,
    };
    Ok(control.post(CHAT_READ_PATH, &body)?)
}

fn read(env: &Env, control: &ControlClient, channel: Option<String>, follow: bool) -> Result<()> {
    let mut after = 0;
    loop {
        let wait = if follow {
            kith_node::api::MAX_CHAT_WAIT_MS
        } else {
            0
        };
        let messages = fetch(control, &channel, after, wait)?;
        for m in &messages {
            print_message(env, m)?;
            after = after.max(m.seq);
        }
        if !follow && messages.len() < 1_000 {
            return Ok(());
        }
    }
}
