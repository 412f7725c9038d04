//! `kith persist` and `kith retrieve`: encrypted custody of a file by a linked peer
//! (`../shared/spec/ciyam-peer.md`, `peer_persist_file`).
//!
//! The password stays in this process: it derives the owner key here (Argon2id by default,
//! the reference's derivation with `--ciyam-compat`), builds the push request and stores it
//! with the content; the running node only carries requests and copies. `retrieve` derives
//! the key, has the node fetch the pull request naming it and the encrypted copy (any size)
//! into the store, then decrypts here, checking every item against the original hash's tree
//! before its bytes reach OUT (a temporary file, renamed only when all of it checked out), and
//! finally removes the fetched pull request and copy from the store.

use super::Env;
use crate::cli::{PersistArgs, RetrieveArgs};
use crate::output::{print_json, write_file_atomically_with};
use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use kith_crypto::custody::{self, Argon2Params, CustodyError, PullRequest, PushRequest};
use kith_crypto::identity::ContentKey;
use kith_node::api::{PersistBody, RetrieveBody, PERSIST_PATH, RETRIEVE_PATH};
use kith_node::api::{PersistReport, RetrieveReport};
use kith_node::control::{ControlClient, ControlError};
use kith_store::custody_copy::{open_copy, CopyError};
use kith_store::{ContentHash, FileStore, ItemType, StoreError};
use serde_json::json;
use std::io::{BufRead as _, Read as _, Write as _};
use std::path::Path;
use std::time::Duration;
use zeroize::Zeroizing;

/// What to tell the user when decryption fails authentication.
const WRONG_PASSWORD: &str = "wrong password, or this copy is not yours: check the password file (the password is its first line) and try again";

/// The first line of `path`, without its line ending. Empty or missing is an error.
pub(super) fn read_password(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
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
        Duration::from_millis(env.config.node_limits.exchange_fetch_timeout_ms),
    );
    if !control.is_running() {
        // The same error as every other command that needs the node (and exit code 3).
        return Err(ControlError::NotRunning {
            data_dir: dir.root().display().to_string(),
        }
        .into());
    }
    Ok(control)
}

/// `kith persist PATH --password-file F [--to AGENT] [--ciyam-compat]`.
pub fn persist(env: &Env, args: PersistArgs) -> Result<()> {
    env.identity()?;
    let password = read_password(&args.password_file)?;
    let control = control(env)?;
    let store = env
        .config
        .open_file_store()
        .context("cannot open the file store")?;
    let record = super::file::put(&store, &args.path, env.json)?;
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
        max_price: args.max_price,
        days: Some(args.days),
    };
    let report: Result<PersistReport, _> = {
        let _bar = crate::progress::TransferBar::start(
            &control,
            &record.hash.to_hex(),
            "persisting",
            env.json,
        );
        control.post(PERSIST_PATH, &body)
    };
    // The push request was only the message: it goes, unless a stored file is that item.
    if let Ok(store) = env.config.open_file_store() {
        if let Ok(false) = store.meta().item_in_use(&push_hash) {
            let _ = store.blobs().remove_item(&push_hash);
        }
    }
    let report = report?;
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
    // The key first: the custodian may keep copies for several owners, and the node takes
    // only the pull request naming ours (a wrong password fetches nothing).
    let key = owner_key(&password, &hash, args.ciyam_compat)?;
    drop(password);
    let body = RetrieveBody {
        hash: hash.to_hex(),
        from: args.from,
        owner_key: Some(STANDARD.encode(key.public_key())),
        max_price: args.max_price,
    };
    let report: RetrieveReport = control.post(RETRIEVE_PATH, &body)?;
    let mut store = env
        .config
        .open_file_store()
        .context("cannot open the file store")?;
    let pull_hash: ContentHash = report.pull_request.parse()?;
    let encrypted_hash: ContentHash = report.encrypted.parse()?;
    let opened = open_into(env, &store, &report, &key, &hash, &args.output);
    // The pull request and the copy were fetched only for this: they go, whatever happened,
    // unless the owner also keeps one of them as a file.
    forget_copy(&mut store, &pull_hash, &encrypted_hash);
    let size = opened?;
    if env.json {
        return print_json(&json!({
            "hash": hash.to_hex(),
            "path": args.output,
            "size": size,
            "custodian": report.custodian,
            "encrypted": report.encrypted,
        }));
    }
    eprintln!("retrieved {hash} ({size} bytes) from {}", report.custodian);
    Ok(())
}

/// Checks the pull request, then decrypts and verifies the copy into a temporary file beside
/// `out`, renamed over it only when the whole file checked out. Returns its size.
fn open_into(
    env: &Env,
    store: &FileStore,
    report: &RetrieveReport,
    key: &ContentKey,
    hash: &ContentHash,
    out: &Path,
) -> Result<u64> {
    let pull_hash: ContentHash = report.pull_request.parse()?;
    let encrypted_hash: ContentHash = report.encrypted.parse()?;
    let pull_item = store.blobs().get_item(&pull_hash)?;
    let pull = PullRequest::parse(&pull_item.content)
        .context("the custodian's pull request is malformed")?;
    if pull.original_hash != hash.0 || pull.encrypted_hash != encrypted_hash.0 {
        bail!("the custodian's pull request names another file");
    }
    let names_us = match pull.owner_key {
        Some(owner) if owner != key.public_key() => bail!(WRONG_PASSWORD),
        Some(_) => true,
        None => false,
    };
    let max_item = env.config.max_item.max(kith_store::DEFAULT_MAX_ITEM_SIZE);
    let custodian = &report.custodian;
    write_file_atomically_with(out, |file| {
        let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
        let opened = open_copy(
            store.blobs(),
            &encrypted_hash,
            key,
            hash,
            max_item,
            &mut writer,
        )
        .and_then(|size| {
            writer.flush().map_err(CopyError::Output)?;
            Ok(size)
        });
        explain(opened, names_us, custodian, hash)
    })
}

/// The user's view of a copy that did not open.
fn explain(
    opened: Result<u64, CopyError>,
    names_us: bool,
    custodian: &str,
    hash: &ContentHash,
) -> Result<u64> {
    Ok(match opened {
        Ok(size) => size,
        Err(CopyError::Crypto(CustodyError::Authentication { .. })) if !names_us => {
            bail!(WRONG_PASSWORD)
        }
        Err(CopyError::Crypto(e)) => bail!(
            "the copy from {custodian} does not decrypt with your key ({e}): the custodian sent a damaged or forged copy; nothing was written"
        ),
        Err(
            e @ (CopyError::HashMismatch { .. }
            | CopyError::Truncated
            | CopyError::TrailingItems
            | CopyError::BadType { .. }
            | CopyError::BadList { .. }
            | CopyError::RecordTooLong { .. }
            | CopyError::TooDeep),
        ) => bail!(
            "the decrypted copy from {custodian} is not {hash} ({e}): the custodian sent something else; nothing was written"
        ),
        Err(e) => bail!("cannot open the copy from {custodian}: {e}"),
    })
}

/// Removes the pull request and every item of the copy from the store, except items a
/// recorded file uses. Best effort: a failure is reported, not fatal.
fn forget_copy(store: &mut FileStore, pull: &ContentHash, copy: &ContentHash) {
    let mut items = vec![*pull];
    match store.blobs().walk_file(copy) {
        Ok(walked) => items.extend(walked.items),
        Err(_) => items.push(*copy),
    }
    for item in &items {
        let removed = store
            .meta()
            .item_in_use(item)
            .map_err(StoreError::from)
            .and_then(|used| {
                if used {
                    Ok(false)
                } else {
                    store.blobs().remove_item(item)
                }
            });
        if let Err(e) = removed {
            eprintln!("warning: could not remove the fetched copy item {item}: {e}");
        }
    }
}
