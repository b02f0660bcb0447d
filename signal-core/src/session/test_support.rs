//! Two parties with an established session, for unit tests that reach into session
//! state (chain positions no public API can reach quickly).

use crate::prekey::{KemPreKeyRecord, OneTimePreKeyRecord, PreKeyBundle, SignedPreKeyRecord};
use crate::store::{
    InMemoryStore, KemPreKeyStore, PreKeyStore, ProtocolStore, SessionCommit, SessionStore,
    SignedPreKeyStore,
};
use crate::{Address, IdentityKeyPair, session};

use super::SessionRecord;

/// One side of a conversation.
pub(crate) struct Side {
    pub(crate) store: InMemoryStore,
    pub(crate) addr: Address,
    identity: IdentityKeyPair,
    next_prekey_id: u32,
}

impl Side {
    pub(crate) fn new(name: &str, registration_id: u32) -> Self {
        let identity = IdentityKeyPair::generate().unwrap();
        let mut store = InMemoryStore::new(identity.clone(), registration_id);
        let spk = SignedPreKeyRecord::generate(&identity, registration_id, 1, 0).unwrap();
        store.store_signed_prekey(&spk).unwrap();
        Self {
            store,
            addr: Address::new(name, 1).unwrap(),
            identity,
            next_prekey_id: 1,
        }
    }

    /// A verified bundle with fresh one-time prekeys stored on this side.
    pub(crate) fn bundle(&mut self) -> crate::prekey::VerifiedBundle {
        let id = self.next_prekey_id;
        self.next_prekey_id += 1;
        let opk = OneTimePreKeyRecord::generate(&self.identity, id, 0).unwrap();
        let kem = KemPreKeyRecord::generate(&self.identity, id, 0, false).unwrap();
        self.store.store_prekey(&opk).unwrap();
        self.store.store_kem_prekey(&kem).unwrap();
        let spk = self.store.load_signed_prekey(1).unwrap().unwrap();
        PreKeyBundle {
            registration_id: 2,
            identity: *self.identity.public(),
            signed_prekey: spk.public().clone(),
            one_time_prekey: Some(opk.public().clone()),
            kem_prekey: kem.public().clone(),
        }
        .verify()
        .unwrap()
    }

    pub(crate) fn encrypt(&mut self, to: &Address, plaintext: &[u8]) -> Vec<u8> {
        session::encrypt(&mut self.store, to, plaintext).unwrap()
    }

    pub(crate) fn decrypt(
        &mut self,
        from: &Address,
        wire: &[u8],
    ) -> Result<Vec<u8>, crate::SessionError> {
        session::decrypt_and_commit(&mut self.store, from, wire).map(|p| p.to_vec())
    }

    pub(crate) fn record(&self, peer: &Address) -> SessionRecord {
        self.store.load_session(peer).unwrap().unwrap()
    }

    pub(crate) fn snapshot(&self, peer: &Address) -> Vec<u8> {
        self.record(peer).encode().to_vec()
    }

    /// Changes the stored record with `edit` (the test plays a party that edits its own
    /// state, or sets up a position no quick exchange reaches).
    pub(crate) fn edit(&mut self, peer: &Address, edit: impl FnOnce(&mut SessionRecord)) {
        let mut record = self.record(peer);
        let expected = record.generation();
        edit(&mut record);
        record.bump_generation();
        self.store
            .commit(SessionCommit::record_only(peer.clone(), record, expected))
            .unwrap();
    }
}

/// Alice and Bob after a first message and a reply.
pub(crate) fn established() -> (Side, Side) {
    let mut alice = Side::new("alice", 1);
    let mut bob = Side::new("bob", 2);
    let bundle = bob.bundle();
    session::initiate(&mut alice.store, &bob.addr, &bundle).unwrap();
    let first = alice.encrypt(&bob.addr, b"hello");
    bob.decrypt(&alice.addr, &first).unwrap();
    let reply = bob.encrypt(&alice.addr, b"hi");
    alice.decrypt(&bob.addr, &reply).unwrap();
    (alice, bob)
}
