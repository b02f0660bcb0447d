//! Nothing that advanced a chain reaches the caller before it is on disk: every
//! encrypt commit on a `SqlStore` syncs the WAL (`synchronous = FULL`) before it
//! returns the ciphertext.
//!
//! The syncs are counted by the kernel, not by the store: this test binary runs again
//! (with `SESSION_STORE_SYNC_MODE` set, entering `sync_child`) under
//! `strace -f -e trace=fsync,fdatasync,openat`, and the child opens two marker paths
//! around its encrypt commits so only the syncs between them are counted. The same
//! child run with the store's connection switched back to the old
//! `synchronous = NORMAL` shows why the setting matters: in WAL mode NORMAL syncs only
//! at checkpoints, so those commits issue no sync at all and a power cut may roll
//! them back (rewinding the sending chain: the next message would reuse a message key
//! and nonce). strace is installed by `scripts/ensure-tools.sh` (run by
//! `scripts/test.sh`); without it this test fails, it does not skip.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use signal_core::session;

const MODE: &str = "SESSION_STORE_SYNC_MODE";
const DIR: &str = "SESSION_STORE_SYNC_DIR";
/// Encrypt commits per child run.
const COMMITS: usize = 20;

fn marker(dir: &Path, name: &str) {
    // Opening a path that does not exist: an `openat` in the trace, nothing else.
    let _ = std::fs::File::open(dir.join(format!("sync-marker-{name}")));
}

/// The child: Bob's store with an established session, then `COMMITS` encrypt
/// commits between the markers.
#[test]
fn sync_child() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    let dir = std::path::PathBuf::from(std::env::var(DIR).unwrap());
    let (mut bob, _alice) = established(&dir.join("bob.db"));
    if mode == "normal" {
        bob.connection()
            .pragma_update(None, "synchronous", "NORMAL")
            .unwrap();
    }
    marker(&dir, "start");
    for _ in 0..COMMITS {
        session::encrypt(&mut bob, &alice_addr(), b"a message").unwrap();
    }
    marker(&dir, "end");
}

/// Runs the child under strace; returns the number of `fsync`/`fdatasync` calls
/// between the markers.
fn syncs_during_commits(mode: &str) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("strace.txt");
    let status = Command::new("strace")
        .args(["-f", "-qq", "-e", "signal=none", "-e"])
        .arg("trace=fsync,fdatasync,openat")
        .arg("-o")
        .arg(&trace)
        .arg(std::env::current_exe().unwrap())
        .args(["sync_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(MODE, mode)
        .env(DIR, dir.path())
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run strace ({e}): install it with scripts/ensure-tools.sh")
        });
    assert!(status.success(), "child under strace failed: {status}");
    let text = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let at = |name: &str| {
        lines
            .iter()
            .position(|l| l.contains(&format!("sync-marker-{name}")))
            .unwrap_or_else(|| panic!("marker {name} not in the trace:\n{text}"))
    };
    let (start, end) = (at("start"), at("end"));
    lines[start..end]
        .iter()
        .filter(|l| l.contains("fsync(") || l.contains("fdatasync("))
        .count()
}

#[test]
fn every_encrypt_commit_syncs_before_returning() {
    let full = syncs_during_commits("full");
    let normal = syncs_during_commits("normal");
    assert!(
        full >= COMMITS,
        "{COMMITS} encrypt commits issued only {full} syncs"
    );
    // The old setting, for comparison: no sync at all, which is the defect.
    assert_eq!(normal, 0, "synchronous = NORMAL synced {normal} times");
}
