//! Multi-device fan-out: one plaintext encrypted for every device of one or more users
//! over their 1:1 sessions (`docs/protocol.md` §Fan-out).
//!
//! The caller passes the device list the relay reports for each user (device ids with
//! their registration ids and, where known, identity keys). Before encrypting, the
//! stored sessions are reconciled with that list:
//!
//! - a device with a session that is **no longer listed** has its current session
//!   archived (late messages from it still decrypt; nothing new is sent to it) and is
//!   reported in [`FanOut::removed`];
//! - a listed device whose current session has a **different registration id or
//!   identity** (the device was re-registered with new keys) has its session archived
//!   and is reported in [`FanOut::stale`] and [`FanOut::missing_sessions`];
//! - a listed device **without** a current session is reported in
//!   [`FanOut::missing_sessions`]: fetch its bundle and call
//!   [`encrypt_with_new_sessions`] (or [`crate::session::initiate`] and
//!   [`encrypt_for_devices`]).
//!
//! The sending device itself is always skipped.

use crate::address::Address;
use crate::error::SessionError;
use crate::identity::IdentityKey;
use crate::prekey::VerifiedBundle;
use crate::session::{self, SessionRecord};
use crate::store::{ProtocolStore, SessionCommit};

/// One device as the relay lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The device id.
    pub device: u32,
    /// The registration id the device registered with.
    pub registration_id: u32,
    /// The device's identity key, if the relay reports it.
    pub identity: Option<IdentityKey>,
}

/// A user and the relay's current list of their devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDevices {
    /// The user id.
    pub user: String,
    /// Every current device of the user.
    pub devices: Vec<DeviceInfo>,
}

/// The ciphertext for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCiphertext {
    /// The device.
    pub address: Address,
    /// The registration id the session was established with (the relay checks it).
    pub registration_id: u32,
    /// A [`crate::wire::SignalMessage`] or [`crate::wire::PreKeyMessage`] encoding.
    pub ciphertext: Vec<u8>,
}

/// The result of a fan-out.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct FanOut {
    /// One ciphertext per device with a usable session.
    pub messages: Vec<DeviceCiphertext>,
    /// Listed devices without a usable session (including [`FanOut::stale`] ones):
    /// fetch their bundles.
    pub missing_sessions: Vec<Address>,
    /// Devices whose session was archived because they were re-registered.
    pub stale: Vec<Address>,
    /// Devices with a session that the list no longer contains; their sessions were
    /// archived.
    pub removed: Vec<Address>,
    /// Devices for which encryption failed for a reason specific to the device (for
    /// example [`SessionError::UntrustedIdentity`]); nothing was sent to them.
    pub failed: Vec<(Address, SessionError)>,
}

/// Encrypts `plaintext` for every device of `recipient` and for the sender's own other
/// devices (`own_devices`, the relay's list for the sender's user).
pub fn encrypt_for_user<S: ProtocolStore + ?Sized>(
    store: &mut S,
    own: &Address,
    recipient: &UserDevices,
    own_devices: &[DeviceInfo],
    plaintext: &[u8],
) -> Result<FanOut, SessionError> {
    let own_user = UserDevices {
        user: own.user().to_owned(),
        devices: own_devices.to_vec(),
    };
    encrypt_for_users(store, own, &[recipient.clone(), own_user], plaintext)
}

/// Encrypts `plaintext` for every listed device of every user in `users` except `own`,
/// after reconciling stored sessions with the lists (see the module docs). A device
/// listed twice gets one ciphertext.
///
/// Fails only if the store fails; device-specific failures are reported in
/// [`FanOut::failed`].
pub fn encrypt_for_users<S: ProtocolStore + ?Sized>(
    store: &mut S,
    own: &Address,
    users: &[UserDevices],
    plaintext: &[u8],
) -> Result<FanOut, SessionError> {
    let mut out = FanOut::default();
    let mut targets: Vec<(Address, u32)> = Vec::new();
    let mut seen_users: Vec<&str> = Vec::new();
    for user in users {
        if !seen_users.contains(&user.user.as_str()) {
            seen_users.push(&user.user);
            archive_unlisted(store, own, user, users, &mut out)?;
        }
        for device in &user.devices {
            let address = Address::new(user.user.clone(), device.device)?;
            if address == *own || targets.iter().any(|(a, _)| *a == address) {
                continue;
            }
            if check_current(store, &address, device, &mut out)? {
                targets.push((address, device.registration_id));
            }
        }
    }
    encrypt_into(store, &targets, plaintext, &mut out)?;
    Ok(out)
}

/// Encrypts `plaintext` for each of `addresses` on its current session (for example
/// after starting sessions for [`FanOut::missing_sessions`]), without reconciling.
pub fn encrypt_for_devices<S: ProtocolStore + ?Sized>(
    store: &mut S,
    addresses: &[Address],
    plaintext: &[u8],
) -> Result<FanOut, SessionError> {
    let mut out = FanOut::default();
    let mut targets = Vec::with_capacity(addresses.len());
    for address in addresses {
        let registration_id = store
            .load_session(address)?
            .as_ref()
            .and_then(SessionRecord::current)
            .map(|s| s.remote_registration_id());
        match registration_id {
            Some(id) => targets.push((address.clone(), id)),
            None => out.missing_sessions.push(address.clone()),
        }
    }
    encrypt_into(store, &targets, plaintext, &mut out)?;
    Ok(out)
}

/// Starts a session with each device from its verified bundle (fetched for
/// [`FanOut::missing_sessions`]) and encrypts `plaintext` for it. A device whose
/// session cannot be started (for example [`SessionError::UntrustedIdentity`] for a
/// re-registered device whose new identity the caller has not accepted) is reported in
/// [`FanOut::failed`].
pub fn encrypt_with_new_sessions<S: ProtocolStore + ?Sized>(
    store: &mut S,
    bundles: &[(Address, VerifiedBundle)],
    plaintext: &[u8],
) -> Result<FanOut, SessionError> {
    let mut out = FanOut::default();
    let mut targets = Vec::with_capacity(bundles.len());
    for (address, bundle) in bundles {
        match session::initiate(store, address, bundle) {
            Ok(()) => targets.push((address.clone(), bundle.bundle().registration_id)),
            Err(e @ SessionError::Store(_)) => return Err(e),
            Err(e) => out.failed.push((address.clone(), e)),
        }
    }
    encrypt_into(store, &targets, plaintext, &mut out)?;
    Ok(out)
}

fn encrypt_into<S: ProtocolStore + ?Sized>(
    store: &mut S,
    targets: &[(Address, u32)],
    plaintext: &[u8],
    out: &mut FanOut,
) -> Result<(), SessionError> {
    for (address, registration_id) in targets {
        match session::encrypt(store, address, plaintext) {
            Ok(ciphertext) => out.messages.push(DeviceCiphertext {
                address: address.clone(),
                registration_id: *registration_id,
                ciphertext,
            }),
            Err(SessionError::NoSession { address }) => out.missing_sessions.push(address),
            Err(e @ SessionError::Store(_)) => return Err(e),
            Err(e) => out.failed.push((address.clone(), e)),
        }
    }
    Ok(())
}

/// Archives the current session of every device of `user` that no entry of `users`
/// lists any more.
fn archive_unlisted<S: ProtocolStore + ?Sized>(
    store: &mut S,
    own: &Address,
    user: &UserDevices,
    users: &[UserDevices],
    out: &mut FanOut,
) -> Result<(), SessionError> {
    for device in store.session_devices(&user.user)? {
        let listed = users
            .iter()
            .filter(|u| u.user == user.user)
            .any(|u| u.devices.iter().any(|d| d.device == device));
        let address = Address::new(user.user.clone(), device)?;
        if listed || address == *own {
            continue;
        }
        if archive(store, &address)? {
            out.removed.push(address);
        }
    }
    Ok(())
}

/// Whether `address` has a current session matching `device`; archives a stale one.
fn check_current<S: ProtocolStore + ?Sized>(
    store: &mut S,
    address: &Address,
    device: &DeviceInfo,
    out: &mut FanOut,
) -> Result<bool, SessionError> {
    let Some(record) = store.load_session(address)? else {
        out.missing_sessions.push(address.clone());
        return Ok(false);
    };
    let Some(current) = record.current() else {
        out.missing_sessions.push(address.clone());
        return Ok(false);
    };
    let same_registration = current.remote_registration_id() == device.registration_id;
    let same_identity = device
        .identity
        .as_ref()
        .is_none_or(|id| current.is_remote_identity(id));
    if same_registration && same_identity {
        return Ok(true);
    }
    archive(store, address)?;
    out.stale.push(address.clone());
    out.missing_sessions.push(address.clone());
    Ok(false)
}

/// Archives the current session of `address`; returns whether there was one.
fn archive<S: ProtocolStore + ?Sized>(
    store: &mut S,
    address: &Address,
) -> Result<bool, SessionError> {
    let Some(mut record) = store.load_session(address)? else {
        return Ok(false);
    };
    if record.current().is_none() {
        return Ok(false);
    }
    let expected_generation = record.generation();
    record.archive_current();
    record.bump_generation();
    store.commit(SessionCommit::record_only(
        address.clone(),
        record,
        expected_generation,
    ))?;
    Ok(true)
}
