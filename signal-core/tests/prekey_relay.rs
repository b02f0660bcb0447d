//! Attack tests on pre-key messages, the test playing the relay (issue 14, items 1, 2
//! and 8): it records, edits, re-wraps and reflects pre-key messages, and checks what
//! the victim's library does. Every refused input leaves the victim's state
//! byte-for-byte unchanged, and the untampered message still decrypts afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::ops::Range;

use common::{NOW, Party};
use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::montgomery::MontgomeryPoint;
use signal_core::prekey::{KemPreKeyRecord, OneTimePreKeyRecord, SignedPreKeyRecord};
use signal_core::store::{
    IdentityStore, KemPreKeyStore, PreKeyStore, SessionStore, SignedPreKeyStore,
};
use signal_core::wire::PreKeyMessage;
use signal_core::{Address, DecodeError, SessionError, session};

/// Id of the last-resort KEM prekey every [`Party`] holds.
const LAST_RESORT: u32 = 1_000_000;

/// Byte ranges of the fields of an encoded pre-key message (`docs/protocol.md` §5.3).
fn fields(one_time: bool) -> Vec<(&'static str, Range<usize>)> {
    let mut out = vec![
        ("version and type", 0..2),
        ("registration id", 2..6),
        ("signed prekey id", 6..10),
        ("one-time flag", 10..11),
    ];
    let mut at = 11;
    if one_time {
        out.push(("one-time prekey id", 11..15));
        at = 15;
    }
    for (name, len) in [
        ("KEM prekey id", 4),
        ("KEM ciphertext", 1568),
        ("base key", 33),
        ("identity", 33),
    ] {
        out.push((name, at..at + len));
        at += len;
    }
    out
}

fn base_key_offset(one_time: bool) -> usize {
    fields(one_time)
        .into_iter()
        .find(|(name, _)| *name == "base key")
        .unwrap()
        .1
        .start
}

/// Everything of Bob's state a pre-key message from `peer` could change.
#[derive(Debug, PartialEq)]
struct BobState {
    record: Vec<u8>,
    identity: Option<[u8; 33]>,
    one_time_prekeys: usize,
    kem_prekeys: Vec<u32>,
    signed_prekeys: Vec<u32>,
    last_resort_seen: bool,
}

fn bob_state(bob: &Party, peer: &Address, wire: &[u8]) -> BobState {
    let base_key = PreKeyMessage::decode(wire).unwrap().base_key;
    let mut kem_prekeys = bob.store.kem_prekey_ids().unwrap();
    kem_prekeys.sort_unstable();
    let mut signed_prekeys = bob.store.signed_prekey_ids().unwrap();
    signed_prekeys.sort_unstable();
    BobState {
        record: bob.snapshot(peer),
        identity: bob.store.remote_identity(peer).unwrap().map(|k| k.encode()),
        one_time_prekeys: bob.store.prekey_count().unwrap(),
        kem_prekeys,
        signed_prekeys,
        last_resort_seen: bob
            .store
            .last_resort_base_key_seen(LAST_RESORT, &base_key)
            .unwrap(),
    }
}

/// The bit flips tried in byte `i` of field `name`: two per byte, one per byte of the
/// (long) KEM ciphertext.
fn flips(name: &str, i: usize) -> Vec<u8> {
    if name == "KEM ciphertext" {
        vec![1 << (i % 8)]
    } else {
        vec![0x01, 0x80]
    }
}

/// Gives Bob a prekey of every kind under every id a single tried bit flip of `ids`
/// produces, so a flipped id names a key Bob holds and only authentication can tell.
fn hold_flipped_ids(bob: &mut Party, spk: u32, opk: Option<u32>, kem: u32) {
    let flipped = |id: u32| {
        (0..4).flat_map(move |byte| [0x01u32, 0x80].map(move |bit| id ^ (bit << (8 * (3 - byte)))))
    };
    for id in flipped(spk) {
        let r = SignedPreKeyRecord::generate(&bob.identity, bob.registration_id, id, NOW);
        bob.store.store_signed_prekey(&r.unwrap()).unwrap();
    }
    for id in opk.into_iter().flat_map(flipped) {
        let r = OneTimePreKeyRecord::generate(&bob.identity, id, NOW).unwrap();
        bob.store.store_prekey(&r).unwrap();
    }
    for id in flipped(kem) {
        let r = KemPreKeyRecord::generate(&bob.identity, id, NOW, false).unwrap();
        bob.store.store_kem_prekey(&r).unwrap();
    }
}

/// Whether `e` is an acceptable refusal of `wire` with a flip in field `name`: a field
/// that still decodes must fail authentication; only bytes that are no valid encoding
/// (or no valid key) may fail to decode. `consumed_opk`: a flipped base key names no
/// session, so a later message then names a one-time prekey already consumed.
fn acceptable(name: &str, e: &SessionError, consumed_opk: Option<u32>) -> bool {
    let decode = matches!(e, SessionError::Decode(_));
    let invalid = matches!(e, SessionError::InvalidMessage);
    match name {
        "version and type" | "one-time flag" => true,
        "identity" => decode || invalid,
        "base key" => {
            decode
                || invalid
                || matches!(e, SessionError::UnknownPreKey { id } if Some(*id) == consumed_opk)
        }
        _ => invalid,
    }
}

/// Flips bits in every byte of every field outside the inner message and delivers each
/// copy to Bob: every one is refused as [`acceptable`], and changes nothing.
fn every_prekey_field_is_authenticated(bob: &mut Party, from: &Address, wire: &[u8], later: bool) {
    let parsed = PreKeyMessage::decode(wire).unwrap();
    let one_time = parsed.one_time_prekey_id.is_some();
    let consumed_opk = parsed.one_time_prekey_id.filter(|_| later);
    let before = bob_state(bob, from, wire);
    for (name, range) in fields(one_time) {
        for i in range {
            for bit in flips(name, i) {
                let mut t = wire.to_vec();
                t[i] ^= bit;
                match bob.decrypt(from, &t) {
                    Ok(_) => panic!("{name}: flip {bit:#04x} at byte {i} accepted"),
                    Err(e) => assert!(
                        acceptable(name, &e, consumed_opk),
                        "{name}: flip {bit:#04x} at byte {i} gave {e:?}"
                    ),
                }
                assert_eq!(bob_state(bob, from, wire), before, "{name}: byte {i}");
            }
        }
    }
}

/// Issue 14, item 2: every field of the first AND of every later pre-key message Alice
/// sends before she hears from Bob is authenticated. Before the fix, flips in the
/// prekey ids or the KEM ciphertext of the second and third message were accepted
/// (and the untampered copy then refused as a duplicate).
#[test]
fn every_field_of_every_prekey_message_is_authenticated() {
    for one_time in [true, false] {
        let mut alice = Party::new("alice", 11);
        let mut bob = Party::new("bob", 22);
        let (a, b) = (alice.addr.clone(), bob.addr.clone());
        let bundle = if one_time {
            bob.bundle()
        } else {
            bob.last_resort_bundle()
        };
        hold_flipped_ids(
            &mut bob,
            bundle.signed_prekey.id,
            bundle.one_time_prekey.as_ref().map(|p| p.id),
            bundle.kem_prekey.id,
        );
        session::initiate(&mut alice.store, &b, &bundle.verify().unwrap()).unwrap();
        let sent: Vec<_> = (0..3)
            .map(|k| alice.encrypt(&b, format!("pre-key message {k}").as_bytes()))
            .collect();
        for (k, wire) in sent.iter().enumerate() {
            every_prekey_field_is_authenticated(&mut bob, &a, wire, k > 0);
            assert_eq!(
                bob.decrypt(&a, wire).unwrap(),
                format!("pre-key message {k}").as_bytes(),
                "untampered message {k} (one-time prekey: {one_time})"
            );
        }
    }
}

/// The eight encodings `u(EK + T)`, `T` in the 8-torsion subgroup, of `wire`'s base
/// key, each in a copy of `wire`. Index 0 (`T` = identity) is `wire` itself.
fn torsion_variants(wire: &[u8], one_time: bool) -> Vec<Vec<u8>> {
    let at = base_key_offset(one_time) + 1;
    let u: [u8; 32] = wire[at..at + 32].try_into().unwrap();
    let point = MontgomeryPoint(u).to_edwards(0).unwrap();
    EIGHT_TORSION
        .iter()
        .map(|t| {
            let mut v = wire.to_vec();
            v[at..at + 32].copy_from_slice((point + t).to_montgomery().as_bytes());
            v
        })
        .collect()
}

/// Issue 14, item 1: a first message through the last-resort KEM prekey and no
/// one-time prekey (a relay decides that a bundle carries none) is protected from
/// replay by the stored pair (KEM id, base key). Adding an 8-torsion point to the base
/// key gives another canonical encoding with the same X25519 results; before the fix
/// each of the 7 variants was accepted as a new session. Now only the original
/// decrypts, once: the variants are refused (not in the prime-order subgroup, and the
/// base key is authenticated), whether Bob still holds the session or not.
#[test]
fn torsion_variants_of_a_last_resort_first_message_decrypt_only_once() {
    let mut alice = Party::new("alice", 11);
    let mut bob = Party::new("bob", 22);
    let (a, b) = (alice.addr.clone(), bob.addr.clone());
    let bundle = bob.last_resort_bundle().verify().unwrap();
    session::initiate(&mut alice.store, &b, &bundle).unwrap();
    let wire = alice.encrypt(&b, b"only once");
    let variants = torsion_variants(&wire, false);
    assert_eq!(variants[0], wire);
    let distinct: std::collections::HashSet<_> = variants.iter().collect();
    assert_eq!(distinct.len(), 8);

    let mut accepted = 0;
    // Round 0: the relay delivers the 7 variants, then the original. Round 1: all 8
    // again, while Bob holds the session. Round 2: all 8 after Bob's session is gone
    // (e.g. evicted from the archive), so only the replay record protects him.
    for round in 0..3 {
        if round == 2 {
            bob.store.delete_session(&a).unwrap();
        }
        for (i, v) in variants.iter().enumerate().rev() {
            let before = bob_state(&bob, &a, &wire);
            match bob.decrypt(&a, v) {
                Ok(p) => {
                    assert_eq!((round, i), (0, 0), "variant {i} accepted in round {round}");
                    assert_eq!(p, b"only once");
                    accepted += 1;
                    continue;
                }
                Err(SessionError::Decode(DecodeError::InvalidKey { .. })) if i > 0 => {}
                Err(SessionError::DuplicateMessage { .. }) if i == 0 && round == 1 => {}
                Err(SessionError::KemPreKeyReplay { id: LAST_RESORT }) if i == 0 && round == 2 => {}
                Err(e) => panic!("variant {i}, round {round}: unexpected {e:?}"),
            }
            assert_eq!(
                bob_state(&bob, &a, &wire),
                before,
                "variant {i}, round {round}"
            );
        }
    }
    assert_eq!(accepted, 1);
}

/// Issue 14, item 2: a pre-key message that names an existing session (by its base
/// key) is decrypted only with that session. Before the fix the relay could wrap a
/// message of Bob's current session Y in the pre-key fields of an archived session X,
/// and it was accepted (decrypted by Y). Now it is refused and the message itself still
/// decrypts.
#[test]
fn a_prekey_message_is_decrypted_only_with_the_session_it_names() {
    let mut alice = Party::new("alice", 11);
    let mut bob = Party::new("bob", 22);
    let (a, b) = (alice.addr.clone(), bob.addr.clone());
    // Session X: Alice's first pre-key message, accepted by Bob.
    session::initiate(&mut alice.store, &b, &bob.bundle().verify().unwrap()).unwrap();
    let x_first = alice.encrypt(&b, b"on X");
    assert_eq!(bob.decrypt(&a, &x_first).unwrap(), b"on X");
    // Session Y replaces it on both sides and is established.
    session::initiate(&mut alice.store, &b, &bob.bundle().verify().unwrap()).unwrap();
    let y_first = alice.encrypt(&b, b"on Y");
    assert_eq!(bob.decrypt(&a, &y_first).unwrap(), b"on Y");
    let reply = bob.encrypt(&a, b"reply on Y");
    assert_eq!(alice.decrypt(&b, &reply).unwrap(), b"reply on Y");
    let y_message = alice.encrypt(&b, b"plain message on Y");

    // The relay puts Y's message inside X's pre-key fields.
    let x = PreKeyMessage::decode(&x_first).unwrap();
    let inner_at = x_first.len() - x.message.encoded().len();
    let mut wrapped = x_first[..inner_at].to_vec();
    wrapped.extend_from_slice(&y_message);
    assert_eq!(
        PreKeyMessage::decode(&wrapped).unwrap().base_key,
        x.base_key
    );
    // And Y's own pre-key message inside X's fields.
    let y = PreKeyMessage::decode(&y_first).unwrap();
    let mut rewrapped = x_first[..inner_at].to_vec();
    rewrapped.extend_from_slice(y.message.encoded());

    let before = bob.snapshot(&a);
    for forged in [&wrapped, &rewrapped] {
        assert!(matches!(
            bob.decrypt(&a, forged),
            Err(SessionError::InvalidMessage)
        ));
        assert_eq!(bob.snapshot(&a), before);
    }
    assert_eq!(bob.decrypt(&a, &y_message).unwrap(), b"plain message on Y");
}

/// The inner message of a pre-key message is sealed with the pre-key associated data:
/// a relay that strips the pre-key fields and delivers it as a plain message gets it
/// refused (before the fix it was accepted), and the pre-key message still decrypts.
#[test]
fn the_inner_message_of_a_prekey_message_does_not_decrypt_alone() {
    let mut alice = Party::new("alice", 11);
    let mut bob = Party::new("bob", 22);
    let (a, b) = (alice.addr.clone(), bob.addr.clone());
    session::initiate(&mut alice.store, &b, &bob.bundle().verify().unwrap()).unwrap();
    let first = alice.encrypt(&b, b"first");
    let second = alice.encrypt(&b, b"second");
    assert_eq!(bob.decrypt(&a, &first).unwrap(), b"first");
    let stripped = PreKeyMessage::decode(&second)
        .unwrap()
        .message
        .encoded()
        .to_vec();
    let before = bob.snapshot(&a);
    assert!(matches!(
        bob.decrypt(&a, &stripped),
        Err(SessionError::InvalidMessage)
    ));
    assert_eq!(bob.snapshot(&a), before);
    assert_eq!(bob.decrypt(&a, &second).unwrap(), b"second");
}

/// Issue 14, item 8: a session with our own device (same identity, hence same account
/// and device) is refused by the library, when initiating from a bundle and when
/// receiving a pre-key message (here our own, reflected back by the relay).
#[test]
fn a_session_with_our_own_device_is_refused() {
    let mut bob = Party::new("bob", 22);
    let own_bundle = bob.bundle().verify().unwrap();
    let mallory = Address::new("mallory", 7).unwrap();
    for to in [bob.addr.clone(), mallory.clone()] {
        assert!(matches!(
            session::initiate(&mut bob.store, &to, &own_bundle),
            Err(SessionError::SelfSession)
        ));
        assert!(bob.store.load_session(&to).unwrap().is_none());
        assert!(bob.store.remote_identity(&to).unwrap().is_none());
    }

    let mut alice = Party::new("alice", 11);
    let (a, b) = (alice.addr.clone(), bob.addr.clone());
    session::initiate(&mut alice.store, &b, &bob.bundle().verify().unwrap()).unwrap();
    let first = alice.encrypt(&b, b"to bob");
    // Reflected as if from Alice's own address, from Bob, and from anyone else.
    for from in [a.clone(), b.clone(), mallory] {
        let before = (
            alice.snapshot(&from),
            alice.store.remote_identity(&from).unwrap(),
        );
        assert!(
            matches!(alice.decrypt(&from, &first), Err(SessionError::SelfSession)),
            "reflected as from {from}"
        );
        assert_eq!(
            (
                alice.snapshot(&from),
                alice.store.remote_identity(&from).unwrap()
            ),
            before
        );
    }
    assert_eq!(bob.decrypt(&a, &first).unwrap(), b"to bob");
}
