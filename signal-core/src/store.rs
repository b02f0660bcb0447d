//! Store traits and the in-memory implementation.
//!
//! All session writes go through [`ProtocolStore::commit`], which must apply a
//! [`SessionCommit`] atomically: the new session record, the identity learned on first
//! use, the consumed one-time prekeys and the last-resort KEM use either all persist or
//! none do. Decryption ([`crate::session::decrypt`]) only reads; the caller commits,
//! ideally in the same transaction as persisting the plaintext, so a crash can neither
//! lose a message nor leave a message key usable twice.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use crate::address::Address;
use crate::error::{OneTimePreKeyKind, StoreError};
use crate::group::{GroupId, SenderKeyRecord, SenderKeyUpdate};
use crate::identity::{IdentityKey, IdentityKeyPair};
use crate::keys::DhPublicKey;
use crate::prekey::{KemPreKeyRecord, OneTimePreKeyRecord, PreKeyId, SignedPreKeyRecord};
use crate::session::SessionRecord;

/// The local identity and the identities of peers (trust on first use).
pub trait IdentityStore {
    /// This device's identity key pair.
    fn local_identity(&self) -> Result<IdentityKeyPair, StoreError>;
    /// This device's registration id.
    fn local_registration_id(&self) -> Result<u32, StoreError>;
    /// The identity recorded for a peer device, if any.
    fn remote_identity(&self, address: &Address) -> Result<Option<IdentityKey>, StoreError>;
    /// Records (or replaces) a peer's identity. The library calls this only through
    /// [`ProtocolStore::commit`] on first contact; a caller calls it directly to accept
    /// a changed identity after [`crate::SessionError::UntrustedIdentity`].
    fn save_identity(
        &mut self,
        address: &Address,
        identity: &IdentityKey,
    ) -> Result<(), StoreError>;
}

/// One-time X25519 prekeys.
pub trait PreKeyStore {
    /// Loads a one-time prekey.
    fn load_prekey(&self, id: PreKeyId) -> Result<Option<OneTimePreKeyRecord>, StoreError>;
    /// Stores a one-time prekey.
    fn store_prekey(&mut self, record: &OneTimePreKeyRecord) -> Result<(), StoreError>;
    /// Deletes a one-time prekey (no error if absent).
    fn remove_prekey(&mut self, id: PreKeyId) -> Result<(), StoreError>;
    /// Number of one-time prekeys held.
    fn prekey_count(&self) -> Result<usize, StoreError>;
}

/// Signed X25519 prekeys.
pub trait SignedPreKeyStore {
    /// Loads a signed prekey.
    fn load_signed_prekey(&self, id: PreKeyId) -> Result<Option<SignedPreKeyRecord>, StoreError>;
    /// Stores a signed prekey.
    fn store_signed_prekey(&mut self, record: &SignedPreKeyRecord) -> Result<(), StoreError>;
    /// Deletes a signed prekey (no error if absent).
    fn remove_signed_prekey(&mut self, id: PreKeyId) -> Result<(), StoreError>;
    /// Ids of all signed prekeys held.
    fn signed_prekey_ids(&self) -> Result<Vec<PreKeyId>, StoreError>;
}

/// ML-KEM-1024 prekeys and the replay record of last-resort uses.
pub trait KemPreKeyStore {
    /// Loads a KEM prekey.
    fn load_kem_prekey(&self, id: PreKeyId) -> Result<Option<KemPreKeyRecord>, StoreError>;
    /// Stores a KEM prekey.
    fn store_kem_prekey(&mut self, record: &KemPreKeyRecord) -> Result<(), StoreError>;
    /// Deletes a KEM prekey and any replay records of it (no error if absent).
    fn remove_kem_prekey(&mut self, id: PreKeyId) -> Result<(), StoreError>;
    /// Ids of all KEM prekeys held.
    fn kem_prekey_ids(&self) -> Result<Vec<PreKeyId>, StoreError>;
    /// Whether a pre-key message with this base key already used last-resort KEM
    /// prekey `id`.
    fn last_resort_base_key_seen(
        &self,
        id: PreKeyId,
        base_key: &DhPublicKey,
    ) -> Result<bool, StoreError>;
}

/// Session records, one per peer device.
pub trait SessionStore {
    /// Loads the record for a peer device. Returns an owned copy: the caller works on it
    /// and commits a new version.
    fn load_session(&self, address: &Address) -> Result<Option<SessionRecord>, StoreError>;
    /// Device ids of `user` with a session record.
    fn session_devices(&self, user: &str) -> Result<Vec<u32>, StoreError>;
    /// Deletes a session record (no error if absent).
    fn delete_session(&mut self, address: &Address) -> Result<(), StoreError>;
}

/// Sender-key records, one per (group, sender device). See `docs/protocol.md`
/// §Groups.
///
/// Group decryption only reads ([`SenderKeyStore::load_sender_key`]); the change it
/// makes is a small [`SenderKeyUpdate`] applied by
/// [`SenderKeyStore::update_sender_key`], so a store that keeps records in memory never
/// copies a whole record per message.
pub trait SenderKeyStore {
    /// The record for `sender` in `group`: borrowed if the store holds it in memory,
    /// owned (decoded) otherwise.
    fn load_sender_key(
        &self,
        group: &GroupId,
        sender: &Address,
    ) -> Result<Option<Cow<'_, SenderKeyRecord>>, StoreError>;
    /// Stores (or replaces) the record for `sender` in `group`.
    fn store_sender_key(
        &mut self,
        group: &GroupId,
        sender: &Address,
        record: SenderKeyRecord,
    ) -> Result<(), StoreError>;
    /// Applies `update` to the stored record atomically. Fails with
    /// [`StoreError::Conflict`] (changing nothing) if the record moved on since the
    /// update was computed, so one message key is never used twice.
    ///
    /// The default loads, applies and stores; stores override it to update in place.
    fn update_sender_key(
        &mut self,
        group: &GroupId,
        sender: &Address,
        update: &SenderKeyUpdate,
    ) -> Result<(), StoreError> {
        let mut record = self
            .load_sender_key(group, sender)?
            .ok_or(StoreError::Conflict {
                what: "sender-key record deleted since it was loaded",
            })?
            .into_owned();
        record.apply(update)?;
        self.store_sender_key(group, sender, record)
    }
    /// Deletes the record for `sender` in `group` (no error if absent).
    fn delete_sender_key(&mut self, group: &GroupId, sender: &Address) -> Result<(), StoreError>;
    /// Every sender device with a record in `group`, sorted.
    fn sender_key_senders(&self, group: &GroupId) -> Result<Vec<Address>, StoreError>;
}

/// Everything a session operation changes, applied atomically by
/// [`ProtocolStore::commit`].
#[derive(Debug)]
#[non_exhaustive]
pub struct SessionCommit {
    /// The peer device.
    pub address: Address,
    /// The new record for the peer device.
    pub record: SessionRecord,
    /// The generation of the stored record this commit was computed from (0 if there
    /// was none). A store must refuse the commit with [`StoreError::Conflict`] if the
    /// stored generation differs, so two decryptions computed from the same state cannot
    /// both be committed.
    pub expected_generation: u64,
    /// A peer identity seen for the first time, to record.
    pub new_identity: Option<IdentityKey>,
    /// A one-time X25519 prekey to delete. The deletion is a compare-and-delete: if the
    /// prekey is no longer stored (another commit consumed it first), a store must refuse
    /// the whole commit with [`StoreError::PreKeyAlreadyConsumed`], changing nothing.
    pub consumed_prekey: Option<PreKeyId>,
    /// A one-time KEM prekey to delete, refused like [`SessionCommit::consumed_prekey`]
    /// if it is no longer stored.
    pub consumed_kem_prekey: Option<PreKeyId>,
    /// A last-resort KEM prekey use to record (id, initiator base key). A store must
    /// refuse the commit with [`StoreError::Conflict`] if the pair is already recorded.
    pub last_resort_use: Option<(PreKeyId, DhPublicKey)>,
}

impl SessionCommit {
    pub(crate) fn record_only(
        address: Address,
        record: SessionRecord,
        expected_generation: u64,
    ) -> Self {
        Self {
            address,
            record,
            expected_generation,
            new_identity: None,
            consumed_prekey: None,
            consumed_kem_prekey: None,
            last_resort_use: None,
        }
    }
}

/// A complete protocol store.
pub trait ProtocolStore:
    IdentityStore + PreKeyStore + SignedPreKeyStore + KemPreKeyStore + SessionStore
{
    /// Applies `commit` atomically (see [`SessionCommit`]).
    fn commit(&mut self, commit: SessionCommit) -> Result<(), StoreError>;
}

/// A store in memory, for tests, examples and short-lived clients. Nothing persists.
#[derive(Clone)]
pub struct InMemoryStore {
    identity: IdentityKeyPair,
    registration_id: u32,
    remote_identities: HashMap<Address, IdentityKey>,
    prekeys: HashMap<PreKeyId, OneTimePreKeyRecord>,
    signed_prekeys: HashMap<PreKeyId, SignedPreKeyRecord>,
    kem_prekeys: HashMap<PreKeyId, KemPreKeyRecord>,
    last_resort_uses: HashSet<(PreKeyId, DhPublicKey)>,
    sessions: HashMap<Address, SessionRecord>,
    sender_keys: HashMap<GroupId, HashMap<Address, SenderKeyRecord>>,
}

impl InMemoryStore {
    /// An empty store for a device with this identity and registration id.
    pub fn new(identity: IdentityKeyPair, registration_id: u32) -> Self {
        Self {
            identity,
            registration_id,
            remote_identities: HashMap::new(),
            prekeys: HashMap::new(),
            signed_prekeys: HashMap::new(),
            kem_prekeys: HashMap::new(),
            last_resort_uses: HashSet::new(),
            sessions: HashMap::new(),
            sender_keys: HashMap::new(),
        }
    }
}

impl core::fmt::Debug for InMemoryStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("InMemoryStore")
            .field("identity", self.identity.public())
            .field("sessions", &self.sessions.len())
            .field("prekeys", &self.prekeys.len())
            .finish_non_exhaustive()
    }
}

impl IdentityStore for InMemoryStore {
    fn local_identity(&self) -> Result<IdentityKeyPair, StoreError> {
        Ok(self.identity.clone())
    }
    fn local_registration_id(&self) -> Result<u32, StoreError> {
        Ok(self.registration_id)
    }
    fn remote_identity(&self, address: &Address) -> Result<Option<IdentityKey>, StoreError> {
        Ok(self.remote_identities.get(address).copied())
    }
    fn save_identity(
        &mut self,
        address: &Address,
        identity: &IdentityKey,
    ) -> Result<(), StoreError> {
        self.remote_identities.insert(address.clone(), *identity);
        Ok(())
    }
}

impl PreKeyStore for InMemoryStore {
    fn load_prekey(&self, id: PreKeyId) -> Result<Option<OneTimePreKeyRecord>, StoreError> {
        Ok(self.prekeys.get(&id).cloned())
    }
    fn store_prekey(&mut self, record: &OneTimePreKeyRecord) -> Result<(), StoreError> {
        self.prekeys.insert(record.id(), record.clone());
        Ok(())
    }
    fn remove_prekey(&mut self, id: PreKeyId) -> Result<(), StoreError> {
        self.prekeys.remove(&id);
        Ok(())
    }
    fn prekey_count(&self) -> Result<usize, StoreError> {
        Ok(self.prekeys.len())
    }
}

impl SignedPreKeyStore for InMemoryStore {
    fn load_signed_prekey(&self, id: PreKeyId) -> Result<Option<SignedPreKeyRecord>, StoreError> {
        Ok(self.signed_prekeys.get(&id).cloned())
    }
    fn store_signed_prekey(&mut self, record: &SignedPreKeyRecord) -> Result<(), StoreError> {
        self.signed_prekeys.insert(record.id(), record.clone());
        Ok(())
    }
    fn remove_signed_prekey(&mut self, id: PreKeyId) -> Result<(), StoreError> {
        self.signed_prekeys.remove(&id);
        Ok(())
    }
    fn signed_prekey_ids(&self) -> Result<Vec<PreKeyId>, StoreError> {
        let mut ids: Vec<_> = self.signed_prekeys.keys().copied().collect();
        ids.sort_unstable();
        Ok(ids)
    }
}

impl KemPreKeyStore for InMemoryStore {
    fn load_kem_prekey(&self, id: PreKeyId) -> Result<Option<KemPreKeyRecord>, StoreError> {
        Ok(self.kem_prekeys.get(&id).cloned())
    }
    fn store_kem_prekey(&mut self, record: &KemPreKeyRecord) -> Result<(), StoreError> {
        self.kem_prekeys.insert(record.id(), record.clone());
        Ok(())
    }
    fn remove_kem_prekey(&mut self, id: PreKeyId) -> Result<(), StoreError> {
        self.kem_prekeys.remove(&id);
        self.last_resort_uses.retain(|(k, _)| *k != id);
        Ok(())
    }
    fn kem_prekey_ids(&self) -> Result<Vec<PreKeyId>, StoreError> {
        let mut ids: Vec<_> = self.kem_prekeys.keys().copied().collect();
        ids.sort_unstable();
        Ok(ids)
    }
    fn last_resort_base_key_seen(
        &self,
        id: PreKeyId,
        base_key: &DhPublicKey,
    ) -> Result<bool, StoreError> {
        Ok(self.last_resort_uses.contains(&(id, *base_key)))
    }
}

impl SessionStore for InMemoryStore {
    fn load_session(&self, address: &Address) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self.sessions.get(address).cloned())
    }
    fn session_devices(&self, user: &str) -> Result<Vec<u32>, StoreError> {
        let mut ids: Vec<_> = self
            .sessions
            .keys()
            .filter(|a| a.user() == user)
            .map(Address::device)
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }
    fn delete_session(&mut self, address: &Address) -> Result<(), StoreError> {
        self.sessions.remove(address);
        Ok(())
    }
}

impl SenderKeyStore for InMemoryStore {
    fn load_sender_key(
        &self,
        group: &GroupId,
        sender: &Address,
    ) -> Result<Option<Cow<'_, SenderKeyRecord>>, StoreError> {
        Ok(self
            .sender_keys
            .get(group)
            .and_then(|g| g.get(sender))
            .map(Cow::Borrowed))
    }
    fn store_sender_key(
        &mut self,
        group: &GroupId,
        sender: &Address,
        record: SenderKeyRecord,
    ) -> Result<(), StoreError> {
        self.sender_keys
            .entry(*group)
            .or_default()
            .insert(sender.clone(), record);
        Ok(())
    }
    fn update_sender_key(
        &mut self,
        group: &GroupId,
        sender: &Address,
        update: &SenderKeyUpdate,
    ) -> Result<(), StoreError> {
        // `apply` checks everything before it changes anything, so in place is atomic.
        self.sender_keys
            .get_mut(group)
            .and_then(|g| g.get_mut(sender))
            .ok_or(StoreError::Conflict {
                what: "sender-key record deleted since it was loaded",
            })?
            .apply(update)
    }
    fn delete_sender_key(&mut self, group: &GroupId, sender: &Address) -> Result<(), StoreError> {
        if let Some(g) = self.sender_keys.get_mut(group) {
            g.remove(sender);
            if g.is_empty() {
                self.sender_keys.remove(group);
            }
        }
        Ok(())
    }
    fn sender_key_senders(&self, group: &GroupId) -> Result<Vec<Address>, StoreError> {
        let mut senders: Vec<_> = self
            .sender_keys
            .get(group)
            .map(|g| g.keys().cloned().collect())
            .unwrap_or_default();
        senders.sort_unstable();
        Ok(senders)
    }
}

impl ProtocolStore for InMemoryStore {
    fn commit(&mut self, commit: SessionCommit) -> Result<(), StoreError> {
        // Check everything first, then apply: the commit is all-or-nothing.
        let stored = self
            .sessions
            .get(&commit.address)
            .map_or(0, SessionRecord::generation);
        if stored != commit.expected_generation {
            return Err(StoreError::Conflict {
                what: "session record changed since it was loaded",
            });
        }
        if let Some(use_) = &commit.last_resort_use
            && self.last_resort_uses.contains(use_)
        {
            return Err(StoreError::Conflict {
                what: "last-resort KEM prekey already used with this base key",
            });
        }
        if let Some(id) = commit.consumed_prekey
            && !self.prekeys.contains_key(&id)
        {
            return Err(StoreError::PreKeyAlreadyConsumed {
                kind: OneTimePreKeyKind::X25519,
                id,
            });
        }
        if let Some(id) = commit.consumed_kem_prekey
            && !self.kem_prekeys.contains_key(&id)
        {
            return Err(StoreError::PreKeyAlreadyConsumed {
                kind: OneTimePreKeyKind::Kem,
                id,
            });
        }
        if let Some(identity) = commit.new_identity {
            self.remote_identities
                .insert(commit.address.clone(), identity);
        }
        if let Some(id) = commit.consumed_prekey {
            self.prekeys.remove(&id);
        }
        if let Some(id) = commit.consumed_kem_prekey {
            self.kem_prekeys.remove(&id);
        }
        if let Some(use_) = commit.last_resort_use {
            self.last_resort_uses.insert(use_);
        }
        self.sessions.insert(commit.address, commit.record);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::prekey::PreKeyBundle;
    use crate::session;

    /// Bob's store holding a signed prekey, a one-time KEM prekey and (if `x25519`) a
    /// one-time X25519 prekey, all id 1; and the bundle offering them.
    fn bob(x25519: bool) -> (InMemoryStore, PreKeyBundle) {
        let id = IdentityKeyPair::generate().unwrap();
        let mut store = InMemoryStore::new(id.clone(), 2);
        let spk = SignedPreKeyRecord::generate(&id, 2, 1, 1_700_000_000).unwrap();
        let opk = OneTimePreKeyRecord::generate(&id, 1, 1_700_000_000).unwrap();
        let kem = KemPreKeyRecord::generate(&id, 1, 1_700_000_000, false).unwrap();
        store.store_signed_prekey(&spk).unwrap();
        store.store_kem_prekey(&kem).unwrap();
        if x25519 {
            store.store_prekey(&opk).unwrap();
        }
        let bundle = PreKeyBundle {
            registration_id: 2,
            identity: *id.public(),
            signed_prekey: spk.public().clone(),
            one_time_prekey: x25519.then(|| opk.public().clone()),
            kem_prekey: kem.public().clone(),
        };
        (store, bundle)
    }

    /// `user`'s first (pre-key) message to Bob from `bundle`.
    fn first_message(bundle: &PreKeyBundle, user: &str) -> (Address, Vec<u8>) {
        let mut store = InMemoryStore::new(IdentityKeyPair::generate().unwrap(), 5);
        let bob = Address::new("bob", 1).unwrap();
        session::initiate(&mut store, &bob, &bundle.clone().verify().unwrap()).unwrap();
        let message = session::encrypt(&mut store, &bob, b"hi").unwrap();
        (Address::new(user, 1).unwrap(), message)
    }

    /// Everything the store holds, comparable.
    fn snapshot(s: &InMemoryStore) -> Vec<String> {
        let mut out: Vec<String> = s
            .sessions
            .iter()
            .map(|(a, r)| format!("session {a} {:?}", r.encode()))
            .chain(s.remote_identities.keys().map(|a| format!("identity {a}")))
            .chain(s.prekeys.keys().map(|id| format!("prekey {id}")))
            .chain(s.kem_prekeys.keys().map(|id| format!("kem {id}")))
            .chain(s.last_resort_uses.iter().map(|(id, _)| format!("use {id}")))
            .collect();
        out.sort();
        out
    }

    /// Two pre-key messages from different senders that used the same one-time prekeys
    /// (the relay handed the bundle out twice), decrypted from the same state as two
    /// processes would: the first commit wins, the second is refused and changes nothing.
    #[test]
    fn a_one_time_prekey_is_consumed_by_one_commit_only() {
        for (x25519, kind) in [
            (true, OneTimePreKeyKind::X25519),
            (false, OneTimePreKeyKind::Kem),
        ] {
            let (mut bob, bundle) = bob(x25519);
            let (alice, m1) = first_message(&bundle, "alice");
            let (carol, m2) = first_message(&bundle, "carol");
            let (_, c1) = session::decrypt(&bob, &alice, &m1).unwrap().into_parts();
            let (_, c2) = session::decrypt(&bob, &carol, &m2).unwrap().into_parts();
            bob.commit(c1).unwrap();
            let before = snapshot(&bob);
            match bob.commit(c2) {
                Err(StoreError::PreKeyAlreadyConsumed { kind: k, id: 1 }) if k == kind => {}
                other => panic!("expected PreKeyAlreadyConsumed {kind}, got {other:?}"),
            }
            assert_eq!(snapshot(&bob), before);
            assert!(bob.load_session(&carol).unwrap().is_none());
            assert!(bob.remote_identity(&carol).unwrap().is_none());
        }
    }
}
