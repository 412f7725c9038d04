//! `kith chat ...`: every action goes to the running node's chat task over the control API;
//! `read --follow` and the interactive `kith chat` long-poll the node's message log.

use super::node::client;
use super::Env;
use crate::cli::ChatCommand;
use crate::output::{print_json, report};
use anyhow::{bail, Context, Result};
use base64::Engine;
use kith_node::api::{Attachment, ChannelInfo, ChatReply, ChatRequest};
use kith_node::api::{ChatReadBody, CHAT_PATH, CHAT_READ_PATH, MAX_CHAT_WAIT_MS};
use kith_node::control::ControlClient;
use kith_store::meta::ChatMessageRow;
use serde_json::json;
use std::io::BufRead;
use std::path::PathBuf;

/// Runs one `kith chat` subcommand, or the interactive chat.
pub fn run(env: &Env, command: Option<ChatCommand>) -> Result<()> {
    let control = client(env);
    let Some(command) = command else {
        return interactive(env, &control);
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
                &format!("joined {kind} {name}"),
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
    }
}

fn ask(control: &ControlClient, request: ChatRequest) -> Result<ChatReply> {
    Ok(control.post(CHAT_PATH, &request)?)
}

fn sent(env: &Env, reply: ChatReply) -> Result<()> {
    let ChatReply::Sent { msg_id } = reply else {
        bail!("unexpected answer from the node");
    };
    report(
        env.json,
        json!({"msg_id": msg_id}),
        &format!("sent ({msg_id})"),
    )
}

fn describe_channel(c: &ChannelInfo) -> String {
    let state = match (c.joined, c.invited) {
        (true, _) => "joined",
        (false, true) => "invited (kith chat join to accept)",
        _ => "known",
    };
    let kind = if c.closed { "closed" } else { "public" };
    format!(
        "{:<20} {kind:<6} {state:<8} {} member(s)",
        c.name,
        c.members.len()
    )
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

/// One message as a line of text.
fn format_message(m: &ChatMessageRow) -> String {
    let place = match &m.channel {
        Some(name) => format!("#{name}"),
        None => "(direct)".to_owned(),
    };
    let attachments: Vec<serde_json::Value> =
        serde_json::from_str(&m.attachments).unwrap_or_default();
    let extra = if attachments.is_empty() {
        String::new()
    } else {
        format!(" [{} attachment(s)]", attachments.len())
    };
    format!("{} {place} {}: {}{extra}", m.sent_at, m.sender, m.text)
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
fn fetch(
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
        let wait = if follow { MAX_CHAT_WAIT_MS } else { 0 };
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

/// The interactive chat: lines are said in the current channel; `/help` lists commands.
fn interactive(env: &Env, control: &ControlClient) -> Result<()> {
    let status = ask(control, ChatRequest::Status)?;
    if let ChatReply::Status { node_id, .. } = &status {
        eprintln!("kith chat as {node_id}; /help for commands, Ctrl-D to quit");
    }
    // Messages arriving are printed by a second thread while this one reads commands.
    let follower = control.clone();
    let json = env.json;
    std::thread::spawn(move || {
        let mut after = fetch(&follower, &None, 0, 0)
            .map(|old| old.last().map_or(0, |m| m.seq))
            .unwrap_or(0);
        loop {
            match fetch(&follower, &None, after, MAX_CHAT_WAIT_MS) {
                Ok(messages) => {
                    for m in messages {
                        after = after.max(m.seq);
                        if json {
                            let _ = print_json(&m);
                        } else {
                            println!("{}", format_message(&m));
                        }
                    }
                }
                Err(e) => {
                    eprintln!("chat: {e}");
                    return;
                }
            }
        }
    });
    let mut current: Option<String> = None;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Err(e) = interactive_line(control, line, &mut current) {
            eprintln!("{e:#}");
        }
        if line == "/quit" {
            break;
        }
    }
    Ok(())
}

const INTERACTIVE_HELP: &str = "\
/join NAME            join (or create) a public channel and talk in it
/closed NAME          create a closed (invitation-only, encrypted) channel
/leave NAME           leave a channel
/invite NAME NODE_ID  give a node the key of a closed channel
/kick NAME NODE_ID    remove a node from a closed channel
/msg NODE_ID TEXT     direct message
/channels             list channels
/quit                 leave the chat (Ctrl-D too)
anything else         said in the current channel";

fn interactive_line(
    control: &ControlClient,
    line: &str,
    current: &mut Option<String>,
) -> Result<()> {
    let mut words = line.splitn(3, ' ');
    let command = words.next().unwrap_or("");
    let (first, rest) = (words.next(), words.next());
    match (command, first, rest) {
        ("/help", _, _) => eprintln!("{INTERACTIVE_HELP}"),
        ("/quit", _, _) => {}
        ("/join" | "/closed", Some(name), None) => {
            ask(
                control,
                ChatRequest::Join {
                    name: name.to_owned(),
                    closed: command == "/closed",
                },
            )?;
            eprintln!("now talking in #{name}");
            *current = Some(name.to_owned());
        }
        ("/leave", Some(name), None) => {
            ask(
                control,
                ChatRequest::Leave {
                    name: name.to_owned(),
                },
            )?;
            if current.as_deref() == Some(name) {
                *current = None;
            }
        }
        ("/invite" | "/kick", Some(name), Some(node)) => {
            let (name, node_id) = (name.to_owned(), node.trim().to_owned());
            let request = if command == "/invite" {
                ChatRequest::Invite { name, node_id }
            } else {
                ChatRequest::Kick { name, node_id }
            };
            ask(control, request)?;
        }
        ("/msg", Some(node), Some(text)) => {
            ask(
                control,
                ChatRequest::Send {
                    node_id: node.to_owned(),
                    text: text.to_owned(),
                    attachments: Vec::new(),
                },
            )?;
        }
        ("/channels", None, None) => {
            if let ChatReply::Channels(channels) = ask(control, ChatRequest::Channels)? {
                for channel in &channels {
                    eprintln!("{}", describe_channel(channel));
                }
            }
        }
        (c, _, _) if c.starts_with('/') => {
            bail!("unknown or incomplete command {c:?}; /help lists them")
        }
        _ => {
            let Some(name) = current.clone() else {
                bail!("join a channel first (/join NAME), or /msg NODE_ID TEXT");
            };
            ask(
                control,
                ChatRequest::Say {
                    name,
                    text: line.to_owned(),
                    attachments: Vec::new(),
                },
            )?;
        }
    }
    Ok(())
}
