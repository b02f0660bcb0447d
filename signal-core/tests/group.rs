//! Property tests of sender-key groups: random send order, loss, reordering,
//! duplication and rotation across senders; forgeries and tampering rejected with the
//! state unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;

use ed25519_dalek::{Signer, SigningKey};
use signal_core::group::{self, GroupId, SenderKeyDistributionMessage};
use signal_core::store::{InMemoryStore, SenderKeyStore};
use signal_core::{Address, GroupError, IdentityKeyPair};

/// Tiny deterministic generator for delivery schedules (proptest supplies the seed).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

struct Member {
    address: Address,
    store: InMemoryStore,
}

fn members(device_counts: &[u32]) -> Vec<Member> {
    let mut out = Vec::new();
    for (u, &n) in device_counts.iter().enumerate() {
        for d in 1..=n {
            let identity = IdentityKeyPair::generate().unwrap();
            out.push(Member {
                address: Address::new(format!("user{u}"), d).unwrap(),
                store: InMemoryStore::new(identity, 1),
            });
        }
    }
    out
}

/// Delivers `skdm` from `sender` to every other member directly (the 1:1 transport is
/// exercised by the fan-out and membership tests).
fn hand_out(all: &mut [Member], sender: usize, skdm: &SenderKeyDistributionMessage) {
    let from = all[sender].address.clone();
    let bytes = skdm.encode();
    for (i, m) in all.iter_mut().enumerate() {
        if i != sender {
            let decoded = SenderKeyDistributionMessage::decode(&bytes).unwrap();
            group::process_distribution(&mut m.store, &from, &decoded).unwrap();
        }
    }
}

fn snapshot(store: &InMemoryStore, group: &GroupId, sender: &Address) -> Vec<u8> {
    store
        .load_sender_key(group, sender)
        .unwrap()
        .map(|r| r.encode().to_vec())
        .unwrap_or_default()
}

#[derive(Debug, Clone)]
enum Op {
    Send(usize),
    Rotate(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..64).prop_map(Op::Send),
        1 => (0usize..64).prop_map(Op::Rotate),
    ]
}

struct Sent {
    sender: usize,
    chain_seq: usize,
    bytes: Vec<u8>,
    plaintext: Vec<u8>,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Up to 10 members with 1–3 devices each. Every message delivered to a current
    /// member's device decrypts exactly once (later copies are duplicates), whatever
    /// the order, loss and duplication, as long as its chain is among the newest
    /// `MAX_SENDER_KEY_STATES` of its sender.
    #[test]
    fn delivered_messages_decrypt_exactly_once(
        device_counts in prop::collection::vec(1u32..=3, 2..=10),
        ops in prop::collection::vec(op(), 1..14),
        seed in any::<u64>(),
    ) {
        let group = GroupId::generate().unwrap();
        let mut all = members(&device_counts);
        let n = all.len();
        let mut chain_seq = vec![0usize; n];
        for i in 0..n {
            let skdm = { let a = all[i].address.clone(); group::create_distribution(&mut all[i].store, &group, &a) }.unwrap();
            hand_out(&mut all, i, &skdm);
        }
        let mut sent: Vec<Sent> = Vec::new();
        for (k, op) in ops.iter().enumerate() {
            match *op {
                Op::Send(s) => {
                    let s = s % n;
                    let own = all[s].address.clone();
                    let plaintext = format!("message {k} from {own}").into_bytes();
                    let bytes = group::encrypt(&mut all[s].store, &group, &own, &plaintext).unwrap();
                    sent.push(Sent { sender: s, chain_seq: chain_seq[s], bytes, plaintext });
                }
                Op::Rotate(s) => {
                    let s = s % n;
                    let own = all[s].address.clone();
                    let skdm = group::rotate(&mut all[s].store, &group, &own).unwrap();
                    chain_seq[s] += 1;
                    hand_out(&mut all, s, &skdm);
                }
            }
        }
        let mut rng = SplitMix(seed);
        for r in 0..n {
            // Each message: lost (1/5), delivered twice (1/5) or once; then shuffled.
            let mut deliveries = Vec::new();
            for (k, m) in sent.iter().enumerate() {
                if m.sender == r {
                    continue;
                }
                match rng.below(5) {
                    0 => {}
                    1 => deliveries.extend([k, k]),
                    _ => deliveries.push(k),
                }
            }
            rng.shuffle(&mut deliveries);
            let mut seen = vec![false; sent.len()];
            for k in deliveries {
                let m = &sent[k];
                let from = all[m.sender].address.clone();
                let evicted = chain_seq[m.sender] - m.chain_seq >= signal_core::limits::MAX_SENDER_KEY_STATES;
                let before = snapshot(&all[r].store, &group, &from);
                let result = group::decrypt_and_commit(&mut all[r].store, &group, &from, &m.bytes);
                if evicted {
                    prop_assert!(matches!(result, Err(GroupError::UnknownChain { .. })), "{result:?}");
                } else if seen[k] {
                    prop_assert!(matches!(result, Err(GroupError::DuplicateMessage { .. })), "{result:?}");
                } else {
                    prop_assert_eq!(&result.unwrap()[..], &m.plaintext[..]);
                    seen[k] = true;
                    continue;
                }
                prop_assert_eq!(before, snapshot(&all[r].store, &group, &from));
            }
        }
    }

    /// Tampered bytes, a forged signature (a real member's chain key signing another
    /// sender's message), a message attributed to the wrong sender, and a chain id
    /// swapped for another chain of the same sender are all rejected, and the
    /// receiver's state is byte-for-byte unchanged; the genuine message still decrypts
    /// afterwards.
    #[test]
    fn forgeries_and_tampering_are_rejected_without_state_change(
        len in 0usize..200,
        flip_at in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let group = GroupId::generate().unwrap();
        let mut all = members(&[1, 1, 1]);
        for i in 0..3 {
            let skdm = { let a = all[i].address.clone(); group::create_distribution(&mut all[i].store, &group, &a) }.unwrap();
            hand_out(&mut all, i, &skdm);
        }
        let (alice, mallory) = (all[0].address.clone(), all[1].address.clone());
        // Alice rotates once so she has two chains at the receiver.
        let old_chain = group::encrypt(&mut all[0].store, &group, &alice, b"old").unwrap();
        let skdm = group::rotate(&mut all[0].store, &group, &alice).unwrap();
        hand_out(&mut all, 0, &skdm);
        let plaintext = vec![0x5a; len];
        let genuine = group::encrypt(&mut all[0].store, &group, &alice, &plaintext).unwrap();

        let mut forgeries: Vec<(Vec<u8>, &Address, &'static str)> = Vec::new();
        // One flipped bit anywhere.
        let mut flipped = genuine.clone();
        flipped[flip_at.index(genuine.len())] ^= 1 << bit;
        forgeries.push((flipped, &alice, "tampered"));
        // Mallory re-signs Alice's message with her own chain's signing key, which
        // she holds as a member (read from her record's secret encoding).
        let record = all[1].store.load_sender_key(&group, &mallory).unwrap().unwrap().encode();
        let secret: [u8; 32] = record[2 + 4 + 4 + 4 + 32 + 32 + 1..][..32].try_into().unwrap();
        let mallory_key = SigningKey::from_bytes(&secret);
        let mut forged = genuine[..genuine.len() - 64].to_vec();
        let sig = mallory_key.sign(&forged).to_bytes();
        forged.extend_from_slice(&sig);
        forgeries.push((forged.clone(), &alice, "forged signature"));
        // Mallory's genuinely signed message, attributed to Alice.
        let mallory_msg = group::encrypt(&mut all[1].store, &group, &mallory, b"hi").unwrap();
        forgeries.push((mallory_msg, &alice, "wrong sender"));
        // Alice's message with the chain id of her old chain.
        let mut swapped = genuine.clone();
        swapped[2..6].copy_from_slice(&old_chain[2..6]);
        forgeries.push((swapped, &alice, "wrong chain"));
        // Truncated and extended.
        forgeries.push((genuine[..genuine.len() - 1].to_vec(), &alice, "truncated"));
        let mut extended = genuine.clone();
        extended.push(0);
        forgeries.push((extended, &alice, "extended"));

        let receiver = &mut all[2];
        for (bytes, from, what) in &forgeries {
            let before = snapshot(&receiver.store, &group, from);
            let result = group::decrypt_and_commit(&mut receiver.store, &group, from, bytes);
            prop_assert!(result.is_err(), "{} accepted", what);
            if *what == "forged signature" {
                prop_assert!(matches!(result, Err(GroupError::BadSignature)), "{:?}", result);
            }
            prop_assert_eq!(before, snapshot(&receiver.store, &group, from), "{} changed state", what);
        }
        prop_assert_eq!(
            &group::decrypt_and_commit(&mut receiver.store, &group, &alice, &genuine).unwrap()[..],
            &plaintext[..]
        );
        prop_assert_eq!(
            &group::decrypt_and_commit(&mut receiver.store, &group, &alice, &old_chain).unwrap()[..],
            b"old"
        );
    }
}

#[test]
fn bounds_match_the_one_to_one_limits() {
    use signal_core::limits::{MAX_FORWARD_JUMP, MAX_SKIPPED_KEYS_PER_CHAIN};
    let group = GroupId::generate().unwrap();
    let mut all = members(&[1, 1]);
    let skdm = {
        let a = all[0].address.clone();
        group::create_distribution(&mut all[0].store, &group, &a)
    }
    .unwrap();
    hand_out(&mut all, 0, &skdm);
    let alice = all[0].address.clone();
    let first = group::encrypt(&mut all[0].store, &group, &alice, b"first").unwrap();
    let mut msgs = Vec::new();
    for i in 0..MAX_SKIPPED_KEYS_PER_CHAIN + 1 {
        msgs.push(
            group::encrypt(&mut all[0].store, &group, &alice, format!("{i}").as_bytes()).unwrap(),
        );
    }
    let last = msgs.pop().unwrap();
    // Jumping to iteration 2001 stores 2001 skipped keys; the oldest (iteration 0) is evicted.
    assert_eq!(
        &group::decrypt_and_commit(&mut all[1].store, &group, &alice, &last).unwrap()[..],
        b"2000"
    );
    assert!(matches!(
        group::decrypt_and_commit(&mut all[1].store, &group, &alice, &first),
        Err(GroupError::DuplicateMessage { iteration: 0 })
    ));
    assert_eq!(
        &group::decrypt_and_commit(&mut all[1].store, &group, &alice, &msgs[0]).unwrap()[..],
        b"0"
    );
    assert_eq!(
        &group::decrypt_and_commit(&mut all[1].store, &group, &alice, &msgs[1999]).unwrap()[..],
        b"1999"
    );

    // Forward jump: exactly MAX_FORWARD_JUMP ahead is accepted, one more is refused.
    let mut bob = members(&[1, 1]);
    let skdm = {
        let a = bob[0].address.clone();
        group::create_distribution(&mut bob[0].store, &group, &a)
    }
    .unwrap();
    hand_out(&mut bob, 0, &skdm);
    let b = bob[0].address.clone();
    let mut far = Vec::new();
    for _ in 0..=MAX_FORWARD_JUMP + 1 {
        far.push(group::encrypt(&mut bob[0].store, &group, &b, b"x").unwrap());
    }
    let too_far = &far[MAX_FORWARD_JUMP as usize + 1];
    let before = snapshot(&bob[1].store, &group, &b);
    assert!(matches!(
        group::decrypt_and_commit(&mut bob[1].store, &group, &b, too_far),
        Err(GroupError::TooFarAhead { jump, limit, .. }) if jump == MAX_FORWARD_JUMP + 1 && limit == MAX_FORWARD_JUMP
    ));
    assert_eq!(before, snapshot(&bob[1].store, &group, &b));
    assert!(
        group::decrypt_and_commit(
            &mut bob[1].store,
            &group,
            &b,
            &far[MAX_FORWARD_JUMP as usize]
        )
        .is_ok()
    );
}

#[test]
fn a_new_member_cannot_read_earlier_messages() {
    let group = GroupId::generate().unwrap();
    let mut all = members(&[1, 1]);
    let alice = all[0].address.clone();
    group::create_distribution(&mut all[0].store, &group, &alice).unwrap();
    let before_join = group::encrypt(&mut all[0].store, &group, &alice, b"before").unwrap();
    // The distribution is taken at the current iteration.
    let skdm = group::create_distribution(&mut all[0].store, &group, &alice).unwrap();
    assert_eq!(skdm.iteration(), 1);
    hand_out(&mut all, 0, &skdm);
    let after_join = group::encrypt(&mut all[0].store, &group, &alice, b"after").unwrap();
    assert!(matches!(
        group::decrypt_and_commit(&mut all[1].store, &group, &alice, &before_join),
        Err(GroupError::DuplicateMessage { iteration: 0 })
    ));
    assert_eq!(
        &group::decrypt_and_commit(&mut all[1].store, &group, &alice, &after_join).unwrap()[..],
        b"after"
    );
}

#[test]
fn records_round_trip_and_debug_hides_keys() {
    let group = GroupId::generate().unwrap();
    let mut all = members(&[1, 1]);
    let alice = all[0].address.clone();
    let skdm = group::create_distribution(&mut all[0].store, &group, &alice).unwrap();
    hand_out(&mut all, 0, &skdm);
    let m0 = group::encrypt(&mut all[0].store, &group, &alice, b"0").unwrap();
    let _m1 = group::encrypt(&mut all[0].store, &group, &alice, b"1").unwrap();
    let m2 = group::encrypt(&mut all[0].store, &group, &alice, b"2").unwrap();
    group::decrypt_and_commit(&mut all[1].store, &group, &alice, &m2).unwrap();
    for member in &all {
        let record = member
            .store
            .load_sender_key(&group, &alice)
            .unwrap()
            .unwrap()
            .into_owned();
        let bytes = record.encode();
        let back = signal_core::group::SenderKeyRecord::decode(&bytes).unwrap();
        assert_eq!(back.encode(), bytes);
        let dbg = format!("{record:?}");
        let chain_key_hex: String = bytes[14..22].iter().map(|b| format!("{b:02x}")).collect();
        assert!(!dbg.contains(&chain_key_hex));
        // Truncation anywhere fails cleanly.
        for cut in 0..bytes.len() {
            assert!(signal_core::group::SenderKeyRecord::decode(&bytes[..cut]).is_err());
        }
    }
    // A decoded record keeps working: skipped iteration 0 still decrypts.
    let record = all[1]
        .store
        .load_sender_key(&group, &alice)
        .unwrap()
        .unwrap()
        .into_owned();
    let mut restored = InMemoryStore::new(IdentityKeyPair::generate().unwrap(), 9);
    restored
        .store_sender_key(
            &group,
            &alice,
            signal_core::group::SenderKeyRecord::decode(&record.encode()).unwrap(),
        )
        .unwrap();
    assert_eq!(
        &group::decrypt_and_commit(&mut restored, &group, &alice, &m0).unwrap()[..],
        b"0"
    );
    // Distribution messages round-trip and refuse trailing bytes.
    let enc = skdm.encode();
    assert_eq!(
        enc.len(),
        signal_core::group::distribution::DISTRIBUTION_MESSAGE_LEN
    );
    assert_eq!(
        SenderKeyDistributionMessage::decode(&enc).unwrap().encode(),
        enc
    );
    let mut longer = enc.to_vec();
    longer.push(0);
    assert!(SenderKeyDistributionMessage::decode(&longer).is_err());
}

#[test]
fn a_decryption_commits_only_once() {
    let group = GroupId::generate().unwrap();
    let mut all = members(&[1, 1]);
    let alice = all[0].address.clone();
    let skdm = group::create_distribution(&mut all[0].store, &group, &alice).unwrap();
    hand_out(&mut all, 0, &skdm);
    let m = group::encrypt(&mut all[0].store, &group, &alice, b"once").unwrap();
    let first = group::decrypt(&all[1].store, &group, &alice, &m).unwrap();
    let second = group::decrypt(&all[1].store, &group, &alice, &m).unwrap();
    group::commit(&mut all[1].store, first).unwrap();
    assert!(matches!(
        group::commit(&mut all[1].store, second),
        Err(signal_core::StoreError::Conflict { .. })
    ));
}

#[test]
fn at_most_max_sender_key_states_chains_are_kept() {
    use signal_core::limits::MAX_SENDER_KEY_STATES;
    let group = GroupId::generate().unwrap();
    let mut all = members(&[1, 1]);
    let alice = all[0].address.clone();
    let mut first_messages = Vec::new();
    for _ in 0..=MAX_SENDER_KEY_STATES {
        let skdm = group::rotate(&mut all[0].store, &group, &alice).unwrap();
        hand_out(&mut all, 0, &skdm);
        first_messages.push(group::encrypt(&mut all[0].store, &group, &alice, b"m").unwrap());
    }
    let record = all[1]
        .store
        .load_sender_key(&group, &alice)
        .unwrap()
        .unwrap()
        .into_owned();
    assert_eq!(record.chain_ids().count(), MAX_SENDER_KEY_STATES);
    // The oldest chain is gone; the other five still decrypt.
    assert!(matches!(
        group::decrypt_and_commit(&mut all[1].store, &group, &alice, &first_messages[0]),
        Err(GroupError::UnknownChain { .. })
    ));
    for m in &first_messages[1..] {
        assert!(group::decrypt_and_commit(&mut all[1].store, &group, &alice, m).is_ok());
    }
    // The sender keeps only its newest chain.
    let own = all[0]
        .store
        .load_sender_key(&group, &alice)
        .unwrap()
        .unwrap()
        .into_owned();
    assert_eq!(own.chain_ids().count(), 1);
}
