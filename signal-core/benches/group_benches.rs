//! Sender-key group benchmarks: `group_encrypt_100B`, `group_decrypt_100B` and
//! `group_fanout_100_members`. Compare with `vodozemac_group_encrypt_100B` /
//! `vodozemac_group_decrypt_100B` from `vodozemac_peer.rs`, measured in the same run.

// Benchmarks abort loudly on setup failures; that is the desired behaviour.
#![allow(clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use signal_core::fanout::{DeviceInfo, UserDevices};
use signal_core::group::{self, GroupId};
use signal_core::prekey::{KemPreKeyRecord, PreKeyBundle, SignedPreKeyRecord};
use signal_core::store::{InMemoryStore, KemPreKeyStore, SignedPreKeyStore};
use signal_core::{Address, IdentityKeyPair, session};

const MSG_100B: [u8; 100] = [0x42; 100];
/// Group ciphertexts are produced (untimed) in chunks of this size, then decrypted
/// (timed) in order, as in the Megolm decrypt bench.
const GROUP_DECRYPT_CHUNK: u64 = 1024;
const FANOUT_MEMBERS: u32 = 100;

/// Registers every group benchmark with `c`.
pub fn register(c: &mut Criterion) {
    bench_group_encrypt(c);
    bench_group_decrypt(c);
    bench_group_fanout(c);
    bench_ed25519_floor(c);
}

/// The floor the group benches sit on: one Ed25519 sign and one verify of a
/// 126-byte message (the signed part of a 100 B group message), nothing else.
fn bench_ed25519_floor(c: &mut Criterion) {
    use ed25519_dalek::{Signer, SigningKey, Verifier};
    let key = SigningKey::from_bytes(&[7; 32]);
    let public = key.verifying_key();
    let message = [0x42u8; 126];
    c.bench_function("group_ed25519_sign_verify_floor", |b| {
        b.iter(|| {
            let sig = key.sign(black_box(&message));
            public.verify(black_box(&message), &sig).expect("verify");
        });
    });
}

fn device(user: &str, id: u32) -> (Address, InMemoryStore) {
    let identity = IdentityKeyPair::generate().expect("identity");
    (
        Address::new(user, id).expect("address"),
        InMemoryStore::new(identity, id),
    )
}

/// A sender with a chain and a receiver holding it.
fn pair(group: &GroupId) -> ((Address, InMemoryStore), (Address, InMemoryStore)) {
    let (alice, mut alice_store) = device("alice", 1);
    let (bob, mut bob_store) = device("bob", 2);
    let skdm = group::create_distribution(&mut alice_store, group, &alice).expect("skdm");
    group::process_distribution(&mut bob_store, &alice, &skdm).expect("process");
    ((alice, alice_store), (bob, bob_store))
}

/// Encrypt 100 B on an established sending chain: chain step, HKDF, AES-256-GCM,
/// Ed25519 sign, store update.
fn bench_group_encrypt(c: &mut Criterion) {
    let group = GroupId::generate().expect("group id");
    let ((alice, mut store), _) = pair(&group);
    c.bench_function("group_encrypt_100B", |b| {
        b.iter(|| {
            black_box(
                group::encrypt(&mut store, &group, &alice, black_box(&MSG_100B)).expect("encrypt"),
            )
        });
    });
}

/// Decrypt-and-commit 100 B, every message the next iteration (no skipped keys):
/// parse, strict Ed25519 verify, chain step, HKDF, AES-256-GCM, store update.
fn bench_group_decrypt(c: &mut Criterion) {
    let group = GroupId::generate().expect("group id");
    let ((alice, mut alice_store), (_, mut bob_store)) = pair(&group);
    c.bench_function("group_decrypt_100B", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut remaining = iters;
            while remaining > 0 {
                let n = remaining.min(GROUP_DECRYPT_CHUNK);
                remaining -= n;
                let batch: Vec<Vec<u8>> = (0..n)
                    .map(|_| {
                        group::encrypt(&mut alice_store, &group, &alice, &MSG_100B)
                            .expect("encrypt")
                    })
                    .collect();
                let start = Instant::now();
                for msg in &batch {
                    black_box(
                        group::decrypt_and_commit(&mut bob_store, &group, &alice, black_box(msg))
                            .expect("decrypt"),
                    );
                }
                total += start.elapsed();
            }
            total
        });
    });
}

/// Distribute the sender's chain to 100 member devices over existing 1:1 sessions:
/// encode the distribution message, reconcile each device's session with the device
/// list, and one Double Ratchet encryption per device.
fn bench_group_fanout(c: &mut Criterion) {
    let group = GroupId::generate().expect("group id");
    let (alice, mut alice_store) = device("alice", 1);
    let mut members = Vec::new();
    for i in 0..FANOUT_MEMBERS {
        let user = format!("member{i}");
        let (addr, mut store) = device(&user, 1);
        let identity = IdentityStoreExt::identity(&store);
        let spk = SignedPreKeyRecord::generate(&identity, 1, 1, 0).expect("spk");
        let kem = KemPreKeyRecord::generate(&identity, 1, 0, true).expect("kem");
        store.store_signed_prekey(&spk).expect("store");
        store.store_kem_prekey(&kem).expect("store");
        let bundle = PreKeyBundle {
            registration_id: 1,
            identity: *identity.public(),
            signed_prekey: spk.public().clone(),
            one_time_prekey: None,
            kem_prekey: kem.public().clone(),
        }
        .verify()
        .expect("bundle");
        session::initiate(&mut alice_store, &addr, &bundle).expect("initiate");
        let hello = session::encrypt(&mut alice_store, &addr, b"hello").expect("encrypt");
        session::decrypt_and_commit(&mut store, &alice, &hello).expect("decrypt");
        let reply = session::encrypt(&mut store, &alice, b"hi").expect("reply");
        session::decrypt_and_commit(&mut alice_store, &addr, &reply).expect("decrypt reply");
        members.push(UserDevices {
            user,
            devices: vec![DeviceInfo {
                device: 1,
                registration_id: 1,
                identity: Some(*identity.public()),
            }],
        });
    }
    group::create_distribution(&mut alice_store, &group, &alice).expect("chain");
    c.bench_function("group_fanout_100_members", |b| {
        b.iter(|| {
            let out = group::distribute(&mut alice_store, &group, &alice, black_box(&members))
                .expect("distribute");
            assert_eq!(out.messages.len(), FANOUT_MEMBERS as usize);
            black_box(out)
        });
    });
}

/// The member's identity key pair, read back from its store.
trait IdentityStoreExt {
    fn identity(&self) -> IdentityKeyPair;
}

impl IdentityStoreExt for InMemoryStore {
    fn identity(&self) -> IdentityKeyPair {
        signal_core::store::IdentityStore::local_identity(self).expect("identity")
    }
}
