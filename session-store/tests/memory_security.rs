//! Secrets read from the database do not stay in freed memory: every connection a
//! store opens has SQLCipher's memory sanitizing on (`PRAGMA cipher_memory_security`),
//! so SQLite's page cache and buffers are overwritten when freed. The pragma reads
//! back as on (SQLCipher reports 1 only when it is on *and* its sanitizing allocator is
//! the one in use) for every kind of open.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use session_store::SqlStore;
use signal_core::IdentityKeyPair;

fn memory_security(store: &SqlStore) -> String {
    store
        .connection()
        .query_row("PRAGMA cipher_memory_security", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn every_connection_has_memory_security_on() {
    let dir = tempfile::tempdir().unwrap();
    let identity = IdentityKeyPair::generate().unwrap();
    let (keyed, plain) = (dir.path().join("k.db"), dir.path().join("p.db"));
    let created = SqlStore::create(&keyed, &raw_key(), &identity, 1).unwrap();
    assert_eq!(memory_security(&created), "1");
    let opened = SqlStore::open(&keyed, &raw_key()).unwrap();
    assert_eq!(memory_security(&opened), "1");
    let unencrypted = SqlStore::create_unencrypted(&plain, &identity, 1).unwrap();
    assert_eq!(memory_security(&unencrypted), "1");
}
