//! `kith chat` with no subcommand: a chat client in the manner of an IRC client. A prompt
//! shows the current channel; lines are said there; `/commands` do the rest (`/help`). On a
//! terminal it has line editing and a history kept in the data dir, and messages arriving
//! are printed above the line being typed; Ctrl-C or Ctrl-D leave the client (the terminal
//! is left as it was). From a pipe it reads one line at a time and prints what arrives.

use super::chat::{
    ask, describe_channel, describe_person, fetch, format_message, people, sent_text,
};
use super::Env;
use anyhow::{bail, Result};
use kith_node::api::{ChatReply, ChatRequest, MAX_CHAT_WAIT_MS};
use kith_node::control::ControlClient;
use kith_store::meta::ChatMessageRow;
use std::io::{BufRead, IsTerminal};
use std::sync::{Arc, Mutex};

/// History kept between sessions, in the data dir.
const HISTORY_FILE: &str = "chat_history";
/// Messages shown when joining a channel.
const BACKLOG: usize = 20;

const HELP: &str = "\
/join NAME|ID         join a channel (a public one is created if nobody has) and talk there
/closed NAME          create a closed (invitation-only, encrypted) channel
/leave [NAME]         leave a channel (the current one)
/list                 the channels known
/names [NAME]         who is in a channel (the current one)
/who                  everyone heard of, who is here now, when last seen
/msg NODE TEXT        a direct message (NODE: a name, a node id or an agent id)
/me TEXT              an action, said in the current channel
/nick [NAME]          the name you go by (none: clear it)
/invite NODE [NAME]   give a node the key of a closed channel (the current one)
/kick NODE [NAME]     remove a node from a closed channel (the current one)
/peer HOST:PORT       keep a ptpchat router dialled
/block NODE, /mute NODE   (and /unblock, /unmute)
/quit                 leave the chat (Ctrl-C and Ctrl-D too)
anything else         said in the current channel";

/// Where a line goes: a terminal's editor (printing what arrives above the prompt) or plain
/// standard output.
type Printer = Arc<Mutex<dyn FnMut(String) + Send>>;

/// Runs the interactive chat until the user leaves.
pub fn run(env: &Env, control: &ControlClient) -> Result<()> {
    let me = match ask(control, ChatRequest::Status)? {
        ChatReply::Status { node_id, .. } => node_id,
        _ => bail!("unexpected answer from the node"),
    };
    let terminal = std::io::stdin().is_terminal();
    let mut editor = if terminal {
        rustyline::DefaultEditor::new().ok()
    } else {
        None
    };
    let history = env.config.data_dir.root().join(HISTORY_FILE);
    let printer: Printer = match editor.as_mut().map(|e| e.create_external_printer()) {
        Some(Ok(mut external)) => Arc::new(Mutex::new(move |line: String| {
            use rustyline::ExternalPrinter;
            let _ = external.print(line + "\n");
        })),
        _ => Arc::new(Mutex::new(|line: String| println!("{line}"))),
    };
    if let Some(editor) = editor.as_mut() {
        let _ = editor.load_history(&history);
        eprintln!("kith chat as {me}; /help for commands, /quit or Ctrl-D to leave");
    }
    follow(control.clone(), env.json, Arc::clone(&printer));
    let mut client = Client {
        control: control.clone(),
        current: None,
        printer,
    };
    let mut lines = (!terminal).then(|| std::io::stdin().lock());
    loop {
        let prompt = match &client.current {
            Some(c) => format!("[#{c}] "),
            None => "[kith] ".to_owned(),
        };
        let line = match (&mut editor, &mut lines) {
            (Some(editor), _) => match editor.readline(&prompt) {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                    }
                    line
                }
                // Ctrl-C and Ctrl-D leave the client, and only it.
                Err(rustyline::error::ReadlineError::Interrupted)
                | Err(rustyline::error::ReadlineError::Eof) => break,
                Err(e) => {
                    eprintln!("kith chat: {e}");
                    break;
                }
            },
            (None, Some(stdin)) => {
                let mut line = String::new();
                match stdin.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => line.trim_end_matches(['\n', '\r']).to_owned(),
                }
            }
            (None, None) => break,
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line == "/quit" || line == "/exit" {
            break;
        }
        if let Err(e) = client.line(line) {
            client.say(format!("! {e:#}"));
        }
    }
    if let Some(editor) = editor.as_mut() {
        let _ = editor.save_history(&history);
    }
    Ok(())
}

/// Prints messages as they arrive, from a thread of their own, from the newest on.
fn follow(control: ControlClient, json: bool, printer: Printer) {
    std::thread::spawn(move || {
        let mut after = fetch(&control, &None, 0, 0)
            .map(|old| last_seq(&old))
            .unwrap_or(0);
        loop {
            match fetch(&control, &None, after, MAX_CHAT_WAIT_MS) {
                Ok(messages) => {
                    for m in messages {
                        after = after.max(m.seq);
                        let line = if json {
                            serde_json::to_string(&m).unwrap_or_default()
                        } else {
                            format_message(&m)
                        };
                        (printer.lock().unwrap_or_else(|e| e.into_inner()))(line);
                    }
                }
                Err(e) => {
                    (printer.lock().unwrap_or_else(|e| e.into_inner()))(format!(
                        "! the node stopped answering: {e}"
                    ));
                    return;
                }
            }
        }
    });
}

fn last_seq(rows: &[ChatMessageRow]) -> i64 {
    rows.iter().map(|m| m.seq).max().unwrap_or(0)
}

struct Client {
    control: ControlClient,
    current: Option<String>,
    printer: Printer,
}

impl Client {
    fn say(&self, line: String) {
        (self.printer.lock().unwrap_or_else(|e| e.into_inner()))(line);
    }

    fn ask(&self, request: ChatRequest) -> Result<ChatReply> {
        ask(&self.control, request).map_err(|e| {
            // The next step, in this client's words.
            let text = format!("{e:#}");
            match text.split("`kith chat join ").nth(1) {
                Some(rest) => anyhow::anyhow!(
                    "you are not in {}: /join it first",
                    rest.trim_end_matches("` first")
                ),
                None => e,
            }
        })
    }

    fn channel(&self, given: Option<&str>) -> Result<String> {
        match given.or(self.current.as_deref()) {
            Some(c) => Ok(c.to_owned()),
            None => bail!("which channel? /join one first, or name it"),
        }
    }

    fn line(&mut self, line: &str) -> Result<()> {
        let (command, rest) = match line.split_once(' ') {
            Some((c, r)) => (c, r.trim()),
            None => (line, ""),
        };
        let mut words = rest.split_whitespace();
        let (first, second) = (words.next(), words.next());
        if !command.starts_with('/') || command.starts_with("//") {
            // Plain text (a leading "//" says a line that starts with "/").
            let text = line.strip_prefix('/').filter(|_| command.starts_with("//"));
            return self.say_in_channel(text.unwrap_or(line).to_owned());
        }
        match command {
            "/help" => self.say(HELP.to_owned()),
            "/join" | "/closed" => {
                let Some(name) = first else {
                    bail!("/join NAME");
                };
                let reply = self.ask(ChatRequest::Join {
                    name: name.to_owned(),
                    closed: command == "/closed",
                })?;
                if let ChatReply::Joined { channel_id } = reply {
                    self.say(format!("* now talking in #{name} ({channel_id})"));
                }
                self.current = Some(name.to_owned());
                self.backlog(name)?;
            }
            "/leave" | "/part" => {
                let name = self.channel(first)?;
                self.ask(ChatRequest::Leave { name: name.clone() })?;
                self.say(format!("* left #{name}"));
                if self.current.as_deref() == Some(&name) {
                    self.current = None;
                }
            }
            "/list" | "/channels" => {
                if let ChatReply::Channels(channels) = self.ask(ChatRequest::Channels)? {
                    if channels.is_empty() {
                        self.say("* no channels yet: /join NAME creates one".into());
                    }
                    for c in &channels {
                        self.say(describe_channel(c));
                    }
                }
            }
            "/names" => {
                let name = self.channel(first)?;
                let ChatReply::Channels(channels) = self.ask(ChatRequest::Channels)? else {
                    bail!("unexpected answer from the node");
                };
                let Some(c) = channels
                    .iter()
                    .find(|c| c.name == name || c.channel_id == name)
                else {
                    bail!("no channel {name} known");
                };
                let here = people(&self.control).unwrap_or_default();
                let names: Vec<String> = c
                    .members
                    .iter()
                    .map(|m| {
                        let guid = m.rsplit('@').next().unwrap_or(m);
                        let p = here.iter().find(|p| p.guid == guid);
                        let name = p.and_then(|p| p.name.clone()).unwrap_or_else(|| m.clone());
                        if p.is_some_and(|p| p.linked) {
                            format!("{name} (here)")
                        } else {
                            name
                        }
                    })
                    .collect();
                self.say(format!("* #{}: {}", c.name, names.join(", ")));
            }
            "/who" => {
                for p in people(&self.control)? {
                    self.say(describe_person(&p));
                }
            }
            "/msg" | "/query" => {
                let (Some(node), Some(text)) = (first, rest.split_once(' ').map(|(_, t)| t)) else {
                    bail!("/msg NODE TEXT");
                };
                let reply = self.ask(ChatRequest::Send {
                    node_id: node.to_owned(),
                    text: text.trim().to_owned(),
                    attachments: Vec::new(),
                })?;
                self.report_sent(&reply);
            }
            "/me" => {
                if rest.is_empty() {
                    bail!("/me TEXT");
                }
                self.say_in_channel(format!("\u{2022} {rest}"))?;
            }
            "/nick" => {
                let reply = self.ask(ChatRequest::Nick {
                    name: first.map(str::to_owned),
                })?;
                if let ChatReply::Nick { node_id, .. } = reply {
                    self.say(format!("* you are {node_id} now"));
                }
            }
            "/invite" | "/kick" => {
                let Some(node) = first else {
                    bail!("{command} NODE [CHANNEL]");
                };
                let name = self.channel(second)?;
                let (name, node_id) = (name, node.to_owned());
                let request = if command == "/invite" {
                    ChatRequest::Invite { name, node_id }
                } else {
                    ChatRequest::Kick { name, node_id }
                };
                self.ask(request)?;
                self.say("* done".into());
            }
            "/peer" => {
                self.ask(ChatRequest::Peer {
                    address: first.map(str::to_owned),
                    remove: false,
                })?;
                if let Some(a) = first {
                    self.say(format!("* dialling {a}"));
                }
            }
            "/block" | "/unblock" | "/mute" | "/unmute" => {
                let Some(node) = first else {
                    bail!("{command} NODE");
                };
                let node_id = node.to_owned();
                let request = match command {
                    "/block" => ChatRequest::Block {
                        node_id,
                        blocked: true,
                    },
                    "/unblock" => ChatRequest::Block {
                        node_id,
                        blocked: false,
                    },
                    "/mute" => ChatRequest::Mute {
                        node_id,
                        muted: true,
                    },
                    _ => ChatRequest::Mute {
                        node_id,
                        muted: false,
                    },
                };
                self.ask(request)?;
                self.say(format!("* {} {node}", &command[1..]));
            }
            other => bail!("unknown command {other}; /help lists them"),
        }
        Ok(())
    }

    fn say_in_channel(&mut self, text: String) -> Result<()> {
        let Some(name) = self.current.clone() else {
            bail!("join a channel first (/join NAME), or /msg NODE TEXT");
        };
        let reply = self.ask(ChatRequest::Say {
            name,
            text,
            attachments: Vec::new(),
        })?;
        if let ChatReply::Sent { state, .. } = &reply {
            // Sent is the normal case: the line itself shows up as it is logged.
            if state != "sent" {
                self.report_sent(&reply);
            }
        }
        Ok(())
    }

    fn report_sent(&self, reply: &ChatReply) {
        if let Some(text) = sent_text(reply) {
            self.say(format!("* {text}"));
        }
    }

    /// The channel's last messages, when joining it.
    fn backlog(&self, name: &str) -> Result<()> {
        let reply = self.ask(ChatRequest::Backlog {
            name: name.to_owned(),
            limit: BACKLOG,
        })?;
        if let ChatReply::Backlog(rows) = reply {
            if !rows.is_empty() {
                self.say(format!("* the last {} message(s) of #{name}:", rows.len()));
            }
            for m in &rows {
                self.say(format_message(m));
            }
        }
        Ok(())
    }
}
