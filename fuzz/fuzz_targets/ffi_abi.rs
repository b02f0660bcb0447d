//! The C ABI with arbitrary buffers, lengths and strings. A pointer/length pair is
//! either a real buffer with any length up to its size (the C contract: the caller
//! owns at least `len` bytes) or a null pointer with any length. Every call must return
//! an error code rather than crash, and none may reach the ABI's panic guard.
#![no_main]

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::ptr;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use signal_crypto_lib::buffer::{SignalBuffer, signal_buffer_free};
use signal_crypto_lib::error::{
    SignalErrorCode, signal_error_code_name, signal_last_error_message,
};
use signal_crypto_lib::group::{
    signal_group_decrypt, signal_group_encrypt, signal_group_id_generate,
    signal_group_process_distribution,
};
use signal_crypto_lib::safety::{signal_safety_number, signal_safety_number_verify_scanned};
use signal_crypto_lib::session::{
    SignalDevice, signal_fanout_address, signal_fanout_ciphertext, signal_fanout_count,
    signal_fanout_encrypt, signal_fanout_free, signal_session_decrypt, signal_session_encrypt,
    signal_session_process_bundle, signal_store_generate_prekeys,
};
use signal_crypto_lib::store::{
    SignalIdentity, SignalStore, signal_identity_deserialize, signal_identity_free,
    signal_identity_generate, signal_identity_public_key, signal_store_new_in_memory,
};

/// A pointer/length argument.
#[derive(Arbitrary, Debug)]
enum Buf {
    /// The whole buffer.
    Whole(Vec<u8>),
    /// A buffer with a length at most its size.
    Prefix(Vec<u8>, u16),
    /// A null pointer with this length.
    Null(usize),
}

impl Buf {
    fn raw(&self) -> (*const u8, usize) {
        match self {
            Buf::Whole(v) => (v.as_ptr(), v.len()),
            Buf::Prefix(v, n) => (v.as_ptr(), usize::from(*n).min(v.len())),
            Buf::Null(n) => (ptr::null(), *n),
        }
    }
}

/// A C string argument: null, or the bytes up to the first NUL.
#[derive(Arbitrary, Debug)]
enum Str {
    Null,
    Alice,
    Bob,
    Bytes(Vec<u8>),
}

impl Str {
    fn c(&self) -> Option<CString> {
        match self {
            Str::Null => None,
            Str::Alice => Some(c"alice".to_owned()),
            Str::Bob => Some(c"bob".to_owned()),
            Str::Bytes(b) => {
                let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
                CString::new(&b[..end]).ok()
            }
        }
    }
}

fn ptr_of(s: &Option<CString>) -> *const c_char {
    s.as_ref().map_or(ptr::null(), |c| c.as_ptr())
}

#[derive(Arbitrary, Debug)]
enum Call {
    IdentityDeserialize(Buf),
    ProcessBundle {
        bob: bool,
        user: Str,
        device: u32,
        bundle: Buf,
    },
    Encrypt {
        bob: bool,
        user: Str,
        device: u32,
        plaintext: Buf,
    },
    Decrypt {
        bob: bool,
        user: Str,
        device: u32,
        ciphertext: Buf,
    },
    GroupProcessDistribution {
        bob: bool,
        user: Str,
        device: u32,
        message: Buf,
    },
    GroupEncrypt {
        bob: bool,
        group: Buf,
        user: Str,
        device: u32,
        plaintext: Buf,
    },
    GroupDecrypt {
        bob: bool,
        group: Buf,
        user: Str,
        device: u32,
        ciphertext: Buf,
    },
    GroupIdGenerate {
        len: u8,
    },
    SafetyNumber {
        local: Str,
        local_key: Buf,
        remote: Str,
        remote_key: Buf,
        numeric: bool,
        scannable: bool,
    },
    VerifyScanned {
        local: Str,
        local_key: Buf,
        remote: Str,
        remote_key: Buf,
        scanned: Buf,
    },
    FanOut {
        bob: bool,
        own: Str,
        devices: Vec<(Str, u32, u32)>,
        plaintext: Buf,
        list: u32,
        index: usize,
    },
    ErrorCodeName(i32),
}

struct Fixture {
    stores: [*mut SignalStore; 2],
    identities: [*mut SignalIdentity; 2],
    /// A real bundle of Bob's, a real message Alice sent him, Alice's public key.
    bundle: Vec<u8>,
    message: Vec<u8>,
    alice_public: Vec<u8>,
}

fn ok(rc: SignalErrorCode) {
    assert_eq!(rc, SignalErrorCode::SIGNAL_OK, "fixture setup");
}

fn take(b: &mut SignalBuffer) -> Vec<u8> {
    let v = if b.data.is_null() {
        Vec::new()
    } else {
        // SAFETY: the library returned this buffer: `data` points at `len` bytes.
        unsafe { std::slice::from_raw_parts(b.data, b.len) }.to_vec()
    };
    signal_buffer_free(std::mem::replace(
        b,
        SignalBuffer {
            data: ptr::null_mut(),
            len: 0,
        },
    ));
    v
}

fn fixture() -> Fixture {
    let mut identities = [ptr::null_mut(); 2];
    let mut stores = [ptr::null_mut(); 2];
    for i in 0..2 {
        // SAFETY: out-pointers to live locals; the handles are kept for the process.
        unsafe {
            ok(signal_identity_generate(&mut identities[i]));
            ok(signal_store_new_in_memory(
                identities[i],
                1 + i as u32,
                &mut stores[i],
            ));
        }
    }
    let mut buf = SignalBuffer {
        data: ptr::null_mut(),
        len: 0,
    };
    // SAFETY: live handles and out-pointers.
    unsafe {
        ok(signal_store_generate_prekeys(
            stores[1],
            1,
            1,
            1,
            signal_fuzz::CREATED_AT,
            &mut buf,
        ))
    };
    let bundle = take(&mut buf);
    // SAFETY: live handles, NUL-terminated strings, buffers valid for their lengths.
    unsafe {
        ok(signal_session_process_bundle(
            stores[0],
            c"bob".as_ptr(),
            1,
            bundle.as_ptr(),
            bundle.len(),
        ));
        ok(signal_session_encrypt(
            stores[0],
            c"bob".as_ptr(),
            1,
            b"hello".as_ptr(),
            5,
            &mut buf,
        ));
    }
    let message = take(&mut buf);
    // SAFETY: live handle and out-pointer.
    unsafe { ok(signal_identity_public_key(identities[0], &mut buf)) };
    let alice_public = take(&mut buf);
    Fixture {
        stores,
        identities,
        bundle,
        message,
        alice_public,
    }
}

thread_local! {
    static FIXTURE: RefCell<Option<Fixture>> = const { RefCell::new(None) };
}

/// No call may panic inside the library (the guard turns a panic into an error).
fn check(rc: SignalErrorCode) {
    if rc == SignalErrorCode::SIGNAL_OK {
        return;
    }
    let msg = signal_last_error_message();
    assert!(!msg.is_null(), "a failed call sets the last error");
    // SAFETY: a non-null last error is a NUL-terminated string owned by the library,
    // valid until the next call on this thread.
    let msg = unsafe { CStr::from_ptr(msg) }.to_string_lossy();
    assert!(!msg.contains("panic"), "{rc:?}: {msg}");
}

fn run(f: &Fixture, call: &Call) {
    let mut out = SignalBuffer {
        data: ptr::null_mut(),
        len: 0,
    };
    let store = |bob: &bool| f.stores[usize::from(*bob)];
    // SAFETY (every call below): handles come from the fixture and are live; every
    // pointer/length pair is null or a live buffer of at least that length; strings
    // are null or NUL-terminated; out-pointers point at live locals.
    match call {
        Call::IdentityDeserialize(b) => {
            let (p, n) = b.raw();
            let mut id = ptr::null_mut();
            let rc = unsafe { signal_identity_deserialize(p, n, &mut id) };
            check(rc);
            unsafe { signal_identity_free(id) };
        }
        Call::ProcessBundle {
            bob,
            user,
            device,
            bundle,
        } => {
            let u = user.c();
            let (p, n) = match bundle {
                Buf::Whole(v) if v.is_empty() => (f.bundle.as_ptr(), f.bundle.len()),
                b => b.raw(),
            };
            check(unsafe { signal_session_process_bundle(store(bob), ptr_of(&u), *device, p, n) });
        }
        Call::Encrypt {
            bob,
            user,
            device,
            plaintext,
        } => {
            let u = user.c();
            let (p, n) = plaintext.raw();
            check(unsafe {
                signal_session_encrypt(store(bob), ptr_of(&u), *device, p, n, &mut out)
            });
        }
        Call::Decrypt {
            bob,
            user,
            device,
            ciphertext,
        } => {
            let u = user.c();
            let (p, n) = match ciphertext {
                Buf::Whole(v) if v.is_empty() => (f.message.as_ptr(), f.message.len()),
                b => b.raw(),
            };
            check(unsafe {
                signal_session_decrypt(store(bob), ptr_of(&u), *device, p, n, &mut out)
            });
        }
        Call::GroupProcessDistribution {
            bob,
            user,
            device,
            message,
        } => {
            let u = user.c();
            let (p, n) = message.raw();
            check(unsafe {
                signal_group_process_distribution(store(bob), ptr_of(&u), *device, p, n)
            });
        }
        Call::GroupEncrypt {
            bob,
            group,
            user,
            device,
            plaintext,
        } => {
            let u = user.c();
            let (g, gn) = group.raw();
            let (p, n) = plaintext.raw();
            check(unsafe {
                signal_group_encrypt(store(bob), g, gn, ptr_of(&u), *device, p, n, &mut out)
            });
        }
        Call::GroupDecrypt {
            bob,
            group,
            user,
            device,
            ciphertext,
        } => {
            let u = user.c();
            let (g, gn) = group.raw();
            let (p, n) = ciphertext.raw();
            check(unsafe {
                signal_group_decrypt(store(bob), g, gn, ptr_of(&u), *device, p, n, &mut out)
            });
        }
        Call::GroupIdGenerate { len } => {
            let mut id = vec![0u8; usize::from(*len)];
            check(unsafe { signal_group_id_generate(id.as_mut_ptr(), id.len()) });
        }
        Call::SafetyNumber {
            local,
            local_key,
            remote,
            remote_key,
            numeric,
            scannable,
        } => {
            let (l, r) = (local.c(), remote.c());
            let (lp, ln) = match local_key {
                Buf::Whole(v) if v.is_empty() => (f.alice_public.as_ptr(), f.alice_public.len()),
                b => b.raw(),
            };
            let (rp, rn) = remote_key.raw();
            let mut scan = SignalBuffer {
                data: ptr::null_mut(),
                len: 0,
            };
            let rc = unsafe {
                signal_safety_number(
                    ptr_of(&l),
                    lp,
                    ln,
                    ptr_of(&r),
                    rp,
                    rn,
                    if *numeric { &mut out } else { ptr::null_mut() },
                    if *scannable {
                        &mut scan
                    } else {
                        ptr::null_mut()
                    },
                )
            };
            check(rc);
            take(&mut scan);
        }
        Call::VerifyScanned {
            local,
            local_key,
            remote,
            remote_key,
            scanned,
        } => {
            let (l, r) = (local.c(), remote.c());
            let (lp, ln) = local_key.raw();
            let (rp, rn) = remote_key.raw();
            let (sp, sn) = scanned.raw();
            let mut matched = 0u8;
            check(unsafe {
                signal_safety_number_verify_scanned(
                    ptr_of(&l),
                    lp,
                    ln,
                    ptr_of(&r),
                    rp,
                    rn,
                    sp,
                    sn,
                    &mut matched,
                )
            });
        }
        Call::FanOut {
            bob,
            own,
            devices,
            plaintext,
            list,
            index,
        } => {
            let o = own.c();
            let names: Vec<Option<CString>> =
                devices.iter().take(8).map(|(s, _, _)| s.c()).collect();
            let devs: Vec<SignalDevice> = devices
                .iter()
                .take(8)
                .zip(&names)
                .map(|((_, device, registration_id), n)| SignalDevice {
                    user: ptr_of(n),
                    device: *device,
                    registration_id: *registration_id,
                })
                .collect();
            let (p, n) = plaintext.raw();
            let mut fan = ptr::null_mut();
            let rc = unsafe {
                signal_fanout_encrypt(
                    store(bob),
                    ptr_of(&o),
                    1,
                    devs.as_ptr(),
                    devs.len(),
                    p,
                    n,
                    &mut fan,
                )
            };
            check(rc);
            if !fan.is_null() {
                let mut count = 0usize;
                check(unsafe { signal_fanout_count(fan, *list, &mut count) });
                let (mut u, mut d) = (ptr::null(), 0u32);
                check(unsafe { signal_fanout_address(fan, *list, *index, &mut u, &mut d) });
                let (mut reg, mut data, mut len) = (0u32, ptr::null(), 0usize);
                check(unsafe {
                    signal_fanout_ciphertext(fan, *index, &mut reg, &mut data, &mut len)
                });
                unsafe { signal_fanout_free(fan) };
            }
        }
        Call::ErrorCodeName(code) => {
            let name = signal_error_code_name(*code);
            assert!(!name.is_null());
        }
    }
    take(&mut out);
}

fuzz_target!(|calls: Vec<Call>| {
    FIXTURE.with(|cell| {
        let mut cell = cell.borrow_mut();
        let f = cell.get_or_insert_with(fixture);
        for call in calls.iter().take(16) {
            run(f, call);
        }
        let _ = &f.identities;
    });
});
