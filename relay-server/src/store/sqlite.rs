//! The embedded backend: one SQLite file (WAL, `synchronous = FULL`, so a committed
//! message survives a crash of the process or the machine). One connection serialises
//! every operation; each runs on tokio's blocking pool.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

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

/// The SQLite store.
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs pending migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| StoreError::Poisoned)?;
            f(&mut guard)
        })
        .await
        .map_err(|_| StoreError::Task)?
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
        self.run(|c| {
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
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
            tx.commit()?;
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
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
            tx.commit()?;
            Ok(Some(id))
        })
        .await
    }

    async fn remove_device(&self, account: &str, device: u32) -> Result<bool, StoreError> {
        let account = account.to_owned();
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
            tx.commit()?;
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
        self.run(move |c| {
            let row: Option<(Vec<u8>, Vec<u8>)> = c
                .query_row(
                    "SELECT salt, credential_hash FROM devices WHERE account = ?1 AND device = ?2",
                    params![account, device],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
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
        self.run(move |c| {
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
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn key_counts(&self, account: &str, device: u32) -> Result<KeyCounts, StoreError> {
        let account = account.to_owned();
        self.run(move |c| {
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
        self.run(move |c| {
            // IMMEDIATE takes the write lock up front: the select-then-delete below
            // cannot interleave with another claim, even from another process.
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
            let one_time = take("one_time_prekeys")?;
            let (kem, last_resort) = match take("kem_prekeys")? {
                Some(k) => (Some(k), false),
                None => (
                    tx.query_row(
                        "SELECT id, created_at, key, signature FROM kem_last_resort WHERE account = ?1 AND device = ?2",
                        params![account, device],
                        prekey_row,
                    )
                    .optional()?,
                    true,
                ),
            };
            let Some(kem) = kem else {
                return Ok(None);
            };
            tx.commit()?;
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
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for m in &msgs {
                let queued: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM messages WHERE account = ?1 AND device = ?2",
                    params![recipient, m.device],
                    |r| r.get(0),
                )?;
                if to_u64(queued, "count")? >= max_queue {
                    return Err(StoreError::QueueFull { device: m.device });
                }
                tx.execute(
                    "INSERT INTO messages (account, device, sender, sender_device, message_id, body, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
                    params![recipient, m.device, sender, sender_device, id, m.body, to_i64(now)],
                )?;
            }
            tx.commit()?;
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
        self.run(move |c| {
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
        self.run(move |c| {
            let n = c.execute(
                "DELETE FROM messages WHERE seq = ?1 AND account = ?2 AND device = ?3",
                params![seq, account, device],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn purge_expired(&self, before: u64) -> Result<u64, StoreError> {
        self.run(move |c| {
            let n = c.execute(
                "DELETE FROM messages WHERE created_at < ?1",
                params![to_i64(before)],
            )?;
            Ok(n as u64)
        })
        .await
    }

    async fn queue_depth(&self) -> Result<u64, StoreError> {
        self.run(|c| {
            let n: i64 = c.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))?;
            to_u64(n, "count")
        })
        .await
    }

    async fn start_listener(&self, _notify: NotifyFn) -> Result<(), StoreError> {
        Ok(())
    }
}
