//! Shared helpers for the integration tests: parties with in-memory stores.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use signal_core::prekey::{KemPreKeyRecord, OneTimePreKeyRecord, PreKeyBundle, SignedPreKeyRecord};
use signal_core::store::{
    InMemoryStore, KemPreKeyStore, PreKeyStore, SessionStore, SignedPreKeyStore,
};
use signal_core::{Address, IdentityKeyPair, session};

pub const NOW: u64 = 1_750_000_000;

pub struct Party {
    pub store: InMemoryStore,
    pub addr: Address,
    pub identity: IdentityKeyPair,
    pub registration_id: u32,
    next_prekey_id: u32,
}

impl Party {
    pub fn new(name: &str, registration_id: u32) -> Self {
        let identity = IdentityKeyPair::generate().unwrap();
        let mut store = InMemoryStore::new(identity.clone(), registration_id);
        let spk = SignedPreKeyRecord::generate(&identity, registration_id, 1, NOW).unwrap();
        store.store_signed_prekey(&spk).unwrap();
        let last_resort = KemPreKeyRecord::generate(&identity, 1_000_000, NOW, true).unwrap();
        store.store_kem_prekey(&last_resort).unwrap();
        Self {
            store,
            addr: Address::new(name, 1).unwrap(),
            identity,
            registration_id,
            next_prekey_id: 1,
        }
    }

    /// A bundle with fresh one-time prekeys (EC and KEM) stored on this side.
    pub fn bundle(&mut self) -> PreKeyBundle {
        let id = self.next_prekey_id;
        self.next_prekey_id += 1;
        let opk = OneTimePreKeyRecord::generate(&self.identity, id, NOW).unwrap();
        let kem = KemPreKeyRecord::generate(&self.identity, id, NOW, false).unwrap();
        self.store.store_prekey(&opk).unwrap();
        self.store.store_kem_prekey(&kem).unwrap();
        self.bundle_with(Some(opk.public().clone()), kem.public().clone())
    }

    /// A bundle without a one-time EC prekey, using the last-resort KEM prekey.
    pub fn last_resort_bundle(&self) -> PreKeyBundle {
        let kem = self.store.load_kem_prekey(1_000_000).unwrap().unwrap();
        self.bundle_with(None, kem.public().clone())
    }

    fn bundle_with(
        &self,
        opk: Option<signal_core::prekey::OneTimePreKeyPublic>,
        kem: signal_core::prekey::KemPreKeyPublic,
    ) -> PreKeyBundle {
        let spk = self.store.load_signed_prekey(1).unwrap().unwrap();
        PreKeyBundle {
            registration_id: self.registration_id,
            identity: *self.identity.public(),
            signed_prekey: spk.public().clone(),
            one_time_prekey: opk,
            kem_prekey: kem,
        }
    }

    pub fn encrypt(&mut self, to: &Address, msg: &[u8]) -> Vec<u8> {
        session::encrypt(&mut self.store, to, msg).unwrap()
    }

    pub fn decrypt(
        &mut self,
        from: &Address,
        wire: &[u8],
    ) -> Result<Vec<u8>, signal_core::SessionError> {
        session::decrypt_and_commit(&mut self.store, from, wire).map(|p| p.to_vec())
    }

    /// The serialized session record with `peer` (empty if none).
    pub fn snapshot(&self, peer: &Address) -> Vec<u8> {
        self.store
            .load_session(peer)
            .unwrap()
            .map(|r| r.encode().to_vec())
            .unwrap_or_default()
    }
}

/// Alice starts a session with Bob from a fresh bundle.
pub fn pair() -> (Party, Party) {
    let mut alice = Party::new("alice", 11);
    let mut bob = Party::new("bob", 22);
    let bundle = bob.bundle().verify().unwrap();
    session::initiate(&mut alice.store, &bob.addr, &bundle).unwrap();
    (alice, bob)
}

/// An established session: Alice sent, Bob replied.
pub fn established() -> (Party, Party) {
    let (mut alice, mut bob) = pair();
    let m = alice.encrypt(&bob.addr.clone(), b"hello");
    assert_eq!(bob.decrypt(&alice.addr.clone(), &m).unwrap(), b"hello");
    let r = bob.encrypt(&alice.addr.clone(), b"hi");
    assert_eq!(alice.decrypt(&bob.addr.clone(), &r).unwrap(), b"hi");
    (alice, bob)
}
