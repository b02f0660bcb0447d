//! [`SqlStore`]: every `signal-core` store trait on one SQLCipher database.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use rusqlite::{
    Connection, ErrorCode, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};
use signal_core::error::OneTimePreKeyKind;
use signal_core::group::{GroupId, SenderKeyRecord, SenderKeyUpdate};
use signal_core::keys::DhPublicKey;
use signal_core::prekey::{KemPreKeyRecord, OneTimePreKeyRecord, PreKeyId, SignedPreKeyRecord};
use signal_core::session::SessionRecord;
use signal_core::store::{
    IdentityStore, KemPreKeyStore, PreKeyStore, ProtocolStore, SenderKeyStore, SessionCommit,
    SessionStore, SignedPreKeyStore,
};
use signal_core::{Address, IdentityKey, IdentityKeyPair, StoreError};
use zeroize::Zeroizing;

use crate::error::sql;
use crate::key::{DatabaseKey, KeyProvider, KeyPurpose};
use crate::schema::{self, SCHEMA_VERSION};

/// How long a connection waits for another connection's (or process's) write lock
/// before a write fails with a busy error.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// SQLCipher 4's default page size; a keyed database file is a whole number of pages.
const PAGE_SIZE: u64 = 4096;

/// The first 16 bytes of every plaintext SQLite database.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Failures of opening and managing a store file, carried in [`StoreError::Backend`].
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// [`SqlStore::create`] (or an export or import) refuses to replace an existing file.
    #[error("{path} already exists")]
    AlreadyExists {
        /// The path.
        path: PathBuf,
    },
    /// [`SqlStore::open`] found no database at the path.
    #[error("{path} does not exist")]
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// [`SqlStore::open`] found a file that is not a store: empty (zero length), or a
    /// database without the store's schema. The file is left exactly as it was; use
    /// [`SqlStore::create`] on a path that does not exist to make a new store.
    #[error("{path} is not a session store (empty, or a database without the store's schema)")]
    NotAStore {
        /// The path.
        path: PathBuf,
    },
    /// SQLite names attached files by UTF-8 path only.
    #[error("path {path} is not valid UTF-8")]
    NonUtf8Path {
        /// The path.
        path: PathBuf,
    },
    /// [`SqlStore::rekey`] was called on a database opened without a key.
    #[error("an unencrypted database cannot be re-keyed; export it instead")]
    NotEncrypted,
    /// File I/O outside SQLite failed.
    #[error("file I/O failed")]
    Io(#[from] std::io::Error),
}

impl OpenError {
    pub(crate) fn into_store(self) -> StoreError {
        StoreError::Backend(Box::new(self))
    }
}

/// A protocol store in one SQLCipher database file.
///
/// Guarantees:
/// - the whole file (and its `-wal` journal) is encrypted with SQLCipher 4 defaults
///   under the key from a [`KeyProvider`];
/// - [`ProtocolStore::commit`] and [`SqlStore::commit_with`] apply a session commit
///   in one `IMMEDIATE` transaction, refusing a stale generation or a replayed
///   last-resort use with [`StoreError::Conflict`], and a one-time prekey another
///   connection consumed first with [`StoreError::PreKeyAlreadyConsumed`] (each
///   consumption deletes exactly one row or the whole transaction rolls back);
/// - several connections, in one process or several, may use one file: WAL mode and a
///   [`BUSY_TIMEOUT`] serialize writers, and the generation check stops two of them
///   from committing state computed from the same record;
/// - opening never deletes or rewrites anything when it fails: a wrong or missing key
///   is [`StoreError::WrongKey`], a damaged file is [`StoreError::Corrupt`].
pub struct SqlStore {
    conn: Connection,
    path: PathBuf,
    encrypted: bool,
    /// Memo of decoded peer identities, keyed by their exact encoding. Decoding an
    /// identity costs a point decompression (a large share of a message commit); the row
    /// is still read from the database every time, so another process's change is seen,
    /// and a pure function of the bytes cannot go stale.
    decoded_identities: RefCell<HashMap<Vec<u8>, IdentityKey>>,
}

/// Bound on [`SqlStore`]'s identity memo; it is cleared when full.
const MAX_MEMOISED_IDENTITIES: usize = 4096;

impl core::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SqlStore")
            .field("path", &self.path)
            .field("encrypted", &self.encrypted)
            .finish_non_exhaustive()
    }
}

impl SqlStore {
    /// Creates an encrypted store at `path` for a device with this identity.
    /// Refuses an existing file.
    pub fn create(
        path: impl AsRef<Path>,
        key: &dyn KeyProvider,
        identity: &IdentityKeyPair,
        registration_id: u32,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref();
        refuse_existing(path)?;
        let key = key.database_key(path, KeyPurpose::Create)?;
        Self::create_with(path, Some(&key), identity, registration_id)
    }

    /// Opens the encrypted store at `path`, migrating an older schema.
    ///
    /// Only opens: a missing path is [`OpenError::NotFound`], an empty file or a
    /// database without the store's schema [`OpenError::NotAStore`] (the file is not
    /// touched); [`SqlStore::create`] is the only way to make a new store.
    ///
    /// Fails with [`StoreError::WrongKey`] if the key does not decrypt the file (or the
    /// file is a plaintext database), [`StoreError::Corrupt`] if the file is damaged
    /// (`PRAGMA quick_check` runs on every open), [`StoreError::NewerSchema`] if a
    /// newer version of this crate wrote it. A damaged first 16 bytes (SQLCipher's
    /// salt) cannot be told from a wrong key and is reported as `WrongKey`.
    pub fn open(path: impl AsRef<Path>, key: &dyn KeyProvider) -> Result<Self, StoreError> {
        let path = path.as_ref();
        refuse_missing(path)?;
        let key = key.database_key(path, KeyPurpose::Open)?;
        Self::open_with(path, Some(&key))
    }

    /// Creates a store **without encryption** — the same code path and schema with no
    /// key. It exists to measure SQLCipher's cost against plain SQLite; nothing secret
    /// belongs in it.
    pub fn create_unencrypted(
        path: impl AsRef<Path>,
        identity: &IdentityKeyPair,
        registration_id: u32,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref();
        refuse_existing(path)?;
        Self::create_with(path, None, identity, registration_id)
    }

    /// Opens a store with no key. An encrypted store is refused with
    /// [`StoreError::WrongKey`].
    pub fn open_unencrypted(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        refuse_missing(path)?;
        Self::open_with(path, None)
    }

    fn create_with(
        path: &Path,
        key: Option<&DatabaseKey>,
        identity: &IdentityKeyPair,
        registration_id: u32,
    ) -> Result<Self, StoreError> {
        let conn = connect(path, key, true)?;
        let mut store = Self {
            conn,
            path: path.to_owned(),
            encrypted: key.is_some(),
            decoded_identities: RefCell::default(),
        };
        let tx = store.immediate()?;
        schema::migrate_to(&tx, SCHEMA_VERSION)?;
        tx.execute(
            "INSERT INTO local_identity (id, key_pair, registration_id) VALUES (0, ?1, ?2)",
            params![&identity.to_secret_bytes()[..], registration_id],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(store)
    }

    fn open_with(path: &Path, key: Option<&DatabaseKey>) -> Result<Self, StoreError> {
        let conn = connect(path, key, false)?;
        quick_check(&conn)?;
        let mut store = Self {
            conn,
            path: path.to_owned(),
            encrypted: key.is_some(),
            decoded_identities: RefCell::default(),
        };
        let tx = store.immediate()?;
        schema::migrate_to(&tx, SCHEMA_VERSION)?;
        tx.commit().map_err(sql)?;
        Ok(store)
    }

    /// The database file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying connection, for an application's own reads. An application's
    /// own tables should use a prefix such as `app_`; the store's tables are private.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn immediate(&mut self) -> Result<Transaction<'_>, StoreError> {
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)
    }

    /// Applies `commit` and runs `also` in the same transaction: either the new session
    /// state, the consumed prekeys and whatever `also` wrote (typically the received
    /// plaintext) all persist, or none do. If `also` fails, nothing is written and its
    /// error is returned.
    pub fn commit_with<T>(
        &mut self,
        commit: SessionCommit,
        also: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self.immediate()?;
        apply_commit(&tx, &commit)?;
        let out = also(&tx)?;
        tx.commit().map_err(sql)?;
        Ok(out)
    }

    /// Applies a decrypted group message's sender-key `update` (from
    /// `signal_core::group::decrypt`, then `GroupDecrypted::into_parts`) and runs `also`
    /// in the same transaction: the advanced chain and whatever `also` wrote (typically
    /// the received plaintext) persist together or not at all.
    pub fn commit_sender_key_with<T>(
        &mut self,
        group: &GroupId,
        sender: &Address,
        update: &SenderKeyUpdate,
        also: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self.immediate()?;
        apply_sender_key_update(&tx, group, sender, update)?;
        let out = also(&tx)?;
        tx.commit().map_err(sql)?;
        Ok(out)
    }

    /// Runs `f` in one write (`IMMEDIATE`) transaction, committed if `f` succeeds.
    /// For an application's own writes.
    pub fn write<T>(
        &mut self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self.immediate()?;
        let out = f(&tx)?;
        tx.commit().map_err(sql)?;
        Ok(out)
    }

    /// Re-encrypts the database in place under the key `new_key` gives (asked with
    /// [`KeyPurpose::Create`]). Other connections to the file must be closed first:
    /// they would keep using the old key.
    pub fn rekey(&mut self, new_key: &dyn KeyProvider) -> Result<(), StoreError> {
        if !self.encrypted {
            return Err(OpenError::NotEncrypted.into_store());
        }
        let key = new_key.database_key(&self.path, KeyPurpose::Create)?;
        let pragma = pragma_with_key("PRAGMA rekey = \"", &key, None, "\";");
        self.conn.execute_batch(&pragma).map_err(sql)?;
        // Make sure the new key reads the file back before reporting success.
        quick_check(&self.conn)
    }

    /// Runs SQLite's full `PRAGMA integrity_check`; `Ok` if it reports `ok`.
    pub fn integrity_check(&self) -> Result<(), StoreError> {
        let rows = pragma_rows(&self.conn, "PRAGMA integrity_check")?;
        if rows == ["ok"] {
            Ok(())
        } else {
            Err(StoreError::Corrupt {
                what: "integrity_check found damage",
            })
        }
    }

    /// Writes a SQLCipher copy of the whole account to `dest` (which must not exist);
    /// see [`crate::backup`].
    pub fn export_backup(&self, dest: &Path, passphrase: &[u8]) -> Result<(), StoreError> {
        crate::backup::export(&self.conn, dest, passphrase)
    }
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

fn refuse_missing(path: &Path) -> Result<(), StoreError> {
    if !path.exists() {
        return Err(OpenError::NotFound {
            path: path.to_owned(),
        }
        .into_store());
    }
    Ok(())
}

/// `prefix x'<key>[<salt>]' suffix`, zeroized on drop.
pub(crate) fn pragma_with_key(
    prefix: &str,
    key: &DatabaseKey,
    salt: Option<&[u8; crate::key::SALT_LEN]>,
    suffix: &str,
) -> Zeroizing<String> {
    let literal = key.sqlcipher_literal(salt);
    let mut s = Zeroizing::new(String::with_capacity(
        prefix.len() + literal.len() + suffix.len(),
    ));
    s.push_str(prefix);
    s.push_str(&literal);
    s.push_str(suffix);
    s
}

/// Completes SQLCipher's process-wide initialisation once, before this crate opens
/// any connection.
///
/// SQLite marks itself initialised *before* it runs SQLCipher's extra initialisation,
/// which registers `sqlcipher_export` for every later connection and sets the default
/// log level. A connection that a second thread opens in that window has no
/// `sqlcipher_export` (seen in CI: a backup failed with "no such function") and may
/// log to stderr. Opening one connection inside a `Once` runs the whole initialisation
/// to completion while every other opener of this crate waits for it.
fn finish_sqlcipher_init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // A failure here is not lost: the caller's own open fails the same way and
        // reports it.
        drop(Connection::open_in_memory());
    });
}

/// Opens a connection, silences SQLCipher's logging, applies the key and checks that
/// the key reads page 1. Nothing is written before that check passes.
pub(crate) fn open_keyed(
    path: &Path,
    key: Option<&DatabaseKey>,
    create: bool,
) -> Result<Connection, StoreError> {
    finish_sqlcipher_init();
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags).map_err(sql)?;
    // SQLCipher logs failed page authentication (a wrong key) to stderr by default;
    // the caller gets a typed error instead. The setting is process-wide.
    conn.pragma_update(None, "cipher_log_level", "NONE")
        .map_err(sql)?;
    // Every allocation SQLite frees (page cache, decrypted pages, statement buffers) is
    // overwritten first, so the identity key and prekeys read from the database do not
    // linger in freed heap after the store is closed. Process-wide and one-way: once
    // on, it stays on for every connection of the process. Set before the key, so the
    // first decrypted page is already covered.
    conn.pragma_update(None, "cipher_memory_security", "ON")
        .map_err(sql)?;
    if let Some(key) = key {
        conn.execute_batch(&pragma_with_key("PRAGMA key = \"", key, None, "\";"))
            .map_err(sql)?;
    }
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
    if let Err(e) = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    }) {
        return Err(classify_open_failure(&conn, path, key.is_some(), e));
    }
    Ok(conn)
}

fn connect(path: &Path, key: Option<&DatabaseKey>, create: bool) -> Result<Connection, StoreError> {
    let conn = open_keyed(path, key, create)?;
    // Before anything writes (switching to WAL writes the header of an empty file):
    // opening an empty file or a database without the store's schema changes nothing.
    if !create && !schema::has_schema(&conn)? {
        return Err(OpenError::NotAStore {
            path: path.to_owned(),
        }
        .into_store());
    }
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(sql)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(
            format!("journal_mode stayed {mode}").into(),
        ));
    }
    // FULL: in WAL mode every commit syncs the WAL before it returns, so a commit that
    // advanced a chain is on disk before the ciphertext (or the acknowledgement of a
    // received message) leaves the process. NORMAL synced only at checkpoints: a power
    // cut could roll the last commits back, rewinding a sending chain so that the next
    // message reused a message key and nonce.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sql)?;
    Ok(conn)
}

/// Decides between a wrong key and a damaged file after the first read failed.
fn classify_open_failure(
    conn: &Connection,
    path: &Path,
    keyed: bool,
    e: rusqlite::Error,
) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => {}
        Some(ErrorCode::DatabaseCorrupt) => {
            return StoreError::Corrupt {
                what: "database file is damaged",
            };
        }
        _ => return StoreError::Backend(Box::new(e)),
    }
    let mut header = [0u8; 16];
    let (len, plaintext) = match fs::File::open(path).and_then(|mut f| {
        let len = f.metadata()?.len();
        let plain = f.read_exact(&mut header).is_ok() && &header == SQLITE_HEADER;
        Ok((len, plain))
    }) {
        Ok(v) => v,
        Err(io) => return OpenError::Io(io).into_store(),
    };
    if !keyed {
        // Without a key SQLite only reads plaintext databases; anything else is either
        // an encrypted database (the usual case) or garbage we cannot tell from one.
        return if plaintext {
            StoreError::Corrupt {
                what: "plaintext database header is damaged",
            }
        } else {
            StoreError::WrongKey
        };
    }
    if plaintext {
        // A key was given for a database that is not encrypted.
        return StoreError::WrongKey;
    }
    if len < PAGE_SIZE || len % PAGE_SIZE != 0 {
        return StoreError::Corrupt {
            what: "file is not a whole number of pages (truncated?)",
        };
    }
    // SQLCipher authenticates every page with an HMAC under the key. With a wrong key
    // every page fails; with the right key only damaged pages do.
    let pages = len / PAGE_SIZE;
    match pragma_rows(conn, "PRAGMA cipher_integrity_check") {
        Ok(failures) if (failures.len() as u64) < pages => StoreError::Corrupt {
            what: "database pages failed authentication",
        },
        _ => StoreError::WrongKey,
    }
}

fn pragma_rows(conn: &Connection, pragma: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare(pragma).map_err(sql)?;
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    Ok(rows)
}

fn quick_check(conn: &Connection) -> Result<(), StoreError> {
    if pragma_rows(conn, "PRAGMA quick_check")? == ["ok"] {
        Ok(())
    } else {
        Err(StoreError::Corrupt {
            what: "quick_check found damage",
        })
    }
}

/// Applies a group message's sender-key change inside `tx` (the record is read back
/// in the transaction, so a concurrent deletion is a `Conflict`, not a resurrection).
fn apply_sender_key_update(
    tx: &Transaction<'_>,
    group: &GroupId,
    sender: &Address,
    update: &SenderKeyUpdate,
) -> Result<(), StoreError> {
    let key = params![&group.as_bytes()[..], sender.user(), sender.device()];
    let bytes = tx
        .prepare_cached(
            "SELECT record FROM sender_keys WHERE group_id = ?1 AND user = ?2 AND device = ?3",
        )
        .and_then(|mut s| s.query_row(key, |r| r.get::<_, Vec<u8>>(0)).optional())
        .map_err(sql)?
        .map(Zeroizing::new)
        .ok_or(StoreError::Conflict {
            what: "sender-key record deleted since it was loaded",
        })?;
    let mut record = SenderKeyRecord::decode(&bytes)?;
    record.apply(update)?;
    tx.prepare_cached(
        "UPDATE sender_keys SET record = ?4 WHERE group_id = ?1 AND user = ?2 AND device = ?3",
    )
    .and_then(|mut s| {
        s.execute(params![
            &group.as_bytes()[..],
            sender.user(),
            sender.device(),
            &record.encode()[..]
        ])
    })
    .map_err(sql)?;
    Ok(())
}

/// Compare-and-delete of a consumed one-time prekey: exactly one row, else
/// [`StoreError::PreKeyAlreadyConsumed`] (the caller's transaction then rolls back).
fn consume(
    tx: &Transaction<'_>,
    delete: &str,
    kind: OneTimePreKeyKind,
    id: PreKeyId,
) -> Result<(), StoreError> {
    let deleted = tx
        .prepare_cached(delete)
        .and_then(|mut s| s.execute([id]))
        .map_err(sql)?;
    if deleted == 1 {
        Ok(())
    } else {
        Err(StoreError::PreKeyAlreadyConsumed { kind, id })
    }
}

fn apply_commit(tx: &Transaction<'_>, commit: &SessionCommit) -> Result<(), StoreError> {
    let (user, device) = (commit.address.user(), commit.address.device());
    let stored: Option<i64> = tx
        .prepare_cached("SELECT generation FROM sessions WHERE user = ?1 AND device = ?2")
        .and_then(|mut s| s.query_row(params![user, device], |r| r.get(0)).optional())
        .map_err(sql)?;
    if stored.map_or(0, i64::cast_unsigned) != commit.expected_generation {
        return Err(StoreError::Conflict {
            what: "session record changed since it was loaded",
        });
    }
    if let Some((id, base_key)) = &commit.last_resort_use {
        let inserted = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO last_resort_uses (kem_prekey_id, base_key) VALUES (?1, ?2)",
            )
            .and_then(|mut s| s.execute(params![id, &base_key.encode()[..]]))
            .map_err(sql)?;
        if inserted == 0 {
            return Err(StoreError::Conflict {
                what: "last-resort KEM prekey already used with this base key",
            });
        }
    }
    if let Some(identity) = &commit.new_identity {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO remote_identities (user, device, identity) VALUES (?1, ?2, ?3)",
        )
        .and_then(|mut s| s.execute(params![user, device, &identity.encode()[..]]))
        .map_err(sql)?;
    }
    if let Some(id) = commit.consumed_prekey {
        consume(
            tx,
            "DELETE FROM prekeys WHERE id = ?1",
            OneTimePreKeyKind::X25519,
            id,
        )?;
    }
    if let Some(id) = commit.consumed_kem_prekey {
        consume(
            tx,
            "DELETE FROM kem_prekeys WHERE id = ?1",
            OneTimePreKeyKind::Kem,
            id,
        )?;
    }
    let record = commit.record.encode();
    tx.prepare_cached(
        "INSERT OR REPLACE INTO sessions (user, device, generation, record) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut s| {
        s.execute(params![
            user,
            device,
            commit.record.generation().cast_signed(),
            &record[..]
        ])
    })
    .map_err(sql)?;
    Ok(())
}

impl SqlStore {
    fn get_blob(
        &self,
        query: &str,
        id: PreKeyId,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        self.conn
            .prepare_cached(query)
            .and_then(|mut s| s.query_row([id], |r| r.get::<_, Vec<u8>>(0)).optional())
            .map(|o| o.map(Zeroizing::new))
            .map_err(sql)
    }

    fn ids(&self, query: &str) -> Result<Vec<PreKeyId>, StoreError> {
        let mut stmt = self.conn.prepare_cached(query).map_err(sql)?;
        let ids = stmt
            .query_map([], |r| r.get::<_, PreKeyId>(0))
            .map_err(sql)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql)?;
        Ok(ids)
    }

    fn exec(&mut self, query: &str, params: impl rusqlite::Params) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(query)
            .and_then(|mut s| s.execute(params))
            .map_err(sql)?;
        Ok(())
    }
}

impl IdentityStore for SqlStore {
    fn local_identity(&self) -> Result<IdentityKeyPair, StoreError> {
        let bytes = self
            .conn
            .prepare_cached("SELECT key_pair FROM local_identity WHERE id = 0")
            .and_then(|mut s| s.query_row([], |r| r.get::<_, Vec<u8>>(0)).optional())
            .map_err(sql)?
            .map(Zeroizing::new)
            .ok_or(StoreError::NoLocalIdentity)?;
        Ok(IdentityKeyPair::from_secret_bytes(&bytes)?)
    }

    fn local_registration_id(&self) -> Result<u32, StoreError> {
        self.conn
            .prepare_cached("SELECT registration_id FROM local_identity WHERE id = 0")
            .and_then(|mut s| s.query_row([], |r| r.get::<_, u32>(0)).optional())
            .map_err(sql)?
            .ok_or(StoreError::NoLocalIdentity)
    }

    fn remote_identity(&self, address: &Address) -> Result<Option<IdentityKey>, StoreError> {
        let bytes = self
            .conn
            .prepare_cached(
                "SELECT identity FROM remote_identities WHERE user = ?1 AND device = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![address.user(), address.device()], |r| {
                    r.get::<_, Vec<u8>>(0)
                })
                .optional()
            })
            .map_err(sql)?;
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        if let Some(known) = self.decoded_identities.borrow().get(&bytes) {
            return Ok(Some(*known));
        }
        let identity = IdentityKey::decode(&bytes)?;
        let mut memo = self.decoded_identities.borrow_mut();
        if memo.len() >= MAX_MEMOISED_IDENTITIES {
            memo.clear();
        }
        memo.insert(bytes, identity);
        Ok(Some(identity))
    }

    fn save_identity(
        &mut self,
        address: &Address,
        identity: &IdentityKey,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT OR REPLACE INTO remote_identities (user, device, identity) VALUES (?1, ?2, ?3)",
            params![address.user(), address.device(), &identity.encode()[..]],
        )
    }
}

impl PreKeyStore for SqlStore {
    fn load_prekey(&self, id: PreKeyId) -> Result<Option<OneTimePreKeyRecord>, StoreError> {
        let bytes = self.get_blob("SELECT record FROM prekeys WHERE id = ?1", id)?;
        Ok(bytes
            .map(|b| OneTimePreKeyRecord::from_secret_bytes(&b))
            .transpose()?)
    }

    fn store_prekey(&mut self, record: &OneTimePreKeyRecord) -> Result<(), StoreError> {
        self.exec(
            "INSERT OR REPLACE INTO prekeys (id, record) VALUES (?1, ?2)",
            params![record.id(), &record.to_secret_bytes()[..]],
        )
    }

    fn remove_prekey(&mut self, id: PreKeyId) -> Result<(), StoreError> {
        self.exec("DELETE FROM prekeys WHERE id = ?1", [id])
    }

    fn prekey_count(&self) -> Result<usize, StoreError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM prekeys", [], |r| r.get(0))
            .map_err(sql)?;
        usize::try_from(n).map_err(|_| StoreError::Corrupt {
            what: "negative row count",
        })
    }
}

impl SignedPreKeyStore for SqlStore {
    fn load_signed_prekey(&self, id: PreKeyId) -> Result<Option<SignedPreKeyRecord>, StoreError> {
        let bytes = self.get_blob("SELECT record FROM signed_prekeys WHERE id = ?1", id)?;
        Ok(bytes
            .map(|b| SignedPreKeyRecord::from_secret_bytes(&b))
            .transpose()?)
    }

    fn store_signed_prekey(&mut self, record: &SignedPreKeyRecord) -> Result<(), StoreError> {
        self.exec(
            "INSERT OR REPLACE INTO signed_prekeys (id, record) VALUES (?1, ?2)",
            params![record.id(), &record.to_secret_bytes()[..]],
        )
    }

    fn remove_signed_prekey(&mut self, id: PreKeyId) -> Result<(), StoreError> {
        self.exec("DELETE FROM signed_prekeys WHERE id = ?1", [id])
    }

    fn signed_prekey_ids(&self) -> Result<Vec<PreKeyId>, StoreError> {
        self.ids("SELECT id FROM signed_prekeys ORDER BY id")
    }
}

impl KemPreKeyStore for SqlStore {
    fn load_kem_prekey(&self, id: PreKeyId) -> Result<Option<KemPreKeyRecord>, StoreError> {
        let bytes = self.get_blob("SELECT record FROM kem_prekeys WHERE id = ?1", id)?;
        Ok(bytes
            .map(|b| KemPreKeyRecord::from_secret_bytes(&b))
            .transpose()?)
    }

    fn store_kem_prekey(&mut self, record: &KemPreKeyRecord) -> Result<(), StoreError> {
        self.exec(
            "INSERT OR REPLACE INTO kem_prekeys (id, record) VALUES (?1, ?2)",
            params![record.id(), &record.to_secret_bytes()[..]],
        )
    }

    fn remove_kem_prekey(&mut self, id: PreKeyId) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute("DELETE FROM kem_prekeys WHERE id = ?1", [id])
                .map_err(sql)?;
            tx.execute(
                "DELETE FROM last_resort_uses WHERE kem_prekey_id = ?1",
                [id],
            )
            .map_err(sql)?;
            Ok(())
        })
    }

    fn kem_prekey_ids(&self) -> Result<Vec<PreKeyId>, StoreError> {
        self.ids("SELECT id FROM kem_prekeys ORDER BY id")
    }

    fn last_resort_base_key_seen(
        &self,
        id: PreKeyId,
        base_key: &DhPublicKey,
    ) -> Result<bool, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM last_resort_uses WHERE kem_prekey_id = ?1 AND base_key = ?2)",
            )
            .and_then(|mut s| s.query_row(params![id, &base_key.encode()[..]], |r| r.get(0)))
            .map_err(sql)
    }
}

impl SessionStore for SqlStore {
    fn load_session(&self, address: &Address) -> Result<Option<SessionRecord>, StoreError> {
        let bytes = self
            .conn
            .prepare_cached("SELECT record FROM sessions WHERE user = ?1 AND device = ?2")
            .and_then(|mut s| {
                s.query_row(params![address.user(), address.device()], |r| {
                    r.get::<_, Vec<u8>>(0)
                })
                .optional()
            })
            .map_err(sql)?
            .map(Zeroizing::new);
        Ok(bytes.map(|b| SessionRecord::decode(&b)).transpose()?)
    }

    fn session_devices(&self, user: &str) -> Result<Vec<u32>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT device FROM sessions WHERE user = ?1 ORDER BY device")
            .map_err(sql)?;
        let ids = stmt
            .query_map([user], |r| r.get::<_, u32>(0))
            .map_err(sql)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql)?;
        Ok(ids)
    }

    fn delete_session(&mut self, address: &Address) -> Result<(), StoreError> {
        self.exec(
            "DELETE FROM sessions WHERE user = ?1 AND device = ?2",
            params![address.user(), address.device()],
        )
    }
}

impl SenderKeyStore for SqlStore {
    fn load_sender_key(
        &self,
        group: &GroupId,
        sender: &Address,
    ) -> Result<Option<Cow<'_, SenderKeyRecord>>, StoreError> {
        let bytes = self
            .conn
            .prepare_cached(
                "SELECT record FROM sender_keys WHERE group_id = ?1 AND user = ?2 AND device = ?3",
            )
            .and_then(|mut s| {
                s.query_row(
                    params![&group.as_bytes()[..], sender.user(), sender.device()],
                    |r| r.get::<_, Vec<u8>>(0),
                )
                .optional()
            })
            .map_err(sql)?
            .map(Zeroizing::new);
        Ok(bytes
            .map(|b| SenderKeyRecord::decode(&b).map(Cow::Owned))
            .transpose()?)
    }

    fn store_sender_key(
        &mut self,
        group: &GroupId,
        sender: &Address,
        record: SenderKeyRecord,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT OR REPLACE INTO sender_keys (group_id, user, device, record) VALUES (?1, ?2, ?3, ?4)",
            params![
                &group.as_bytes()[..],
                sender.user(),
                sender.device(),
                &record.encode()[..]
            ],
        )
    }

    /// Load, apply and store in one `IMMEDIATE` transaction, so a concurrent process
    /// cannot slip in between (the update itself refuses a record that moved on).
    fn update_sender_key(
        &mut self,
        group: &GroupId,
        sender: &Address,
        update: &SenderKeyUpdate,
    ) -> Result<(), StoreError> {
        let tx = self.immediate()?;
        apply_sender_key_update(&tx, group, sender, update)?;
        tx.commit().map_err(sql)
    }

    fn delete_sender_key(&mut self, group: &GroupId, sender: &Address) -> Result<(), StoreError> {
        self.exec(
            "DELETE FROM sender_keys WHERE group_id = ?1 AND user = ?2 AND device = ?3",
            params![&group.as_bytes()[..], sender.user(), sender.device()],
        )
    }

    fn sender_key_senders(&self, group: &GroupId) -> Result<Vec<Address>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT user, device FROM sender_keys WHERE group_id = ?1 ORDER BY user, device",
            )
            .map_err(sql)?;
        let rows = stmt
            .query_map([&group.as_bytes()[..]], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?))
            })
            .map_err(sql)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql)?;
        rows.into_iter()
            .map(|(user, device)| Address::new(user, device).map_err(StoreError::from))
            .collect()
    }
}

impl ProtocolStore for SqlStore {
    fn commit(&mut self, commit: SessionCommit) -> Result<(), StoreError> {
        self.commit_with(commit, |_| Ok(()))
    }
}
