//! The command line, as `../shared/design/cli.md` fixes it: names and shapes that scripts rely
//! on. Add freely; rename only with an alias.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// kith: a peer-to-peer node for secure links, fair file exchange, signed content and chat.
#[derive(Debug, Parser)]
#[command(
    name = "kith",
    version,
    propagate_version = true,
    args_override_self = true
)]
pub struct Cli {
    /// Flags every command accepts.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The node's data dir (keys, store, database, control socket) [default: the platform's
    /// data dir, e.g. ~/.local/share/kith]
    #[arg(long = "data", global = true, env = "KITH_DATA", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Metadata database: a SQLite path or sqlite:// URL, or postgres://user:pass@host/db
    /// [default: SQLite kith.db in the data dir]
    #[arg(long, global = true, value_name = "URL")]
    pub db: Option<String>,
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the node identity if it is missing, and print it.
    Init,
    /// Print the node identity (agent id, node id, content key).
    Id,
    /// Run the node in the foreground (Ctrl-C or SIGTERM stops it cleanly).
    Up(UpArgs),
    /// Ask the running node how it is doing.
    Status,
    /// Issue a connection ticket for first contact (or list or revoke issued ones).
    Ticket(TicketArgs),
    /// Open a secure link to the site that issued TICKET, and remember it as a peer.
    Connect {
        /// The ticket: its JSON or its `kith-ticket:` line.
        ticket: String,
    },
    /// List known peers and their link state (or forget or block one).
    Peers(PeersArgs),
    /// Measure the round trip to a peer over its secure link (dialling it if needed).
    Ping {
        /// The peer's agent id (base64url: it may start with `-`).
        #[arg(allow_hyphen_values = true)]
        agent: String,
    },
    /// The content-addressed file store.
    #[command(subcommand)]
    File(FileCommand),
    /// Upkeep of the store itself.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Signed and sealed (ECIES) content in the Datt layouts.
    #[command(subcommand)]
    Content(ContentCommand),
    /// Have a linked peer keep an encrypted copy of a file (encrypted custody): only the
    /// password can open it again.
    Persist(PersistArgs),
    /// Get a file back from its custodian and decrypt it with the password.
    Retrieve(RetrieveArgs),
    /// Talk the CIYAM peer protocol to HOST:PORT: commands from a terminal (with line editing
    /// and history) or a pipe (only the peer's responses are printed), files from the store.
    Shell {
        /// The peer port, e.g. 127.0.0.1:12346.
        #[arg(value_name = "HOST:PORT")]
        target: String,
    },
    /// Measure this machine and build: `kith bench transfer` moves a file between two nodes.
    #[command(subcommand)]
    Bench(crate::commands::bench::BenchCommand),
    /// Chat: channels, direct messages, invitations; with no subcommand, an interactive chat.
    Chat {
        /// What to do (none: interactive).
        #[command(subcommand)]
        command: Option<ChatCommand>,
    },
    /// Walk through every feature with three nodes on this machine, narrated; exits 0 when
    /// every step worked. Uses its own temporary data dirs (not --data).
    Demo(DemoArgs),
}

/// `kith demo` flags.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the temporary data dirs (and each node's log) instead of removing them.
    #[arg(long)]
    pub keep: bool,
}

/// `kith chat ...`
#[derive(Debug, Subcommand)]
pub enum ChatCommand {
    /// Join a channel (creating it if nobody has); --closed creates an invitation-only,
    /// encrypted channel.
    Join {
        /// The channel's name.
        name: String,
        /// Create it closed.
        #[arg(long)]
        closed: bool,
    },
    /// Leave a channel.
    Leave {
        /// The channel's name.
        name: String,
    },
    /// Say something in a channel.
    Say {
        /// The channel's name.
        name: String,
        /// The text.
        text: String,
        /// Attach a file (its type is guessed from its extension).
        #[arg(long, value_name = "FILE")]
        attach: Vec<PathBuf>,
    },
    /// Send a direct message to a node (routed, kept until it arrives).
    Send {
        /// The node id (`kith id`), GUID or name@GUID.
        node_id: String,
        /// The text.
        text: String,
        /// Attach a file.
        #[arg(long, value_name = "FILE")]
        attach: Vec<PathBuf>,
    },
    /// Print messages (every channel and the direct messages, or one channel).
    Read {
        /// Only this channel.
        name: Option<String>,
        /// Keep printing new messages until interrupted.
        #[arg(long)]
        follow: bool,
    },
    /// The channels this node knows.
    Channels,
    /// Open a direct link to a node known only through others (the CONNECT rendezvous:
    /// a node between you fills in the addresses each side is seen from).
    Connect {
        /// The node id.
        node_id: String,
    },
    /// Send a node the key of a closed channel (it joins on receipt).
    Invite {
        /// The channel's name.
        name: String,
        /// The node id.
        node_id: String,
    },
    /// Remove a node from a closed channel (the others get a new key).
    Kick {
        /// The channel's name.
        name: String,
        /// The node id.
        node_id: String,
    },
}

/// `kith up` flags.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Secure-link listener: ADDR:PORT (port 0 picks a free one) or `off` [default: 0.0.0.0:7420]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// CIYAM peer port (plain text; `tls` upgrades a session): ADDR:PORT or `off`
    /// [default: 127.0.0.1:7421]
    #[arg(long, value_name = "ADDR")]
    pub peer_listen: Option<String>,
    /// ptpchat port (4-byte length + JSON, for plain ptpchat clients): ADDR:PORT or `off`
    /// [default: 127.0.0.1:7422]
    #[arg(long, value_name = "ADDR")]
    pub chat_listen: Option<String>,
    /// Make the chat port TLS-only, with the node certificate.
    #[arg(long)]
    pub chat_tls: bool,
    /// The HOST:PORT that tickets name, when peers must reach this node at another address
    /// than the one it listens on (NAT, a public name)
    #[arg(long, value_name = "HOST:PORT")]
    pub announce: Option<String>,
    /// Unencrypted links, for simulations only: refused unless the listener is on loopback
    #[arg(long)]
    pub raw: bool,
    /// Allow --raw on a listener that is not on loopback (you almost certainly do not want this)
    #[arg(long, requires = "raw")]
    pub allow_raw_anywhere: bool,
}

/// `kith persist` flags.
#[derive(Debug, Args)]
pub struct PersistArgs {
    /// The file to keep (one store item at most, for now).
    pub path: PathBuf,
    /// A file whose first line is the password (never logged).
    #[arg(long, value_name = "F")]
    pub password_file: PathBuf,
    /// The custodian (agent id) [default: the first linked peer]
    #[arg(long, value_name = "AGENT")]
    pub to: Option<String>,
    /// Derive the owner key as the CIYAM reference does (a fast unsalted hash; the password
    /// `dummy` is its test key) instead of Argon2id
    #[arg(long)]
    pub ciyam_compat: bool,
}

/// `kith retrieve` flags.
#[derive(Debug, Args)]
pub struct RetrieveArgs {
    /// The file's content address (64 hex).
    pub hash: String,
    /// A file whose first line is the password (never logged).
    #[arg(long, value_name = "F")]
    pub password_file: PathBuf,
    /// Where to write the file; written whole or not at all.
    #[arg(short = 'o', long = "output", value_name = "PATH")]
    pub output: PathBuf,
    /// The custodian (agent id) [default: the first linked peer]
    #[arg(long, value_name = "AGENT")]
    pub from: Option<String>,
    /// The key was derived with --ciyam-compat when the file was persisted
    #[arg(long)]
    pub ciyam_compat: bool,
}

/// `kith ticket` flags.
#[derive(Debug, Args)]
pub struct TicketArgs {
    /// The ticket may be used any number of times until it expires
    #[arg(long)]
    pub reusable: bool,
    /// How long the ticket is valid, e.g. 45m, 2h, 7d
    #[arg(long, value_name = "DURATION", default_value = "45m")]
    pub ttl: String,
    /// The user at this site the ticket is for
    #[arg(long, value_name = "NAME")]
    pub cuid: Option<String>,
    /// Also draw the ticket as a QR code in the terminal
    #[arg(long)]
    pub qr: bool,
    /// List issued tickets instead
    #[arg(long, conflicts_with_all = ["revoke", "reusable", "cuid", "qr"])]
    pub list: bool,
    /// Revoke an issued ticket instead
    #[arg(long, value_name = "TOKEN", conflicts_with_all = ["reusable", "cuid", "qr"])]
    pub revoke: Option<String>,
}

/// `kith peers` flags.
#[derive(Debug, Args)]
pub struct PeersArgs {
    /// Forget this peer (it needs a new ticket to connect again)
    #[arg(long, value_name = "AGENT", allow_hyphen_values = true, conflicts_with_all = ["block", "unblock"])]
    pub remove: Option<String>,
    /// Refuse this agent from now on and close its link
    #[arg(
        long,
        value_name = "AGENT",
        allow_hyphen_values = true,
        conflicts_with = "unblock"
    )]
    pub block: Option<String>,
    /// Lift a block
    #[arg(long, value_name = "AGENT", allow_hyphen_values = true)]
    pub unblock: Option<String>,
    /// Check now that this peer still holds the files it fetched from us (proof of
    /// retention), and print what each check showed
    #[arg(long, value_name = "AGENT", allow_hyphen_values = true, conflicts_with_all = ["remove", "block", "unblock"])]
    pub check: Option<String>,
}

/// `kith file ...`
#[derive(Debug, Subcommand)]
pub enum FileCommand {
    /// Print a file's content address without storing it.
    Hash {
        /// The file.
        path: PathBuf,
    },
    /// Store a file; prints its content address.
    Put {
        /// The file.
        path: PathBuf,
    },
    /// Write a file out, fetching it first if it is not here: by its address, a file ticket
    /// (links to its node first) or the name of a file stored here. Without --from, every
    /// linked peer that holds it is a source, all at once; items already here are not fetched
    /// again (re-running resumes). Without -o: the file's own name in the current directory
    /// (stdout when that is a pipe).
    Get {
        /// A content address (64 hex), a file ticket (`kith-file:…`), or a stored file's name.
        #[arg(value_name = "HASH|TICKET|NAME")]
        hash: String,
        /// Where to write it (`-` for stdout); written whole or not at all, and never over an
        /// existing file without --force.
        #[arg(short = 'o', long = "output", value_name = "PATH")]
        output: Option<PathBuf>,
        /// Fetch it from this linked peer (agent id) only.
        #[arg(long, value_name = "AGENT", allow_hyphen_values = true)]
        from: Option<String>,
        /// Replace the output file if it exists.
        #[arg(long)]
        force: bool,
        /// At most this many bytes per second for this transfer (e.g. 10MB, 512KiB).
        #[arg(long, value_name = "RATE", value_parser = crate::commands::bench::parse_size)]
        rate: Option<u64>,
    },
    /// List stored files.
    Ls,
    /// Remove a stored file (chunks other files still use are kept).
    Rm {
        /// Its content address (64 hex).
        hash: String,
    },
    /// Offer a stored file to peers: every linked peer now, and each peer that links later,
    /// fetches a copy in the background (within its replica quota).
    Share {
        /// Its content address (64 hex).
        hash: String,
        /// Stop offering it (copies peers already made stay theirs).
        #[arg(long)]
        stop: bool,
        /// Print a file ticket instead: one line that carries a ticket for this node and the
        /// file's address, so `kith file get TICKET` links and fetches in one step.
        #[arg(long, conflicts_with = "stop")]
        ticket: bool,
        /// How long the file ticket's node ticket stays valid (with --ticket).
        #[arg(
            long,
            value_name = "DURATION",
            default_value = "24h",
            requires = "ticket"
        )]
        ttl: String,
    },
}

/// `kith store ...`
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Reclaim items no file references and temp files left by a crash (a killed put, a
    /// full disk). Safe with a node running: it waits for every put, fetch and custody copy
    /// in progress to finish, and keeps unreferenced items younger than --grace, which an
    /// interrupted fetch resumes with.
    Gc {
        /// Keep unreferenced items younger than this, e.g. 24h, 30m, 0s (0: take them all,
        /// so an interrupted fetch starts over).
        #[arg(long, value_name = "DURATION", default_value = "24h")]
        grace: String,
    },
}

/// `kith content ...`
#[derive(Debug, Subcommand)]
pub enum ContentCommand {
    /// Sign FILE with this node's content key.
    Sign {
        /// The content to sign.
        file: PathBuf,
        /// Where to write the signed content.
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        output: PathBuf,
    },
    /// Check signed content; prints the signer's key when valid, exits non-zero when not.
    Verify {
        /// The signed content.
        file: PathBuf,
    },
    /// Encrypt FILE to a receiver's content key (hex, compressed secp256k1).
    Seal {
        /// The receiver's content key, as `kith id` prints it.
        #[arg(long = "to", value_name = "PUBKEY_HEX")]
        to: String,
        /// The content to seal.
        file: PathBuf,
        /// Where to write the sealed content.
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        output: PathBuf,
    },
    /// Decrypt sealed content addressed to this node.
    Open {
        /// The sealed content.
        file: PathBuf,
        /// Where to write the plain content.
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        output: PathBuf,
    },
}
