//! snow glue: protocol names, and a resolver whose RNG is seeded by the caller.

use std::cell::Cell;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use snow::params::{CipherChoice, DHChoice, HashChoice, NoiseParams};
use snow::resolvers::{CryptoResolver, DefaultResolver, FallbackResolver, RingResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use snow::{Builder, HandshakeState};
use zeroize::Zeroizing;

use super::HandshakeError;

/// First contact: `Noise_IK_25519_ChaChaPoly_BLAKE2b`.
pub const IK_PARAMS: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2b";
/// Known-peer declaration: `Noise_N_25519_ChaChaPoly_BLAKE2b`.
pub const N_PARAMS: &str = "Noise_N_25519_ChaChaPoly_BLAKE2b";
/// Known peers: `Noise_KK_25519_ChaChaPoly_BLAKE2b`.
pub const KK_PARAMS: &str = "Noise_KK_25519_ChaChaPoly_BLAKE2b";
/// Anonymous queries: `Noise_NK_25519_ChaChaPoly_BLAKE2b`.
pub const NK_PARAMS: &str = "Noise_NK_25519_ChaChaPoly_BLAKE2b";

/// ring's ChaCha20-Poly1305 first, snow's pure-Rust X25519 and BLAKE2b as the fallback, and an
/// RNG expanded from a seed the caller drew (handed out once: a second request gets none, so
/// a seed can never make two ephemeral keys).
struct SeededResolver {
    seed: Cell<Option<Zeroizing<[u8; 32]>>>,
    inner: FallbackResolver,
}

struct SeededRandom(StdRng);

impl Random for SeededRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoResolver for SeededResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        let seed = self.seed.take()?;
        Some(Box::new(SeededRandom(StdRng::from_seed(*seed))))
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        self.inner.resolve_dh(choice)
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        self.inner.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        self.inner.resolve_cipher(choice)
    }
}

/// Which side of a Noise pattern to build.
pub(crate) enum Side {
    Initiator,
    Responder,
}

/// Builds a handshake state for `params` with an empty prologue. `rng` supplies the seed of
/// this state's ephemeral key.
pub(crate) fn build(
    params: &str,
    side: Side,
    local_secret: Option<&[u8; 32]>,
    remote_public: Option<&[u8; 32]>,
    rng: &mut StdRng,
) -> Result<HandshakeState, HandshakeError> {
    let params: NoiseParams = params.parse()?;
    let mut seed = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(seed.as_mut());
    let resolver = SeededResolver {
        seed: Cell::new(Some(seed)),
        inner: FallbackResolver::new(Box::new(RingResolver), Box::new(DefaultResolver)),
    };
    let mut builder = Builder::with_resolver(params, Box::new(resolver));
    if let Some(secret) = local_secret {
        builder = builder.local_private_key(secret)?;
    }
    if let Some(public) = remote_public {
        builder = builder.remote_public_key(public)?;
    }
    Ok(match side {
        Side::Initiator => builder.build_initiator()?,
        Side::Responder => builder.build_responder()?,
    })
}
