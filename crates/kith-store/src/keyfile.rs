//! Secret key files: written atomically with mode 0600, refused when others can read them.
//!
//! A private key is only ever in memory and in one file that no other local user can read.
//! Writing goes through a temporary file created with mode 0600 from the start (never
//! chmod-ed after the secret is in it), fsync'd and renamed into place, so a crash leaves either
//! the old key or the new one, never half of one.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What can go wrong with a key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading, writing or syncing failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not exactly the expected number of bytes.
    #[error("key file {path} is corrupt: expected {expected} bytes, found {found}")]
    WrongLength {
        /// The key file.
        path: PathBuf,
        /// Bytes a key of this kind has.
        expected: usize,
        /// Bytes the file has.
        found: u64,
    },
    /// Group or other users may read or write the file.
    #[error(
        "key file {path} has mode {mode:o}, so other users can read it; run `chmod 600 {path}`"
    )]
    TooOpen {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `secret` to `path` with mode 0600, atomically and durably.
pub fn write_secret(path: &Path, secret: &[u8]) -> Result<(), KeyFileError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("key"),
        std::process::id()
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_error(&tmp))?;
        file.write_all(secret).map_err(io_error(&tmp))?;
        file.sync_all().map_err(io_error(&tmp))?;
        fs::rename(&tmp, path).map_err(io_error(path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error(dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads a fixed-size secret, refusing a file that others can read or that has the wrong size.
/// Returns `Ok(None)` when the file does not exist.
pub fn read_secret<const N: usize>(path: &Path) -> Result<Option<[u8; N]>, KeyFileError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path)(e)),
    };
    let meta = file.metadata().map_err(io_error(path))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    if meta.len() != N as u64 {
        return Err(KeyFileError::WrongLength {
            path: path.to_owned(),
            expected: N,
            found: meta.len(),
        });
    }
    let mut secret = [0u8; N];
    file.read_exact(&mut secret).map_err(io_error(path))?;
    Ok(Some(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_secret_has_mode_0600_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.key");
        write_secret(&path, &[7u8; 32]).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_secret::<32>(&path).unwrap(), Some([7u8; 32]));
    }

    #[test]
    fn missing_file_is_none_and_open_or_short_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        assert!(read_secret::<32>(&path).unwrap().is_none());
        write_secret(&path, &[1u8; 31]).unwrap();
        assert!(matches!(
            read_secret::<32>(&path),
            Err(KeyFileError::WrongLength { .. })
        ));
        write_secret(&path, &[1u8; 32]).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_secret::<32>(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
}
