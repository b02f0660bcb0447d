//! Property test: random interleavings of sends both ways with loss, reordering and
//! duplication. Every delivered message decrypts exactly once or fails with the right
//! typed error, and a failure leaves the serialized state byte-identical.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{HashSet, VecDeque};

use common::pair;
use proptest::prelude::*;
use signal_core::SessionError;
use signal_core::limits::MAX_RECEIVER_CHAINS;

#[derive(Debug, Clone)]
enum Op {
    /// Alice (false) or Bob (true) sends a message.
    Send(bool),
    /// Deliver the in-flight message picked by the index (to its recipient).
    Deliver(prop::sample::Index),
    /// Deliver an already-delivered message again.
    Replay(prop::sample::Index),
    /// Lose an in-flight message.
    Drop(prop::sample::Index),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<bool>().prop_map(Op::Send),
        4 => any::<prop::sample::Index>().prop_map(Op::Deliver),
        1 => any::<prop::sample::Index>().prop_map(Op::Replay),
        1 => any::<prop::sample::Index>().prop_map(Op::Drop),
    ]
}

struct Msg {
    from_bob: bool,
    wire: Vec<u8>,
    plaintext: Vec<u8>,
    ratchet_key: Vec<u8>,
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn interleavings_with_loss_reorder_and_duplication(ops in prop::collection::vec(op(), 1..80)) {
        let (mut alice, mut bob) = pair();
        let (a, b) = (alice.addr.clone(), bob.addr.clone());
        let mut in_flight: Vec<Msg> = Vec::new();
        let mut delivered: Vec<Msg> = Vec::new();
        let mut bob_has_session = false;
        // Receiving chains each side holds, in the order they were created.
        let mut chains: [VecDeque<Vec<u8>>; 2] = [VecDeque::new(), VecDeque::new()];
        let mut evicted: [HashSet<Vec<u8>>; 2] = [HashSet::new(), HashSet::new()];
        let mut n = 0u32;

        for op in ops {
            match op {
                Op::Send(from_bob) => {
                    if from_bob && !bob_has_session {
                        continue;
                    }
                    n += 1;
                    let plaintext = format!("m{n}").into_bytes();
                    let wire = if from_bob { bob.encrypt(&a, &plaintext) } else { alice.encrypt(&b, &plaintext) };
                    // Ratchet key sits at a fixed offset in the inner message.
                    let inner_start = wire.len() - (2 + 33 + 8 + plaintext.len() + 16);
                    let ratchet_key = wire[inner_start + 2..inner_start + 35].to_vec();
                    in_flight.push(Msg { from_bob, wire, plaintext, ratchet_key });
                }
                Op::Drop(i) => {
                    if !in_flight.is_empty() {
                        in_flight.remove(i.index(in_flight.len()));
                    }
                }
                Op::Deliver(i) => {
                    if in_flight.is_empty() {
                        continue;
                    }
                    let msg = in_flight.remove(i.index(in_flight.len()));
                    let side = usize::from(msg.from_bob);
                    let (receiver, from) = if msg.from_bob { (&mut alice, &b) } else { (&mut bob, &a) };
                    let before = receiver.snapshot(from);
                    let res = receiver.decrypt(from, &msg.wire);
                    if evicted[side].contains(&msg.ratchet_key) {
                        prop_assert!(res.is_err(), "message on an evicted chain decrypted");
                        prop_assert_eq!(receiver.snapshot(from), before);
                    } else {
                        prop_assert_eq!(res.unwrap(), msg.plaintext.clone());
                        if !msg.from_bob {
                            bob_has_session = true;
                        }
                        if !chains[side].contains(&msg.ratchet_key) {
                            chains[side].push_back(msg.ratchet_key.clone());
                            if chains[side].len() > MAX_RECEIVER_CHAINS {
                                let old = chains[side].pop_front().unwrap();
                                evicted[side].insert(old);
                            }
                        }
                        delivered.push(msg);
                    }
                }
                Op::Replay(i) => {
                    if delivered.is_empty() {
                        continue;
                    }
                    let msg = &delivered[i.index(delivered.len())];
                    let side = usize::from(msg.from_bob);
                    let (receiver, from) = if msg.from_bob { (&mut alice, &b) } else { (&mut bob, &a) };
                    let before = receiver.snapshot(from);
                    let res = receiver.decrypt(from, &msg.wire);
                    if evicted[side].contains(&msg.ratchet_key) {
                        prop_assert!(res.is_err());
                    } else {
                        prop_assert!(
                            matches!(res, Err(SessionError::DuplicateMessage { .. })),
                            "replay gave {:?}", res
                        );
                    }
                    prop_assert_eq!(receiver.snapshot(from), before, "a rejected replay changed state");
                }
            }
        }
    }
}
