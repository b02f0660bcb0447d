//! The one error-code enum, the thread-local last-error message, and the guard every
//! exported function runs its body in (no panic crosses the C boundary).

use std::cell::RefCell;
use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use session_store::KeyError;
use signal_core::{
    BundleError, CryptoError, DecodeError, GroupError, MaintenanceError, SessionError, StoreError,
};

/// The result of every exported call. `SIGNAL_OK` (0) is success; anything else is a
/// failure, explained by [`signal_last_error_message`]. On failure no output parameter
/// was written.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalErrorCode {
    /// Success.
    SIGNAL_OK = 0,
    /// A required pointer argument was null.
    SIGNAL_ERR_NULL_POINTER = 1,
    /// An argument is malformed: a wrong length, a string that is not UTF-8, an empty
    /// or over-long user id, an index out of range.
    SIGNAL_ERR_INVALID_ARGUMENT = 2,
    /// Bytes could not be decoded (truncated, wrong version or type, trailing bytes).
    SIGNAL_ERR_DECODE = 3,
    /// A signature on a prekey bundle or a group message does not verify.
    SIGNAL_ERR_BAD_SIGNATURE = 4,
    /// The peer's identity differs from the one recorded for it.
    SIGNAL_ERR_UNTRUSTED_IDENTITY = 5,
    /// There is no session with that device.
    SIGNAL_ERR_NO_SESSION = 6,
    /// The message does not authenticate (tampered, or not for this session).
    SIGNAL_ERR_INVALID_MESSAGE = 7,
    /// The message was already decrypted.
    SIGNAL_ERR_DUPLICATE_MESSAGE = 8,
    /// The message is further ahead in its chain than the protocol allows.
    SIGNAL_ERR_TOO_FAR_AHEAD = 9,
    /// A pre-key message names a prekey this device does not hold (or replays a
    /// last-resort prekey use).
    SIGNAL_ERR_UNKNOWN_PREKEY = 10,
    /// No sender key (or no chain with that id) is held for that group sender.
    SIGNAL_ERR_NO_SENDER_KEY = 11,
    /// The store failed (I/O, SQL, a callback returned an error, corrupt data).
    SIGNAL_ERR_STORE = 12,
    /// The store key or passphrase does not open the database.
    SIGNAL_ERR_WRONG_KEY = 13,
    /// The stored state changed concurrently; nothing was written. Retry. (A pre-key
    /// message whose one-time prekey another handle or process consumed first gets
    /// this; retried, it fails with `SIGNAL_ERR_UNKNOWN_PREKEY`.)
    SIGNAL_ERR_CONFLICT = 14,
    /// Randomness failed, a key agreement was degenerate, or a plaintext is too long.
    SIGNAL_ERR_CRYPTO = 15,
    /// A protocol rule refused the operation (e.g. a group chain conflict, a
    /// distribution for our own chain, no free prekey ids).
    SIGNAL_ERR_PROTOCOL = 16,
    /// The requested item does not exist (e.g. no recorded identity for a peer).
    SIGNAL_ERR_NOT_FOUND = 17,
    /// A bug inside the library: a panic was caught at the boundary. The handles
    /// involved remain safe to free.
    SIGNAL_ERR_INTERNAL = 18,
}

use SignalErrorCode::*;

/// A failure on its way to the C caller: a code and a human-readable message.
#[derive(Debug)]
pub(crate) struct FfiError {
    pub(crate) code: SignalErrorCode,
    pub(crate) message: String,
}

impl FfiError {
    pub(crate) fn new(code: SignalErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The message of an error with all its sources, outermost first.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

fn store_code(e: &StoreError) -> SignalErrorCode {
    match e {
        StoreError::WrongKey => SIGNAL_ERR_WRONG_KEY,
        StoreError::Conflict { .. } | StoreError::PreKeyAlreadyConsumed { .. } => {
            SIGNAL_ERR_CONFLICT
        }
        StoreError::Backend(inner) if inner.downcast_ref::<KeyError>().is_some() => {
            SIGNAL_ERR_WRONG_KEY
        }
        _ => SIGNAL_ERR_STORE,
    }
}

fn crypto_code(_: &CryptoError) -> SignalErrorCode {
    SIGNAL_ERR_CRYPTO
}

fn session_code(e: &SessionError) -> SignalErrorCode {
    match e {
        SessionError::Decode(_) => SIGNAL_ERR_DECODE,
        SessionError::Bundle(b) => bundle_code(b),
        SessionError::Store(s) => store_code(s),
        SessionError::Crypto(c) => crypto_code(c),
        SessionError::UntrustedIdentity { .. } => SIGNAL_ERR_UNTRUSTED_IDENTITY,
        SessionError::NoSession { .. } => SIGNAL_ERR_NO_SESSION,
        SessionError::InvalidMessage | SessionError::SessionMismatch => SIGNAL_ERR_INVALID_MESSAGE,
        SessionError::SelfSession => SIGNAL_ERR_PROTOCOL,
        SessionError::DuplicateMessage { .. } => SIGNAL_ERR_DUPLICATE_MESSAGE,
        SessionError::TooFarAhead { .. } => SIGNAL_ERR_TOO_FAR_AHEAD,
        SessionError::ChainExhausted { .. } => SIGNAL_ERR_PROTOCOL,
        SessionError::UnknownSignedPreKey { .. }
        | SessionError::UnknownPreKey { .. }
        | SessionError::UnknownKemPreKey { .. }
        | SessionError::KemPreKeyReplay { .. } => SIGNAL_ERR_UNKNOWN_PREKEY,
    }
}

fn bundle_code(e: &BundleError) -> SignalErrorCode {
    match e {
        BundleError::Decode(_) => SIGNAL_ERR_DECODE,
        BundleError::BadSignature { .. } => SIGNAL_ERR_BAD_SIGNATURE,
        BundleError::IdentityMismatch => SIGNAL_ERR_UNTRUSTED_IDENTITY,
    }
}

fn group_code(e: &GroupError) -> SignalErrorCode {
    match e {
        GroupError::Decode(_) => SIGNAL_ERR_DECODE,
        GroupError::Store(s) => store_code(s),
        GroupError::Crypto(c) => crypto_code(c),
        GroupError::Session(s) => session_code(s),
        GroupError::NoSenderKey { .. } | GroupError::UnknownChain { .. } => {
            SIGNAL_ERR_NO_SENDER_KEY
        }
        GroupError::BadSignature => SIGNAL_ERR_BAD_SIGNATURE,
        GroupError::InvalidMessage => SIGNAL_ERR_INVALID_MESSAGE,
        GroupError::DuplicateMessage { .. } => SIGNAL_ERR_DUPLICATE_MESSAGE,
        GroupError::TooFarAhead { .. } => SIGNAL_ERR_TOO_FAR_AHEAD,
        _ => SIGNAL_ERR_PROTOCOL,
    }
}

fn maintenance_code(e: &MaintenanceError) -> SignalErrorCode {
    match e {
        MaintenanceError::Store(s) => store_code(s),
        MaintenanceError::Crypto(c) => crypto_code(c),
        _ => SIGNAL_ERR_PROTOCOL,
    }
}

macro_rules! from_error {
    ($($ty:ty => $code:expr),* $(,)?) => {$(
        impl From<$ty> for FfiError {
            fn from(e: $ty) -> Self {
                let code = $code(&e);
                Self { code, message: chain(&e) }
            }
        }
    )*};
}

from_error! {
    SessionError => session_code,
    BundleError => bundle_code,
    GroupError => group_code,
    StoreError => store_code,
    MaintenanceError => maintenance_code,
    CryptoError => crypto_code,
    DecodeError => |_: &DecodeError| SIGNAL_ERR_DECODE,
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

fn set_last_error(message: &str) {
    // An interior NUL cannot be represented in a C string; replace it.
    let cleaned = message.replace('\0', "\\0");
    let c = CString::new(cleaned).ok();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Runs an exported function's body: a returned error becomes its code and the
/// thread's last-error message; a panic is caught and becomes
/// `SIGNAL_ERR_INTERNAL`.
pub(crate) fn guard(f: impl FnOnce() -> Result<(), FfiError>) -> SignalErrorCode {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => {
            LAST_ERROR.with(|e| *e.borrow_mut() = None);
            SIGNAL_OK
        }
        Ok(Err(e)) => {
            set_last_error(&e.message);
            e.code
        }
        Err(_) => {
            set_last_error("internal error: a panic was caught at the C boundary");
            SIGNAL_ERR_INTERNAL
        }
    }
}

/// The message explaining the last failed call on **this thread**, or null if the
/// last call succeeded. The string is owned by the library and stays valid until the
/// next call into the library on this thread; copy it to keep it.
#[unsafe(no_mangle)]
pub extern "C" fn signal_last_error_message() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ref().map_or(std::ptr::null(), |c| c.as_ptr()))
}

/// A static, NUL-terminated name for an error code (e.g. `"SIGNAL_ERR_DECODE"`).
/// Never null; unknown values give `"SIGNAL_ERR_UNKNOWN"`.
#[unsafe(no_mangle)]
pub extern "C" fn signal_error_code_name(code: i32) -> *const c_char {
    let name: &'static [u8] = match code {
        0 => b"SIGNAL_OK\0",
        1 => b"SIGNAL_ERR_NULL_POINTER\0",
        2 => b"SIGNAL_ERR_INVALID_ARGUMENT\0",
        3 => b"SIGNAL_ERR_DECODE\0",
        4 => b"SIGNAL_ERR_BAD_SIGNATURE\0",
        5 => b"SIGNAL_ERR_UNTRUSTED_IDENTITY\0",
        6 => b"SIGNAL_ERR_NO_SESSION\0",
        7 => b"SIGNAL_ERR_INVALID_MESSAGE\0",
        8 => b"SIGNAL_ERR_DUPLICATE_MESSAGE\0",
        9 => b"SIGNAL_ERR_TOO_FAR_AHEAD\0",
        10 => b"SIGNAL_ERR_UNKNOWN_PREKEY\0",
        11 => b"SIGNAL_ERR_NO_SENDER_KEY\0",
        12 => b"SIGNAL_ERR_STORE\0",
        13 => b"SIGNAL_ERR_WRONG_KEY\0",
        14 => b"SIGNAL_ERR_CONFLICT\0",
        15 => b"SIGNAL_ERR_CRYPTO\0",
        16 => b"SIGNAL_ERR_PROTOCOL\0",
        17 => b"SIGNAL_ERR_NOT_FOUND\0",
        18 => b"SIGNAL_ERR_INTERNAL\0",
        _ => b"SIGNAL_ERR_UNKNOWN\0",
    };
    name.as_ptr().cast()
}
