//! The site's users: a P-521 key each (`keys/user-CUID.key`, mode 0600, like the node's
//! other keys) and a row with the name and certificate. Used by the node and, with no node
//! running, by `kith user add|ls`.

use kith_store::datadir::DataDir;
use kith_store::keyfile::{self, KeyFileError};
use kith_store::meta::{MetaDb, MetaError, ValueUser};
use kith_value::cert::{check_cuid, Certificate, Chad};
use kith_value::{time, UserKey, ValueError};
use std::path::{Path, PathBuf};

/// Why a user could not be added or used.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The user id is not acceptable.
    #[error(transparent)]
    Cuid(#[from] ValueError),
    /// A user with that id exists.
    #[error("user {0} exists already")]
    Exists(String),
    /// No such user.
    #[error("no user {0} on this node; `kith user ls` lists them, `kith user add CUID --name NAME` adds one")]
    Unknown(String),
    /// No user at all.
    #[error("this node hosts no user yet: add one with `kith user add CUID --name NAME`")]
    NoUsers,
    /// Several users and none named.
    #[error("this node hosts several users ({0}): name one with --user CUID")]
    Ambiguous(String),
    /// The key file.
    #[error(transparent)]
    Key(#[from] KeyFileError),
    /// The database.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// The key file is missing.
    #[error("the key of user {0} is missing ({1})")]
    MissingKey(String, PathBuf),
}

/// Where a user's key lives.
pub fn key_path(keys_dir: &Path, cuid: &str) -> PathBuf {
    keys_dir.join(format!("user-{cuid}.key"))
}

/// Adds a user: a fresh key (written first, 0600), then its row. `agent` is the site's.
pub fn add_user(
    data_dir: &DataDir,
    meta: &dyn MetaDb,
    cuid: &str,
    name: &str,
    agent: &str,
    now_millis: i64,
) -> Result<ValueUser, UserError> {
    check_cuid(cuid)?;
    if meta.value_users()?.iter().any(|u| u.cuid == cuid) {
        return Err(UserError::Exists(cuid.to_owned()));
    }
    let path = key_path(&data_dir.keys_dir(), cuid);
    // A key left by an earlier, interrupted add is kept rather than replaced.
    let key = match keyfile::read_secret::<{ kith_value::keys::FIELD_BYTES }>(&path)? {
        Some(bytes) => UserKey::from_bytes(&bytes)?,
        None => {
            let key = UserKey::generate(&mut rand::rngs::OsRng);
            keyfile::write_secret(&path, &key.to_bytes())?;
            key
        }
    };
    let chad = Chad {
        cuid: cuid.to_owned(),
        agent: agent.to_owned(),
        host: None,
        port: None,
    };
    let name = if name.trim().is_empty() {
        cuid
    } else {
        name.trim()
    };
    let cert = Certificate::new(&chad, name, &key.public(), &time::format_millis(now_millis));
    let user = ValueUser {
        cuid: cuid.to_owned(),
        name: name.to_owned(),
        cert: cert.0.to_string(),
        created_at: now_millis / 1000,
    };
    if !meta.value_add_user(&user)? {
        return Err(UserError::Exists(cuid.to_owned()));
    }
    Ok(user)
}

/// A user's key.
pub fn load_key(keys_dir: &Path, cuid: &str) -> Result<UserKey, UserError> {
    let path = key_path(keys_dir, cuid);
    match keyfile::read_secret::<{ kith_value::keys::FIELD_BYTES }>(&path)? {
        Some(bytes) => Ok(UserKey::from_bytes(&bytes)?),
        None => Err(UserError::MissingKey(cuid.to_owned(), path)),
    }
}

/// The user named, or the only one when none is named.
pub fn pick_user(meta: &dyn MetaDb, wanted: Option<&str>) -> Result<ValueUser, UserError> {
    let users = meta.value_users()?;
    match wanted {
        Some(cuid) => users
            .into_iter()
            .find(|u| u.cuid == cuid)
            .ok_or_else(|| UserError::Unknown(cuid.to_owned())),
        None => match users.len() {
            0 => Err(UserError::NoUsers),
            1 => Ok(users.into_iter().next().unwrap_or_else(|| unreachable!())),
            _ => Err(UserError::Ambiguous(
                users
                    .iter()
                    .map(|u| u.cuid.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
        },
    }
}

/// The certificate a user presents now: its name and key, and the site's current address.
pub fn certificate(user: &ValueUser, key: &UserKey, chad: &Chad, now_millis: i64) -> Certificate {
    Certificate::new(
        chad,
        &user.name,
        &key.public(),
        &time::format_millis(now_millis),
    )
}
