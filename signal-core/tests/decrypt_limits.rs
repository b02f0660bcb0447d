//! Issue 14, items 4 and 5: the one derivation budget per 1:1 decrypt (`PN` skip and
//! forward jump together, a smaller share for archived sessions, a bounded number of
//! archived sessions tried for a new ratchet key), and receiving chains closed at `PN`.
//! Every refusal leaves the stored record byte-for-byte unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Party, established};
use signal_core::limits::{
    MAX_ARCHIVED_DERIVATIONS, MAX_ARCHIVED_RATCHET_TRIALS, MAX_DECRYPT_DERIVATIONS,
};
use signal_core::{Address, SessionError, session};

fn send_many(from: &mut Party, to: &Address, n: u32) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| from.encrypt(to, format!("m{i}").as_bytes()))
        .collect()
}

/// Alice starts a new session with Bob, who decrypts its first message; the previous
/// session is archived on both sides.
fn new_session(alice: &mut Party, bob: &mut Party) {
    let (a, b) = (alice.addr.clone(), bob.addr.clone());
    let bundle = bob.bundle().verify().unwrap();
    session::initiate(&mut alice.store, &b, &bundle).unwrap();
    let first = alice.encrypt(&b, b"new session");
    assert_eq!(bob.decrypt(&a, &first).unwrap(), b"new session");
}

#[test]
fn a_stale_copy_of_the_peer_cannot_forge_on_a_closed_chain() {
    let (mut alice, mut bob) = established();
    let (a, b) = (alice.addr.clone(), bob.addr.clone());
    let old = send_many(&mut alice, &b, 3);
    bob.decrypt(&a, &old[0]).unwrap();
    // The attacker copies Alice's state (a stolen backup, a cloned device).
    let mut stale = alice.store.clone();
    // The session heals: a ratchet step each way. Bob closes Alice's old chain at PN = 3.
    let reply = bob.encrypt(&a, b"reply");
    alice.decrypt(&b, &reply).unwrap();
    let healed = alice.encrypt(&b, b"healed");
    assert_eq!(bob.decrypt(&a, &healed).unwrap(), b"healed");

    // Correctly encrypted messages on the old chain at counters 3 and 4 (≥ PN).
    let forged = [
        session::encrypt(&mut stale, &b, b"forged 3").unwrap(),
        session::encrypt(&mut stale, &b, b"forged 4").unwrap(),
    ];
    let before = bob.snapshot(&a);
    for f in &forged {
        assert!(matches!(
            bob.decrypt(&a, f),
            Err(SessionError::InvalidMessage)
        ));
        assert_eq!(bob.snapshot(&a), before);
    }
    // Counters below PN still decrypt from their skipped keys.
    assert_eq!(bob.decrypt(&a, &old[2]).unwrap(), b"m2");
    assert_eq!(bob.decrypt(&a, &old[1]).unwrap(), b"m1");
    assert!(bob.decrypt(&a, &forged[0]).is_err());
    let next = alice.encrypt(&b, b"after");
    assert_eq!(bob.decrypt(&a, &next).unwrap(), b"after");
}

#[test]
fn pn_skip_and_forward_jump_share_one_budget() {
    let (mut alice, mut bob) = established();
    let (a, b) = (alice.addr.clone(), bob.addr.clone());
    let gap = 1_500;
    let first = send_many(&mut alice, &b, gap + 1);
    bob.decrypt(&a, &first[0]).unwrap();
    let reply = bob.encrypt(&a, b"reply");
    alice.decrypt(&b, &reply).unwrap();
    // New chain: PN = gap + 1, so Bob skips `gap` keys on the old chain.
    let jump = MAX_DECRYPT_DERIVATIONS - gap;
    let second = send_many(&mut alice, &b, jump + 2);
    let before = bob.snapshot(&a);
    assert!(matches!(
        bob.decrypt(&a, &second[jump as usize + 1]),
        Err(SessionError::TooFarAhead { jump, limit, .. })
            if jump == MAX_DECRYPT_DERIVATIONS + 1 && limit == MAX_DECRYPT_DERIVATIONS
    ));
    assert_eq!(bob.snapshot(&a), before);
    // Exactly at the budget: decrypts, and both chains' skipped keys are stored.
    let at_limit = jump as usize;
    assert_eq!(
        bob.decrypt(&a, &second[at_limit]).unwrap(),
        format!("m{at_limit}").as_bytes()
    );
    assert_eq!(
        bob.decrypt(&a, &first[gap as usize]).unwrap(),
        format!("m{gap}").as_bytes()
    );
    assert_eq!(bob.decrypt(&a, &first[1]).unwrap(), b"m1");
    assert_eq!(bob.decrypt(&a, &second[0]).unwrap(), b"m0");
    assert_eq!(
        bob.decrypt(&a, &second[at_limit + 1]).unwrap(),
        format!("m{}", at_limit + 1).as_bytes()
    );
}

#[test]
fn an_archived_session_gets_a_smaller_budget() {
    let (mut alice, mut bob) = established();
    let (a, b) = (alice.addr.clone(), bob.addr.clone());
    let late = send_many(&mut alice, &b, MAX_ARCHIVED_DERIVATIONS + 3);
    bob.decrypt(&a, &late[0]).unwrap();
    new_session(&mut alice, &mut bob);
    let before = bob.snapshot(&a);
    let over = MAX_ARCHIVED_DERIVATIONS as usize + 2;
    assert!(matches!(
        bob.decrypt(&a, &late[over]),
        Err(SessionError::TooFarAhead { jump, limit, .. })
            if jump == MAX_ARCHIVED_DERIVATIONS + 1 && limit == MAX_ARCHIVED_DERIVATIONS
    ));
    assert_eq!(bob.snapshot(&a), before);
    assert_eq!(
        bob.decrypt(&a, &late[over - 1]).unwrap(),
        format!("m{}", over - 1).as_bytes()
    );
    // That session was made current again; now the full budget applies.
    assert_eq!(
        bob.decrypt(&a, &late[over]).unwrap(),
        format!("m{over}").as_bytes()
    );
}

#[test]
fn a_new_ratchet_key_is_tried_on_the_newest_archived_sessions_only() {
    let (mut alice, mut bob) = established();
    let (a, b) = (alice.addr.clone(), bob.addr.clone());
    // A message with a new ratchet key on the first session, delivered late.
    let late = alice.encrypt(&b, b"late ratchet step");
    for _ in 0..MAX_ARCHIVED_RATCHET_TRIALS {
        new_session(&mut alice, &mut bob);
    }
    // Bob holds the first session as the oldest of MAX_ARCHIVED_RATCHET_TRIALS archived
    // ones. One session more and it is no longer tried: refused, nothing changes.
    let tried = bob.store.clone();
    new_session(&mut alice, &mut bob);
    let before = bob.snapshot(&a);
    assert!(matches!(
        bob.decrypt(&a, &late),
        Err(SessionError::InvalidMessage)
    ));
    assert_eq!(bob.snapshot(&a), before);
    // Without that session it is tried, decrypts, and becomes current.
    bob.store = tried;
    assert_eq!(bob.decrypt(&a, &late).unwrap(), b"late ratchet step");
    let record = signal_core::store::SessionStore::load_session(&bob.store, &a)
        .unwrap()
        .unwrap();
    assert_eq!(record.archived().count(), MAX_ARCHIVED_RATCHET_TRIALS);
}
