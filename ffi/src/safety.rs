//! Safety numbers: the 60-digit number and the scannable code two users compare.

use std::ffi::c_char;

use signal_core::safety_number::SCANNABLE_LEN;
use signal_core::{IdentityKey, SafetyNumber};

use crate::buffer::{SignalBuffer, bytes, out, string};
use crate::error::{FfiError, SignalErrorCode, guard};

/// Length of the numeric safety number (ASCII digits, no NUL).
pub const SIGNAL_SAFETY_NUMBER_DIGITS: usize = 60;
/// Length of the scannable safety-number code.
pub const SIGNAL_SAFETY_NUMBER_SCANNABLE_LEN: usize = 65;
const _: () = assert!(SIGNAL_SAFETY_NUMBER_SCANNABLE_LEN == SCANNABLE_LEN);

/// # Safety
/// Pointers as documented on the exported functions.
unsafe fn compute(
    local_user: *const c_char,
    local_identity: *const u8,
    local_identity_len: usize,
    remote_user: *const c_char,
    remote_identity: *const u8,
    remote_identity_len: usize,
) -> Result<SafetyNumber, FfiError> {
    // SAFETY: forwarded contract.
    let local_user = unsafe { string(local_user, "local_user") }?;
    // SAFETY: forwarded contract.
    let remote_user = unsafe { string(remote_user, "remote_user") }?;
    // SAFETY: forwarded contract.
    let local = unsafe { bytes(local_identity, local_identity_len, "local_identity") }?;
    // SAFETY: forwarded contract.
    let remote = unsafe { bytes(remote_identity, remote_identity_len, "remote_identity") }?;
    if local_identity.is_null() || remote_identity.is_null() {
        return Err(crate::buffer::null("identity key"));
    }
    Ok(SafetyNumber::new(
        local_user,
        &IdentityKey::decode(local)?,
        remote_user,
        &IdentityKey::decode(remote)?,
    ))
}

/// Computes the safety number between (`local_user`, local public identity key) and
/// (`remote_user`, remote public identity key) — 33-byte keys as returned by
/// `signal_identity_public_key` / `signal_store_remote_identity`. Both sides compute
/// the same 60 digits (`out_numeric`, ASCII, no NUL) and each its own 65-byte code to
/// show as a QR code (`out_scannable`). Either out pointer may be null if unwanted.
///
/// # Safety
/// Strings null or NUL-terminated; keys null or readable for their lengths; out
/// pointers null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_safety_number(
    local_user: *const c_char,
    local_identity: *const u8,
    local_identity_len: usize,
    remote_user: *const c_char,
    remote_identity: *const u8,
    remote_identity_len: usize,
    out_numeric: *mut SignalBuffer,
    out_scannable: *mut SignalBuffer,
) -> SignalErrorCode {
    guard(|| {
        if out_numeric.is_null() && out_scannable.is_null() {
            return Err(crate::buffer::null("out_numeric and out_scannable"));
        }
        // SAFETY: forwarded contract.
        let number = unsafe {
            compute(
                local_user,
                local_identity,
                local_identity_len,
                remote_user,
                remote_identity,
                remote_identity_len,
            )
        }?;
        if !out_numeric.is_null() {
            // SAFETY: forwarded contract; checked non-null.
            let o = unsafe { out(out_numeric, "out_numeric") }?;
            *o = SignalBuffer::copy_of(number.numeric().as_bytes());
        }
        if !out_scannable.is_null() {
            // SAFETY: forwarded contract; checked non-null.
            let o = unsafe { out(out_scannable, "out_scannable") }?;
            *o = SignalBuffer::copy_of(number.scannable());
        }
        Ok(())
    })
}

/// Compares, in constant time, the code scanned from the peer's screen with ours
/// (same arguments as [`signal_safety_number`]); writes 1 to `out_match` if they
/// match, 0 otherwise. A malformed scanned code is a mismatch, not an error.
///
/// # Safety
/// As for [`signal_safety_number`], with `scanned` null or readable for `scanned_len`
/// bytes and `out_match` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_safety_number_verify_scanned(
    local_user: *const c_char,
    local_identity: *const u8,
    local_identity_len: usize,
    remote_user: *const c_char,
    remote_identity: *const u8,
    remote_identity_len: usize,
    scanned: *const u8,
    scanned_len: usize,
    out_match: *mut u8,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract.
        let scanned = unsafe { bytes(scanned, scanned_len, "scanned") }?;
        // SAFETY: forwarded contract.
        let out_match = unsafe { out(out_match, "out_match") }?;
        // SAFETY: forwarded contract.
        let number = unsafe {
            compute(
                local_user,
                local_identity,
                local_identity_len,
                remote_user,
                remote_identity,
                remote_identity_len,
            )
        }?;
        *out_match = u8::from(number.matches_scanned(scanned));
        Ok(())
    })
}
