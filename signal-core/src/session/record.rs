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
