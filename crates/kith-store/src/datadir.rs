//! The node's data dir: where its keys, store, database and control socket live.
//!
//! ```text
//! <data dir>/            mode 0700: nobody else may even look inside
//!   keys/agent.key       Ed25519 seed (32 bytes, mode 0600): the node's identity
//!   keys/content.key     secp256k1 secret (32 bytes, mode 0600): signs and seals content
//!   cert.pem             self-signed X.509 certificate on the agent key (public)
//!   kith.toml            optional settings
//!   kith.db              SQLite metadata database (unless --db points elsewhere)
//!   store/               content-addressed items, files/<2 hex>/<62 hex>
//!   control.sock         the running node's control API (mode 0600)
//! ```
//!
//! Opening a data dir that does not exist creates it, so every command that works without a
//! running node also works on a fresh machine. Creating the identity is idempotent: existing
//! keys are loaded and never replaced.

use crate::keyfile::{self, KeyFileError};
use kith_crypto::identity::Identity;
use rand::{CryptoRng, RngCore};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What can go wrong opening a data dir or its identity.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// The directory could not be created or read.
    #[error("cannot use data dir {path}: {source}{}", io_advice(source))]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The path exists but is not a directory.
    #[error("data dir {0} exists but is not a directory; pass another --data")]
    NotADirectory(PathBuf),
    /// A key file is unreadable, corrupt or too open.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// The key files hold bytes that are not valid keys.
    #[error("identity in {path} is corrupt: {reason}")]
    BadIdentity {
        /// The keys directory.
        path: PathBuf,
        /// What the crypto layer said.
        reason: String,
    },
    /// No platform data directory could be found (no HOME, no XDG_DATA_HOME).
    #[error("cannot find a default data dir (HOME and XDG_DATA_HOME are unset); pass --data DIR")]
    NoDefault,
}

/// What to do about a data dir that cannot be created or read.
fn io_advice(error: &std::io::Error) -> &'static str {
    match error.kind() {
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
            "; pass a --data dir you can write to (or fix its permissions)"
        }
        std::io::ErrorKind::NotADirectory | std::io::ErrorKind::AlreadyExists => {
            "; a part of that path is a file, not a directory: pass another --data"
        }
        _ => "; pass another --data dir",
    }
}

/// A data dir that exists on disk (created with mode 0700 if it did not).
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

/// The identity found or created in a data dir.
pub struct LoadedIdentity {
    /// The keys.
    pub identity: Identity,
    /// True when this call created any key (first run).
    pub created: bool,
}

impl DataDir {
    /// The platform's default: `$XDG_DATA_HOME/kith`, else `~/.local/share/kith` (on macOS,
    /// `~/Library/Application Support/kith`).
    pub fn default_root() -> Result<PathBuf, DataDirError> {
        dirs::data_dir()
            .map(|d| d.join("kith"))
            .ok_or(DataDirError::NoDefault)
    }

    /// Opens `root`, creating it (and its parents) when missing.
    pub fn open_or_create(root: impl Into<PathBuf>) -> Result<DataDir, DataDirError> {
        let root = root.into();
        match fs::metadata(&root) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(DataDirError::NotADirectory(root)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&root)
                    .map_err(|source| DataDirError::Io {
                        path: root.clone(),
                        source,
                    })?;
            }
            Err(source) => return Err(DataDirError::Io { path: root, source }),
        }
        let dir = DataDir { root };
        dir.ensure_dir(&dir.keys_dir())?;
        Ok(dir)
    }

    fn ensure_dir(&self, path: &Path) -> Result<(), DataDirError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|source| DataDirError::Io {
                path: path.to_owned(),
                source,
            })
    }

    /// The data dir itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `keys/`.
    pub fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }
    /// `store/`, the content-addressed items.
    pub fn store_dir(&self) -> PathBuf {
        self.root.join("store")
    }
    /// `kith.db`, the default SQLite metadata database.
    pub fn sqlite_path(&self) -> PathBuf {
        self.root.join("kith.db")
    }
    /// `control.sock`, the running node's control API.
    pub fn control_socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }
    /// `kith.toml`, optional settings.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("kith.toml")
    }
    /// `cert.pem`, the node certificate.
    pub fn cert_path(&self) -> PathBuf {
        self.root.join("cert.pem")
    }

    /// Loads the node identity, creating whatever part of it is missing. Existing keys are
    /// never replaced, so running this again changes nothing.
    pub fn load_or_create_identity(
        &self,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<LoadedIdentity, DataDirError> {
        let agent_path = self.keys_dir().join("agent.key");
        let content_path = self.keys_dir().join("content.key");
        let mut created = false;
        let mut load_or_make = |path: &Path| -> Result<[u8; 32], DataDirError> {
            if let Some(secret) = keyfile::read_secret::<32>(path)? {
                return Ok(secret);
            }
            // A fresh Identity gives properly formed secrets of both kinds; we keep the one
            // this file needs.
            let fresh = Identity::generate(rng);
            let secret = if path == agent_path {
                fresh.agent_seed()
            } else {
                fresh.content_secret()
            };
            keyfile::write_secret(path, &secret)?;
            created = true;
            Ok(secret)
        };
        let agent = load_or_make(&agent_path)?;
        let content = load_or_make(&content_path)?;
        let identity =
            Identity::from_secrets(&agent, &content).map_err(|e| DataDirError::BadIdentity {
                path: self.keys_dir(),
                reason: e.to_string(),
            })?;
        self.ensure_certificate(&identity)?;
        Ok(LoadedIdentity { identity, created })
    }

    /// Writes `cert.pem` if it is missing. The certificate is public, so it is world-readable,
    /// but it is still written atomically.
    fn ensure_certificate(&self, identity: &Identity) -> Result<(), DataDirError> {
        let path = self.cert_path();
        if path.exists() {
            return Ok(());
        }
        let cert = identity
            .self_signed_certificate()
            .map_err(|e| DataDirError::BadIdentity {
                path: self.keys_dir(),
                reason: e.to_string(),
            })?;
        let io = |source| DataDirError::Io {
            path: path.clone(),
            source,
        };
        let tmp = self
            .root
            .join(format!(".cert.pem.tmp{}", std::process::id()));
        let mut file = fs::File::create(&tmp).map_err(io)?;
        file.write_all(cert.pem.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).map_err(io)?;
        fs::rename(&tmp, &path).map_err(io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_load_returns_the_same_identity_and_creates_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open_or_create(tmp.path().join("fresh/nested")).unwrap();
        let mut rng = rand::thread_rng();
        let first = dir.load_or_create_identity(&mut rng).unwrap();
        assert!(first.created);
        let cert = fs::read(dir.cert_path()).unwrap();
        let second = dir.load_or_create_identity(&mut rng).unwrap();
        assert!(!second.created);
        assert_eq!(
            first.identity.agent_id().to_string(),
            second.identity.agent_id().to_string()
        );
        assert_eq!(
            first.identity.content_public(),
            second.identity.content_public()
        );
        assert_eq!(fs::read(dir.cert_path()).unwrap(), cert);
        let mode = fs::metadata(dir.root()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        for key in ["agent.key", "content.key"] {
            let mode = fs::metadata(dir.keys_dir().join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
    }

    #[test]
    fn a_file_where_the_data_dir_should_be_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("not-a-dir");
        fs::write(&file, b"x").unwrap();
        let err = DataDir::open_or_create(&file).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }
}
