//! Sender-key groups persisted in SQLCipher.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{alice_addr, raw_key};
use session_store::SqlStore;
use signal_core::group::{self, GroupId};
use signal_core::store::SenderKeyStore;
use signal_core::{GroupError, IdentityKeyPair};

#[test]
fn group_messages_decrypt_across_reopen_and_failures_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (alice_path, bob_path) = (dir.path().join("alice.db"), dir.path().join("bob.db"));
    let mut alice = SqlStore::create(
        &alice_path,
        &raw_key(),
        &IdentityKeyPair::generate().unwrap(),
        1,
    )
    .unwrap();
    let mut bob = SqlStore::create(
        &bob_path,
        &raw_key(),
        &IdentityKeyPair::generate().unwrap(),
        2,
    )
    .unwrap();
    let gid = GroupId::generate().unwrap();
    let a = alice_addr();

    let skdm = group::create_distribution(&mut alice, &gid, &a).unwrap();
    group::process_distribution(&mut bob, &a, &skdm).unwrap();
    assert_eq!(bob.sender_key_senders(&gid).unwrap(), vec![a.clone()]);

    let msgs: Vec<_> = (0..4u8)
        .map(|i| group::encrypt(&mut alice, &gid, &a, &[i; 10]).unwrap())
        .collect();
    assert_eq!(
        &group::decrypt_and_commit(&mut bob, &gid, &a, &msgs[2]).unwrap()[..],
        &[2; 10]
    );

    // Reopen both stores: the chains and the skipped keys are on disk.
    drop(bob);
    drop(alice);
    let mut bob = SqlStore::open(&bob_path, &raw_key()).unwrap();
    let mut alice = SqlStore::open(&alice_path, &raw_key()).unwrap();
    assert_eq!(
        &group::decrypt_and_commit(&mut bob, &gid, &a, &msgs[0]).unwrap()[..],
        &[0; 10]
    );

    let before = bob.load_sender_key(&gid, &a).unwrap().unwrap().encode();
    let mut tampered = msgs[1].clone();
    tampered[12] ^= 1;
    assert!(group::decrypt_and_commit(&mut bob, &gid, &a, &tampered).is_err());
    assert!(matches!(
        group::decrypt_and_commit(&mut bob, &gid, &a, &msgs[2]),
        Err(GroupError::DuplicateMessage { .. })
    ));
    assert_eq!(
        *bob.load_sender_key(&gid, &a).unwrap().unwrap().encode(),
        *before
    );

    assert_eq!(
        &group::decrypt_and_commit(&mut bob, &gid, &a, &msgs[1]).unwrap()[..],
        &[1; 10]
    );
    assert_eq!(
        &group::decrypt_and_commit(&mut bob, &gid, &a, &msgs[3]).unwrap()[..],
        &[3; 10]
    );
    let later = group::encrypt(&mut alice, &gid, &a, b"after reopen").unwrap();
    assert_eq!(
        &group::decrypt_and_commit(&mut bob, &gid, &a, &later).unwrap()[..],
        b"after reopen"
    );

    // Two decryptions computed from the same state cannot both be committed.
    let m1 = group::encrypt(&mut alice, &gid, &a, b"one").unwrap();
    let m2 = group::encrypt(&mut alice, &gid, &a, b"two").unwrap();
    let d1 = group::decrypt(&bob, &gid, &a, &m1).unwrap();
    let d2 = group::decrypt(&bob, &gid, &a, &m2).unwrap();
    group::commit(&mut bob, d1).unwrap();
    assert!(group::commit(&mut bob, d2).is_err());
    assert_eq!(
        &group::decrypt_and_commit(&mut bob, &gid, &a, &m2).unwrap()[..],
        b"two"
    );

    bob.delete_sender_key(&gid, &a).unwrap();
    assert!(bob.sender_key_senders(&gid).unwrap().is_empty());
}

#[test]
fn commit_sender_key_with_is_one_transaction_with_the_app_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut alice = SqlStore::create(
        dir.path().join("alice.db"),
        &raw_key(),
        &IdentityKeyPair::generate().unwrap(),
        1,
    )
    .unwrap();
    let mut bob = SqlStore::create(
        dir.path().join("bob.db"),
        &raw_key(),
        &IdentityKeyPair::generate().unwrap(),
        2,
    )
    .unwrap();
    bob.write(|tx| {
        tx.execute_batch("CREATE TABLE app_inbox (body BLOB NOT NULL)")
            .map_err(|e| signal_core::StoreError::Backend(Box::new(e)))
    })
    .unwrap();
    let gid = GroupId::generate().unwrap();
    let a = alice_addr();
    let skdm = group::create_distribution(&mut alice, &gid, &a).unwrap();
    group::process_distribution(&mut bob, &a, &skdm).unwrap();
    let wire = group::encrypt(&mut alice, &gid, &a, b"kept with its key").unwrap();
    let inbox = |s: &SqlStore| -> Vec<Vec<u8>> {
        let mut stmt = s
            .connection()
            .prepare("SELECT body FROM app_inbox")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let before = bob.load_sender_key(&gid, &a).unwrap().unwrap().encode();

    // The app write fails: neither the chain nor the inbox row is written.
    let (_, update) = group::decrypt(&bob, &gid, &a, &wire).unwrap().into_parts();
    let err = bob.commit_sender_key_with(&gid, &a, &update, |tx| {
        tx.execute("INSERT INTO app_inbox (body) VALUES (x'01')", [])
            .map_err(|e| signal_core::StoreError::Backend(Box::new(e)))?;
        Err::<(), _>(signal_core::StoreError::Conflict {
            what: "app refused",
        })
    });
    assert!(err.is_err());
    assert_eq!(
        *bob.load_sender_key(&gid, &a).unwrap().unwrap().encode(),
        *before
    );
    assert!(inbox(&bob).is_empty());

    // It succeeds: both land, and the message key is gone.
    let (plaintext, update) = group::decrypt(&bob, &gid, &a, &wire).unwrap().into_parts();
    bob.commit_sender_key_with(&gid, &a, &update, |tx| {
        tx.execute("INSERT INTO app_inbox (body) VALUES (?1)", [&plaintext[..]])
            .map(|_| ())
            .map_err(|e| signal_core::StoreError::Backend(Box::new(e)))
    })
    .unwrap();
    assert_eq!(inbox(&bob), vec![b"kept with its key".to_vec()]);
    assert!(matches!(
        group::decrypt(&bob, &gid, &a, &wire),
        Err(GroupError::DuplicateMessage { .. })
    ));
}
