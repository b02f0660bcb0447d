//! Groups with sender keys: distribute this device's chain, encrypt, decrypt, and the
//! member-removal rotation.

use std::ffi::c_char;

use signal_core::group::{self, GROUP_ID_LEN, GroupId, SenderKeyDistributionMessage};

use crate::buffer::{SignalBuffer, address, array, bytes, handle, out, string};
use crate::error::{SignalErrorCode, guard};
use crate::session::{SignalDevice, SignalFanOut, user_devices};
use crate::store::SignalStore;

/// Length of a group id in bytes.
pub const SIGNAL_GROUP_ID_LEN: usize = 32;
const _: () = assert!(SIGNAL_GROUP_ID_LEN == GROUP_ID_LEN);

/// Writes a new random group id (`SIGNAL_GROUP_ID_LEN` bytes) to `out_group_id`.
///
/// # Safety
/// `out_group_id` null or writable for `group_id_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_group_id_generate(
    out_group_id: *mut u8,
    group_id_len: usize,
) -> SignalErrorCode {
    guard(|| {
        if out_group_id.is_null() {
            return Err(crate::buffer::null("out_group_id"));
        }
        if group_id_len != GROUP_ID_LEN {
            return Err(crate::error::FfiError::new(
                SignalErrorCode::SIGNAL_ERR_INVALID_ARGUMENT,
                format!("out_group_id: expected {GROUP_ID_LEN} bytes, got {group_id_len}"),
            ));
        }
        let id = GroupId::generate()?;
        // SAFETY: `out_group_id` is non-null and the caller guarantees GROUP_ID_LEN
        // writable bytes (checked against `group_id_len`); the regions cannot overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(id.as_bytes().as_ptr(), out_group_id, GROUP_ID_LEN)
        };
        Ok(())
    })
}

/// # Safety
/// `p` null or readable for `len` bytes.
unsafe fn group_id(p: *const u8, len: usize) -> Result<GroupId, crate::error::FfiError> {
    // SAFETY: forwarded contract.
    Ok(GroupId::from_bytes(unsafe {
        array::<GROUP_ID_LEN>(p, len, "group_id")
    }?))
}

/// Creates this device's sending chain in the group (if there is none) and sends its
/// distribution message over the 1:1 sessions to every listed device (members and
/// this user's other devices), except this one. Returns the per-device ciphertexts.
/// Adding a member is the same call with the new member's devices.
///
/// # Safety
/// `store` null or live; `group_id` null or readable for `group_id_len` bytes;
/// `own_user` null or a C string; `devices` null or readable for `device_count`
/// entries; `out_fanout` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_group_distribute(
    store: *const SignalStore,
    group_id: *const u8,
    group_id_len: usize,
    own_user: *const c_char,
    own_device: u32,
    devices: *const SignalDevice,
    device_count: usize,
    out_fanout: *mut *mut SignalFanOut,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract.
        let store = unsafe { handle(store, "store") }?;
        // SAFETY: forwarded contract.
        let group = unsafe { self::group_id(group_id, group_id_len) }?;
        // SAFETY: forwarded contract.
        let own = unsafe { address(own_user, own_device, "own_user") }?;
        // SAFETY: forwarded contract.
        let users = unsafe { user_devices(devices, device_count) }?;
        // SAFETY: forwarded contract.
        let out_fanout = unsafe { out(out_fanout, "out_fanout") }?;
        let result = group::distribute(&mut **store.lock()?, &group, &own, &users)?;
        *out_fanout = Box::into_raw(Box::new(SignalFanOut::new(result)?));
        Ok(())
    })
}

/// Records a sender-key distribution message that device (`sender_user`,
/// `sender_device`) sent. It must be the plaintext of a message decrypted with
/// [`crate::session::signal_session_decrypt`] from that same device: the 1:1 session
/// is what authenticates it. A distribution for this device's own chain, or one that
/// conflicts with a chain already held, is refused with `SIGNAL_ERR_PROTOCOL`.
///
/// # Safety
/// `store` null or live; `sender_user` null or a C string; `distribution` null or
/// readable for `distribution_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_group_process_distribution(
    store: *const SignalStore,
    sender_user: *const c_char,
    sender_device: u32,
    distribution: *const u8,
    distribution_len: usize,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract.
        let store = unsafe { handle(store, "store") }?;
        // SAFETY: forwarded contract.
        let sender = unsafe { address(sender_user, sender_device, "sender_user") }?;
        // SAFETY: forwarded contract.
        let distribution = unsafe { bytes(distribution, distribution_len, "distribution") }?;
        let message = SenderKeyDistributionMessage::decode(distribution)?;
        group::process_distribution(&mut **store.lock()?, &sender, &message)?;
        Ok(())
    })
}

/// Encrypts `plaintext` to the group on this device's sending chain (one ciphertext
/// for every member). Fails with `SIGNAL_ERR_NO_SENDER_KEY` before
/// [`signal_group_distribute`].
///
/// # Safety
/// As for [`signal_group_distribute`], with `plaintext` readable for `plaintext_len`
/// bytes and `out_ciphertext` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_group_encrypt(
    store: *const SignalStore,
    group_id: *const u8,
    group_id_len: usize,
    own_user: *const c_char,
    own_device: u32,
    plaintext: *const u8,
    plaintext_len: usize,
    out_ciphertext: *mut SignalBuffer,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract.
        let store = unsafe { handle(store, "store") }?;
        // SAFETY: forwarded contract.
        let group = unsafe { self::group_id(group_id, group_id_len) }?;
        // SAFETY: forwarded contract.
        let own = unsafe { address(own_user, own_device, "own_user") }?;
        // SAFETY: forwarded contract.
        let plaintext = unsafe { bytes(plaintext, plaintext_len, "plaintext") }?;
        // SAFETY: forwarded contract.
        let out_ciphertext = unsafe { out(out_ciphertext, "out_ciphertext") }?;
        let ciphertext = group::encrypt(&mut **store.lock()?, &group, &own, plaintext)?;
        *out_ciphertext = SignalBuffer::from_vec(ciphertext);
        Ok(())
    })
}

/// Decrypts a group message from device (`sender_user`, `sender_device`) and stores
/// the advanced chain before returning the plaintext. A rejected message changes
/// nothing; a repeated one fails with `SIGNAL_ERR_DUPLICATE_MESSAGE`.
///
/// # Safety
/// As for [`signal_group_encrypt`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_group_decrypt(
    store: *const SignalStore,
    group_id: *const u8,
    group_id_len: usize,
    sender_user: *const c_char,
    sender_device: u32,
    ciphertext: *const u8,
    ciphertext_len: usize,
    out_plaintext: *mut SignalBuffer,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract.
        let store = unsafe { handle(store, "store") }?;
        // SAFETY: forwarded contract.
        let group = unsafe { self::group_id(group_id, group_id_len) }?;
        // SAFETY: forwarded contract.
        let sender = unsafe { address(sender_user, sender_device, "sender_user") }?;
        // SAFETY: forwarded contract.
        let ciphertext = unsafe { bytes(ciphertext, ciphertext_len, "ciphertext") }?;
        // SAFETY: forwarded contract.
        let out_plaintext = unsafe { out(out_plaintext, "out_plaintext") }?;
        let plaintext =
            group::decrypt_and_commit(&mut **store.lock()?, &group, &sender, ciphertext)?;
        *out_plaintext = SignalBuffer::copy_of(&plaintext);
        Ok(())
    })
}

/// A member left or was removed: deletes every sender key of `removed_user`'s devices
/// in the group, replaces this device's sending chain with a fresh one, and sends the
/// new chain to the listed remaining devices only (entries of `removed_user` are
/// ignored). Every remaining member's device must make this call. If `removed_user` is
/// this device's own user, every sender key of the group is deleted and nothing is
/// sent.
///
/// # Safety
/// As for [`signal_group_distribute`], with `removed_user` a C string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_group_remove_member(
    store: *const SignalStore,
    group_id: *const u8,
    group_id_len: usize,
    own_user: *const c_char,
    own_device: u32,
    removed_user: *const c_char,
    remaining: *const SignalDevice,
    remaining_count: usize,
    out_fanout: *mut *mut SignalFanOut,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract.
        let store = unsafe { handle(store, "store") }?;
        // SAFETY: forwarded contract.
        let group = unsafe { self::group_id(group_id, group_id_len) }?;
        // SAFETY: forwarded contract.
        let own = unsafe { address(own_user, own_device, "own_user") }?;
        // SAFETY: forwarded contract.
        let removed = unsafe { string(removed_user, "removed_user") }?;
        // SAFETY: forwarded contract.
        let users = unsafe { user_devices(remaining, remaining_count) }?;
        // SAFETY: forwarded contract.
        let out_fanout = unsafe { out(out_fanout, "out_fanout") }?;
        let result = group::remove_member(&mut **store.lock()?, &group, &own, removed, &users)?;
        *out_fanout = Box::into_raw(Box::new(SignalFanOut::new(result)?));
        Ok(())
    })
}
