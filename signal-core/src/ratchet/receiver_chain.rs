//! A receiving chain: the peer's ratchet key, the chain key, and the message keys of
//! messages skipped on this chain (at most [`MAX_SKIPPED_KEYS_PER_CHAIN`], oldest
//! evicted first).

use std::collections::VecDeque;

use crate::error::SessionError;
use crate::keys::DhPublicKey;
use crate::limits::{MAX_CHAIN_COUNTER, MAX_SKIPPED_KEYS_PER_CHAIN};

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
/// The message keys of the counters jumped over are derived by [`Advance::skipped`]
/// only once the message authenticated, so a forged message costs one HMAC per counter.
pub(crate) struct Advance {
    /// Key for the requested counter.
    pub(crate) key: MessageKeySeed,
    /// Chain key after the requested counter.
    pub(crate) next: ChainKey,
    /// Chain keys at the counters jumped over (only the newest
    /// `MAX_SKIPPED_KEYS_PER_CHAIN`).
    kept: Vec<ChainKey>,
}

impl Advance {
    /// Message keys of the counters jumped over (only the newest
    /// `MAX_SKIPPED_KEYS_PER_CHAIN`), ascending.
    pub(crate) fn skipped(&self) -> Result<Vec<MessageKeySeed>, SessionError> {
        self.kept.iter().map(ChainKey::message_seed).collect()
    }
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

/// How many counters a message at `counter` jumps over on `chain` (whose next counter
/// must be ≤ `counter`); refuses the never-used counter `u32::MAX`.
pub(crate) fn jump_to(chain: &ChainKey, counter: u32) -> Result<u32, SessionError> {
    if counter > MAX_CHAIN_COUNTER {
        return Err(SessionError::InvalidMessage);
    }
    counter
        .checked_sub(chain.index())
        .ok_or(SessionError::InvalidMessage)
}

/// Computes the key for `counter` on `chain` (whose next counter must be ≤ `counter`)
/// and the chain keys skipped on the way, refusing a jump over `limit` before deriving
/// anything.
pub(crate) fn advance_to(
    chain: &ChainKey,
    counter: u32,
    limit: u32,
) -> Result<Advance, SessionError> {
    let jump = jump_to(chain, counter)?;
    if jump > limit {
        return Err(SessionError::TooFarAhead {
            counter,
            jump,
            limit,
        });
    }
    let (at, kept) = walk(chain, counter)?;
    let (key, next) = at.step()?;
    Ok(Advance { key, next, kept })
}

/// The chain at `end` and the message keys of counters `chain.index()..end` (only the
/// newest `MAX_SKIPPED_KEYS_PER_CHAIN`), to be stored as skipped. The caller has bounded
/// `end − chain.index()`.
pub(crate) fn skip_to(
    chain: &ChainKey,
    end: u32,
) -> Result<(ChainKey, Vec<MessageKeySeed>), SessionError> {
    let (at, kept) = walk(chain, end)?;
    let seeds = kept
        .iter()
        .map(ChainKey::message_seed)
        .collect::<Result<_, _>>()?;
    Ok((at, seeds))
}

/// Steps `chain` to index `end` deriving chain keys only; returns the chain at `end`
/// and the chain keys at the newest `MAX_SKIPPED_KEYS_PER_CHAIN` indices below it.
fn walk(chain: &ChainKey, end: u32) -> Result<(ChainKey, Vec<ChainKey>), SessionError> {
    let start = chain.index();
    let jump = end.saturating_sub(start) as usize;
    let keep_from = end.saturating_sub(MAX_SKIPPED_KEYS_PER_CHAIN as u32);
    let mut kept = Vec::with_capacity(jump.min(MAX_SKIPPED_KEYS_PER_CHAIN));
    let mut current = chain.clone();
    while current.index() < end {
        let next = current.next()?;
        if current.index() >= keep_from {
            kept.push(current);
        }
        current = next;
    }
    Ok((current, kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_u32_max_is_refused_before_any_derivation() {
        let chain = ChainKey::new([3; 32], MAX_CHAIN_COUNTER);
        assert!(matches!(
            advance_to(&chain, u32::MAX, u32::MAX),
            Err(SessionError::InvalidMessage)
        ));
        let adv = advance_to(&chain, MAX_CHAIN_COUNTER, 0).unwrap();
        assert_eq!(adv.next.index(), u32::MAX);
        assert!(advance_to(&adv.next, u32::MAX, u32::MAX).is_err());
    }

    #[test]
    fn a_jump_over_the_limit_is_refused_and_skipped_keys_match_stepping() {
        let chain = ChainKey::new([4; 32], 10);
        assert!(matches!(
            advance_to(&chain, 16, 5),
            Err(SessionError::TooFarAhead {
                counter: 16,
                jump: 6,
                limit: 5
            })
        ));
        let adv = advance_to(&chain, 15, 5).unwrap();
        let mut stepped = chain.clone();
        for (i, skipped) in adv.skipped().unwrap().iter().enumerate() {
            let (seed, next) = stepped.step().unwrap();
            assert_eq!(skipped.counter(), 10 + i as u32);
            assert_eq!(skipped.seed_bytes(), seed.seed_bytes());
            stepped = next;
        }
        let (seed, next) = stepped.step().unwrap();
        assert_eq!(adv.key.seed_bytes(), seed.seed_bytes());
        assert_eq!(adv.next.key_bytes(), next.key_bytes());
    }
}
