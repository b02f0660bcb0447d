//! A session record: the current session with one peer device plus up to
//! [`MAX_ARCHIVED_SESSIONS`] earlier ones, so that simultaneous initiation converges and
//! messages in flight from a replaced session still decrypt.

use std::collections::VecDeque;

use crate::error::DecodeError;
use crate::keys::DhPublicKey;
use crate::limits::{MAX_ARCHIVED_SESSIONS, MAX_SESSION_RECORD_LEN};
use crate::wire::{Reader, Writer, kind};

use super::SessionState;

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

    pub(crate) fn bump_generation(&mut self) {
        self.generation = self.generation.wrapping_add(1);
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
