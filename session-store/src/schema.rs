//! The schema and its migrations.
//!
//! `schema_version` holds one row with the version the database was last migrated to.
//! Each step in [`MIGRATIONS`] moves the database up by one version; all steps needed
//! run in one transaction, so a crash mid-migration leaves the old version intact.

use rusqlite::{OptionalExtension, Transaction, params};
use signal_core::StoreError;
use signal_core::session::SessionRecord;

use crate::error::sql;

/// The schema version this code writes.
pub const SCHEMA_VERSION: u32 = 2;

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

type Step = fn(&Transaction<'_>) -> Result<(), StoreError>;

/// `MIGRATIONS[n]` moves a database from version `n` to `n + 1`.
const MIGRATIONS: [Step; SCHEMA_VERSION as usize] = [|tx| tx.execute_batch(V1).map_err(sql), v2];

/// The version recorded in the database, 0 for a database without the schema.
pub(crate) fn current_version(tx: &Transaction<'_>) -> Result<u32, StoreError> {
    let has_table: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version')",
            [],
            |r| r.get(0),
        )
        .map_err(sql)?;
    if !has_table {
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
