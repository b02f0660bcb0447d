//! Storage behind one trait, [`Storage`], with two real backends: embedded SQLite
//! ([`sqlite::SqliteStore`]) and PostgreSQL shared by replicas
//! ([`postgres::PostgresStore`]). Both run their schema migrations when opened.
//!
//! The store only ever holds ciphertext, public keys and salted credential hashes. It
//! does not verify signatures: the API layer does that before calling
//! [`Storage::upload_keys`].

pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// No PostgreSQL connection could be taken from the pool.
    #[error("postgres pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The PostgreSQL pool could not be built.
    #[error("postgres pool setup: {0}")]
    PoolSetup(#[from] deadpool_postgres::BuildError),
    /// A blocking storage task was cancelled or panicked.
    #[error("storage task failed")]
    Task,
    /// The SQLite connection lock was poisoned by a panic.
    #[error("storage lock poisoned")]
    Poisoned,
    /// The device already has a different identity key; identity keys are fixed once set.
    #[error("identity key already set to a different key")]
    IdentityConflict,
    /// A recipient device's queue is full.
    #[error("queue of device {device} is full")]
    QueueFull {
        /// The recipient device.
        device: u32,
    },
    /// A stored value is out of range (corrupt row).
    #[error("stored value out of range in {column}")]
    Corrupt {
        /// The column.
        column: &'static str,
    },
    /// The group commit this request was part of failed (PostgreSQL sends); the cause
    /// is shared by every request of the batch.
    #[error("group commit failed: {0}")]
    Batch(std::sync::Arc<StoreError>),
}

/// The salted hash of one device's credential.
#[derive(Clone)]
pub struct CredentialHash {
    /// Per-device random salt.
    pub salt: [u8; 16],
    /// SHA-256(domain ‖ salt ‖ credential).
    pub hash: [u8; 32],
}

impl std::fmt::Debug for CredentialHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialHash { .. }")
    }
}

/// One device as listed to other users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Device id (1 is the device that registered the account).
    pub device: u32,
    /// The registration id the device registered with.
    pub registration_id: u32,
    /// The device's encoded identity key, once uploaded.
    pub identity: Option<Vec<u8>>,
}

/// A public prekey as stored: its fields in the encodings of `signal-core`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPreKey {
    /// Prekey id.
    pub id: u32,
    /// Creation time (seconds since the epoch).
    pub created_at: u64,
    /// Encoded public key (`DhPublicKey::encode` or `KemPublicKey::encode`).
    pub key: Vec<u8>,
    /// The identity's signature.
    pub signature: Vec<u8>,
}

/// One key upload, already verified by the caller.
#[derive(Debug, Clone, Default)]
pub struct KeyUpload {
    /// Encoded identity key; set once, then only the same key is accepted.
    pub identity: Option<Vec<u8>>,
    /// Replaces the signed prekey.
    pub signed_prekey: Option<StoredPreKey>,
    /// Added to the one-time EC prekeys (same id replaces).
    pub one_time_prekeys: Vec<StoredPreKey>,
    /// Added to the one-time KEM prekeys (same id replaces).
    pub kem_prekeys: Vec<StoredPreKey>,
    /// Replaces the last-resort KEM prekey.
    pub last_resort_kem_prekey: Option<StoredPreKey>,
}

/// What a bundle fetch claimed for one device.
#[derive(Debug, Clone)]
pub struct ClaimedBundle {
    /// Device id.
    pub device: u32,
    /// Registration id.
    pub registration_id: u32,
    /// Encoded identity key.
    pub identity: Vec<u8>,
    /// Current signed prekey.
    pub signed_prekey: StoredPreKey,
    /// A one-time EC prekey, now deleted from the store, if one was left.
    pub one_time_prekey: Option<StoredPreKey>,
    /// A one-time KEM prekey (now deleted) or the last-resort one.
    pub kem_prekey: StoredPreKey,
    /// Whether `kem_prekey` is the last-resort key.
    pub kem_last_resort: bool,
}

/// Remaining one-time prekey counts of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyCounts {
    /// One-time EC prekeys.
    pub one_time: u64,
    /// One-time KEM prekeys.
    pub kem_one_time: u64,
}

/// One ciphertext for one recipient device.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    /// Recipient device.
    pub device: u32,
    /// Ciphertext.
    pub body: Vec<u8>,
}

/// A message in a device's queue.
#[derive(Debug, Clone)]
pub struct QueuedMessage {
    /// Queue position (increasing; the acknowledgement handle).
    pub seq: i64,
    /// Sender account.
    pub sender: String,
    /// Sender device.
    pub sender_device: u32,
    /// Client-supplied message id.
    pub id: String,
    /// Ciphertext.
    pub body: Vec<u8>,
    /// When the relay accepted it (seconds since the epoch).
    pub timestamp: u64,
}

/// Called with `(account, device)` when a message for that device arrives from another
/// replica.
pub type NotifyFn = Arc<dyn Fn(&str, u32) + Send + Sync>;

/// The relay's storage. Every method is one atomic operation.
#[async_trait]
pub trait Storage: Send + Sync {
    /// Succeeds when the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Creates `account` with device 1. Returns `false` if the account exists.
    async fn create_account(
        &self,
        account: &str,
        registration_id: u32,
        credential: &CredentialHash,
        now: u64,
    ) -> Result<bool, StoreError>;

    /// Adds a device with the next free id, unless the account already has
    /// `max_devices`; returns the new id, or `None` when full.
    async fn add_device(
        &self,
        account: &str,
        registration_id: u32,
        credential: &CredentialHash,
        max_devices: u32,
        now: u64,
    ) -> Result<Option<u32>, StoreError>;

    /// Removes a device with its keys and queue. Returns `false` if it did not exist.
    async fn remove_device(&self, account: &str, device: u32) -> Result<bool, StoreError>;

    /// The credential hash of a device, if it exists.
    async fn credential(
        &self,
        account: &str,
        device: u32,
    ) -> Result<Option<CredentialHash>, StoreError>;

    /// The account's devices in id order (empty if the account does not exist).
    async fn devices(&self, account: &str) -> Result<Vec<DeviceInfo>, StoreError>;

    /// Stores verified keys atomically. Fails with [`StoreError::IdentityConflict`] if
    /// the upload names an identity different from the stored one.
    async fn upload_keys(
        &self,
        account: &str,
        device: u32,
        upload: &KeyUpload,
    ) -> Result<(), StoreError>;

    /// Remaining one-time counts.
    async fn key_counts(&self, account: &str, device: u32) -> Result<KeyCounts, StoreError>;

    /// Claims one one-time EC prekey and one one-time KEM prekey (or the last-resort
    /// KEM key) atomically: a claimed one-time key is deleted in the same transaction
    /// and never handed to another caller. `None` if the device does not exist or has
    /// no identity, signed prekey or KEM prekey.
    async fn claim_bundle(
        &self,
        account: &str,
        device: u32,
    ) -> Result<Option<ClaimedBundle>, StoreError>;

    /// Durably stores one ciphertext per recipient device. A message whose
    /// (sender, sender device, id) is already queued for a device is not stored again.
    /// Fails with [`StoreError::QueueFull`] (storing nothing) if a queue is at `max_queue`.
    #[allow(clippy::too_many_arguments)]
    async fn store_messages(
        &self,
        sender: &str,
        sender_device: u32,
        message_id: &str,
        recipient: &str,
        messages: &[OutgoingMessage],
        max_queue: u64,
        now: u64,
    ) -> Result<(), StoreError>;

    /// Up to `limit` queued messages of a device with `seq > after`, oldest first,
    /// skipping ones accepted before `not_before`.
    async fn fetch_messages(
        &self,
        account: &str,
        device: u32,
        after: i64,
        limit: u32,
        not_before: u64,
    ) -> Result<Vec<QueuedMessage>, StoreError>;

    /// Deletes an acknowledged message of this device. `false` if it was not in this
    /// device's queue.
    async fn ack(&self, account: &str, device: u32, seq: i64) -> Result<bool, StoreError>;

    /// Deletes messages accepted before `before`; returns how many.
    async fn purge_expired(&self, before: u64) -> Result<u64, StoreError>;

    /// Total queued messages.
    async fn queue_depth(&self) -> Result<u64, StoreError>;

    /// Starts delivering cross-replica notifications to `notify`. SQLite is single
    /// process (the relay notifies itself in memory), so it has nothing to start.
    async fn start_listener(&self, notify: NotifyFn) -> Result<(), StoreError>;
}

pub(crate) fn to_u32(v: i64, column: &'static str) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt { column })
}

pub(crate) fn to_u64(v: i64, column: &'static str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt { column })
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
