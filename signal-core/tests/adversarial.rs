//! Tampering, forgery and limit tests: every rejected input leaves state unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Party, established, pair};
use signal_core::limits::{
    MAX_DECRYPT_DERIVATIONS, MAX_RECEIVER_CHAINS, MAX_SKIPPED_KEYS_PER_CHAIN,
};
use signal_core::prekey::PreKeyBundle;
use signal_core::store::{KemPreKeyStore, PreKeyStore};
use signal_core::{BundleError, SessionError, session};

/// Offset of the counter in a 1:1 message: version, type, ratchet key (33), previous
/// counter (4).
const COUNTER_OFFSET: usize = 2 + 33 + 4;

#[test]
fn every_bundle_byte_is_covered() {
    let mut bob = Party::new("bob", 22);
    let bundle = bob.bundle();
    let bytes = bundle.encode();
    assert_eq!(PreKeyBundle::decode(&bytes).unwrap(), bundle);
    bundle.clone().verify().unwrap();
    for i in 0..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut t = bytes.clone();
            t[i] ^= bit;
            let rejected = match PreKeyBundle::decode(&t) {
                Err(_) => true,
                Ok(b) => b.verify().is_err(),
            };
            assert!(
                rejected,
                "flip {bit:#x} at byte {i} of {} accepted",
                bytes.len()
            );
        }
    }
    for cut in 0..bytes.len() {
        assert!(PreKeyBundle::decode(&bytes[..cut]).is_err());
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(PreKeyBundle::decode(&longer).is_err());
}

#[test]
fn bundle_with_a_swapped_field_is_rejected() {
    let mut bob = Party::new("bob", 22);
    let mut mallory = Party::new("bob", 22);
    let good = bob.bundle();
    let evil = mallory.bundle();

    let mut b = good.clone();
    b.signed_prekey = evil.signed_prekey.clone();
    assert!(matches!(b.verify(), Err(BundleError::BadSignature { .. })));
    let mut b = good.clone();
    b.one_time_prekey = evil.one_time_prekey.clone();
    assert!(matches!(b.verify(), Err(BundleError::BadSignature { .. })));
    let mut b = good.clone();
    b.kem_prekey = evil.kem_prekey.clone();
    assert!(matches!(b.verify(), Err(BundleError::BadSignature { .. })));
    let mut b = good.clone();
    b.identity = evil.identity;
    assert!(matches!(b.verify(), Err(BundleError::BadSignature { .. })));
    let mut b = good.clone();
    b.registration_id ^= 1;
    assert!(matches!(b.verify(), Err(BundleError::BadSignature { .. })));
    let mut b = good.clone();
    b.kem_prekey.last_resort = !b.kem_prekey.last_resort;
    assert!(matches!(b.verify(), Err(BundleError::BadSignature { .. })));
    let mut b = good.clone();
    b.signed_prekey.created_at += 1;
    assert!(matches!(b.verify(), Err(BundleError::BadSignature { .. })));
    assert!(matches!(
        good.clone().verify_for(&evil.identity),
        Err(BundleError::IdentityMismatch)
    ));
    good.verify_for(bob.identity.public()).unwrap();
}

#[test]
fn every_prekey_message_byte_is_covered() {
    let (mut alice, bob) = pair();
    let (a, b) = (alice.addr.clone(), bob.addr.clone());
    let wire = alice.encrypt(&b, b"first contact");
    let prekeys_before = bob.store.prekey_count().unwrap();
    for i in 0..wire.len() {
        let mut t = wire.clone();
        t[i] ^= 0x01;
        let mut bob_copy = bob.store.clone();
        let res = session::decrypt_and_commit(&mut bob_copy, &a, &t);
        assert!(res.is_err(), "flip at byte {i} accepted");
        assert_eq!(bob_copy.prekey_count().unwrap(), prekeys_before);
        assert!(bob_copy.load_kem_prekey(1).unwrap().is_some());
    }
    let mut bob = bob;
    assert_eq!(bob.decrypt(&a, &wire).unwrap(), b"first contact");
}

#[test]
fn every_message_byte_is_covered_and_state_is_unchanged() {
    let (mut alice, mut bob) = established();
    let (a, b) = (alice.addr.clone(), bob.addr.clone());
    let wire = alice.encrypt(&b, b"tamper with me");
    let before = bob.snapshot(&a);
    for i in 0..wire.len() {
        for bit in [0x01u8, 0x40] {
            let mut t = wire.clone();
            t[i] ^= bit;
            assert!(bob.decrypt(&a, &t).is_err(), "flip at byte {i} accepted");
            assert_eq!(
                bob.snapshot(&a),
                before,
                "state changed by flip at byte {i}"
            );
        }
    }
    for cut in 0..wire.len() {
        assert!(bob.decrypt(&a, &wire[..cut]).is_err());
        assert_eq!(bob.snapshot(&a), before);
    }
    assert_eq!(bob.decrypt(&a, &wire).unwrap(), b"tamper with me");
}

#[test]
fn message_from_another_session_is_rejected() {
    let (mut alice, mut bob) = established();
    let (mut carol, _) = established();
    let a = alice.addr.clone();
    let b = bob.addr.clone();
    let foreign = carol.encrypt(&b, b"not for this session");
    let before = bob.snapshot(&a);
    assert!(matches!(
        bob.decrypt(&a, &foreign),
        Err(SessionError::InvalidMessage)
    ));
    assert_eq!(bob.snapshot(&a), before);
    let ok = alice.encrypt(&b, b"still fine");
    assert_eq!(bob.decrypt(&a, &ok).unwrap(), b"still fine");
}

#[test]
fn skipped_key_limit_evicts_the_oldest() {
    let (mut alice, mut bob) = established();
    let (a, b) = (alice.addr.clone(), bob.addr.clone());
    let n = MAX_SKIPPED_KEYS_PER_CHAIN + 3;
    let msgs: Vec<_> = (0..n)
        .map(|i| alice.encrypt(&b, &(i as u32).to_be_bytes()))
        .collect();
    // Receiving message MAX skips MAX keys (the largest jump one decrypt may make);
    // receiving the last one skips one more: the oldest is evicted.
    bob.decrypt(&a, &msgs[MAX_SKIPPED_KEYS_PER_CHAIN]).unwrap();
    bob.decrypt(&a, &msgs[n - 1]).unwrap();
    let rec = signal_core::store::SessionStore::load_session(&bob.store, &a)
        .unwrap()
        .unwrap();
    let chains = rec.current().unwrap().info().receiving_chains;
    assert_eq!(chains.last().unwrap().1, MAX_SKIPPED_KEYS_PER_CHAIN);
    assert!(matches!(
        bob.decrypt(&a, &msgs[0]),
        Err(SessionError::DuplicateMessage { counter: 0 })
    ));
    for (i, m) in msgs.iter().enumerate().take(n - 1).skip(1) {
        if i != MAX_SKIPPED_KEYS_PER_CHAIN {
            assert_eq!(bob.decrypt(&a, m).unwrap(), (i as u32).to_be_bytes());
        }
    }
}

#[test]
fn forward_jump_beyond_the_limit_is_refused_before_deriving_keys() {
    let (mut alice, mut bob) = established();
    let (a, b) = (alice.addr.clone(), bob.addr.clone());
    let wire = alice.encrypt(&b, b"x");
    let before = bob.snapshot(&a);
    let next = 0u32; // Alice's fresh sending chain starts at 0.
    let mut forged = wire.clone();
    forged[COUNTER_OFFSET..COUNTER_OFFSET + 4]
        .copy_from_slice(&(next + MAX_DECRYPT_DERIVATIONS + 1).to_be_bytes());
    assert!(matches!(
        bob.decrypt(&a, &forged),
        Err(SessionError::TooFarAhead { jump, limit, .. }) if jump == MAX_DECRYPT_DERIVATIONS + 1 && limit == MAX_DECRYPT_DERIVATIONS
    ));
    assert_eq!(bob.snapshot(&a), before);
    // Exactly at the limit the keys are derived, and the forgery fails authentication.
    let mut at_limit = wire.clone();
    at_limit[COUNTER_OFFSET..COUNTER_OFFSET + 4]
        .copy_from_slice(&(next + MAX_DECRYPT_DERIVATIONS).to_be_bytes());
    assert!(matches!(
        bob.decrypt(&a, &at_limit),
        Err(SessionError::InvalidMessage)
    ));
    assert_eq!(bob.snapshot(&a), before);
    assert_eq!(bob.decrypt(&a, &wire).unwrap(), b"x");
}

#[test]
fn only_the_newest_receiving_chains_are_kept() {
    let (mut alice, mut bob) = established();
    let (a, b) = (alice.addr.clone(), bob.addr.clone());
    // Each round Alice leaves one message undelivered on her current chain, then the
    // parties exchange a message so Alice's next chain is a new one.
    let mut late = Vec::new();
    for round in 0..MAX_RECEIVER_CHAINS + 2 {
        late.push(alice.encrypt(&b, format!("late {round}").as_bytes()));
        let w = alice.encrypt(&b, b"on time");
        bob.decrypt(&a, &w).unwrap();
        let r = bob.encrypt(&a, b"reply");
        alice.decrypt(&b, &r).unwrap();
    }
    let rounds = late.len();
    for (round, w) in late.iter().enumerate() {
        let res = bob.decrypt(&a, w);
        if round + MAX_RECEIVER_CHAINS >= rounds {
            assert_eq!(res.unwrap(), format!("late {round}").as_bytes());
        } else {
            assert!(
                res.is_err(),
                "chain of round {round} should have been evicted"
            );
        }
    }
}

#[test]
fn archived_sessions_are_bounded() {
    let mut alice = Party::new("alice", 1);
    let mut bob = Party::new("bob", 2);
    let b = bob.addr.clone();
    for _ in 0..signal_core::limits::MAX_ARCHIVED_SESSIONS + 3 {
        let bundle = bob.bundle().verify().unwrap();
        session::initiate(&mut alice.store, &b, &bundle).unwrap();
    }
    let rec = signal_core::store::SessionStore::load_session(&alice.store, &b)
        .unwrap()
        .unwrap();
    assert_eq!(
        rec.archived().count(),
        signal_core::limits::MAX_ARCHIVED_SESSIONS
    );
}
