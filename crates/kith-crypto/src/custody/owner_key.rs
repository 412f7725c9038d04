//! The owner's custody key pair, derived from a password and the file's content hash.

use argon2::{Algorithm, Argon2, Params, Version};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::CustodyError;
use crate::identity::ContentKey;

/// Domain-separation prefix of the Argon2id salt: `salt = sha256(ARGON2_SALT_DOMAIN ||
/// content hash)`.
pub const ARGON2_SALT_DOMAIN: &[u8] = b"kith custody owner key v1";

/// The password that the reference's interactive test mode maps to the private key
/// `sha256("dummy")` (see [`derive_owner_key_ciyam_compat`]).
pub const CIYAM_TEST_PASSWORD: &[u8] = b"dummy";

/// Argon2id cost parameters for [`derive_owner_key_argon2`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Argon2Params {
    /// Memory in KiB (at least `8 * parallelism`).
    pub memory_kib: u32,
    /// Number of passes (at least 1).
    pub iterations: u32,
    /// Degree of parallelism (lanes; computed sequentially here), at least 1.
    pub parallelism: u32,
}

impl Argon2Params {
    /// The default: 64 MiB, 3 passes, 1 lane.
    pub const DEFAULT: Argon2Params = Argon2Params {
        memory_kib: 64 * 1024,
        iterations: 3,
        parallelism: 1,
    };

    /// Minimal cost (8 KiB, 1 pass, 1 lane): for tests only, never for real passwords.
    pub const INSECURE_FOR_TESTS: Argon2Params = Argon2Params {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };
}

impl Default for Argon2Params {
    fn default() -> Argon2Params {
        Argon2Params::DEFAULT
    }
}

/// Turns 32 bytes into a key, rehashing (`b = sha256(b)`) until they are a valid secp256k1
/// scalar (in `1..n`; a retry happens with probability about 2^-128).
fn key_from_candidate(mut candidate: Zeroizing<[u8; 32]>) -> ContentKey {
    loop {
        if let Ok(key) = ContentKey::from_secret(&candidate) {
            return key;
        }
        let next: [u8; 32] = Sha256::digest(candidate.as_ref()).into();
        *candidate = next;
    }
}

/// Derives the owner's key with Argon2id (version 0x13), kith's default.
///
/// `secret = Argon2id(password, salt = sha256("kith custody owner key v1" || content_hash),
/// m = memory_kib, t = iterations, p = parallelism, 32 bytes)`, no secret key or associated
/// data; if the output is not a valid secp256k1 scalar it is replaced by its sha256 until it is
/// (deterministic). The content hash salts the derivation so that one password gives a
/// different key for every file.
pub fn derive_owner_key_argon2(
    password: &[u8],
    content_hash: &[u8; 32],
    params: &Argon2Params,
) -> Result<ContentKey, CustodyError> {
    let argon_params = Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        Some(32),
    )
    .map_err(|e| CustodyError::KdfParams(e.to_string()))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params);
    let mut salt = Sha256::new();
    salt.update(ARGON2_SALT_DOMAIN);
    salt.update(content_hash);
    let salt = salt.finalize();
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(password, &salt, out.as_mut())
        .map_err(|e| CustodyError::Kdf(e.to_string()))?;
    Ok(key_from_candidate(out))
}

/// The reference's derivation, without its test-mode rule: the private key is the hex string
/// `"0"` followed by `sha256_hex(content_hash_hex || password)` without its first character,
/// where `content_hash_hex` is the 64-character lowercase hex of `content_hash`. That is,
/// `sha256(content_hash_hex || password)` with its top four bits cleared.
///
/// A fast unsalted hash: offered only for compatibility. (Should the result be zero, with
/// probability 2^-252, it is rehashed as in [`derive_owner_key_argon2`].)
pub fn derive_owner_key_ciyam_general(password: &[u8], content_hash: &[u8; 32]) -> ContentKey {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut input = Zeroizing::new(Vec::with_capacity(64 + password.len()));
    for b in content_hash {
        input.push(HEX[usize::from(b >> 4)]);
        input.push(HEX[usize::from(b & 0x0f)]);
    }
    input.extend_from_slice(password);
    let mut secret: Zeroizing<[u8; 32]> = Zeroizing::new(Sha256::digest(input.as_slice()).into());
    secret[0] &= 0x0f;
    key_from_candidate(secret)
}

/// The reference's derivation including its interactive-test rule: the password `dummy`
/// ([`CIYAM_TEST_PASSWORD`]) gives the private key `sha256("dummy")`; any other password gives
/// [`derive_owner_key_ciyam_general`]. This is what reproduces the seed's values.
pub fn derive_owner_key_ciyam_compat(password: &[u8], content_hash: &[u8; 32]) -> ContentKey {
    if password == CIYAM_TEST_PASSWORD {
        let secret: Zeroizing<[u8; 32]> = Zeroizing::new(Sha256::digest(password).into());
        return key_from_candidate(secret);
    }
    derive_owner_key_ciyam_general(password, content_hash)
}
