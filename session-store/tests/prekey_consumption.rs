//! A one-time prekey starts at most one session, even when two connections (two
//! processes on one SQLCipher file) decrypt pre-key messages that used it at the same
//! time: the second commit is refused with `StoreError::PreKeyAlreadyConsumed` and
//! leaves the database byte-for-byte as the first commit left it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use session_store::SqlStore;
use session_store::rusqlite::types::Value;
use signal_core::error::OneTimePreKeyKind;
use signal_core::prekey::PreKeyBundle;
use signal_core::store::{IdentityStore, InMemoryStore, ProtocolStore, SessionStore};
use signal_core::{Address, IdentityKeyPair, StoreError, session};

/// `user`'s first (pre-key) message to Bob from `bundle`.
fn first_message(bundle: &PreKeyBundle, user: &str) -> (Address, Vec<u8>) {
    let mut store = InMemoryStore::new(IdentityKeyPair::generate().unwrap(), 5);
    session::initiate(&mut store, &bob_addr(), &bundle.clone().verify().unwrap()).unwrap();
    let message = session::encrypt(&mut store, &bob_addr(), b"hi").unwrap();
    (Address::new(user, 1).unwrap(), message)
}

/// Every row of every table, sorted: equal dumps mean equal stored state.
fn dump(store: &SqlStore) -> Vec<String> {
    let conn = store.connection();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut rows = Vec::new();
    for table in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let columns = stmt.column_count();
        let mut q = stmt.query([]).unwrap();
        while let Some(row) = q.next().unwrap() {
            let values: Vec<Value> = (0..columns).map(|i| row.get(i).unwrap()).collect();
            rows.push(format!("{table} {values:?}"));
        }
    }
    rows.sort();
    rows
}

#[test]
fn two_connections_cannot_both_consume_a_one_time_prekey() {
    // `publish` stores one-time X25519 id 1 and one-time KEM id 1 and offers both;
    // offering no X25519 one-time prekey makes the KEM prekey the one that conflicts.
    for kind in [OneTimePreKeyKind::X25519, OneTimePreKeyKind::Kem] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bob.db");
        let bob_id = IdentityKeyPair::generate().unwrap();
        let mut first = SqlStore::create(&path, &raw_key(), &bob_id, 2).unwrap();
        let mut bundle = publish(&mut first, &bob_id, 2, false);
        if kind == OneTimePreKeyKind::Kem {
            bundle.one_time_prekey = None;
        }
        let mut second = SqlStore::open(&path, &raw_key()).unwrap();

        // The relay handed the same bundle to Alice and Carol.
        let (alice, m1) = first_message(&bundle, "alice");
        let (carol, m2) = first_message(&bundle, "carol");
        // Both connections decrypt before either commits, as two processes would.
        let (p1, c1) = session::decrypt(&first, &alice, &m1).unwrap().into_parts();
        let (p2, c2) = session::decrypt(&second, &carol, &m2).unwrap().into_parts();
        assert_eq!((&p1[..], &p2[..]), (&b"hi"[..], &b"hi"[..]));

        first.commit(c1).unwrap();
        let before = dump(&second);
        match second.commit(c2) {
            Err(StoreError::PreKeyAlreadyConsumed { kind: k, id: 1 }) if k == kind => {}
            other => panic!("expected PreKeyAlreadyConsumed {kind} 1, got {other:?}"),
        }
        assert_eq!(
            dump(&second),
            before,
            "the refused commit changed the store"
        );
        assert!(second.load_session(&carol).unwrap().is_none());
        assert!(second.remote_identity(&carol).unwrap().is_none());
        assert!(second.load_session(&alice).unwrap().is_some());
        // Carol's message cannot start a session later either: the prekey is gone.
        assert!(session::decrypt(&second, &carol, &m2).is_err());
    }
}
