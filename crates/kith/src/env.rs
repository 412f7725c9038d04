//! What every command gets: the resolved settings and the output mode. A module of its own so
//! that the command groups and the interactive shell share it without importing each other.

use crate::cli::{Command, GlobalArgs};
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
    pub(crate) fn load(global: &GlobalArgs, command: &Command) -> Result<Env> {
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
        let mut config = NodeConfig::load(&overrides)?;
        if let Command::Up(up) = command {
            // This run's rate limits beat the settings file's.
            if let Some(rate) = up.upload_rate {
                config.node_limits.upload_bytes_per_sec = rate;
            }
            if let Some(rate) = up.download_rate {
                config.node_limits.download_bytes_per_sec = rate;
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn env_of(args: &[&str]) -> Env {
        let cli = crate::cli::Cli::try_parse_from(args).unwrap();
        Env::load(&cli.global, &cli.command).unwrap()
    }

    #[test]
    fn up_rate_flags_beat_the_settings_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("kith.toml"),
            "[limits]\nupload_bytes_per_sec = 1000\ndownload_bytes_per_sec = 2000\n",
        )
        .unwrap();
        let data = dir.path().to_str().unwrap();
        let plain = env_of(&["kith", "--data", data, "up"]);
        assert_eq!(plain.config.node_limits.upload_bytes_per_sec, 1000);
        assert_eq!(plain.config.node_limits.download_bytes_per_sec, 2000);
        let flagged = env_of(&[
            "kith",
            "--data",
            data,
            "up",
            "--upload-rate",
            "5MB",
            "--download-rate",
            "0",
        ]);
        assert_eq!(flagged.config.node_limits.upload_bytes_per_sec, 5_000_000);
        assert_eq!(flagged.config.node_limits.download_bytes_per_sec, 0);
    }
}
