//! Buffers handed to the caller, and the checked conversions of raw C arguments.

use std::ffi::{CStr, c_char};

use signal_core::Address;
use zeroize::Zeroize;

use crate::error::{FfiError, SignalErrorCode};

/// Bytes owned by the library and lent to the caller: `data` points at `len` bytes.
/// Free it exactly once with [`signal_buffer_free`] (which zeroes it first: buffers
/// may hold plaintext or secret keys). An empty buffer has `data == NULL, len == 0`.
#[repr(C)]
#[derive(Debug)]
pub struct SignalBuffer {
    /// The bytes, or null if `len` is 0.
    pub data: *mut u8,
    /// Number of bytes.
    pub len: usize,
}

impl SignalBuffer {
    /// Moves `bytes` into a buffer the caller owns.
    pub(crate) fn from_vec(bytes: Vec<u8>) -> Self {
        if bytes.is_empty() {
            return Self::empty();
        }
        let boxed: Box<[u8]> = bytes.into_boxed_slice();
        let len = boxed.len();
        let data = Box::into_raw(boxed).cast::<u8>();
        Self { data, len }
    }

    /// Copies `bytes` into a buffer the caller owns.
    pub(crate) fn copy_of(bytes: &[u8]) -> Self {
        Self::from_vec(bytes.to_vec())
    }

    /// A buffer with no bytes.
    pub(crate) const fn empty() -> Self {
        Self {
            data: std::ptr::null_mut(),
            len: 0,
        }
    }
}

/// Frees (after zeroing) a buffer the library returned. Freeing an empty buffer
/// (`data == NULL`) does nothing. Passing a buffer not returned by this library, or
/// freeing one twice, is undefined behaviour.
#[unsafe(no_mangle)]
pub extern "C" fn signal_buffer_free(buffer: SignalBuffer) {
    if buffer.data.is_null() {
        return;
    }
    let slice = std::ptr::slice_from_raw_parts_mut(buffer.data, buffer.len);
    // SAFETY: a non-null `data` with `len` came from `SignalBuffer::from_vec`, i.e. from
    // `Box::<[u8]>::into_raw` of exactly `len` bytes, and the caller frees it once.
    let mut boxed = unsafe { Box::from_raw(slice) };
    boxed.zeroize();
}

/// A required out-parameter.
///
/// # Safety
/// `p` must be null or valid for writes of a `T` for the duration of the call.
pub(crate) unsafe fn out<'a, T>(p: *mut T, name: &str) -> Result<&'a mut T, FfiError> {
    // SAFETY: the caller guarantees `p` is null or valid for writes; null is refused.
    unsafe { p.as_mut() }.ok_or_else(|| null(name))
}

/// A required input referenced by pointer (a handle).
///
/// # Safety
/// `p` must be null or point at a live `T` for the duration of the call.
pub(crate) unsafe fn handle<'a, T>(p: *const T, name: &str) -> Result<&'a T, FfiError> {
    // SAFETY: the caller guarantees `p` is null or points at a live `T`; null is refused.
    unsafe { p.as_ref() }.ok_or_else(|| null(name))
}

/// A (pointer, length) input. A null pointer is accepted only with length 0.
///
/// # Safety
/// A non-null `p` must be valid for reads of `len` bytes for the duration of the call.
pub(crate) unsafe fn bytes<'a>(p: *const u8, len: usize, name: &str) -> Result<&'a [u8], FfiError> {
    if p.is_null() {
        return if len == 0 { Ok(&[]) } else { Err(null(name)) };
    }
    if len > isize::MAX as usize {
        return Err(FfiError::new(
            SignalErrorCode::SIGNAL_ERR_INVALID_ARGUMENT,
            format!("{name}: length {len} is too large"),
        ));
    }
    // SAFETY: `p` is non-null and the caller guarantees it is valid for `len` bytes;
    // `len` fits in `isize`.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// A fixed-length byte input, e.g. a 32-byte key.
///
/// # Safety
/// As for [`bytes`].
pub(crate) unsafe fn array<const N: usize>(
    p: *const u8,
    len: usize,
    name: &str,
) -> Result<[u8; N], FfiError> {
    // SAFETY: forwarded contract.
    let b = unsafe { bytes(p, len, name) }?;
    if p.is_null() {
        return Err(null(name));
    }
    b.try_into().map_err(|_| {
        FfiError::new(
            SignalErrorCode::SIGNAL_ERR_INVALID_ARGUMENT,
            format!("{name}: expected {N} bytes, got {len}"),
        )
    })
}

/// A required NUL-terminated UTF-8 string.
///
/// # Safety
/// `p` must be null or point at a NUL-terminated string valid for the call.
pub(crate) unsafe fn string<'a>(p: *const c_char, name: &str) -> Result<&'a str, FfiError> {
    if p.is_null() {
        return Err(null(name));
    }
    // SAFETY: `p` is non-null and the caller guarantees a NUL-terminated string.
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| {
        FfiError::new(
            SignalErrorCode::SIGNAL_ERR_INVALID_ARGUMENT,
            format!("{name} is not valid UTF-8"),
        )
    })
}

/// A device address from a user string and a device id.
///
/// # Safety
/// As for [`string`].
pub(crate) unsafe fn address(
    user: *const c_char,
    device: u32,
    name: &str,
) -> Result<Address, FfiError> {
    // SAFETY: forwarded contract.
    let user = unsafe { string(user, name) }?;
    Address::new(user, device).map_err(|e| {
        FfiError::new(
            SignalErrorCode::SIGNAL_ERR_INVALID_ARGUMENT,
            format!("{name}: {e}"),
        )
    })
}

pub(crate) fn null(name: &str) -> FfiError {
    FfiError::new(
        SignalErrorCode::SIGNAL_ERR_NULL_POINTER,
        format!("{name} is null"),
    )
}
