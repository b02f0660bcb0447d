//! The embedded backend: one SQLite file (WAL, `synchronous = FULL`, so a committed
//! message survives a crash of the process or the machine).
//!
//! Writes are **group-committed** by one writer thread that owns the only writing
//! connection: it takes every write operation waiting (up to [`MAX_WRITE_BATCH`]) and
//! runs them in one transaction, each inside its own savepoint, so the cost of the
//! commit's `fsync` is shared by the whole batch. An operation that fails rolls back its
//! own savepoint and fails alone; a failed `COMMIT` fails every operation of the batch
//! (nothing of it is stored). A caller is answered only after the commit that holds its
//! operation, so a `200` still means "on disk". Reads run on [`READERS`] separate
//! read-only connections, which WAL lets proceed while the writer commits.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::{
    ClaimedBundle, CredentialHash, DeviceInfo, KeyCounts, KeyUpload, NotifyFn, OutgoingMessage,
    QueuedMessage, Storage, StoreError, StoredPreKey, to_i64, to_u32, to_u64,
};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE accounts (
    account TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
);
CREATE TABLE devices (
    account TEXT NOT NULL REFERENCES accounts(account) ON DELETE CASCADE,
    device INTEGER NOT NULL,
    registration_id INTEGER NOT NULL,
    salt BLOB NOT NULL,
    credential_hash BLOB NOT NULL,
    identity BLOB,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (account, device)
);
CREATE TABLE signed_prekeys (
    account TEXT NOT NULL, device INTEGER NOT NULL,
    id INTEGER NOT NULL, created_at INTEGER NOT NULL, key BLOB NOT NULL, signature BLOB NOT NULL,
    PRIMARY KEY (account, device)
);
CREATE TABLE one_time_prekeys (
    account TEXT NOT NULL, device INTEGER NOT NULL,
    id INTEGER NOT NULL, created_at INTEGER NOT NULL, key BLOB NOT NULL, signature BLOB NOT NULL,
    PRIMARY KEY (account, device, id)
);
CREATE TABLE kem_prekeys (
    account TEXT NOT NULL, device INTEGER NOT NULL,
    id INTEGER NOT NULL, created_at INTEGER NOT NULL, key BLOB NOT NULL, signature BLOB NOT NULL,
    PRIMARY KEY (account, device, id)
);
CREATE TABLE kem_last_resort (
    account TEXT NOT NULL, device INTEGER NOT NULL,
    id INTEGER NOT NULL, created_at INTEGER NOT NULL, key BLOB NOT NULL, signature BLOB NOT NULL,
    PRIMARY KEY (account, device)
);
CREATE TABLE messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL,
    device INTEGER NOT NULL,
    sender TEXT NOT NULL,
    sender_device INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    body BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (account, device, sender, sender_device, message_id)
);
CREATE INDEX messages_queue ON messages (account, device, seq);
CREATE INDEX messages_age ON messages (created_at);
"#];

/// Most write operations committed in one transaction.
pub const MAX_WRITE_BATCH: usize = 256;
/// Write operations waiting for the writer before callers wait for room.
const WRITE_QUEUE: usize = 4 * MAX_WRITE_BATCH;
/// Read-only connections (at least; one per core on larger machines).
pub const READERS: usize = 4;

/// The SQLite store.
pub struct SqliteStore {
    writes: tokio::sync::mpsc::Sender<Box<dyn WriteOp>>,
    readers: Arc<[Mutex<Connection>]>,
    next_reader: AtomicUsize,
}

/// One write operation waiting for its group commit.
trait WriteOp: Send {
    /// Runs the operation inside the batch's transaction; `false` if it failed (its
    /// savepoint is then rolled back).
    fn run(&mut self, c: &Connection) -> bool;
    /// Answers the caller once the batch's transaction ended.
    fn finish(self: Box<Self>, commit: Result<(), Arc<StoreError>>);
}

struct Op<T, F> {
    op: Option<F>,
    result: Option<Result<T, StoreError>>,
    done: tokio::sync::oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> WriteOp for Op<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, c: &Connection) -> bool {
        let Some(op) = self.op.take() else {
            return false;
        };
        let result = op(c);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<(), Arc<StoreError>>) {
        let answer = match (self.result, commit) {
            // Its own failure stands whether or not the rest of the batch committed.
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (Some(Ok(_)), Err(e)) => Err(StoreError::Batch(e)),
            (None, _) => Err(StoreError::Task),
        };
        let _ = self.done.send(answer);
    }
}

/// The writer thread: takes every waiting operation (after the first, without
/// waiting) and commits them together. Ends when the store is dropped.
fn writer(conn: Connection, mut ops: tokio::sync::mpsc::Receiver<Box<dyn WriteOp>>) {
    while let Some(first) = ops.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_WRITE_BATCH {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let commit = commit_batch(&conn, &mut batch).map_err(Arc::new);
        for op in batch {
            op.finish(commit.clone());
        }
    }
}

/// Runs a batch in one transaction, each operation in its own savepoint.
fn commit_batch(c: &Connection, batch: &mut [Box<dyn WriteOp>]) -> Result<(), StoreError> {
    c.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let mut run = || -> Result<(), StoreError> {
        for op in batch.iter_mut() {
            c.prepare_cached("SAVEPOINT op")?.execute([])?;
            if !op.run(c) {
                c.prepare_cached("ROLLBACK TO op")?.execute([])?;
            }
            c.prepare_cached("RELEASE op")?.execute([])?;
        }
        c.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    };
    let result = run();
    if result.is_err() && !c.is_autocommit() {
        let _ = c.execute_batch("ROLLBACK");
    }
    result
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database file, runs pending migrations and starts
    /// the writer thread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        configure(&conn)?;
        migrate(&mut conn)?;
        // At least one per thread that may read at once (tokio's workers).
        let n = std::thread::available_parallelism().map_or(READERS, |p| p.get().max(READERS));
        let mut readers = Vec::with_capacity(n);
        for _ in 0..n {
            let r = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            configure(&r)?;
            readers.push(Mutex::new(r));
        }
        let (writes, ops) = tokio::sync::mpsc::channel(WRITE_QUEUE);
        std::thread::Builder::new()
            .name("relay-sqlite-writer".into())
            .spawn(move || writer(conn, ops))
            .map_err(|_| StoreError::Task)?;
        Ok(Self {
            writes,
            readers: readers.into(),
            next_reader: AtomicUsize::new(0),
        })
    }

    /// Runs a read on one of the read-only connections. Reads are indexed lookups on a
    /// WAL database, which never waits for the writer, so they run on the calling
    /// task's thread when a connection is free (a hand-off to another thread for each
    /// read cost more than the read); only when every connection is busy does the read
    /// wait for one on tokio's blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let first = self.next_reader.fetch_add(1, Ordering::Relaxed);
        let n = self.readers.len();
        if let Some(guard) = (0..n).find_map(|i| self.readers[(first + i) % n].try_lock().ok()) {
            return f(&guard);
        }
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            let guard = readers[first % n]
                .lock()
                .map_err(|_| StoreError::Poisoned)?;
            f(&guard)
        })
        .await
        .map_err(|_| StoreError::Task)?
    }

    /// Queues a write for the next group commit and waits until that commit ended.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (done, answer) = tokio::sync::oneshot::channel();
        let op = Op {
            op: Some(f),
            result: None,
            done,
        };
        self.writes
            .send(Box::new(op))
            .await
            .map_err(|_| StoreError::Task)?;
        answer.await.map_err(|_| StoreError::Task)?
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let done = usize::try_from(version).unwrap_or(0);
    for (i, m) in MIGRATIONS.iter().enumerate().skip(done) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(m)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

fn prekey_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, i64, Vec<u8>, Vec<u8>)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn to_prekey(row: (i64, i64, Vec<u8>, Vec<u8>)) -> Result<StoredPreKey, StoreError> {
    Ok(StoredPreKey {
        id: to_u32(row.0, "prekey id")?,
        created_at: to_u64(row.1, "prekey created_at")?,
        key: row.2,
        signature: row.3,
    })
}

#[async_trait]
impl Storage for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        // Ready means both halves work: the writer thread is running and a read answers.
        if self.writes.is_closed() {
            return Err(StoreError::Task);
        }
        self.read(|c| {
            c.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    async fn create_account(
        &self,
        account: &str,
        registration_id: u32,
        credential: &CredentialHash,
        now: u64,
    ) -> Result<bool, StoreError> {
        let (account, cred) = (account.to_owned(), credential.clone());
        self.write(move |tx| {
            let n = tx.execute(
                "INSERT INTO accounts (account, created_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![account, to_i64(now)],
            )?;
            if n == 0 {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO devices (account, device, registration_id, salt, credential_hash, created_at)
                 VALUES (?1, 1, ?2, ?3, ?4, ?5)",
                params![account, registration_id, &cred.salt[..], &cred.hash[..], to_i64(now)],
            )?;
            Ok(true)
        })
        .await
    }

    async fn add_device(
        &self,
        account: &str,
        registration_id: u32,
        credential: &CredentialHash,
        max_devices: u32,
        now: u64,
    ) -> Result<Option<u32>, StoreError> {
        let (account, cred) = (account.to_owned(), credential.clone());
        self.write(move |tx| {
            let (count, max_id): (i64, i64) = tx.query_row(
                "SELECT COUNT(*), COALESCE(MAX(device), 0) FROM devices WHERE account = ?1",
                params![account],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if count >= i64::from(max_devices) || count == 0 {
                return Ok(None);
            }
            let id = to_u32(max_id + 1, "device")?;
            tx.execute(
                "INSERT INTO devices (account, device, registration_id, salt, credential_hash, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![account, id, registration_id, &cred.salt[..], &cred.hash[..], to_i64(now)],
            )?;
            Ok(Some(id))
        })
        .await
    }

    async fn remove_device(&self, account: &str, device: u32) -> Result<bool, StoreError> {
        let account = account.to_owned();
        self.write(move |tx| {
            let n = tx.execute(
                "DELETE FROM devices WHERE account = ?1 AND device = ?2",
                params![account, device],
            )?;
            for table in [
                "signed_prekeys",
                "one_time_prekeys",
                "kem_prekeys",
                "kem_last_resort",
                "messages",
            ] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE account = ?1 AND device = ?2"),
                    params![account, device],
                )?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn credential(
        &self,
        account: &str,
        device: u32,
    ) -> Result<Option<CredentialHash>, StoreError> {
        let account = account.to_owned();
        self.read(move |c| {
            let row: Option<(Vec<u8>, Vec<u8>)> = c
                .prepare_cached(
                    "SELECT salt, credential_hash FROM devices WHERE account = ?1 AND device = ?2",
                )?
                .query_row(params![account, device], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            Ok(row.and_then(|(s, h)| {
                Some(CredentialHash {
                    salt: s.try_into().ok()?,
                    hash: h.try_into().ok()?,
                })
            }))
        })
        .await
    }

    async fn devices(&self, account: &str) -> Result<Vec<DeviceInfo>, StoreError> {
        let account = account.to_owned();
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT device, registration_id, identity FROM devices WHERE account = ?1 ORDER BY device",
            )?;
            let rows = st.query_map(params![account], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, Option<Vec<u8>>>(2)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (d, reg, identity) = row?;
                out.push(DeviceInfo {
                    device: to_u32(d, "device")?,
                    registration_id: to_u32(reg, "registration_id")?,
                    identity,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn upload_keys(
        &self,
        account: &str,
        device: u32,
        upload: &KeyUpload,
    ) -> Result<(), StoreError> {
        let (account, up) = (account.to_owned(), upload.clone());
        self.write(move |tx| {
            if let Some(identity) = &up.identity {
                let current: Option<Option<Vec<u8>>> = tx
                    .query_row(
                        "SELECT identity FROM devices WHERE account = ?1 AND device = ?2",
                        params![account, device],
                        |r| r.get(0),
                    )
                    .optional()?;
                match current {
                    Some(Some(cur)) if &cur != identity => return Err(StoreError::IdentityConflict),
                    Some(None) => {
                        tx.execute(
                            "UPDATE devices SET identity = ?3 WHERE account = ?1 AND device = ?2",
                            params![account, device, identity],
                        )?;
                    }
                    _ => {}
                }
            }
            let put = |table: &str, k: &StoredPreKey| -> rusqlite::Result<usize> {
                tx.execute(
                    &format!(
                        "INSERT OR REPLACE INTO {table} (account, device, id, created_at, key, signature)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                    ),
                    params![account, device, k.id, to_i64(k.created_at), k.key, k.signature],
                )
            };
            if let Some(k) = &up.signed_prekey {
                put("signed_prekeys", k)?;
            }
            if let Some(k) = &up.last_resort_kem_prekey {
                put("kem_last_resort", k)?;
            }
            for k in &up.one_time_prekeys {
                put("one_time_prekeys", k)?;
            }
            for k in &up.kem_prekeys {
                put("kem_prekeys", k)?;
            }
            Ok(())
        })
        .await
    }

    async fn key_counts(&self, account: &str, device: u32) -> Result<KeyCounts, StoreError> {
        let account = account.to_owned();
        self.read(move |c| {
            let one: i64 = c.query_row(
                "SELECT COUNT(*) FROM one_time_prekeys WHERE account = ?1 AND device = ?2",
                params![account, device],
                |r| r.get(0),
            )?;
            let kem: i64 = c.query_row(
                "SELECT COUNT(*) FROM kem_prekeys WHERE account = ?1 AND device = ?2",
                params![account, device],
                |r| r.get(0),
            )?;
            Ok(KeyCounts {
                one_time: to_u64(one, "count")?,
                kem_one_time: to_u64(kem, "count")?,
            })
        })
        .await
    }

    async fn claim_bundle(
        &self,
        account: &str,
        device: u32,
    ) -> Result<Option<ClaimedBundle>, StoreError> {
        let account = account.to_owned();
        self.write(move |tx| {
            // Every write runs on the one writer connection, inside a transaction
            // that took the write lock up front (BEGIN IMMEDIATE): the select-then-
            // delete below cannot interleave with another claim, even from another
            // process.
            let dev: Option<(i64, Option<Vec<u8>>)> = tx
                .query_row(
                    "SELECT registration_id, identity FROM devices WHERE account = ?1 AND device = ?2",
                    params![account, device],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((reg, Some(identity))) = dev else {
                return Ok(None);
            };
            let signed = tx
                .query_row(
                    "SELECT id, created_at, key, signature FROM signed_prekeys WHERE account = ?1 AND device = ?2",
                    params![account, device],
                    prekey_row,
                )
                .optional()?;
            let Some(signed) = signed else {
                return Ok(None);
            };
            let take = |table: &str| -> rusqlite::Result<Option<(i64, i64, Vec<u8>, Vec<u8>)>> {
                tx.query_row(
                    &format!(
                        "DELETE FROM {table} WHERE rowid = (SELECT rowid FROM {table}
                           WHERE account = ?1 AND device = ?2 ORDER BY id LIMIT 1)
                         RETURNING id, created_at, key, signature"
                    ),
                    params![account, device],
                    prekey_row,
                )
                .optional()
            };
            // The KEM key first: when there is none, nothing has been deleted (a
            // successful operation's changes are committed, so `None` must come
            // before any claim).
            let (kem, last_resort) = match take("kem_prekeys")? {
                Some(k) => (k, false),
                None => {
                    let last_resort = tx
                        .query_row(
                            "SELECT id, created_at, key, signature FROM kem_last_resort WHERE account = ?1 AND device = ?2",
                            params![account, device],
                            prekey_row,
                        )
                        .optional()?;
                    let Some(k) = last_resort else {
                        return Ok(None);
                    };
                    (k, true)
                }
            };
            let one_time = take("one_time_prekeys")?;
            Ok(Some(ClaimedBundle {
                device,
                registration_id: to_u32(reg, "registration_id")?,
                identity,
                signed_prekey: to_prekey(signed)?,
                one_time_prekey: one_time.map(to_prekey).transpose()?,
                kem_prekey: to_prekey(kem)?,
                kem_last_resort: last_resort,
            }))
        })
        .await
    }

    async fn store_messages(
        &self,
        sender: &str,
        sender_device: u32,
        message_id: &str,
        recipient: &str,
        messages: &[OutgoingMessage],
        max_queue: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        let (sender, id, recipient, msgs) = (
            sender.to_owned(),
            message_id.to_owned(),
            recipient.to_owned(),
            messages.to_vec(),
        );
        self.write(move |tx| {
            let mut count = tx.prepare_cached(
                "SELECT COUNT(*) FROM messages WHERE account = ?1 AND device = ?2",
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO messages (account, device, sender, sender_device, message_id, body, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
            )?;
            for m in &msgs {
                let queued: i64 = count.query_row(params![recipient, m.device], |r| r.get(0))?;
                if to_u64(queued, "count")? >= max_queue {
                    return Err(StoreError::QueueFull { device: m.device });
                }
                insert.execute(params![
                    recipient,
                    m.device,
                    sender,
                    sender_device,
                    id,
                    m.body,
                    to_i64(now)
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn fetch_messages(
        &self,
        account: &str,
        device: u32,
        after: i64,
        limit: u32,
        not_before: u64,
    ) -> Result<Vec<QueuedMessage>, StoreError> {
        let account = account.to_owned();
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT seq, sender, sender_device, message_id, body, created_at FROM messages
                 WHERE account = ?1 AND device = ?2 AND seq > ?3 AND created_at >= ?4
                 ORDER BY seq LIMIT ?5",
            )?;
            let rows = st.query_map(
                params![account, device, after, to_i64(not_before), limit],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Vec<u8>>(4)?,
                        r.get::<_, i64>(5)?,
                    ))
                },
            )?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, sender, sd, id, body, ts) = row?;
                out.push(QueuedMessage {
                    seq,
                    sender,
                    sender_device: to_u32(sd, "sender_device")?,
                    id,
                    body,
                    timestamp: to_u64(ts, "created_at")?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn ack(&self, account: &str, device: u32, seq: i64) -> Result<bool, StoreError> {
        let account = account.to_owned();
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "DELETE FROM messages WHERE seq = ?1 AND account = ?2 AND device = ?3",
                )?
                .execute(params![seq, account, device])?;
            Ok(n > 0)
        })
        .await
    }

    async fn purge_expired(&self, before: u64) -> Result<u64, StoreError> {
        self.write(move |c| {
            let n = c.execute(
                "DELETE FROM messages WHERE created_at < ?1",
                params![to_i64(before)],
            )?;
            Ok(n as u64)
        })
        .await
    }

    async fn queue_depth(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            let n: i64 = c.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))?;
            to_u64(n, "count")
        })
        .await
    }

    async fn start_listener(&self, _notify: NotifyFn) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(store: &SqliteStore) -> u64 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(store.queue_depth()).unwrap()
    }

    fn insert_op(
        sender: &'static str,
        fail_after: bool,
    ) -> (
        Box<dyn WriteOp>,
        tokio::sync::oneshot::Receiver<Result<(), StoreError>>,
    ) {
        let (done, answer) = tokio::sync::oneshot::channel();
        let op = Op {
            op: Some(move |c: &Connection| -> Result<(), StoreError> {
                c.execute(
                    "INSERT INTO messages (account, device, sender, sender_device, message_id, body, created_at)
                     VALUES ('bob', 1, ?1, 1, 'id', x'00', 0)",
                    params![sender],
                )?;
                if fail_after {
                    return Err(StoreError::QueueFull { device: 1 });
                }
                Ok(())
            }),
            result: None,
            done,
        };
        (Box::new(op), answer)
    }

    /// An operation that fails in the middle of a batch takes back only its own
    /// changes; the operations before and after it commit and are answered `Ok`.
    #[test]
    fn failed_operation_rolls_back_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.sqlite3");
        let store = SqliteStore::open(&path).unwrap();
        let mut conn = Connection::open(&path).unwrap();
        configure(&conn).unwrap();
        migrate(&mut conn).unwrap();

        let (a, a_done) = insert_op("a", false);
        let (b, b_done) = insert_op("b", true);
        let (c, c_done) = insert_op("c", false);
        let mut batch = vec![a, b, c];
        let commit = commit_batch(&conn, &mut batch).map_err(Arc::new);
        assert!(commit.is_ok());
        for op in batch {
            op.finish(commit.clone());
        }
        assert!(a_done.blocking_recv().unwrap().is_ok());
        assert!(matches!(
            b_done.blocking_recv().unwrap(),
            Err(StoreError::QueueFull { device: 1 })
        ));
        assert!(c_done.blocking_recv().unwrap().is_ok());
        let senders: Vec<String> = conn
            .prepare("SELECT sender FROM messages ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(senders, ["a", "c"]);
        assert_eq!(queued(&store), 2);
    }

    /// When the `COMMIT` itself fails (here: a deferred foreign key checked only at
    /// commit), nothing of the batch is stored and every operation that had
    /// succeeded is answered with the batch's error.
    #[test]
    fn failed_commit_fails_every_operation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.sqlite3");
        let mut conn = Connection::open(&path).unwrap();
        configure(&conn).unwrap();
        migrate(&mut conn).unwrap();
        conn.execute_batch(
            "CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (parent INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);",
        )
        .unwrap();

        let (a, a_done) = insert_op("a", false);
        let (orphan_done, orphan_answer) = tokio::sync::oneshot::channel();
        let orphan = Op {
            op: Some(|c: &Connection| -> Result<(), StoreError> {
                c.execute("INSERT INTO child (parent) VALUES (42)", [])?;
                Ok(())
            }),
            result: None,
            done: orphan_done,
        };
        let mut batch: Vec<Box<dyn WriteOp>> = vec![a, Box::new(orphan)];
        let commit = commit_batch(&conn, &mut batch).map_err(Arc::new);
        assert!(commit.is_err());
        assert!(conn.is_autocommit(), "the failed batch was rolled back");
        for op in batch {
            op.finish(commit.clone());
        }
        assert!(matches!(
            a_done.blocking_recv().unwrap(),
            Err(StoreError::Batch(_))
        ));
        assert!(matches!(
            orphan_answer.blocking_recv().unwrap(),
            Err(StoreError::Batch(_))
        ));
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }

    /// Many concurrent senders and acknowledgers through the writer thread: every
    /// acknowledged message is gone, every other one is stored exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_are_grouped_and_exact() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("relay.sqlite3")).unwrap());
        let mut tasks = Vec::new();
        for i in 0..400u32 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                let messages = [OutgoingMessage {
                    device: 1 + i % 4,
                    body: vec![1, 2, 3],
                }];
                let id = format!("m{i}");
                store
                    .store_messages("alice", 1, &id, "bob", &messages, 10_000, 1)
                    .await
                    .unwrap();
                // The same id again is idempotent.
                store
                    .store_messages("alice", 1, &id, "bob", &messages, 10_000, 1)
                    .await
                    .unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(store.queue_depth().await.unwrap(), 400);
        let mut acks = Vec::new();
        for device in 1..=4 {
            let queue = store
                .fetch_messages("bob", device, 0, 1000, 0)
                .await
                .unwrap();
            assert_eq!(queue.len(), 100);
            for m in queue.into_iter().step_by(2) {
                let store = Arc::clone(&store);
                acks.push(tokio::spawn(async move {
                    assert!(store.ack("bob", device, m.seq).await.unwrap());
                    // A second ack of the same message finds nothing.
                    assert!(!store.ack("bob", device, m.seq).await.unwrap());
                }));
            }
        }
        for t in acks {
            t.await.unwrap();
        }
        assert_eq!(store.queue_depth().await.unwrap(), 200);
    }

    /// A claim that finds no KEM key hands out nothing and takes nothing: the
    /// one-time EC key it would have claimed is still there (an operation's changes
    /// commit when it succeeds, so it must decide before deleting).
    #[tokio::test]
    async fn claim_without_kem_key_takes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("relay.sqlite3")).unwrap();
        let cred = CredentialHash {
            salt: [1; 16],
            hash: [2; 32],
        };
        assert!(store.create_account("carol", 7, &cred, 1).await.unwrap());
        let key = |id| StoredPreKey {
            id,
            created_at: 1,
            key: vec![5; 33],
            signature: vec![6; 64],
        };
        let upload = KeyUpload {
            identity: Some(vec![9; 33]),
            signed_prekey: Some(key(1)),
            one_time_prekeys: vec![key(2)],
            ..KeyUpload::default()
        };
        store.upload_keys("carol", 1, &upload).await.unwrap();
        assert!(store.claim_bundle("carol", 1).await.unwrap().is_none());
        let counts = store.key_counts("carol", 1).await.unwrap();
        assert_eq!(counts.one_time, 1);
    }
}
