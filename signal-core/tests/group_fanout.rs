//! Multi-device fan-out over real PQXDH sessions: a user with 3 devices sends to a
//! user with 2; device removal, re-registration and addition.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod group_common;

use group_common::{Device, connect, user_devices};
use signal_core::fanout::{self, DeviceInfo};
use signal_core::store::IdentityStore;
use signal_core::{SessionError, session};

fn decrypts(device: &mut Device, from: &Device, ciphertext: &[u8], expected: &[u8]) {
    let plaintext =
        session::decrypt_and_commit(&mut device.store, &from.address, ciphertext).unwrap();
    assert_eq!(&plaintext[..], expected);
}

#[test]
fn three_devices_send_to_two_devices() {
    let mut a = vec![
        Device::new("alice", 1, 11),
        Device::new("alice", 2, 12),
        Device::new("alice", 3, 13),
    ];
    let mut b = vec![Device::new("bob", 1, 21), Device::new("bob", 2, 22)];
    let (a1, a_rest) = a.split_first_mut().unwrap();
    for other in a_rest.iter_mut().chain(b.iter_mut()) {
        connect(a1, other);
    }
    let a1_addr = a[0].address.clone();

    // All four other devices get the message.
    let alice_devices = user_devices(&a, "alice");
    let bob_devices = user_devices(&b, "bob");
    let out = fanout::encrypt_for_user(
        &mut a[0].store,
        &a1_addr,
        &bob_devices,
        &alice_devices.devices,
        b"to everyone",
    )
    .unwrap();
    assert!(out.missing_sessions.is_empty() && out.failed.is_empty());
    let mut targets: Vec<_> = out.messages.iter().map(|m| m.address.to_string()).collect();
    targets.sort();
    assert_eq!(targets, ["alice.2", "alice.3", "bob.1", "bob.2"]);
    let (a1, a_rest) = a.split_first_mut().unwrap();
    for m in &out.messages {
        let target = a_rest
            .iter_mut()
            .chain(b.iter_mut())
            .find(|d| d.address == m.address)
            .unwrap();
        assert_eq!(m.registration_id, target.registration_id);
        decrypts(target, a1, &m.ciphertext, b"to everyone");
    }

    // Bob removes device 2: it gets nothing new; its session is archived.
    let bob_now = user_devices(&b[..1], "bob");
    let out = fanout::encrypt_for_user(
        &mut a[0].store,
        &a1_addr,
        &bob_now,
        &alice_devices.devices,
        b"after removal",
    )
    .unwrap();
    assert_eq!(out.removed, vec![b[1].address.clone()]);
    assert!(out.messages.iter().all(|m| m.address != b[1].address));
    assert_eq!(out.messages.len(), 3);
    assert!(matches!(
        session::encrypt(&mut a[0].store, &b[1].address, b"direct"),
        Err(SessionError::NoSession { .. })
    ));

    // Bob re-registers device 1 with new keys and adds device 3.
    let old_identity = *b[0].identity.public();
    b[0] = Device::new("bob", 1, 31);
    b.push(Device::new("bob", 3, 23));
    let bob_now = fanout::UserDevices {
        user: "bob".into(),
        devices: vec![b[0].info(), b[2].info()],
    };
    let out = fanout::encrypt_for_user(
        &mut a[0].store,
        &a1_addr,
        &bob_now,
        &alice_devices.devices,
        b"after re-registration",
    )
    .unwrap();
    assert_eq!(out.stale, vec![b[0].address.clone()]);
    let mut missing = out.missing_sessions.clone();
    missing.sort();
    assert_eq!(missing, vec![b[0].address.clone(), b[2].address.clone()]);
    assert_eq!(out.messages.len(), 2, "only Alice's own devices");
    // The stale session is archived, not deleted: a late message from the old bob.1
    // would still decrypt; nothing new is encrypted on it.
    let record = signal_core::store::SessionStore::load_session(&a[0].store, &b[0].address)
        .unwrap()
        .unwrap();
    assert!(record.current().is_none());
    assert_eq!(
        record.archived().next().unwrap().remote_identity().unwrap(),
        old_identity
    );

    // Without accepting bob.1's new identity, starting its session is refused.
    let bundle = b[0].bundle.clone().verify().unwrap();
    let refused =
        fanout::encrypt_with_new_sessions(&mut a[0].store, &[(b[0].address.clone(), bundle)], b"x")
            .unwrap();
    assert!(matches!(
        refused.failed.as_slice(),
        [(_, SessionError::UntrustedIdentity { .. })]
    ));
    // The caller fetches bundles, accepts bob.1's new identity, starts sessions and
    // sends to the missing devices.
    a[0].store
        .save_identity(&b[0].address, b[0].identity.public())
        .unwrap();
    let bundles: Vec<_> = [0, 2]
        .iter()
        .map(|&d| (b[d].address.clone(), b[d].bundle.clone().verify().unwrap()))
        .collect();
    let out =
        fanout::encrypt_with_new_sessions(&mut a[0].store, &bundles, b"after re-registration")
            .unwrap();
    assert!(out.failed.is_empty());
    assert_eq!(out.messages.len(), 2);
    let (a1, _) = a.split_first_mut().unwrap();
    for m in &out.messages {
        let target = b.iter_mut().find(|d| d.address == m.address).unwrap();
        decrypts(target, a1, &m.ciphertext, b"after re-registration");
    }
    // Now everything is current: the next fan-out reaches all four devices.
    let out = fanout::encrypt_for_user(
        &mut a[0].store,
        &a1_addr,
        &bob_now,
        &alice_devices.devices,
        b"steady",
    )
    .unwrap();
    assert_eq!(out.messages.len(), 4);
    assert!(out.missing_sessions.is_empty() && out.stale.is_empty() && out.removed.is_empty());
}

#[test]
fn a_registration_id_change_alone_marks_a_device_stale() {
    let mut a = Device::new("alice", 1, 11);
    let mut b = Device::new("bob", 1, 21);
    connect(&mut a, &mut b);
    let listed = fanout::UserDevices {
        user: "bob".into(),
        devices: vec![DeviceInfo {
            device: 1,
            registration_id: 99,
            identity: None,
        }],
    };
    let out =
        fanout::encrypt_for_user(&mut a.store, &a.address.clone(), &listed, &[], b"x").unwrap();
    assert_eq!(out.stale, vec![b.address.clone()]);
    assert!(out.messages.is_empty());
}
