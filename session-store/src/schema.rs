//! The schema and its migrations.
//!
//! `schema_version` holds one row with the version the database was last migrated to.
//! Each step in [`MIGRATIONS`] moves the database up by one version; all steps needed
//! run in one transaction, so a crash mid-migration leaves the old version intact.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use signal_core::StoreError;
use signal_core::session::SessionRecord;

use crate::error::sql;

/// The schema version this code writes.
pub const SCHEMA_VERSION: u32 = 3;

/// Version 1: identities, prekeys, last-resort uses and session records.
const V1: &str = "
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version (version) VALUES (0);
CREATE TABLE local_identity (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    key_pair BLOB NOT NULL,
    registration_id INTEGER NOT NULL
);
CREATE TABLE remote_identities (
    user TEXT NOT NULL,
    device INTEGER NOT NULL,
    identity BLOB NOT NULL,
    PRIMARY KEY (user, device)
) WITHOUT ROWID;
CREATE TABLE prekeys (id INTEGER PRIMARY KEY, record BLOB NOT NULL);
CREATE TABLE signed_prekeys (id INTEGER PRIMARY KEY, record BLOB NOT NULL);
CREATE TABLE kem_prekeys (id INTEGER PRIMARY KEY, record BLOB NOT NULL);
CREATE TABLE last_resort_uses (
    kem_prekey_id INTEGER NOT NULL,
    base_key BLOB NOT NULL,
    PRIMARY KEY (kem_prekey_id, base_key)
) WITHOUT ROWID;
CREATE TABLE sessions (
    user TEXT NOT NULL,
    device INTEGER NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY (user, device)
);
";

/// Version 2: the record generation gets its own column, so a commit checks it
/// without decoding the stored record. Existing rows are back-filled by decoding.
fn v2(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.execute_batch("ALTER TABLE sessions ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;")
        .map_err(sql)?;
    let rows: Vec<(String, i64, Vec<u8>)> = {
        let mut stmt = tx
            .prepare("SELECT user, device, record FROM sessions")
            .map_err(sql)?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(sql)?
            .collect::<Result<_, _>>()
            .map_err(sql)?
    };
    for (user, device, record) in rows {
        let generation = SessionRecord::decode(&record)?.generation();
        tx.execute(
            "UPDATE sessions SET generation = ?1 WHERE user = ?2 AND device = ?3",
            params![generation.cast_signed(), user, device],
        )
        .map_err(sql)?;
    }
    Ok(())
}

/// Version 3: sender-key records of groups, one per (group, sender device).
const V3: &str = "
CREATE TABLE sender_keys (
    group_id BLOB NOT NULL,
    user TEXT NOT NULL,
    device INTEGER NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY (group_id, user, device)
);
";

type Step = fn(&Transaction<'_>) -> Result<(), StoreError>;

/// `MIGRATIONS[n]` moves a database from version `n` to `n + 1`.
const MIGRATIONS: [Step; SCHEMA_VERSION as usize] = [
    |tx| tx.execute_batch(V1).map_err(sql),
    v2,
    |tx| tx.execute_batch(V3).map_err(sql),
];

/// Whether the database holds the store's schema (its `schema_version` table). Only
/// reads.
pub(crate) fn has_schema(conn: &Connection) -> Result<bool, StoreError> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version')",
        [],
        |r| r.get(0),
    )
    .map_err(sql)
}

/// The version recorded in the database, 0 for a database without the schema.
pub(crate) fn current_version(tx: &Transaction<'_>) -> Result<u32, StoreError> {
    if !has_schema(tx)? {
        return Ok(0);
    }
    let v: Option<i64> = tx
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .optional()
        .map_err(sql)?;
    let v = v.ok_or(StoreError::Corrupt {
        what: "schema_version table is empty",
    })?;
    u32::try_from(v).map_err(|_| StoreError::Corrupt {
        what: "schema_version is out of range",
    })
}

/// Migrates to `target` (at most [`SCHEMA_VERSION`]) inside `tx`. Refuses a database
/// newer than this code with [`StoreError::NewerSchema`] without changing it.
pub(crate) fn migrate_to(tx: &Transaction<'_>, target: u32) -> Result<(), StoreError> {
    let found = current_version(tx)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (from, step) in (0..target.min(SCHEMA_VERSION)).zip(MIGRATIONS) {
        if from < found {
            continue;
        }
        step(tx)?;
        tx.execute("UPDATE schema_version SET version = ?1", [from + 1])
            .map_err(sql)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rusqlite::Connection;
    use signal_core::prekey::{KemPreKeyRecord, PreKeyBundle, SignedPreKeyRecord};
    use signal_core::store::{InMemoryStore, KemPreKeyStore, SessionStore, SignedPreKeyStore};
    use signal_core::{Address, IdentityKeyPair, session};

    /// Writes `tests/fixtures/v1.db`: a version-1 database of "alice" holding her
    /// identity, Bob's identity and a session with Bob, keyed with the tests' raw key
    /// (`tests/common/mod.rs`, `KEY_HEX`). Run with
    /// `cargo test -p session-store write_v1_fixture -- --ignored` after deleting the
    /// old fixture; the file is checked in.
    #[test]
    #[ignore = "regenerates a checked-in fixture"]
    fn write_v1_fixture() {
        const KEY_HEX: &str = "5f3c1a7e9b2d4c6f8a0e1d3b5c7a9f2e4d6c8b0a1f3e5d7c9b2a4f6e8d0c1b3a";
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1.db");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        assert!(!path.exists(), "delete the old fixture first");

        let bob_id = IdentityKeyPair::generate().unwrap();
        let mut bob = InMemoryStore::new(bob_id.clone(), 2);
        let spk = SignedPreKeyRecord::generate(&bob_id, 2, 1, 1_700_000_000).unwrap();
        let kem = KemPreKeyRecord::generate(&bob_id, 1, 1_700_000_000, true).unwrap();
        bob.store_signed_prekey(&spk).unwrap();
        bob.store_kem_prekey(&kem).unwrap();
        let bundle = PreKeyBundle {
            registration_id: 2,
            identity: *bob_id.public(),
            signed_prekey: spk.public().clone(),
            one_time_prekey: None,
            kem_prekey: kem.public().clone(),
        };
        let alice_id = IdentityKeyPair::generate().unwrap();
        let mut alice = InMemoryStore::new(alice_id.clone(), 1);
        let bob_addr = Address::new("bob", 1).unwrap();
        session::initiate(&mut alice, &bob_addr, &bundle.verify().unwrap()).unwrap();
        session::encrypt(&mut alice, &bob_addr, b"fixture").unwrap();
        let record = alice.load_session(&bob_addr).unwrap().unwrap();

        let mut conn = Connection::open(&path).unwrap();
        conn.execute_batch(&format!("PRAGMA key = \"x'{KEY_HEX}'\";"))
            .unwrap();
        let tx = conn.transaction().unwrap();
        migrate_to(&tx, 1).unwrap();
        tx.execute(
            "INSERT INTO local_identity (id, key_pair, registration_id) VALUES (0, ?1, 1)",
            [&alice_id.to_secret_bytes()[..]],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO remote_identities (user, device, identity) VALUES ('bob', 1, ?1)",
            [&bob_id.public().encode()[..]],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO sessions (user, device, record) VALUES ('bob', 1, ?1)",
            [&record.encode()[..]],
        )
        .unwrap();
        tx.commit().unwrap();
        conn.execute_batch("VACUUM;").unwrap();
    }
}
