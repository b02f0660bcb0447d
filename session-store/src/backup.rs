//! Whole-account backups for moving to a new device.
//!
//! A backup is a single SQLCipher 4 database file holding a copy of every table (made
//! with `sqlcipher_export`). Its key is derived from a passphrase with Argon2id using
//! [`BACKUP_KDF`]; the Argon2id salt is SQLCipher's own per-file salt, the file's first
//! 16 bytes, so the backup needs nothing beside it. The copy carries its schema
//! version: importing a backup from an older version migrates it, one from a newer
//! version is refused with [`StoreError::NewerSchema`].

use std::fs;
use std::io::Read;
use std::path::Path;

use rusqlite::{Connection, params};
use signal_core::StoreError;

use crate::error::sql;
use crate::key::{
    ARGON2_M_COST, ARGON2_P_COST, ARGON2_T_COST, Argon2Params, KeyProvider, KeyPurpose, SALT_LEN,
};
use crate::schema::SCHEMA_VERSION;
use crate::store::{OpenError, SqlStore, open_keyed};

/// Argon2id parameters of backup format 1 (fixed by the format: the file records
/// nothing in plaintext but its salt).
pub const BACKUP_KDF: Argon2Params = Argon2Params {
    m_cost: ARGON2_M_COST,
    t_cost: ARGON2_T_COST,
    p_cost: ARGON2_P_COST,
};

fn utf8(path: &Path) -> Result<&str, StoreError> {
    path.to_str().ok_or_else(|| {
        OpenError::NonUtf8Path {
            path: path.to_owned(),
        }
        .into_store()
    })
}

fn refuse_existing(path: &Path) -> Result<(), StoreError> {
    if fs::symlink_metadata(path).is_ok() {
        return Err(OpenError::AlreadyExists {
            path: path.to_owned(),
        }
        .into_store());
    }
    Ok(())
}

/// Copies every table of `conn`'s main database into a new SQLCipher file at `dest`
/// keyed by `literal`, from one consistent snapshot.
fn export_to(conn: &Connection, dest: &Path, literal: &str) -> Result<(), StoreError> {
    conn.execute(
        "ATTACH DATABASE ?1 AS export_target KEY ?2",
        params![utf8(dest)?, literal],
    )
    .map_err(sql)?;
    let copied = conn
        .execute_batch("BEGIN; SELECT sqlcipher_export('export_target'); COMMIT;")
        .map_err(sql);
    if copied.is_err() {
        // Best effort: leave the connection usable; the error reported is the copy's.
        let _ = conn.execute_batch("ROLLBACK;");
    }
    let detached = conn
        .execute_batch("DETACH DATABASE export_target")
        .map_err(sql);
    copied.and(detached)
}

/// See [`SqlStore::export_backup`].
pub(crate) fn export(conn: &Connection, dest: &Path, passphrase: &[u8]) -> Result<(), StoreError> {
    refuse_existing(dest)?;
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt)
        .map_err(|e| crate::key::KeyError::Randomness(e.to_string()).into_store())?;
    let key = BACKUP_KDF.derive(passphrase, &salt)?;
    export_to(conn, dest, &key.sqlcipher_literal(Some(&salt)))?;
    // The format depends on SQLCipher having used our salt: check it did.
    if read_salt(dest)? != salt {
        return Err(StoreError::Backend("backup salt was not applied".into()));
    }
    Ok(())
}

fn read_salt(path: &Path) -> Result<[u8; SALT_LEN], StoreError> {
    let mut salt = [0u8; SALT_LEN];
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut salt))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => StoreError::Corrupt {
                what: "backup file is shorter than its header",
            },
            _ => OpenError::Io(e).into_store(),
        })?;
    Ok(salt)
}

impl SqlStore {
    /// Restores the backup at `backup` (made by [`SqlStore::export_backup`]) into a new
    /// store at `dest` (which must not exist) keyed by `dest_key`, and opens it.
    ///
    /// A wrong passphrase is [`StoreError::WrongKey`]; the backup file is only read.
    pub fn import_backup(
        backup: &Path,
        passphrase: &[u8],
        dest: &Path,
        dest_key: &dyn KeyProvider,
    ) -> Result<SqlStore, StoreError> {
        refuse_existing(dest)?;
        let salt = read_salt(backup)?;
        let key = BACKUP_KDF.derive(passphrase, &salt)?;
        // CREATE only lets the attached destination be created; the backup exists.
        let source = open_keyed(backup, Some(&key), true)?;
        let version: i64 = source
            .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
            .map_err(sql)?;
        if version > i64::from(SCHEMA_VERSION) {
            return Err(StoreError::NewerSchema {
                found: u32::try_from(version).unwrap_or(u32::MAX),
                supported: SCHEMA_VERSION,
            });
        }
        let new_key = dest_key.database_key(dest, KeyPurpose::Create)?;
        export_to(&source, dest, &new_key.sqlcipher_literal(None))?;
        drop(source);
        SqlStore::open(dest, dest_key)
    }
}
