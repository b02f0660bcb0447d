//! Key maintenance: scheduled rotation of the signed prekey and the last-resort KEM
//! prekey, deletion after a grace period, and one-time prekey replenishment
//! (`docs/protocol.md` §Key maintenance).
//!
//! The library never reads the clock here: [`KeyMaintenance::run`] takes `now`, so a
//! test can run the clock forward.
//!
//! Rules, for each of the two rotated kinds (signed X25519 prekeys; last-resort
//! ML-KEM-1024 prekeys):
//!
//! - the *current* key is the one with the greatest `(created_at, id)`;
//! - if there is none, or `now ≥ current.created_at + rotation_interval`, a new key is
//!   generated with `created_at = now` and becomes current;
//! - a non-current key was *superseded* at the `created_at` of the next newer key; it
//!   is deleted once `now ≥ superseded_at + grace_period`. Until then pre-key messages
//!   naming it still decrypt.
//!
//! One-time prekeys (X25519 and one-time ML-KEM) are consumed, not rotated: when the
//! server reports fewer than `one_time_prekey_threshold` of a kind, a batch of
//! `one_time_prekey_batch` new ones is generated and stored, to be uploaded.

use crate::error::MaintenanceError;
use crate::prekey::{
    KemPreKeyPublic, KemPreKeyRecord, OneTimePreKeyPublic, OneTimePreKeyRecord, PreKeyId,
    SignedPreKeyPublic, SignedPreKeyRecord, Timestamp,
};
use crate::random;
use crate::store::ProtocolStore;

/// One day in seconds.
pub const DAY: u64 = 24 * 60 * 60;
/// Default interval between rotations of the signed and last-resort KEM prekeys.
pub const DEFAULT_ROTATION_INTERVAL: u64 = 7 * DAY;
/// Default time a superseded signed or last-resort KEM prekey is kept.
pub const DEFAULT_GRACE_PERIOD: u64 = 30 * DAY;
/// Default server-side one-time prekey count below which a batch is generated.
pub const DEFAULT_ONE_TIME_PREKEY_THRESHOLD: usize = 20;
/// Default size of a replacement batch of one-time prekeys.
pub const DEFAULT_ONE_TIME_PREKEY_BATCH: u32 = 100;

/// Attempts at finding a free random id range before giving up.
const ID_ATTEMPTS: usize = 16;
/// Random one-time prekey id ranges start below this (ids stay positive as `i32`).
const RANDOM_ID_SPACE: u32 = 1 << 30;

/// The maintenance policy. All durations are in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyMaintenance {
    /// Rotate the signed prekey and the last-resort KEM prekey this often.
    pub rotation_interval: u64,
    /// Keep a superseded key this long after its successor was created.
    pub grace_period: u64,
    /// Replenish one-time prekeys of a kind when the server holds fewer than this.
    pub one_time_prekey_threshold: usize,
    /// Number of one-time prekeys generated per replenishment.
    pub one_time_prekey_batch: u32,
}

impl Default for KeyMaintenance {
    fn default() -> Self {
        Self {
            rotation_interval: DEFAULT_ROTATION_INTERVAL,
            grace_period: DEFAULT_GRACE_PERIOD,
            one_time_prekey_threshold: DEFAULT_ONE_TIME_PREKEY_THRESHOLD,
            one_time_prekey_batch: DEFAULT_ONE_TIME_PREKEY_BATCH,
        }
    }
}

/// One-time prekey counts the server reports for this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerPreKeyCounts {
    /// Unused one-time X25519 prekeys on the server.
    pub one_time: usize,
    /// Unused one-time ML-KEM prekeys on the server.
    pub kem_one_time: usize,
}

/// What one maintenance run did. Everything new is already stored; upload the public
/// halves.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct MaintenanceReport {
    /// A new signed prekey (now current).
    pub new_signed_prekey: Option<SignedPreKeyPublic>,
    /// A new last-resort KEM prekey (now current).
    pub new_last_resort_kem_prekey: Option<KemPreKeyPublic>,
    /// Superseded signed prekeys deleted after their grace period.
    pub deleted_signed_prekeys: Vec<PreKeyId>,
    /// Superseded last-resort KEM prekeys deleted after their grace period.
    pub deleted_kem_prekeys: Vec<PreKeyId>,
    /// The server's one-time X25519 prekeys were below the threshold.
    pub one_time_prekeys_low: bool,
    /// The replacement batch of one-time X25519 prekeys.
    pub new_one_time_prekeys: Vec<OneTimePreKeyPublic>,
    /// The server's one-time ML-KEM prekeys were below the threshold.
    pub kem_one_time_prekeys_low: bool,
    /// The replacement batch of one-time ML-KEM prekeys.
    pub new_kem_one_time_prekeys: Vec<KemPreKeyPublic>,
}

/// A rotated key's age facts: (id, created_at).
type Dated = (PreKeyId, Timestamp);

/// Splits `keys` into the current one and the ids of superseded ones past the grace
/// period.
fn schedule(mut keys: Vec<Dated>, now: Timestamp, grace: u64) -> (Option<Dated>, Vec<PreKeyId>) {
    keys.sort_unstable_by_key(|&(id, created)| (created, id));
    let current = keys.last().copied();
    let expired = keys
        .windows(2)
        .filter(|w| now >= w[1].1.saturating_add(grace))
        .map(|w| w[0].0)
        .collect();
    (current, expired)
}

fn due(current: Option<Dated>, now: Timestamp, interval: u64) -> bool {
    current.is_none_or(|(_, created)| now >= created.saturating_add(interval))
}

/// The smallest id above every id in `ids` (wrapping past `u32::MAX` to 1), not in
/// `ids`.
fn next_id(ids: &[PreKeyId]) -> Option<PreKeyId> {
    let mut candidate = ids.iter().copied().max().unwrap_or(0);
    for _ in 0..=ids.len() {
        candidate = candidate.checked_add(1).unwrap_or(1);
        if !ids.contains(&candidate) {
            return Some(candidate);
        }
    }
    None
}

impl KeyMaintenance {
    /// Runs one round of maintenance at time `now` (seconds since the Unix epoch):
    /// rotation, deletion after the grace period, and one-time prekey replenishment
    /// (see the module docs). Idempotent for a given `now`.
    pub fn run<S: ProtocolStore + ?Sized>(
        &self,
        store: &mut S,
        now: Timestamp,
        server: ServerPreKeyCounts,
    ) -> Result<MaintenanceReport, MaintenanceError> {
        let mut report = MaintenanceReport::default();
        let identity = store.local_identity()?;
        let registration_id = store.local_registration_id()?;

        // Signed prekeys.
        let signed_ids = store.signed_prekey_ids()?;
        let mut signed = Vec::with_capacity(signed_ids.len());
        for id in &signed_ids {
            if let Some(r) = store.load_signed_prekey(*id)? {
                signed.push((r.id(), r.created_at()));
            }
        }
        let (current, _) = schedule(signed.clone(), now, self.grace_period);
        if due(current, now, self.rotation_interval) {
            let id = next_id(&signed_ids).ok_or(MaintenanceError::NoFreeIds { count: 1 })?;
            let record = SignedPreKeyRecord::generate(&identity, registration_id, id, now)?;
            store.store_signed_prekey(&record)?;
            signed.push((id, now));
            report.new_signed_prekey = Some(record.public().clone());
        }
        let (_, expired) = schedule(signed, now, self.grace_period);
        for id in expired {
            store.remove_signed_prekey(id)?;
            report.deleted_signed_prekeys.push(id);
        }

        // Last-resort KEM prekeys (one-time KEM prekeys are consumed, not rotated).
        let kem_ids = store.kem_prekey_ids()?;
        let mut last_resort = Vec::new();
        for id in &kem_ids {
            if let Some(r) = store.load_kem_prekey(*id)?
                && r.is_last_resort()
            {
                last_resort.push((r.id(), r.created_at()));
            }
        }
        let (current, _) = schedule(last_resort.clone(), now, self.grace_period);
        if due(current, now, self.rotation_interval) {
            let id = next_id(&kem_ids).ok_or(MaintenanceError::NoFreeIds { count: 1 })?;
            let record = KemPreKeyRecord::generate(&identity, id, now, true)?;
            store.store_kem_prekey(&record)?;
            last_resort.push((id, now));
            report.new_last_resort_kem_prekey = Some(record.public().clone());
        }
        let (_, expired) = schedule(last_resort, now, self.grace_period);
        for id in expired {
            store.remove_kem_prekey(id)?;
            report.deleted_kem_prekeys.push(id);
        }

        // One-time prekeys.
        let batch = self.one_time_prekey_batch;
        if server.one_time < self.one_time_prekey_threshold {
            report.one_time_prekeys_low = true;
            let first = free_range(batch, |id| Ok(store.load_prekey(id)?.is_some()))?;
            for record in OneTimePreKeyRecord::generate_batch(&identity, first, batch, now)? {
                store.store_prekey(&record)?;
                report.new_one_time_prekeys.push(record.public().clone());
            }
        }
        if server.kem_one_time < self.one_time_prekey_threshold {
            report.kem_one_time_prekeys_low = true;
            let first = free_range(batch, |id| Ok(store.load_kem_prekey(id)?.is_some()))?;
            for record in KemPreKeyRecord::generate_batch(&identity, first, batch, now)? {
                store.store_kem_prekey(&record)?;
                report
                    .new_kem_one_time_prekeys
                    .push(record.public().clone());
            }
        }
        Ok(report)
    }
}

/// A random start id such that `start..start + count` are all unused. Random starts
/// make it unlikely that an id of a consumed prekey is issued again soon (a late
/// pre-key message naming it then fails cleanly as unknown).
fn free_range(
    count: u32,
    mut used: impl FnMut(PreKeyId) -> Result<bool, MaintenanceError>,
) -> Result<PreKeyId, MaintenanceError> {
    'attempt: for _ in 0..ID_ATTEMPTS {
        let start = u32::from_be_bytes(random::bytes()?) % RANDOM_ID_SPACE + 1;
        for i in 0..count {
            if used(start.wrapping_add(i))? {
                continue 'attempt;
            }
        }
        return Ok(start);
    }
    Err(MaintenanceError::NoFreeIds { count })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_picks_newest_and_expires_after_grace() {
        let keys = vec![(1, 0), (2, 7 * DAY), (3, 14 * DAY)];
        let (current, expired) = schedule(keys.clone(), 36 * DAY, 30 * DAY);
        assert_eq!(current, Some((3, 14 * DAY)));
        assert!(expired.is_empty());
        let (_, expired) = schedule(keys.clone(), 37 * DAY, 30 * DAY);
        assert_eq!(expired, vec![1]);
        let (_, expired) = schedule(keys, 44 * DAY, 30 * DAY);
        assert_eq!(expired, vec![1, 2]);
    }

    #[test]
    fn next_id_skips_used_and_wraps() {
        assert_eq!(next_id(&[]), Some(1));
        assert_eq!(next_id(&[1, 5]), Some(6));
        assert_eq!(next_id(&[u32::MAX, 1]), Some(2));
    }
}
