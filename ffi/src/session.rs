//! Prekeys and bundles, 1:1 sessions, and multi-device fan-out.

use std::ffi::{CString, c_char};

use signal_core::Address;
use signal_core::fanout::{self, DeviceInfo, FanOut, UserDevices};
use signal_core::prekey::{KemPreKeyRecord, OneTimePreKeyRecord, PreKeyBundle, SignedPreKeyRecord};
use signal_core::session;

use crate::buffer::{SignalBuffer, address, bytes, handle, out, string};
use crate::error::{FfiError, SignalErrorCode, guard};
use crate::store::SignalStore;

/// Generates and stores a signed prekey, a one-time X25519 prekey and a one-time
/// ML-KEM-1024 prekey with the given ids (created at `now`, seconds since the Unix
/// epoch) and returns the encoded prekey bundle to upload to the relay, which hands
/// it to a peer who wants to start a session (see
/// [`signal_session_process_bundle`]). An existing prekey with the same id is
/// replaced.
///
/// # Safety
/// `store` must be null or live; `out_bundle` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_store_generate_prekeys(
    store: *const SignalStore,
    signed_prekey_id: u32,
    one_time_prekey_id: u32,
    kem_prekey_id: u32,
    now: u64,
    out_bundle: *mut SignalBuffer,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract.
        let store = unsafe { handle(store, "store") }?;
        // SAFETY: forwarded contract.
        let out_bundle = unsafe { out(out_bundle, "out_bundle") }?;
        let mut s = store.lock()?;
        let identity = s.local_identity()?;
        let registration_id = s.local_registration_id()?;
        let spk = SignedPreKeyRecord::generate(&identity, registration_id, signed_prekey_id, now)?;
        let opk = OneTimePreKeyRecord::generate(&identity, one_time_prekey_id, now)?;
        let kem = KemPreKeyRecord::generate(&identity, kem_prekey_id, now, false)?;
        s.store_signed_prekey(&spk)?;
        s.store_prekey(&opk)?;
        s.store_kem_prekey(&kem)?;
        let bundle = PreKeyBundle {
            registration_id,
            identity: *identity.public(),
            signed_prekey: spk.public().clone(),
            one_time_prekey: Some(opk.public().clone()),
            kem_prekey: kem.public().clone(),
        };
        *out_bundle = SignalBuffer::from_vec(bundle.encode());
        Ok(())
    })
}

/// Verifies a peer's encoded prekey bundle (every signature, under the bundle's
/// identity) and starts a session with device (`user`, `device`) by PQXDH. Messages
/// encrypted afterwards are pre-key messages until the peer replies. Fails with
/// `SIGNAL_ERR_UNTRUSTED_IDENTITY` if a different identity is recorded for the device.
///
/// # Safety
/// `store` null or live; `user` null or a NUL-terminated string; `bundle` null or
/// readable for `bundle_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_session_process_bundle(
    store: *const SignalStore,
    user: *const c_char,
    device: u32,
    bundle: *const u8,
    bundle_len: usize,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract.
        let store = unsafe { handle(store, "store") }?;
        // SAFETY: forwarded contract.
        let remote = unsafe { address(user, device, "user") }?;
        // SAFETY: forwarded contract.
        let bundle = unsafe { bytes(bundle, bundle_len, "bundle") }?;
        let verified = PreKeyBundle::decode(bundle)?.verify()?;
        session::initiate(&mut **store.lock()?, &remote, &verified)?;
        Ok(())
    })
}

/// Encrypts `plaintext` for device (`user`, `device`) and stores the advanced session
/// before returning the ciphertext.
///
/// # Safety
/// `store` null or live; `user` null or a C string; `plaintext` null or readable for
/// `plaintext_len` bytes; `out_ciphertext` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_session_encrypt(
    store: *const SignalStore,
    user: *const c_char,
    device: u32,
    plaintext: *const u8,
    plaintext_len: usize,
    out_ciphertext: *mut SignalBuffer,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract.
        let store = unsafe { handle(store, "store") }?;
        // SAFETY: forwarded contract.
        let remote = unsafe { address(user, device, "user") }?;
        // SAFETY: forwarded contract.
        let plaintext = unsafe { bytes(plaintext, plaintext_len, "plaintext") }?;
        // SAFETY: forwarded contract.
        let out_ciphertext = unsafe { out(out_ciphertext, "out_ciphertext") }?;
        let ciphertext = session::encrypt(&mut **store.lock()?, &remote, plaintext)?;
        *out_ciphertext = SignalBuffer::from_vec(ciphertext);
        Ok(())
    })
}

/// Decrypts a message (pre-key or regular) from device (`user`, `device`) and stores
/// the new session state (and consumes the prekeys a pre-key message used) before
/// returning the plaintext. A rejected message changes nothing.
///
/// # Safety
/// As for [`signal_session_encrypt`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_session_decrypt(
    store: *const SignalStore,
    user: *const c_char,
    device: u32,
    ciphertext: *const u8,
    ciphertext_len: usize,
    out_plaintext: *mut SignalBuffer,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract.
        let store = unsafe { handle(store, "store") }?;
        // SAFETY: forwarded contract.
        let remote = unsafe { address(user, device, "user") }?;
        // SAFETY: forwarded contract.
        let ciphertext = unsafe { bytes(ciphertext, ciphertext_len, "ciphertext") }?;
        // SAFETY: forwarded contract.
        let out_plaintext = unsafe { out(out_plaintext, "out_plaintext") }?;
        let plaintext = session::decrypt_and_commit(&mut **store.lock()?, &remote, ciphertext)?;
        *out_plaintext = SignalBuffer::copy_of(&plaintext);
        Ok(())
    })
}

/// The identity key (33 bytes) recorded for device (`user`, `device`);
/// `SIGNAL_ERR_NOT_FOUND` if none is.
///
/// # Safety
/// `store` null or live; `user` null or a C string; `out_public` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_store_remote_identity(
    store: *const SignalStore,
    user: *const c_char,
    device: u32,
    out_public: *mut SignalBuffer,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract.
        let store = unsafe { handle(store, "store") }?;
        // SAFETY: forwarded contract.
        let remote = unsafe { address(user, device, "user") }?;
        // SAFETY: forwarded contract.
        let out_public = unsafe { out(out_public, "out_public") }?;
        let key = store.lock()?.remote_identity(&remote)?.ok_or_else(|| {
            FfiError::new(
                SignalErrorCode::SIGNAL_ERR_NOT_FOUND,
                format!("no identity recorded for {remote}"),
            )
        })?;
        *out_public = SignalBuffer::copy_of(&key.encode());
        Ok(())
    })
}

/// One device as the relay lists it: a user id, a device id and the registration id
/// the device registered with.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SignalDevice {
    /// The user id (NUL-terminated UTF-8).
    pub user: *const c_char,
    /// The device id.
    pub device: u32,
    /// The device's registration id.
    pub registration_id: u32,
}

/// Which list of a [`SignalFanOut`] to read.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalFanOutList {
    /// Devices that got a ciphertext (read it with [`signal_fanout_ciphertext`]).
    SIGNAL_FANOUT_MESSAGES = 0,
    /// Listed devices without a usable session: fetch their bundles.
    SIGNAL_FANOUT_MISSING = 1,
    /// Devices whose session was archived because they re-registered.
    SIGNAL_FANOUT_STALE = 2,
    /// Devices no longer listed whose session was archived.
    SIGNAL_FANOUT_REMOVED = 3,
    /// Devices for which encryption failed (e.g. an untrusted identity).
    SIGNAL_FANOUT_FAILED = 4,
}

/// The result of a fan-out: per-device ciphertexts and the devices that need
/// attention. Opaque; free with [`signal_fanout_free`]. Immutable: may be read from
/// several threads.
pub struct SignalFanOut {
    lists: [Vec<(CString, u32)>; 5],
    /// (registration id, ciphertext) per entry of the messages list.
    ciphertexts: Vec<(u32, Vec<u8>)>,
}

fn c_addresses(
    addresses: impl IntoIterator<Item = Address>,
) -> Result<Vec<(CString, u32)>, FfiError> {
    addresses
        .into_iter()
        .map(|a| {
            CString::new(a.user())
                .map(|u| (u, a.device()))
                .map_err(|_| {
                    FfiError::new(
                        SignalErrorCode::SIGNAL_ERR_INVALID_ARGUMENT,
                        "user id contains NUL",
                    )
                })
        })
        .collect()
}

impl SignalFanOut {
    pub(crate) fn new(f: FanOut) -> Result<Self, FfiError> {
        let (addresses, ciphertexts): (Vec<_>, Vec<_>) = f
            .messages
            .into_iter()
            .map(|m| (m.address, (m.registration_id, m.ciphertext)))
            .unzip();
        Ok(Self {
            lists: [
                c_addresses(addresses)?,
                c_addresses(f.missing_sessions)?,
                c_addresses(f.stale)?,
                c_addresses(f.removed)?,
                c_addresses(f.failed.into_iter().map(|(a, _)| a))?,
            ],
            ciphertexts,
        })
    }
}

/// Builds the relay's device lists, grouped by user in order of first appearance.
///
/// # Safety
/// `devices` null or readable for `count` entries, each with a valid C string.
pub(crate) unsafe fn user_devices(
    devices: *const SignalDevice,
    count: usize,
) -> Result<Vec<UserDevices>, FfiError> {
    let slice: &[SignalDevice] = if count == 0 {
        &[]
    } else if devices.is_null() {
        return Err(crate::buffer::null("devices"));
    } else {
        // SAFETY: non-null and the caller guarantees `count` readable entries.
        unsafe { std::slice::from_raw_parts(devices, count) }
    };
    let mut users: Vec<UserDevices> = Vec::new();
    for d in slice {
        // SAFETY: forwarded contract on each entry's `user`.
        let user = unsafe { string(d.user, "devices[].user") }?;
        let info = DeviceInfo {
            device: d.device,
            registration_id: d.registration_id,
            identity: None,
        };
        match users.iter_mut().find(|u| u.user == user) {
            Some(u) => u.devices.push(info),
            None => users.push(UserDevices {
                user: user.to_owned(),
                devices: vec![info],
            }),
        }
    }
    Ok(users)
}

/// Encrypts `plaintext` for every listed device except this one (`own_user`,
/// `own_device`), after reconciling stored sessions with the list: sessions of
/// devices of a listed user that are no longer listed, or that re-registered, are
/// archived. List every current device of each recipient user, and this user's own
/// other devices. Device-specific failures are reported in the result, not as an
/// error.
///
/// # Safety
/// `store` null or live; `own_user` null or a C string; `devices` null or readable for
/// `device_count` entries; `plaintext` null or readable; `out_fanout` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_fanout_encrypt(
    store: *const SignalStore,
    own_user: *const c_char,
    own_device: u32,
    devices: *const SignalDevice,
    device_count: usize,
    plaintext: *const u8,
    plaintext_len: usize,
    out_fanout: *mut *mut SignalFanOut,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract.
        let store = unsafe { handle(store, "store") }?;
        // SAFETY: forwarded contract.
        let own = unsafe { address(own_user, own_device, "own_user") }?;
        // SAFETY: forwarded contract.
        let users = unsafe { user_devices(devices, device_count) }?;
        // SAFETY: forwarded contract.
        let plaintext = unsafe { bytes(plaintext, plaintext_len, "plaintext") }?;
        // SAFETY: forwarded contract.
        let out_fanout = unsafe { out(out_fanout, "out_fanout") }?;
        let result = fanout::encrypt_for_users(&mut **store.lock()?, &own, &users, plaintext)?;
        *out_fanout = Box::into_raw(Box::new(SignalFanOut::new(result)?));
        Ok(())
    })
}

/// Number of entries in one list (a `SignalFanOutList` value) of a fan-out result.
///
/// # Safety
/// `fanout` null or live; `out_count` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_fanout_count(
    fanout: *const SignalFanOut,
    list: u32,
    out_count: *mut usize,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract.
        let fanout = unsafe { handle(fanout, "fanout") }?;
        // SAFETY: forwarded contract.
        let out_count = unsafe { out(out_count, "out_count") }?;
        *out_count = fanout.lists[list_index(list)?].len();
        Ok(())
    })
}

/// The index into `SignalFanOut::lists` of a `SignalFanOutList` value.
fn list_index(list: u32) -> Result<usize, FfiError> {
    let i = usize::try_from(list).unwrap_or(usize::MAX);
    if i < 5 {
        Ok(i)
    } else {
        Err(FfiError::new(
            SignalErrorCode::SIGNAL_ERR_INVALID_ARGUMENT,
            format!("{list} is not a SignalFanOutList value"),
        ))
    }
}

fn index_error(index: usize, len: usize) -> FfiError {
    FfiError::new(
        SignalErrorCode::SIGNAL_ERR_INVALID_ARGUMENT,
        format!("index {index} out of range (list has {len} entries)"),
    )
}

/// The device of entry `index` of `list`. `*out_user` is borrowed from the fan-out
/// result: valid until [`signal_fanout_free`].
///
/// # Safety
/// `fanout` null or live; the out pointers null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_fanout_address(
    fanout: *const SignalFanOut,
    list: u32,
    index: usize,
    out_user: *mut *const c_char,
    out_device: *mut u32,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract.
        let fanout = unsafe { handle(fanout, "fanout") }?;
        // SAFETY: forwarded contract.
        let out_user = unsafe { out(out_user, "out_user") }?;
        // SAFETY: forwarded contract.
        let out_device = unsafe { out(out_device, "out_device") }?;
        let entries = &fanout.lists[list_index(list)?];
        let (user, device) = entries
            .get(index)
            .ok_or_else(|| index_error(index, entries.len()))?;
        *out_user = user.as_ptr();
        *out_device = *device;
        Ok(())
    })
}

/// The ciphertext of entry `index` of the messages list and the registration id to
/// send with it. `*out_data` is borrowed: valid until [`signal_fanout_free`].
///
/// # Safety
/// `fanout` null or live; the out pointers null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_fanout_ciphertext(
    fanout: *const SignalFanOut,
    index: usize,
    out_registration_id: *mut u32,
    out_data: *mut *const u8,
    out_len: *mut usize,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract.
        let fanout = unsafe { handle(fanout, "fanout") }?;
        // SAFETY: forwarded contract.
        let out_registration_id = unsafe { out(out_registration_id, "out_registration_id") }?;
        // SAFETY: forwarded contract.
        let out_data = unsafe { out(out_data, "out_data") }?;
        // SAFETY: forwarded contract.
        let out_len = unsafe { out(out_len, "out_len") }?;
        let (registration_id, ciphertext) = fanout
            .ciphertexts
            .get(index)
            .ok_or_else(|| index_error(index, fanout.ciphertexts.len()))?;
        *out_registration_id = *registration_id;
        *out_data = ciphertext.as_ptr();
        *out_len = ciphertext.len();
        Ok(())
    })
}

/// Frees a fan-out result. Null is ignored.
///
/// # Safety
/// `fanout` must be null or a handle from this library not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_fanout_free(fanout: *mut SignalFanOut) {
    if !fanout.is_null() {
        // SAFETY: a non-null handle came from `Box::into_raw` and is freed once.
        drop(unsafe { Box::from_raw(fanout) });
    }
}
