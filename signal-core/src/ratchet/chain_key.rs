//! Symmetric-key ratchet: `MK = HMAC-SHA256(CK, 0x01)`, `CK' = HMAC-SHA256(CK, 0x02)`.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::MessageKeySeed;

const MESSAGE_KEY_SEED: u8 = 0x01;
const CHAIN_KEY_SEED: u8 = 0x02;

/// A chain key and its index (the counter of the next message on this chain). Secret.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct ChainKey {
    key: [u8; 32],
    index: u32,
}

impl ChainKey {
    pub(crate) fn new(key: [u8; 32], index: u32) -> Self {
        Self { key, index }
    }

    pub(crate) fn key_bytes(&self) -> &[u8; 32] {
        &self.key
    }

    /// The counter of the next message on this chain.
    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    /// The message key seed for `self.index` and the chain key after it, computed from
    /// one keyed HMAC state.
    pub(crate) fn step(&self) -> (MessageKeySeed, ChainKey) {
        let keyed = hmac_sha256(&self.key);
        let mut m = keyed.clone();
        m.update(&[MESSAGE_KEY_SEED]);
        let seed: [u8; 32] = m.finalize().into_bytes().into();
        let mut c = keyed;
        c.update(&[CHAIN_KEY_SEED]);
        let next: [u8; 32] = c.finalize().into_bytes().into();
        (
            MessageKeySeed::new(seed, self.index),
            ChainKey {
                key: next,
                index: self.index.wrapping_add(1),
            },
        )
    }
}

/// HMAC-SHA256 keyed with a 32-byte key. HMAC zero-pads keys shorter than the 64-byte
/// block, so padding here gives the identical MAC through the infallible constructor.
pub(crate) fn hmac_sha256(key: &[u8; 32]) -> Hmac<Sha256> {
    let mut block = zeroize::Zeroizing::new([0u8; 64]);
    block[..32].copy_from_slice(key);
    <Hmac<Sha256> as KeyInit>::new(&(*block).into())
}

impl core::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "ChainKey {{ index: {}, .. }}", self.index)
    }
}
