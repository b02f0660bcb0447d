//! One-to-one conversations through the public API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Party, established, pair};
use signal_core::store::{IdentityStore, KemPreKeyStore, PreKeyStore, SessionStore};
use signal_core::wire::MessageKind;
use signal_core::{SessionError, session};

#[test]
fn round_trips_both_ways_with_runs_and_alternation() {
    let (mut alice, mut bob) = pair();
    let (a, b) = (alice.addr.clone(), bob.addr.clone());
    let pattern = [1usize, 3, 1, 1, 5, 2, 1, 7, 1, 1, 2, 4];
    let mut n = 0;
    for (turn, run) in pattern.iter().enumerate() {
        for _ in 0..*run {
            n += 1;
            let text = format!("message {n}");
            if turn % 2 == 0 {
                let w = alice.encrypt(&b, text.as_bytes());
                assert_eq!(bob.decrypt(&a, &w).unwrap(), text.as_bytes());
            } else {
                let w = bob.encrypt(&a, text.as_bytes());
                assert_eq!(alice.decrypt(&b, &w).unwrap(), text.as_bytes());
            }
        }
    }
}

#[test]
fn prekey_messages_until_the_first_reply() {
    let (mut alice, mut bob) = pair();
    let (a, b) = (alice.addr.clone(), bob.addr.clone());
    let m1 = alice.encrypt(&b, b"one");
    let m2 = alice.encrypt(&b, b"two");
    assert_eq!(MessageKind::of(&m1).unwrap(), MessageKind::PreKey);
    assert_eq!(MessageKind::of(&m2).unwrap(), MessageKind::PreKey);
    // Delivered out of order: the second pre-key message creates the session, the first
    // is found by its base key.
    assert_eq!(bob.decrypt(&a, &m2).unwrap(), b"two");
    assert_eq!(bob.decrypt(&a, &m1).unwrap(), b"one");
    let r = bob.encrypt(&a, b"reply");
    assert_eq!(MessageKind::of(&r).unwrap(), MessageKind::Message);
    alice.decrypt(&b, &r).unwrap();
    assert_eq!(
        MessageKind::of(&alice.encrypt(&b, b"x")).unwrap(),
        MessageKind::Message
    );
}

#[test]
fn one_time_prekeys_are_consumed_once_and_replay_is_rejected() {
    let (mut alice, mut bob) = pair();
    let (a, b) = (alice.addr.clone(), bob.addr.clone());
    assert_eq!(bob.store.prekey_count().unwrap(), 1);
    let m = alice.encrypt(&b, b"first");
    bob.decrypt(&a, &m).unwrap();
    assert_eq!(
        bob.store.prekey_count().unwrap(),
        0,
        "one-time prekey consumed"
    );
    assert!(
        bob.store.load_kem_prekey(1).unwrap().is_none(),
        "one-time KEM prekey consumed"
    );

    // Replay while the session exists: a duplicate.
    let before = bob.snapshot(&a);
    assert!(matches!(
        bob.decrypt(&a, &m),
        Err(SessionError::DuplicateMessage { .. })
    ));
    assert_eq!(bob.snapshot(&a), before);

    // Replay after the session is gone: the one-time prekey no longer exists.
    bob.store.delete_session(&a).unwrap();
    assert!(matches!(
        bob.decrypt(&a, &m),
        Err(SessionError::UnknownPreKey { id: 1 })
    ));
}

#[test]
fn last_resort_kem_prekey_replay_is_rejected() {
    let mut alice = Party::new("alice", 1);
    let mut bob = Party::new("bob", 2);
    let (a, b) = (alice.addr.clone(), bob.addr.clone());
    let bundle = bob.last_resort_bundle().verify().unwrap();
    session::initiate(&mut alice.store, &b, &bundle).unwrap();
    let m = alice.encrypt(&b, b"via last resort");
    assert_eq!(bob.decrypt(&a, &m).unwrap(), b"via last resort");
    assert!(
        bob.store.load_kem_prekey(1_000_000).unwrap().is_some(),
        "last resort is kept"
    );
    bob.store.delete_session(&a).unwrap();
    assert!(matches!(
        bob.decrypt(&a, &m),
        Err(SessionError::KemPreKeyReplay { id: 1_000_000 })
    ));

    // A second, different initiation with the same last-resort key works.
    let mut carol = Party::new("carol", 3);
    let c = carol.addr.clone();
    session::initiate(
        &mut carol.store,
        &b,
        &bob.last_resort_bundle().verify().unwrap(),
    )
    .unwrap();
    let m = carol.encrypt(&b, b"also last resort");
    assert_eq!(bob.decrypt(&c, &m).unwrap(), b"also last resort");
}

#[test]
fn simultaneous_initiation_converges() {
    let mut alice = Party::new("alice", 1);
    let mut bob = Party::new("bob", 2);
    let (a, b) = (alice.addr.clone(), bob.addr.clone());
    let bundle_b = bob.bundle().verify().unwrap();
    let bundle_a = alice.bundle().verify().unwrap();
    session::initiate(&mut alice.store, &b, &bundle_b).unwrap();
    session::initiate(&mut bob.store, &a, &bundle_a).unwrap();
    let from_a = alice.encrypt(&b, b"hi bob");
    let from_b = bob.encrypt(&a, b"hi alice");
    assert_eq!(bob.decrypt(&a, &from_a).unwrap(), b"hi bob");
    assert_eq!(alice.decrypt(&b, &from_b).unwrap(), b"hi alice");
    // Both keep talking, taking turns; they settle on one session.
    for i in 0..6 {
        let text = format!("round {i}");
        let w = alice.encrypt(&b, text.as_bytes());
        assert_eq!(bob.decrypt(&a, &w).unwrap(), text.as_bytes());
        let w = bob.encrypt(&a, text.as_bytes());
        assert_eq!(alice.decrypt(&b, &w).unwrap(), text.as_bytes());
    }
    let cur_a = alice.store.load_session(&b).unwrap().unwrap();
    let cur_b = bob.store.load_session(&a).unwrap().unwrap();
    assert_eq!(
        cur_a.current().unwrap().base_key(),
        cur_b.current().unwrap().base_key(),
        "both sides use the same session"
    );
}

#[test]
fn out_of_order_within_bounds_and_across_ratchet_steps() {
    let (mut alice, mut bob) = established();
    let (a, b) = (alice.addr.clone(), bob.addr.clone());
    let first: Vec<_> = (0..10)
        .map(|i| alice.encrypt(&b, format!("a{i}").as_bytes()))
        .collect();
    // Bob gets a few, replies (Alice ratchets), Alice sends a new chain.
    bob.decrypt(&a, &first[9]).unwrap();
    bob.decrypt(&a, &first[3]).unwrap();
    let r = bob.encrypt(&a, b"r");
    alice.decrypt(&b, &r).unwrap();
    let second: Vec<_> = (0..5)
        .map(|i| alice.encrypt(&b, format!("b{i}").as_bytes()))
        .collect();
    for (i, w) in second.iter().enumerate().rev() {
        assert_eq!(bob.decrypt(&a, w).unwrap(), format!("b{i}").as_bytes());
    }
    for (i, w) in first.iter().enumerate() {
        let res = bob.decrypt(&a, w);
        if i == 9 || i == 3 {
            assert!(matches!(res, Err(SessionError::DuplicateMessage { .. })));
        } else {
            assert_eq!(res.unwrap(), format!("a{i}").as_bytes());
        }
    }
}

#[test]
fn untrusted_identity_is_reported_and_the_caller_decides() {
    let (mut alice, mut bob) = established();
    let (a, b) = (alice.addr.clone(), bob.addr.clone());
    // Bob reinstalls: new identity, new bundle.
    let mut bob2 = Party::new("bob", 23);
    let bundle = bob2.bundle().verify().unwrap();
    let err = session::initiate(&mut alice.store, &b, &bundle).unwrap_err();
    assert!(matches!(err, SessionError::UntrustedIdentity { .. }));
    // Alice's user verifies the new safety number and accepts it.
    alice
        .store
        .save_identity(&b, bob2.identity.public())
        .unwrap();
    // The old session's identity no longer matches: sending on it is refused.
    assert!(matches!(
        session::encrypt(&mut alice.store, &b, b"x"),
        Err(SessionError::UntrustedIdentity { .. })
    ));
    session::initiate(&mut alice.store, &b, &bundle).unwrap();
    let w = alice.encrypt(&b, b"hello new bob");
    assert_eq!(bob2.decrypt(&a, &w).unwrap(), b"hello new bob");
    drop(bob.decrypt(&a, &w));
}

#[test]
fn decrypt_without_commit_changes_nothing() {
    let (mut alice, bob) = established();
    let (a, b) = (alice.addr.clone(), bob.addr.clone());
    let w = alice.encrypt(&b, b"persist me");
    let before = bob.snapshot(&a);
    let d = session::decrypt(&bob.store, &a, &w).unwrap();
    assert_eq!(d.plaintext(), b"persist me");
    drop(d);
    assert_eq!(bob.snapshot(&a), before);
    // Two decryptions computed from the same state cannot both commit.
    let mut bob = bob;
    let w2 = alice.encrypt(&b, b"second");
    let d1 = session::decrypt(&bob.store, &a, &w).unwrap();
    let d2 = session::decrypt(&bob.store, &a, &w2).unwrap();
    use signal_core::store::ProtocolStore;
    bob.store.commit(d1.into_parts().1).unwrap();
    assert!(matches!(
        bob.store.commit(d2.into_parts().1),
        Err(signal_core::StoreError::Conflict { .. })
    ));
    assert_eq!(bob.decrypt(&a, &w2).unwrap(), b"second");
}

#[test]
fn archived_session_messages_still_decrypt_and_get_promoted() {
    let (mut alice, mut bob) = established();
    let (a, b) = (alice.addr.clone(), bob.addr.clone());
    let in_flight = alice.encrypt(&b, b"old session");
    // Alice starts over with a new bundle (e.g. after restoring a backup).
    let bundle = bob.bundle().verify().unwrap();
    session::initiate(&mut alice.store, &b, &bundle).unwrap();
    let fresh = alice.encrypt(&b, b"new session");
    assert_eq!(bob.decrypt(&a, &fresh).unwrap(), b"new session");
    assert_eq!(bob.decrypt(&a, &in_flight).unwrap(), b"old session");
    let rec = bob.store.load_session(&a).unwrap().unwrap();
    assert_eq!(rec.archived().count(), 1);
}

#[test]
fn no_session_and_empty_input_errors() {
    let (alice, mut bob) = pair();
    let a = alice.addr.clone();
    assert!(matches!(
        session::encrypt(&mut bob.store, &a, b"x"),
        Err(SessionError::NoSession { .. })
    ));
    assert!(matches!(bob.decrypt(&a, &[]), Err(SessionError::Decode(_))));
    assert!(matches!(
        bob.decrypt(&a, &[1]),
        Err(SessionError::Decode(_))
    ));
    assert!(matches!(
        bob.decrypt(&a, &[9, 1, 2]),
        Err(SessionError::Decode(_))
    ));
}

#[test]
fn large_messages_round_trip() {
    let (mut alice, mut bob) = established();
    let (a, b) = (alice.addr.clone(), bob.addr.clone());
    let big = vec![0xA5u8; 1 << 20];
    let w = alice.encrypt(&b, &big);
    assert_eq!(bob.decrypt(&a, &w).unwrap(), big);
    let too_big = vec![0u8; signal_core::limits::MAX_PLAINTEXT_LEN + 1];
    assert!(matches!(
        session::encrypt(&mut alice.store, &b, &too_big),
        Err(SessionError::Crypto(
            signal_core::CryptoError::PlaintextTooLong { .. }
        ))
    ));
}

#[test]
fn session_record_serialization_round_trips_mid_conversation() {
    let (mut alice, mut bob) = established();
    let (a, b) = (alice.addr.clone(), bob.addr.clone());
    let skipped: Vec<_> = (0..5).map(|i| alice.encrypt(&b, &[i])).collect();
    bob.decrypt(&a, &skipped[4]).unwrap();
    let rec = bob.store.load_session(&a).unwrap().unwrap();
    let bytes = rec.encode();
    let back = signal_core::session::SessionRecord::decode(&bytes).unwrap();
    assert_eq!(*back.encode(), *bytes);
    let info = back.current().unwrap().info();
    assert_eq!(info.receiving_chains.last().map(|c| c.1), Some(4));
    // Any truncation fails cleanly.
    for cut in 0..bytes.len() {
        assert!(signal_core::session::SessionRecord::decode(&bytes[..cut]).is_err());
    }
}
