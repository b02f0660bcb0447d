//! Restoring a backup never encrypts under a key the exporting store may also have
//! used: sessions are retired, own sender-key chains replaced, prekeys rotated.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::*;
use session_store::backup::RestoreReport;
use session_store::{DatabaseKey, RawKey, SqlStore};
use signal_core::group::{self, GroupId, SenderKeyDistributionMessage, SenderKeyMessage};
use signal_core::store::{
    IdentityStore, KemPreKeyStore, SenderKeyStore, SessionStore, SignedPreKeyStore,
};
use signal_core::wire::{MessageKind, PreKeyMessage, SignalMessage};
use signal_core::{SessionError, session};

/// The (ratchet key, counter) a 1:1 ciphertext was encrypted under: equal pairs from
/// one sender mean one message key and nonce.
fn key_use(wire: &[u8]) -> ([u8; 33], u32) {
    let m = match MessageKind::of(wire).unwrap() {
        MessageKind::Message => SignalMessage::decode(wire).unwrap(),
        MessageKind::PreKey => PreKeyMessage::decode(wire).unwrap().message,
        other => panic!("not a 1:1 message: {other:?}"),
    };
    (m.ratchet_key.encode(), m.counter)
}

fn restore(backup: &Path, dir: &Path) -> (SqlStore, RestoreReport) {
    let key = RawKey::new(DatabaseKey::from_bytes([3; 32]));
    SqlStore::import_backup(backup, b"pass", &dir.join("restored.db"), &key).unwrap()
}

/// The store that made a backup goes on sending (a backup is always older than the
/// live store); a late message from the peer on a chain both copies know must not
/// make the restored store send on the copied sending chain.
#[test]
fn restored_session_never_reuses_a_sending_chain_position() {
    let dir = tempfile::tempdir().unwrap();
    let (mut bob, mut alice) = established(&dir.path().join("b.db"));
    let mut used = Vec::new();
    // Alice's ratchet step; Bob answers on a new sending chain Alice has not read yet.
    let a1 = session::encrypt(&mut alice, &bob_addr(), b"a1").unwrap();
    session::decrypt_and_commit(&mut bob, &alice_addr(), &a1).unwrap();
    let mut held = Vec::new();
    for body in [&b"b1"[..], b"b2"] {
        let w = session::encrypt(&mut bob, &alice_addr(), body).unwrap();
        used.push(key_use(&w));
        held.push(w);
    }
    // Alice's next message is on the chain Bob already receives on.
    let late = session::encrypt(&mut alice, &bob_addr(), b"late").unwrap();
    let backup = dir.path().join("account.backup");
    bob.export_backup(&backup, b"pass").unwrap();
    let after_export = session::encrypt(&mut bob, &alice_addr(), b"b3").unwrap();
    used.push(key_use(&after_export));
    held.push(after_export);
    drop(bob);
    for w in &held {
        session::decrypt_and_commit(&mut alice, &bob_addr(), w).unwrap();
    }

    let (mut restored, report) = restore(&backup, dir.path());
    assert_eq!(report.archived_sessions, 1);
    let record = restored.load_session(&alice_addr()).unwrap().unwrap();
    assert!(
        record.current().is_none(),
        "the copied session stayed current"
    );
    // The late message still decrypts (and makes the archived session current) ...
    assert_eq!(
        &session::decrypt_and_commit(&mut restored, &alice_addr(), &late).unwrap()[..],
        b"late"
    );
    // ... but the next send takes a fresh ratchet step instead of reusing `b3`'s key.
    let reply = session::encrypt(&mut restored, &alice_addr(), b"from the restore").unwrap();
    assert!(
        !used.contains(&key_use(&reply)),
        "a message key and nonce were used twice"
    );
    assert_eq!(
        &session::decrypt_and_commit(&mut alice, &bob_addr(), &reply).unwrap()[..],
        b"from the restore"
    );
}

/// With no late message, the next send needs a new PQXDH session; the peer accepts it.
/// The signed and last-resort prekeys are new and current; the old ones stay.
#[test]
fn restored_store_starts_new_sessions_with_new_prekeys() {
    let dir = tempfile::tempdir().unwrap();
    let (mut bob, mut alice) = established(&dir.path().join("b.db"));
    let mut used = Vec::new();
    for body in [&b"one"[..], b"two"] {
        let w = session::encrypt(&mut bob, &alice_addr(), body).unwrap();
        used.push(key_use(&w));
        session::decrypt_and_commit(&mut alice, &bob_addr(), &w).unwrap();
    }
    let backup = dir.path().join("account.backup");
    bob.export_backup(&backup, b"pass").unwrap();
    let old_spk = bob.load_signed_prekey(1).unwrap().unwrap();
    drop(bob);

    let (mut restored, report) = restore(&backup, dir.path());
    assert!(matches!(
        session::encrypt(&mut restored, &alice_addr(), b"x"),
        Err(SessionError::NoSession { .. })
    ));
    let alice_id = alice.local_identity().unwrap();
    let bundle = publish(&mut alice, &alice_id, 1, false);
    session::initiate(&mut restored, &alice_addr(), &bundle.verify().unwrap()).unwrap();
    let first = session::encrypt(&mut restored, &alice_addr(), b"new session").unwrap();
    assert_eq!(MessageKind::of(&first).unwrap(), MessageKind::PreKey);
    assert!(!used.contains(&key_use(&first)));
    assert_eq!(
        &session::decrypt_and_commit(&mut alice, &bob_addr(), &first).unwrap()[..],
        b"new session"
    );

    // Prekeys: new ids and keys, current by (created_at, id); the old ones remain for
    // pre-key messages in flight (key maintenance deletes them after its grace period).
    assert_eq!(restored.signed_prekey_ids().unwrap(), vec![1, 2]);
    let spk = restored.load_signed_prekey(2).unwrap().unwrap();
    assert_eq!(spk.public(), &report.new_signed_prekey);
    assert_ne!(spk.public().key, old_spk.public().key);
    assert!(spk.created_at() > old_spk.created_at());
    assert_eq!(restored.kem_prekey_ids().unwrap(), vec![100, 101]);
    let kem = restored.load_kem_prekey(101).unwrap().unwrap();
    assert!(kem.is_last_resort());
    assert_eq!(kem.public(), &report.new_last_resort_kem_prekey);
}

/// This device's own group chain is replaced (a new chain id that must be
/// distributed); chains received from others stay.
#[test]
fn restored_store_rotates_its_own_sender_key_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (mut bob, mut alice) = established(&dir.path().join("b.db"));
    let g = GroupId::generate().unwrap();
    let dist = |bytes: &[u8]| SenderKeyDistributionMessage::decode(bytes).unwrap();
    let bob_chain = group::create_distribution(&mut bob, &g, &bob_addr()).unwrap();
    group::process_distribution(&mut alice, &bob_addr(), &dist(&bob_chain.encode())).unwrap();
    let alice_chain = group::create_distribution(&mut alice, &g, &alice_addr()).unwrap();
    group::process_distribution(&mut bob, &alice_addr(), &dist(&alice_chain.encode())).unwrap();
    let g1 = group::encrypt(&mut bob, &g, &bob_addr(), b"g1").unwrap();
    group::decrypt_and_commit(&mut alice, &g, &bob_addr(), &g1).unwrap();
    let backup = dir.path().join("account.backup");
    bob.export_backup(&backup, b"pass").unwrap();
    let g2 = group::encrypt(&mut bob, &g, &bob_addr(), b"g2").unwrap();
    group::decrypt_and_commit(&mut alice, &g, &bob_addr(), &g2).unwrap();
    drop(bob);

    let (mut restored, report) = restore(&backup, dir.path());
    assert_eq!(report.deleted_own_sender_keys, 1);
    assert!(restored.load_sender_key(&g, &bob_addr()).unwrap().is_none());
    // Alice's chain was kept: her group messages still decrypt.
    let from_alice = group::encrypt(&mut alice, &g, &alice_addr(), b"hi group").unwrap();
    group::decrypt_and_commit(&mut restored, &g, &alice_addr(), &from_alice).unwrap();

    let fresh = group::create_distribution(&mut restored, &g, &bob_addr()).unwrap();
    assert_ne!(fresh.chain_id(), bob_chain.chain_id());
    assert_eq!(fresh.iteration(), 0);
    let g3 = group::encrypt(&mut restored, &g, &bob_addr(), b"g3").unwrap();
    let header = SenderKeyMessage::parse(&g3).unwrap();
    assert_eq!(
        (header.chain_id, header.iteration),
        (fresh.chain_id(), 0),
        "the restored store sent on a copied chain"
    );
    group::process_distribution(&mut alice, &bob_addr(), &dist(&fresh.encode())).unwrap();
    assert_eq!(
        &group::decrypt_and_commit(&mut alice, &g, &bob_addr(), &g3).unwrap()[..],
        b"g3"
    );
}
