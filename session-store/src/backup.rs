//! Whole-account backups for moving to a new device.
//!
//! A backup is a single SQLCipher 4 database file holding a copy of every table (made
//! with `sqlcipher_export`). Its key is derived from a passphrase with Argon2id using
//! [`BACKUP_KDF`]; the Argon2id salt is SQLCipher's own per-file salt, the file's first
//! 16 bytes, so the backup needs nothing beside it. The copy carries its schema
//! version: importing a backup from an older version migrates it, one from a newer
//! version is refused with [`StoreError::NewerSchema`].
//!
//! A backup is a snapshot of live ratchets, and the store that made it may go on using
//! them. So an import never sends on anything it copied ([`RestoreReport`]): every
//! session is archived with its sending chain dropped
//! ([`SessionRecord::retire_for_restore`]), this device's own sender-key chains are
//! deleted (the next group message starts a new chain, which must be distributed),
//! and a new signed prekey and a new last-resort ML-KEM prekey become current (the
//! old ones stay until key maintenance deletes them after its grace period, so
//! pre-key messages in flight still decrypt). After an export, the exporting store
//! must not be used to send or receive any more: both stores would act as one device.

use std::fs;
use std::io::Read;
use std::path::Path;

use rusqlite::{Connection, Transaction, params};
use signal_core::group::SenderKeyRecord;
use signal_core::prekey::{
    KemPreKeyPublic, KemPreKeyRecord, PreKeyId, SignedPreKeyPublic, SignedPreKeyRecord, Timestamp,
};
use signal_core::session::SessionRecord;
use signal_core::{IdentityKeyPair, StoreError};
use zeroize::Zeroizing;

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

/// What [`SqlStore::import_backup`] changed in the restored store so that nothing the
/// exporting store used is used again.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RestoreReport {
    /// Peer devices whose sessions were archived: the next message to each needs a new
    /// session (`fanout` reports them in `missing_sessions`; fetch a bundle and
    /// initiate).
    pub archived_sessions: usize,
    /// Groups whose own sending chain was deleted: `group::create_distribution` makes a
    /// new chain (new chain id), which must be distributed before the next group
    /// message.
    pub deleted_own_sender_keys: usize,
    /// The new current signed prekey: upload it.
    pub new_signed_prekey: SignedPreKeyPublic,
    /// The new current last-resort ML-KEM prekey: upload it.
    pub new_last_resort_kem_prekey: KemPreKeyPublic,
}

impl SqlStore {
    /// Restores the backup at `backup` (made by [`SqlStore::export_backup`]) into a new
    /// store at `dest` (which must not exist) keyed by `dest_key`, and opens it.
    ///
    /// In the same transaction as the restore is first opened, every copied session is
    /// retired, this device's sender-key chains are deleted and new signed and
    /// last-resort prekeys are made current (see [`RestoreReport`]). If anything fails,
    /// the files created at `dest` are removed.
    ///
    /// A wrong passphrase is [`StoreError::WrongKey`]; the backup file is only read.
    pub fn import_backup(
        backup: &Path,
        passphrase: &[u8],
        dest: &Path,
        dest_key: &dyn KeyProvider,
    ) -> Result<(SqlStore, RestoreReport), StoreError> {
        refuse_existing(dest)?;
        let restored = restore(backup, passphrase, dest, dest_key);
        if restored.is_err() {
            remove_partial(dest);
        }
        restored
    }
}

fn restore(
    backup: &Path,
    passphrase: &[u8],
    dest: &Path,
    dest_key: &dyn KeyProvider,
) -> Result<(SqlStore, RestoreReport), StoreError> {
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
    let mut store = SqlStore::open(dest, dest_key)?;
    let report = store.write(retire_copied_state)?;
    Ok((store, report))
}

/// Best effort: removes the database (and its WAL and shared-memory files) that a
/// failed import created.
fn remove_partial(dest: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut path = dest.as_os_str().to_owned();
        path.push(suffix);
        let _ = fs::remove_file(path);
    }
}

/// Everything [`RestoreReport`] describes, inside one transaction.
fn retire_copied_state(tx: &Transaction<'_>) -> Result<RestoreReport, StoreError> {
    let archived_sessions = retire_sessions(tx)?;
    let deleted_own_sender_keys = delete_own_sender_keys(tx)?;
    let (identity, registration_id) = local_identity(tx)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());

    let (ids, newest) = prekey_ids(tx, "signed_prekeys", |b| {
        Ok(Some(SignedPreKeyRecord::from_secret_bytes(b)?.created_at()))
    })?;
    let signed = SignedPreKeyRecord::generate(
        &identity,
        registration_id,
        free_id(&ids)?,
        after(now, newest),
    )
    .map_err(crypto)?;
    tx.execute(
        "INSERT INTO signed_prekeys (id, record) VALUES (?1, ?2)",
        params![signed.id(), &signed.to_secret_bytes()[..]],
    )
    .map_err(sql)?;

    let (ids, newest) = prekey_ids(tx, "kem_prekeys", |b| {
        let record = KemPreKeyRecord::from_secret_bytes(b)?;
        Ok(record.is_last_resort().then(|| record.created_at()))
    })?;
    let kem = KemPreKeyRecord::generate(&identity, free_id(&ids)?, after(now, newest), true)
        .map_err(crypto)?;
    tx.execute(
        "INSERT INTO kem_prekeys (id, record) VALUES (?1, ?2)",
        params![kem.id(), &kem.to_secret_bytes()[..]],
    )
    .map_err(sql)?;
    Ok(RestoreReport {
        archived_sessions,
        deleted_own_sender_keys,
        new_signed_prekey: signed.public().clone(),
        new_last_resort_kem_prekey: kem.public().clone(),
    })
}

fn crypto(e: signal_core::CryptoError) -> StoreError {
    StoreError::Backend(Box::new(e))
}

/// A creation time that makes a new key current: `now`, or later than the newest
/// existing key (a key from a clock running ahead).
fn after(now: Timestamp, newest: Option<Timestamp>) -> Timestamp {
    newest.map_or(now, |n| now.max(n.saturating_add(1)))
}

/// The smallest id above every id in `ids` (wrapping past `u32::MAX` to 1) not in
/// `ids`, as key maintenance allocates.
fn free_id(ids: &[PreKeyId]) -> Result<PreKeyId, StoreError> {
    let mut candidate = ids.iter().copied().max().unwrap_or(0);
    for _ in 0..=ids.len() {
        candidate = candidate.checked_add(1).unwrap_or(1);
        if !ids.contains(&candidate) {
            return Ok(candidate);
        }
    }
    Err(StoreError::Backend("no free prekey id".into()))
}

/// Every id of `table` and the newest creation time among the records `created`
/// reports one for.
fn prekey_ids(
    tx: &Transaction<'_>,
    table: &str,
    created: impl Fn(&[u8]) -> Result<Option<Timestamp>, StoreError>,
) -> Result<(Vec<PreKeyId>, Option<Timestamp>), StoreError> {
    let mut stmt = tx
        .prepare(&format!("SELECT id, record FROM {table}"))
        .map_err(sql)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, PreKeyId>(0)?,
                Zeroizing::new(r.get::<_, Vec<u8>>(1)?),
            ))
        })
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    let mut newest = None;
    for (_, bytes) in &rows {
        newest = newest.max(created(bytes)?);
    }
    Ok((rows.into_iter().map(|(id, _)| id).collect(), newest))
}

fn local_identity(tx: &Transaction<'_>) -> Result<(IdentityKeyPair, u32), StoreError> {
    let (bytes, registration_id) = tx
        .query_row(
            "SELECT key_pair, registration_id FROM local_identity WHERE id = 0",
            [],
            |r| Ok((Zeroizing::new(r.get::<_, Vec<u8>>(0)?), r.get::<_, u32>(1)?)),
        )
        .map_err(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => StoreError::NoLocalIdentity,
            e => sql(e),
        })?;
    Ok((IdentityKeyPair::from_secret_bytes(&bytes)?, registration_id))
}

/// Retires every session record ([`SessionRecord::retire_for_restore`]); returns how
/// many there were.
fn retire_sessions(tx: &Transaction<'_>) -> Result<usize, StoreError> {
    let rows = {
        let mut stmt = tx
            .prepare("SELECT user, device, record FROM sessions")
            .map_err(sql)?;
        stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u32>(1)?,
                Zeroizing::new(r.get::<_, Vec<u8>>(2)?),
            ))
        })
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?
    };
    for (user, device, bytes) in &rows {
        let mut record = SessionRecord::decode(bytes)?;
        record.retire_for_restore();
        tx.execute(
            "UPDATE sessions SET generation = ?3, record = ?4 WHERE user = ?1 AND device = ?2",
            params![
                user,
                device,
                record.generation().cast_signed(),
                &record.encode()[..]
            ],
        )
        .map_err(sql)?;
    }
    Ok(rows.len())
}

/// Deletes every sender-key record that holds this device's own sending chain;
/// returns how many there were. Chains received from others stay.
fn delete_own_sender_keys(tx: &Transaction<'_>) -> Result<usize, StoreError> {
    let rows = {
        let mut stmt = tx
            .prepare("SELECT group_id, user, device, record FROM sender_keys")
            .map_err(sql)?;
        stmt.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, u32>(2)?,
                Zeroizing::new(r.get::<_, Vec<u8>>(3)?),
            ))
        })
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?
    };
    let mut deleted = 0;
    for (group, user, device, bytes) in &rows {
        if SenderKeyRecord::decode(bytes)?.is_own() {
            tx.execute(
                "DELETE FROM sender_keys WHERE group_id = ?1 AND user = ?2 AND device = ?3",
                params![group, user, device],
            )
            .map_err(sql)?;
            deleted += 1;
        }
    }
    Ok(deleted)
}
