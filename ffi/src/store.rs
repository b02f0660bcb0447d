//! `SignalIdentity` and `SignalStore` handles: identity keys, and the store every
//! protocol call works on (in memory or SQLCipher).

use std::ffi::c_char;
use std::sync::{Mutex, MutexGuard};

use session_store::{DatabaseKey, PassphraseKey, RawKey, SqlStore};
use signal_core::IdentityKeyPair;
use signal_core::store::InMemoryStore;

use crate::backend::Backend;
use crate::buffer::{SignalBuffer, array, bytes, handle, out, string};
use crate::error::{FfiError, SignalErrorCode, guard};

/// An identity key pair (Ed25519 signing key; X25519 by the birational map). Opaque;
/// free with [`signal_identity_free`]. Immutable: may be shared between threads.
pub struct SignalIdentity {
    pub(crate) key: IdentityKeyPair,
}

/// A protocol store: every session, prekey, peer identity and group sender key of one
/// device. Opaque; free with [`signal_store_free`].
///
/// Thread safety: a `SignalStore` may be used from several threads at once; calls on
/// one store are serialized by an internal lock. Two handles on the same SQLCipher
/// file are also safe (SQLite locking plus the generation check); a call that lost a
/// race fails with `SIGNAL_ERR_CONFLICT` and changes nothing.
pub struct SignalStore {
    inner: Mutex<Box<dyn Backend>>,
}

impl SignalStore {
    pub(crate) fn new(backend: Box<dyn Backend>) -> Self {
        Self {
            inner: Mutex::new(backend),
        }
    }

    /// The backend, locked for this call.
    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, Box<dyn Backend>>, FfiError> {
        self.inner.lock().map_err(|_| {
            FfiError::new(
                SignalErrorCode::SIGNAL_ERR_INTERNAL,
                "store lock poisoned by an earlier internal error",
            )
        })
    }
}

fn boxed<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Generates a new identity key pair into `*out`.
///
/// # Safety
/// `out` must be null or valid for writing a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_identity_generate(
    out_identity: *mut *mut SignalIdentity,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract on `out_identity`.
        let out_identity = unsafe { out(out_identity, "out_identity") }?;
        let key = IdentityKeyPair::generate()?;
        *out_identity = boxed(SignalIdentity { key });
        Ok(())
    })
}

/// Serializes the identity key pair **including its secret key** into `*out` (keep it
/// secret; load it back with [`signal_identity_deserialize`]).
///
/// # Safety
/// `identity` must be null or a live handle; `out` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_identity_serialize(
    identity: *const SignalIdentity,
    out_secret: *mut SignalBuffer,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract.
        let identity = unsafe { handle(identity, "identity") }?;
        // SAFETY: forwarded contract.
        let out_secret = unsafe { out(out_secret, "out_secret") }?;
        *out_secret = SignalBuffer::copy_of(&identity.key.to_secret_bytes());
        Ok(())
    })
}

/// Loads an identity key pair serialized by [`signal_identity_serialize`].
///
/// # Safety
/// `data` must be null or readable for `len` bytes; `out_identity` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_identity_deserialize(
    data: *const u8,
    len: usize,
    out_identity: *mut *mut SignalIdentity,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract.
        let data = unsafe { bytes(data, len, "data") }?;
        // SAFETY: forwarded contract.
        let out_identity = unsafe { out(out_identity, "out_identity") }?;
        let key = IdentityKeyPair::from_secret_bytes(data)?;
        *out_identity = boxed(SignalIdentity { key });
        Ok(())
    })
}

/// The public identity key (33 bytes), as peers and safety numbers use it.
///
/// # Safety
/// `identity` must be null or a live handle; `out_public` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_identity_public_key(
    identity: *const SignalIdentity,
    out_public: *mut SignalBuffer,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract.
        let identity = unsafe { handle(identity, "identity") }?;
        // SAFETY: forwarded contract.
        let out_public = unsafe { out(out_public, "out_public") }?;
        *out_public = SignalBuffer::copy_of(&identity.key.public().encode());
        Ok(())
    })
}

/// Frees an identity handle. Null is ignored.
///
/// # Safety
/// `identity` must be null or a handle from this library not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_identity_free(identity: *mut SignalIdentity) {
    if !identity.is_null() {
        // SAFETY: a non-null handle came from `Box::into_raw` and is freed once.
        drop(unsafe { Box::from_raw(identity) });
    }
}

/// Creates an in-memory store (nothing persists) for a device with this identity and
/// registration id.
///
/// # Safety
/// `identity` must be null or a live handle; `out_store` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_store_new_in_memory(
    identity: *const SignalIdentity,
    registration_id: u32,
    out_store: *mut *mut SignalStore,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract.
        let identity = unsafe { handle(identity, "identity") }?;
        // SAFETY: forwarded contract.
        let out_store = unsafe { out(out_store, "out_store") }?;
        let store = InMemoryStore::new(identity.key.clone(), registration_id);
        *out_store = boxed(SignalStore::new(Box::new(store)));
        Ok(())
    })
}

fn raw_key(key: [u8; 32]) -> RawKey {
    RawKey::new(DatabaseKey::from_bytes(key))
}

fn sql_store(store: SqlStore) -> Result<*mut SignalStore, FfiError> {
    Ok(boxed(SignalStore::new(Box::new(store))))
}

/// Creates a new SQLCipher database at `path` encrypted under the 32-byte `key`, for a
/// device with this identity and registration id. Refuses an existing file.
///
/// # Safety
/// `path` must be null or a NUL-terminated string; `key` null or readable for
/// `key_len` bytes; `identity` null or live; `out_store` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_store_create_sqlcipher(
    path: *const c_char,
    key: *const u8,
    key_len: usize,
    identity: *const SignalIdentity,
    registration_id: u32,
    out_store: *mut *mut SignalStore,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract.
        let path = unsafe { string(path, "path") }?;
        // SAFETY: forwarded contract.
        let key = unsafe { array::<32>(key, key_len, "key") }?;
        // SAFETY: forwarded contract.
        let identity = unsafe { handle(identity, "identity") }?;
        // SAFETY: forwarded contract.
        let out_store = unsafe { out(out_store, "out_store") }?;
        let store = SqlStore::create(path, &raw_key(key), &identity.key, registration_id)?;
        *out_store = sql_store(store)?;
        Ok(())
    })
}

/// Opens the SQLCipher database at `path` with the 32-byte `key`. A wrong key gives
/// `SIGNAL_ERR_WRONG_KEY`; a missing or damaged file `SIGNAL_ERR_STORE`, and so does an
/// empty file or a database that is not a store, which is left untouched (only
/// [`signal_store_create_sqlcipher`] makes a store).
///
/// # Safety
/// As for [`signal_store_create_sqlcipher`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_store_open_sqlcipher(
    path: *const c_char,
    key: *const u8,
    key_len: usize,
    out_store: *mut *mut SignalStore,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract.
        let path = unsafe { string(path, "path") }?;
        // SAFETY: forwarded contract.
        let key = unsafe { array::<32>(key, key_len, "key") }?;
        // SAFETY: forwarded contract.
        let out_store = unsafe { out(out_store, "out_store") }?;
        *out_store = sql_store(SqlStore::open(path, &raw_key(key))?)?;
        Ok(())
    })
}

/// Creates a new SQLCipher database at `path` whose key is derived from `passphrase`
/// with Argon2id (19 MiB, 2 passes); the salt is written to `<path>.salt`, which must
/// be kept (and backed up) with the database.
///
/// # Safety
/// As for [`signal_store_create_sqlcipher`], with `passphrase` readable for
/// `passphrase_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_store_create_sqlcipher_passphrase(
    path: *const c_char,
    passphrase: *const u8,
    passphrase_len: usize,
    identity: *const SignalIdentity,
    registration_id: u32,
    out_store: *mut *mut SignalStore,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract.
        let path = unsafe { string(path, "path") }?;
        // SAFETY: forwarded contract.
        let passphrase = unsafe { bytes(passphrase, passphrase_len, "passphrase") }?;
        // SAFETY: forwarded contract.
        let identity = unsafe { handle(identity, "identity") }?;
        // SAFETY: forwarded contract.
        let out_store = unsafe { out(out_store, "out_store") }?;
        let key = PassphraseKey::new(passphrase);
        *out_store = sql_store(SqlStore::create(
            path,
            &key,
            &identity.key,
            registration_id,
        )?)?;
        Ok(())
    })
}

/// Opens a SQLCipher database created with
/// [`signal_store_create_sqlcipher_passphrase`].
///
/// # Safety
/// As for [`signal_store_create_sqlcipher_passphrase`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_store_open_sqlcipher_passphrase(
    path: *const c_char,
    passphrase: *const u8,
    passphrase_len: usize,
    out_store: *mut *mut SignalStore,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract.
        let path = unsafe { string(path, "path") }?;
        // SAFETY: forwarded contract.
        let passphrase = unsafe { bytes(passphrase, passphrase_len, "passphrase") }?;
        // SAFETY: forwarded contract.
        let out_store = unsafe { out(out_store, "out_store") }?;
        *out_store = sql_store(SqlStore::open(path, &PassphraseKey::new(passphrase))?)?;
        Ok(())
    })
}

/// The store's own identity key pair, as a new handle.
///
/// # Safety
/// `store` must be null or live; `out_identity` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_store_local_identity(
    store: *const SignalStore,
    out_identity: *mut *mut SignalIdentity,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract.
        let store = unsafe { handle(store, "store") }?;
        // SAFETY: forwarded contract.
        let out_identity = unsafe { out(out_identity, "out_identity") }?;
        let key = store.lock()?.local_identity()?;
        *out_identity = boxed(SignalIdentity { key });
        Ok(())
    })
}

/// The store's registration id.
///
/// # Safety
/// `store` must be null or live; `out_id` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_store_registration_id(
    store: *const SignalStore,
    out_id: *mut u32,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract.
        let store = unsafe { handle(store, "store") }?;
        // SAFETY: forwarded contract.
        let out_id = unsafe { out(out_id, "out_id") }?;
        *out_id = store.lock()?.local_registration_id()?;
        Ok(())
    })
}

/// Frees a store handle (closing its database). Null is ignored. No call on this
/// store may be running or start afterwards.
///
/// # Safety
/// `store` must be null or a handle from this library not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_store_free(store: *mut SignalStore) {
    if !store.is_null() {
        // SAFETY: a non-null handle came from `Box::into_raw` and is freed once.
        drop(unsafe { Box::from_raw(store) });
    }
}
