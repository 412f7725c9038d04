//! `kith backup -o FILE` and `kith restore FILE`: the node's keys, its peers, and its users,
//! tally tickets, tallies and chits, in one file encrypted under a passphrase.
//!
//! This is money: a lost data dir loses the users' keys and their ledgers. The file is
//! `KITHBK1\n` ‖ salt (32 random bytes) ‖ a custody copy (`kith_crypto::custody`: Argon2id
//! from the passphrase and the salt to a key, then chunked XChaCha20-Poly1305 that detects
//! truncation) of a JSON document. A wrong passphrase or a changed byte restores nothing.
//!
//! `restore` writes onto a fresh data dir (or one holding the same identity): the key files
//! (mode 0600), the peers (so partners are dialled again), and the value rows; started, the
//! node resynchronises its unconfirmed chains with its partners.

use super::custody::read_password;
use super::node::client;
use super::Env;
use crate::output::{read_bounded, report, write_file_atomically};
use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use kith_crypto::custody::{self, Argon2Params};
use kith_store::meta::{ChitRow, PeerUpsert, TallyRow, TallyTicketRow, ValueUser};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use zeroize::Zeroizing;

const MAGIC: &[u8; 8] = b"KITHBK1\n";
/// The largest backup read back (keys and ledgers, not files).
const MAX_BACKUP: u64 = 1 << 30;

#[derive(Serialize, Deserialize)]
struct PeerBackup {
    agent: String,
    host: Option<String>,
    port: Option<u16>,
    last_addr: Option<String>,
    /// The peer's link option (older backups lack it: the specification's order).
    #[serde(default)]
    reference_order: bool,
}

#[derive(Serialize, Deserialize)]
struct Backup {
    version: u32,
    /// Key files by name, base64.
    keys: BTreeMap<String, String>,
    peers: Vec<PeerBackup>,
    users: Vec<ValueUser>,
    tally_tickets: Vec<TallyTicketRow>,
    tallies: Vec<TallyRow>,
    chits: Vec<ChitRow>,
}

fn key_for(passphrase: &[u8], salt: &[u8; 32]) -> Result<kith_crypto::identity::ContentKey> {
    custody::derive_owner_key_argon2(passphrase, salt, &Argon2Params::DEFAULT)
        .context("cannot derive the backup key")
}

/// `kith backup -o FILE --password-file F`.
pub fn backup(env: &Env, out: &Path, password_file: &Path) -> Result<()> {
    let passphrase = read_password(password_file)?;
    let dir = &env.config.data_dir;
    let mut keys = BTreeMap::new();
    for entry in std::fs::read_dir(dir.keys_dir())
        .with_context(|| format!("cannot read {}", dir.keys_dir().display()))?
    {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".key") || name.starts_with('.') {
            continue;
        }
        let bytes = Zeroizing::new(std::fs::read(entry.path())?);
        keys.insert(name, STANDARD.encode(&*bytes));
    }
    if !keys.contains_key("agent.key") {
        bail!(
            "{} holds no identity yet: nothing to back up",
            dir.root().display()
        );
    }
    let store = env.config.open_file_store()?;
    let meta = store.meta();
    let doc = Backup {
        version: 1,
        keys,
        peers: meta
            .list_peers()?
            .into_iter()
            .map(|p| PeerBackup {
                agent: p.agent,
                host: p.host,
                port: p.port,
                last_addr: p.last_addr,
                reference_order: p.reference_order,
            })
            .collect(),
        users: meta.value_users()?,
        tally_tickets: meta.value_tally_tickets()?,
        tallies: meta.value_tallies()?,
        chits: meta.value_all_chits()?,
    };
    let plain = Zeroizing::new(serde_json::to_vec(&doc)?);
    let mut salt = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let key = key_for(&passphrase, &salt)?;
    let sealed = custody::encrypt(&key.public_key(), &salt, &plain, &mut rand::rngs::OsRng)?;
    let mut file = MAGIC.to_vec();
    file.extend_from_slice(&salt);
    file.extend_from_slice(&sealed);
    write_file_atomically(out, &file)?;
    report(
        env.json,
        serde_json::json!({
            "file": out.display().to_string(), "users": doc.users.len(),
            "tallies": doc.tallies.len(), "chits": doc.chits.len(), "peers": doc.peers.len(),
        }),
        &format!(
            "backed up {} users, {} tallies, {} chits, {} peers and the keys to {} (keep the \
             passphrase: without it the file opens for nobody)",
            doc.users.len(),
            doc.tallies.len(),
            doc.chits.len(),
            doc.peers.len(),
            out.display()
        ),
    )
}

/// `kith restore FILE --password-file F`.
pub fn restore(env: &Env, file: &Path, password_file: &Path) -> Result<()> {
    let passphrase = read_password(password_file)?;
    if client(env).is_running() {
        bail!("a node is running on this data dir: stop it before restoring");
    }
    let bytes = read_bounded(file, MAX_BACKUP)?;
    if bytes.len() < MAGIC.len() + 32 || &bytes[..MAGIC.len()] != MAGIC {
        bail!("{} is not a kith backup", file.display());
    }
    let salt: [u8; 32] = bytes[MAGIC.len()..MAGIC.len() + 32]
        .try_into()
        .unwrap_or_else(|_| unreachable!("32 bytes"));
    let key = key_for(&passphrase, &salt)?;
    let plain = Zeroizing::new(
        custody::decrypt(&key, &salt, &bytes[MAGIC.len() + 32..]).map_err(|_| {
            anyhow::anyhow!("wrong passphrase, or the backup file is damaged: nothing restored")
        })?,
    );
    let doc: Backup =
        serde_json::from_slice(&plain).context("the backup's content is not valid")?;
    if doc.version != 1 {
        bail!("backup version {} is newer than this kith", doc.version);
    }
    let dir = &env.config.data_dir;
    let keys_dir = dir.keys_dir();
    std::fs::create_dir_all(&keys_dir)?;
    // Check every key first: a data dir with another identity is never overwritten.
    let mut decoded = Vec::new();
    for (name, b64) in &doc.keys {
        if name.contains('/') || name.starts_with('.') || !name.ends_with(".key") {
            bail!("the backup names an odd key file {name:?}");
        }
        let secret = Zeroizing::new(STANDARD.decode(b64).context("a key in the backup")?);
        let path = keys_dir.join(name);
        if let Ok(existing) = std::fs::read(&path) {
            if existing != *secret {
                bail!(
                    "{} already holds a different {name}: restore onto a fresh data dir \
                     (--data NEW_DIR)",
                    dir.root().display()
                );
            }
        }
        decoded.push((path, secret));
    }
    for (path, secret) in &decoded {
        kith_store::keyfile::write_secret(path, secret)?;
    }
    let store = env.config.open_file_store()?;
    let meta = store.meta();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    for peer in &doc.peers {
        let agent: kith_crypto::identity::AgentId = peer
            .agent
            .parse()
            .with_context(|| format!("peer {} in the backup", peer.agent))?;
        let mut upsert = PeerUpsert::new(&agent);
        upsert.host = peer.host.clone();
        upsert.port = peer.port;
        upsert.last_addr = peer.last_addr.clone();
        meta.upsert_peer(&upsert, now)?;
        if peer.reference_order {
            meta.set_peer_reference_order(&peer.agent, true)?;
        }
    }
    meta.value_restore(&doc.users, &doc.tally_tickets, &doc.tallies, &doc.chits)?;
    // The certificate and anything else derived from the keys are made as usual.
    env.identity()?;
    report(
        env.json,
        serde_json::json!({
            "users": doc.users.len(), "tallies": doc.tallies.len(),
            "chits": doc.chits.len(), "peers": doc.peers.len(),
        }),
        &format!(
            "restored {} users, {} tallies, {} chits, {} peers and the keys into {}; `kith up` \
             carries on with the partners",
            doc.users.len(),
            doc.tallies.len(),
            doc.chits.len(),
            doc.peers.len(),
            dir.root().display()
        ),
    )
}
