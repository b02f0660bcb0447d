//! Every store operation round-trips on a real SQLCipher file, and full conversations
//! run with the SQLCipher store on one or both sides.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use session_store::SqlStore;
use signal_core::keys::DhKeyPair;
use signal_core::prekey::{KemPreKeyRecord, OneTimePreKeyRecord, SignedPreKeyRecord};
use signal_core::store::{
    IdentityStore, InMemoryStore, KemPreKeyStore, PreKeyStore, ProtocolStore, SessionStore,
    SignedPreKeyStore,
};
use signal_core::{Address, IdentityKeyPair, SessionError, StoreError, session};

#[test]
fn every_trait_operation_round_trips_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let id = IdentityKeyPair::generate().unwrap();
    let peer = *IdentityKeyPair::generate().unwrap().public();
    let spk = SignedPreKeyRecord::generate(&id, 9, 3, 5).unwrap();
    let opk = OneTimePreKeyRecord::generate(&id, 4, 5).unwrap();
    let kem = KemPreKeyRecord::generate(&id, 6, 5, true).unwrap();
    {
        let mut s = SqlStore::create(&path, &raw_key(), &id, 9).unwrap();
        s.save_identity(&alice_addr(), &peer).unwrap();
        s.store_signed_prekey(&spk).unwrap();
        s.store_prekey(&opk).unwrap();
        s.store_kem_prekey(&kem).unwrap();
    }
    let mut s = SqlStore::open(&path, &raw_key()).unwrap();
    assert_eq!(s.local_identity().unwrap().public(), id.public());
    assert_eq!(
        s.local_identity().unwrap().to_secret_bytes(),
        id.to_secret_bytes()
    );
    assert_eq!(s.local_registration_id().unwrap(), 9);
    assert_eq!(s.remote_identity(&alice_addr()).unwrap(), Some(peer));
    assert_eq!(s.remote_identity(&bob_addr()).unwrap(), None);
    assert_eq!(
        s.load_signed_prekey(3).unwrap().unwrap().to_secret_bytes(),
        spk.to_secret_bytes()
    );
    assert_eq!(s.signed_prekey_ids().unwrap(), vec![3]);
    assert_eq!(
        s.load_prekey(4).unwrap().unwrap().to_secret_bytes(),
        opk.to_secret_bytes()
    );
    assert_eq!(s.prekey_count().unwrap(), 1);
    assert_eq!(
        s.load_kem_prekey(6).unwrap().unwrap().to_secret_bytes(),
        kem.to_secret_bytes()
    );
    assert_eq!(s.kem_prekey_ids().unwrap(), vec![6]);
    let base = *DhKeyPair::generate().unwrap().public();
    assert!(!s.last_resort_base_key_seen(6, &base).unwrap());

    s.remove_prekey(4).unwrap();
    s.remove_prekey(4).unwrap();
    s.remove_signed_prekey(3).unwrap();
    s.remove_kem_prekey(6).unwrap();
    assert_eq!(s.prekey_count().unwrap(), 0);
    assert!(s.signed_prekey_ids().unwrap().is_empty());
    assert!(s.kem_prekey_ids().unwrap().is_empty());
    assert!(s.load_prekey(4).unwrap().is_none());
    assert!(s.load_session(&alice_addr()).unwrap().is_none());
    assert!(s.session_devices("alice").unwrap().is_empty());
    s.delete_session(&alice_addr()).unwrap();
}

#[test]
fn conversation_and_sessions_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bob.db");
    let (bob, mut alice) = established(&path);
    // The one-time prekeys were consumed in the same commit as the session.
    assert_eq!(bob.prekey_count().unwrap(), 0);
    assert_eq!(bob.kem_prekey_ids().unwrap(), vec![100]);
    let record = bob.load_session(&alice_addr()).unwrap().unwrap();
    assert_eq!(bob.session_devices("alice").unwrap(), vec![1]);
    drop(bob);

    let mut bob = SqlStore::open(&path, &raw_key()).unwrap();
    assert_eq!(
        bob.load_session(&alice_addr()).unwrap().unwrap().encode(),
        record.encode()
    );
    for i in 0..20u32 {
        let m = format!("a{i}");
        let w = session::encrypt(&mut alice, &bob_addr(), m.as_bytes()).unwrap();
        assert_eq!(
            &session::decrypt_and_commit(&mut bob, &alice_addr(), &w).unwrap()[..],
            m.as_bytes()
        );
        let r = format!("b{i}");
        let w = session::encrypt(&mut bob, &alice_addr(), r.as_bytes()).unwrap();
        assert_eq!(
            &session::decrypt_and_commit(&mut alice, &bob_addr(), &w).unwrap()[..],
            r.as_bytes()
        );
    }
    bob.delete_session(&alice_addr()).unwrap();
    assert!(bob.load_session(&alice_addr()).unwrap().is_none());
}

#[test]
fn both_sides_on_sqlcipher_out_of_order_and_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let a_id = IdentityKeyPair::generate().unwrap();
    let b_id = IdentityKeyPair::generate().unwrap();
    let mut alice = SqlStore::create(dir.path().join("a.db"), &raw_key(), &a_id, 1).unwrap();
    let mut bob = SqlStore::create(dir.path().join("b.db"), &other_key(), &b_id, 2).unwrap();
    let bundle = publish(&mut bob, &b_id, 2, false);
    session::initiate(&mut alice, &bob_addr(), &bundle.verify().unwrap()).unwrap();
    let msgs: Vec<_> = (0..5)
        .map(|i| session::encrypt(&mut alice, &bob_addr(), &[i]).unwrap())
        .collect();
    for i in [0usize, 3, 1, 4, 2] {
        assert_eq!(
            &session::decrypt_and_commit(&mut bob, &alice_addr(), &msgs[i]).unwrap()[..],
            &[i as u8]
        );
    }
    assert!(matches!(
        session::decrypt_and_commit(&mut bob, &alice_addr(), &msgs[3]),
        Err(SessionError::DuplicateMessage { .. })
    ));
    let reply = session::encrypt(&mut bob, &alice_addr(), b"ok").unwrap();
    assert_eq!(
        &session::decrypt_and_commit(&mut alice, &bob_addr(), &reply).unwrap()[..],
        b"ok"
    );
}

#[test]
fn stale_commit_is_a_conflict_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut bob, mut alice) = established(&dir.path().join("b.db"));
    let w = session::encrypt(&mut alice, &bob_addr(), b"once").unwrap();
    let (_, first) = session::decrypt(&bob, &alice_addr(), &w)
        .unwrap()
        .into_parts();
    let (_, second) = session::decrypt(&bob, &alice_addr(), &w)
        .unwrap()
        .into_parts();
    bob.commit(first).unwrap();
    let before = bob.load_session(&alice_addr()).unwrap().unwrap().encode();
    assert!(matches!(
        bob.commit(second),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        bob.load_session(&alice_addr()).unwrap().unwrap().encode(),
        before
    );
}

#[test]
fn commit_with_rolls_back_everything_when_the_app_write_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (mut bob, mut alice) = established(&dir.path().join("b.db"));
    create_inbox(&mut bob);
    let w = session::encrypt(&mut alice, &bob_addr(), b"m1").unwrap();
    let before = bob.load_session(&alice_addr()).unwrap().unwrap().encode();
    let (_, commit) = session::decrypt(&bob, &alice_addr(), &w)
        .unwrap()
        .into_parts();
    let err = bob.commit_with(commit, |tx| {
        tx.execute("INSERT INTO app_inbox (id, body) VALUES (1, x'00')", [])
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        Err::<(), _>(StoreError::Conflict {
            what: "app refused",
        })
    });
    assert!(matches!(
        err,
        Err(StoreError::Conflict {
            what: "app refused"
        })
    ));
    assert_eq!(
        bob.load_session(&alice_addr()).unwrap().unwrap().encode(),
        before
    );
    assert!(inbox_ids(&bob).is_empty());
    // The same message decrypts again and now commits with its plaintext.
    receive(&mut bob, 1, &w).unwrap();
    assert_eq!(inbox_ids(&bob), vec![1]);
    assert!(matches!(
        receive(&mut bob, 2, &w),
        Err(SessionError::DuplicateMessage { .. })
    ));
}

#[test]
fn last_resort_replay_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b_id = IdentityKeyPair::generate().unwrap();
    let mut bob = SqlStore::create(dir.path().join("b.db"), &raw_key(), &b_id, 2).unwrap();
    let mut bundle = publish(&mut bob, &b_id, 2, true);
    bundle.one_time_prekey = None;
    let mut alice = InMemoryStore::new(IdentityKeyPair::generate().unwrap(), 1);
    session::initiate(&mut alice, &bob_addr(), &bundle.clone().verify().unwrap()).unwrap();
    let w = session::encrypt(&mut alice, &bob_addr(), b"first").unwrap();
    // Decrypt twice from the same state: the second commit must be refused.
    let (_, c1) = session::decrypt(&bob, &alice_addr(), &w)
        .unwrap()
        .into_parts();
    let (_, c2) = session::decrypt(&bob, &alice_addr(), &w)
        .unwrap()
        .into_parts();
    bob.commit(c1).unwrap();
    assert!(matches!(bob.commit(c2), Err(StoreError::Conflict { .. })));
    assert_eq!(bob.kem_prekey_ids().unwrap(), vec![1, 100]);

    // A replay of the pre-key message to a store that lost the session.
    bob.delete_session(&alice_addr()).unwrap();
    assert!(matches!(
        session::decrypt_and_commit(&mut bob, &alice_addr(), &w),
        Err(SessionError::KemPreKeyReplay { id: 100 })
    ));
    // A new session on the same last-resort key with a new base key is fine.
    let mut carol = InMemoryStore::new(IdentityKeyPair::generate().unwrap(), 3);
    session::initiate(&mut carol, &bob_addr(), &bundle.verify().unwrap()).unwrap();
    let w = session::encrypt(&mut carol, &bob_addr(), b"carol").unwrap();
    let carol_addr = Address::new("carol", 1).unwrap();
    assert_eq!(
        &session::decrypt_and_commit(&mut bob, &carol_addr, &w).unwrap()[..],
        b"carol"
    );
    bob.remove_kem_prekey(100).unwrap();
}

#[test]
fn untrusted_identity_after_change() {
    let dir = tempfile::tempdir().unwrap();
    let (mut bob, _alice) = established(&dir.path().join("b.db"));
    let new_alice = *IdentityKeyPair::generate().unwrap().public();
    bob.save_identity(&alice_addr(), &new_alice).unwrap();
    assert!(matches!(
        session::encrypt(&mut bob, &alice_addr(), b"x"),
        Err(SessionError::UntrustedIdentity { .. })
    ));
}
