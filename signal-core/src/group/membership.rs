//! Group membership: distributing this device's chain to member devices over their 1:1
//! sessions, and the rotation rules on adding and removing members
//! (`docs/protocol.md` §Groups, rotation rules).
//!
//! Every device runs these for its own sending chain when it learns of a membership
//! change; together, every remaining sender rotates.

use crate::address::Address;
use crate::error::GroupError;
use crate::fanout::{self, FanOut, UserDevices};
use crate::store::{ProtocolStore, SenderKeyStore};

use super::{GroupId, create_distribution, rotate};

/// Sends this device's current chain (created if there is none) to every listed device
/// of `recipients` (members, and the sender's own other devices) except `own`, over
/// their 1:1 sessions, with the reconciliation of [`fanout::encrypt_for_users`].
pub fn distribute<S: ProtocolStore + SenderKeyStore + ?Sized>(
    store: &mut S,
    group: &GroupId,
    own: &Address,
    recipients: &[UserDevices],
) -> Result<FanOut, GroupError> {
    let message = create_distribution(store, group, own)?;
    Ok(fanout::encrypt_for_users(
        store,
        own,
        recipients,
        &message.encode(),
    )?)
}

/// A member joined: hands the new member's devices this device's chain **from its
/// current iteration**, so they can read what is sent from now on but nothing earlier.
/// The chain is not rotated.
pub fn add_member<S: ProtocolStore + SenderKeyStore + ?Sized>(
    store: &mut S,
    group: &GroupId,
    own: &Address,
    member: &UserDevices,
) -> Result<FanOut, GroupError> {
    distribute(store, group, own, core::slice::from_ref(member))
}

/// A member left or was removed, in one call:
///
/// 1. every sender key of `removed_user`'s devices in `group` is deleted, so nothing
///    they send is accepted any more;
/// 2. this device's sending chain is replaced by a fresh one ([`rotate`]): new chain
///    id, chain key and signing key, none derivable from anything the removed member
///    held;
/// 3. the new chain is distributed to the devices of `remaining` only (entries for
///    `removed_user` are ignored).
///
/// Chains received from remaining members are kept, so their messages sent before
/// they rotated still decrypt when they arrive late. If `removed_user` is this
/// device's own user, every sender key of the group is deleted and nothing is sent.
pub fn remove_member<S: ProtocolStore + SenderKeyStore + ?Sized>(
    store: &mut S,
    group: &GroupId,
    own: &Address,
    removed_user: &str,
    remaining: &[UserDevices],
) -> Result<FanOut, GroupError> {
    let we_left = removed_user == own.user();
    for sender in store.sender_key_senders(group)? {
        if we_left || sender.user() == removed_user {
            store.delete_sender_key(group, &sender)?;
        }
    }
    if we_left {
        return Ok(FanOut::default());
    }
    let message = rotate(store, group, own)?;
    let remaining: Vec<UserDevices> = remaining
        .iter()
        .filter(|u| u.user != removed_user)
        .cloned()
        .collect();
    Ok(fanout::encrypt_for_users(
        store,
        own,
        &remaining,
        &message.encode(),
    )?)
}
