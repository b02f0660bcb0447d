//! Several processes on one database: a receiver killed with SIGKILL at random moments
//! loses no reported commit, and two concurrent receivers lose nothing.
//!
//! The child processes are this test binary run again with `SESSION_STORE_TEST_ROLE`
//! set: `child_entry` then receives messages in a loop, committing each plaintext in
//! the same transaction as the session state, and prints `done <id>` after each commit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use session_store::{EnvKey, SqlStore};
use signal_core::{SessionError, StoreError, session};

const ROLE: &str = "SESSION_STORE_TEST_ROLE";
const DB: &str = "SESSION_STORE_TEST_DB";
const MESSAGES: &str = "SESSION_STORE_TEST_MESSAGES";
const KEY_VAR: &str = "SESSION_STORE_TEST_KEY";

/// Crash test size, as the issue asks.
const CRASH_MESSAGES: usize = 10_000;
const MIN_KILLS: usize = 20;
const CONCURRENT_MESSAGES: usize = 1_500;

fn message_body(id: usize) -> Vec<u8> {
    format!("message number {id}").into_bytes()
}

/// Sets up Bob's database with an inbox and writes `n` messages from Alice to a file
/// (each as a u32 length and the bytes).
fn prepare(dir: &Path, n: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    let db = dir.join("bob.db");
    let (mut bob, mut alice) = established(&db);
    create_inbox(&mut bob);
    drop(bob);
    let mut out = Vec::new();
    for id in 0..n {
        let w = session::encrypt(&mut alice, &bob_addr(), &message_body(id)).unwrap();
        out.extend_from_slice(&u32::try_from(w.len()).unwrap().to_le_bytes());
        out.extend_from_slice(&w);
    }
    let messages = dir.join("messages.bin");
    fs::write(&messages, out).unwrap();
    (db, messages)
}

fn read_messages(path: &Path) -> Vec<Vec<u8>> {
    let bytes = fs::read(path).unwrap();
    let mut rest = &bytes[..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        out.push(rest[4..4 + len].to_vec());
        rest = &rest[4 + len..];
    }
    out
}

/// The child side. Does nothing unless started by a parent test.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    assert_eq!(role, "receiver");
    let db = std::env::var(DB).unwrap();
    let messages = read_messages(Path::new(&std::env::var(MESSAGES).unwrap()));
    // The key arrives through the environment, as a service would get it.
    let mut store = SqlStore::open(&db, &EnvKey::new(KEY_VAR)).unwrap();
    loop {
        let next: i64 = store
            .connection()
            .query_row("SELECT coalesce(max(id) + 1, 0) FROM app_inbox", [], |r| {
                r.get(0)
            })
            .unwrap();
        let next = usize::try_from(next).unwrap();
        if next >= messages.len() {
            break;
        }
        match receive(&mut store, next as u64, &messages[next]) {
            Ok(()) => println!("done {next}"),
            // Another process committed this message first: it is already stored.
            Err(SessionError::Store(StoreError::Conflict { .. }))
            | Err(SessionError::DuplicateMessage { .. }) => {}
            Err(e) => panic!("receiving {next} failed: {e:?}"),
        }
    }
}

fn spawn_receiver(db: &Path, messages: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["child_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, "receiver")
        .env(DB, db)
        .env(MESSAGES, messages)
        .env(KEY_VAR, KEY_HEX)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// The test harness may print `test child_entry ... ` on the same line as the first
/// report, so the marker is searched for anywhere in the line.
fn parse_done(line: &str) -> Option<u64> {
    line.split_once("done ")
        .map(|(_, n)| n.trim().parse().unwrap())
}

/// A small xorshift generator seeded from the clock; the seed is printed so a failing
/// run can be reproduced by reading it off the log.
struct Rng(u64);
impl Rng {
    fn new() -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        eprintln!("crash test seed {seed}");
        Self(seed)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Checks the database after a child ended: it opens, `integrity_check` is ok, every
/// reported commit is there with the right plaintext, and ids are contiguous.
fn check_after(db: &Path, reported: &BTreeSet<u64>) -> usize {
    let store = SqlStore::open(db, &raw_key()).unwrap();
    store.integrity_check().unwrap();
    let ids = inbox_ids(&store);
    let stored: BTreeSet<u64> = ids.iter().copied().collect();
    assert!(
        reported.is_subset(&stored),
        "reported commits missing: {:?}",
        reported.difference(&stored).take(5).collect::<Vec<_>>()
    );
    assert!(
        ids.iter().copied().eq(0..ids.len() as u64),
        "gap in inbox ids"
    );
    let mut stmt = store
        .connection()
        .prepare("SELECT id, body FROM app_inbox")
        .unwrap();
    for row in stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .unwrap()
    {
        let (id, body) = row.unwrap();
        assert_eq!(body, message_body(id as usize));
    }
    ids.len()
}

#[test]
fn sigkill_at_random_moments_loses_no_reported_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (db, messages) = prepare(dir.path(), CRASH_MESSAGES);
    let mut rng = Rng::new();
    let mut reported = BTreeSet::new();
    for kill in 0..MIN_KILLS {
        let mut child = spawn_receiver(&db, &messages);
        let mut out = BufReader::new(child.stdout.take().unwrap());
        // Let it commit a random number of messages, then kill it after a random delay,
        // which lands anywhere in a commit.
        let wait_for = 1 + rng.below(250);
        let mut seen = 0;
        let mut line = String::new();
        while seen < wait_for {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                break;
            }
            if let Some(id) = parse_done(&line) {
                reported.insert(id);
                seen += 1;
            }
        }
        std::thread::sleep(Duration::from_micros(rng.below(3_000)));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        // Whatever it reported before dying counts as reported.
        let mut rest = String::new();
        out.read_to_string(&mut rest).unwrap();
        reported.extend(rest.lines().filter_map(parse_done));
        let stored = check_after(&db, &reported);
        eprintln!(
            "kill {kill}: {stored} messages stored, {} reported",
            reported.len()
        );
        assert!(
            stored < CRASH_MESSAGES,
            "the child finished before kill {kill}"
        );
    }
    // Finally let a receiver run to the end.
    let child = spawn_receiver(&db, &messages);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    reported.extend(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(parse_done),
    );
    assert_eq!(check_after(&db, &reported), CRASH_MESSAGES);
}

#[test]
fn two_processes_receiving_concurrently_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (db, messages) = prepare(dir.path(), CONCURRENT_MESSAGES);
    let a = spawn_receiver(&db, &messages);
    let b = spawn_receiver(&db, &messages);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success());
    let ids = |o: &std::process::Output| -> Vec<u64> {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(parse_done)
            .collect()
    };
    let (from_a, from_b) = (ids(&a), ids(&b));
    eprintln!("process a committed {}, b {}", from_a.len(), from_b.len());
    let all: BTreeSet<u64> = from_a.iter().chain(&from_b).copied().collect();
    // No message committed twice, none lost.
    assert_eq!(all.len(), from_a.len() + from_b.len());
    assert_eq!(all.len(), CONCURRENT_MESSAGES);
    assert_eq!(check_after(&db, &all), CONCURRENT_MESSAGES);
}
