//! A store for applications that keep their own database: the library loads, stores,
//! removes and lists serialized records through C callbacks, and brackets each atomic
//! session commit with `begin` / `commit` (or `rollback`) so the application can apply
//! it in one transaction.

use std::borrow::Cow;
use std::ffi::c_void;

use signal_core::error::OneTimePreKeyKind;
use signal_core::group::{GROUP_ID_LEN, GroupId, SenderKeyRecord};
use signal_core::keys::DhPublicKey;
use signal_core::prekey::{KemPreKeyRecord, OneTimePreKeyRecord, PreKeyId, SignedPreKeyRecord};
use signal_core::session::SessionRecord;
use signal_core::store::{
    IdentityStore, KemPreKeyStore, PreKeyStore, ProtocolStore, SenderKeyStore, SessionCommit,
    SessionStore, SignedPreKeyStore,
};
use signal_core::{Address, IdentityKey, IdentityKeyPair, StoreError};
use zeroize::Zeroizing;

use crate::backend::Backend;
use crate::buffer::{bytes, handle, out};
use crate::error::{SignalErrorCode, guard};
use crate::store::{SignalIdentity, SignalStore};

/// The kinds of record a callback store keeps. Keys are opaque byte strings unique
/// within a kind; values are opaque serialized records (secret: keep them in
/// encrypted storage).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalRecordKind {
    /// A peer device's identity key.
    SIGNAL_RECORD_REMOTE_IDENTITY = 1,
    /// A one-time X25519 prekey.
    SIGNAL_RECORD_PREKEY = 2,
    /// A signed prekey.
    SIGNAL_RECORD_SIGNED_PREKEY = 3,
    /// An ML-KEM-1024 prekey.
    SIGNAL_RECORD_KEM_PREKEY = 4,
    /// A recorded use of a last-resort KEM prekey (the value is unimportant).
    SIGNAL_RECORD_LAST_RESORT_USE = 5,
    /// A session record with one peer device.
    SIGNAL_RECORD_SESSION = 6,
    /// A group sender-key record.
    SIGNAL_RECORD_SENDER_KEY = 7,
}

use SignalRecordKind::*;

/// Where a `load` callback puts the value it found, or a `list` callback the keys.
/// Opaque; owned by the library, valid only during the callback.
pub struct SignalSlot {
    value: Option<Zeroizing<Vec<u8>>>,
    keys: Vec<Vec<u8>>,
}

/// The application's storage callbacks. Every callback returns 0 on success; `load`
/// and `remove` return 1 if the key is absent; any other value is an error, reported
/// to the caller of the library as `SIGNAL_ERR_STORE` (nothing is committed).
///
/// Contract: the callbacks may be called from any thread that calls into the library
/// with this store (never two at once for one store: calls are serialized). `ctx` is
/// passed back unchanged and must stay valid until the store is freed.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SignalStoreCallbacks {
    /// The application's context, passed to every callback.
    pub ctx: *mut c_void,
    /// Looks up (`kind`, key); on success copies the value in with [`signal_slot_set`]
    /// and returns 0; returns 1 if absent.
    pub load: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            kind: u32,
            key: *const u8,
            key_len: usize,
            slot: *mut SignalSlot,
        ) -> i32,
    >,
    /// Inserts or replaces (`kind`, key) → value.
    pub store: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            kind: u32,
            key: *const u8,
            key_len: usize,
            value: *const u8,
            value_len: usize,
        ) -> i32,
    >,
    /// Deletes (`kind`, key): returns 0 if it deleted a record, 1 if there was none.
    /// The answer must be exact, as of inside the running transaction: a session
    /// commit consumes a one-time prekey with `remove`, and 1 means another commit
    /// (another handle or process on the same database) consumed it first, so the
    /// library rolls back and fails with `SIGNAL_ERR_CONFLICT`. Elsewhere 1 is not an
    /// error.
    pub remove: Option<
        unsafe extern "C" fn(ctx: *mut c_void, kind: u32, key: *const u8, key_len: usize) -> i32,
    >,
    /// Reports every key of `kind` with [`signal_slot_push_key`].
    pub list:
        Option<unsafe extern "C" fn(ctx: *mut c_void, kind: u32, slot: *mut SignalSlot) -> i32>,
    /// Starts a transaction: the loads, stores and removes until `commit` (or
    /// `rollback`) must apply atomically, and no other writer may interleave.
    pub begin: Option<unsafe extern "C" fn(ctx: *mut c_void) -> i32>,
    /// Commits the transaction.
    pub commit: Option<unsafe extern "C" fn(ctx: *mut c_void) -> i32>,
    /// Discards the transaction.
    pub rollback: Option<unsafe extern "C" fn(ctx: *mut c_void) -> i32>,
}

type LoadFn = unsafe extern "C" fn(*mut c_void, u32, *const u8, usize, *mut SignalSlot) -> i32;
type StoreFn = unsafe extern "C" fn(*mut c_void, u32, *const u8, usize, *const u8, usize) -> i32;
type RemoveFn = unsafe extern "C" fn(*mut c_void, u32, *const u8, usize) -> i32;
type ListFn = unsafe extern "C" fn(*mut c_void, u32, *mut SignalSlot) -> i32;
type TxFn = unsafe extern "C" fn(*mut c_void) -> i32;

/// A callback failed with an application error code.
#[derive(Debug)]
struct CallbackError {
    op: &'static str,
    code: i32,
}

impl core::fmt::Display for CallbackError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "store callback `{}` returned {}", self.op, self.code)
    }
}

impl std::error::Error for CallbackError {}

fn failed(op: &'static str, code: i32) -> StoreError {
    StoreError::Backend(Box::new(CallbackError { op, code }))
}

struct CallbackBackend {
    ctx: *mut c_void,
    load: LoadFn,
    store: StoreFn,
    remove: RemoveFn,
    list: ListFn,
    begin: TxFn,
    commit: TxFn,
    rollback: TxFn,
    identity: IdentityKeyPair,
    registration_id: u32,
}

// SAFETY: the only non-Send fields are `ctx` and the callbacks; the application
// guarantees (documented on `SignalStoreCallbacks`) that they may be used from any
// thread that calls into the library, and the `SignalStore` lock serializes calls.
unsafe impl Send for CallbackBackend {}

fn address_key(a: &Address) -> Vec<u8> {
    let mut k = a.device().to_be_bytes().to_vec();
    k.extend_from_slice(a.user().as_bytes());
    k
}

fn decode_address(k: &[u8]) -> Option<Address> {
    let (device, user) = k.split_at_checked(4)?;
    let device = u32::from_be_bytes(device.try_into().ok()?);
    Address::new(std::str::from_utf8(user).ok()?, device).ok()
}

fn id_key(id: PreKeyId) -> [u8; 4] {
    id.to_be_bytes()
}

fn sender_key(group: &GroupId, sender: &Address) -> Vec<u8> {
    let mut k = group.as_bytes().to_vec();
    k.extend_from_slice(&address_key(sender));
    k
}

impl CallbackBackend {
    fn get(
        &self,
        kind: SignalRecordKind,
        key: &[u8],
    ) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let mut slot = SignalSlot {
            value: None,
            keys: Vec::new(),
        };
        // SAFETY: `load` is the application's callback with its own `ctx`; `key` is
        // valid for `key.len()` bytes and `slot` for the duration of the call.
        let rc = unsafe { (self.load)(self.ctx, kind as u32, key.as_ptr(), key.len(), &mut slot) };
        match rc {
            0 => Ok(Some(slot.value.unwrap_or_default())),
            1 => Ok(None),
            code => Err(failed("load", code)),
        }
    }

    fn put(&self, kind: SignalRecordKind, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        // SAFETY: as in `get`; `value` is valid for `value.len()` bytes.
        let rc = unsafe {
            (self.store)(
                self.ctx,
                kind as u32,
                key.as_ptr(),
                key.len(),
                value.as_ptr(),
                value.len(),
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(failed("store", rc))
        }
    }

    /// Deletes (`kind`, `key`) if present.
    fn del(&self, kind: SignalRecordKind, key: &[u8]) -> Result<(), StoreError> {
        self.removed(kind, key).map(drop)
    }

    /// Deletes (`kind`, `key`); `Ok(false)` if there was no such record.
    fn removed(&self, kind: SignalRecordKind, key: &[u8]) -> Result<bool, StoreError> {
        // SAFETY: as in `get`.
        let rc = unsafe { (self.remove)(self.ctx, kind as u32, key.as_ptr(), key.len()) };
        match rc {
            0 => Ok(true),
            1 => Ok(false),
            code => Err(failed("remove", code)),
        }
    }

    /// Compare-and-delete of a one-time prekey a commit consumes: exactly one record,
    /// else [`StoreError::PreKeyAlreadyConsumed`] (the commit then rolls back).
    fn consume(
        &self,
        kind: SignalRecordKind,
        prekey: OneTimePreKeyKind,
        id: PreKeyId,
    ) -> Result<(), StoreError> {
        if self.removed(kind, &id_key(id))? {
            Ok(())
        } else {
            Err(StoreError::PreKeyAlreadyConsumed { kind: prekey, id })
        }
    }

    fn keys(&self, kind: SignalRecordKind) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut slot = SignalSlot {
            value: None,
            keys: Vec::new(),
        };
        // SAFETY: as in `get`.
        let rc = unsafe { (self.list)(self.ctx, kind as u32, &mut slot) };
        if rc == 0 {
            Ok(slot.keys)
        } else {
            Err(failed("list", rc))
        }
    }

    fn ids(&self, kind: SignalRecordKind) -> Result<Vec<PreKeyId>, StoreError> {
        let mut ids: Vec<PreKeyId> = self
            .keys(kind)?
            .iter()
            .filter_map(|k| Some(u32::from_be_bytes(k.as_slice().try_into().ok()?)))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    fn tx(&self, f: TxFn, op: &'static str) -> Result<(), StoreError> {
        // SAFETY: the application's transaction callback with its own `ctx`.
        let rc = unsafe { f(self.ctx) };
        if rc == 0 { Ok(()) } else { Err(failed(op, rc)) }
    }

    fn apply(&self, commit: &SessionCommit) -> Result<(), StoreError> {
        let addr = address_key(&commit.address);
        let stored = match self.get(SIGNAL_RECORD_SESSION, &addr)? {
            Some(b) => SessionRecord::decode(&b)?.generation(),
            None => 0,
        };
        if stored != commit.expected_generation {
            return Err(StoreError::Conflict {
                what: "session record changed since it was loaded",
            });
        }
        let use_key = commit.last_resort_use.as_ref().map(|(id, base)| {
            let mut k = id_key(*id).to_vec();
            k.extend_from_slice(&base.encode());
            k
        });
        if let Some(k) = &use_key
            && self.get(SIGNAL_RECORD_LAST_RESORT_USE, k)?.is_some()
        {
            return Err(StoreError::Conflict {
                what: "last-resort KEM prekey already used with this base key",
            });
        }
        if let Some(identity) = &commit.new_identity {
            self.put(SIGNAL_RECORD_REMOTE_IDENTITY, &addr, &identity.encode())?;
        }
        if let Some(id) = commit.consumed_prekey {
            self.consume(SIGNAL_RECORD_PREKEY, OneTimePreKeyKind::X25519, id)?;
        }
        if let Some(id) = commit.consumed_kem_prekey {
            self.consume(SIGNAL_RECORD_KEM_PREKEY, OneTimePreKeyKind::Kem, id)?;
        }
        if let Some(k) = &use_key {
            self.put(SIGNAL_RECORD_LAST_RESORT_USE, k, &[1])?;
        }
        self.put(SIGNAL_RECORD_SESSION, &addr, &commit.record.encode())
    }
}

impl IdentityStore for CallbackBackend {
    fn local_identity(&self) -> Result<IdentityKeyPair, StoreError> {
        Ok(self.identity.clone())
    }
    fn local_registration_id(&self) -> Result<u32, StoreError> {
        Ok(self.registration_id)
    }
    fn remote_identity(&self, address: &Address) -> Result<Option<IdentityKey>, StoreError> {
        match self.get(SIGNAL_RECORD_REMOTE_IDENTITY, &address_key(address))? {
            Some(b) => Ok(Some(IdentityKey::decode(&b)?)),
            None => Ok(None),
        }
    }
    fn save_identity(
        &mut self,
        address: &Address,
        identity: &IdentityKey,
    ) -> Result<(), StoreError> {
        self.put(
            SIGNAL_RECORD_REMOTE_IDENTITY,
            &address_key(address),
            &identity.encode(),
        )
    }
}

impl PreKeyStore for CallbackBackend {
    fn load_prekey(&self, id: PreKeyId) -> Result<Option<OneTimePreKeyRecord>, StoreError> {
        match self.get(SIGNAL_RECORD_PREKEY, &id_key(id))? {
            Some(b) => Ok(Some(OneTimePreKeyRecord::from_secret_bytes(&b)?)),
            None => Ok(None),
        }
    }
    fn store_prekey(&mut self, record: &OneTimePreKeyRecord) -> Result<(), StoreError> {
        self.put(
            SIGNAL_RECORD_PREKEY,
            &id_key(record.id()),
            &record.to_secret_bytes(),
        )
    }
    fn remove_prekey(&mut self, id: PreKeyId) -> Result<(), StoreError> {
        self.del(SIGNAL_RECORD_PREKEY, &id_key(id))
    }
    fn prekey_count(&self) -> Result<usize, StoreError> {
        Ok(self.keys(SIGNAL_RECORD_PREKEY)?.len())
    }
}

impl SignedPreKeyStore for CallbackBackend {
    fn load_signed_prekey(&self, id: PreKeyId) -> Result<Option<SignedPreKeyRecord>, StoreError> {
        match self.get(SIGNAL_RECORD_SIGNED_PREKEY, &id_key(id))? {
            Some(b) => Ok(Some(SignedPreKeyRecord::from_secret_bytes(&b)?)),
            None => Ok(None),
        }
    }
    fn store_signed_prekey(&mut self, record: &SignedPreKeyRecord) -> Result<(), StoreError> {
        self.put(
            SIGNAL_RECORD_SIGNED_PREKEY,
            &id_key(record.id()),
            &record.to_secret_bytes(),
        )
    }
    fn remove_signed_prekey(&mut self, id: PreKeyId) -> Result<(), StoreError> {
        self.del(SIGNAL_RECORD_SIGNED_PREKEY, &id_key(id))
    }
    fn signed_prekey_ids(&self) -> Result<Vec<PreKeyId>, StoreError> {
        self.ids(SIGNAL_RECORD_SIGNED_PREKEY)
    }
}

impl KemPreKeyStore for CallbackBackend {
    fn load_kem_prekey(&self, id: PreKeyId) -> Result<Option<KemPreKeyRecord>, StoreError> {
        match self.get(SIGNAL_RECORD_KEM_PREKEY, &id_key(id))? {
            Some(b) => Ok(Some(KemPreKeyRecord::from_secret_bytes(&b)?)),
            None => Ok(None),
        }
    }
    fn store_kem_prekey(&mut self, record: &KemPreKeyRecord) -> Result<(), StoreError> {
        self.put(
            SIGNAL_RECORD_KEM_PREKEY,
            &id_key(record.id()),
            &record.to_secret_bytes(),
        )
    }
    fn remove_kem_prekey(&mut self, id: PreKeyId) -> Result<(), StoreError> {
        self.del(SIGNAL_RECORD_KEM_PREKEY, &id_key(id))?;
        for k in self.keys(SIGNAL_RECORD_LAST_RESORT_USE)? {
            if k.starts_with(&id_key(id)) {
                self.del(SIGNAL_RECORD_LAST_RESORT_USE, &k)?;
            }
        }
        Ok(())
    }
    fn kem_prekey_ids(&self) -> Result<Vec<PreKeyId>, StoreError> {
        self.ids(SIGNAL_RECORD_KEM_PREKEY)
    }
    fn last_resort_base_key_seen(
        &self,
        id: PreKeyId,
        base_key: &DhPublicKey,
    ) -> Result<bool, StoreError> {
        let mut k = id_key(id).to_vec();
        k.extend_from_slice(&base_key.encode());
        Ok(self.get(SIGNAL_RECORD_LAST_RESORT_USE, &k)?.is_some())
    }
}

impl SessionStore for CallbackBackend {
    fn load_session(&self, address: &Address) -> Result<Option<SessionRecord>, StoreError> {
        match self.get(SIGNAL_RECORD_SESSION, &address_key(address))? {
            Some(b) => Ok(Some(SessionRecord::decode(&b)?)),
            None => Ok(None),
        }
    }
    fn session_devices(&self, user: &str) -> Result<Vec<u32>, StoreError> {
        let mut devices: Vec<u32> = self
            .keys(SIGNAL_RECORD_SESSION)?
            .iter()
            .filter_map(|k| decode_address(k))
            .filter(|a| a.user() == user)
            .map(|a| a.device())
            .collect();
        devices.sort_unstable();
        Ok(devices)
    }
    fn delete_session(&mut self, address: &Address) -> Result<(), StoreError> {
        self.del(SIGNAL_RECORD_SESSION, &address_key(address))
    }
}

impl ProtocolStore for CallbackBackend {
    fn commit(&mut self, commit: SessionCommit) -> Result<(), StoreError> {
        self.tx(self.begin, "begin")?;
        match self.apply(&commit) {
            Ok(()) => match self.tx(self.commit, "commit") {
                Ok(()) => Ok(()),
                Err(e) => {
                    // Best effort: the commit already failed; report that error.
                    let _ = self.tx(self.rollback, "rollback");
                    Err(e)
                }
            },
            Err(e) => {
                let _ = self.tx(self.rollback, "rollback");
                Err(e)
            }
        }
    }
}

impl SenderKeyStore for CallbackBackend {
    fn load_sender_key(
        &self,
        group: &GroupId,
        sender: &Address,
    ) -> Result<Option<Cow<'_, SenderKeyRecord>>, StoreError> {
        match self.get(SIGNAL_RECORD_SENDER_KEY, &sender_key(group, sender))? {
            Some(b) => Ok(Some(Cow::Owned(SenderKeyRecord::decode(&b)?))),
            None => Ok(None),
        }
    }
    fn store_sender_key(
        &mut self,
        group: &GroupId,
        sender: &Address,
        record: SenderKeyRecord,
    ) -> Result<(), StoreError> {
        self.put(
            SIGNAL_RECORD_SENDER_KEY,
            &sender_key(group, sender),
            &record.encode(),
        )
    }
    fn delete_sender_key(&mut self, group: &GroupId, sender: &Address) -> Result<(), StoreError> {
        self.del(SIGNAL_RECORD_SENDER_KEY, &sender_key(group, sender))
    }
    fn sender_key_senders(&self, group: &GroupId) -> Result<Vec<Address>, StoreError> {
        let mut senders: Vec<Address> = self
            .keys(SIGNAL_RECORD_SENDER_KEY)?
            .iter()
            .filter(|k| k.starts_with(group.as_bytes()))
            .filter_map(|k| decode_address(k.get(GROUP_ID_LEN..)?))
            .collect();
        senders.sort_unstable();
        Ok(senders)
    }
}

impl Backend for CallbackBackend {}

/// Creates a store whose records live in the application's own database, reached
/// through `callbacks` (copied; `callbacks->ctx` must outlive the store). The local
/// identity and registration id are given here (persist them yourself, e.g. with
/// `signal_identity_serialize`). Every callback must be non-null.
///
/// Writes outside a session commit (storing prekeys, sender keys) are single `store` /
/// `remove` calls, not bracketed by `begin` / `commit`.
///
/// # Safety
/// `callbacks` null or readable; its function pointers valid for the store's lifetime;
/// `identity` null or live; `out_store` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_store_new_callbacks(
    callbacks: *const SignalStoreCallbacks,
    identity: *const SignalIdentity,
    registration_id: u32,
    out_store: *mut *mut SignalStore,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract.
        let cb = unsafe { handle(callbacks, "callbacks") }?;
        // SAFETY: forwarded contract.
        let identity = unsafe { handle(identity, "identity") }?;
        // SAFETY: forwarded contract.
        let out_store = unsafe { out(out_store, "out_store") }?;
        let missing = |name: &str| crate::buffer::null(&format!("callbacks->{name}"));
        let backend = CallbackBackend {
            ctx: cb.ctx,
            load: cb.load.ok_or_else(|| missing("load"))?,
            store: cb.store.ok_or_else(|| missing("store"))?,
            remove: cb.remove.ok_or_else(|| missing("remove"))?,
            list: cb.list.ok_or_else(|| missing("list"))?,
            begin: cb.begin.ok_or_else(|| missing("begin"))?,
            commit: cb.commit.ok_or_else(|| missing("commit"))?,
            rollback: cb.rollback.ok_or_else(|| missing("rollback"))?,
            identity: identity.key.clone(),
            registration_id,
        };
        *out_store = Box::into_raw(Box::new(SignalStore::new(Box::new(backend))));
        Ok(())
    })
}

/// From a `load` callback: copies `len` bytes at `data` in as the value found.
///
/// # Safety
/// `slot` must be the slot passed to the running callback; `data` null or readable
/// for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_slot_set(
    slot: *mut SignalSlot,
    data: *const u8,
    len: usize,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract.
        let slot = unsafe { out(slot, "slot") }?;
        // SAFETY: forwarded contract.
        let data = unsafe { bytes(data, len, "data") }?;
        slot.value = Some(Zeroizing::new(data.to_vec()));
        Ok(())
    })
}

/// From a `list` callback: adds one key (copied).
///
/// # Safety
/// As for [`signal_slot_set`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_slot_push_key(
    slot: *mut SignalSlot,
    key: *const u8,
    len: usize,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract.
        let slot = unsafe { out(slot, "slot") }?;
        // SAFETY: forwarded contract.
        let key = unsafe { bytes(key, len, "key") }?;
        slot.keys.push(key.to_vec());
        Ok(())
    })
}
