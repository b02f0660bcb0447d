//! Encryption at rest, key handling, damage detection, migrations and backups, on
//! real SQLCipher files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;
use std::path::Path;

use common::*;
use session_store::{
    Argon2Params, DatabaseKey, EnvKey, FileKey, PassphraseKey, RawKey, SCHEMA_VERSION, SqlStore,
};
use signal_core::store::{IdentityStore, SessionStore};
use signal_core::{IdentityKeyPair, StoreError, session};

/// Small Argon2id parameters so debug-build tests stay fast; the parameters a salt
/// file records are the ones used to open.
const FAST: Argon2Params = Argon2Params {
    m_cost: 256,
    t_cost: 1,
    p_cost: 1,
};

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn files_of(db: &Path) -> Vec<Vec<u8>> {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| {
            let mut p = db.as_os_str().to_owned();
            p.push(suffix);
            fs::read(p).ok()
        })
        .collect()
}

#[test]
fn database_wal_and_shm_hold_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.db");
    let (mut bob, mut alice) = established(&path);
    create_inbox(&mut bob);
    let message = b"MARKER-the-known-plaintext-0123456789";
    let w = session::encrypt(&mut alice, &bob_addr(), message).unwrap();
    receive(&mut bob, 1, &w).unwrap();
    let identity_secret = bob.local_identity().unwrap().to_secret_bytes();
    let record = bob.load_session(&alice_addr()).unwrap().unwrap().encode();
    let needles: Vec<(&str, Vec<u8>)> = vec![
        ("message", message.to_vec()),
        ("identity key pair", identity_secret.to_vec()),
        (
            "identity private half",
            identity_secret[identity_secret.len() - 32..].to_vec(),
        ),
        ("session record prefix", record[..48].to_vec()),
        ("table name", b"app_inbox".to_vec()),
        ("sqlite header", b"SQLite format 3".to_vec()),
    ];
    // While open (WAL and shm present) and after close (checkpointed).
    let open_files = files_of(&path);
    assert!(
        open_files.len() >= 2,
        "expected the WAL to exist while open"
    );
    drop(bob);
    for bytes in open_files.iter().chain(files_of(&path).iter()) {
        for (what, needle) in &needles {
            assert!(!contains(bytes, needle), "{what} found in a database file");
        }
    }
}

#[test]
fn wrong_key_and_no_key_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.db");
    drop(established(&path));
    let before = fs::read(&path).unwrap();
    assert!(matches!(
        SqlStore::open(&path, &other_key()),
        Err(StoreError::WrongKey)
    ));
    assert!(matches!(
        SqlStore::open_unencrypted(&path),
        Err(StoreError::WrongKey)
    ));
    assert!(matches!(
        SqlStore::open(&path, &PassphraseKey::with_params("guess", FAST)),
        Err(StoreError::Backend(_))
    ));
    assert_eq!(fs::read(&path).unwrap(), before);
    assert!(!PassphraseKey::salt_path(&path).exists());
    // A key given for a plaintext database is a wrong key too.
    let plain = dir.path().join("plain.db");
    drop(SqlStore::create_unencrypted(&plain, &IdentityKeyPair::generate().unwrap(), 1).unwrap());
    assert!(matches!(
        SqlStore::open(&plain, &raw_key()),
        Err(StoreError::WrongKey)
    ));
    SqlStore::open_unencrypted(&plain).unwrap();
    // The right key still opens the untouched file.
    SqlStore::open(&path, &raw_key()).unwrap();
}

fn assert_damaged(path: &Path) {
    let before = fs::read(path).unwrap();
    match SqlStore::open(path, &raw_key()) {
        Err(StoreError::Corrupt { .. }) => {}
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(
        fs::read(path).unwrap(),
        before,
        "a failed open changed the file"
    );
}

#[test]
fn truncated_or_bit_flipped_files_are_damaged_not_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.db");
    drop(established(&path));
    let good = fs::read(&path).unwrap();
    assert!(good.len() >= 4 * 4096);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("half a page short", good[..good.len() - 2048].to_vec()),
        ("last page missing", good[..good.len() - 4096].to_vec()),
        (
            "half the file",
            good[..good.len() / 2 / 4096 * 4096].to_vec(),
        ),
        ("short of one page", good[..1000].to_vec()),
    ];
    let mut flips = Vec::new();
    // Page 1 after SQLCipher's 16-byte salt, a middle page, the last page.
    for offset in [100, good.len() / 2 + 17, good.len() - 100] {
        let mut bad = good.clone();
        bad[offset] ^= 0x04;
        flips.push((offset, bad));
    }
    for (what, bytes) in cases {
        let p = dir.path().join("t.db");
        fs::write(&p, &bytes).unwrap();
        eprintln!("case: {what}");
        assert_damaged(&p);
        fs::remove_file(&p).unwrap();
    }
    for (offset, bytes) in flips {
        let p = dir.path().join(format!("f{offset}.db"));
        fs::write(&p, &bytes).unwrap();
        eprintln!("case: bit flip at {offset}");
        assert_damaged(&p);
    }
}

#[test]
fn rekey_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.db");
    let (mut bob, mut alice) = established(&path);
    let new_key = RawKey::new(DatabaseKey::from_bytes([9; 32]));
    bob.rekey(&new_key).unwrap();
    let w = session::encrypt(&mut alice, &bob_addr(), b"after rekey").unwrap();
    session::decrypt_and_commit(&mut bob, &alice_addr(), &w).unwrap();
    drop(bob);
    assert!(matches!(
        SqlStore::open(&path, &raw_key()),
        Err(StoreError::WrongKey)
    ));
    let mut bob = SqlStore::open(&path, &new_key).unwrap();
    let w = session::encrypt(&mut alice, &bob_addr(), b"again").unwrap();
    assert_eq!(
        &session::decrypt_and_commit(&mut bob, &alice_addr(), &w).unwrap()[..],
        b"again"
    );
    // Onto a passphrase: the salt file is written beside the database.
    let pass = PassphraseKey::with_params("correct horse", FAST);
    bob.rekey(&pass).unwrap();
    drop(bob);
    assert!(PassphraseKey::salt_path(&path).exists());
    SqlStore::open(&path, &pass)
        .unwrap()
        .integrity_check()
        .unwrap();
    assert!(matches!(
        SqlStore::open(&path, &PassphraseKey::with_params("wrong horse", FAST)),
        Err(StoreError::WrongKey)
    ));
}

#[test]
fn passphrase_opens_with_stored_salt_and_params() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let id = IdentityKeyPair::generate().unwrap();
    drop(SqlStore::create(&path, &PassphraseKey::with_params("pw", FAST), &id, 5).unwrap());
    let salt_file = fs::read_to_string(PassphraseKey::salt_path(&path)).unwrap();
    assert!(salt_file.contains("algorithm=argon2id"));
    assert!(salt_file.contains("m_cost=256"));
    // The recorded parameters win over the opener's defaults.
    let store = SqlStore::open(&path, &PassphraseKey::new("pw")).unwrap();
    assert_eq!(store.local_registration_id().unwrap(), 5);
    drop(store);
    assert!(matches!(
        SqlStore::open(&path, &PassphraseKey::new("pW")),
        Err(StoreError::WrongKey)
    ));
    // Without its salt the database cannot be opened, and nothing is created.
    let moved = dir.path().join("moved.db");
    fs::copy(&path, &moved).unwrap();
    assert!(matches!(
        SqlStore::open(&moved, &PassphraseKey::new("pw")),
        Err(StoreError::Backend(_))
    ));
    assert!(!PassphraseKey::salt_path(&moved).exists());
}

#[test]
fn file_key_provider_and_missing_env() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.db");
    let hex_file = dir.path().join("key.hex");
    fs::write(&hex_file, format!("{KEY_HEX}\n")).unwrap();
    let id = IdentityKeyPair::generate().unwrap();
    drop(SqlStore::create(&path, &FileKey::new(&hex_file), &id, 3).unwrap());
    SqlStore::open(&path, &raw_key()).unwrap();
    let raw_file = dir.path().join("key.bin");
    fs::write(&raw_file, [0x42; 32]).unwrap();
    assert!(matches!(
        SqlStore::open(&path, &FileKey::new(&raw_file)),
        Err(StoreError::WrongKey)
    ));
    fs::write(&raw_file, b"not a key").unwrap();
    assert!(matches!(
        SqlStore::open(&path, &FileKey::new(&raw_file)),
        Err(StoreError::Backend(_))
    ));
    // `EnvKey` is exercised by the process tests, whose children get their key this way.
    assert!(matches!(
        SqlStore::open(&path, &EnvKey::new("SESSION_STORE_TEST_UNSET_VARIABLE")),
        Err(StoreError::Backend(_))
    ));
}

#[test]
fn newer_schema_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.db");
    let mut store =
        SqlStore::create(&path, &raw_key(), &IdentityKeyPair::generate().unwrap(), 1).unwrap();
    store
        .write(|tx| {
            tx.execute(
                "UPDATE schema_version SET version = ?1",
                [SCHEMA_VERSION + 1],
            )
            .map_err(|e| StoreError::Backend(Box::new(e)))
        })
        .unwrap();
    drop(store);
    let before = fs::read(&path).unwrap();
    match SqlStore::open(&path, &raw_key()) {
        Err(StoreError::NewerSchema { found, supported }) => {
            assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn version_1_fixture_migrates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1.db"),
        &path,
    )
    .unwrap();
    let mut store = SqlStore::open(&path, &raw_key()).unwrap();
    let version: u32 = store
        .connection()
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let record = store.load_session(&bob_addr()).unwrap().unwrap();
    let column: i64 = store
        .connection()
        .query_row("SELECT generation FROM sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(column.cast_unsigned(), record.generation());
    assert!(record.generation() > 0);
    // The back-filled generation lets the migrated session commit.
    session::encrypt(&mut store, &bob_addr(), b"after migration").unwrap();
    store.integrity_check().unwrap();
}

#[test]
fn backup_export_import_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.db");
    let (mut bob, mut alice) = established(&path);
    create_inbox(&mut bob);
    let w = session::encrypt(&mut alice, &bob_addr(), b"kept").unwrap();
    receive(&mut bob, 1, &w).unwrap();
    let backup = dir.path().join("account.backup");
    bob.export_backup(&backup, b"backup pass").unwrap();
    assert!(matches!(
        bob.export_backup(&backup, b"backup pass"),
        Err(StoreError::Backend(_))
    ));
    let bytes = fs::read(&backup).unwrap();
    assert!(!contains(&bytes, b"kept"));
    assert!(!contains(&bytes, b"SQLite format 3"));

    let restored_path = dir.path().join("new-device.db");
    let new_key = RawKey::new(DatabaseKey::from_bytes([3; 32]));
    assert!(matches!(
        SqlStore::import_backup(&backup, b"wrong pass", &restored_path, &new_key),
        Err(StoreError::WrongKey)
    ));
    assert!(!restored_path.exists());
    let (mut restored, _) =
        SqlStore::import_backup(&backup, b"backup pass", &restored_path, &new_key).unwrap();
    assert_eq!(inbox_ids(&restored), vec![1]);
    assert_eq!(
        restored.local_identity().unwrap().to_secret_bytes(),
        bob.local_identity().unwrap().to_secret_bytes()
    );
    // Late messages on the archived session still decrypt on the new device.
    drop(bob);
    let w = session::encrypt(&mut alice, &bob_addr(), b"on the new device").unwrap();
    receive(&mut restored, 2, &w).unwrap();
    drop(restored);
    SqlStore::open(&restored_path, &new_key).unwrap();
    assert_eq!(
        fs::read(&backup).unwrap(),
        bytes,
        "import changed the backup"
    );
}
