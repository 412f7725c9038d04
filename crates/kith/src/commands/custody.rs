//! `kith persist` and `kith retrieve`: encrypted custody of a file by a linked peer
//! (`../shared/spec/ciyam-peer.md`, `peer_persist_file`).
//!
//! The password stays in this process: it derives the owner key here (Argon2id by default,
//! the reference's derivation with `--ciyam-compat`), builds the push request and stores it
//! with the content; the running node only carries requests and copies. `retrieve` has the
//! node fetch the pull request and the encrypted copy into the store, then decrypts here and
//! checks the original hash before writing anything.

use super::Env;
use crate::cli::{PersistArgs, RetrieveArgs};
use crate::output::{print_json, write_file_atomically};
use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use kith_crypto::custody::{self, Argon2Params, CustodyError, PullRequest, PushRequest};
use kith_crypto::identity::ContentKey;
use kith_node::control::{ControlClient, FetchBody, PersistBody, PERSIST_PATH, RETRIEVE_PATH};
use kith_node::exchange::{PersistReport, RetrieveReport};
use kith_store::{ContentHash, ItemKind, ItemType};
use serde_json::json;
use std::io::{BufRead as _, Read as _};
use std::path::Path;
use std::time::Duration;
use zeroize::Zeroizing;

/// What to tell the user when decryption fails authentication.
const WRONG_PASSWORD: &str = "wrong password, or this copy is not yours";

/// The first line of `path`, without its line ending. Empty or missing is an error.
fn read_password(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read the password file {}", path.display()))?;
    let mut line = Zeroizing::new(Vec::new());
    std::io::BufReader::new(file)
        .take(64 * 1024)
        .read_until(b'\n', &mut line)
        .with_context(|| format!("cannot read the password file {}", path.display()))?;
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    if line.is_empty() {
        bail!(
            "the password file {} is empty: put the password on its first line",
            path.display()
        );
    }
    Ok(line)
}

fn owner_key(password: &[u8], hash: &ContentHash, compat: bool) -> Result<ContentKey> {
    if compat {
        return Ok(custody::derive_owner_key_ciyam_compat(password, &hash.0));
    }
    custody::derive_owner_key_argon2(password, &hash.0, &Argon2Params::DEFAULT)
        .context("cannot derive the owner key")
}

fn control(env: &Env) -> Result<ControlClient> {
    let dir = &env.config.data_dir;
    let control = ControlClient::new(
        dir.root(),
        dir.control_socket(),
        Duration::from_millis(env.config.limits.exchange_fetch_timeout_ms),
    );
    if !control.is_running() {
        bail!("no node is running on this data dir: start one with `kith up`");
    }
    Ok(control)
}

/// `kith persist PATH --password-file F [--to AGENT] [--ciyam-compat]`.
pub fn persist(env: &Env, args: PersistArgs) -> Result<()> {
    env.identity()?;
    let password = read_password(&args.password_file)?;
    let control = control(env)?;
    let mut store = env
        .config
        .open_file_store()
        .context("cannot open the file store")?;
    let record = store.put_path(&args.path, None)?;
    if record.kind != ItemKind::Blob {
        bail!(
            "{} is {} bytes, more than one store item (max_item {}): custody holds single-item files only for now",
            args.path.display(),
            record.size,
            env.config.max_item
        );
    }
    let key = owner_key(&password, &record.hash, args.ciyam_compat)?;
    drop(password);
    let owner_public = key.public_key();
    let push = PushRequest {
        owner_key: owner_public,
        content_hash: record.hash.0,
    };
    let push_hash = store.blobs().put_item(ItemType::BLOB, &push.to_bytes())?;
    drop(store);
    let body = PersistBody {
        push_request: push_hash.to_hex(),
        to: args.to,
    };
    let report: PersistReport = control.post(PERSIST_PATH, &body)?;
    let owner_b64 = STANDARD.encode(owner_public);
    if env.json {
        return print_json(&json!({
            "push_request": report.push_request,
            "owner_key": owner_b64,
            "content": report.content,
            "custodian": report.custodian,
            "already": report.already,
        }));
    }
    let how = if report.already {
        "already held"
    } else {
        "now held"
    };
    println!(
        "{} is {how} in custody by {}\npush request {}\nowner key {owner_b64}",
        report.content, report.custodian, report.push_request
    );
    Ok(())
}

/// `kith retrieve HASH --password-file F -o OUT [--from AGENT] [--ciyam-compat]`.
pub fn retrieve(env: &Env, args: RetrieveArgs) -> Result<()> {
    env.identity()?;
    let hash: ContentHash = args.hash.trim().parse().with_context(|| {
        format!(
            "{:?} is not a content address (64 lowercase hex digits)",
            args.hash
        )
    })?;
    let password = read_password(&args.password_file)?;
    let control = control(env)?;
    let body = FetchBody {
        hash: hash.to_hex(),
        from: args.from,
    };
    let report: RetrieveReport = control.post(RETRIEVE_PATH, &body)?;
    let store = env
        .config
        .open_file_store()
        .context("cannot open the file store")?;
    let pull_hash: ContentHash = report.pull_request.parse()?;
    let encrypted_hash: ContentHash = report.encrypted.parse()?;
    let pull_item = store.blobs().get_item(&pull_hash)?;
    let pull = PullRequest::parse(&pull_item.content)
        .context("the custodian's pull request is malformed")?;
    if pull.original_hash != hash.0 || pull.encrypted_hash != encrypted_hash.0 {
        bail!("the custodian's pull request names another file");
    }
    let key = owner_key(&password, &hash, args.ciyam_compat)?;
    drop(password);
    if pull
        .owner_key
        .is_some_and(|owner| owner != key.public_key())
    {
        bail!(WRONG_PASSWORD);
    }
    let copy = store.blobs().get_item(&encrypted_hash)?;
    let content = match custody::decrypt_blob(&key, &hash.0, &copy.content) {
        Ok(content) => Zeroizing::new(content),
        Err(CustodyError::Authentication { .. }) => bail!(WRONG_PASSWORD),
        Err(CustodyError::OriginalHashMismatch) => {
            bail!("the decrypted copy does not hash to {hash}: the custodian sent something else")
        }
        Err(e) => bail!("cannot decrypt the copy from {}: {e}", report.custodian),
    };
    write_file_atomically(&args.output, &content)?;
    if env.json {
        return print_json(&json!({
            "hash": hash.to_hex(),
            "path": args.output,
            "size": content.len(),
            "custodian": report.custodian,
            "encrypted": report.encrypted,
        }));
    }
    eprintln!(
        "retrieved {hash} ({} bytes) from {}",
        content.len(),
        report.custodian
    );
    Ok(())
}
