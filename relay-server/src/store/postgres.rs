//! The replicated backend: PostgreSQL shared by any number of relay processes.
//!
//! Cross-replica delivery: [`Storage::store_messages`] runs `pg_notify` in the same
//! transaction as the insert (so the notification is sent exactly when the messages
//! are committed), and every replica holds one `LISTEN` connection
//! ([`Storage::start_listener`]) that wakes the recipient's WebSocket. Connected devices
//! also re-read their queue periodically, so a lost notification only adds delay.
//!
//! Sends are **group-committed**: a transaction that notified takes PostgreSQL's global
//! notification lock at commit, so one transaction per send would serialise every send
//! of every replica on that lock. Instead, [`SEND_COMMITTERS`] tasks each take every
//! send waiting (up to [`MAX_SEND_BATCH`]) and store them in one transaction with one
//! notification per recipient device; each request is answered only after that commit.
//! A request whose recipient queue is full fails alone (its queue sizes are checked
//! before anything of it is inserted); a database error fails the whole batch (the
//! clients' resends are idempotent by message id).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::StreamExt;
use tokio_postgres::{AsyncMessage, NoTls, Row};

use super::{
    ClaimedBundle, CredentialHash, DeviceInfo, KeyCounts, KeyUpload, NotifyFn, OutgoingMessage,
    QueuedMessage, Storage, StoreError, StoredPreKey, to_i64, to_u32, to_u64,
};

/// The notification channel.
const CHANNEL: &str = "relay_messages";

/// Concurrent group-commit transactions for sends (each on its own pooled connection).
pub const SEND_COMMITTERS: usize = 4;
/// Most send requests stored in one group commit.
pub const MAX_SEND_BATCH: usize = 128;

/// Schema migrations, applied in order under an advisory lock (replicas starting
/// together migrate once); `relay_schema_version` records how many ran.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE accounts (
    account TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);
CREATE TABLE devices (
    account TEXT NOT NULL REFERENCES accounts(account) ON DELETE CASCADE,
    device BIGINT NOT NULL,
    registration_id BIGINT NOT NULL,
    salt BYTEA NOT NULL,
    credential_hash BYTEA NOT NULL,
    identity BYTEA,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account, device)
);
CREATE TABLE signed_prekeys (
    account TEXT NOT NULL, device BIGINT NOT NULL,
    id BIGINT NOT NULL, created_at BIGINT NOT NULL, key BYTEA NOT NULL, signature BYTEA NOT NULL,
    PRIMARY KEY (account, device)
);
CREATE TABLE one_time_prekeys (
    account TEXT NOT NULL, device BIGINT NOT NULL,
    id BIGINT NOT NULL, created_at BIGINT NOT NULL, key BYTEA NOT NULL, signature BYTEA NOT NULL,
    PRIMARY KEY (account, device, id)
);
CREATE TABLE kem_prekeys (
    account TEXT NOT NULL, device BIGINT NOT NULL,
    id BIGINT NOT NULL, created_at BIGINT NOT NULL, key BYTEA NOT NULL, signature BYTEA NOT NULL,
    PRIMARY KEY (account, device, id)
);
CREATE TABLE kem_last_resort (
    account TEXT NOT NULL, device BIGINT NOT NULL,
    id BIGINT NOT NULL, created_at BIGINT NOT NULL, key BYTEA NOT NULL, signature BYTEA NOT NULL,
    PRIMARY KEY (account, device)
);
CREATE TABLE messages (
    seq BIGSERIAL PRIMARY KEY,
    account TEXT NOT NULL,
    device BIGINT NOT NULL,
    sender TEXT NOT NULL,
    sender_device BIGINT NOT NULL,
    message_id TEXT NOT NULL,
    body BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (account, device, sender, sender_device, message_id)
);
CREATE INDEX messages_queue ON messages (account, device, seq);
CREATE INDEX messages_age ON messages (created_at);
"#];

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: Pool,
    config: tokio_postgres::Config,
    sends: tokio::sync::mpsc::Sender<PendingSend>,
}

/// One send request waiting for a group commit.
struct PendingSend {
    sender: String,
    sender_device: u32,
    message_id: String,
    recipient: String,
    messages: Vec<OutgoingMessage>,
    max_queue: u64,
    now: u64,
    done: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
}

type SendQueue = Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<PendingSend>>>;

/// A committer: takes every waiting send (after the first, without waiting) and stores
/// them in one transaction. Ends when the store is dropped.
async fn send_committer(pool: Pool, queue: SendQueue) {
    loop {
        let batch = {
            let mut rx = queue.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_SEND_BATCH {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            // Every committer inserts in one global order of the idempotency key
            // (recipient, sender, sender device, message id, then device: see
            // `store_messages`). Two concurrent batches that hold the same key (a
            // client's resend while the first send is still in flight) then wait for
            // each other at most one way; in arrival order they could each hold a key
            // the other needs, and PostgreSQL would abort one as a deadlock.
            batch.sort_by(|a, b| {
                (&a.recipient, &a.sender, a.sender_device, &a.message_id).cmp(&(
                    &b.recipient,
                    &b.sender,
                    b.sender_device,
                    &b.message_id,
                ))
            });
            batch
        };
        match commit_sends(&pool, &batch).await {
            Ok(outcomes) => {
                for (p, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = p.done.send(outcome);
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                for p in batch {
                    let _ = p.done.send(Err(StoreError::Batch(e.clone())));
                }
            }
        }
    }
}

/// Stores a batch in one transaction. `Ok` holds each request's outcome (a full
/// recipient queue fails that request only); `Err` means nothing was committed.
async fn commit_sends(
    pool: &Pool,
    batch: &[PendingSend],
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let mut c = pool.get().await?;
    let txn = c.transaction().await?;
    let count = txn
        .prepare_cached("SELECT COUNT(*) FROM messages WHERE account = $1 AND device = $2")
        .await?;
    let insert = txn
        .prepare_cached(
            "INSERT INTO messages (account, device, sender, sender_device, message_id, body, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .await?;
    let (tx, count, insert) = (&txn, &count, &insert);
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut notify = BTreeSet::new();
    for p in batch {
        let devices: Vec<i64> = p.messages.iter().map(|m| i64::from(m.device)).collect();
        // Queue sizes first (pipelined), so a refused request inserts nothing; they
        // include what earlier requests of this batch inserted.
        let counts = futures_util::future::try_join_all(
            devices
                .iter()
                .map(|d| async move { tx.query_one(count, &[&p.recipient, d]).await }),
        )
        .await?;
        let mut full = None;
        for (m, row) in p.messages.iter().zip(&counts) {
            if to_u64(row.get(0), "count")? >= p.max_queue {
                full = Some(m.device);
                break;
            }
        }
        if let Some(device) = full {
            outcomes.push(Err(StoreError::QueueFull { device }));
            continue;
        }
        let sender_device = i64::from(p.sender_device);
        let created = to_i64(p.now);
        let (sender_device, created) = (&sender_device, &created);
        futures_util::future::try_join_all(p.messages.iter().zip(&devices).map(
            |(m, d)| async move {
                tx.execute(
                    insert,
                    &[
                        &p.recipient,
                        d,
                        &p.sender,
                        sender_device,
                        &p.message_id,
                        &m.body,
                        created,
                    ],
                )
                .await
            },
        ))
        .await?;
        for m in &p.messages {
            notify.insert(format!("{}:{}", m.device, p.recipient));
        }
        outcomes.push(Ok(()));
    }
    // Delivered by PostgreSQL only if and when this transaction commits.
    futures_util::future::try_join_all(notify.iter().map(|payload| async move {
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, payload])
            .await
    }))
    .await?;
    txn.commit().await?;
    Ok(outcomes)
}

/// The messages in device order: the last part of the committers' insert order.
fn sorted_by_device(messages: &[OutgoingMessage]) -> Vec<OutgoingMessage> {
    let mut messages = messages.to_vec();
    messages.sort_by_key(|m| m.device);
    messages
}

impl PostgresStore {
    /// Connects (pool of `pool_size`) and runs pending migrations.
    pub async fn connect(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config = url.parse()?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()?;
        let (sends, queue) = tokio::sync::mpsc::channel(MAX_SEND_BATCH * SEND_COMMITTERS);
        let queue: SendQueue = Arc::new(tokio::sync::Mutex::new(queue));
        for _ in 0..SEND_COMMITTERS {
            tokio::spawn(send_committer(pool.clone(), queue.clone()));
        }
        let store = Self {
            pool,
            config,
            sends,
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock(7261626)", &[])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS relay_schema_version (version BIGINT NOT NULL);
             INSERT INTO relay_schema_version SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM relay_schema_version);",
        )
        .await?;
        let done: i64 = tx
            .query_one("SELECT version FROM relay_schema_version", &[])
            .await?
            .get(0);
        let done = usize::try_from(done).unwrap_or(0);
        for (i, m) in MIGRATIONS.iter().enumerate().skip(done) {
            tx.batch_execute(m).await?;
            tx.execute(
                "UPDATE relay_schema_version SET version = $1",
                &[&((i + 1) as i64)],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

fn to_prekey(r: &Row) -> Result<StoredPreKey, StoreError> {
    Ok(StoredPreKey {
        id: to_u32(r.get(0), "prekey id")?,
        created_at: to_u64(r.get(1), "prekey created_at")?,
        key: r.get(2),
        signature: r.get(3),
    })
}

#[async_trait]
impl Storage for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        let c = self.pool.get().await?;
        c.query_one("SELECT 1", &[]).await?;
        Ok(())
    }

    async fn create_account(
        &self,
        account: &str,
        registration_id: u32,
        credential: &CredentialHash,
        now: u64,
    ) -> Result<bool, StoreError> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let n = tx
            .execute(
                "INSERT INTO accounts (account, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&account, &to_i64(now)],
            )
            .await?;
        if n == 0 {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO devices (account, device, registration_id, salt, credential_hash, created_at)
             VALUES ($1, 1, $2, $3, $4, $5)",
            &[
                &account,
                &i64::from(registration_id),
                &&credential.salt[..],
                &&credential.hash[..],
                &to_i64(now),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn add_device(
        &self,
        account: &str,
        registration_id: u32,
        credential: &CredentialHash,
        max_devices: u32,
        now: u64,
    ) -> Result<Option<u32>, StoreError> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        // Lock the account row: concurrent links of one account are serialised, so the
        // device limit and the next id are computed on a stable device list.
        let exists = tx
            .query_opt(
                "SELECT 1 FROM accounts WHERE account = $1 FOR UPDATE",
                &[&account],
            )
            .await?;
        if exists.is_none() {
            return Ok(None);
        }
        let row = tx
            .query_one(
                "SELECT COUNT(*), COALESCE(MAX(device), 0) FROM devices WHERE account = $1",
                &[&account],
            )
            .await?;
        let (count, max_id): (i64, i64) = (row.get(0), row.get(1));
        if count >= i64::from(max_devices) {
            return Ok(None);
        }
        let id = to_u32(max_id + 1, "device")?;
        tx.execute(
            "INSERT INTO devices (account, device, registration_id, salt, credential_hash, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &account,
                &i64::from(id),
                &i64::from(registration_id),
                &&credential.salt[..],
                &&credential.hash[..],
                &to_i64(now),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(Some(id))
    }

    async fn remove_device(&self, account: &str, device: u32) -> Result<bool, StoreError> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let d = i64::from(device);
        let n = tx
            .execute(
                "DELETE FROM devices WHERE account = $1 AND device = $2",
                &[&account, &d],
            )
            .await?;
        for table in [
            "signed_prekeys",
            "one_time_prekeys",
            "kem_prekeys",
            "kem_last_resort",
            "messages",
        ] {
            tx.execute(
                format!("DELETE FROM {table} WHERE account = $1 AND device = $2").as_str(),
                &[&account, &d],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn credential(
        &self,
        account: &str,
        device: u32,
    ) -> Result<Option<CredentialHash>, StoreError> {
        let c = self.pool.get().await?;
        let row = c
            .query_opt(
                "SELECT salt, credential_hash FROM devices WHERE account = $1 AND device = $2",
                &[&account, &i64::from(device)],
            )
            .await?;
        Ok(row.and_then(|r| {
            let s: Vec<u8> = r.get(0);
            let h: Vec<u8> = r.get(1);
            Some(CredentialHash {
                salt: s.try_into().ok()?,
                hash: h.try_into().ok()?,
            })
        }))
    }

    async fn devices(&self, account: &str) -> Result<Vec<DeviceInfo>, StoreError> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                "SELECT device, registration_id, identity FROM devices WHERE account = $1 ORDER BY device",
                &[&account],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DeviceInfo {
                    device: to_u32(r.get(0), "device")?,
                    registration_id: to_u32(r.get(1), "registration_id")?,
                    identity: r.get(2),
                })
            })
            .collect()
    }

    async fn upload_keys(
        &self,
        account: &str,
        device: u32,
        up: &KeyUpload,
    ) -> Result<(), StoreError> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let d = i64::from(device);
        if let Some(identity) = &up.identity {
            let row = tx
                .query_opt(
                    "SELECT identity FROM devices WHERE account = $1 AND device = $2 FOR UPDATE",
                    &[&account, &d],
                )
                .await?;
            if let Some(row) = row {
                match row.get::<_, Option<Vec<u8>>>(0) {
                    Some(cur) if &cur != identity => return Err(StoreError::IdentityConflict),
                    Some(_) => {}
                    None => {
                        tx.execute(
                            "UPDATE devices SET identity = $3 WHERE account = $1 AND device = $2",
                            &[&account, &d, identity],
                        )
                        .await?;
                    }
                }
            }
        }
        let groups: [(&str, &str, Vec<&StoredPreKey>); 4] = [
            (
                "signed_prekeys",
                "(account, device)",
                up.signed_prekey.iter().collect(),
            ),
            (
                "kem_last_resort",
                "(account, device)",
                up.last_resort_kem_prekey.iter().collect(),
            ),
            (
                "one_time_prekeys",
                "(account, device, id)",
                up.one_time_prekeys.iter().collect(),
            ),
            (
                "kem_prekeys",
                "(account, device, id)",
                up.kem_prekeys.iter().collect(),
            ),
        ];
        for (table, key, items) in groups {
            if items.is_empty() {
                continue;
            }
            let st = tx
                .prepare(&format!(
                    "INSERT INTO {table} (account, device, id, created_at, key, signature)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT {key} DO UPDATE SET id = EXCLUDED.id, created_at = EXCLUDED.created_at,
                       key = EXCLUDED.key, signature = EXCLUDED.signature"
                ))
                .await?;
            for k in items {
                tx.execute(
                    &st,
                    &[
                        &account,
                        &d,
                        &i64::from(k.id),
                        &to_i64(k.created_at),
                        &k.key,
                        &k.signature,
                    ],
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn key_counts(&self, account: &str, device: u32) -> Result<KeyCounts, StoreError> {
        let c = self.pool.get().await?;
        let d = i64::from(device);
        let row = c
            .query_one(
                "SELECT (SELECT COUNT(*) FROM one_time_prekeys WHERE account = $1 AND device = $2),
                        (SELECT COUNT(*) FROM kem_prekeys WHERE account = $1 AND device = $2)",
                &[&account, &d],
            )
            .await?;
        Ok(KeyCounts {
            one_time: to_u64(row.get(0), "count")?,
            kem_one_time: to_u64(row.get(1), "count")?,
        })
    }

    async fn claim_bundle(
        &self,
        account: &str,
        device: u32,
    ) -> Result<Option<ClaimedBundle>, StoreError> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let d = i64::from(device);
        let Some(dev) = tx
            .query_opt(
                "SELECT registration_id, identity FROM devices WHERE account = $1 AND device = $2",
                &[&account, &d],
            )
            .await?
        else {
            return Ok(None);
        };
        let Some(identity) = dev.get::<_, Option<Vec<u8>>>(1) else {
            return Ok(None);
        };
        let registration_id = to_u32(dev.get(0), "registration_id")?;
        let Some(signed) = tx
            .query_opt(
                "SELECT id, created_at, key, signature FROM signed_prekeys WHERE account = $1 AND device = $2",
                &[&account, &d],
            )
            .await?
        else {
            return Ok(None);
        };
        // SKIP LOCKED: concurrent claims (on any replica) each lock and delete a
        // different row; a row is deleted by exactly one committed transaction.
        let take = |table: &'static str| {
            format!(
                "DELETE FROM {table} WHERE (account, device, id) IN (
                   SELECT account, device, id FROM {table} WHERE account = $1 AND device = $2
                   ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING id, created_at, key, signature"
            )
        };
        let one_time = tx
            .query_opt(take("one_time_prekeys").as_str(), &[&account, &d])
            .await?;
        let kem = tx
            .query_opt(take("kem_prekeys").as_str(), &[&account, &d])
            .await?;
        let (kem, last_resort) = match kem {
            Some(k) => (Some(k), false),
            None => (
                tx.query_opt(
                    "SELECT id, created_at, key, signature FROM kem_last_resort WHERE account = $1 AND device = $2",
                    &[&account, &d],
                )
                .await?,
                true,
            ),
        };
        let Some(kem) = kem else {
            return Ok(None);
        };
        tx.commit().await?;
        Ok(Some(ClaimedBundle {
            device,
            registration_id,
            identity,
            signed_prekey: to_prekey(&signed)?,
            one_time_prekey: one_time.as_ref().map(to_prekey).transpose()?,
            kem_prekey: to_prekey(&kem)?,
            kem_last_resort: last_resort,
        }))
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
        let (done, answer) = tokio::sync::oneshot::channel();
        let pending = PendingSend {
            sender: sender.to_owned(),
            sender_device,
            message_id: message_id.to_owned(),
            recipient: recipient.to_owned(),
            messages: sorted_by_device(messages),
            max_queue,
            now,
            done,
        };
        if self.sends.send(pending).await.is_err() {
            return Err(StoreError::Task);
        }
        answer.await.map_err(|_| StoreError::Task)?
    }

    async fn fetch_messages(
        &self,
        account: &str,
        device: u32,
        after: i64,
        limit: u32,
        not_before: u64,
    ) -> Result<Vec<QueuedMessage>, StoreError> {
        let c = self.pool.get().await?;
        let st = c
            .prepare_cached(
                "SELECT seq, sender, sender_device, message_id, body, created_at FROM messages
                 WHERE account = $1 AND device = $2 AND seq > $3 AND created_at >= $4
                 ORDER BY seq LIMIT $5",
            )
            .await?;
        let rows = c
            .query(
                &st,
                &[
                    &account,
                    &i64::from(device),
                    &after,
                    &to_i64(not_before),
                    &i64::from(limit),
                ],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(QueuedMessage {
                    seq: r.get(0),
                    sender: r.get(1),
                    sender_device: to_u32(r.get(2), "sender_device")?,
                    id: r.get(3),
                    body: r.get(4),
                    timestamp: to_u64(r.get(5), "created_at")?,
                })
            })
            .collect()
    }

    async fn ack(&self, account: &str, device: u32, seq: i64) -> Result<bool, StoreError> {
        let c = self.pool.get().await?;
        let n = c
            .execute(
                "DELETE FROM messages WHERE seq = $1 AND account = $2 AND device = $3",
                &[&seq, &account, &i64::from(device)],
            )
            .await?;
        Ok(n > 0)
    }

    async fn purge_expired(&self, before: u64) -> Result<u64, StoreError> {
        let c = self.pool.get().await?;
        Ok(c.execute(
            "DELETE FROM messages WHERE created_at < $1",
            &[&to_i64(before)],
        )
        .await?)
    }

    async fn queue_depth(&self) -> Result<u64, StoreError> {
        let c = self.pool.get().await?;
        to_u64(
            c.query_one("SELECT COUNT(*) FROM messages", &[])
                .await?
                .get(0),
            "count",
        )
    }

    async fn start_listener(&self, notify: NotifyFn) -> Result<(), StoreError> {
        // Connect once up front so a bad configuration fails at start.
        let first = listen_once(&self.config).await?;
        let config = self.config.clone();
        tokio::spawn(async move {
            let mut conn = Some(first);
            loop {
                let (client, mut stream) = match conn.take() {
                    Some(c) => c,
                    None => match listen_once(&config).await {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!(error = %e, "LISTEN connection failed; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            continue;
                        }
                    },
                };
                while let Some(msg) = stream.next().await {
                    match msg {
                        Ok(AsyncMessage::Notification(n)) => {
                            if let Some((device, account)) = n.payload().split_once(':')
                                && let Ok(device) = device.parse::<u32>()
                            {
                                notify(account, device);
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                            break;
                        }
                    }
                }
                drop(client);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Ok(())
    }
}

type NotificationStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<AsyncMessage, tokio_postgres::Error>> + Send>,
>;

async fn listen_once(
    config: &tokio_postgres::Config,
) -> Result<(tokio_postgres::Client, NotificationStream), StoreError> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let stream: NotificationStream = Box::pin(futures_util::stream::poll_fn(move |cx| {
        connection.poll_message(cx)
    }));
    // The connection must be polled for the LISTEN to complete: run it on the stream's
    // task by forwarding through a channel.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = stream;
        while let Some(m) = stream.next().await {
            let end = m.is_err();
            if tx.send(m).is_err() || end {
                break;
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    let rx: NotificationStream = Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|m| (m, rx))
    }));
    Ok((client, rx))
}
