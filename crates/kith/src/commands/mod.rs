//! One module per command group. Each command resolves the settings, does its work through the
//! library crates, and prints either text for people or one JSON document for scripts.

mod backup;
pub mod bench;
pub(crate) mod chat;
mod chat_interactive;
mod content;
mod custody;
mod demo;
mod file;
mod links;
mod node;
mod posts;
mod store;
mod value;

use crate::cli::{Cli, Command, GlobalArgs};
use anyhow::{Context, Result};
use kith_crypto::identity::Identity;
use kith_node::{NodeConfig, Overrides};

/// What every command gets: resolved settings and the output mode.
pub struct Env {
    /// Settings (the data dir exists once this is built).
    pub config: NodeConfig,
    /// `--json` was given.
    pub json: bool,
}

impl Env {
    fn load(global: &GlobalArgs, command: &Command) -> Result<Env> {
        let mut overrides = Overrides {
            data_dir: global.data_dir.clone(),
            db_url: global.db.clone(),
            ..Overrides::default()
        };
        if let Command::Up(up) = command {
            overrides.listen = up.listen.clone();
            overrides.peer_listen = up.peer_listen.clone();
            overrides.chat_listen = up.chat_listen.clone();
            overrides.chat_tls = up.chat_tls;
            overrides.web = up.web.clone();
            overrides.ws_listen = up.ws_listen.clone();
            overrides.announce = up.announce.clone();
            overrides.chat_name = up.name.clone();
            overrides.raw_links = up.raw;
            overrides.relay = up.relay;
            overrides.allow_raw_anywhere = up.allow_raw_anywhere;
        }
        if needs_a_running_node(command) {
            // Only a running node can answer: a mistyped --data must not leave a new empty
            // data dir behind, it must say that no node runs there.
            let root = match &overrides.data_dir {
                Some(dir) => dir.clone(),
                None => kith_store::datadir::DataDir::default_root()?,
            };
            if !root.exists() {
                return Err(kith_node::control::ControlError::NotRunning {
                    data_dir: root.display().to_string(),
                }
                .into());
            }
        }
        let config = NodeConfig::load(&overrides)?;
        Ok(Env {
            config,
            json: global.json,
        })
    }

    /// The node identity, created on first use as `kith init` would.
    pub fn identity(&self) -> Result<Identity> {
        let loaded = self
            .config
            .data_dir
            .load_or_create_identity(&mut rand::rngs::OsRng)
            .context("cannot load the node identity")?;
        Ok(loaded.identity)
    }
}

/// Commands that only a running node can carry out (they never create a data dir).
fn needs_a_running_node(command: &Command) -> bool {
    matches!(
        command,
        Command::Status { .. }
            | Command::Web { .. }
            | Command::Connect { .. }
            | Command::Ping { .. }
            | Command::Chat { .. }
            | Command::Post(_)
            | Command::Posts { .. }
            | Command::Community(_)
            | Command::Tally(_)
            | Command::Pay(_)
            | Command::Invoice(_)
            | Command::Chit(_)
    )
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    // The benchmark and the demo make their own data dirs; they must not create or touch
    // the user's.
    if let Command::Demo(args) = &cli.command {
        return demo::run(args, cli.global.json);
    }
    if let Command::Bench(command) = cli.command {
        return bench::run(command, cli.global.json);
    }
    // Generated from the command line's own definition; no data dir is involved.
    if let Command::Completions { shell } = cli.command {
        let mut command = <Cli as clap::CommandFactory>::command();
        // Into a buffer first: the generator panics on a write error (a closed pipe).
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut command, "kith", &mut script);
        return crate::output::write_stdout(&script);
    }
    if let Command::Man = cli.command {
        let command = <Cli as clap::CommandFactory>::command();
        let mut page = Vec::new();
        clap_mangen::Man::new(command).render(&mut page)?;
        return crate::output::write_stdout(&page);
    }
    // Verifying a tally file needs no node and no data dir.
    if let Command::Tally(crate::cli::TallyCommand::Verify { file }) = &cli.command {
        return value::verify(file, cli.global.json);
    }
    let env = Env::load(&cli.global, &cli.command)?;
    match cli.command {
        Command::Init => node::init(&env),
        Command::Id => node::id(&env),
        Command::Up(_) => node::up(env, node::Verbosity::of(&cli.global)),
        Command::Ticket(args) => links::ticket(&env, args),
        Command::Connect { ticket } => links::connect(&env, &ticket),
        Command::Peers(args) => links::peers(&env, args),
        Command::Ping { agent } => links::ping(&env, &agent),
        Command::Status { all } => node::status(&env, all),
        Command::Web { open } => node::web(&env, open),
        Command::File(command) => file::run(&env, command),
        Command::Store(command) => store::run(&env, command),
        Command::Content(command) => content::run(&env, command),
        Command::Persist(args) => custody::persist(&env, args),
        Command::Retrieve(args) => custody::retrieve(&env, args),
        Command::Shell { target } => crate::shell::run(&env, &target),
        Command::Chat { command } => chat::run(&env, command),
        Command::Post(args) => posts::post(&env, args),
        Command::Posts {
            community,
            follow,
            all,
        } => posts::list(&env, &community, follow, all),
        Command::Community(command) => posts::community(&env, command),
        Command::Bench(_) | Command::Completions { .. } | Command::Man => {
            unreachable!("handled before the settings are loaded")
        }
        Command::Demo(args) => demo::run(&args, env.json),
        Command::User(command) => value::user(&env, command),
        Command::Tally(command) => value::tally(&env, command),
        Command::Pay(a) => value::pay(&env, a.partner, a.units, a.memo, a.user),
        Command::Invoice(a) => value::invoice(&env, a.partner, a.units, a.memo, a.user),
        Command::Chit(command) => value::chit(&env, command),
        Command::Backup {
            output,
            password_file,
        } => backup::backup(&env, &output, &password_file),
        Command::Restore {
            file,
            password_file,
        } => backup::restore(&env, &file, &password_file),
    }
}
