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
