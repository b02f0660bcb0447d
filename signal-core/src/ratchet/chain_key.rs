//! Symmetric-key ratchet: `MK = HMAC-SHA256(CK, 0x01)`, `CK' = HMAC-SHA256(CK, 0x02)`.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::MessageKeySeed;
use crate::error::SessionError;
use crate::limits::MAX_CHAIN_COUNTER;

const MESSAGE_KEY_SEED: u8 = 0x01;
const CHAIN_KEY_SEED: u8 = 0x02;

/// A chain key and its index (the counter of the next message on this chain, at most
/// `u32::MAX`, which marks an exhausted chain). Secret.
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

    /// The index after this one. A chain whose next counter is `u32::MAX` is exhausted
    /// (its last message used [`MAX_CHAIN_COUNTER`]): stepping it is refused rather than
    /// wrapping to 0.
    fn next_index(&self) -> Result<u32, SessionError> {
        self.index
            .checked_add(1)
            .filter(|_| self.index <= MAX_CHAIN_COUNTER)
            .ok_or(SessionError::ChainExhausted { index: self.index })
    }

    /// The message key seed for `self.index` and the chain key after it, computed from
    /// one keyed HMAC state. Fails with [`SessionError::ChainExhausted`] on an exhausted
    /// chain.
    pub(crate) fn step(&self) -> Result<(MessageKeySeed, ChainKey), SessionError> {
        let index = self.next_index()?;
        let keyed = hmac_sha256(&self.key);
        let mut m = keyed.clone();
        m.update(&[MESSAGE_KEY_SEED]);
        let seed: [u8; 32] = m.finalize().into_bytes().into();
        let mut c = keyed;
        c.update(&[CHAIN_KEY_SEED]);
        let next: [u8; 32] = c.finalize().into_bytes().into();
        Ok((
            MessageKeySeed::new(seed, self.index),
            ChainKey { key: next, index },
        ))
    }

    /// The chain key after this one, without the message key (a skip costs one HMAC).
    pub(crate) fn next(&self) -> Result<ChainKey, SessionError> {
        let index = self.next_index()?;
        let mut c = hmac_sha256(&self.key);
        c.update(&[CHAIN_KEY_SEED]);
        Ok(ChainKey {
            key: c.finalize().into_bytes().into(),
            index,
        })
    }

    /// The message key seed for `self.index` alone (for a skipped counter whose message
    /// key is only needed once the message that skipped it authenticated).
    pub(crate) fn message_seed(&self) -> Result<MessageKeySeed, SessionError> {
        self.next_index()?;
        let mut m = hmac_sha256(&self.key);
        m.update(&[MESSAGE_KEY_SEED]);
        Ok(MessageKeySeed::new(
            m.finalize().into_bytes().into(),
            self.index,
        ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stepping_stops_at_the_last_counter_instead_of_wrapping() {
        let last = ChainKey::new([9; 32], MAX_CHAIN_COUNTER);
        let (seed, exhausted) = last.step().unwrap();
        assert_eq!(seed.counter(), MAX_CHAIN_COUNTER);
        assert_eq!(exhausted.index(), u32::MAX);
        assert_eq!(last.next().unwrap().key_bytes(), exhausted.key_bytes());
        assert_eq!(last.message_seed().unwrap().seed_bytes(), seed.seed_bytes());
        for result in [
            exhausted.step().map(|_| ()),
            exhausted.next().map(|_| ()),
            exhausted.message_seed().map(|_| ()),
        ] {
            assert!(matches!(
                result,
                Err(SessionError::ChainExhausted { index: u32::MAX })
            ));
        }
    }
}
