//! The command line, as `../shared/design/cli.md` fixes it: names and shapes that scripts rely
//! on. Add freely; rename only with an alias.

pub mod bench;

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
    /// Print one JSON document on stdout instead of text (errors too: `{"error", "exit"}`).
    #[arg(long, global = true)]
    pub json: bool,
    /// More log detail from `kith up` (-v: debug, -vv: trace) [the log goes to stderr and to
    /// kith.log in the data dir]
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors in the log of `kith up`
    #[arg(short, long, global = true)]
    pub quiet: bool,
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
    /// Ask the running node how it is doing (a short summary; --all lists every counter).
    Status {
        /// Every counter, not only the ones that moved
        #[arg(long)]
        all: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `kith man > kith.1`.
    Man,
    /// Print the address of the running node's web page (`kith up --web`), token included.
    Web {
        /// Open it in the browser (`$BROWSER`, else `xdg-open`).
        #[arg(long)]
        open: bool,
    },
    /// Issue a connection ticket for first contact (or list or revoke issued ones).
    Ticket(TicketArgs),
    /// Open a secure link to the site that issued TICKET (or a short code), and remember it
    /// as a peer.
    Connect {
        /// The ticket: its JSON, its `kith-ticket:` line, or a short code (7-purple-sausage).
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
    Bench(bench::BenchCommand),
    /// Chat: channels, direct messages, invitations; with no subcommand, an interactive chat
    /// like an IRC client.
    Chat {
        /// What to do (none: interactive).
        #[command(subcommand)]
        command: Option<ChatCommand>,
    },
    /// Write a post in a community (signed with this node's content key; with --sealed,
    /// encrypted to the community's key, which everyone who knows its name derives).
    Post(PostArgs),
    /// List the posts of a community this node holds: author, time, signature status.
    Posts {
        /// The community's name.
        community: String,
        /// Follow it first (keep its posts before relayed ones; kept across restarts).
        #[arg(long)]
        follow: bool,
        /// Muted authors' posts too.
        #[arg(long)]
        all: bool,
    },
    /// Communities: follow, unfollow, list, create a closed one; block or mute post authors.
    #[command(subcommand)]
    Community(CommunityCommand),
    /// Walk through every feature with three nodes on this machine, narrated; exits 0 when
    /// every step worked. Uses its own temporary data dirs (not --data).
    Demo(DemoArgs),
    /// The users this site hosts (MyCHIPs: a P-521 key and a certificate each).
    #[command(subcommand)]
    User(UserCommand),
    /// MyCHIPs tallies: credit relationships between a user here and a partner elsewhere.
    #[command(subcommand)]
    Tally(TallyCommand),
    /// Pay a partner: a signed chit on the tally you share; exits 0 once the partner
    /// acknowledged it, non-zero at once (changing nothing) if it would pass the credit limit.
    Pay(PayArgs),
    /// Ask a partner for payment: a chit for the partner to accept or refuse.
    Invoice(PayArgs),
    /// Answer an invoice.
    #[command(subcommand)]
    Chit(ChitCommand),
    /// Write the keys, peers, users, tallies and chits to one file encrypted under a
    /// passphrase (the first line of --password-file).
    Backup {
        /// The backup file.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// A file whose first line is the passphrase.
        #[arg(long)]
        password_file: PathBuf,
    },
    /// Restore a backup onto a fresh data dir (no node running there).
    Restore {
        /// The backup file.
        file: PathBuf,
        /// A file whose first line is the passphrase.
        #[arg(long)]
        password_file: PathBuf,
    },
}

/// `kith pay` and `kith invoice`.
#[derive(Debug, Args)]
pub struct PayArgs {
    /// The partner: its name, its CHAD (cuid:agent) or the tally's id.
    #[arg(allow_hyphen_values = true)]
    pub partner: String,
    /// Units (whole milliCHIPs).
    pub units: u64,
    /// A note carried in the chit.
    #[arg(long)]
    pub memo: Option<String>,
    /// Our user, when this site hosts several.
    #[arg(long)]
    pub user: Option<String>,
}

/// `kith user ...`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user: a fresh P-521 key (keys/user-CUID.key, mode 0600) and a certificate.
    Add {
        /// The user's id at this site (letters, digits, '_', '-', '.').
        cuid: String,
        /// The name partners see.
        #[arg(long)]
        name: Option<String>,
    },
    /// List the users.
    Ls,
}

/// `kith tally ...`
#[derive(Debug, Subcommand)]
pub enum TallyCommand {
    /// Issue a tally ticket (one use, expiring); the ticket is the last line printed.
    Ticket {
        /// The inviting user (default: the only one).
        #[arg(long)]
        user: Option<String>,
        /// The credit the user grants the partner, in units.
        #[arg(long, default_value_t = 0)]
        limit: u64,
        /// Only this partner (cuid:agent) may use it.
        #[arg(long = "for", value_name = "CHAD")]
        for_chad: Option<String>,
        /// How long it stays valid.
        #[arg(long, default_value = "45m")]
        ttl: String,
    },
    /// Open a tally with a tally ticket (first contact, then offer and signatures).
    Open {
        /// The tally ticket.
        ticket: String,
        /// Our user (default: the only one).
        #[arg(long)]
        user: Option<String>,
        /// The credit our user grants the partner, in units.
        #[arg(long, default_value_t = 0)]
        limit: u64,
    },
    /// List tallies (`--json`: tally, user, partner, state, limit, balance, chits, ...).
    Ls,
    /// One tally: its chits and state.
    Show {
        /// The tally: its id, the partner's name or CHAD.
        #[arg(allow_hyphen_values = true)]
        tally: String,
        /// Our user, when several could match.
        #[arg(long)]
        user: Option<String>,
    },
    /// Close a tally (a closing setting; closed once the balance is zero).
    Close {
        /// The tally: its id, the partner's name or CHAD.
        #[arg(allow_hyphen_values = true)]
        tally: String,
        /// Our user, when several could match.
        #[arg(long)]
        user: Option<String>,
    },
    /// Check both signatures of a MyCHIPs tally JSON file (no node, no data dir needed):
    /// exit 0 when both verify, 1 otherwise, naming which failed.
    Verify {
        /// The tally's JSON.
        file: PathBuf,
    },
}

/// `kith chit ...`
#[derive(Debug, Subcommand)]
pub enum ChitCommand {
    /// Pay an invoice.
    Accept {
        /// The invoice's id.
        id: String,
    },
    /// Refuse an invoice.
    Refuse {
        /// The invoice's id.
        id: String,
    },
}

/// `kith demo` flags.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the temporary data dirs (and each node's log) instead of removing them.
    #[arg(long)]
    pub keep: bool,
}

/// `kith post`.
#[derive(Debug, Args)]
pub struct PostArgs {
    /// The community's name (e.g. science).
    pub community: String,
    /// The text (or --file).
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    pub text: Option<String>,
    /// Read the text from a file (UTF-8).
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Seal the post to the community's key (only those who know the community can read it).
    #[arg(long)]
    pub sealed: bool,
}

/// `kith community ...`.
#[derive(Debug, Subcommand)]
pub enum CommunityCommand {
    /// The communities this node knows.
    List,
    /// Follow a community: keep its posts before relayed ones (kept across restarts).
    Follow {
        /// Its name.
        name: String,
        /// A closed community's secret (64 hex digits), as its creator handed it out.
        #[arg(long)]
        secret: Option<String>,
    },
    /// Stop following a community.
    Unfollow {
        /// Its name.
        name: String,
    },
    /// Create a closed community (a random key) and follow it; prints the secret to hand
    /// to its members with the name.
    Create {
        /// Its name.
        name: String,
    },
    /// Block a post author: its posts are neither kept nor passed on (kept across restarts).
    Block {
        /// The author's key (66 hex digits, as `kith posts --json` shows it).
        author: String,
        /// Lift the block instead.
        #[arg(long)]
        undo: bool,
    },
    /// Mute a post author: its posts are passed on, not shown (kept across restarts).
    Mute {
        /// The author's key.
        author: String,
        /// Unmute instead.
        #[arg(long)]
        undo: bool,
    },
    /// The authors blocked or muted.
    Authors,
}

/// `kith chat ...`. NODE is a node id (`GUID` or `name@GUID`), an agent id, or a name
/// someone goes by (`kith chat who`).
#[derive(Debug, Subcommand)]
pub enum ChatCommand {
    /// Join a channel by name or id (a public one is created if nobody has); --closed
    /// creates an invitation-only, encrypted channel.
    Join {
        /// The channel's name, or its id.
        name: String,
        /// Create it closed.
        #[arg(long)]
        closed: bool,
    },
    /// Leave a channel.
    Leave {
        /// The channel's name or id.
        name: String,
    },
    /// Say something in a channel ("queued" when some member cannot be reached yet: it goes
    /// when they can; `kith chat read` shows when it arrived).
    Say {
        /// The channel's name or id.
        name: String,
        /// The text.
        text: String,
        /// Attach a file (its type is guessed from its extension).
        #[arg(long, value_name = "FILE")]
        attach: Vec<PathBuf>,
    },
    /// Send a direct message to a node (routed, kept until it arrives).
    Send {
        /// The node.
        #[arg(value_name = "NODE", allow_hyphen_values = true)]
        node_id: String,
        /// The text.
        text: String,
        /// Attach a file.
        #[arg(long, value_name = "FILE")]
        attach: Vec<PathBuf>,
    },
    /// Print messages (every channel and the direct messages, or one channel), with where
    /// your own stand (queued, sent, delivered).
    Read {
        /// Only this channel (name or id).
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
        /// The node.
        #[arg(value_name = "NODE", allow_hyphen_values = true)]
        node_id: String,
    },
    /// Send a node the key of a closed channel (it joins on receipt).
    Invite {
        /// The channel's name.
        name: String,
        /// The node.
        #[arg(value_name = "NODE", allow_hyphen_values = true)]
        node_id: String,
    },
    /// Remove a node from a closed channel (the others get a new key).
    Kick {
        /// The channel's name.
        name: String,
        /// The node.
        #[arg(value_name = "NODE", allow_hyphen_values = true)]
        node_id: String,
    },
    /// Set the name you go by in chat (announced in HELLO, kept across restarts); no NAME
    /// clears it.
    Nick {
        /// 1 to 32 letters, digits, '-', '_' or '.'.
        name: Option<String>,
    },
    /// Who this node has heard of: names, node ids, who is linked now, when last seen.
    Who,
    /// Keep a ptpchat router dialled (and dialled again whenever the connection ends); with
    /// no address, list them.
    Peer {
        /// HOST:PORT of the router's chat port.
        #[arg(value_name = "HOST:PORT")]
        address: Option<String>,
        /// Stop dialling it.
        #[arg(long)]
        remove: bool,
    },
    /// Block a node (nothing of it is heard or passed on; kept across restarts).
    Block {
        /// The node.
        #[arg(value_name = "NODE", allow_hyphen_values = true)]
        node_id: String,
        /// Lift the block instead.
        #[arg(long)]
        undo: bool,
    },
    /// Mute a node (its messages are passed on, not shown; kept across restarts).
    Mute {
        /// The node.
        #[arg(value_name = "NODE", allow_hyphen_values = true)]
        node_id: String,
        /// Unmute instead.
        #[arg(long)]
        undo: bool,
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
    /// Serve the local web page on ADDR:PORT (e.g. 127.0.0.1:7480); its address, with the
    /// token that protects it, is printed once the node is ready [default: off]
    #[arg(long, value_name = "ADDR")]
    pub web: Option<String>,
    /// Secure links over WebSocket (Noise inside binary messages) on ADDR:PORT, for reaching
    /// this node through HTTP infrastructure; tickets name it with --announce ws://HOST:PORT
    /// [default: off]
    #[arg(long, value_name = "ADDR")]
    pub ws_listen: Option<String>,
    /// The HOST:PORT that tickets name, when peers must reach this node at another address
    /// than the one it listens on (NAT, a public name)
    #[arg(long, value_name = "HOST:PORT")]
    pub announce: Option<String>,
    /// The name shown in chat (announced as name@GUID); beats the one `kith chat nick` kept
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Relay links between linked peers that cannot reach each other directly (for a node
    /// run as a public helper; bounded by the relay_* limits) [kith.toml: relay = true]
    #[arg(long)]
    pub relay: bool,
    /// Unencrypted links, for simulations only: refused unless the listener is on loopback
    #[arg(long)]
    pub raw: bool,
    /// Allow --raw on a listener that is not on loopback (you almost certainly do not want this)
    #[arg(long, requires = "raw")]
    pub allow_raw_anywhere: bool,
    /// Items sent to all peers together, at most this many bytes a second (e.g. 5MB, 512KiB;
    /// 0: no limit) [kith.toml: [limits] upload_bytes_per_sec]
    #[arg(long, value_name = "RATE", value_parser = bench::parse_size)]
    pub upload_rate: Option<u64>,
    /// A fetch's items, at most this many bytes a second unless `file get --rate` says
    /// otherwise (0: no limit) [kith.toml: [limits] download_bytes_per_sec]
    #[arg(long, value_name = "RATE", value_parser = bench::parse_size)]
    pub download_rate: Option<u64>,
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
    #[arg(long, value_name = "AGENT", allow_hyphen_values = true)]
    pub to: Option<String>,
    /// Derive the owner key as the CIYAM reference does (a fast unsalted hash; the password
    /// `dummy` is its test key) instead of Argon2id
    #[arg(long)]
    pub ciyam_compat: bool,
    /// Pay the custodian at most this many units for keeping it, if it charges (a Datt
    /// payment request on the tally you share; default: `[value] max_price`)
    #[arg(long, value_name = "UNITS")]
    pub max_price: Option<u64>,
    /// Days of custody to pay for, when the custodian charges per MiB and day
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub days: u64,
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
    #[arg(long, value_name = "AGENT", allow_hyphen_values = true)]
    pub from: Option<String>,
    /// The key was derived with --ciyam-compat when the file was persisted
    #[arg(long)]
    pub ciyam_compat: bool,
    /// Pay the custodian at most this many units for the copy, if it charges for what it
    /// serves (a Datt payment request on the tally you share; default: `[value] max_price`)
    #[arg(long, value_name = "UNITS")]
    pub max_price: Option<u64>,
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
    /// Print a short code (like 7-purple-sausage) instead of the ticket: `kith connect CODE`
    /// on the other node meets this one through a helper both are linked to (one use)
    #[arg(long)]
    pub code: bool,
    /// List issued tickets instead
    #[arg(long, conflicts_with_all = ["revoke", "reusable", "cuid", "qr", "code"])]
    pub list: bool,
    /// Revoke an issued ticket instead
    #[arg(long, value_name = "TOKEN", conflicts_with_all = ["reusable", "cuid", "qr", "code"])]
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
    /// List the kith nodes heard on the LAN (mDNS) instead: agent, addresses, and whether an
    /// anonymous query proved the key there. Linking still needs a ticket or a known key
    #[arg(long, conflicts_with_all = ["remove", "block", "unblock", "check"])]
    pub nearby: bool,
    /// Links with this known peer use the MyCHIPs reference library's transport cipher order
    /// (to talk to an encrypted reference site; both ends must agree, the default is the
    /// Noise specification's). Kept with the peer; a link up now is closed so the next one
    /// uses it
    #[arg(long, value_name = "AGENT", allow_hyphen_values = true, conflicts_with_all = ["remove", "block", "unblock", "check", "nearby"])]
    pub reference_order: Option<String>,
    /// With --reference-order: back to the specification's order
    #[arg(long, requires = "reference_order")]
    pub undo: bool,
}

/// `kith file ...`
#[derive(Debug, Subcommand)]
pub enum FileCommand {
    /// Print a file's content address without storing it.
    Hash {
        /// The file.
        path: PathBuf,
    },
    /// Store a file, or a folder (every regular file under it, each a file, and a manifest
    /// of their paths; symbolic links and special files are skipped); prints its content
    /// address.
    Put {
        /// The file or directory.
        path: PathBuf,
    },
    /// Write a file out, fetching it first if it is not here: by its address, a file ticket
    /// (links to its node first) or the name of a file stored here. Without --from, every
    /// linked peer that holds it is a source, all at once; items already here are not fetched
    /// again (re-running resumes). Without -o: the file's own name in the current directory
    /// (stdout when that is a pipe). A folder is written whole (to -o DIR, or its name in the
    /// current directory), its files fetched as files are.
    Get {
        /// A content address (64 hex), a file ticket (`kith-file:…`), or a stored file's name.
        #[arg(value_name = "HASH|TICKET|NAME")]
        hash: String,
        /// Where to write it (`-` for stdout; for a folder, the directory to create); written
        /// whole or not at all, and never over an existing file without --force.
        #[arg(short = 'o', long = "output", value_name = "PATH")]
        output: Option<PathBuf>,
        /// Fetch it from this linked peer (agent id) only.
        #[arg(long, value_name = "AGENT", allow_hyphen_values = true)]
        from: Option<String>,
        /// Pay the peer at most this many units for it, if it charges (a Datt payment
        /// request on the tally you share; default: `[value] max_price`).
        #[arg(long, value_name = "UNITS")]
        max_price: Option<u64>,
        /// Replace the output file if it exists.
        #[arg(long)]
        force: bool,
        /// At most this many bytes per second for this transfer (e.g. 10MB, 512KiB).
        #[arg(long, value_name = "RATE", value_parser = bench::parse_size)]
        rate: Option<u64>,
    },
    /// List stored files and folders.
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
