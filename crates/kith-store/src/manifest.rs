//! The folder manifest: what `kith file put DIR` stores besides the folder's files, and what
//! `kith file get` of a folder reads (from the network: every byte is checked here).
//!
//! The format, version 1, is a magic line and one line of canonical JSON:
//!
//! ```text
//! kith-folder/1\n
//! {"dirs":["empty","a/empty"],"files":[{"exec":false,"hash":"<64 hex>","path":"a/b.txt","size":5}]}\n
//! ```
//!
//! - `files`: every regular file, by its path relative to the folder (`/`-separated), the
//!   content address of its bytes (a file as `kith file put FILE` stores it), its size in bytes
//!   and whether it is executable.
//! - `dirs`: the directories that hold no file (everything else is implied by the paths).
//! - Canonical: keys in this order, no whitespace, each list sorted by path (byte order),
//!   serde_json's escaping; the decoder re-encodes what it read and refuses anything that
//!   differs, so a folder has exactly one manifest and one address.
//!
//! A path is refused unless every `/`-separated component is non-empty, not `.` or `..`, at
//! most [`MAX_COMPONENT`] bytes, and free of `\` and control characters (NUL included); it may
//! not start with `/`. No path may appear twice, and no path may lie under a file's path: a
//! manifest that decodes can only name places inside the folder, each once.
//!
//! A later format would change the magic line (`kith-folder/2`); this decoder refuses it with
//! [`ManifestError::Version`] rather than guessing.

use serde::{Deserialize, Serialize};
use std::collections::HashSet;

use crate::address::ContentHash;

/// The first line of every manifest, without its `\n`.
pub const MAGIC: &str = "kith-folder/1";

/// What every manifest starts with, of whatever version.
const MAGIC_STEM: &str = "kith-folder/";

/// Longest path component, in bytes (as most filesystems allow).
pub const MAX_COMPONENT: usize = 255;

/// The bounds a decoder holds a manifest to (it comes from the network).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestLimits {
    /// Largest manifest, in bytes, checked before it is read.
    pub max_bytes: u64,
    /// Most entries (files and empty directories together).
    pub max_entries: usize,
    /// Longest path, in bytes.
    pub max_path: usize,
}

impl Default for ManifestLimits {
    fn default() -> ManifestLimits {
        ManifestLimits {
            max_bytes: 32 * 1024 * 1024,
            max_entries: 100_000,
            max_path: 4096,
        }
    }
}

/// One file of a folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderEntry {
    /// Executable (any of the mode's `x` bits set when it was put).
    pub exec: bool,
    /// The file's content address.
    #[serde(with = "hex_hash")]
    pub hash: ContentHash,
    /// Relative, `/`-separated.
    pub path: String,
    /// Bytes.
    pub size: u64,
}

/// A folder: its files and its empty directories.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Directories that hold nothing, sorted.
    pub dirs: Vec<String>,
    /// Files, sorted by path.
    pub files: Vec<FolderEntry>,
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// It does not start with `kith-folder/`: an ordinary file.
    #[error("not a folder manifest")]
    NotAManifest,
    /// A version this kith does not read.
    #[error(
        "folder manifest version {0:?} is not supported (this kith reads {MAGIC}); upgrade kith"
    )]
    Version(String),
    /// Larger than the limit.
    #[error("folder manifest of {size} bytes is over the limit of {max}")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// More entries than the limit.
    #[error("folder manifest lists more than {max} entries")]
    TooManyEntries {
        /// The limit.
        max: usize,
    },
    /// Not the JSON of a manifest.
    #[error("folder manifest is malformed: {0}")]
    Malformed(String),
    /// Valid, but not in canonical form.
    #[error("folder manifest is not in canonical form (sorted, compact)")]
    NotCanonical,
    /// A path that could lead outside the folder, or that no filesystem takes.
    #[error("folder manifest names a bad path {path:?}: {reason}")]
    BadPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The same path twice.
    #[error("folder manifest names {0:?} twice")]
    Duplicate(String),
    /// A path under a file's path.
    #[error("folder manifest names {path:?} under the file {file:?}")]
    UnderFile {
        /// The path.
        path: String,
        /// The file it would be under.
        file: String,
    },
    /// The sizes add up to more than a u64.
    #[error("folder manifest sizes overflow")]
    SizeOverflow,
}

impl Manifest {
    /// Bytes of all files together.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Sorts the lists into canonical order (for a manifest being built).
    pub fn sort(&mut self) {
        self.dirs.sort();
        self.files.sort_by(|a, b| a.path.cmp(&b.path));
    }

    /// The manifest's bytes (call [`Manifest::sort`] first; [`Manifest::validate`] says
    /// whether the result will decode).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.files.len() * 128);
        out.extend_from_slice(MAGIC.as_bytes());
        out.push(b'\n');
        // Serializing plain strings, integers and booleans cannot fail.
        serde_json::to_writer(&mut out, self).expect("a manifest serializes");
        out.push(b'\n');
        out
    }

    /// Whether `bytes` start like a manifest of any version (a cheap look, no parsing).
    pub fn looks_like(bytes: &[u8]) -> bool {
        bytes.starts_with(MAGIC_STEM.as_bytes())
    }

    /// Decodes and validates a manifest within `limits` (see the module docs). Never panics.
    pub fn decode(bytes: &[u8], limits: &ManifestLimits) -> Result<Manifest, ManifestError> {
        if !Manifest::looks_like(bytes) {
            return Err(ManifestError::NotAManifest);
        }
        if bytes.len() as u64 > limits.max_bytes {
            return Err(ManifestError::TooLarge {
                size: bytes.len() as u64,
                max: limits.max_bytes,
            });
        }
        let line_end = bytes
            .iter()
            .position(|b| *b == b'\n')
            .unwrap_or(bytes.len());
        let magic = &bytes[..line_end];
        if magic != MAGIC.as_bytes() {
            let shown: String = String::from_utf8_lossy(&magic[..magic.len().min(40)]).into();
            return Err(ManifestError::Version(shown));
        }
        let body = &bytes[(line_end + 1).min(bytes.len())..];
        // Entries are bounded before anything is parsed, so memory is too: a file entry holds
        // four commas at most (three inside, one after), an empty dir one, and a comma inside
        // a path only makes this count larger.
        let commas = body.iter().filter(|b| **b == b',').count();
        if commas > limits.max_entries.saturating_mul(4).saturating_add(1) {
            return Err(ManifestError::TooManyEntries {
                max: limits.max_entries,
            });
        }
        let manifest: Manifest = serde_json::from_slice(body.strip_suffix(b"\n").unwrap_or(b""))
            .map_err(|e| ManifestError::Malformed(e.to_string()))?;
        manifest.validate(limits)?;
        let sorted = manifest.dirs.windows(2).all(|w| w[0] < w[1])
            && manifest.files.windows(2).all(|w| w[0].path < w[1].path);
        if !sorted || manifest.encode() != bytes {
            return Err(ManifestError::NotCanonical);
        }
        Ok(manifest)
    }

    /// Checks every rule of the module docs but canonical form.
    pub fn validate(&self, limits: &ManifestLimits) -> Result<(), ManifestError> {
        if self.files.len().saturating_add(self.dirs.len()) > limits.max_entries {
            return Err(ManifestError::TooManyEntries {
                max: limits.max_entries,
            });
        }
        self.files
            .iter()
            .try_fold(0u64, |sum, f| sum.checked_add(f.size))
            .ok_or(ManifestError::SizeOverflow)?;
        let mut files: HashSet<&str> = HashSet::with_capacity(self.files.len());
        let mut all: HashSet<&str> = HashSet::with_capacity(self.files.len() + self.dirs.len());
        let paths = self
            .files
            .iter()
            .map(|f| (f.path.as_str(), true))
            .chain(self.dirs.iter().map(|d| (d.as_str(), false)));
        for (path, is_file) in paths.clone() {
            check_path(path, limits)?;
            if !all.insert(path) {
                return Err(ManifestError::Duplicate(path.to_owned()));
            }
            if is_file {
                files.insert(path);
            }
        }
        for (path, _) in paths {
            for (i, _) in path.match_indices('/') {
                let parent = &path[..i];
                if files.contains(parent) {
                    return Err(ManifestError::UnderFile {
                        path: path.to_owned(),
                        file: parent.to_owned(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Whether `name` may be one component of a manifest path (a file or directory name).
pub fn is_component(name: &str) -> bool {
    component_error(name).is_none()
}

fn component_error(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("an empty component");
    }
    if name == "." || name == ".." {
        return Some("a `.` or `..` component");
    }
    if name.len() > MAX_COMPONENT {
        return Some("a component longer than 255 bytes");
    }
    if name.chars().any(|c| c == '\\' || c.is_control()) {
        return Some("a backslash or control character");
    }
    None
}

fn check_path(path: &str, limits: &ManifestLimits) -> Result<(), ManifestError> {
    let bad = |reason| ManifestError::BadPath {
        path: path.to_owned(),
        reason,
    };
    if path.len() > limits.max_path {
        return Err(bad("longer than the limit"));
    }
    if path.starts_with('/') {
        return Err(bad("an absolute path"));
    }
    match path.split('/').find_map(component_error) {
        Some(reason) => Err(bad(reason)),
        None => Ok(()),
    }
}

/// A hash as 64 lowercase hex digits in JSON.
mod hex_hash {
    use crate::address::ContentHash;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(hash: &ContentHash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hash.to_hex())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ContentHash, D::Error> {
        let text = <&str>::deserialize(d)?;
        ContentHash::from_lower_hex(text.as_bytes())
            .ok_or_else(|| D::Error::custom("a hash is 64 lowercase hex digits"))
    }
}

#[cfg(test)]
#[path = "manifest_tests.rs"]
mod tests;
