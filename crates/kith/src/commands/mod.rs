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

use crate::cli::{Cli, Command};
pub use crate::env::Env;
use anyhow::Result;

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
