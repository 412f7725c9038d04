//! One module per command group. Each command resolves the settings, does its work through the
//! library crates, and prints either text for people or one JSON document for scripts.

mod content;
mod file;
mod node;

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
    fn load(global: &GlobalArgs) -> Result<Env> {
        let overrides = Overrides {
            data_dir: global.data_dir.clone(),
            db_url: global.db.clone(),
        };
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

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let env = Env::load(&cli.global)?;
    match cli.command {
        Command::Init => node::init(&env),
        Command::Id => node::id(&env),
        Command::Up => node::up(env),
        Command::Status => node::status(&env),
        Command::File(command) => file::run(&env, command),
        Command::Content(command) => content::run(&env, command),
    }
}
