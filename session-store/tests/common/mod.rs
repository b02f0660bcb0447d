//! Shared test helpers: real SQLCipher files in temporary directories.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use session_store::{DatabaseKey, RawKey, SqlStore};
use signal_core::prekey::{KemPreKeyRecord, OneTimePreKeyRecord, PreKeyBundle, SignedPreKeyRecord};
use signal_core::store::{InMemoryStore, ProtocolStore};
use signal_core::{Address, IdentityKeyPair, session};

pub const KEY_HEX: &str = "5f3c1a7e9b2d4c6f8a0e1d3b5c7a9f2e4d6c8b0a1f3e5d7c9b2a4f6e8d0c1b3a";

pub fn raw_key() -> RawKey {
    RawKey::new(DatabaseKey::from_hex(KEY_HEX).unwrap())
}

pub fn other_key() -> RawKey {
    RawKey::new(DatabaseKey::from_bytes([0x42; 32]))
}

pub fn alice_addr() -> Address {
    Address::new("alice", 1).unwrap()
}

pub fn bob_addr() -> Address {
    Address::new("bob", 1).unwrap()
}

/// Publishes prekeys (one-time X25519 id 1, one-time KEM id 1, last-resort KEM id 100)
/// into `store` and returns a bundle using the one-time KEM key unless `last_resort`.
pub fn publish<S: ProtocolStore>(
    store: &mut S,
    identity: &IdentityKeyPair,
    registration_id: u32,
    last_resort: bool,
) -> PreKeyBundle {
    let spk = SignedPreKeyRecord::generate(identity, registration_id, 1, 1_700_000_000).unwrap();
    let opk = OneTimePreKeyRecord::generate(identity, 1, 1_700_000_000).unwrap();
    let kem = KemPreKeyRecord::generate(identity, 1, 1_700_000_000, false).unwrap();
    let lr = KemPreKeyRecord::generate(identity, 100, 1_700_000_000, true).unwrap();
    store.store_signed_prekey(&spk).unwrap();
    store.store_prekey(&opk).unwrap();
    store.store_kem_prekey(&kem).unwrap();
    store.store_kem_prekey(&lr).unwrap();
    PreKeyBundle {
        registration_id,
        identity: *identity.public(),
        signed_prekey: spk.public().clone(),
        one_time_prekey: Some(opk.public().clone()),
        kem_prekey: if last_resort {
            lr.public().clone()
        } else {
            kem.public().clone()
        },
    }
}

/// Bob on a new SQLCipher store at `path`, Alice in memory, with a session both ways
/// (Alice initiated, Bob replied), so Alice's next messages are plain messages.
pub fn established(path: &Path) -> (SqlStore, InMemoryStore) {
    let bob_id = IdentityKeyPair::generate().unwrap();
    let mut bob = SqlStore::create(path, &raw_key(), &bob_id, 2).unwrap();
    let bundle = publish(&mut bob, &bob_id, 2, false);
    let mut alice = InMemoryStore::new(IdentityKeyPair::generate().unwrap(), 1);
    session::initiate(&mut alice, &bob_addr(), &bundle.verify().unwrap()).unwrap();
    let first = session::encrypt(&mut alice, &bob_addr(), b"hello").unwrap();
    assert_eq!(
        &session::decrypt_and_commit(&mut bob, &alice_addr(), &first).unwrap()[..],
        b"hello"
    );
    let reply = session::encrypt(&mut bob, &alice_addr(), b"hi").unwrap();
    assert_eq!(
        &session::decrypt_and_commit(&mut alice, &bob_addr(), &reply).unwrap()[..],
        b"hi"
    );
    (bob, alice)
}

/// Creates the application table the tests persist plaintext into.
pub fn create_inbox(store: &mut SqlStore) {
    store
        .write(|tx| {
            tx.execute_batch(
                "CREATE TABLE IF NOT EXISTS app_inbox (id INTEGER PRIMARY KEY, body BLOB NOT NULL)",
            )
            .map_err(|e| signal_core::StoreError::Backend(Box::new(e)))
        })
        .unwrap();
}

/// Decrypts `wire` from Alice and stores it as inbox message `id` in the same
/// transaction as the session commit.
pub fn receive(
    store: &mut SqlStore,
    id: u64,
    wire: &[u8],
) -> Result<(), signal_core::SessionError> {
    let (plaintext, commit) = session::decrypt(&*store, &alice_addr(), wire)?.into_parts();
    store.commit_with(commit, |tx| {
        tx.execute(
            "INSERT INTO app_inbox (id, body) VALUES (?1, ?2)",
            rusqlite_params(id, &plaintext),
        )
        .map_err(|e| signal_core::StoreError::Backend(Box::new(e)))
    })?;
    Ok(())
}

fn rusqlite_params(id: u64, body: &[u8]) -> (i64, &[u8]) {
    (i64::try_from(id).unwrap(), body)
}

pub fn inbox_ids(store: &SqlStore) -> Vec<u64> {
    let mut stmt = store
        .connection()
        .prepare("SELECT id FROM app_inbox ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| r.get::<_, i64>(0))
        .unwrap()
        .map(|r| u64::try_from(r.unwrap()).unwrap())
        .collect()
}
