//! Protocol benchmarks with stable ids (see BENCHMARKS.md for results and the command).
//!
//! - `session_setup`: Alice verifies Bob's bundle, runs PQXDH (ML-KEM-1024 included) and
//!   encrypts a first message; Bob decrypts it and commits (both sides).
//! - `encrypt_decrypt_100B`: one 100-byte message, same direction, established session.
//! - `ratchet_step_100B`: alternating replies, each carrying a DH ratchet step; time per
//!   message.
//! - `encrypt_1MiB`: encryption throughput.
//! - `decrypt_100B` / `decrypt_ratchet_step_100B`: one honest decrypt (and commit) alone,
//!   on the same chain / of a reply carrying a new ratchet key (one X25519 agreement).
//! - `forged_message_worst_case`: the costliest forged 59-byte message after the
//!   derivation budget (docs/protocol.md §5.4): a fresh ratchet key with `PN = 0` and
//!   `N = MAX_DECRYPT_DERIVATIONS`, sent to a record holding a current session and
//!   `MAX_ARCHIVED_SESSIONS` archived ones. The current session pays one agreement and
//!   the whole budget in chain-key steps; every archived session refuses the jump before
//!   its agreement. (`forged_message_archived_trials` is the other candidate: `N =
//!   MAX_ARCHIVED_DERIVATIONS`, so the current and two archived sessions each pay an
//!   agreement and that walk.)
//!
//! Group benches (`group_*`) live in `group_benches.rs`. vodozemac 0.11 runs the same
//! workloads in the same process (`vodozemac_*` ids).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod group_benches;
mod vodozemac_peer;

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use signal_core::limits::{
    MAX_ARCHIVED_DERIVATIONS, MAX_ARCHIVED_SESSIONS, MAX_DECRYPT_DERIVATIONS,
};
use signal_core::prekey::{KemPreKeyRecord, OneTimePreKeyRecord, PreKeyBundle, SignedPreKeyRecord};
use signal_core::store::{InMemoryStore, KemPreKeyStore, PreKeyStore, SignedPreKeyStore};
use signal_core::{Address, IdentityKeyPair, session};

const MSG_100B: [u8; 100] = [0x42; 100];

struct Parties {
    alice: InMemoryStore,
    bob: InMemoryStore,
    a: Address,
    b: Address,
}

/// Bob's store with fresh prekeys, and his bundle.
fn bob_with_bundle(
    bob_id: &IdentityKeyPair,
    spk: &SignedPreKeyRecord,
) -> (InMemoryStore, PreKeyBundle) {
    let mut bob = InMemoryStore::new(bob_id.clone(), 2);
    bob.store_signed_prekey(spk).unwrap();
    let opk = OneTimePreKeyRecord::generate(bob_id, 1, 0).unwrap();
    let kem = KemPreKeyRecord::generate(bob_id, 1, 0, false).unwrap();
    bob.store_prekey(&opk).unwrap();
    bob.store_kem_prekey(&kem).unwrap();
    let bundle = PreKeyBundle {
        registration_id: 2,
        identity: *bob_id.public(),
        signed_prekey: spk.public().clone(),
        one_time_prekey: Some(opk.public().clone()),
        kem_prekey: kem.public().clone(),
    };
    (bob, bundle)
}

fn established() -> Parties {
    let bob_id = IdentityKeyPair::generate().unwrap();
    let spk = SignedPreKeyRecord::generate(&bob_id, 2, 1, 0).unwrap();
    let (mut bob, bundle) = bob_with_bundle(&bob_id, &spk);
    let mut alice = InMemoryStore::new(IdentityKeyPair::generate().unwrap(), 1);
    let (a, b) = (
        Address::new("alice", 1).unwrap(),
        Address::new("bob", 1).unwrap(),
    );
    session::initiate(&mut alice, &b, &bundle.verify().unwrap()).unwrap();
    let m = session::encrypt(&mut alice, &b, b"hi").unwrap();
    session::decrypt_and_commit(&mut bob, &a, &m).unwrap();
    let r = session::encrypt(&mut bob, &a, b"hi").unwrap();
    session::decrypt_and_commit(&mut alice, &b, &r).unwrap();
    Parties { alice, bob, a, b }
}

fn session_setup(c: &mut Criterion) {
    let bob_id = IdentityKeyPair::generate().unwrap();
    let spk = SignedPreKeyRecord::generate(&bob_id, 2, 1, 0).unwrap();
    let alice_id = IdentityKeyPair::generate().unwrap();
    let (a, b) = (
        Address::new("alice", 1).unwrap(),
        Address::new("bob", 1).unwrap(),
    );
    c.bench_function("session_setup", |bench| {
        bench.iter_batched(
            || {
                let (bob, bundle) = bob_with_bundle(&bob_id, &spk);
                (InMemoryStore::new(alice_id.clone(), 1), bob, bundle)
            },
            |(mut alice, mut bob, bundle)| {
                let verified = bundle.verify().unwrap();
                session::initiate(&mut alice, &b, &verified).unwrap();
                let m = session::encrypt(&mut alice, &b, &MSG_100B).unwrap();
                let p = session::decrypt_and_commit(&mut bob, &a, &m).unwrap();
                black_box(p);
                (alice, bob)
            },
            BatchSize::SmallInput,
        );
    });
}

fn encrypt_decrypt_100b(c: &mut Criterion) {
    let mut p = established();
    c.bench_function("encrypt_decrypt_100B", |bench| {
        bench.iter(|| {
            let m = session::encrypt(&mut p.alice, &p.b, black_box(&MSG_100B)).unwrap();
            black_box(session::decrypt_and_commit(&mut p.bob, &p.a, &m).unwrap());
        });
    });
}

fn ratchet_step_100b(c: &mut Criterion) {
    let mut p = established();
    let mut alice_turn = true;
    c.bench_function("ratchet_step_100B", |bench| {
        bench.iter(|| {
            if alice_turn {
                let m = session::encrypt(&mut p.alice, &p.b, black_box(&MSG_100B)).unwrap();
                black_box(session::decrypt_and_commit(&mut p.bob, &p.a, &m).unwrap());
            } else {
                let m = session::encrypt(&mut p.bob, &p.a, black_box(&MSG_100B)).unwrap();
                black_box(session::decrypt_and_commit(&mut p.alice, &p.b, &m).unwrap());
            }
            alice_turn = !alice_turn;
        });
    });
}

fn encrypt_1mib(c: &mut Criterion) {
    let mut p = established();
    let big = vec![0x5Au8; 1 << 20];
    let mut g = c.benchmark_group("encrypt_1MiB");
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("signal_core", |bench| {
        bench.iter(|| black_box(session::encrypt(&mut p.alice, &p.b, black_box(&big)).unwrap()));
    });
    g.finish();
}

/// Honest decrypts alone: a message on the current chain, and a reply that carries a
/// new ratchet key. Each iteration decrypts a fresh message into a fresh copy of the
/// receiver's store (copy and encryption untimed).
fn honest_decrypt_100b(c: &mut Criterion) {
    let mut p = established();
    let m = session::encrypt(&mut p.alice, &p.b, &MSG_100B).unwrap();
    session::decrypt_and_commit(&mut p.bob, &p.a, &m).unwrap();
    c.bench_function("decrypt_100B", |bench| {
        bench.iter_batched(
            || {
                let mut alice = p.alice.clone();
                let m = session::encrypt(&mut alice, &p.b, &MSG_100B).unwrap();
                (p.bob.clone(), m)
            },
            |(mut bob, m)| black_box(session::decrypt_and_commit(&mut bob, &p.a, &m).unwrap()),
            BatchSize::SmallInput,
        );
    });
    c.bench_function("decrypt_ratchet_step_100B", |bench| {
        bench.iter_batched(
            || {
                let mut bob = p.bob.clone();
                let m = session::encrypt(&mut bob, &p.a, &MSG_100B).unwrap();
                (p.alice.clone(), m)
            },
            |(mut alice, m)| black_box(session::decrypt_and_commit(&mut alice, &p.b, &m).unwrap()),
            BatchSize::SmallInput,
        );
    });
}

/// Bob's store holding a current session with Alice and `MAX_ARCHIVED_SESSIONS`
/// archived ones (Alice started a session `MAX_ARCHIVED_SESSIONS + 1` times, Bob
/// decrypted each first message), and Alice's address.
fn record_with_archived_sessions() -> (InMemoryStore, Address) {
    let bob_id = IdentityKeyPair::generate().unwrap();
    let spk = SignedPreKeyRecord::generate(&bob_id, 2, 1, 0).unwrap();
    let mut bob = InMemoryStore::new(bob_id.clone(), 2);
    bob.store_signed_prekey(&spk).unwrap();
    let mut alice = InMemoryStore::new(IdentityKeyPair::generate().unwrap(), 1);
    let (a, b) = (
        Address::new("alice", 1).unwrap(),
        Address::new("bob", 1).unwrap(),
    );
    for id in 1..=MAX_ARCHIVED_SESSIONS as u32 + 1 {
        let opk = OneTimePreKeyRecord::generate(&bob_id, id, 0).unwrap();
        let kem = KemPreKeyRecord::generate(&bob_id, id, 0, false).unwrap();
        bob.store_prekey(&opk).unwrap();
        bob.store_kem_prekey(&kem).unwrap();
        let bundle = PreKeyBundle {
            registration_id: 2,
            identity: *bob_id.public(),
            signed_prekey: spk.public().clone(),
            one_time_prekey: Some(opk.public().clone()),
            kem_prekey: kem.public().clone(),
        };
        session::initiate(&mut alice, &b, &bundle.verify().unwrap()).unwrap();
        let m = session::encrypt(&mut alice, &b, b"hi").unwrap();
        session::decrypt_and_commit(&mut bob, &a, &m).unwrap();
    }
    (bob, a)
}

/// A 59-byte message (header and a bare tag) with a ratchet key no session of Bob's
/// knows, and the given `PN` and `N`.
fn forged_message(previous_counter: u32, counter: u32) -> Vec<u8> {
    let mut other = established();
    let mut m = session::encrypt(&mut other.alice, &other.b, b"").unwrap();
    m[35..39].copy_from_slice(&previous_counter.to_be_bytes());
    m[39..43].copy_from_slice(&counter.to_be_bytes());
    m.truncate(43 + 16);
    m
}

fn forged_message_worst_case(c: &mut Criterion) {
    let (bob, a) = record_with_archived_sessions();
    for (id, counter) in [
        ("forged_message_worst_case", MAX_DECRYPT_DERIVATIONS),
        ("forged_message_archived_trials", MAX_ARCHIVED_DERIVATIONS),
    ] {
        let forged = forged_message(0, counter);
        assert!(session::decrypt(&bob, &a, &forged).is_err());
        c.bench_function(id, |bench| {
            bench.iter(|| black_box(session::decrypt(&bob, &a, black_box(&forged)).is_err()));
        });
    }
}

fn benches(c: &mut Criterion) {
    session_setup(c);
    encrypt_decrypt_100b(c);
    honest_decrypt_100b(c);
    forged_message_worst_case(c);
    ratchet_step_100b(c);
    encrypt_1mib(c);
    group_benches::register(c);
    vodozemac_peer::register(c);
}

criterion_group!(protocol, benches);
criterion_main!(protocol);
