//! Peer comparison: the same workloads as our protocol benches, run on
//! vodozemac 0.11 (Olm for 1:1 sessions, Megolm for groups).
//!
//! Olm and Megolm are both measured on their *default* session configuration:
//! Olm/Megolm `SessionConfig::version_1()` (AES-256-CBC + HMAC-SHA-256
//! truncated to 8 bytes; Megolm messages are additionally Ed25519-signed).
//!
//! Caveats for reading the numbers:
//! - Olm session setup is plain 3DH (X25519 only). There is no post-quantum
//!   KEM and no signed-prekey signature check inside vodozemac (Matrix verifies
//!   one-time-key signatures at a higher layer), so it does strictly less work
//!   than a PQXDH handshake.
//! - Nothing is serialised to wire bytes; we pass the typed message structs
//!   (`OlmMessage`, `MegolmMessage`) directly from sender to receiver.

// Benchmarks abort loudly on setup failures; that is the desired behaviour.
#![allow(clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use vodozemac::Curve25519PublicKey;
use vodozemac::megolm::{self, GroupSession, InboundGroupSession, MegolmMessage};
use vodozemac::olm::{self, Account, OlmMessage, Session};

const MSG_100B: [u8; 100] = [0x42; 100];
const ONE_MIB: usize = 1 << 20;
/// Megolm ciphertexts are produced (untimed) in chunks of this size, then
/// decrypted (timed) in order.
const GROUP_DECRYPT_CHUNK: u64 = 1024;

/// Register every vodozemac peer benchmark with `c`.
pub fn register(c: &mut Criterion) {
    bench_session_setup(c);
    bench_encrypt_decrypt(c);
    bench_ratchet_step(c);
    bench_encrypt_1mib(c);
    bench_group_encrypt(c);
    bench_group_decrypt(c);
}

/// Generate (and publish) one fresh one-time key on `account`.
fn fresh_one_time_key(account: &mut Account) -> Curve25519PublicKey {
    let key = account
        .generate_one_time_keys(1)
        .created
        .pop()
        .expect("one-time key generated");
    account.mark_keys_as_published();
    key
}

/// Full Olm handshake. Returns `(alice, bob)`; Bob has already replied once
/// and Alice has decrypted that reply, so both sides send `Normal` messages.
fn established_pair() -> (Session, Session) {
    let alice = Account::new();
    let mut bob = Account::new();
    let otk = fresh_one_time_key(&mut bob);

    let mut alice_s = alice
        .create_outbound_session(olm::SessionConfig::version_1(), bob.curve25519_key(), otk)
        .expect("outbound session");
    let OlmMessage::PreKey(pre_key) = alice_s.encrypt(MSG_100B).expect("encrypt") else {
        panic!("first message must be a pre-key message");
    };
    let inbound = bob
        .create_inbound_session(
            olm::SessionConfig::version_1(),
            alice.curve25519_key(),
            &pre_key,
        )
        .expect("inbound session");
    assert_eq!(inbound.plaintext, MSG_100B);
    let mut bob_s = inbound.session;

    let reply = bob_s.encrypt(MSG_100B).expect("encrypt reply");
    assert_eq!(alice_s.decrypt(&reply).expect("decrypt reply"), MSG_100B);

    // Alice's next message must now be a normal (non-pre-key) message; deliver
    // it so both chains are in sync (no skipped message keys).
    let probe = alice_s.encrypt(MSG_100B).expect("encrypt");
    assert!(
        matches!(probe, OlmMessage::Normal(_)),
        "session not established"
    );
    assert_eq!(bob_s.decrypt(&probe).expect("decrypt probe"), MSG_100B);
    (alice_s, bob_s)
}

/// Timed: Alice `create_outbound_session` (ephemeral base key + 3DH + first
/// ratchet key) + encrypt a 100 B pre-key message; Bob `create_inbound_session`
/// (3DH + ratchet init + decrypt of that message, consumes the one-time key).
/// Not timed: Bob generating/publishing the one-time key for each iteration
/// (it is consumed by the handshake); both long-term Accounts are reused.
fn bench_session_setup(c: &mut Criterion) {
    let alice = Account::new();
    let alice_identity = alice.curve25519_key();
    let mut bob = Account::new();
    let bob_identity = bob.curve25519_key();
    bob.generate_one_time_keys(50);
    bob.mark_keys_as_published();

    c.bench_function("vodozemac_session_setup", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let otk = fresh_one_time_key(&mut bob);
                let start = Instant::now();

                let mut alice_s = alice
                    .create_outbound_session(
                        olm::SessionConfig::version_1(),
                        black_box(bob_identity),
                        black_box(otk),
                    )
                    .expect("outbound session");
                let OlmMessage::PreKey(pre_key) =
                    alice_s.encrypt(black_box(&MSG_100B)).expect("encrypt")
                else {
                    panic!("first message must be a pre-key message");
                };
                let inbound = bob
                    .create_inbound_session(
                        olm::SessionConfig::version_1(),
                        alice_identity,
                        black_box(&pre_key),
                    )
                    .expect("inbound session");

                total += start.elapsed();
                black_box((alice_s, inbound));
            }
            total
        });
    });
}

/// Established session, Alice → Bob only: encrypt + decrypt of one 100 B
/// message per iteration (symmetric chain step only, no DH ratchet).
fn bench_encrypt_decrypt(c: &mut Criterion) {
    let (mut alice, mut bob) = established_pair();

    c.bench_function("vodozemac_encrypt_decrypt_100B", |b| {
        b.iter(|| {
            let msg = alice.encrypt(black_box(&MSG_100B)).expect("encrypt");
            black_box(bob.decrypt(black_box(&msg)).expect("decrypt"))
        });
    });
}

/// Ping-pong: direction flips every iteration, so every received message
/// carries a new ratchet key and forces a DH ratchet step on the receiver.
/// One iteration = one message (encrypt + decrypt).
fn bench_ratchet_step(c: &mut Criterion) {
    let (mut alice, mut bob) = established_pair();
    let mut alice_turn = true;

    c.bench_function("vodozemac_ratchet_step_100B", |b| {
        b.iter(|| {
            let (tx, rx) = if alice_turn {
                (&mut alice, &mut bob)
            } else {
                (&mut bob, &mut alice)
            };
            alice_turn = !alice_turn;
            let msg = tx.encrypt(black_box(&MSG_100B)).expect("encrypt");
            black_box(rx.decrypt(black_box(&msg)).expect("decrypt"))
        });
    });
}

/// Olm encrypt of a 1 MiB plaintext on an established session.
fn bench_encrypt_1mib(c: &mut Criterion) {
    let (mut alice, _bob) = established_pair();
    let plaintext = vec![0x42u8; ONE_MIB];

    let mut group = c.benchmark_group("vodozemac_encrypt_1MiB");
    group.throughput(Throughput::Bytes(ONE_MIB as u64));
    group.bench_function(BenchmarkId::from_parameter("olm"), |b| {
        b.iter(|| {
            black_box(
                alice
                    .encrypt(black_box(plaintext.as_slice()))
                    .expect("encrypt"),
            )
        });
    });
    group.finish();
}

/// Megolm `GroupSession::encrypt` of 100 B (ratchet advance + AES-CBC/HMAC +
/// Ed25519 signature).
fn bench_group_encrypt(c: &mut Criterion) {
    let mut session = GroupSession::new(megolm::SessionConfig::version_1());

    c.bench_function("vodozemac_group_encrypt_100B", |b| {
        b.iter(|| black_box(session.encrypt(black_box(&MSG_100B))));
    });
}

/// Megolm `InboundGroupSession::decrypt` of 100 B. Every decrypted message has
/// a fresh, strictly increasing index (one ratchet advance each; Ed25519
/// verify + HMAC + AES-CBC), so no replay / out-of-order re-derivation and no
/// error paths are measured. Ciphertexts are generated outside the timing.
fn bench_group_decrypt(c: &mut Criterion) {
    let mut outbound = GroupSession::new(megolm::SessionConfig::version_1());
    let mut inbound =
        InboundGroupSession::new(&outbound.session_key(), megolm::SessionConfig::version_1());
    let mut next_index: u32 = outbound.message_index();

    c.bench_function("vodozemac_group_decrypt_100B", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut remaining = iters;
            while remaining > 0 {
                let n = remaining.min(GROUP_DECRYPT_CHUNK);
                remaining -= n;
                let batch: Vec<MegolmMessage> =
                    (0..n).map(|_| outbound.encrypt(MSG_100B)).collect();

                let start = Instant::now();
                for msg in &batch {
                    black_box(inbound.decrypt(black_box(msg)).expect("decrypt"));
                }
                total += start.elapsed();

                // Sanity (untimed): indices were fresh and contiguous.
                let last = batch.last().map_or(next_index, |m| m.message_index());
                assert_eq!(
                    last + 1,
                    next_index + n as u32,
                    "non-contiguous megolm indices"
                );
                next_index = outbound.message_index();
            }
            total
        });
    });
}
