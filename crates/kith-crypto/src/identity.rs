//! A node's identity: its Ed25519 agent key and its secp256k1 content key.
//!
//! - **Agent key** (Ed25519). Its public key, written as base64url without padding (43
//!   characters), is the node's [`AgentId`]. The Noise static key is the X25519 form of the same
//!   key ([`Identity::noise_secret`], [`agent_key_to_noise_public`]); a self-signed X.509
//!   certificate on it serves TLS and the chat CERTIFICATE message
//!   ([`Identity::self_signed_certificate`]); the chat node id is derived from it
//!   ([`NodeId::from_agent_key`]) so that ids can neither collide nor be claimed by another key.
//! - **Content key** (secp256k1, [`ContentKey`]): signs and seals Datt content (see
//!   [`crate::content`]).
//!
//! Secrets never appear in `Debug` output. The caller stores the 32-byte secrets
//! ([`Identity::agent_seed`], [`Identity::content_secret`]) in files it owns; this crate does
//! no I/O.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256, Sha512};
use zeroize::{Zeroize, Zeroizing};

/// Errors from building or parsing identity material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The content secret is not a valid secp256k1 secret key (zero, or not below the group
    /// order).
    #[error("content secret is not a valid secp256k1 secret key")]
    InvalidContentSecret,
    /// An agent id string does not have the 43 characters of an unpadded base64url 32-byte key.
    #[error("agent id must be 43 characters of unpadded base64url, got {got} characters")]
    AgentIdLength {
        /// Number of characters received.
        got: usize,
    },
    /// An agent id string is not canonical unpadded base64url.
    #[error("agent id is not valid unpadded base64url")]
    AgentIdEncoding,
    /// The 32 bytes are not a usable Ed25519 public key (not a curve point, or a small-order
    /// point).
    #[error("not a valid Ed25519 public key")]
    InvalidAgentKey,
    /// A node id string is not a GUID (`8-4-4-4-12` hex digits), optionally prefixed by `name@`.
    #[error("node id is not a GUID of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx")]
    InvalidNodeId,
    /// The X.509 certificate could not be built.
    #[error("cannot build the self-signed certificate: {0}")]
    Certificate(String),
}

/// The public agent id of a node: its Ed25519 public key, printed as base64url without padding
/// (43 characters). Always holds a valid, non-small-order Ed25519 point.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentId {
    key: [u8; 32],
    noise: [u8; 32],
}

impl AgentId {
    /// Builds an agent id from raw Ed25519 public key bytes, checking that they are a valid
    /// point of large order.
    pub fn from_bytes(key: &[u8; 32]) -> Result<AgentId, IdentityError> {
        let noise = agent_key_to_noise_public(key)?;
        Ok(AgentId { key: *key, noise })
    }

    /// The raw 32-byte Ed25519 public key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.key
    }

    /// The peer's Noise static public key (X25519 form of the agent key).
    pub fn noise_public(&self) -> [u8; 32] {
        self.noise
    }

    /// The chat node id derived from this agent key (see [`NodeId::from_agent_key`]).
    pub fn node_id(&self) -> NodeId {
        NodeId::from_agent_key(&self.key)
    }

    /// Verifies an Ed25519 signature by this agent over `message` (strict verification).
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        match VerifyingKey::from_bytes(&self.key) {
            Ok(vk) => vk
                .verify_strict(message, &ed25519_dalek::Signature::from_bytes(signature))
                .is_ok(),
            Err(_) => false,
        }
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.key))
    }
}

impl fmt::Debug for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgentId({self})")
    }
}

impl FromStr for AgentId {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<AgentId, IdentityError> {
        if s.len() != 43 {
            return Err(IdentityError::AgentIdLength { got: s.len() });
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| IdentityError::AgentIdEncoding)?;
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| IdentityError::AgentIdEncoding)?;
        AgentId::from_bytes(&key)
    }
}

/// Converts a peer's Ed25519 agent public key to its X25519 Noise static public key
/// (the birational map to the Montgomery form). Rejects invalid and small-order keys.
pub fn agent_key_to_noise_public(agent_key: &[u8; 32]) -> Result<[u8; 32], IdentityError> {
    let vk = VerifyingKey::from_bytes(agent_key).map_err(|_| IdentityError::InvalidAgentKey)?;
    if vk.is_weak() {
        return Err(IdentityError::InvalidAgentKey);
    }
    Ok(vk.to_montgomery().to_bytes())
}

/// The chat node id (a GUID), derived from the agent key.
///
/// `from_agent_key` takes the first 16 bytes of `sha256(b"kith node id v1" || agent public key)`
/// and sets the UUID version to 8 and the RFC 4122 variant bits; it prints as lowercase
/// `8-4-4-4-12` hex. Parsing accepts any GUID (either case), bare or as `name@GUID`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId([u8; 16]);

/// Domain-separation prefix hashed before the agent key to derive a [`NodeId`].
pub const NODE_ID_DOMAIN: &[u8] = b"kith node id v1";

impl NodeId {
    /// Derives the node id of an agent public key. Anyone can recompute it to check a claimed
    /// id.
    pub fn from_agent_key(agent_key: &[u8; 32]) -> NodeId {
        let mut h = Sha256::new();
        h.update(NODE_ID_DOMAIN);
        h.update(agent_key);
        let digest = h.finalize();
        let mut b = [0u8; 16];
        b.copy_from_slice(&digest[..16]);
        b[6] = (b[6] & 0x0f) | 0x80; // version 8
        b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
        NodeId(b)
    }

    /// Builds a node id from its 16 raw bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> NodeId {
        NodeId(bytes)
    }

    /// The 16 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// True when this id is the one derived from `agent_key`.
    pub fn is_derived_from(&self, agent_key: &[u8; 32]) -> bool {
        NodeId::from_agent_key(agent_key) == *self
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

impl FromStr for NodeId {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<NodeId, IdentityError> {
        let guid = match s.rsplit_once('@') {
            Some((_, guid)) => guid,
            None => s,
        };
        let raw = guid.as_bytes();
        if raw.len() != 36 {
            return Err(IdentityError::InvalidNodeId);
        }
        let mut out = [0u8; 16];
        let mut nibbles = 0usize;
        for (i, &c) in raw.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                if c != b'-' {
                    return Err(IdentityError::InvalidNodeId);
                }
                continue;
            }
            let v = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(IdentityError::InvalidNodeId),
            };
            let idx = nibbles / 2;
            if let Some(slot) = out.get_mut(idx) {
                *slot = (*slot << 4) | v;
            }
            nibbles += 1;
        }
        Ok(NodeId(out))
    }
}

/// A secp256k1 secret key that signs and seals Datt content (see [`crate::content`]).
///
/// `Debug` prints only the public key.
#[derive(Clone)]
pub struct ContentKey {
    secret: secp256k1::SecretKey,
    public: secp256k1::PublicKey,
}

impl ContentKey {
    /// Generates a fresh key from `rng`.
    pub fn generate<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> ContentKey {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(bytes.as_mut());
        loop {
            if let Ok(key) = ContentKey::from_secret(&bytes) {
                return key;
            }
            // Out of range (probability ~2^-128, or a broken all-zero generator): rehash.
            let next: [u8; 32] = Sha256::digest(bytes.as_ref()).into();
            *bytes = next;
        }
    }

    /// Builds a key from its 32-byte big-endian secret scalar (must be in `1..n`).
    pub fn from_secret(secret: &[u8; 32]) -> Result<ContentKey, IdentityError> {
        let secret = secp256k1::SecretKey::from_byte_array(secret)
            .map_err(|_| IdentityError::InvalidContentSecret)?;
        let secp = secp256k1::Secp256k1::signing_only();
        let public = secp256k1::PublicKey::from_secret_key(&secp, &secret);
        Ok(ContentKey { secret, public })
    }

    /// The 32-byte secret scalar (big-endian), for the caller's key file.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.secret.secret_bytes()
    }

    /// The compressed (33-byte) public key.
    pub fn public_key(&self) -> [u8; 33] {
        self.public.serialize()
    }

    pub(crate) fn secret(&self) -> &secp256k1::SecretKey {
        &self.secret
    }
}

impl fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContentKey")
            .field("public", &Hex(&self.public.serialize()))
            .field("secret", &"<redacted>")
            .finish()
    }
}

struct Hex<'a>(&'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A self-signed X.509 certificate on the agent key, DER and PEM encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    /// DER encoding.
    pub der: Vec<u8>,
    /// PEM encoding (`-----BEGIN CERTIFICATE-----`).
    pub pem: String,
}

/// The DNS subject alternative name put in the self-signed certificate.
pub const CERTIFICATE_DNS_NAME: &str = "kith.invalid";

/// A node's identity: an Ed25519 agent key and a secp256k1 content key.
///
/// `Debug` prints only public values.
#[derive(Clone)]
pub struct Identity {
    agent: SigningKey,
    content: ContentKey,
}

impl Identity {
    /// Generates a new identity from `rng`.
    pub fn generate<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> Identity {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        let agent = SigningKey::from_bytes(&seed);
        let content = ContentKey::generate(rng);
        Identity { agent, content }
    }

    /// Rebuilds an identity from the two stored secrets: the 32-byte Ed25519 seed and the
    /// 32-byte secp256k1 secret.
    pub fn from_secrets(
        agent_seed: &[u8; 32],
        content_secret: &[u8; 32],
    ) -> Result<Identity, IdentityError> {
        let content = ContentKey::from_secret(content_secret)?;
        Ok(Identity {
            agent: SigningKey::from_bytes(agent_seed),
            content,
        })
    }

    /// The 32-byte Ed25519 seed (secret), for the caller's key file.
    pub fn agent_seed(&self) -> [u8; 32] {
        self.agent.to_bytes()
    }

    /// The 32-byte secp256k1 secret, for the caller's key file.
    pub fn content_secret(&self) -> [u8; 32] {
        self.content.secret_bytes()
    }

    /// The raw 32-byte Ed25519 agent public key.
    pub fn agent_public(&self) -> [u8; 32] {
        self.agent.verifying_key().to_bytes()
    }

    /// The agent id (base64url of the agent public key).
    pub fn agent_id(&self) -> AgentId {
        // A key derived from a seed is never small-order, so no validation is needed here.
        AgentId {
            key: self.agent_public(),
            noise: self.noise_public(),
        }
    }

    /// The chat node id derived from the agent key.
    pub fn node_id(&self) -> NodeId {
        NodeId::from_agent_key(&self.agent_public())
    }

    /// Signs `message` with the Ed25519 agent key.
    pub fn sign_agent(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer as _;
        self.agent.sign(message).to_bytes()
    }

    /// The X25519 Noise static secret: the first 32 bytes of sha512(agent seed), clamped
    /// (the same scalar Ed25519 signs with).
    pub fn noise_secret(&self) -> [u8; 32] {
        let mut h = Sha512::digest(self.agent.as_bytes());
        let mut k = [0u8; 32];
        k.copy_from_slice(&h[..32]);
        h.zeroize();
        k[0] &= 248;
        k[31] &= 127;
        k[31] |= 64;
        k
    }

    /// The X25519 Noise static public key: X25519(noise_secret, 9), equal to the Montgomery
    /// form of the agent public key.
    pub fn noise_public(&self) -> [u8; 32] {
        let secret = x25519_dalek::StaticSecret::from(self.noise_secret());
        x25519_dalek::PublicKey::from(&secret).to_bytes()
    }

    /// The compressed secp256k1 content public key.
    pub fn content_public(&self) -> [u8; 33] {
        self.content.public_key()
    }

    /// The agent key as PKCS#8 v1 DER (RFC 8410), for TLS stacks that load keys that way.
    /// It holds the secret seed: keep it in memory only (it is zeroized on drop).
    pub fn agent_pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        const PKCS8_PREFIX: [u8; 16] = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        let mut pkcs8 = Zeroizing::new(Vec::with_capacity(48));
        pkcs8.extend_from_slice(&PKCS8_PREFIX);
        pkcs8.extend_from_slice(self.agent.as_bytes());
        pkcs8
    }

    /// The content key, for [`crate::content`].
    pub fn content_key(&self) -> &ContentKey {
        &self.content
    }

    /// A self-signed X.509 certificate on the Ed25519 agent key: subject and issuer
    /// CN = agent id, SAN dNSName `kith.invalid`, rcgen's fixed validity (1975-01-01 to
    /// 4096-01-01) and serial derived from the public key. Deterministic: no clock is read,
    /// and Ed25519 signatures are deterministic.
    pub fn self_signed_certificate(&self) -> Result<Certificate, IdentityError> {
        let pkcs8 = self.agent_pkcs8_der();
        let err = |e: rcgen::Error| IdentityError::Certificate(e.to_string());
        let key_pair = rcgen::KeyPair::try_from(pkcs8.as_slice()).map_err(err)?;
        if key_pair.algorithm() != &rcgen::PKCS_ED25519 {
            return Err(IdentityError::Certificate(
                "key was not read as Ed25519".into(),
            ));
        }
        let mut params =
            rcgen::CertificateParams::new(vec![CERTIFICATE_DNS_NAME.to_string()]).map_err(err)?;
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, self.agent_id().to_string());
        params.distinguished_name = dn;
        let cert = params.self_signed(&key_pair).map_err(err)?;
        Ok(Certificate {
            der: cert.der().to_vec(),
            pem: cert.pem(),
        })
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("agent_id", &self.agent_id())
            .field("content_public", &Hex(&self.content_public()))
            .field("secrets", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn ident(seed: u64) -> Identity {
        Identity::generate(&mut StdRng::seed_from_u64(seed))
    }

    #[test]
    fn secrets_round_trip() {
        let id = ident(1);
        let back = Identity::from_secrets(&id.agent_seed(), &id.content_secret()).unwrap();
        assert_eq!(back.agent_id(), id.agent_id());
        assert_eq!(back.content_public(), id.content_public());
        assert_eq!(back.node_id(), id.node_id());
    }

    #[test]
    fn invalid_content_secret_rejected() {
        assert_eq!(
            Identity::from_secrets(&[1; 32], &[0; 32]).unwrap_err(),
            IdentityError::InvalidContentSecret
        );
        assert_eq!(
            Identity::from_secrets(&[1; 32], &[0xff; 32]).unwrap_err(),
            IdentityError::InvalidContentSecret
        );
    }

    #[test]
    fn agent_id_format_and_parse() {
        let id = ident(2);
        let s = id.agent_id().to_string();
        assert_eq!(s.len(), 43);
        assert!(s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        let parsed: AgentId = s.parse().unwrap();
        assert_eq!(parsed, id.agent_id());
        assert_eq!(parsed.as_bytes(), &id.agent_public());
        assert_eq!(parsed.noise_public(), id.noise_public());
        assert_eq!(parsed.node_id(), id.node_id());
    }

    #[test]
    fn agent_id_rejects_bad_input() {
        assert_eq!(
            "abc".parse::<AgentId>().unwrap_err(),
            IdentityError::AgentIdLength { got: 3 }
        );
        let good = ident(3).agent_id().to_string();
        let padded = format!("{good}=");
        assert!(padded.parse::<AgentId>().is_err());
        let mut bad = good.clone().into_bytes();
        bad[0] = b'+';
        assert_eq!(
            String::from_utf8(bad)
                .unwrap()
                .parse::<AgentId>()
                .unwrap_err(),
            IdentityError::AgentIdEncoding
        );
        // Non-canonical: last char carries non-zero trailing bits.
        let mut nc = good.into_bytes();
        let last = nc[42];
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let idx = alphabet.iter().position(|&c| c == last).unwrap();
        nc[42] = alphabet[(idx & !3) | ((idx + 1) & 3)];
        assert!(String::from_utf8(nc).unwrap().parse::<AgentId>().is_err());
        // Identity point (small order) and a non-point.
        let mut identity_point = [0u8; 32];
        identity_point[0] = 1;
        assert_eq!(
            AgentId::from_bytes(&identity_point).unwrap_err(),
            IdentityError::InvalidAgentKey
        );
        let s = URL_SAFE_NO_PAD.encode(identity_point);
        assert_eq!(
            s.parse::<AgentId>().unwrap_err(),
            IdentityError::InvalidAgentKey
        );
        // y = 2 is not on the curve.
        let mut not_point = [0u8; 32];
        not_point[0] = 2;
        assert_eq!(
            agent_key_to_noise_public(&not_point).unwrap_err(),
            IdentityError::InvalidAgentKey
        );
    }

    #[test]
    fn node_id_derivation() {
        let id = ident(4);
        let node = id.node_id();
        let s = node.to_string();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "8", "version nibble");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"), "variant");
        assert_eq!(s, s.to_lowercase());
        let mut h = Sha256::new();
        h.update(b"kith node id v1");
        h.update(id.agent_public());
        let d = h.finalize();
        assert_eq!(node.as_bytes()[..6], d[..6]);
        assert_eq!(node.as_bytes()[9..], d[9..16]);
        assert_eq!(s.parse::<NodeId>().unwrap(), node);
        assert_eq!(format!("alice@{s}").parse::<NodeId>().unwrap(), node);
        assert_eq!(format!("a@b@{s}").parse::<NodeId>().unwrap(), node);
        assert_eq!(s.to_uppercase().parse::<NodeId>().unwrap(), node);
        assert!(node.is_derived_from(&id.agent_public()));
        assert!(!node.is_derived_from(&ident(5).agent_public()));
        assert_ne!(node, ident(5).node_id());
    }

    #[test]
    fn node_id_known_value() {
        let s = "123e4567-e89b-12d3-a456-426614174000";
        let n: NodeId = s.parse().unwrap();
        assert_eq!(n.to_string(), s);
        assert_eq!(n.as_bytes()[0], 0x12);
        assert_eq!(n.as_bytes()[15], 0x00);
        for bad in [
            "",
            "123e4567e89b12d3a456426614174000",
            "123e4567-e89b-12d3-a456-42661417400",
            "123e4567-e89b-12d3-a456-4266141740000",
            "123e4567-e89b-12d3-a456_426614174000",
            "123e4567-e89b-12d3-a456-42661417400g",
            "x@",
            "123e4567-e89b-12d3-a456-4266141740é",
        ] {
            assert_eq!(
                bad.parse::<NodeId>().unwrap_err(),
                IdentityError::InvalidNodeId,
                "{bad}"
            );
        }
    }

    #[test]
    fn noise_key_matches_montgomery_and_basepoint() {
        for seed in 0..8 {
            let id = ident(100 + seed);
            let secret = id.noise_secret();
            assert_eq!(secret[0] & 7, 0);
            assert_eq!(secret[31] & 0xc0, 0x40);
            let vk = VerifyingKey::from_bytes(&id.agent_public()).unwrap();
            assert_eq!(id.noise_public(), vk.to_montgomery().to_bytes());
            assert_eq!(
                id.noise_public(),
                x25519_dalek::x25519(secret, x25519_dalek::X25519_BASEPOINT_BYTES)
            );
            assert_eq!(
                agent_key_to_noise_public(&id.agent_public()).unwrap(),
                id.noise_public()
            );
            // A Diffie-Hellman between two identities agrees.
            let other = ident(200 + seed);
            assert_eq!(
                x25519_dalek::x25519(secret, other.noise_public()),
                x25519_dalek::x25519(other.noise_secret(), id.noise_public())
            );
        }
    }

    #[test]
    fn agent_signature_verifies() {
        let id = ident(6);
        let sig = id.sign_agent(b"hello");
        assert!(id.agent_id().verify(b"hello", &sig));
        assert!(!id.agent_id().verify(b"hellO", &sig));
    }

    #[test]
    fn debug_hides_secrets() {
        let id = ident(7);
        let dbg = format!("{id:?} {:?}", id.content_key());
        for secret in [id.agent_seed(), id.content_secret(), id.noise_secret()] {
            let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
            assert!(!dbg.contains(&hex));
            assert!(!dbg.contains(&format!("{:?}", secret)));
        }
        assert!(dbg.contains(&id.agent_id().to_string()));
        assert!(dbg.contains("redacted"));
    }

    #[test]
    fn certificate_is_on_agent_key() {
        let id = ident(8);
        let cert = id.self_signed_certificate().unwrap();
        // SubjectPublicKeyInfo for Ed25519 (RFC 8410) followed by the agent key.
        let mut spki = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        spki.extend_from_slice(&id.agent_public());
        assert!(cert.der.windows(spki.len()).any(|w| w == spki.as_slice()));
        let cn = id.agent_id().to_string();
        assert!(cert.der.windows(cn.len()).any(|w| w == cn.as_bytes()));
        assert!(cert
            .der
            .windows(CERTIFICATE_DNS_NAME.len())
            .any(|w| w == CERTIFICATE_DNS_NAME.as_bytes()));
        assert!(cert.pem.starts_with("-----BEGIN CERTIFICATE-----"));
        // Deterministic (no clock, deterministic signature).
        assert_eq!(id.self_signed_certificate().unwrap(), cert);

        // Signature: the last 64 bytes of the DER are the Ed25519 signature (BIT STRING
        // contents) over the TBSCertificate, the first element of the outer SEQUENCE.
        fn header_len(der: &[u8]) -> (usize, usize) {
            // (header length, content length) of the DER element at the start of `der`.
            match der[1] {
                l @ 0..=0x7f => (2, l as usize),
                0x81 => (3, der[2] as usize),
                0x82 => (4, ((der[2] as usize) << 8) | der[3] as usize),
                other => panic!("unexpected DER length byte {other:#x}"),
            }
        }
        let der = &cert.der;
        assert_eq!(der[0], 0x30);
        let (outer_hdr, outer_len) = header_len(der);
        assert_eq!(outer_hdr + outer_len, der.len());
        let inner = &der[outer_hdr..];
        assert_eq!(inner[0], 0x30);
        let (tbs_hdr, tbs_len) = header_len(inner);
        let tbs = &inner[..tbs_hdr + tbs_len];
        let sig: [u8; 64] = der[der.len() - 64..].try_into().unwrap();
        assert!(id.agent_id().verify(tbs, &sig));
    }
}
