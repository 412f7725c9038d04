//! The peer commands and replies as typed values, with their one-line text forms.
//!
//! The same text forms travel over the peer port (as CRLF lines) and over secure links (one
//! line per envelope), so this is the only parser of commands and replies.

use std::fmt;

use super::hash::ContentHash;

/// What `chk` asks about: a content hash or a tag naming one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// 64 hex digits.
    Hash(ContentHash),
    /// Anything else: a tag (`bc.…` outside interactive testing).
    Tag(String),
}

impl Target {
    /// A hash if `s` is 64 hex digits, a tag otherwise.
    pub fn parse(s: &str) -> Target {
        match s.parse() {
            Ok(h) => Target::Hash(h),
            Err(_) => Target::Tag(s.to_string()),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Hash(h) => write!(f, "{h}"),
            Target::Tag(t) => f.write_str(t),
        }
    }
}

/// A peer-protocol command.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Command {
    /// `chk <tag_or_hash> [<nonce>]`: does the peer have it (or prove it, with a nonce)?
    Chk {
        /// The hash or tag.
        target: Target,
        /// The proof-of-retention nonce.
        nonce: Option<String>,
    },
    /// `get <hash>`: send me this item.
    Get {
        /// The item.
        hash: ContentHash,
    },
    /// `put <hash>`: here is this item.
    Put {
        /// The item.
        hash: ContentHash,
    },
    /// `pip <addr>`: swap one peer address.
    Pip {
        /// Our offered address.
        addr: String,
    },
    /// `tls`: start TLS (only as the very first command).
    Tls,
    /// `bye`: end the session.
    Bye,
    /// `?` or `help`: list the commands (once per session).
    Help,
}

/// The kind of a [`Command`], for the state table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandKind {
    /// `chk`
    Chk,
    /// `get`
    Get,
    /// `put`
    Put,
    /// `pip`
    Pip,
    /// `tls`
    Tls,
    /// `bye`
    Bye,
    /// `?` / `help`
    Help,
}

impl CommandKind {
    /// Every kind, for table-driven code.
    pub const ALL: [CommandKind; 7] = [
        CommandKind::Chk,
        CommandKind::Get,
        CommandKind::Put,
        CommandKind::Pip,
        CommandKind::Tls,
        CommandKind::Bye,
        CommandKind::Help,
    ];

    /// The command's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            CommandKind::Chk => "chk",
            CommandKind::Get => "get",
            CommandKind::Put => "put",
            CommandKind::Pip => "pip",
            CommandKind::Tls => "tls",
            CommandKind::Bye => "bye",
            CommandKind::Help => "?",
        }
    }
}

/// Why a line is not a command. Both end the session with the matching `(error)` line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// `(error)unknown command '<cmd>'`
    #[error("unknown command '{0}'")]
    Unknown(String),
    /// `(error)invalid command usage '<line>'`
    #[error("invalid command usage '{0}'")]
    InvalidUsage(String),
}

impl Command {
    /// The command's kind.
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::Chk { .. } => CommandKind::Chk,
            Command::Get { .. } => CommandKind::Get,
            Command::Put { .. } => CommandKind::Put,
            Command::Pip { .. } => CommandKind::Pip,
            Command::Tls => CommandKind::Tls,
            Command::Bye => CommandKind::Bye,
            Command::Help => CommandKind::Help,
        }
    }

    /// The arguments that must not contain `.key` (the tag, nonce or address).
    pub fn free_text_args(&self) -> Vec<&str> {
        match self {
            Command::Chk { target, nonce } => {
                let mut v = Vec::new();
                if let Target::Tag(t) = target {
                    v.push(t.as_str());
                }
                if let Some(n) = nonce {
                    v.push(n.as_str());
                }
                v
            }
            Command::Pip { addr } => vec![addr.as_str()],
            _ => Vec::new(),
        }
    }

    /// Parses one command line (without its CRLF). Arguments are separated by single spaces;
    /// `get` and `put` take exactly one 64-hex-digit hash; `?`/`help` may carry one ignored
    /// argument (the reference's wildcard).
    pub fn parse(line: &str) -> Result<Command, ParseError> {
        let usage = || ParseError::InvalidUsage(line.to_string());
        let mut parts = line.split(' ');
        let name = parts.next().unwrap_or("");
        let args: Vec<&str> = parts.collect();
        if args
            .iter()
            .any(|a| a.is_empty() || !a.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(usage());
        }
        let hash = |args: &[&str]| match args {
            [h] => h.parse::<ContentHash>().map_err(|_| usage()),
            _ => Err(usage()),
        };
        match name {
            "chk" => match args.as_slice() {
                [t] => Ok(Command::Chk {
                    target: Target::parse(t),
                    nonce: None,
                }),
                [t, n] => Ok(Command::Chk {
                    target: Target::parse(t),
                    nonce: Some(n.to_string()),
                }),
                _ => Err(usage()),
            },
            "get" => Ok(Command::Get { hash: hash(&args)? }),
            "put" => Ok(Command::Put { hash: hash(&args)? }),
            "pip" => match args.as_slice() {
                [a] => Ok(Command::Pip {
                    addr: a.to_string(),
                }),
                _ => Err(usage()),
            },
            "tls" | "bye" if !args.is_empty() => Err(usage()),
            "tls" => Ok(Command::Tls),
            "bye" => Ok(Command::Bye),
            "?" | "help" if args.len() <= 1 => Ok(Command::Help),
            "?" | "help" => Err(usage()),
            _ => Err(ParseError::Unknown(name.to_string())),
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Chk {
                target,
                nonce: None,
            } => write!(f, "chk {target}"),
            Command::Chk {
                target,
                nonce: Some(n),
            } => write!(f, "chk {target} {n}"),
            Command::Get { hash } => write!(f, "get {hash}"),
            Command::Put { hash } => write!(f, "put {hash}"),
            Command::Pip { addr } => write!(f, "pip {addr}"),
            Command::Tls => f.write_str("tls"),
            Command::Bye => f.write_str("bye"),
            Command::Help => f.write_str("?"),
        }
    }
}

/// A reply line (or, for [`Reply::Help`], lines).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reply {
    /// `(okay)`
    Okay,
    /// `(okay more)`
    OkayMore,
    /// `(okay skip)`
    OkaySkip,
    /// `(not found)`
    NotFound,
    /// `(error)<text>`: the session ends.
    Error(String),
    /// 64 lowercase hex digits: a found `chk`'s hash or a nonce answer.
    Hash(String),
    /// Any other line, such as a `pip` answer.
    Line(String),
    /// The command list sent for `?` (its lines joined with `\n`; `(okay)` follows separately).
    Help(String),
}

impl Reply {
    /// Classifies one reply line. Never fails: an unrecognised line is a [`Reply::Line`].
    pub fn parse(line: &str) -> Reply {
        match line {
            "(okay)" => Reply::Okay,
            "(okay more)" => Reply::OkayMore,
            "(okay skip)" => Reply::OkaySkip,
            "(not found)" => Reply::NotFound,
            _ => {
                if let Some(text) = line.strip_prefix("(error)") {
                    Reply::Error(text.to_string())
                } else if line.len() == 64 && line.parse::<ContentHash>().is_ok() {
                    Reply::Hash(line.to_ascii_lowercase())
                } else {
                    Reply::Line(line.to_string())
                }
            }
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Okay => f.write_str("(okay)"),
            Reply::OkayMore => f.write_str("(okay more)"),
            Reply::OkaySkip => f.write_str("(okay skip)"),
            Reply::NotFound => f.write_str("(not found)"),
            Reply::Error(t) => write!(f, "(error){t}"),
            Reply::Hash(h) | Reply::Line(h) | Reply::Help(h) => f.write_str(h),
        }
    }
}

/// The `?` answer (then `(okay)`). The reference's list, with `get` as kith takes it (a hash).
pub const HELP_TEXT: &str = "commands:\n\
=========\n\
chk <tag_or_hash> [<nonce>] (check if peer has a file or hash the content of a file with a nonce)\n\
get <hash> (fetch a local file from the peer's files area)\n\
put <hash> (store a local file into the peer's files area)\n\
pip <addr> (exchange a random peer's ip address)\n\
tls (start TLS session)\n\
bye (terminate session)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        let h = ContentHash::hello();
        for line in [
            format!("chk {h}"),
            format!("chk {h} abc"),
            "chk hello".to_string(),
            format!("get {h}"),
            format!("put {h}"),
            "pip 127.0.0.1".to_string(),
            "tls".to_string(),
            "bye".to_string(),
            "?".to_string(),
        ] {
            let c = Command::parse(&line).unwrap();
            assert_eq!(c.to_string(), line);
        }
        assert_eq!(Command::parse("help x"), Ok(Command::Help));
    }

    #[test]
    fn bad_lines() {
        assert_eq!(
            Command::parse("foo bar"),
            Err(ParseError::Unknown("foo".into()))
        );
        assert_eq!(
            Command::parse("get hello"),
            Err(ParseError::InvalidUsage("get hello".into()))
        );
        assert_eq!(
            Command::parse("chk"),
            Err(ParseError::InvalidUsage("chk".into()))
        );
        assert_eq!(
            Command::parse("chk  a"),
            Err(ParseError::InvalidUsage("chk  a".into()))
        );
        assert_eq!(
            Command::parse("bye now"),
            Err(ParseError::InvalidUsage("bye now".into()))
        );
        assert_eq!(Command::parse(""), Err(ParseError::Unknown("".into())));
    }

    #[test]
    fn replies() {
        assert_eq!(Reply::parse("(okay)"), Reply::Okay);
        assert_eq!(Reply::parse("(okay more)"), Reply::OkayMore);
        assert_eq!(Reply::parse("(okay skip)"), Reply::OkaySkip);
        assert_eq!(Reply::parse("(not found)"), Reply::NotFound);
        assert_eq!(Reply::parse("(error)x y"), Reply::Error("x y".into()));
        let h = ContentHash::hello().to_string();
        assert_eq!(Reply::parse(&h), Reply::Hash(h.clone()));
        assert_eq!(Reply::parse("127.0.0.1"), Reply::Line("127.0.0.1".into()));
        assert_eq!(Reply::Error("x".into()).to_string(), "(error)x");
    }
}
