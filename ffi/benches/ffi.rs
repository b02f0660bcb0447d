//! C ABI overhead: the same `encrypt_decrypt_100B` workload as signal-core's protocol
//! bench, once through the extern "C" functions (`ffi_encrypt_decrypt_100B`: one
//! encrypt call, one decrypt call, two `signal_buffer_free` calls) and once calling
//! signal-core directly (`direct_encrypt_decrypt_100B`), both on in-memory stores.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::ptr;

use criterion::{Criterion, criterion_group, criterion_main};
use signal_core::prekey::{KemPreKeyRecord, OneTimePreKeyRecord, PreKeyBundle, SignedPreKeyRecord};
use signal_core::store::{InMemoryStore, KemPreKeyStore, PreKeyStore, SignedPreKeyStore};
use signal_core::{Address, IdentityKeyPair, session};
use signal_crypto_lib::buffer::{SignalBuffer, signal_buffer_free};
use signal_crypto_lib::error::SignalErrorCode::SIGNAL_OK;
use signal_crypto_lib::session::{
    signal_session_decrypt, signal_session_encrypt, signal_session_process_bundle,
    signal_store_generate_prekeys,
};
use signal_crypto_lib::store::{
    SignalIdentity, SignalStore, signal_identity_free, signal_identity_generate, signal_store_free,
    signal_store_new_in_memory,
};

const MSG_100B: [u8; 100] = [0x42; 100];

fn ffi_store(registration_id: u32) -> *mut SignalStore {
    let mut id: *mut SignalIdentity = ptr::null_mut();
    let mut store: *mut SignalStore = ptr::null_mut();
    // SAFETY: valid out pointers; the identity is freed after the store copied it.
    unsafe {
        assert_eq!(signal_identity_generate(&mut id), SIGNAL_OK);
        assert_eq!(
            signal_store_new_in_memory(id, registration_id, &mut store),
            SIGNAL_OK
        );
        signal_identity_free(id);
    }
    store
}

fn ffi_encrypt_decrypt_100b(c: &mut Criterion) {
    let alice = ffi_store(1);
    let bob = ffi_store(2);
    let mut bundle = SignalBuffer {
        data: ptr::null_mut(),
        len: 0,
    };
    // SAFETY: live handles, NUL-terminated names, buffers from the library freed once.
    unsafe {
        assert_eq!(
            signal_store_generate_prekeys(bob, 1, 1, 1, 1_700_000_000, &mut bundle),
            SIGNAL_OK
        );
        assert_eq!(
            signal_session_process_bundle(alice, c"bob".as_ptr(), 1, bundle.data, bundle.len),
            SIGNAL_OK
        );
        signal_buffer_free(bundle);
    }
    let mut roundtrip = || {
        let mut ct = SignalBuffer {
            data: ptr::null_mut(),
            len: 0,
        };
        let mut pt = SignalBuffer {
            data: ptr::null_mut(),
            len: 0,
        };
        // SAFETY: as above.
        unsafe {
            assert_eq!(
                signal_session_encrypt(
                    alice,
                    c"bob".as_ptr(),
                    1,
                    black_box(MSG_100B.as_ptr()),
                    100,
                    &mut ct
                ),
                SIGNAL_OK
            );
            assert_eq!(
                signal_session_decrypt(bob, c"alice".as_ptr(), 1, ct.data, ct.len, &mut pt),
                SIGNAL_OK
            );
            black_box(pt.len);
            signal_buffer_free(ct);
            signal_buffer_free(pt);
        }
    };
    // Bob replies once so Alice's messages are no longer pre-key messages.
    roundtrip();
    // SAFETY: as above.
    unsafe {
        let mut ct = SignalBuffer {
            data: ptr::null_mut(),
            len: 0,
        };
        let mut pt = SignalBuffer {
            data: ptr::null_mut(),
            len: 0,
        };
        assert_eq!(
            signal_session_encrypt(bob, c"alice".as_ptr(), 1, MSG_100B.as_ptr(), 100, &mut ct),
            SIGNAL_OK
        );
        assert_eq!(
            signal_session_decrypt(alice, c"bob".as_ptr(), 1, ct.data, ct.len, &mut pt),
            SIGNAL_OK
        );
        signal_buffer_free(ct);
        signal_buffer_free(pt);
    }
    c.bench_function("ffi_encrypt_decrypt_100B", |bench| {
        bench.iter(&mut roundtrip)
    });
    // SAFETY: handles from the library, freed once, no call running.
    unsafe {
        signal_store_free(alice);
        signal_store_free(bob);
    }
}

fn direct_encrypt_decrypt_100b(c: &mut Criterion) {
    let bob_identity = IdentityKeyPair::generate().unwrap();
    let mut bob = InMemoryStore::new(bob_identity.clone(), 2);
    let spk = SignedPreKeyRecord::generate(&bob_identity, 2, 1, 1_700_000_000).unwrap();
    let opk = OneTimePreKeyRecord::generate(&bob_identity, 1, 1_700_000_000).unwrap();
    let kem = KemPreKeyRecord::generate(&bob_identity, 1, 1_700_000_000, false).unwrap();
    bob.store_signed_prekey(&spk).unwrap();
    bob.store_prekey(&opk).unwrap();
    bob.store_kem_prekey(&kem).unwrap();
    let bundle = PreKeyBundle {
        registration_id: 2,
        identity: *bob_identity.public(),
        signed_prekey: spk.public().clone(),
        one_time_prekey: Some(opk.public().clone()),
        kem_prekey: kem.public().clone(),
    };
    let mut alice = InMemoryStore::new(IdentityKeyPair::generate().unwrap(), 1);
    let (a, b) = (
        Address::new("alice", 1).unwrap(),
        Address::new("bob", 1).unwrap(),
    );
    session::initiate(&mut alice, &b, &bundle.verify().unwrap()).unwrap();
    let m = session::encrypt(&mut alice, &b, &MSG_100B).unwrap();
    session::decrypt_and_commit(&mut bob, &a, &m).unwrap();
    let reply = session::encrypt(&mut bob, &a, &MSG_100B).unwrap();
    session::decrypt_and_commit(&mut alice, &b, &reply).unwrap();
    let mut roundtrip = || {
        let m = session::encrypt(&mut alice, &b, black_box(&MSG_100B)).unwrap();
        black_box(session::decrypt_and_commit(&mut bob, &a, &m).unwrap());
    };
    c.bench_function("direct_encrypt_decrypt_100B", |bench| {
        bench.iter(&mut roundtrip)
    });
}

criterion_group!(
    benches,
    ffi_encrypt_decrypt_100b,
    direct_encrypt_decrypt_100b
);
criterion_main!(benches);
