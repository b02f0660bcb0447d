//! One `SignalStore` shared by several threads through the C ABI: calls are
//! serialized by the store's lock, every message decrypts, nothing is lost.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::ffi::CString;
use std::ptr;

use signal_crypto_lib::buffer::{SignalBuffer, signal_buffer_free};
use signal_crypto_lib::error::SignalErrorCode::SIGNAL_OK;
use signal_crypto_lib::session::{
    signal_session_decrypt, signal_session_encrypt, signal_session_process_bundle,
    signal_store_generate_prekeys,
};
use signal_crypto_lib::store::{
    SignalStore, signal_identity_free, signal_identity_generate, signal_store_free,
    signal_store_new_in_memory,
};

/// A store handle sent to other threads, as the documentation allows.
#[derive(Clone, Copy)]
struct Shared(*mut SignalStore);
// SAFETY: `SignalStore` is documented (and built: a Mutex around a Send backend) to
// be usable from several threads at once.
unsafe impl Send for Shared {}

fn store(registration_id: u32) -> *mut SignalStore {
    let mut id = ptr::null_mut();
    let mut s = ptr::null_mut();
    // SAFETY: valid out pointers; the identity is freed once.
    unsafe {
        assert_eq!(signal_identity_generate(&mut id), SIGNAL_OK);
        assert_eq!(
            signal_store_new_in_memory(id, registration_id, &mut s),
            SIGNAL_OK
        );
        signal_identity_free(id);
    }
    s
}

#[test]
fn one_store_many_threads() {
    const PEERS: u32 = 4;
    const MESSAGES: usize = 25;
    let alice = Shared(store(1));
    let peers: Vec<Shared> = (0..PEERS).map(|i| Shared(store(10 + i))).collect();
    for (i, peer) in peers.iter().enumerate() {
        let name = CString::new(format!("peer{i}")).unwrap();
        let mut bundle = SignalBuffer {
            data: ptr::null_mut(),
            len: 0,
        };
        // SAFETY: live handles and buffers, freed once.
        unsafe {
            assert_eq!(
                signal_store_generate_prekeys(peer.0, 1, 1, 1, 1_700_000_000, &mut bundle),
                SIGNAL_OK
            );
            assert_eq!(
                signal_session_process_bundle(alice.0, name.as_ptr(), 1, bundle.data, bundle.len),
                SIGNAL_OK
            );
            signal_buffer_free(bundle);
        }
    }
    let threads: Vec<_> = peers
        .iter()
        .enumerate()
        .map(|(i, &peer)| {
            std::thread::spawn(move || {
                // Capture the whole `Shared` wrappers, not their raw-pointer fields.
                let (alice, peer) = (alice, peer);
                let name = CString::new(format!("peer{i}")).unwrap();
                for n in 0..MESSAGES {
                    let msg = format!("message {n} to peer {i}");
                    let mut ct = SignalBuffer {
                        data: ptr::null_mut(),
                        len: 0,
                    };
                    let mut pt = SignalBuffer {
                        data: ptr::null_mut(),
                        len: 0,
                    };
                    // SAFETY: the shared store is live for the whole test; buffers freed once.
                    unsafe {
                        assert_eq!(
                            signal_session_encrypt(
                                alice.0,
                                name.as_ptr(),
                                1,
                                msg.as_ptr(),
                                msg.len(),
                                &mut ct
                            ),
                            SIGNAL_OK
                        );
                        assert_eq!(
                            signal_session_decrypt(
                                peer.0,
                                c"alice".as_ptr(),
                                1,
                                ct.data,
                                ct.len,
                                &mut pt
                            ),
                            SIGNAL_OK
                        );
                        assert_eq!(std::slice::from_raw_parts(pt.data, pt.len), msg.as_bytes());
                        signal_buffer_free(ct);
                        signal_buffer_free(pt);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // SAFETY: every thread has finished; each handle is freed once.
    unsafe {
        signal_store_free(alice.0);
        for p in peers {
            signal_store_free(p.0);
        }
    }
}
