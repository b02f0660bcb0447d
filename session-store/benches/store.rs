//! `commit_message`: receive one message on the SQLCipher store — load the session,
//! decrypt, then in one transaction check the generation, save the new state (the
//! message key consumed) and store the plaintext — and `commit_message_plain`, the
//! identical code path and schema on plain SQLite (no key), for a ratio in one run.
//! WAL mode, `synchronous = FULL` (the store's setting: the WAL is synced on every
//! commit). `commit_message_sync_normal` is `commit_message` with the connection
//! switched back to the former `synchronous = NORMAL` (no sync per commit), so the
//! cost of durability is measured in the same run. SQLCipher's memory sanitizing
//! (`cipher_memory_security`) is on for every connection of the process.
//!
//! `cargo bench -p session-store --bench store`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use session_store::{DatabaseKey, RawKey, SqlStore};
use signal_core::prekey::{KemPreKeyRecord, PreKeyBundle, SignedPreKeyRecord};
use signal_core::store::{InMemoryStore, KemPreKeyStore, SignedPreKeyStore};
use signal_core::{Address, IdentityKeyPair, StoreError, session};

fn setup(path: &Path, encrypted: bool) -> (SqlStore, InMemoryStore) {
    let bob_id = IdentityKeyPair::generate().unwrap();
    let mut bob = if encrypted {
        SqlStore::create(
            path,
            &RawKey::new(DatabaseKey::generate().unwrap()),
            &bob_id,
            2,
        )
    } else {
        SqlStore::create_unencrypted(path, &bob_id, 2)
    }
    .unwrap();
    let spk = SignedPreKeyRecord::generate(&bob_id, 2, 1, 0).unwrap();
    let kem = KemPreKeyRecord::generate(&bob_id, 1, 0, true).unwrap();
    bob.store_signed_prekey(&spk).unwrap();
    bob.store_kem_prekey(&kem).unwrap();
    let bundle = PreKeyBundle {
        registration_id: 2,
        identity: *bob_id.public(),
        signed_prekey: spk.public().clone(),
        one_time_prekey: None,
        kem_prekey: kem.public().clone(),
    };
    let (alice_addr, bob_addr) = (
        Address::new("alice", 1).unwrap(),
        Address::new("bob", 1).unwrap(),
    );
    let mut alice = InMemoryStore::new(IdentityKeyPair::generate().unwrap(), 1);
    session::initiate(&mut alice, &bob_addr, &bundle.verify().unwrap()).unwrap();
    let w = session::encrypt(&mut alice, &bob_addr, b"hello").unwrap();
    session::decrypt_and_commit(&mut bob, &alice_addr, &w).unwrap();
    let w = session::encrypt(&mut bob, &alice_addr, b"hi").unwrap();
    session::decrypt_and_commit(&mut alice, &bob_addr, &w).unwrap();
    bob.write(|tx| {
        tx.execute_batch("CREATE TABLE app_inbox (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
            .map_err(|e| StoreError::Backend(Box::new(e)))
    })
    .unwrap();
    (bob, alice)
}

fn bench_commit(c: &mut Criterion, id: &str, encrypted: bool, synchronous: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (mut bob, mut alice) = setup(&dir.path().join("bench.db"), encrypted);
    bob.connection()
        .pragma_update(None, "synchronous", synchronous)
        .unwrap();
    let (alice_addr, bob_addr) = (
        Address::new("alice", 1).unwrap(),
        Address::new("bob", 1).unwrap(),
    );
    let mut next_id = 0i64;
    c.bench_function(id, |b| {
        b.iter_batched(
            || session::encrypt(&mut alice, &bob_addr, b"a typical short chat message").unwrap(),
            |wire| {
                let (plaintext, commit) = session::decrypt(&bob, &alice_addr, &wire)
                    .unwrap()
                    .into_parts();
                next_id += 1;
                bob.commit_with(commit, |tx| {
                    tx.execute(
                        "INSERT INTO app_inbox (id, body) VALUES (?1, ?2)",
                        (next_id, &plaintext[..]),
                    )
                    .map_err(|e| StoreError::Backend(Box::new(e)))
                })
                .unwrap();
            },
            BatchSize::SmallInput,
        );
    });
}

fn commit_message(c: &mut Criterion) {
    bench_commit(c, "commit_message", true, "FULL");
}

fn commit_message_plain(c: &mut Criterion) {
    bench_commit(c, "commit_message_plain", false, "FULL");
}

fn commit_message_sync_normal(c: &mut Criterion) {
    bench_commit(c, "commit_message_sync_normal", true, "NORMAL");
}

criterion_group!(
    benches,
    commit_message,
    commit_message_plain,
    commit_message_sync_normal
);
criterion_main!(benches);
