//! The first connections of a process, opened by several threads at once, all get
//! SQLCipher's full initialisation (`sqlcipher_export` registered).
//!
//! This test binary holds this one test, so its stores are the first connections the
//! process opens: SQLite marks itself initialised before SQLCipher registers
//! `sqlcipher_export`, and a store opened by a second thread in that window could not
//! export a backup (a CI failure before the store finished the initialisation in a
//! `Once`).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Barrier};
use std::thread;

use session_store::SqlStore;
use signal_core::IdentityKeyPair;

#[test]
fn concurrent_first_opens_can_all_export_backups() {
    const THREADS: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let start = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|i| {
            let start = Arc::clone(&start);
            let path = dir.path().join(format!("s{i}.db"));
            let backup = dir.path().join(format!("s{i}.backup"));
            thread::spawn(move || {
                let identity = IdentityKeyPair::generate().unwrap();
                start.wait();
                let store = SqlStore::create(&path, &common::raw_key(), &identity, 1).unwrap();
                store.export_backup(&backup, b"pass").unwrap();
                backup.exists()
            })
        })
        .collect();
    for worker in workers {
        assert!(worker.join().unwrap());
    }
}
