//! The `offer` envelope: a node offering one of its files to a linked peer for replication
//! (`kith file share`). Its payload is exactly [`OFFER_LEN`] bytes: the file's 32-byte address
//! (as the store and [`ContentHash`] have it), then its size in content bytes as a big-endian
//! u64. Anything else is not an offer.

use super::ContentHash;
use bytes::Bytes;

/// The envelope command of an offer.
pub const OFFER_COMMAND: &str = "offer";

/// Bytes of an offer's payload: the address, then the size.
pub const OFFER_LEN: usize = 40;

/// A file offered by a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// The file's address.
    pub hash: ContentHash,
    /// Its size in content bytes, as the peer states it (a claim the receiver enforces as a
    /// budget, not a fact).
    pub size: u64,
}

impl Offer {
    /// The payload of an `offer` envelope.
    pub fn encode(&self) -> Bytes {
        let mut data = Vec::with_capacity(OFFER_LEN);
        data.extend_from_slice(&self.hash.0);
        data.extend_from_slice(&self.size.to_be_bytes());
        Bytes::from(data)
    }

    /// Reads a payload; `None` unless it is exactly [`OFFER_LEN`] bytes.
    pub fn decode(data: &[u8]) -> Option<Offer> {
        let data: &[u8; OFFER_LEN] = data.try_into().ok()?;
        let (hash, size) = data.split_at(32);
        Some(Offer {
            hash: ContentHash(hash.try_into().ok()?),
            size: u64::from_be_bytes(size.try_into().ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_offer_round_trips_and_only_forty_bytes_are_one() {
        let offer = Offer {
            hash: ContentHash([7; 32]),
            size: 1 << 40,
        };
        let data = offer.encode();
        assert_eq!(data.len(), OFFER_LEN);
        assert_eq!(Offer::decode(&data), Some(offer));
        assert_eq!(Offer::decode(&data[..39]), None);
        assert_eq!(Offer::decode(&[data.as_ref(), &[0]].concat()), None);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_offer_decoder(data in proptest::collection::vec(any::<u8>(), 0..100)) {
            let decoded = Offer::decode(&data);
            prop_assert_eq!(decoded.is_some(), data.len() == OFFER_LEN);
            if let Some(offer) = decoded {
                prop_assert_eq!(offer.encode(), bytes::Bytes::from(data.clone()));
            }
        }
    }
}
