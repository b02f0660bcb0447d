//! Error types, one enum per concern.
//!
//! Errors carry the numbers that help a caller (ids, counters, limits) and never key
//! material or plaintext.

use crate::address::Address;

/// Failure to decode bytes that came from the network or from disk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended before the structure was complete.
    #[error("input ended early: needed {needed} more bytes, {available} available")]
    UnexpectedEnd {
        /// Bytes the decoder still needed.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// The leading version byte is not one this implementation speaks.
    #[error("unsupported version {found} (supported: {supported})")]
    UnsupportedVersion {
        /// Version byte found.
        found: u8,
        /// Version this implementation supports.
        supported: u8,
    },
    /// The structure type byte does not match what was expected.
    #[error("unexpected structure type {found:#04x}, expected {expected:#04x}")]
    WrongType {
        /// Type byte found.
        found: u8,
        /// Type byte expected.
        expected: u8,
    },
    /// A key's type byte does not name the expected key kind.
    #[error("unexpected key type {found:#04x}, expected {expected:#04x}")]
    WrongKeyType {
        /// Type byte found.
        found: u8,
        /// Type byte expected.
        expected: u8,
    },
    /// Bytes remained after a complete structure.
    #[error("{count} trailing bytes after the structure")]
    TrailingBytes {
        /// Number of bytes left over.
        count: usize,
    },
    /// A length or count field exceeds its documented bound.
    #[error("length {length} exceeds the limit {limit}")]
    TooLong {
        /// The declared or actual length.
        length: usize,
        /// The documented bound.
        limit: usize,
    },
    /// A field has a value that is not the canonical encoding (for example a flag byte
    /// other than 0 or 1, or entries not in ascending order).
    #[error("non-canonical encoding of {field}")]
    NonCanonical {
        /// Name of the offending field.
        field: &'static str,
    },
    /// Bytes of the right length that are not a valid key (for example a small-order
    /// point or an ML-KEM key that fails the FIPS 203 modulus check).
    #[error("invalid {kind} key")]
    InvalidKey {
        /// Which kind of key.
        kind: &'static str,
    },
}

/// Failure of a cryptographic primitive that does not depend on the peer's input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The operating system's random number generator failed.
    #[error("the operating system random number generator failed")]
    Randomness,
    /// A Diffie-Hellman result was all zeros: the peer sent a small-order point.
    #[error("Diffie-Hellman with a small-order point")]
    NonContributoryDh,
    /// A plaintext exceeded [`crate::limits::MAX_PLAINTEXT_LEN`].
    #[error("plaintext of {length} bytes exceeds the limit {limit}")]
    PlaintextTooLong {
        /// Plaintext length.
        length: usize,
        /// Limit.
        limit: usize,
    },
}

/// Which signed item of a prekey bundle failed verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedItem {
    /// The signed X25519 prekey.
    SignedPreKey,
    /// The one-time X25519 prekey.
    OneTimePreKey,
    /// The ML-KEM-1024 prekey.
    KemPreKey,
}

impl core::fmt::Display for SignedItem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::SignedPreKey => "signed prekey",
            Self::OneTimePreKey => "one-time prekey",
            Self::KemPreKey => "KEM prekey",
        })
    }
}

/// Which kind of one-time prekey a session commit consumes (see
/// [`StoreError::PreKeyAlreadyConsumed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OneTimePreKeyKind {
    /// A one-time X25519 prekey.
    X25519,
    /// A one-time ML-KEM-1024 prekey (not a last-resort one).
    Kem,
}

impl core::fmt::Display for OneTimePreKeyKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::X25519 => "one-time X25519 prekey",
            Self::Kem => "one-time ML-KEM prekey",
        })
    }
}

/// A prekey bundle was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// The bundle bytes did not decode.
    #[error("bundle does not decode: {0}")]
    Decode(#[from] DecodeError),
    /// A signature does not verify under the bundle's identity key.
    #[error("{item} signature does not verify under the bundle's identity key")]
    BadSignature {
        /// Which item.
        item: SignedItem,
    },
    /// The bundle's identity is not the one the caller expected for this peer.
    #[error("bundle identity differs from the expected identity")]
    IdentityMismatch,
}

/// A store operation failed. Store implementations map their own failures to these
/// variants; the original error is kept as the `source` where there is one.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be opened because the key is wrong (or missing).
    #[error("wrong or missing store key")]
    WrongKey,
    /// The store's file or a record in it is damaged.
    #[error("store data is damaged: {what}")]
    Corrupt {
        /// What was found damaged.
        what: &'static str,
    },
    /// A stored record did not decode.
    #[error("stored record does not decode: {0}")]
    Decode(#[from] DecodeError),
    /// The store was written by a newer schema version than this code supports.
    #[error("store schema version {found} is newer than supported version {supported}")]
    NewerSchema {
        /// Version found in the store.
        found: u32,
        /// Newest version this code knows.
        supported: u32,
    },
    /// A uniqueness rule was violated during commit (for example a last-resort KEM
    /// prekey use recorded concurrently by another process).
    #[error("conflicting concurrent update: {what}")]
    Conflict {
        /// What conflicted.
        what: &'static str,
    },
    /// A session commit consumes a one-time prekey that is no longer in the store:
    /// another decryption (in this process or another one sharing the store) started a
    /// session from the same prekey and committed first. The commit changed nothing;
    /// retrying the decryption fails with [`SessionError::UnknownPreKey`] (or
    /// [`SessionError::UnknownKemPreKey`]), because a one-time prekey starts at most one
    /// session.
    #[error("{kind} {id} was already consumed by another session")]
    PreKeyAlreadyConsumed {
        /// Which kind of prekey.
        kind: OneTimePreKeyKind,
        /// Its id.
        id: crate::prekey::PreKeyId,
    },
    /// The local identity has not been created yet.
    #[error("no local identity in the store")]
    NoLocalIdentity,
    /// Any other failure of the backing storage.
    #[error("storage backend failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// A session operation (establishing, encrypting, decrypting) failed.
///
/// A failed operation never changes stored state.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The message bytes did not decode.
    #[error("message does not decode: {0}")]
    Decode(#[from] DecodeError),
    /// The bundle was rejected.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A primitive failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The peer's identity differs from the one stored for this address. The caller
    /// decides whether to accept the new identity (see
    /// [`crate::store::IdentityStore::save_identity`]).
    #[error("identity of {address} changed and is not trusted")]
    UntrustedIdentity {
        /// The peer.
        address: Address,
    },
    /// There is no session with this address.
    #[error("no session with {address}")]
    NoSession {
        /// The peer.
        address: Address,
    },
    /// Authentication failed: the message was tampered with, or was not encrypted to any
    /// session we hold.
    #[error("message failed authentication")]
    InvalidMessage,
    /// The message key for this counter was already used (the message is a duplicate)
    /// or was evicted from the skipped-key store.
    #[error("duplicate message (chain counter {counter})")]
    DuplicateMessage {
        /// The counter in the message header.
        counter: u32,
    },
    /// Decrypting the message would take more chain-key derivations than the decrypt
    /// call has left for the session (`PN` skip and forward jump together).
    #[error("counter {counter} needs {jump} derivations, over the limit {limit}")]
    TooFarAhead {
        /// The counter in the message header.
        counter: u32,
        /// Derivations needed: how far ahead of the previous chain `PN` is plus how far
        /// ahead of the message's chain the counter is.
        jump: u32,
        /// Derivations left for this session ([`crate::limits::MAX_DECRYPT_DERIVATIONS`]
        /// or [`crate::limits::MAX_ARCHIVED_DERIVATIONS`], less what earlier sessions
        /// of the record used).
        limit: u32,
    },
    /// The sending chain has used its last counter
    /// ([`crate::limits::MAX_CHAIN_COUNTER`]); the next message needs a DH ratchet step
    /// (a reply from the peer) or a new session.
    #[error("chain exhausted at index {index}")]
    ChainExhausted {
        /// The chain's next counter.
        index: u32,
    },
    /// A pre-key message names a signed prekey we do not have.
    #[error("unknown signed prekey {id}")]
    UnknownSignedPreKey {
        /// The id named.
        id: u32,
    },
    /// A pre-key message names a one-time prekey we do not have (already consumed, or
    /// never issued).
    #[error("unknown one-time prekey {id}")]
    UnknownPreKey {
        /// The id named.
        id: u32,
    },
    /// A pre-key message names a KEM prekey we do not have.
    #[error("unknown KEM prekey {id}")]
    UnknownKemPreKey {
        /// The id named.
        id: u32,
    },
    /// A last-resort KEM prekey was used again with a base key already seen: a replay.
    #[error("replayed pre-key message (KEM prekey {id})")]
    KemPreKeyReplay {
        /// The last-resort KEM prekey id.
        id: u32,
    },
    /// The message's registration id or sender identity does not match the session.
    #[error("pre-key message does not match the session it names")]
    SessionMismatch,
    /// The peer is this device itself: the bundle or pre-key message carries our own
    /// identity key (each device has its own identity, so this is our own exact
    /// address, or one of our messages reflected back to us). Nothing is written.
    #[error("refused a session with this device itself")]
    SelfSession,
}

/// A sender-key (group) operation failed.
///
/// A failed operation never changes stored state.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The message or distribution message did not decode.
    #[error("group message does not decode: {0}")]
    Decode(#[from] DecodeError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A primitive failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A 1:1 session operation failed while fanning out a distribution message.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// There is no sender-key state for this (group, sender): no distribution message
    /// was processed, or (when sending) this device has not created its chain yet.
    #[error("no sender key for {sender} in this group")]
    NoSenderKey {
        /// The sender device.
        sender: Address,
    },
    /// The message names a chain we do not hold for this sender (never distributed to
    /// us, rotated away after our removal, or evicted).
    #[error("unknown sender-key chain {chain_id}")]
    UnknownChain {
        /// The chain id in the message.
        chain_id: u32,
    },
    /// The Ed25519 signature does not verify under the chain's signing key.
    #[error("sender-key message signature does not verify")]
    BadSignature,
    /// The signature verified but the AEAD did not: the message is not valid for the
    /// chain state we hold.
    #[error("sender-key message failed authentication")]
    InvalidMessage,
    /// The message key for this iteration was already used (a duplicate) or was
    /// evicted from the skipped-key store.
    #[error("duplicate group message (iteration {iteration})")]
    DuplicateMessage {
        /// The iteration in the message.
        iteration: u32,
    },
    /// The message's iteration is further ahead of the chain than the forward-jump limit.
    #[error("iteration {iteration} is {jump} ahead of the chain, over the limit {limit}")]
    TooFarAhead {
        /// The iteration in the message.
        iteration: u32,
        /// How far ahead of the chain's next iteration it is.
        jump: u32,
        /// [`crate::limits::MAX_FORWARD_JUMP`].
        limit: u32,
    },
    /// A distribution message reuses a chain id we hold with a different signing key.
    #[error("sender-key chain {chain_id} already exists with a different signing key")]
    ChainConflict {
        /// The chain id.
        chain_id: u32,
    },
    /// A distribution message was attributed to this device's own address, whose
    /// record holds our sending chain; it is refused so our chain cannot be displaced.
    #[error("distribution message for our own sending chain")]
    OwnChain,
    /// The chain has used every iteration: sending on it (rotate to a new chain), or a
    /// distribution message at iteration `u32::MAX`, which nothing could be read from.
    #[error("sender-key chain {chain_id} is exhausted")]
    ChainExhausted {
        /// The chain id.
        chain_id: u32,
    },
}

/// Key maintenance ([`crate::maintenance::KeyMaintenance`]) failed. Keys generated
/// before the failure may already be stored; running maintenance again is safe.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A primitive failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// No free range of prekey ids was found for a new batch.
    #[error("no free prekey id range of {count} ids found")]
    NoFreeIds {
        /// Size of the range needed.
        count: u32,
    },
}
