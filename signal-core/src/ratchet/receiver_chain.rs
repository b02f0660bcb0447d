//! A receiving chain: the peer's ratchet key, the chain key, and the message keys of
//! messages skipped on this chain (at most [`MAX_SKIPPED_KEYS_PER_CHAIN`], oldest
//! evicted first).

use std::collections::VecDeque;

use crate::error::SessionError;
use crate::keys::DhPublicKey;
use crate::limits::{MAX_FORWARD_JUMP, MAX_SKIPPED_KEYS_PER_CHAIN};

use super::{ChainKey, MessageKeySeed};

/// One receiving chain. Skipped keys are kept sorted by counter (they are only ever
/// appended in increasing order), so lookup is a binary search.
#[derive(Clone, Debug)]
pub(crate) struct ReceiverChain {
    pub(crate) ratchet_key: DhPublicKey,
    pub(crate) chain: ChainKey,
    pub(crate) skipped: VecDeque<MessageKeySeed>,
}

/// The result of advancing a chain to a counter, computed without changing the chain.
pub(crate) struct Advance {
    /// Key for the requested counter.
    pub(crate) key: MessageKeySeed,
    /// Chain key after the requested counter.
    pub(crate) next: ChainKey,
    /// Keys for the counters jumped over (only the newest `MAX_SKIPPED_KEYS_PER_CHAIN`).
    pub(crate) skipped: Vec<MessageKeySeed>,
}

impl ReceiverChain {
    pub(crate) fn new(ratchet_key: DhPublicKey, chain: ChainKey) -> Self {
        Self {
            ratchet_key,
            chain,
            skipped: VecDeque::new(),
        }
    }

    /// Position of the stored skipped key for `counter`.
    pub(crate) fn find_skipped(&self, counter: u32) -> Option<usize> {
        self.skipped
            .binary_search_by_key(&counter, MessageKeySeed::counter)
            .ok()
    }

    /// Adds skipped keys (ascending, all above existing ones), evicting the oldest beyond
    /// the limit.
    pub(crate) fn push_skipped(&mut self, keys: Vec<MessageKeySeed>) {
        self.skipped.extend(keys);
        while self.skipped.len() > MAX_SKIPPED_KEYS_PER_CHAIN {
            self.skipped.pop_front();
        }
    }
}

/// Computes the key for `counter` on `chain` (whose next counter must be ≤ `counter`)
/// and the keys skipped on the way, refusing jumps over [`MAX_FORWARD_JUMP`] before
/// deriving anything.
pub(crate) fn advance_to(chain: &ChainKey, counter: u32) -> Result<Advance, SessionError> {
    let (key, next, skipped) = skip_to(chain, counter, true)?;
    match key {
        Some(key) => Ok(Advance { key, next, skipped }),
        None => Err(SessionError::InvalidMessage),
    }
}

/// Derives the keys of counters `chain.index()..end` (to be stored as skipped) and, when
/// `take_end` is set, the key for `end` itself.
pub(crate) fn skip_to(
    chain: &ChainKey,
    end: u32,
    take_end: bool,
) -> Result<(Option<MessageKeySeed>, ChainKey, Vec<MessageKeySeed>), SessionError> {
    let start = chain.index();
    let jump = end.checked_sub(start).ok_or(SessionError::InvalidMessage)?;
    if jump > MAX_FORWARD_JUMP {
        return Err(SessionError::TooFarAhead {
            counter: end,
            jump,
            limit: MAX_FORWARD_JUMP,
        });
    }
    let keep_from = end.saturating_sub(MAX_SKIPPED_KEYS_PER_CHAIN as u32);
    let mut skipped = Vec::with_capacity((jump as usize).min(MAX_SKIPPED_KEYS_PER_CHAIN));
    let mut current = chain.clone();
    while current.index() < end {
        let (seed, next) = current.step();
        if seed.counter() >= keep_from {
            skipped.push(seed);
        }
        current = next;
    }
    if take_end {
        let (seed, next) = current.step();
        Ok((Some(seed), next, skipped))
    } else {
        Ok((None, current, skipped))
    }
}
