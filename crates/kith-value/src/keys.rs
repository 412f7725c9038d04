//! User keys: ECDSA on P-521 with a SHA-384 digest, as the reference's WebCrypto
//! configuration (`{name: 'ECDSA', namedCurve: 'P-521', hash: 'SHA-384'}`) signs.
//!
//! A signature is the raw `r ‖ s` (66 bytes each, 132 in all) in base64url without padding
//! (176 characters), which is what WebCrypto returns and the reference sends. The message is
//! hashed with SHA-384 and the 48-byte digest used as the integer `z` (it is shorter than the
//! 521-bit order, so it is taken whole, left-padded): many P-521 APIs default to SHA-512 or
//! refuse a 48-byte prehash, which is why signing goes through the prehash interface here.
//!
//! Public keys travel as JWKs (`{"crv": "P-521", "kty": "EC", "x": ..., "y": ...}`, each
//! coordinate 66 bytes in base64url), as the reference's certificates carry them.

use crate::{b64_decode, b64_encode, ValueError};
use p521::ecdsa::signature::hazmat::{PrehashVerifier, RandomizedPrehashSigner};
use p521::ecdsa::{Signature, SigningKey, VerifyingKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha384};
use zeroize::Zeroizing;

/// Bytes of one coordinate or scalar of P-521.
pub const FIELD_BYTES: usize = 66;
/// Bytes of a raw `r ‖ s` signature.
pub const SIGNATURE_BYTES: usize = 2 * FIELD_BYTES;

/// A user's private key.
pub struct UserKey {
    inner: SigningKey,
}

impl std::fmt::Debug for UserKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserKey([redacted])")
    }
}

impl UserKey {
    /// A fresh key from `rng`.
    pub fn generate(rng: &mut (impl rand::RngCore + rand::CryptoRng)) -> UserKey {
        UserKey {
            inner: SigningKey::random(rng),
        }
    }

    /// The key from its 66-byte scalar (what the key file holds).
    pub fn from_bytes(bytes: &[u8]) -> Result<UserKey, ValueError> {
        if bytes.len() != FIELD_BYTES {
            return Err(ValueError::BadKey(format!(
                "a P-521 private key is {FIELD_BYTES} bytes, not {}",
                bytes.len()
            )));
        }
        SigningKey::from_slice(bytes)
            .map(|inner| UserKey { inner })
            .map_err(|_| ValueError::BadKey("not a P-521 private key".into()))
    }

    /// The 66-byte scalar, for the key file.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.inner.to_bytes().to_vec())
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            inner: VerifyingKey::from(&self.inner),
        }
    }

    /// Signs `message` (SHA-384, then ECDSA with `rng`'s entropy added to RFC 6979): the
    /// signature in base64url.
    pub fn sign(
        &self,
        message: &[u8],
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
    ) -> Result<String, ValueError> {
        let digest = Sha384::digest(message);
        let signature: Signature = self
            .inner
            .sign_prehash_with_rng(rng, &digest)
            .map_err(|e| ValueError::BadKey(format!("signing failed: {e}")))?;
        Ok(b64_encode(&signature.to_bytes()))
    }
}

/// A user's public key.
#[derive(Clone)]
pub struct PublicKey {
    inner: VerifyingKey,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.to_jwk()["x"])
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &PublicKey) -> bool {
        self.inner.to_encoded_point(false) == other.inner.to_encoded_point(false)
    }
}

impl Eq for PublicKey {}

impl PublicKey {
    /// The key of a JWK (`kty` `EC`, `crv` `P-521`, `x` and `y` of 66 bytes each); other
    /// members (`ext`, `key_ops`) are ignored.
    pub fn from_jwk(jwk: &Value) -> Result<PublicKey, ValueError> {
        let bad = |why: &str| ValueError::BadKey(format!("invalid JWK EC key: {why}"));
        let field = |name: &str| jwk.get(name).and_then(Value::as_str);
        if field("kty") != Some("EC") {
            return Err(bad("kty is not EC"));
        }
        if field("crv") != Some("P-521") {
            return Err(bad("crv is not P-521"));
        }
        let mut sec1 = Vec::with_capacity(1 + 2 * FIELD_BYTES);
        sec1.push(4);
        for name in ["x", "y"] {
            let coordinate = field(name)
                .and_then(|text| b64_decode(text).ok())
                .filter(|bytes| bytes.len() == FIELD_BYTES)
                .ok_or_else(|| bad(&format!("{name} is not {FIELD_BYTES} bytes of base64url")))?;
            sec1.extend_from_slice(&coordinate);
        }
        VerifyingKey::from_sec1_bytes(&sec1)
            .map(|inner| PublicKey { inner })
            .map_err(|_| bad("the point is not on P-521"))
    }

    /// The JWK, shaped as WebCrypto exports a public verification key.
    pub fn to_jwk(&self) -> Value {
        let point = self.inner.to_encoded_point(false);
        let (x, y) = (
            point.x().map(|x| b64_encode(x)).unwrap_or_default(),
            point.y().map(|y| b64_encode(y)).unwrap_or_default(),
        );
        json!({"crv": "P-521", "ext": true, "key_ops": ["verify"], "kty": "EC", "x": x, "y": y})
    }

    /// Checks a base64url `r ‖ s` signature over `message`.
    pub fn verify(&self, message: &[u8], signature: &str) -> Result<(), ValueError> {
        let raw = b64_decode(signature)
            .ok()
            .filter(|raw| raw.len() == SIGNATURE_BYTES)
            .ok_or(ValueError::BadSignature(
                "not 132 bytes of base64url (raw r ‖ s)",
            ))?;
        let signature = Signature::from_slice(&raw)
            .map_err(|_| ValueError::BadSignature("r or s out of range"))?;
        let digest = Sha384::digest(message);
        self.inner
            .verify_prehash(&digest, &signature)
            .map_err(|_| ValueError::BadSignature("does not verify"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn sign_verify_round_trip_and_tamper() {
        let mut rng = StdRng::seed_from_u64(1);
        let key = UserKey::generate(&mut rng);
        let sig = key.sign(b"hello", &mut rng).unwrap();
        assert_eq!(sig.len(), 176);
        let public = PublicKey::from_jwk(&key.public().to_jwk()).unwrap();
        public.verify(b"hello", &sig).unwrap();
        assert!(public.verify(b"hellp", &sig).is_err());
        assert!(public.verify(b"hello", "AAAA").is_err());
        let again = UserKey::from_bytes(&key.to_bytes()).unwrap();
        assert_eq!(again.public(), key.public());
        assert_eq!(format!("{key:?}"), "UserKey([redacted])");
    }

    #[test]
    fn bad_jwks_are_named() {
        let err = PublicKey::from_jwk(&json!({"kty": "EC", "crv": "P-256"})).unwrap_err();
        assert!(err.to_string().contains("crv"), "{err}");
        let err = PublicKey::from_jwk(
            &json!({"kty": "EC", "crv": "P-521", "x": "InvalidXValue", "y": "A"}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("x is not"), "{err}");
    }
}
