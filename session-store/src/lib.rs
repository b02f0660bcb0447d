//! `session-store`: `signal-core`'s protocol store on an encrypted SQLCipher database.
//!
//! - [`SqlStore`] implements every store trait of `signal-core` on one SQLCipher 4
//!   file (whole-database encryption, WAL mode, a busy timeout, safe for several
//!   processes at once).
//! - Keys come from a [`KeyProvider`]: [`RawKey`], [`PassphraseKey`] (Argon2id, salt
//!   beside the database), [`EnvKey`], [`FileKey`], or your own (a KMS, a keychain).
//! - [`SqlStore::commit_with`] persists a received message in the same transaction as
//!   the session state it advanced, so a crash can neither lose the message nor let
//!   its key be used twice.
//! - [`SqlStore::export_backup`] / [`SqlStore::import_backup`] move a whole account.
//!
//! ```
//! use session_store::{DatabaseKey, RawKey, SqlStore};
//! use signal_core::store::IdentityStore;
//! use signal_core::IdentityKeyPair;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("account.db");
//! let key = RawKey::new(DatabaseKey::generate()?);
//! let identity = IdentityKeyPair::generate()?;
//! SqlStore::create(&path, &key, &identity, 7)?;
//! let store = SqlStore::open(&path, &key)?;
//! assert_eq!(store.local_registration_id()?, 7);
//! # Ok(()) }
//! ```

pub mod backup;
mod error;
pub mod key;
mod schema;
mod store;

pub use key::{
    Argon2Params, DatabaseKey, EnvKey, FileKey, KeyError, KeyProvider, KeyPurpose, PassphraseKey,
    RawKey,
};
pub use rusqlite;
pub use schema::SCHEMA_VERSION;
pub use store::{BUSY_TIMEOUT, OpenError, SqlStore};
