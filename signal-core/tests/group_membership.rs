//! Membership changes over real 1:1 sessions: distribution fan-out, removal with
//! rotation (a removed member reads nothing sent afterwards), and late messages.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod group_common;

use group_common::{Device, all_users, connect_all, deliver_fanout, new_group};
use signal_core::group::{self, GroupId};
use signal_core::{Address, GroupError};

/// Four users, two devices each, all connected; every device has distributed its
/// chain to every other device over the 1:1 sessions.
fn setup() -> (GroupId, Vec<Device>) {
    let group = new_group();
    let mut devices = Vec::new();
    for (u, user) in ["alice", "bob", "carol", "rob"].iter().enumerate() {
        for d in 1..=2 {
            devices.push(Device::new(user, d, (u as u32 + 1) * 10 + d));
        }
    }
    connect_all(&mut devices);
    let users = all_users(&devices);
    for i in 0..devices.len() {
        let own = devices[i].address.clone();
        let out = group::distribute(&mut devices[i].store, &group, &own, &users).unwrap();
        assert_eq!(out.messages.len(), devices.len() - 1);
        assert!(out.missing_sessions.is_empty());
        deliver_fanout(&mut devices, &own, &out);
    }
    (group, devices)
}

fn send(devices: &mut [Device], i: usize, group: &GroupId, text: &str) -> (Address, Vec<u8>) {
    let own = devices[i].address.clone();
    let bytes = group::encrypt(&mut devices[i].store, group, &own, text.as_bytes()).unwrap();
    (own, bytes)
}

#[test]
fn removed_member_reads_nothing_sent_after_removal() {
    let (group, mut devices) = setup();
    let n = devices.len();
    fn is_rob(d: &Device) -> bool {
        d.address.user() == "rob"
    }

    // Before the removal everyone reads everyone.
    let mut before = Vec::new();
    for i in 0..n {
        before.push(send(&mut devices, i, &group, &format!("before {i}")));
    }
    for (i, (from, bytes)) in before.iter().enumerate() {
        for (j, d) in devices.iter_mut().enumerate() {
            if i != j {
                let pt = group::decrypt_and_commit(&mut d.store, &group, from, bytes).unwrap();
                assert_eq!(pt.as_slice(), format!("before {i}").as_bytes());
            }
        }
    }
    // Sent before the rotation, delivered after it.
    let mut late = Vec::new();
    for i in 0..n {
        if !is_rob(&devices[i]) {
            late.push(send(&mut devices, i, &group, &format!("late {i}")));
        }
    }

    // Rob is removed: every remaining device rotates and redistributes in one call.
    let remaining: Vec<_> = all_users(&devices)
        .into_iter()
        .filter(|u| u.user != "rob")
        .collect();
    for i in 0..n {
        if is_rob(&devices[i]) {
            continue;
        }
        let own = devices[i].address.clone();
        let out =
            group::remove_member(&mut devices[i].store, &group, &own, "rob", &remaining).unwrap();
        assert!(out.messages.iter().all(|m| m.address.user() != "rob"));
        assert_eq!(out.messages.len(), 5);
        let got = deliver_fanout(&mut devices, &own, &out);
        assert!(got.iter().all(|a| a.user() != "rob"));
    }

    // Every later message: remaining members decrypt, Rob's devices fail, state intact.
    for round in 0..3 {
        for i in 0..n {
            if is_rob(&devices[i]) {
                continue;
            }
            let text = format!("after {round} {i}");
            let (from, bytes) = send(&mut devices, i, &group, &text);
            for (j, d) in devices.iter_mut().enumerate() {
                if i == j {
                    continue;
                }
                let result = group::decrypt_and_commit(&mut d.store, &group, &from, &bytes);
                if d.address.user() == "rob" {
                    assert!(
                        matches!(result, Err(GroupError::UnknownChain { .. })),
                        "{result:?}"
                    );
                } else {
                    assert_eq!(result.unwrap().as_slice(), text.as_bytes());
                }
            }
        }
    }

    // Late messages from before the rotation still decrypt for remaining members.
    for (from, bytes) in &late {
        for d in devices.iter_mut().filter(|d| d.address.user() != "rob") {
            if d.address == *from {
                continue;
            }
            let pt = group::decrypt_and_commit(&mut d.store, &group, from, bytes).unwrap();
            assert!(pt.starts_with(b"late "));
        }
    }

    // Rob can still send on his old chain, but nobody accepts it any more.
    let rob = devices.iter().position(is_rob).unwrap();
    let (from, bytes) = send(&mut devices, rob, &group, "still here?");
    for d in devices.iter_mut().filter(|d| d.address.user() != "rob") {
        assert!(matches!(
            group::decrypt_and_commit(&mut d.store, &group, &from, &bytes),
            Err(GroupError::NoSenderKey { .. })
        ));
    }
}

#[test]
fn an_added_member_reads_from_now_on_only() {
    let group = new_group();
    let mut devices = vec![Device::new("alice", 1, 11), Device::new("dave", 1, 41)];
    connect_all(&mut devices);
    let alice = devices[0].address.clone();
    group::create_distribution(&mut devices[0].store, &group, &alice).unwrap();
    let (_, earlier) = send(&mut devices, 0, &group, "before dave");

    let dave = group_common::user_devices(&devices, "dave");
    let out = group::add_member(&mut devices[0].store, &group, &alice, &dave).unwrap();
    assert_eq!(out.messages.len(), 1);
    deliver_fanout(&mut devices, &alice, &out);
    let (_, later) = send(&mut devices, 0, &group, "welcome dave");
    assert!(group::decrypt_and_commit(&mut devices[1].store, &group, &alice, &earlier).is_err());
    assert_eq!(
        group::decrypt_and_commit(&mut devices[1].store, &group, &alice, &later)
            .unwrap()
            .as_slice(),
        b"welcome dave"
    );
}

mod removal_property {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Send(usize),
        Remove(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (0usize..64).prop_map(Op::Send),
            1 => (0usize..64).prop_map(Op::Remove),
        ]
    }

    struct Sent {
        sender: usize,
        members_then: Vec<String>,
        bytes: Vec<u8>,
        text: String,
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Random sends and removals over real 1:1 sessions, then every message is
        /// delivered (shuffled, some twice) to every device, including removed ones. A
        /// device decrypts a message exactly once iff its user was a member when it
        /// was sent and the sender was not removed since; everything else fails.
        #[test]
        fn removal_cuts_off_exactly_the_removed(
            device_counts in prop::collection::vec(1u32..=2, 3..=5),
            ops in prop::collection::vec(op(), 1..16),
            order_seed in any::<u64>(),
        ) {
            let group = new_group();
            let mut devices = Vec::new();
            for (u, &count) in device_counts.iter().enumerate() {
                for d in 1..=count {
                    devices.push(Device::new(&format!("user{u}"), d, (u as u32 + 1) * 10 + d));
                }
            }
            connect_all(&mut devices);
            let users = all_users(&devices);
            for i in 0..devices.len() {
                let own = devices[i].address.clone();
                let out = group::distribute(&mut devices[i].store, &group, &own, &users).unwrap();
                deliver_fanout(&mut devices, &own, &out);
            }
            let mut members: Vec<String> = users.iter().map(|u| u.user.clone()).collect();
            // For each user, the removals its devices processed (while still a member).
            let mut processed: std::collections::HashMap<String, Vec<String>> =
                std::collections::HashMap::new();
            let mut sent = Vec::new();
            for (k, op) in ops.iter().enumerate() {
                match *op {
                    Op::Send(s) => {
                        let s = s % devices.len();
                        if !members.iter().any(|m| m == devices[s].address.user()) {
                            continue;
                        }
                        let text = format!("{k}");
                        let (_, bytes) = send(&mut devices, s, &group, &text);
                        sent.push(Sent { sender: s, members_then: members.clone(), bytes, text });
                    }
                    Op::Remove(u) => {
                        if members.len() <= 2 {
                            continue;
                        }
                        let gone = members.remove(u % members.len());
                        for m in &members {
                            processed.entry(m.clone()).or_default().push(gone.clone());
                        }
                        let remaining: Vec<_> = all_users(&devices)
                            .into_iter()
                            .filter(|x| members.contains(&x.user))
                            .collect();
                        for i in 0..devices.len() {
                            if !members.iter().any(|m| m == devices[i].address.user()) {
                                continue;
                            }
                            let own = devices[i].address.clone();
                            let out = group::remove_member(
                                &mut devices[i].store, &group, &own, &gone, &remaining,
                            ).unwrap();
                            let got = deliver_fanout(&mut devices, &own, &out);
                            prop_assert!(got.iter().all(|a| members.iter().any(|m| m == a.user())));
                        }
                    }
                }
            }
            let addresses: Vec<Address> = devices.iter().map(|d| d.address.clone()).collect();
            let mut state = order_seed | 1;
            for (r, device) in devices.iter_mut().enumerate() {
                let mut order: Vec<usize> = (0..sent.len()).flat_map(|k| [k, k]).collect();
                for i in (1..order.len()).rev() {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    order.swap(i, (state % (i as u64 + 1)) as usize);
                }
                let mut seen = vec![false; sent.len()];
                for k in order {
                    let m = &sent[k];
                    if m.sender == r {
                        continue;
                    }
                    let from = addresses[m.sender].clone();
                    let result = group::decrypt_and_commit(&mut device.store, &group, &from, &m.bytes);
                    let user = device.address.user().to_owned();
                    let sender_removed_for_us = processed
                        .get(&user)
                        .is_some_and(|r| r.iter().any(|g| g == from.user()));
                    let readable = m.members_then.contains(&user) && !sender_removed_for_us;
                    if readable && !seen[k] {
                        let plaintext = result.unwrap();
                        prop_assert_eq!(plaintext.as_slice(), m.text.as_bytes());
                        seen[k] = true;
                    } else {
                        prop_assert!(result.is_err());
                    }
                }
            }
        }
    }
}
