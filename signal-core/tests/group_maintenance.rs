//! Key maintenance with an injected clock: 60 days of daily runs, rotations every 7
//! days, pre-key messages to superseded keys decrypting during the 30-day grace period
//! and failing after deletion, one-time prekey replenishment.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use signal_core::maintenance::{DAY, KeyMaintenance, ServerPreKeyCounts};
use signal_core::prekey::{PreKeyBundle, Timestamp};
use signal_core::store::{InMemoryStore, KemPreKeyStore, PreKeyStore, SignedPreKeyStore};
use signal_core::{Address, IdentityKeyPair, SessionError, session};

const T0: Timestamp = 1_700_000_000;
const PLENTY: ServerPreKeyCounts = ServerPreKeyCounts {
    one_time: 100,
    kem_one_time: 100,
};

/// Bob's current bundle: newest signed prekey and newest last-resort KEM prekey.
fn bundle(bob: &InMemoryStore, identity: &IdentityKeyPair) -> PreKeyBundle {
    let spk_id = *bob.signed_prekey_ids().unwrap().iter().max().unwrap();
    let spk = bob.load_signed_prekey(spk_id).unwrap().unwrap();
    let kem = bob
        .kem_prekey_ids()
        .unwrap()
        .into_iter()
        .filter_map(|id| bob.load_kem_prekey(id).unwrap())
        .filter(|k| k.is_last_resort())
        .max_by_key(|k| (k.created_at(), k.id()))
        .unwrap();
    PreKeyBundle {
        registration_id: 2,
        identity: *identity.public(),
        signed_prekey: spk.public().clone(),
        one_time_prekey: None,
        kem_prekey: kem.public().clone(),
    }
}

/// A fresh initiator's first (pre-key) message to Bob from `bundle`.
fn prekey_message(bundle: &PreKeyBundle, n: u32) -> (Address, Vec<u8>) {
    let mut alice = InMemoryStore::new(IdentityKeyPair::generate().unwrap(), 100 + n);
    let bob = Address::new("bob", 1).unwrap();
    session::initiate(&mut alice, &bob, &bundle.clone().verify().unwrap()).unwrap();
    let wire = session::encrypt(&mut alice, &bob, b"late hello").unwrap();
    (Address::new(format!("alice{n}"), 1).unwrap(), wire)
}

#[test]
fn sixty_days_of_rotation_grace_and_deletion() {
    let policy = KeyMaintenance::default();
    let identity = IdentityKeyPair::generate().unwrap();
    let mut bob = InMemoryStore::new(identity.clone(), 2);

    // Day 0: the first run creates the first signed and last-resort KEM prekeys.
    let report = policy.run(&mut bob, T0, PLENTY).unwrap();
    let first_spk = report.new_signed_prekey.clone().unwrap();
    let first_kem = report.new_last_resort_kem_prekey.clone().unwrap();
    assert!(!report.one_time_prekeys_low);
    // A pre-key message made from the day-0 bundle, delivered much later.
    let day0_bundle = bundle(&bob, &identity);
    let (alice_early, early) = prekey_message(&day0_bundle, 1);
    let (alice_late, late) = prekey_message(&day0_bundle, 2);

    let mut rotations = Vec::new();
    let mut deleted_spk = Vec::new();
    let mut deleted_kem = Vec::new();
    for day in 1..=60 {
        let now = T0 + day * DAY;
        let report = policy.run(&mut bob, now, PLENTY).unwrap();
        if let Some(spk) = &report.new_signed_prekey {
            assert_eq!(spk.created_at, now);
            assert!(report.new_last_resort_kem_prekey.is_some());
            rotations.push(day);
        }
        for id in &report.deleted_signed_prekeys {
            deleted_spk.push((day, *id));
        }
        for id in &report.deleted_kem_prekeys {
            deleted_kem.push((day, *id));
        }
        // Running twice at the same time changes nothing.
        let again = policy.run(&mut bob, now, PLENTY).unwrap();
        assert!(again.new_signed_prekey.is_none() && again.deleted_signed_prekeys.is_empty());

        if day == 20 {
            // Superseded on day 7, still within the grace period: decrypts.
            let pt = session::decrypt_and_commit(&mut bob, &alice_early, &early).unwrap();
            assert_eq!(&pt[..], b"late hello");
        }
    }
    assert_eq!(rotations, vec![7, 14, 21, 28, 35, 42, 49, 56]);
    // Each key is deleted 30 days after its successor was created: the day-0 keys on
    // day 37, the day-7 keys on day 44, …
    let expected: Vec<(u64, u32)> = vec![(37, first_spk.id), (44, 2), (51, 3), (58, 4)];
    assert_eq!(deleted_spk, expected);
    assert_eq!(
        deleted_kem.iter().map(|(d, _)| *d).collect::<Vec<_>>(),
        vec![37, 44, 51, 58]
    );
    assert_eq!(deleted_kem[0].1, first_kem.id);
    // Kept on day 60: the keys of days 28, 35, 42, 49 (in grace) and 56 (current).
    let kept: Vec<Timestamp> = bob
        .signed_prekey_ids()
        .unwrap()
        .into_iter()
        .map(|id| (bob.load_signed_prekey(id).unwrap().unwrap().created_at() - T0) / DAY)
        .collect();
    assert_eq!(kept, vec![28, 35, 42, 49, 56]);
    assert_eq!(bob.kem_prekey_ids().unwrap().len(), 5);

    // The day-0 signed prekey is gone: the late pre-key message fails cleanly.
    assert!(matches!(
        session::decrypt_and_commit(&mut bob, &alice_late, &late),
        Err(SessionError::UnknownSignedPreKey { id }) if id == first_spk.id
    ));
    // A message from the current bundle decrypts.
    let (alice_now, now_msg) = prekey_message(&bundle(&bob, &identity), 3);
    assert!(session::decrypt_and_commit(&mut bob, &alice_now, &now_msg).is_ok());
}

#[test]
fn low_one_time_prekeys_are_reported_and_replenished() {
    let policy = KeyMaintenance {
        one_time_prekey_batch: 10,
        ..KeyMaintenance::default()
    };
    let identity = IdentityKeyPair::generate().unwrap();
    let mut bob = InMemoryStore::new(identity.clone(), 2);
    let report = policy
        .run(
            &mut bob,
            T0,
            ServerPreKeyCounts {
                one_time: 19,
                kem_one_time: 20,
            },
        )
        .unwrap();
    assert!(report.one_time_prekeys_low && !report.kem_one_time_prekeys_low);
    assert_eq!(report.new_one_time_prekeys.len(), 10);
    assert!(report.new_kem_one_time_prekeys.is_empty());
    assert_eq!(bob.prekey_count().unwrap(), 10);
    for p in &report.new_one_time_prekeys {
        assert!(p.verify(identity.public()));
        assert!(bob.load_prekey(p.id).unwrap().is_some());
    }
    let report = policy
        .run(
            &mut bob,
            T0 + 1,
            ServerPreKeyCounts {
                one_time: 5,
                kem_one_time: 0,
            },
        )
        .unwrap();
    assert_eq!(report.new_one_time_prekeys.len(), 10);
    assert_eq!(report.new_kem_one_time_prekeys.len(), 10);
    assert_eq!(
        bob.prekey_count().unwrap(),
        20,
        "new ids never overwrite old ones"
    );
    assert!(
        report
            .new_kem_one_time_prekeys
            .iter()
            .all(|k| !k.last_resort)
    );
    // Defaults from the issue.
    let d = KeyMaintenance::default();
    assert_eq!(
        (
            d.rotation_interval,
            d.grace_period,
            d.one_time_prekey_threshold,
            d.one_time_prekey_batch
        ),
        (7 * DAY, 30 * DAY, 20, 100)
    );
}
