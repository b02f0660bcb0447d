//! Shared fixtures for the group, fan-out and maintenance tests: devices with real
//! stores, real prekeys and real PQXDH sessions.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use signal_core::fanout::{DeviceInfo, FanOut, UserDevices};
use signal_core::group::{self, GroupId, SenderKeyDistributionMessage};
use signal_core::prekey::{KemPreKeyRecord, PreKeyBundle, SignedPreKeyRecord};
use signal_core::store::{InMemoryStore, KemPreKeyStore, SignedPreKeyStore};
use signal_core::wire::kind;
use signal_core::{Address, IdentityKeyPair, session};

pub struct Device {
    pub address: Address,
    pub identity: IdentityKeyPair,
    pub registration_id: u32,
    pub store: InMemoryStore,
    pub bundle: PreKeyBundle,
}

impl Device {
    /// A device with a signed prekey and a last-resort KEM prekey (so any number of
    /// peers can start sessions from the same bundle).
    pub fn new(user: &str, device: u32, registration_id: u32) -> Self {
        let identity = IdentityKeyPair::generate().unwrap();
        let mut store = InMemoryStore::new(identity.clone(), registration_id);
        let spk =
            SignedPreKeyRecord::generate(&identity, registration_id, 1, 1_700_000_000).unwrap();
        let kem = KemPreKeyRecord::generate(&identity, 1, 1_700_000_000, true).unwrap();
        store.store_signed_prekey(&spk).unwrap();
        store.store_kem_prekey(&kem).unwrap();
        let bundle = PreKeyBundle {
            registration_id,
            identity: *identity.public(),
            signed_prekey: spk.public().clone(),
            one_time_prekey: None,
            kem_prekey: kem.public().clone(),
        };
        Self {
            address: Address::new(user, device).unwrap(),
            identity,
            registration_id,
            store,
            bundle,
        }
    }

    pub fn info(&self) -> DeviceInfo {
        DeviceInfo {
            device: self.address.device(),
            registration_id: self.registration_id,
            identity: Some(*self.identity.public()),
        }
    }
}

/// Starts a session from `a` to `b` and completes it with one round trip, so both
/// sides hold a session.
pub fn connect(a: &mut Device, b: &mut Device) {
    session::initiate(
        &mut a.store,
        &b.address,
        &b.bundle.clone().verify().unwrap(),
    )
    .unwrap();
    let hello = session::encrypt(&mut a.store, &b.address, b"hello").unwrap();
    session::decrypt_and_commit(&mut b.store, &a.address, &hello).unwrap();
    let reply = session::encrypt(&mut b.store, &a.address, b"hi").unwrap();
    session::decrypt_and_commit(&mut a.store, &b.address, &reply).unwrap();
}

/// Connects every pair of devices.
pub fn connect_all(devices: &mut [Device]) {
    for i in 0..devices.len() {
        for j in i + 1..devices.len() {
            let (left, right) = devices.split_at_mut(j);
            connect(&mut left[i], &mut right[0]);
        }
    }
}

/// The relay's view of the devices of `user` among `devices`.
pub fn user_devices(devices: &[Device], user: &str) -> UserDevices {
    UserDevices {
        user: user.to_owned(),
        devices: devices
            .iter()
            .filter(|d| d.address.user() == user)
            .map(Device::info)
            .collect(),
    }
}

/// Every user among `devices`, with their devices.
pub fn all_users(devices: &[Device]) -> Vec<UserDevices> {
    let mut users: Vec<&str> = devices.iter().map(|d| d.address.user()).collect();
    users.dedup();
    users
        .into_iter()
        .map(|u| user_devices(devices, u))
        .collect()
}

/// Delivers every ciphertext of a fan-out from `sender` over the 1:1 sessions; a
/// plaintext that is a distribution message is processed. Returns the addresses that
/// received something.
pub fn deliver_fanout(devices: &mut [Device], sender: &Address, fanout: &FanOut) -> Vec<Address> {
    let mut got = Vec::new();
    for m in &fanout.messages {
        let target = devices
            .iter_mut()
            .find(|d| d.address == m.address)
            .expect("fan-out target exists");
        assert_eq!(m.registration_id, target.registration_id);
        let plaintext =
            session::decrypt_and_commit(&mut target.store, sender, &m.ciphertext).unwrap();
        if plaintext.get(1) == Some(&kind::SENDER_KEY_DISTRIBUTION) {
            let skdm = SenderKeyDistributionMessage::decode(&plaintext).unwrap();
            group::process_distribution(&mut target.store, sender, &skdm).unwrap();
        }
        got.push(m.address.clone());
    }
    got
}

pub fn new_group() -> GroupId {
    GroupId::generate().unwrap()
}
