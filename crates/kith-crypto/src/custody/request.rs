//! Push and pull requests: the reference's "raw" blobs (format in the module documentation).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::{blob_hash, CustodyError};

const MD_LINE: &[u8] = b"md:raw";

/// The owner's request to a custodian to keep a file: its public key and the content hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PushRequest {
    /// Compressed secp256k1 public key of the owner (a valid point).
    pub owner_key: [u8; 33],
    /// CIYAM hash of the content to keep.
    pub content_hash: [u8; 32],
}

/// The custodian's answer to the owner's `chk`: how to fetch and decrypt the copy it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PullRequest {
    /// The custodian's fresh public key for this copy (a valid point).
    pub peer_key: [u8; 33],
    /// The owner's public key, when the custodian names it (a valid point).
    pub owner_key: Option<[u8; 33]>,
    /// CIYAM hash of the encrypted copy.
    pub encrypted_hash: [u8; 32],
    /// CIYAM hash of the original content.
    pub original_hash: [u8; 32],
}

impl PushRequest {
    /// The blob content: `md:raw\npk:<b64 owner key>\nsh:<b64 content hash>` (no trailing
    /// newline).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(6 + 4 + 44 + 4 + 44);
        out.extend_from_slice(MD_LINE);
        out.extend_from_slice(b"\npk:");
        out.extend_from_slice(STANDARD.encode(self.owner_key).as_bytes());
        out.extend_from_slice(b"\nsh:");
        out.extend_from_slice(STANDARD.encode(self.content_hash).as_bytes());
        out
    }

    /// Parses a push request strictly: exactly three lines in order, exact prefixes, canonical
    /// padded base64, right lengths, and a valid owner key.
    pub fn parse(bytes: &[u8]) -> Result<PushRequest, CustodyError> {
        const KIND: &str = "push";
        let [md, pk, sh] = split_lines(bytes, KIND)?;
        check_md(md, KIND)?;
        let pk = field(pk, KIND, 2, "pk:")?;
        let sh = field(sh, KIND, 3, "sh:")?;
        Ok(PushRequest {
            owner_key: decode_key(pk, "pk")?,
            content_hash: decode_array(sh, "sh")?,
        })
    }

    /// The CIYAM hash of this request stored as a blob: `sha256(0x01 || to_bytes())`.
    pub fn file_hash(&self) -> [u8; 32] {
        blob_hash(&self.to_bytes())
    }
}

impl PullRequest {
    /// The blob content:
    /// `md:raw\npk:<b64 peer key>[-<b64 owner key>]\nsh:<b64 encrypted hash>\nth:<b64 original
    /// hash>` (no trailing newline).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(6 + 4 + 89 + 4 + 44 + 4 + 44);
        out.extend_from_slice(MD_LINE);
        out.extend_from_slice(b"\npk:");
        out.extend_from_slice(STANDARD.encode(self.peer_key).as_bytes());
        if let Some(owner) = &self.owner_key {
            out.push(b'-');
            out.extend_from_slice(STANDARD.encode(owner).as_bytes());
        }
        out.extend_from_slice(b"\nsh:");
        out.extend_from_slice(STANDARD.encode(self.encrypted_hash).as_bytes());
        out.extend_from_slice(b"\nth:");
        out.extend_from_slice(STANDARD.encode(self.original_hash).as_bytes());
        out
    }

    /// Parses a pull request strictly: exactly four lines in order, exact prefixes, canonical
    /// padded base64, right lengths, and valid keys.
    pub fn parse(bytes: &[u8]) -> Result<PullRequest, CustodyError> {
        const KIND: &str = "pull";
        let [md, pk, sh, th] = split_lines(bytes, KIND)?;
        check_md(md, KIND)?;
        let pk = field(pk, KIND, 2, "pk:")?;
        let sh = field(sh, KIND, 3, "sh:")?;
        let th = field(th, KIND, 4, "th:")?;
        // '-' is not in the standard base64 alphabet, so the first one separates the keys; a
        // second one makes the owner part invalid base64.
        let (peer, owner) = match pk.iter().position(|&c| c == b'-') {
            Some(i) => (&pk[..i], Some(&pk[i + 1..])),
            None => (pk, None),
        };
        Ok(PullRequest {
            peer_key: decode_key(peer, "pk peer")?,
            owner_key: owner.map(|o| decode_key(o, "pk owner")).transpose()?,
            encrypted_hash: decode_array(sh, "sh")?,
            original_hash: decode_array(th, "th")?,
        })
    }

    /// The CIYAM hash of this request stored as a blob: `sha256(0x01 || to_bytes())`.
    pub fn file_hash(&self) -> [u8; 32] {
        blob_hash(&self.to_bytes())
    }
}

fn split_lines<'a, const N: usize>(
    bytes: &'a [u8],
    kind: &'static str,
) -> Result<[&'a [u8]; N], CustodyError> {
    let lines: Vec<&[u8]> = bytes.split(|&c| c == b'\n').collect();
    let got = lines.len();
    lines
        .try_into()
        .map_err(|_| CustodyError::RequestLineCount {
            kind,
            expected: N,
            got,
        })
}

fn check_md(line: &[u8], kind: &'static str) -> Result<(), CustodyError> {
    if line != MD_LINE {
        return Err(CustodyError::RequestPrefix {
            kind,
            line: 1,
            expected: "md:raw",
        });
    }
    Ok(())
}

fn field<'a>(
    line: &'a [u8],
    kind: &'static str,
    number: usize,
    prefix: &'static str,
) -> Result<&'a [u8], CustodyError> {
    line.strip_prefix(prefix.as_bytes())
        .ok_or(CustodyError::RequestPrefix {
            kind,
            line: number,
            expected: prefix,
        })
}

fn decode_array<const N: usize>(
    value: &[u8],
    field: &'static str,
) -> Result<[u8; N], CustodyError> {
    let bytes = STANDARD
        .decode(value)
        .map_err(|_| CustodyError::RequestBase64 { field })?;
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| CustodyError::RequestFieldLength {
            field,
            expected: N,
            got: bytes.len(),
        })
}

fn decode_key(value: &[u8], field: &'static str) -> Result<[u8; 33], CustodyError> {
    let key: [u8; 33] = decode_array(value, field)?;
    secp256k1::PublicKey::from_slice(&key).map_err(|_| CustodyError::InvalidPublicKey { field })?;
    Ok(key)
}
