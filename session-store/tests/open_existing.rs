//! Opening is not creating: `SqlStore::open` on a file that is empty or is not a store
//! fails and leaves the file byte-for-byte as it was (no schema written, no `-wal` or
//! `-shm` beside it); only `SqlStore::create` makes a store, and only at a new path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::*;
use session_store::{OpenError, SqlStore};
use signal_core::{IdentityKeyPair, StoreError};

fn is_not_a_store(r: Result<SqlStore, StoreError>) -> bool {
    match r {
        Err(StoreError::Backend(e)) => {
            matches!(e.downcast_ref(), Some(OpenError::NotAStore { .. }))
        }
        other => panic!("expected NotAStore, got {other:?}"),
    }
}

/// The file's bytes, and that nothing was created beside it.
fn untouched(path: &Path, before: &[u8]) {
    assert_eq!(std::fs::read(path).unwrap(), before, "the file changed");
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        assert!(!Path::new(&side).exists(), "{suffix} was created");
    }
}

#[test]
fn opening_an_empty_file_fails_and_leaves_it_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").unwrap();
    assert!(is_not_a_store(SqlStore::open(&path, &raw_key())));
    untouched(&path, b"");
    assert!(is_not_a_store(SqlStore::open_unencrypted(&path)));
    untouched(&path, b"");
    // Creating is a separate path, and it refuses an existing file.
    let identity = IdentityKeyPair::generate().unwrap();
    assert!(SqlStore::create(&path, &raw_key(), &identity, 1).is_err());
    untouched(&path, b"");
}

#[test]
fn opening_a_database_without_the_schema_fails_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // An application's own SQLCipher database under the same key, and a plaintext one.
    let keyed = dir.path().join("other-keyed.db");
    let conn = session_store::rusqlite::Connection::open(&keyed).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA key = \"x'{KEY_HEX}'\"; CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('x');"
    ))
    .unwrap();
    drop(conn);
    let plain = dir.path().join("other-plain.db");
    let conn = session_store::rusqlite::Connection::open(&plain).unwrap();
    conn.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('x');")
        .unwrap();
    drop(conn);

    let before = std::fs::read(&keyed).unwrap();
    assert!(is_not_a_store(SqlStore::open(&keyed, &raw_key())));
    untouched(&keyed, &before);
    let before = std::fs::read(&plain).unwrap();
    assert!(is_not_a_store(SqlStore::open_unencrypted(&plain)));
    untouched(&plain, &before);
}

#[test]
fn opening_garbage_fails_and_leaves_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.db");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();
    assert!(SqlStore::open(&path, &raw_key()).is_err());
    untouched(&path, &garbage);
}
