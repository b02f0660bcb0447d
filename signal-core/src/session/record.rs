//! A session record: the current session with one peer device plus up to
//! [`MAX_ARCHIVED_SESSIONS`] earlier ones, so that simultaneous initiation converges and
//! messages in flight from a replaced session still decrypt.

use std::collections::VecDeque;

use zeroize::Zeroizing;

use crate::error::{CryptoError, DecodeError, SessionError};
use crate::keys::DhPublicKey;
use crate::limits::{
    MAX_ARCHIVED_DERIVATIONS, MAX_ARCHIVED_RATCHET_TRIALS, MAX_ARCHIVED_SESSIONS,
    MAX_DECRYPT_DERIVATIONS, MAX_SESSION_RECORD_LEN,
};
use crate::wire::{Reader, SignalMessage, Writer, kind};

use super::SessionState;
use super::state::SKIPPED_KEY_LEN;

/// All sessions with one peer device. Secret (it holds session states).
#[derive(Clone, Default)]
pub struct SessionRecord {
    pub(crate) current: Option<SessionState>,
    /// Newest first.
    pub(crate) archived: VecDeque<SessionState>,
    generation: u64,
}

impl SessionRecord {
    /// The session used for sending.
    pub fn current(&self) -> Option<&SessionState> {
        self.current.as_ref()
    }

    /// Earlier sessions, newest first.
    pub fn archived(&self) -> impl Iterator<Item = &SessionState> {
        self.archived.iter()
    }

    /// Number of committed changes to this record. Stores use it for optimistic
    /// concurrency: a [`crate::store::SessionCommit`] carries the generation it was
    /// computed from and is refused if the stored record has moved on.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Counts one more committed change and trims the record to
    /// [`MAX_SESSION_RECORD_LEN`]; every commit path calls it last.
    pub(crate) fn bump_generation(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        self.trim_to_bound();
    }

    /// The session `which` names: `None` is the current one, `Some(i)` archived `i`.
    fn session(&self, which: Option<usize>) -> Option<&SessionState> {
        match which {
            None => self.current.as_ref(),
            Some(i) => self.archived.get(i),
        }
    }

    /// The sessions to try for `message`, in order. If any session holds a receiving
    /// chain for the message's ratchet key, only those sessions (ratchet keys are fresh
    /// per session and step, so no other session can decrypt it). Otherwise the current
    /// session and the [`MAX_ARCHIVED_RATCHET_TRIALS`] newest archived ones, each an
    /// X25519 agreement.
    fn candidates(&self, message: &SignalMessage) -> Vec<Option<usize>> {
        let all = self
            .current
            .as_ref()
            .map(|_| None)
            .into_iter()
            .chain((0..self.archived.len()).map(Some));
        let known: Vec<_> = all
            .clone()
            .filter(|w| {
                self.session(*w)
                    .is_some_and(|s| s.has_chain(&message.ratchet_key))
            })
            .collect();
        if !known.is_empty() {
            return known;
        }
        let trials = usize::from(self.current.is_some()) + MAX_ARCHIVED_RATCHET_TRIALS;
        all.take(trials).collect()
    }

    /// Decrypts `message` with the first candidate session that authenticates it
    /// ([`Self::candidates`]), sharing one budget of [`MAX_DECRYPT_DERIVATIONS`]
    /// chain-key derivations across them (an archived session may use at most
    /// [`MAX_ARCHIVED_DERIVATIONS`] of it). That session is updated and made current. If
    /// none decrypts, the most specific error wins (anything other than
    /// [`SessionError::InvalidMessage`]) and the record is unchanged.
    pub(crate) fn decrypt(
        &mut self,
        message: &SignalMessage,
    ) -> Result<Zeroizing<Vec<u8>>, SessionError> {
        let mut remaining = MAX_DECRYPT_DERIVATIONS;
        let mut first_specific: Option<SessionError> = None;
        for which in self.candidates(message) {
            let Some(state) = self.session(which) else {
                continue;
            };
            let cap = if which.is_some() {
                MAX_ARCHIVED_DERIVATIONS
            } else {
                MAX_DECRYPT_DERIVATIONS
            };
            let mut allowance = remaining.min(cap);
            let before = allowance;
            let result = state.decrypt_within(message, None, &mut allowance);
            remaining -= before - allowance;
            match result {
                Ok((plaintext, update)) => {
                    match which {
                        None => self.current.as_mut().map(|s| s.apply(update)),
                        Some(i) => self.archived.get_mut(i).map(|s| s.apply(update)),
                    };
                    if let Some(i) = which {
                        self.promote_archived(i);
                    }
                    return Ok(plaintext);
                }
                Err(SessionError::InvalidMessage) => {}
                Err(
                    e @ (SessionError::Store(_) | SessionError::Crypto(CryptoError::Randomness)),
                ) => {
                    return Err(e);
                }
                Err(other) => {
                    first_specific.get_or_insert(other);
                }
            }
        }
        Err(first_specific.unwrap_or(SessionError::InvalidMessage))
    }

    /// Makes `state` current, archiving the previous current session.
    pub(crate) fn promote_new(&mut self, state: SessionState) {
        if let Some(old) = self.current.replace(state) {
            self.archive(old);
        }
    }

    /// Archives the current session (for example when the peer's device was
    /// re-registered): the next send needs a new session, while late messages of the
    /// old one still decrypt.
    pub fn archive_current(&mut self) {
        if let Some(old) = self.current.take() {
            self.archive(old);
        }
    }

    /// Makes a record restored from a backup safe to use: archives the current session
    /// and drops the sending chain of every session in the record (one change: the
    /// generation is bumped). The next send to the peer needs a new session (PQXDH);
    /// an archived session that a late message from the peer makes current again takes
    /// a fresh DH ratchet step (a new random ratchet key) before it sends. So nothing is
    /// ever encrypted under a chain key the store that made the backup may also have
    /// used. Late messages on the archived sessions still decrypt.
    pub fn retire_for_restore(&mut self) {
        self.archive_current();
        for state in &mut self.archived {
            state.drop_sending_chain();
        }
        self.bump_generation();
    }

    fn archive(&mut self, state: SessionState) {
        self.archived.push_front(state);
        self.archived.truncate(MAX_ARCHIVED_SESSIONS);
    }

    /// Makes archived session `index` current, archiving the previous current one.
    pub(crate) fn promote_archived(&mut self, index: usize) {
        if let Some(state) = self.archived.remove(index) {
            self.promote_new(state);
        }
    }

    /// Finds the session created by the pre-key message with this base key:
    /// `Some(None)` for the current session, `Some(Some(i))` for archived session `i`.
    pub(crate) fn find_base_key(&self, base_key: &DhPublicKey) -> Option<Option<usize>> {
        if self
            .current
            .as_ref()
            .is_some_and(|s| s.base_key() == base_key)
        {
            return Some(None);
        }
        self.archived
            .iter()
            .position(|s| s.base_key() == base_key)
            .map(Some)
    }

    /// Length of [`Self::encode`]'s output, computed without encoding.
    pub(crate) fn encoded_len(&self) -> usize {
        2 + 8
            + 1
            + self.current.as_ref().map_or(0, SessionState::encoded_len)
            + 4
            + self
                .archived
                .iter()
                .map(SessionState::encoded_len)
                .sum::<usize>()
    }

    /// Trims the record to [`MAX_SESSION_RECORD_LEN`]: deletes skipped keys of archived
    /// sessions (oldest session first), then skipped keys of the current session (oldest
    /// chain and oldest key first), then archived sessions (oldest first).
    fn trim_to_bound(&mut self) {
        let mut len = self.encoded_len();
        let excess_keys = |len: usize| {
            len.saturating_sub(MAX_SESSION_RECORD_LEN)
                .div_ceil(SKIPPED_KEY_LEN)
        };
        let sessions = self.archived.iter_mut().rev().chain(self.current.as_mut());
        for state in sessions {
            if len <= MAX_SESSION_RECORD_LEN {
                return;
            }
            len -= state.drop_oldest_skipped(excess_keys(len)) * SKIPPED_KEY_LEN;
        }
        while len > MAX_SESSION_RECORD_LEN
            && let Some(oldest) = self.archived.pop_back()
        {
            len -= oldest.encoded_len();
        }
    }

    /// Encodes the record (`docs/protocol.md` §Stored records). The bytes are secret.
    pub fn encode(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut w = Writer::new(kind::SESSION_RECORD, 1024);
        w.u64(self.generation);
        w.bool(self.current.is_some());
        if let Some(s) = &self.current {
            s.write(&mut w);
        }
        w.count(self.archived.len());
        for s in &self.archived {
            s.write(&mut w);
        }
        zeroize::Zeroizing::new(w.into_vec())
    }

    /// Decodes a record, bounding every count and length.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_SESSION_RECORD_LEN {
            return Err(DecodeError::TooLong {
                length: bytes.len(),
                limit: MAX_SESSION_RECORD_LEN,
            });
        }
        let mut r = Reader::new(bytes);
        r.header(kind::SESSION_RECORD)?;
        let generation = r.u64()?;
        let current = if r.bool("current session flag")? {
            Some(SessionState::read(&mut r)?)
        } else {
            None
        };
        let n = r.count(MAX_ARCHIVED_SESSIONS, 200)?;
        let mut archived = VecDeque::with_capacity(n);
        for _ in 0..n {
            archived.push_back(SessionState::read(&mut r)?);
        }
        r.finish()?;
        Ok(Self {
            current,
            archived,
            generation,
        })
    }
}

impl core::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("generation", &self.generation)
            .field("current", &self.current)
            .field("archived", &self.archived.len())
            .finish()
    }
}

#[cfg(test)]
mod fixture_tests {
    //! Checked-in wire fixtures: Bob's session record after the first exchange and a
    //! message Alice sent on that session. A change to the record layout, the message
    //! layout or any KDF shows up here as a failing test and a visible diff.

    use super::SessionRecord;
    use crate::wire::SignalMessage;

    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    const PLAINTEXT: &[u8] = b"fixture message v1";

    #[test]
    fn checked_in_record_decrypts_checked_in_message() {
        let record = std::fs::read(format!("{DIR}/bob_session_record.bin")).unwrap();
        let message = std::fs::read(format!("{DIR}/alice_message.bin")).unwrap();
        let record = SessionRecord::decode(&record).unwrap();
        assert_eq!(
            *record.encode(),
            std::fs::read(format!("{DIR}/bob_session_record.bin")).unwrap()
        );
        let message = SignalMessage::decode(&message).unwrap();
        let (plaintext, _) = record.current().unwrap().decrypt(&message).unwrap();
        assert_eq!(&plaintext[..], PLAINTEXT);
    }

    /// Regenerates the fixtures: `cargo test -p signal-core -- --ignored regenerate`.
    #[test]
    #[ignore]
    fn regenerate_fixtures() {
        use crate::prekey::{
            KemPreKeyRecord, OneTimePreKeyRecord, PreKeyBundle, SignedPreKeyRecord,
        };
        use crate::store::{
            InMemoryStore, KemPreKeyStore, PreKeyStore, SessionStore, SignedPreKeyStore,
        };
        use crate::{Address, IdentityKeyPair, session};
        let bob_id = IdentityKeyPair::generate().unwrap();
        let mut bob = InMemoryStore::new(bob_id.clone(), 2);
        let spk = SignedPreKeyRecord::generate(&bob_id, 2, 1, 0).unwrap();
        let opk = OneTimePreKeyRecord::generate(&bob_id, 1, 0).unwrap();
        let kem = KemPreKeyRecord::generate(&bob_id, 1, 0, false).unwrap();
        bob.store_signed_prekey(&spk).unwrap();
        bob.store_prekey(&opk).unwrap();
        bob.store_kem_prekey(&kem).unwrap();
        let bundle = PreKeyBundle {
            registration_id: 2,
            identity: *bob_id.public(),
            signed_prekey: spk.public().clone(),
            one_time_prekey: Some(opk.public().clone()),
            kem_prekey: kem.public().clone(),
        };
        let mut alice = InMemoryStore::new(IdentityKeyPair::generate().unwrap(), 1);
        let (a, b) = (
            Address::new("alice", 1).unwrap(),
            Address::new("bob", 1).unwrap(),
        );
        session::initiate(&mut alice, &b, &bundle.clone().verify().unwrap()).unwrap();
        let first = session::encrypt(&mut alice, &b, b"hello").unwrap();
        session::decrypt_and_commit(&mut bob, &a, &first).unwrap();
        let reply = session::encrypt(&mut bob, &a, b"hi").unwrap();
        session::decrypt_and_commit(&mut alice, &b, &reply).unwrap();
        let record = bob.load_session(&a).unwrap().unwrap();
        let message = session::encrypt(&mut alice, &b, PLAINTEXT).unwrap();
        std::fs::write(format!("{DIR}/bob_session_record.bin"), &*record.encode()).unwrap();
        std::fs::write(format!("{DIR}/alice_message.bin"), &message).unwrap();
        std::fs::write(format!("{DIR}/bob_bundle.bin"), bundle.encode()).unwrap();
    }

    #[test]
    fn checked_in_bundle_decodes_and_verifies() {
        let bytes = std::fs::read(format!("{DIR}/bob_bundle.bin")).unwrap();
        let bundle = crate::prekey::PreKeyBundle::decode(&bytes).unwrap();
        assert_eq!(bundle.encode(), bytes);
        bundle.verify().unwrap();
    }
}

#[cfg(test)]
mod bound_tests {
    //! The whole-record bound (issue 14, item 9): a peer maximising skipped keys across
    //! receiving chains and sessions cannot grow the record past
    //! `MAX_SESSION_RECORD_LEN`.

    use super::*;
    use crate::limits::{MAX_RECEIVER_CHAINS, MAX_SKIPPED_KEYS_PER_CHAIN};
    use crate::session;
    use crate::session::test_support::{Side, established};

    /// The adversary moves its own sending chain `n` keys ahead (as if it had sent `n`
    /// messages that never arrived).
    fn skip_ahead(alice: &mut Side, b: &crate::Address, n: u32) {
        alice.edit(b, |r| {
            let s = r.current.as_mut().unwrap();
            let mut chain = s.sending_chain_mut().take().unwrap();
            for _ in 0..n {
                chain = chain.next().unwrap();
            }
            *s.sending_chain_mut() = Some(chain);
        });
    }

    /// Bob's record fits the bound and `encoded_len` is exact; returns its length.
    fn checked_len(bob: &Side, a: &crate::Address) -> usize {
        let record = bob.record(a);
        let bytes = record.encode();
        assert!(
            bytes.len() <= MAX_SESSION_RECORD_LEN,
            "{} bytes",
            bytes.len()
        );
        assert_eq!(record.encoded_len(), bytes.len());
        SessionRecord::decode(&bytes).unwrap();
        bytes.len()
    }

    #[test]
    fn a_peer_maximising_skipped_keys_cannot_exceed_the_record_bound() {
        let (mut alice, mut bob) = established();
        let (a, b) = (alice.addr.clone(), bob.addr.clone());
        let mut held = Vec::new();
        let mut largest = 0;
        for round in 0..3 {
            if round > 0 {
                session::initiate(&mut alice.store, &b, &bob.bundle()).unwrap();
            }
            for _ in 0..MAX_RECEIVER_CHAINS {
                // A new chain (a ratchet step), one message held back, then a message
                // skipping MAX_SKIPPED_KEYS_PER_CHAIN keys.
                let first = alice.encrypt(&b, b"first");
                bob.decrypt(&a, &first).unwrap();
                held.push(alice.encrypt(&b, b"held"));
                skip_ahead(&mut alice, &b, MAX_SKIPPED_KEYS_PER_CHAIN as u32 - 1);
                let far = alice.encrypt(&b, b"far");
                bob.decrypt(&a, &far).unwrap();
                largest = largest.max(checked_len(&bob, &a));
                let reply = bob.encrypt(&a, b"reply");
                alice.decrypt(&b, &reply).unwrap();
            }
        }
        // Untrimmed, Bob would hold 3 × 5 × 2,000 skipped keys (over 1 MB).
        assert!(largest > MAX_SESSION_RECORD_LEN - 1024, "{largest}");
        // The newest skipped keys survived; the oldest were evicted.
        assert_eq!(bob.decrypt(&a, held.last().unwrap()).unwrap(), b"held");
        assert!(matches!(
            bob.decrypt(&a, &held[0]),
            Err(crate::SessionError::DuplicateMessage { counter: 1 })
        ));
        // More sessions fill the archive; the bound holds and honest messages decrypt.
        for _ in 0..MAX_ARCHIVED_SESSIONS {
            session::initiate(&mut alice.store, &b, &bob.bundle()).unwrap();
            let m = alice.encrypt(&b, b"new session");
            assert_eq!(bob.decrypt(&a, &m).unwrap(), b"new session");
            checked_len(&bob, &a);
        }
        assert_eq!(bob.record(&a).archived().count(), MAX_ARCHIVED_SESSIONS);
        let reply = bob.encrypt(&a, b"still talking");
        assert_eq!(alice.decrypt(&b, &reply).unwrap(), b"still talking");
        let m = alice.encrypt(&b, b"and back");
        assert_eq!(bob.decrypt(&a, &m).unwrap(), b"and back");
    }

    #[test]
    fn the_decoder_refuses_records_over_the_bound() {
        let too_long = vec![0u8; MAX_SESSION_RECORD_LEN + 1];
        assert!(matches!(
            SessionRecord::decode(&too_long),
            Err(DecodeError::TooLong { length, limit })
                if length == MAX_SESSION_RECORD_LEN + 1 && limit == MAX_SESSION_RECORD_LEN
        ));
        // At the bound the length check passes (this filler then fails on its header).
        assert!(!matches!(
            SessionRecord::decode(&too_long[..MAX_SESSION_RECORD_LEN]),
            Err(DecodeError::TooLong { .. })
        ));
    }
}
