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
use crate::prekey::{Timestamp, VerifiedBundle};
use crate::store::{ProtocolStore, SessionCommit};
use crate::wire::message::PreKeyFields;
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
    let new_identity = check_trust(store, remote, &b.identity)?;
    let ours = store.local_identity()?;
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
    let out = match &state.pending_prekey {
        None => message,
        Some(p) => PreKeyMessage::encode_parts(
            PreKeyFields {
                registration_id: state.local_registration_id(),
                signed_prekey_id: p.signed_prekey_id,
                one_time_prekey_id: p.one_time_prekey_id,
                kem_prekey_id: p.kem_prekey_id,
                kem_ciphertext: &p.kem_ciphertext,
                base_key: state.base_key(),
                identity: state.local_identity_encoded(),
            },
            &message,
        ),
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

fn decrypt_prekey_message<S: ProtocolStore + ?Sized>(
    store: &S,
    remote: &Address,
    message: &PreKeyMessage,
) -> Result<Decrypted, SessionError> {
    let new_identity = check_trust(store, remote, &message.identity)?;
    let record = store.load_session(remote)?.unwrap_or_default();
    let expected_generation = record.generation();

    // A session from this very pre-key message already exists: it is a retransmission
    // (or a replay) of the first messages; the ratchet decides.
    if let Some(which) = record.find_base_key(&message.base_key) {
        let state = match which {
            None => record.current(),
            Some(i) => record.archived.get(i),
        };
        if state.is_some_and(|s| {
            !s.is_remote_identity(&message.identity)
                || s.remote_registration_id() != message.registration_id
        }) {
            return Err(SessionError::SessionMismatch);
        }
        let (plaintext, mut record) = decrypt_with_record(record, &message.message)?;
        record.bump_generation();
        let mut commit = SessionCommit::record_only(remote.clone(), record, expected_generation);
        commit.new_identity = new_identity;
        return Ok(Decrypted { plaintext, commit });
    }

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

    let ours = store.local_identity()?;
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
    let (plaintext, update) = state.decrypt(&message.message)?;
    state.apply(update);

    let mut record = record;
    record.promote_new(state);
    record.bump_generation();
    let mut commit = SessionCommit::record_only(remote.clone(), record, expected_generation);
    commit.new_identity = new_identity;
    commit.consumed_prekey = message.one_time_prekey_id;
    if kem_prekey.is_last_resort() {
        commit.last_resort_use = Some((kem_prekey.id(), message.base_key));
    } else {
        commit.consumed_kem_prekey = Some(kem_prekey.id());
    }
    Ok(Decrypted { plaintext, commit })
}

/// Seconds since the Unix epoch by the local clock; only recorded as a session's
/// creation time for inspection, never used in a security decision.
fn unix_now() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
