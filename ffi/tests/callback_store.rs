//! The callback store against an application "database" (a map with transactions),
//! driven entirely through the extern "C" functions: a session with an in-memory
//! peer, a group, and a failing commit that must leave the state untouched.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::ptr;

use signal_crypto_lib::buffer::{SignalBuffer, signal_buffer_free};
use signal_crypto_lib::callback::{
    SignalSlot, SignalStoreCallbacks, signal_slot_push_key, signal_slot_set,
    signal_store_new_callbacks,
};
use signal_crypto_lib::error::SignalErrorCode::{self, *};
use signal_crypto_lib::group::{
    signal_group_decrypt, signal_group_encrypt, signal_group_id_generate,
    signal_group_process_distribution,
};
use signal_crypto_lib::session::{
    signal_session_decrypt, signal_session_encrypt, signal_session_process_bundle,
    signal_store_generate_prekeys,
};
use signal_crypto_lib::store::{
    SignalIdentity, SignalStore, signal_identity_free, signal_identity_generate, signal_store_free,
    signal_store_new_in_memory,
};

type Map = BTreeMap<(u32, Vec<u8>), Vec<u8>>;

#[derive(Default)]
struct Db {
    data: Map,
    snapshot: Option<Map>,
    fail_commit: bool,
    /// Removed when the next transaction begins: another process consuming a record
    /// between the library's reads and its commit.
    steal_on_begin: Option<(u32, Vec<u8>)>,
    commits: usize,
}

/// # Safety
/// `ctx` is the `Db` this test passed; pointers valid per the callback contract.
unsafe fn db<'a>(ctx: *mut c_void) -> &'a mut Db {
    // SAFETY: the test passes a live, exclusively used `Db` as ctx.
    unsafe { &mut *ctx.cast::<Db>() }
}

unsafe extern "C" fn load(
    ctx: *mut c_void,
    kind: u32,
    key: *const u8,
    len: usize,
    slot: *mut SignalSlot,
) -> i32 {
    // SAFETY: the library passes a key valid for `len` bytes and our ctx.
    let (db, key) = unsafe { (db(ctx), std::slice::from_raw_parts(key, len)) };
    match db.data.get(&(kind, key.to_vec())) {
        // SAFETY: `slot` is the slot of this call.
        Some(v) => unsafe { signal_slot_set(slot, v.as_ptr(), v.len()) as i32 },
        None => 1,
    }
}

unsafe extern "C" fn store(
    ctx: *mut c_void,
    kind: u32,
    key: *const u8,
    len: usize,
    v: *const u8,
    vlen: usize,
) -> i32 {
    // SAFETY: the library passes valid key and value buffers and our ctx.
    let (db, key, v) = unsafe {
        (
            db(ctx),
            std::slice::from_raw_parts(key, len),
            std::slice::from_raw_parts(v, vlen),
        )
    };
    db.data.insert((kind, key.to_vec()), v.to_vec());
    0
}

unsafe extern "C" fn remove(ctx: *mut c_void, kind: u32, key: *const u8, len: usize) -> i32 {
    // SAFETY: as above.
    let (db, key) = unsafe { (db(ctx), std::slice::from_raw_parts(key, len)) };
    match db.data.remove(&(kind, key.to_vec())) {
        Some(_) => 0,
        None => 1,
    }
}

unsafe extern "C" fn list(ctx: *mut c_void, kind: u32, slot: *mut SignalSlot) -> i32 {
    // SAFETY: our ctx.
    let db = unsafe { db(ctx) };
    for (k, _) in db
        .data
        .keys()
        .filter(|(k, _)| *k == kind)
        .map(|(a, b)| (b, a))
    {
        // SAFETY: `slot` is the slot of this call.
        unsafe { signal_slot_push_key(slot, k.as_ptr(), k.len()) };
    }
    0
}

unsafe extern "C" fn begin(ctx: *mut c_void) -> i32 {
    // SAFETY: our ctx.
    let db = unsafe { db(ctx) };
    if let Some(stolen) = db.steal_on_begin.take() {
        db.data.remove(&stolen);
    }
    db.snapshot = Some(db.data.clone());
    0
}

unsafe extern "C" fn commit(ctx: *mut c_void) -> i32 {
    // SAFETY: our ctx.
    let db = unsafe { db(ctx) };
    if db.fail_commit {
        return 42;
    }
    db.snapshot = None;
    db.commits += 1;
    0
}

unsafe extern "C" fn rollback(ctx: *mut c_void) -> i32 {
    // SAFETY: our ctx.
    let db = unsafe { db(ctx) };
    if let Some(s) = db.snapshot.take() {
        db.data = s;
    }
    0
}

fn ok(rc: SignalErrorCode) {
    assert_eq!(rc, SIGNAL_OK);
}

fn identity() -> *mut SignalIdentity {
    let mut id = ptr::null_mut();
    // SAFETY: valid out pointer.
    ok(unsafe { signal_identity_generate(&mut id) });
    id
}

fn buf() -> SignalBuffer {
    SignalBuffer {
        data: ptr::null_mut(),
        len: 0,
    }
}

/// # Safety
/// A live buffer from the library.
unsafe fn take(b: SignalBuffer) -> Vec<u8> {
    // SAFETY: the library's buffer of `len` bytes, freed once below.
    let v = unsafe { std::slice::from_raw_parts(b.data, b.len) }.to_vec();
    signal_buffer_free(b);
    v
}

#[test]
fn callback_store_sessions_groups_and_failed_commit() {
    let database: *mut Db = Box::into_raw(Box::new(Db::default()));
    let callbacks = SignalStoreCallbacks {
        ctx: database.cast(),
        load: Some(load),
        store: Some(store),
        remove: Some(remove),
        list: Some(list),
        begin: Some(begin),
        commit: Some(commit),
        rollback: Some(rollback),
    };
    // SAFETY: every pointer below is live and every buffer freed once; the Db outlives
    // the store.
    unsafe {
        let (aid, bid) = (identity(), identity());
        let mut alice: *mut SignalStore = ptr::null_mut();
        let mut bob: *mut SignalStore = ptr::null_mut();
        let mut missing = callbacks;
        missing.list = None;
        assert_eq!(
            signal_store_new_callbacks(&missing, aid, 1, &mut alice),
            SIGNAL_ERR_NULL_POINTER
        );
        ok(signal_store_new_callbacks(&callbacks, aid, 1, &mut alice));
        ok(signal_store_new_in_memory(bid, 2, &mut bob));
        signal_identity_free(aid);
        signal_identity_free(bid);

        // Alice (callback store) publishes a bundle; Bob starts the session.
        let mut bundle = buf();
        ok(signal_store_generate_prekeys(
            alice,
            1,
            1,
            1,
            1_700_000_000,
            &mut bundle,
        ));
        ok(signal_session_process_bundle(
            bob,
            c"alice".as_ptr(),
            1,
            bundle.data,
            bundle.len,
        ));
        signal_buffer_free(bundle);
        let mut ct = buf();
        let mut pt = buf();
        ok(signal_session_encrypt(
            bob,
            c"alice".as_ptr(),
            1,
            b"hi".as_ptr(),
            2,
            &mut ct,
        ));

        // A failing commit: an error, and nothing written (the prekey is still there).
        (*database).fail_commit = true;
        let before = (*database).data.clone();
        assert_eq!(
            signal_session_decrypt(alice, c"bob".as_ptr(), 1, ct.data, ct.len, &mut pt),
            SIGNAL_ERR_STORE
        );
        assert_eq!((*database).data, before);
        (*database).fail_commit = false;
        ok(signal_session_decrypt(
            alice,
            c"bob".as_ptr(),
            1,
            ct.data,
            ct.len,
            &mut pt,
        ));
        assert_eq!(take(pt), b"hi");
        signal_buffer_free(ct);
        assert!((*database).commits >= 1);

        // Reply, then a group message from Alice (sender key stored via callbacks).
        let mut ct = buf();
        let mut pt = buf();
        ok(signal_session_encrypt(
            alice,
            c"bob".as_ptr(),
            1,
            b"hello".as_ptr(),
            5,
            &mut ct,
        ));
        ok(signal_session_decrypt(
            bob,
            c"alice".as_ptr(),
            1,
            ct.data,
            ct.len,
            &mut pt,
        ));
        assert_eq!(take(pt), b"hello");
        signal_buffer_free(ct);

        let mut gid = [0u8; 32];
        ok(signal_group_id_generate(gid.as_mut_ptr(), 32));
        let mut fo = ptr::null_mut();
        let devices = [signal_crypto_lib::session::SignalDevice {
            user: c"bob".as_ptr(),
            device: 1,
            registration_id: 2,
        }];
        ok(signal_crypto_lib::group::signal_group_distribute(
            alice,
            gid.as_ptr(),
            32,
            c"alice".as_ptr(),
            1,
            devices.as_ptr(),
            1,
            &mut fo,
        ));
        let (mut reg, mut data, mut len) = (0u32, ptr::null(), 0usize);
        ok(signal_crypto_lib::session::signal_fanout_ciphertext(
            fo, 0, &mut reg, &mut data, &mut len,
        ));
        let mut dist = buf();
        ok(signal_session_decrypt(
            bob,
            c"alice".as_ptr(),
            1,
            data,
            len,
            &mut dist,
        ));
        signal_crypto_lib::session::signal_fanout_free(fo);
        ok(signal_group_process_distribution(
            bob,
            c"alice".as_ptr(),
            1,
            dist.data,
            dist.len,
        ));
        signal_buffer_free(dist);
        let mut gct = buf();
        let mut gpt = buf();
        ok(signal_group_encrypt(
            alice,
            gid.as_ptr(),
            32,
            c"alice".as_ptr(),
            1,
            b"group".as_ptr(),
            5,
            &mut gct,
        ));
        ok(signal_group_decrypt(
            bob,
            gid.as_ptr(),
            32,
            c"alice".as_ptr(),
            1,
            gct.data,
            gct.len,
            &mut gpt,
        ));
        assert_eq!(take(gpt), b"group");
        signal_buffer_free(gct);
        assert!(
            (*database).data.keys().any(|(k, _)| *k == 7),
            "sender key stored via callbacks"
        );

        signal_store_free(alice);
        signal_store_free(bob);
        drop(Box::from_raw(database));
    }
}

/// Another process consumes the one-time prekey after the library read it and before
/// the session commit's transaction: `remove` reports the record absent, the commit is
/// refused with `SIGNAL_ERR_CONFLICT` and the application's database is unchanged.
#[test]
fn callback_commit_refuses_a_one_time_prekey_consumed_concurrently() {
    let database: *mut Db = Box::into_raw(Box::new(Db::default()));
    let callbacks = SignalStoreCallbacks {
        ctx: database.cast(),
        load: Some(load),
        store: Some(store),
        remove: Some(remove),
        list: Some(list),
        begin: Some(begin),
        commit: Some(commit),
        rollback: Some(rollback),
    };
    // SAFETY: as in the test above.
    unsafe {
        let (aid, bid) = (identity(), identity());
        let mut alice: *mut SignalStore = ptr::null_mut();
        let mut bob: *mut SignalStore = ptr::null_mut();
        ok(signal_store_new_callbacks(&callbacks, aid, 1, &mut alice));
        ok(signal_store_new_in_memory(bid, 2, &mut bob));
        signal_identity_free(aid);
        signal_identity_free(bid);
        let mut bundle = buf();
        ok(signal_store_generate_prekeys(
            alice,
            1,
            1,
            1,
            1_700_000_000,
            &mut bundle,
        ));
        ok(signal_session_process_bundle(
            bob,
            c"alice".as_ptr(),
            1,
            bundle.data,
            bundle.len,
        ));
        signal_buffer_free(bundle);
        let mut ct = buf();
        ok(signal_session_encrypt(
            bob,
            c"alice".as_ptr(),
            1,
            b"hi".as_ptr(),
            2,
            &mut ct,
        ));

        let prekey = (*database)
            .data
            .keys()
            .find(|(kind, _)| *kind == 2)
            .cloned()
            .expect("a one-time X25519 prekey");
        (*database).steal_on_begin = Some(prekey.clone());
        let mut expected = (*database).data.clone();
        expected.remove(&prekey);
        let mut pt = buf();
        assert_eq!(
            signal_session_decrypt(alice, c"bob".as_ptr(), 1, ct.data, ct.len, &mut pt),
            SIGNAL_ERR_CONFLICT
        );
        assert_eq!(
            (*database).data,
            expected,
            "the refused commit wrote something"
        );
        assert_eq!((*database).commits, 0);
        signal_buffer_free(ct);
        signal_store_free(alice);
        signal_store_free(bob);
        drop(Box::from_raw(database));
    }
}
