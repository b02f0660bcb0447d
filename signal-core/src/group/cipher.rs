//! Sender-key operations: create, rotate and distribute a chain, process a received
//! distribution message, encrypt, decrypt.
//!
//! Decryption follows the 1:1 flow: parse → verify the signature → derive the message
//! key without changing anything → AEAD-open → return the plaintext with a
//! [`SenderKeyUpdate`] the caller commits. A message that fails any check changes
//! nothing.

use std::borrow::Cow;
use std::collections::VecDeque;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};
use zeroize::Zeroizing;

use crate::address::Address;
use crate::error::{CryptoError, GroupError, SessionError, StoreError};
use crate::identity::SIGNATURE_LEN;
use crate::limits::{MAX_CHAIN_COUNTER, MAX_FORWARD_JUMP, MAX_PLAINTEXT_LEN};
use crate::random;
use crate::ratchet::receiver_chain::advance_to;
use crate::ratchet::{ChainKey, MessageKeySeed};
use crate::store::SenderKeyStore;
use crate::wire::{Writer, kind};

use super::message::{HEADER_LEN, SenderKeyMessage};
use super::sender_key::{SenderChainState, SenderKeyRecord, SenderKeyUpdate};
use super::{GroupId, SenderKeyDistributionMessage};

/// HKDF info for sender-key message keys (distinct from the 1:1 info string).
pub const SENDER_KEY_INFO: &[u8] = b"signal-core v1 sender key message keys";

fn distribution_of(group: &GroupId, state: &SenderChainState) -> SenderKeyDistributionMessage {
    SenderKeyDistributionMessage {
        group: *group,
        chain_id: state.chain_id,
        iteration: state.chain.index(),
        chain_key: Zeroizing::new(*state.chain.key_bytes()),
        signing_public: state.signing_public,
    }
}

/// A fresh sending chain: random chain key, random signing key, iteration 0, and a
/// random chain id different from every id in `previous`.
fn fresh_chain(previous: Option<&SenderKeyRecord>) -> Result<SenderChainState, CryptoError> {
    let chain_id = loop {
        let id = u32::from_be_bytes(random::bytes()?);
        if previous.is_none_or(|r| r.state(id).is_none()) {
            break id;
        }
    };
    let signing = SigningKey::from_bytes(&Zeroizing::new(random::bytes::<32>()?));
    Ok(SenderChainState {
        chain_id,
        chain: ChainKey::new(*Zeroizing::new(random::bytes::<32>()?), 0),
        signing_public: signing.verifying_key(),
        signing_secret: Some(signing),
        skipped: VecDeque::new(),
    })
}

/// The distribution message for this device's sending chain in `group`, at the
/// chain's current iteration (a receiver cannot read earlier messages). Creates the
/// chain if there is none, and rotates an exhausted one.
pub fn create_distribution<S: SenderKeyStore + ?Sized>(
    store: &mut S,
    group: &GroupId,
    own: &Address,
) -> Result<SenderKeyDistributionMessage, GroupError> {
    if let Some(record) = store.load_sender_key(group, own)?
        && let Some(state) = record
            .newest()
            .filter(|s| s.signing_secret.is_some() && s.chain.index() <= MAX_CHAIN_COUNTER)
    {
        return Ok(distribution_of(group, state));
    }
    rotate(store, group, own)
}

/// Replaces this device's sending chain in `group` with a fresh one (new chain id,
/// chain key and signing key) and returns its distribution message. The old chain's
/// keys are deleted: nothing more is ever sent on it.
pub fn rotate<S: SenderKeyStore + ?Sized>(
    store: &mut S,
    group: &GroupId,
    own: &Address,
) -> Result<SenderKeyDistributionMessage, GroupError> {
    let previous = store.load_sender_key(group, own)?.map(Cow::into_owned);
    let state = fresh_chain(previous.as_ref())?;
    let message = distribution_of(group, &state);
    let mut record = SenderKeyRecord::default();
    record.push_newest(state);
    store.store_sender_key(group, own, record)?;
    Ok(message)
}

/// Records a chain that `sender` distributed to us. `sender` must be the peer of the
/// authenticated 1:1 session the message arrived on; a message attributed to this
/// device's own address is refused ([`GroupError::OwnChain`]).
///
/// A chain id we already hold with the same signing key is left as it is (a repeated
/// distribution never moves a chain backwards); with a different signing key it is
/// refused with [`GroupError::ChainConflict`]. A chain at iteration `u32::MAX` (already
/// exhausted: nothing on it could be read) is refused with
/// [`GroupError::ChainExhausted`]. A new chain becomes the newest state;
/// older chains stay (up to [`crate::limits::MAX_SENDER_KEY_STATES`]) so messages sent
/// on them still decrypt.
pub fn process_distribution<S: SenderKeyStore + ?Sized>(
    store: &mut S,
    sender: &Address,
    message: &SenderKeyDistributionMessage,
) -> Result<(), GroupError> {
    if message.iteration > MAX_CHAIN_COUNTER {
        return Err(GroupError::ChainExhausted {
            chain_id: message.chain_id,
        });
    }
    let mut record = store
        .load_sender_key(&message.group, sender)?
        .map(Cow::into_owned)
        .unwrap_or_default();
    if record.states.iter().any(|s| s.signing_secret.is_some()) {
        return Err(GroupError::OwnChain);
    }
    if let Some(existing) = record.state(message.chain_id) {
        if existing.signing_public == message.signing_public {
            return Ok(());
        }
        return Err(GroupError::ChainConflict {
            chain_id: message.chain_id,
        });
    }
    record.push_newest(SenderChainState {
        chain_id: message.chain_id,
        chain: ChainKey::new(*message.chain_key, message.iteration),
        signing_public: message.signing_public,
        signing_secret: None,
        skipped: VecDeque::new(),
    });
    store.store_sender_key(&message.group, sender, record)?;
    Ok(())
}

/// Encrypts `plaintext` to `group` on this device's sending chain and commits the
/// advanced chain **before** returning, so a message key is never used twice.
///
/// Fails with [`GroupError::NoSenderKey`] if this device has no chain yet (call
/// [`create_distribution`] and distribute it first).
pub fn encrypt<S: SenderKeyStore + ?Sized>(
    store: &mut S,
    group: &GroupId,
    own: &Address,
    plaintext: &[u8],
) -> Result<Vec<u8>, GroupError> {
    if plaintext.len() > MAX_PLAINTEXT_LEN {
        return Err(CryptoError::PlaintextTooLong {
            length: plaintext.len(),
            limit: MAX_PLAINTEXT_LEN,
        }
        .into());
    }
    let no_key = || GroupError::NoSenderKey {
        sender: own.clone(),
    };
    let (out, update) = {
        let record = store.load_sender_key(group, own)?.ok_or_else(no_key)?;
        let state = record.newest().ok_or_else(no_key)?;
        let signing = state.signing_secret.as_ref().ok_or_else(no_key)?;
        let iteration = state.chain.index();
        let (seed, next) = state.chain.step().map_err(|_| GroupError::ChainExhausted {
            chain_id: state.chain_id,
        })?;
        let mut w = Writer::new(
            kind::SENDER_KEY_MESSAGE,
            HEADER_LEN + plaintext.len() + 16 + SIGNATURE_LEN,
        );
        w.u32(state.chain_id);
        w.u32(iteration);
        let mut buf = w.into_vec();
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&buf[..HEADER_LEN]);
        buf.extend_from_slice(plaintext);
        seed.expand(SENDER_KEY_INFO)
            .seal(&header, &mut buf, HEADER_LEN);
        let signature = signing.sign(&buf);
        buf.extend_from_slice(&signature.to_bytes());
        (
            buf,
            SenderKeyUpdate::advanced(state.chain_id, iteration, next, Vec::new()),
        )
    };
    store.update_sender_key(group, own, &update)?;
    Ok(out)
}

/// A decrypted group message and the chain update that goes with it, not yet
/// committed. Dropping it without [`commit`] leaves the state as it was.
pub struct GroupDecrypted {
    plaintext: Zeroizing<Vec<u8>>,
    group: GroupId,
    sender: Address,
    update: SenderKeyUpdate,
}

impl GroupDecrypted {
    /// The plaintext.
    pub fn plaintext(&self) -> &[u8] {
        &self.plaintext
    }

    /// The sender device.
    pub fn sender(&self) -> &Address {
        &self.sender
    }

    /// Splits into the plaintext and the update to apply with
    /// [`SenderKeyStore::update_sender_key`].
    pub fn into_parts(self) -> (Zeroizing<Vec<u8>>, SenderKeyUpdate) {
        (self.plaintext, self.update)
    }
}

impl core::fmt::Debug for GroupDecrypted {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GroupDecrypted")
            .field("plaintext_len", &self.plaintext.len())
            .field("group", &self.group)
            .field("sender", &self.sender)
            .field("update", &self.update)
            .finish()
    }
}

/// Decrypts a group message from `sender` without writing anything.
///
/// Order of checks: decode; the chain id must name a chain we hold for this sender
/// ([`GroupError::UnknownChain`]); the signature must verify under that
/// chain's key ([`GroupError::BadSignature`]); an iteration below the chain must have a
/// stored skipped key ([`GroupError::DuplicateMessage`]); one above must be within
/// [`crate::limits::MAX_FORWARD_JUMP`] ([`GroupError::TooFarAhead`]); then the AEAD
/// ([`GroupError::InvalidMessage`]).
pub fn decrypt<S: SenderKeyStore + ?Sized>(
    store: &S,
    group: &GroupId,
    sender: &Address,
    bytes: &[u8],
) -> Result<GroupDecrypted, GroupError> {
    let message = SenderKeyMessage::parse(bytes)?;
    let record = store
        .load_sender_key(group, sender)?
        .ok_or_else(|| GroupError::NoSenderKey {
            sender: sender.clone(),
        })?;
    let state = record
        .state(message.chain_id)
        .ok_or(GroupError::UnknownChain {
            chain_id: message.chain_id,
        })?;
    let signature = Signature::from_bytes(&message.signature);
    // RFC 8032 verification with canonical `s` (dalek's `verify`). Small-order signing
    // keys were refused when the distribution message was decoded; the rest of
    // `verify_strict` (small-order `R`) guards signature non-malleability, which nothing
    // here depends on (duplicates are caught by the iteration), for ≈ 30 % more time.
    state
        .signing_public
        .verify(message.signed, &signature)
        .map_err(|_| GroupError::BadSignature)?;

    let iteration = message.iteration;
    let (plaintext, update) = if iteration < state.chain.index() {
        let pos = state
            .find_skipped(iteration)
            .ok_or(GroupError::DuplicateMessage { iteration })?;
        (
            open(&state.skipped[pos], &message)?,
            SenderKeyUpdate::used_skipped(state.chain_id, iteration),
        )
    } else {
        let advance =
            advance_to(&state.chain, iteration, MAX_FORWARD_JUMP).map_err(|e| match e {
                SessionError::TooFarAhead { jump, limit, .. } => GroupError::TooFarAhead {
                    iteration,
                    jump,
                    limit,
                },
                _ => GroupError::InvalidMessage,
            })?;
        let plaintext = open(&advance.key, &message)?;
        // Message keys of the skipped iterations are derived only after the AEAD passed.
        let skipped = advance.skipped().map_err(|_| GroupError::InvalidMessage)?;
        let from = state.chain.index();
        (
            plaintext,
            SenderKeyUpdate::advanced(state.chain_id, from, advance.next, skipped),
        )
    };
    Ok(GroupDecrypted {
        plaintext,
        group: *group,
        sender: sender.clone(),
        update,
    })
}

/// Opens the AEAD of a signature-checked group message.
fn open(
    seed: &MessageKeySeed,
    message: &SenderKeyMessage<'_>,
) -> Result<Zeroizing<Vec<u8>>, GroupError> {
    seed.expand(SENDER_KEY_INFO)
        .open(message.header, message.ciphertext)
        .ok_or(GroupError::InvalidMessage)
}

/// Applies a decryption's update. Fails with [`StoreError::Conflict`] (changing
/// nothing) if the same state was already advanced by another decryption.
pub fn commit<S: SenderKeyStore + ?Sized>(
    store: &mut S,
    decrypted: GroupDecrypted,
) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    store.update_sender_key(&decrypted.group, &decrypted.sender, &decrypted.update)?;
    Ok(decrypted.plaintext)
}

/// [`decrypt`], then [`commit`]; returns the plaintext only once the update is stored.
pub fn decrypt_and_commit<S: SenderKeyStore + ?Sized>(
    store: &mut S,
    group: &GroupId,
    sender: &Address,
    bytes: &[u8],
) -> Result<Zeroizing<Vec<u8>>, GroupError> {
    let decrypted = decrypt(store, group, sender, bytes)?;
    Ok(commit(store, decrypted)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityKeyPair;
    use crate::store::InMemoryStore;

    /// Known-answer vector (also in `docs/protocol.md` §Groups): group id `0x11 × 32`,
    /// chain id `0x01020304`, chain key `0x22 × 32` at iteration 5, signing seed
    /// `0x33 × 32`, plaintext `"hello group"`. Reproduced independently from the
    /// specification with Python's `cryptography` package.
    const DISTRIBUTION_HEX: &str = concat!(
        "01041111111111111111111111111111111111111111111111111111111111111111",
        "01020304000000052222222222222222222222222222222222222222222222222222",
        "22222222222217cb79fb2b4120f2b1ec65e4198d6e08b28e813feb01e4a400839b85",
        "e18080ce"
    );
    const MESSAGE_HEX: &str = concat!(
        "010301020304000000058ea1fd7ba64078a7db68eef2a5f259832542c53d41f0cf",
        "3873952ebe40bce4d7f81cc5ff95bbf2e58a08aba94e76fa54cfe1a7e2ab76e405",
        "bdfec3ed19b7e76f4ebafb82345b37a96c3b3669c7a278c3759a7e4bbe54269400",
        "140e",
    );

    fn vector_store() -> (GroupId, Address, InMemoryStore) {
        let group = GroupId::from_bytes([0x11; 32]);
        let own = Address::new("alice", 1).unwrap();
        let mut store = InMemoryStore::new(IdentityKeyPair::generate().unwrap(), 1);
        let signing = SigningKey::from_bytes(&[0x33; 32]);
        let mut record = SenderKeyRecord::default();
        record.push_newest(SenderChainState {
            chain_id: 0x0102_0304,
            chain: ChainKey::new([0x22; 32], 5),
            signing_public: signing.verifying_key(),
            signing_secret: Some(signing),
            skipped: VecDeque::new(),
        });
        store.store_sender_key(&group, &own, record).unwrap();
        (group, own, store)
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn known_answer_vector() {
        let (group, own, mut store) = vector_store();
        let skdm = create_distribution(&mut store, &group, &own).unwrap();
        let message = encrypt(&mut store, &group, &own, b"hello group").unwrap();
        assert_eq!(hex(&skdm.encode()), DISTRIBUTION_HEX);
        assert_eq!(hex(&message), MESSAGE_HEX);

        let mut receiver = InMemoryStore::new(IdentityKeyPair::generate().unwrap(), 2);
        process_distribution(&mut receiver, &own, &skdm).unwrap();
        let plaintext = decrypt_and_commit(&mut receiver, &group, &own, &message).unwrap();
        assert_eq!(&plaintext[..], b"hello group");
    }

    #[test]
    fn parse_refuses_short_long_and_mistyped_messages() {
        let (group, own, mut store) = vector_store();
        let message = encrypt(&mut store, &group, &own, b"").unwrap();
        assert_eq!(message.len(), super::super::message::MIN_MESSAGE_LEN);
        assert!(SenderKeyMessage::parse(&message).is_ok());
        assert!(SenderKeyMessage::parse(&message[..message.len() - 1]).is_err());
        let mut wrong = message.clone();
        wrong[1] = kind::SENDER_KEY_DISTRIBUTION;
        assert!(matches!(
            SenderKeyMessage::parse(&wrong),
            Err(crate::error::DecodeError::WrongType { .. })
        ));
        wrong[1] = kind::SENDER_KEY_MESSAGE;
        wrong[0] = 2;
        assert!(SenderKeyMessage::parse(&wrong).is_err());
    }

    #[test]
    fn our_own_chain_cannot_be_displaced() {
        let (group, own, mut store) = vector_store();
        let mut other = InMemoryStore::new(IdentityKeyPair::generate().unwrap(), 3);
        let foreign = create_distribution(&mut other, &group, &own).unwrap();
        assert!(matches!(
            process_distribution(&mut store, &own, &foreign),
            Err(GroupError::OwnChain)
        ));
        assert!(encrypt(&mut store, &group, &own, b"still mine").is_ok());
    }

    #[test]
    fn update_from_a_stale_state_conflicts() {
        let (group, own, mut store) = vector_store();
        let record = store
            .load_sender_key(&group, &own)
            .unwrap()
            .unwrap()
            .into_owned();
        let state = record.newest().unwrap();
        let (_, next) = state.chain.step().unwrap();
        let update = SenderKeyUpdate::advanced(state.chain_id, 4, next, Vec::new());
        assert!(matches!(
            store.update_sender_key(&group, &own, &update),
            Err(StoreError::Conflict { .. })
        ));
        let missing = SenderKeyUpdate::used_skipped(state.chain_id, 1);
        assert!(store.update_sender_key(&group, &own, &missing).is_err());
        assert_eq!(
            store
                .load_sender_key(&group, &own)
                .unwrap()
                .unwrap()
                .encode(),
            record.encode()
        );
    }
}
