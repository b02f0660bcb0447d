//! Sender-chain states and the record of all chains of one (group, sender device).
//!
//! A chain state is the sender's chain id, its HMAC-SHA256 chain key at the next
//! iteration, the chain's Ed25519 verifying key (decompressed once, when the state is
//! created or decoded, never per message), the signing key on the sender's own chain
//! only, and the message keys of skipped iterations (at most
//! [`MAX_SKIPPED_KEYS_PER_CHAIN`], oldest evicted first).

use std::collections::VecDeque;

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::error::{DecodeError, StoreError};
use crate::limits::{MAX_SENDER_KEY_RECORD_LEN, MAX_SENDER_KEY_STATES, MAX_SKIPPED_KEYS_PER_CHAIN};
use crate::ratchet::{ChainKey, MessageKeySeed};
use crate::wire::{Reader, Writer, kind};

/// Length of an encoded skipped key: iteration (4) + seed (32).
const SKIPPED_KEY_LEN: usize = 36;
/// Smallest encoded chain state (no secret, no skipped keys).
const MIN_STATE_LEN: usize = 4 + 4 + 32 + 32 + 1 + 4;

/// One sender chain. Secret.
#[derive(Clone)]
pub(crate) struct SenderChainState {
    pub(crate) chain_id: u32,
    pub(crate) chain: ChainKey,
    pub(crate) signing_public: VerifyingKey,
    pub(crate) signing_secret: Option<SigningKey>,
    /// Ascending by iteration; all below `chain.index()`.
    pub(crate) skipped: VecDeque<MessageKeySeed>,
}

impl SenderChainState {
    /// Position of the stored skipped key for `iteration`.
    pub(crate) fn find_skipped(&self, iteration: u32) -> Option<usize> {
        self.skipped
            .binary_search_by_key(&iteration, MessageKeySeed::counter)
            .ok()
    }

    fn write(&self, w: &mut Writer) {
        w.u32(self.chain_id);
        w.u32(self.chain.index());
        w.bytes(self.chain.key_bytes());
        w.bytes(self.signing_public.as_bytes());
        w.bool(self.signing_secret.is_some());
        if let Some(secret) = &self.signing_secret {
            w.bytes(secret.as_bytes());
        }
        w.count(self.skipped.len());
        for k in &self.skipped {
            w.u32(k.counter());
            w.bytes(k.seed_bytes());
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let chain_id = r.u32()?;
        let index = r.u32()?;
        let chain = ChainKey::new(r.array()?, index);
        let signing_public = read_signing_public(r)?;
        let signing_secret = if r.bool("signing secret flag")? {
            let secret = SigningKey::from_bytes(&zeroize::Zeroizing::new(r.array::<32>()?));
            if secret.verifying_key() != signing_public {
                return Err(DecodeError::InvalidKey {
                    kind: "sender-key signing",
                });
            }
            Some(secret)
        } else {
            None
        };
        let n = r.count(MAX_SKIPPED_KEYS_PER_CHAIN, SKIPPED_KEY_LEN)?;
        let mut skipped = VecDeque::with_capacity(n);
        let mut previous: Option<u32> = None;
        for _ in 0..n {
            let iteration = r.u32()?;
            if previous.is_some_and(|p| p >= iteration) || iteration >= index {
                return Err(DecodeError::NonCanonical {
                    field: "skipped sender-key iterations",
                });
            }
            previous = Some(iteration);
            skipped.push_back(MessageKeySeed::new(r.array()?, iteration));
        }
        Ok(Self {
            chain_id,
            chain,
            signing_public,
            signing_secret,
            skipped,
        })
    }
}

/// Reads a 32-byte Ed25519 verifying key, refusing points that do not decompress,
/// small-order points and non-canonical encodings.
pub(crate) fn read_signing_public(r: &mut Reader<'_>) -> Result<VerifyingKey, DecodeError> {
    crate::keys::ed25519_public(&r.array()?, "sender-key signing")
}

/// The chain states of one sender device in one group, newest first, at most
/// [`MAX_SENDER_KEY_STATES`]. Secret. Its `Debug` prints only chain ids and counters.
///
/// On the sender's own device the newest state holds the signing key and is the chain
/// it sends on. On a receiving device older states stay (up to the limit) so that
/// messages sent before a rotation still decrypt when they arrive late.
#[derive(Clone, Default)]
pub struct SenderKeyRecord {
    pub(crate) states: VecDeque<SenderChainState>,
}

/// The change one group encryption or decryption makes to a [`SenderKeyRecord`],
/// applied by [`crate::store::SenderKeyStore::update_sender_key`]. Secret (it may hold
/// the next chain key and skipped message keys).
pub struct SenderKeyUpdate {
    chain_id: u32,
    change: Change,
}

enum Change {
    /// A stored skipped key was used and must be deleted.
    UsedSkipped { iteration: u32 },
    /// The chain advanced from `from` to `next`, skipping `skipped`.
    Advanced {
        from: u32,
        next: ChainKey,
        skipped: Vec<MessageKeySeed>,
    },
}

impl SenderKeyUpdate {
    pub(crate) fn used_skipped(chain_id: u32, iteration: u32) -> Self {
        Self {
            chain_id,
            change: Change::UsedSkipped { iteration },
        }
    }

    pub(crate) fn advanced(
        chain_id: u32,
        from: u32,
        next: ChainKey,
        skipped: Vec<MessageKeySeed>,
    ) -> Self {
        Self {
            chain_id,
            change: Change::Advanced {
                from,
                next,
                skipped,
            },
        }
    }

    /// The chain this update changes.
    pub fn chain_id(&self) -> u32 {
        self.chain_id
    }
}

impl core::fmt::Debug for SenderKeyUpdate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.change {
            Change::UsedSkipped { iteration } => write!(
                f,
                "SenderKeyUpdate {{ chain_id: {}, used_skipped: {iteration} }}",
                self.chain_id
            ),
            Change::Advanced {
                from,
                next,
                skipped,
            } => write!(
                f,
                "SenderKeyUpdate {{ chain_id: {}, from: {from}, to: {}, skipped: {}, .. }}",
                self.chain_id,
                next.index(),
                skipped.len()
            ),
        }
    }
}

impl SenderKeyRecord {
    /// Whether the record holds no chain.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// Whether this is this device's own sending record (it holds a signing key).
    pub fn is_own(&self) -> bool {
        self.states.iter().any(|s| s.signing_secret.is_some())
    }

    /// Chain ids held, newest first.
    pub fn chain_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.states.iter().map(|s| s.chain_id)
    }

    /// The state of chain `chain_id`.
    pub(crate) fn state(&self, chain_id: u32) -> Option<&SenderChainState> {
        self.states.iter().find(|s| s.chain_id == chain_id)
    }

    /// The newest state (the one a sender sends on).
    pub(crate) fn newest(&self) -> Option<&SenderChainState> {
        self.states.front()
    }

    /// Adds `state` as the newest, evicting the oldest beyond [`MAX_SENDER_KEY_STATES`].
    pub(crate) fn push_newest(&mut self, state: SenderChainState) {
        self.states.push_front(state);
        self.states.truncate(MAX_SENDER_KEY_STATES);
    }

    /// Applies `update`, checking first that it was computed from the current state;
    /// on [`StoreError::Conflict`] nothing changed.
    pub fn apply(&mut self, update: &SenderKeyUpdate) -> Result<(), StoreError> {
        let state = self
            .states
            .iter_mut()
            .find(|s| s.chain_id == update.chain_id)
            .ok_or(StoreError::Conflict {
                what: "sender-key chain evicted since the update was computed",
            })?;
        match &update.change {
            Change::UsedSkipped { iteration } => {
                let pos = state.find_skipped(*iteration).ok_or(StoreError::Conflict {
                    what: "skipped sender key already used",
                })?;
                state.skipped.remove(pos);
            }
            Change::Advanced {
                from,
                next,
                skipped,
            } => {
                if state.chain.index() != *from {
                    return Err(StoreError::Conflict {
                        what: "sender-key chain advanced since the update was computed",
                    });
                }
                state.skipped.extend(skipped.iter().cloned());
                while state.skipped.len() > MAX_SKIPPED_KEYS_PER_CHAIN {
                    state.skipped.pop_front();
                }
                state.chain = next.clone();
            }
        }
        Ok(())
    }

    /// Encodes the record (`docs/protocol.md` §Groups, sender-key record). The bytes
    /// are secret.
    pub fn encode(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut w = Writer::new(kind::SENDER_KEY_RECORD, 128);
        w.count(self.states.len());
        for s in &self.states {
            s.write(&mut w);
        }
        zeroize::Zeroizing::new(w.into_vec())
    }

    /// Decodes a record, bounding every count and refusing duplicate chain ids,
    /// unordered skipped keys and invalid signing keys.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_SENDER_KEY_RECORD_LEN {
            return Err(DecodeError::TooLong {
                length: bytes.len(),
                limit: MAX_SENDER_KEY_RECORD_LEN,
            });
        }
        let mut r = Reader::new(bytes);
        r.header(kind::SENDER_KEY_RECORD)?;
        let n = r.count(MAX_SENDER_KEY_STATES, MIN_STATE_LEN)?;
        let mut states: VecDeque<SenderChainState> = VecDeque::with_capacity(n);
        for _ in 0..n {
            let state = SenderChainState::read(&mut r)?;
            if states.iter().any(|s| s.chain_id == state.chain_id) {
                return Err(DecodeError::NonCanonical {
                    field: "duplicate sender-key chain id",
                });
            }
            states.push_back(state);
        }
        r.finish()?;
        Ok(Self { states })
    }
}

impl core::fmt::Debug for SenderKeyRecord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut list = f.debug_list();
        for s in &self.states {
            list.entry(&format_args!(
                "SenderChain {{ chain_id: {}, iteration: {}, skipped: {}, own: {}, .. }}",
                s.chain_id,
                s.chain.index(),
                s.skipped.len(),
                s.signing_secret.is_some()
            ));
        }
        list.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_record_decodes_and_one_byte_more_is_refused() {
        let mut record = SenderKeyRecord::default();
        for chain_id in 0..MAX_SENDER_KEY_STATES as u32 {
            let signing = SigningKey::from_bytes(&[chain_id as u8 + 1; 32]);
            let index = MAX_SKIPPED_KEYS_PER_CHAIN as u32;
            record.push_newest(SenderChainState {
                chain_id,
                chain: ChainKey::new([7; 32], index),
                signing_public: signing.verifying_key(),
                signing_secret: Some(signing),
                skipped: (0..index)
                    .map(|i| MessageKeySeed::new([8; 32], i))
                    .collect(),
            });
        }
        let bytes = record.encode();
        assert_eq!(bytes.len(), MAX_SENDER_KEY_RECORD_LEN);
        SenderKeyRecord::decode(&bytes).unwrap();
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(matches!(
            SenderKeyRecord::decode(&longer),
            Err(DecodeError::TooLong {
                limit: MAX_SENDER_KEY_RECORD_LEN,
                ..
            })
        ));
    }
}
