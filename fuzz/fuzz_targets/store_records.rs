//! Every stored record of `session-store`, read back through `SqlStore` from a real
//! (unencrypted, for speed) SQLite file: the first byte picks the table, the rest is
//! the blob written into its row. A record that loads is then used.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use session_store::SqlStore;
use session_store::rusqlite::params;
use signal_core::group::{self, GroupId};
use signal_core::store::{
    IdentityStore, KemPreKeyStore, PreKeyStore, SenderKeyStore, SessionStore, SignedPreKeyStore,
};
use signal_core::{Address, session};
use signal_fuzz::store_record as sel;

struct Fixture {
    store: SqlStore,
    alice: Address,
    group: GroupId,
    /// A message from Alice on the session in the row, to decrypt with a fuzzed record.
    message: Vec<u8>,
    _dir: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let mut p = signal_fuzz::pair();
    let dir = std::env::temp_dir().join(format!("signal-fuzz-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("store.db");
    let mut store = SqlStore::create_unencrypted(&path, &p.bob_identity, 2).expect("create");
    store
        .connection()
        .execute_batch("PRAGMA synchronous = OFF;")
        .expect("pragma");
    store.store_prekey(&p.one_time_prekey).expect("store");
    store.store_signed_prekey(&p.signed_prekey).expect("store");
    store.store_kem_prekey(&p.kem_prekey).expect("store");
    let first = session::encrypt(&mut p.alice, &p.bob_addr, b"first").expect("encrypt");
    session::decrypt_and_commit(&mut store, &p.alice_addr, &first).expect("decrypt");
    // The first message consumed the one-time prekey: store it again for its row.
    store.store_prekey(&p.one_time_prekey).expect("store");
    let message = session::encrypt(&mut p.alice, &p.bob_addr, b"second").expect("encrypt");
    let g = signal_fuzz::group();
    let skdm =
        group::create_distribution(&mut g.stores[0].clone(), &g.id, &g.addrs[0]).expect("skdm");
    group::process_distribution(&mut store, &p.alice_addr, &skdm).expect("process");
    Fixture {
        store,
        alice: p.alice_addr,
        group: g.id,
        message,
        _dir: dir,
    }
}

thread_local! {
    static FIXTURE: RefCell<Option<Fixture>> = const { RefCell::new(None) };
}

fn set(f: &Fixture, sql: &str, blob: &[u8]) {
    let n = f
        .store
        .connection()
        .execute(sql, params![blob])
        .expect("update");
    assert_eq!(n, 1, "{sql}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, blob)) = data.split_first() else {
        return;
    };
    FIXTURE.with(|cell| {
        let mut cell = cell.borrow_mut();
        let f = cell.get_or_insert_with(fixture);
        match which % sel::COUNT {
            sel::LOCAL_IDENTITY => {
                set(
                    f,
                    "UPDATE local_identity SET key_pair = ?1 WHERE id = 0",
                    blob,
                );
                let _ = f.store.local_identity();
            }
            sel::REMOTE_IDENTITY => {
                set(
                    f,
                    "UPDATE remote_identities SET identity = ?1 WHERE user = 'alice'",
                    blob,
                );
                let _ = f.store.remote_identity(&f.alice);
                let _ = session::decrypt(&f.store, &f.alice, &f.message);
            }
            sel::ONE_TIME_PREKEY => {
                set(f, "UPDATE prekeys SET record = ?1", blob);
                let _ = f.store.load_prekey(1);
                let _ = f.store.prekey_count();
            }
            sel::SIGNED_PREKEY => {
                set(f, "UPDATE signed_prekeys SET record = ?1", blob);
                let _ = f.store.load_signed_prekey(1);
            }
            sel::KEM_PREKEY => {
                set(f, "UPDATE kem_prekeys SET record = ?1", blob);
                let _ = f.store.load_kem_prekey(1000);
            }
            sel::SESSION => {
                set(
                    f,
                    "UPDATE sessions SET record = ?1 WHERE user = 'alice'",
                    blob,
                );
                if f.store.load_session(&f.alice).is_ok() {
                    let _ = session::decrypt(&f.store, &f.alice, &f.message);
                    // Encrypting commits; the next input overwrites the row anyway.
                    let _ = session::encrypt(&mut f.store, &f.alice, b"reply");
                }
            }
            _ => {
                set(
                    f,
                    "UPDATE sender_keys SET record = ?1 WHERE user = 'alice'",
                    blob,
                );
                if f.store.load_sender_key(&f.group, &f.alice).is_ok() {
                    let _ = f.store.sender_key_senders(&f.group);
                    let _ = group::encrypt(&mut f.store, &f.group, &f.alice, b"x");
                }
            }
        }
    });
});
