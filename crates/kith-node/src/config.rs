//! Settings: command-line flags win over `kith.toml` in the data dir, which wins over defaults.
//!
//! The file is optional and every key in it is optional; an unknown key is an error (a typo
//! should not silently fall back to a default). Limits live in their own `[limits]` table, which
//! feeds the three structs that bound everything ([`crate::limits::AllLimits`]: the protocol
//! cores', chat's and the node's own).
//!
//! ```toml
//! db = "postgres://kith:secret@db.example/kith"   # default: SQLite in the data dir
//! max_item = 1000000                                # bytes per store item, type byte included
//! peer_port_open_store = false                      # strangers get shared files only
//!
//! [limits]
//! max_envelope_data = 2097152
//! ```

use kith_proto::Limits;
use kith_store::blobs::MIN_MAX_ITEM_SIZE;
use kith_store::datadir::{DataDir, DataDirError};
use kith_store::{open_meta_db, BlobStore, FileStore, StoreError};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Default bytes per store item (type byte included), as the CIYAM reference.
pub const DEFAULT_MAX_ITEM: usize = 1_000_000;

/// Why the settings could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The data dir could not be found or opened.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// `kith.toml` exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The settings file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `kith.toml` is not valid or has an unknown key.
    #[error("invalid settings in {path}: {message}")]
    Parse {
        /// The settings file.
        path: PathBuf,
        /// What the parser said (line and key included).
        message: String,
    },
    /// A value is out of range.
    #[error("invalid setting {key}: {reason}")]
    Invalid {
        /// Which setting.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

/// The contents of `kith.toml`: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileSettings {
    db: Option<String>,
    listen: Option<String>,
    peer_listen: Option<String>,
    chat_listen: Option<String>,
    web: Option<String>,
    ws_listen: Option<String>,
    chat_tls: Option<bool>,
    chat_name: Option<String>,
    chat_auto_join_invites: Option<bool>,
    peer_port_open_store: Option<bool>,
    announce: Option<String>,
    relay: Option<bool>,
    mdns: Option<bool>,
    port_mapping: Option<bool>,
    dht_lookup: Option<bool>,
    dht_publish: Option<bool>,
    dht_server: Option<bool>,
    dht_bootstrap: Option<Vec<String>>,
    dht_port: Option<u16>,
    raw_links: Option<bool>,
    max_item: Option<usize>,
    limits: Option<toml::Table>,
    value: Option<ValueConfig>,
}

/// The `[value]` table: prices of what this node serves (free by default) and what its users
/// pay without asking.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValueConfig {
    /// Units charged per MiB of file items served to a peer (0: free).
    pub price_per_mib: u64,
    /// Units charged per MiB and per day of encrypted custody kept for a peer (0: free).
    pub custody_price_per_mib_day: u64,
    /// Units a fetch, a persist or a retrieve pays without asking, per file (`--max-price`
    /// overrides); 0: never pays.
    pub max_price: u64,
    /// Invoices up to this many units are paid without asking (0: every invoice waits for
    /// `kith chit accept`).
    pub auto_pay_max: u64,
}

/// Values given on the command line; `None` means "not given".
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--data DIR` (or `KITH_DATA`).
    pub data_dir: Option<PathBuf>,
    /// `--db URL`.
    pub db_url: Option<String>,
    /// `--listen ADDR` (`off` disables the secure-link listener).
    pub listen: Option<String>,
    /// `--peer-listen ADDR` (`off` disables the CIYAM peer port).
    pub peer_listen: Option<String>,
    /// `--chat-listen ADDR` (`off` disables the ptpchat port).
    pub chat_listen: Option<String>,
    /// `--web ADDR` (`off`: no web page, the default).
    pub web: Option<String>,
    /// `--ws-listen ADDR` (`off`: no WebSocket links, the default).
    pub ws_listen: Option<String>,
    /// `--chat-tls`: the chat port speaks TLS only.
    pub chat_tls: bool,
    /// `--announce HOST:PORT`.
    pub announce: Option<String>,
    /// `--name NAME`: the chat name (over `kith chat nick` and `chat_name`).
    pub chat_name: Option<String>,
    /// `--relay`: relay circuits between linked peers that cannot punch through.
    pub relay: bool,
    /// `--raw`: unencrypted links (simulations only).
    pub raw_links: bool,
    /// `--allow-raw-anywhere`: permit raw links on a non-loopback listener.
    pub allow_raw_anywhere: bool,
}

/// Default secure-link listen address: every interface, the kith port.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:7420";
/// Default CIYAM peer port: loopback only (it is plain text unless a client says `tls`).
pub const DEFAULT_PEER_LISTEN: &str = "127.0.0.1:7421";
/// Default ptpchat port: loopback only (plain TCP unless `--chat-tls`).
pub const DEFAULT_CHAT_LISTEN: &str = "127.0.0.1:7422";
/// The most `[limits] max_anonymous_bytes` can be: strangers' storage stays small whatever is
/// set (a larger value counts as this).
pub const MAX_ANONYMOUS_BYTES: u64 = 16 * 1024 * 1024;

/// Every setting of a node or of a CLI command acting on a data dir, fully resolved.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The data dir, opened (created if it was missing).
    pub data_dir: DataDir,
    /// Metadata database URL; `None` means SQLite at [`DataDir::sqlite_path`].
    pub db_url: Option<String>,
    /// Bytes per store item, type byte included.
    pub max_item: usize,
    /// The protocol cores' and the link layer's limits.
    pub limits: Limits,
    /// The chat overlay's limits.
    pub chat_limits: kith_chat::ChatLimits,
    /// The node's own limits.
    pub node_limits: crate::limits::NodeLimits,
    /// The secure-link listener; `None` when disabled (`off`).
    pub listen: Option<std::net::SocketAddr>,
    /// The CIYAM peer port; `None` when disabled (`off`).
    pub peer_listen: Option<std::net::SocketAddr>,
    /// The ptpchat port; `None` when disabled (`off`).
    pub chat_listen: Option<std::net::SocketAddr>,
    /// The local web page; `None` when off (the default).
    pub web: Option<std::net::SocketAddr>,
    /// Secure links over WebSocket; `None` when off (the default).
    pub ws_listen: Option<std::net::SocketAddr>,
    /// The chat port speaks TLS (with the node certificate) only.
    pub chat_tls: bool,
    /// The name this node gives in chat (`name@GUID`); `None`: the bare GUID.
    pub chat_name: Option<String>,
    /// The chat name came from `--name` (which beats the one `kith chat nick` kept).
    pub chat_name_given: bool,
    /// Join a closed channel as soon as an invitation (its key) arrives; when false the
    /// invitation waits for `kith chat join NAME`.
    pub chat_auto_join_invites: bool,
    /// Serve any stored item to strangers on the CIYAM peer port (the store open, as the
    /// reference's test port is). Off by default: a stranger gets shared files, custody
    /// copies for their owners and what it `put` in its own session.
    pub peer_port_open_store: bool,
    /// What tickets name as this node's address (host, port); `None`: derived from `listen`.
    pub announce: Option<(String, u16)>,
    /// Unencrypted links (simulations only; loopback only unless `allow_raw_anywhere`).
    pub raw_links: bool,
    /// Permit raw links on a listener that is not on loopback.
    pub allow_raw_anywhere: bool,
    /// Prices and payment budgets (`[value]`).
    pub value: ValueConfig,
    /// Punching and relaying through mutual peers.
    pub reach: crate::reach::ReachSettings,
    /// Announce this node on the LAN and list others (mDNS; never on loopback).
    pub mdns: bool,
    /// Ask the home router to forward the listening port (PCP or NAT-PMP; on by default,
    /// `port_mapping = false` turns it off).
    pub port_mapping: bool,
    /// The mainline DHT: lookups, publishing (opt-in), server mode, bootstrap nodes.
    pub dht: crate::dht::DhtSettings,
}

impl NodeConfig {
    /// Resolves the data dir (flag, else platform default), creates it if needed, reads its
    /// `kith.toml` if present, and applies the flags on top.
    pub fn load(overrides: &Overrides) -> Result<NodeConfig, ConfigError> {
        let root = match &overrides.data_dir {
            Some(dir) => dir.clone(),
            None => DataDir::default_root()?,
        };
        let data_dir = DataDir::open_or_create(root)?;
        let file = read_settings(&data_dir.config_path())?;
        let max_item = file.max_item.unwrap_or(DEFAULT_MAX_ITEM);
        if !(MIN_MAX_ITEM_SIZE..=64 * 1024 * 1024).contains(&max_item) {
            return Err(ConfigError::Invalid {
                key: "max_item",
                reason: format!("{max_item} is not between {MIN_MAX_ITEM_SIZE} and 67108864 bytes"),
            });
        }
        let listen_text = overrides
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or(DEFAULT_LISTEN.into());
        let listen = parse_listen(&listen_text)?;
        let peer_listen_text = overrides
            .peer_listen
            .clone()
            .or(file.peer_listen)
            .unwrap_or(DEFAULT_PEER_LISTEN.into());
        let peer_listen = parse_listen(&peer_listen_text)?;
        let chat_listen_text = overrides
            .chat_listen
            .clone()
            .or(file.chat_listen)
            .unwrap_or(DEFAULT_CHAT_LISTEN.into());
        let chat_listen = parse_listen(&chat_listen_text)?;
        let web_text = overrides
            .web
            .clone()
            .or(file.web)
            .unwrap_or_else(|| "off".into());
        let web = parse_listen(&web_text)?;
        let ws_listen_text = overrides
            .ws_listen
            .clone()
            .or(file.ws_listen)
            .unwrap_or_else(|| "off".into());
        let ws_listen = parse_listen(&ws_listen_text)?;
        let chat_name_given = overrides.chat_name.is_some();
        let chat_name = overrides
            .chat_name
            .clone()
            .or(file.chat_name)
            .filter(|n| !n.trim().is_empty());
        if let Some(name) = &chat_name {
            let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
            if name.len() > 32 || !name.chars().all(plain) {
                return Err(ConfigError::Invalid {
                    key: "chat_name",
                    reason: "a chat name is 1 to 32 letters, digits, '-', '_' or '.'".into(),
                });
            }
        }
        let announce = match overrides.announce.clone().or(file.announce) {
            Some(text) => Some(parse_host_port(&text)?),
            None => None,
        };
        let raw_links = overrides.raw_links || file.raw_links.unwrap_or(false);
        let mut limits = crate::limits::AllLimits::from_table(file.limits.unwrap_or_default())
            .map_err(|message| ConfigError::Parse {
                path: data_dir.config_path(),
                message: format!("[limits]: {message}"),
            })?;
        limits.node.max_anonymous_bytes = limits.node.max_anonymous_bytes.min(MAX_ANONYMOUS_BYTES);
        Ok(NodeConfig {
            data_dir,
            db_url: overrides.db_url.clone().or(file.db),
            max_item,
            limits: limits.link,
            chat_limits: limits.chat,
            node_limits: limits.node,
            listen,
            peer_listen,
            chat_listen,
            web,
            ws_listen,
            chat_tls: overrides.chat_tls || file.chat_tls.unwrap_or(false),
            chat_name,
            chat_name_given,
            chat_auto_join_invites: file.chat_auto_join_invites.unwrap_or(true),
            peer_port_open_store: file.peer_port_open_store.unwrap_or(false),
            announce,
            raw_links,
            allow_raw_anywhere: overrides.allow_raw_anywhere,
            value: file.value.unwrap_or_default(),
            mdns: file.mdns.unwrap_or(true),
            port_mapping: file.port_mapping.unwrap_or(true),
            dht: {
                let d = crate::dht::DhtSettings::default();
                crate::dht::DhtSettings {
                    lookup: file.dht_lookup.unwrap_or(d.lookup),
                    publish: file.dht_publish.unwrap_or(d.publish),
                    server: file.dht_server.unwrap_or(d.server),
                    bootstrap: file.dht_bootstrap.unwrap_or(d.bootstrap),
                    port: file.dht_port.unwrap_or(d.port),
                }
            },
            reach: crate::reach::ReachSettings {
                relay: overrides.relay || file.relay.unwrap_or(false),
                ..crate::reach::ReachSettings::default()
            },
        })
    }

    /// Opens the content store and metadata database this configuration names (migrating the
    /// schema if needed). Synchronous: on a tokio runtime, call it from `spawn_blocking`.
    pub fn open_file_store(&self) -> Result<FileStore, StoreError> {
        let meta = open_meta_db(self.db_url.as_deref(), &self.data_dir.sqlite_path())?;
        let blobs = BlobStore::with_max_item_size(self.data_dir.store_dir(), self.max_item)?;
        Ok(FileStore::new(blobs, meta))
    }

    /// Checks what only matters to a node that is about to listen: raw (unencrypted) links
    /// must not face the network unless explicitly allowed.
    pub fn check_for_serving(&self) -> Result<(), ConfigError> {
        if self.raw_links && !self.allow_raw_anywhere {
            if let Some(addr) = self.listen.filter(|a| !a.ip().is_loopback()) {
                return Err(ConfigError::Invalid {
                    key: "raw_links",
                    reason: format!(
                        "unencrypted links on {addr} would face the network; listen on loopback \
                         (e.g. --listen 127.0.0.1:0) or pass --allow-raw-anywhere"
                    ),
                });
            }
        }
        Ok(())
    }

    /// A short name of the metadata backend, for status output.
    pub fn db_kind(&self) -> &'static str {
        match &self.db_url {
            Some(url) if url.starts_with("postgres") => "postgres",
            _ => "sqlite",
        }
    }
}

/// `off`, or a socket address (`127.0.0.1:0` picks a free port).
fn parse_listen(text: &str) -> Result<Option<std::net::SocketAddr>, ConfigError> {
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    text.trim()
        .parse()
        .map(Some)
        .map_err(|_| ConfigError::Invalid {
            key: "listen",
            reason: format!("{text:?} is not an address like 0.0.0.0:7420, 127.0.0.1:0 or off"),
        })
}

/// `HOST:PORT` with a non-zero port.
fn parse_host_port(text: &str) -> Result<(String, u16), ConfigError> {
    let invalid = || ConfigError::Invalid {
        key: "announce",
        reason: format!("{text:?} is not HOST:PORT with a port between 1 and 65535"),
    };
    let (host, port) = text.trim().rsplit_once(':').ok_or_else(invalid)?;
    let port: u16 = port.parse().map_err(|_| invalid())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err(invalid());
    }
    Ok((host.to_owned(), port))
}

fn read_settings(path: &Path) -> Result<FileSettings, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileSettings::default()),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overrides(dir: &Path) -> Overrides {
        Overrides {
            data_dir: Some(dir.to_owned()),
            ..Overrides::default()
        }
    }

    #[test]
    fn defaults_apply_on_a_fresh_data_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let config = NodeConfig::load(&overrides(&tmp.path().join("new"))).unwrap();
        assert_eq!(config.max_item, DEFAULT_MAX_ITEM);
        assert_eq!(config.limits, Limits::default());
        assert_eq!(config.db_kind(), "sqlite");
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("kith.toml"),
            "db = \"sqlite:///from-file.db\"\nmax_item = 5000\n[limits]\nmax_envelope_data = 4096\n",
        )
        .unwrap();
        let config = NodeConfig::load(&overrides(tmp.path())).unwrap();
        assert_eq!(config.db_url.as_deref(), Some("sqlite:///from-file.db"));
        assert_eq!(config.max_item, 5000);
        assert_eq!(config.limits.max_envelope_data, 4096);
        assert_eq!(
            config.node_limits.control_timeout_ms,
            crate::limits::NodeLimits::default().control_timeout_ms
        );
        let mut o = overrides(tmp.path());
        o.db_url = Some("postgres://x@y/z".into());
        let config = NodeConfig::load(&o).unwrap();
        assert_eq!(config.db_kind(), "postgres");
    }

    #[test]
    fn listen_announce_and_raw_mode_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let mut o = overrides(tmp.path());
        assert_eq!(
            NodeConfig::load(&o).unwrap().listen,
            Some(DEFAULT_LISTEN.parse().unwrap())
        );
        o.listen = Some("off".into());
        assert_eq!(NodeConfig::load(&o).unwrap().listen, None);
        o.listen = Some("nonsense".into());
        assert!(NodeConfig::load(&o)
            .unwrap_err()
            .to_string()
            .contains("listen"));
        o.listen = Some("127.0.0.1:0".into());
        o.announce = Some("kith.example.org:7420".into());
        let config = NodeConfig::load(&o).unwrap();
        assert_eq!(config.announce, Some(("kith.example.org".into(), 7420)));
        o.announce = Some("host-without-port".into());
        assert!(NodeConfig::load(&o).is_err());
        o.announce = None;
        o.raw_links = true;
        assert!(NodeConfig::load(&o).unwrap().raw_links);
        o.listen = Some("0.0.0.0:0".into());
        let config = NodeConfig::load(&o).unwrap();
        let err = config.check_for_serving().unwrap_err().to_string();
        assert!(err.contains("loopback"), "{err}");
        o.allow_raw_anywhere = true;
        assert!(NodeConfig::load(&o).unwrap().check_for_serving().is_ok());
    }

    #[test]
    fn the_peer_port_store_is_closed_and_strangers_storage_small_unless_set() {
        let tmp = tempfile::tempdir().unwrap();
        let config = NodeConfig::load(&overrides(tmp.path())).unwrap();
        assert!(!config.peer_port_open_store);
        assert_eq!(config.node_limits.max_anonymous_bytes, 4 * 1024 * 1024);
        std::fs::write(
            tmp.path().join("kith.toml"),
            "peer_port_open_store = true
[limits]
max_anonymous_bytes = 1000000000
",
        )
        .unwrap();
        let config = NodeConfig::load(&overrides(tmp.path())).unwrap();
        assert!(config.peer_port_open_store);
        assert_eq!(
            config.node_limits.max_anonymous_bytes, MAX_ANONYMOUS_BYTES,
            "capped at 16 MiB"
        );
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("kith.toml"), "max_itme = 5\n").unwrap();
        let err = NodeConfig::load(&overrides(tmp.path())).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("kith.toml") && text.contains("max_itme"),
            "{text}"
        );
    }
}
