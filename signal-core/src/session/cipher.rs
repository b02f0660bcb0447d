//! Entry points: start a session from a bundle, encrypt, decrypt.
//!
//! Data flows one way: decode → verify (identity trust, prekeys) → ratchet on a working
//! copy → commit through the store. Nothing is written unless every check passed.

use zeroize::Zeroizing;

use crate::address::Address;
use crate::error::{CryptoError, SessionError};
use crate::identity::IdentityKey;
use crate::limits::MAX_PLAINTEXT_LEN;
use crate::pqxdh;
use crate::prekey::{
    KemPreKeyRecord, OneTimePreKeyRecord, PreKeyId, SignedPreKeyRecord, Timestamp, VerifiedBundle,
};
use crate::store::{ProtocolStore, SessionCommit};
use crate::wire::{MessageKind, PreKeyMessage, SignalMessage};

use super::SessionRecord;
use super::state::{Parties, PendingPreKey, SessionState};

/// Fails with [`SessionError::UntrustedIdentity`] if a different identity is recorded
/// for `address`; returns the identity to record if none is (trust on first use).
fn check_trust<S: ProtocolStore + ?Sized>(
    store: &S,
    address: &Address,
    identity: &IdentityKey,
) -> Result<Option<IdentityKey>, SessionError> {
    match store.remote_identity(address)? {
        Some(known) if known == *identity => Ok(None),
        Some(_) => Err(SessionError::UntrustedIdentity {
            address: address.clone(),
        }),
        None => Ok(Some(*identity)),
    }
}

/// Starts a session with `remote` from its verified bundle (PQXDH initiator side). The
/// new session becomes current; an existing one is archived. Messages encrypted on it
/// are pre-key messages until the peer replies.
pub fn initiate<S: ProtocolStore + ?Sized>(
    store: &mut S,
    remote: &Address,
    bundle: &VerifiedBundle,
) -> Result<(), SessionError> {
    let b = bundle.bundle();
    let ours = store.local_identity()?;
    if b.identity == *ours.public() {
        return Err(SessionError::SelfSession);
    }
    let new_identity = check_trust(store, remote, &b.identity)?;
    let local_registration_id = store.local_registration_id()?;
    let agreed = pqxdh::initiate(&ours, bundle)?;
    let state = SessionState::new_initiator(
        Parties {
            local_identity: ours.public().encode(),
            remote_identity: b.identity.encode(),
            local_registration_id,
            remote_registration_id: b.registration_id,
            base_key: agreed.base_key,
            created_at: unix_now(),
        },
        &agreed.shared_secret,
        (b.signed_prekey.key, &agreed.signed_prekey_point),
        PendingPreKey {
            signed_prekey_id: b.signed_prekey.id,
            one_time_prekey_id: b.one_time_prekey.as_ref().map(|p| p.id),
            kem_prekey_id: b.kem_prekey.id,
            kem_ciphertext: agreed.kem_ciphertext,
        },
    )?;
    let mut record = store.load_session(remote)?.unwrap_or_default();
    let expected_generation = record.generation();
    record.promote_new(state);
    record.bump_generation();
    let mut commit = SessionCommit::record_only(remote.clone(), record, expected_generation);
    commit.new_identity = new_identity;
    store.commit(commit)?;
    Ok(())
}

/// Encrypts `plaintext` for `remote` on the current session and commits the advanced
/// state **before** returning the ciphertext, so a message key is never used twice.
///
/// Returns a [`PreKeyMessage`] encoding until the peer has replied, a [`SignalMessage`]
/// encoding after; [`MessageKind::of`] tells them apart.
pub fn encrypt<S: ProtocolStore + ?Sized>(
    store: &mut S,
    remote: &Address,
    plaintext: &[u8],
) -> Result<Vec<u8>, SessionError> {
    if plaintext.len() > MAX_PLAINTEXT_LEN {
        return Err(CryptoError::PlaintextTooLong {
            length: plaintext.len(),
            limit: MAX_PLAINTEXT_LEN,
        }
        .into());
    }
    let no_session = || SessionError::NoSession {
        address: remote.clone(),
    };
    let mut record = store.load_session(remote)?.ok_or_else(no_session)?;
    let expected_generation = record.generation();
    let state = record.current.as_mut().ok_or_else(no_session)?;
    if !store
        .remote_identity(remote)?
        .is_some_and(|known| state.is_remote_identity(&known))
    {
        return Err(SessionError::UntrustedIdentity {
            address: remote.clone(),
        });
    }
    let message = state.encrypt(plaintext)?;
    let out = match state.prekey_fields() {
        None => message,
        Some(fields) => PreKeyMessage::encode_parts(fields, &message),
    };
    record.bump_generation();
    store.commit(SessionCommit::record_only(
        remote.clone(),
        record,
        expected_generation,
    ))?;
    Ok(out)
}

/// A decrypted message and the state change that goes with it, not yet committed.
///
/// Persist the plaintext and [`ProtocolStore::commit`] the [`SessionCommit`] together
/// (in one transaction where the store allows it). Dropping a `Decrypted` without
/// committing leaves the session as it was: the same message decrypts again.
pub struct Decrypted {
    plaintext: Zeroizing<Vec<u8>>,
    commit: SessionCommit,
}

impl Decrypted {
    /// The plaintext.
    pub fn plaintext(&self) -> &[u8] {
        &self.plaintext
    }

    /// The peer's identity key.
    pub fn sender_identity(&self) -> Option<IdentityKey> {
        self.commit
            .record
            .current()
            .and_then(|s| s.remote_identity().ok())
    }

    /// Splits into plaintext and the commit to apply.
    pub fn into_parts(self) -> (Zeroizing<Vec<u8>>, SessionCommit) {
        (self.plaintext, self.commit)
    }
}

impl core::fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Decrypted")
            .field("plaintext_len", &self.plaintext.len())
            .field("address", &self.commit.address)
            .finish_non_exhaustive()
    }
}

/// Decrypts a message from `remote` without writing anything. See [`Decrypted`].
pub fn decrypt<S: ProtocolStore + ?Sized>(
    store: &S,
    remote: &Address,
    bytes: &[u8],
) -> Result<Decrypted, SessionError> {
    match MessageKind::of(bytes)? {
        MessageKind::Message => decrypt_message(store, remote, &SignalMessage::decode(bytes)?),
        MessageKind::PreKey => {
            decrypt_prekey_message(store, remote, &PreKeyMessage::decode(bytes)?)
        }
        MessageKind::SenderKey | MessageKind::SenderKeyDistribution => {
            Err(crate::error::DecodeError::WrongType {
                found: bytes.get(1).copied().unwrap_or_default(),
                expected: crate::wire::kind::MESSAGE,
            }
            .into())
        }
    }
}

/// [`decrypt`], then [`ProtocolStore::commit`]; returns the plaintext only once the new
/// state is stored.
pub fn decrypt_and_commit<S: ProtocolStore + ?Sized>(
    store: &mut S,
    remote: &Address,
    bytes: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SessionError> {
    let (plaintext, commit) = decrypt(store, remote, bytes)?.into_parts();
    store.commit(commit)?;
    Ok(plaintext)
}

/// Decrypts with the record's sessions ([`SessionRecord::decrypt`]); the session that
/// decrypts is updated and made current.
fn decrypt_with_record(
    mut record: SessionRecord,
    message: &SignalMessage,
) -> Result<(Zeroizing<Vec<u8>>, SessionRecord), SessionError> {
    let plaintext = record.decrypt(message)?;
    Ok((plaintext, record))
}

fn decrypt_message<S: ProtocolStore + ?Sized>(
    store: &S,
    remote: &Address,
    message: &SignalMessage,
) -> Result<Decrypted, SessionError> {
    let record = store
        .load_session(remote)?
        .ok_or_else(|| SessionError::NoSession {
            address: remote.clone(),
        })?;
    let expected_generation = record.generation();
    let (plaintext, mut record) = decrypt_with_record(record, message)?;
    let state = record.current().ok_or(SessionError::InvalidMessage)?;
    let new_identity = match store.remote_identity(remote)? {
        Some(known) if state.is_remote_identity(&known) => None,
        Some(_) => {
            return Err(SessionError::UntrustedIdentity {
                address: remote.clone(),
            });
        }
        None => Some(state.remote_identity()?),
    };
    record.bump_generation();
    let mut commit = SessionCommit::record_only(remote.clone(), record, expected_generation);
    commit.new_identity = new_identity;
    Ok(Decrypted { plaintext, commit })
}

/// Decrypts a pre-key message (`docs/protocol.md` §5.3). Its inner message is
/// authenticated with `AD ‖ T ‖ header`, `T` covering every other field, so a changed
/// field is [`SessionError::InvalidMessage`]. Trust in the sender's identity is checked
/// only after authentication, so a tampered message is reported as such.
fn decrypt_prekey_message<S: ProtocolStore + ?Sized>(
    store: &S,
    remote: &Address,
    message: &PreKeyMessage,
) -> Result<Decrypted, SessionError> {
    let identity = message.identity.encode();
    let transcript = pqxdh::prekey_transcript(&message.fields(&identity));
    let record = store.load_session(remote)?.unwrap_or_default();
    let expected_generation = record.generation();

    // A session from this very pre-key message already exists: it is a retransmission
    // (or a replay) of the first messages; only that session may decrypt it.
    let (plaintext, record, consumed) = match record.find_base_key(&message.base_key) {
        Some(which) => {
            let (plaintext, record) = decrypt_named(record, which, message, &transcript)?;
            (plaintext, record, None)
        }
        None => {
            let (plaintext, record, consumed) = accept_new(store, record, message, &transcript)?;
            (plaintext, record, Some(consumed))
        }
    };
    let new_identity = check_trust(store, remote, &message.identity)?;
    let mut record = record;
    record.bump_generation();
    let mut commit = SessionCommit::record_only(remote.clone(), record, expected_generation);
    commit.new_identity = new_identity;
    if let Some(c) = consumed {
        commit.consumed_prekey = c.one_time_prekey;
        if c.last_resort {
            commit.last_resort_use = Some((c.kem_prekey, message.base_key));
        } else {
            commit.consumed_kem_prekey = Some(c.kem_prekey);
        }
    }
    Ok(Decrypted { plaintext, commit })
}

/// Decrypts the inner message of a pre-key message with the one session it names
/// (`which`, as found by [`SessionRecord::find_base_key`]), never with another session
/// of the record; on success that session is updated and made current. Our own
/// pre-key message reflected back to us is [`SessionError::SelfSession`].
fn decrypt_named(
    mut record: SessionRecord,
    which: Option<usize>,
    message: &PreKeyMessage,
    transcript: &pqxdh::PreKeyTranscript,
) -> Result<(Zeroizing<Vec<u8>>, SessionRecord), SessionError> {
    let state = match which {
        None => record.current.as_mut(),
        Some(i) => record.archived.get_mut(i),
    }
    .ok_or(SessionError::InvalidMessage)?;
    if state.is_local_identity(&message.identity) {
        return Err(SessionError::SelfSession);
    }
    let (plaintext, update) = state.decrypt_prekey(&message.message, transcript)?;
    // Implied by authentication (the session's AD and T both hold the sender's
    // identity and registration id); checked again for defence in depth.
    if !state.is_remote_identity(&message.identity)
        || state.remote_registration_id() != message.registration_id
    {
        return Err(SessionError::SessionMismatch);
    }
    state.apply(update);
    if let Some(i) = which {
        record.promote_archived(i);
    }
    Ok((plaintext, record))
}

/// The prekeys a new session from a pre-key message consumes (or, for a last-resort
/// KEM prekey, uses once per base key).
struct Consumed {
    one_time_prekey: Option<PreKeyId>,
    kem_prekey: PreKeyId,
    last_resort: bool,
}

/// Loads the prekeys a pre-key message names, refusing unknown ones and a last-resort
/// KEM prekey already used with this base key.
fn load_named_prekeys<S: ProtocolStore + ?Sized>(
    store: &S,
    message: &PreKeyMessage,
) -> Result<
    (
        SignedPreKeyRecord,
        Option<OneTimePreKeyRecord>,
        KemPreKeyRecord,
    ),
    SessionError,
> {
    let signed_prekey = store.load_signed_prekey(message.signed_prekey_id)?.ok_or(
        SessionError::UnknownSignedPreKey {
            id: message.signed_prekey_id,
        },
    )?;
    let one_time_prekey = match message.one_time_prekey_id {
        Some(id) => Some(
            store
                .load_prekey(id)?
                .ok_or(SessionError::UnknownPreKey { id })?,
        ),
        None => None,
    };
    let kem_prekey =
        store
            .load_kem_prekey(message.kem_prekey_id)?
            .ok_or(SessionError::UnknownKemPreKey {
                id: message.kem_prekey_id,
            })?;
    if kem_prekey.is_last_resort()
        && store.last_resort_base_key_seen(kem_prekey.id(), &message.base_key)?
    {
        return Err(SessionError::KemPreKeyReplay {
            id: kem_prekey.id(),
        });
    }
    Ok((signed_prekey, one_time_prekey, kem_prekey))
}

/// Runs PQXDH as responder for a pre-key message that names no session we hold and
/// decrypts its inner message on the new session, which becomes current in `record`.
/// Refuses our own identity ([`SessionError::SelfSession`]), unknown prekeys and
/// last-resort replays before any key agreement.
fn accept_new<S: ProtocolStore + ?Sized>(
    store: &S,
    mut record: SessionRecord,
    message: &PreKeyMessage,
    transcript: &pqxdh::PreKeyTranscript,
) -> Result<(Zeroizing<Vec<u8>>, SessionRecord, Consumed), SessionError> {
    let ours = store.local_identity()?;
    if message.identity == *ours.public() {
        return Err(SessionError::SelfSession);
    }
    let (signed_prekey, one_time_prekey, kem_prekey) = load_named_prekeys(store, message)?;
    let shared_secret = pqxdh::accept(
        &ours,
        &signed_prekey,
        one_time_prekey.as_ref(),
        &kem_prekey,
        &message.identity,
        &message.base_key,
        &message.kem_ciphertext,
    )?;
    let mut state = SessionState::new_responder(
        Parties {
            local_identity: ours.public().encode(),
            remote_identity: message.identity.encode(),
            local_registration_id: store.local_registration_id()?,
            remote_registration_id: message.registration_id,
            base_key: message.base_key,
            created_at: unix_now(),
        },
        &shared_secret,
        signed_prekey.key_pair().clone(),
    );
    let (plaintext, update) = state.decrypt_prekey(&message.message, transcript)?;
    state.apply(update);
    record.promote_new(state);
    let consumed = Consumed {
        one_time_prekey: message.one_time_prekey_id,
        kem_prekey: kem_prekey.id(),
        last_resort: kem_prekey.is_last_resort(),
    };
    Ok((plaintext, record, consumed))
}

/// Seconds since the Unix epoch by the local clock; only recorded as a session's
/// creation time for inspection, never used in a security decision.
fn unix_now() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
