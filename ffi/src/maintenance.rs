//! Key maintenance: rotation of the signed and last-resort KEM prekeys, deletion after
//! the grace period, one-time prekey replenishment.

use signal_core::maintenance::{KeyMaintenance, ServerPreKeyCounts};

use signal_core::prekey::PreKeyBundle;

use crate::buffer::{SignalBuffer, handle, out};
use crate::error::{FfiError, SignalErrorCode, guard};
use crate::store::SignalStore;

/// What one maintenance run did. Everything new is already stored. Upload the new
/// current signed and last-resort KEM prekeys with [`signal_store_current_bundle`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SignalMaintenanceReport {
    /// 1 if a new signed prekey was generated (it is now current).
    pub new_signed_prekey: u8,
    /// Its id (0 if none).
    pub new_signed_prekey_id: u32,
    /// 1 if a new last-resort KEM prekey was generated (it is now current).
    pub new_last_resort_kem_prekey: u8,
    /// Its id (0 if none).
    pub new_last_resort_kem_prekey_id: u32,
    /// Superseded signed prekeys deleted after their grace period.
    pub deleted_signed_prekeys: usize,
    /// Superseded last-resort KEM prekeys deleted after their grace period.
    pub deleted_kem_prekeys: usize,
    /// One-time X25519 prekeys generated and stored (0 unless the server was low).
    pub new_one_time_prekeys: usize,
    /// One-time ML-KEM prekeys generated and stored (0 unless the server was low).
    pub new_kem_one_time_prekeys: usize,
}

/// Runs one round of key maintenance at `now` (seconds since the Unix epoch) with the
/// default policy (rotate every 7 days, keep superseded keys 30 days, replenish 100
/// one-time prekeys when the server holds fewer than 20 of a kind), given the counts
/// of unused one-time prekeys the server reports. Idempotent for a given `now`.
///
/// # Safety
/// `store` null or live; `out_report` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_store_run_maintenance(
    store: *const SignalStore,
    now: u64,
    server_one_time_prekeys: usize,
    server_kem_one_time_prekeys: usize,
    out_report: *mut SignalMaintenanceReport,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract.
        let store = unsafe { handle(store, "store") }?;
        // SAFETY: forwarded contract.
        let out_report = unsafe { out(out_report, "out_report") }?;
        let report = KeyMaintenance::default().run(
            &mut **store.lock()?,
            now,
            ServerPreKeyCounts {
                one_time: server_one_time_prekeys,
                kem_one_time: server_kem_one_time_prekeys,
            },
        )?;
        *out_report = SignalMaintenanceReport {
            new_signed_prekey: u8::from(report.new_signed_prekey.is_some()),
            new_signed_prekey_id: report.new_signed_prekey.as_ref().map_or(0, |k| k.id),
            new_last_resort_kem_prekey: u8::from(report.new_last_resort_kem_prekey.is_some()),
            new_last_resort_kem_prekey_id: report
                .new_last_resort_kem_prekey
                .as_ref()
                .map_or(0, |k| k.id),
            deleted_signed_prekeys: report.deleted_signed_prekeys.len(),
            deleted_kem_prekeys: report.deleted_kem_prekeys.len(),
            new_one_time_prekeys: report.new_one_time_prekeys.len(),
            new_kem_one_time_prekeys: report.new_kem_one_time_prekeys.len(),
        };
        Ok(())
    })
}

/// The bundle of this device's **current** signed prekey and current last-resort
/// ML-KEM prekey (the newest by creation time, as key maintenance defines "current"),
/// with no one-time prekey: what to upload after [`signal_store_run_maintenance`]
/// rotated a key. Fails with `SIGNAL_ERR_NOT_FOUND` if either kind is missing (run
/// maintenance first).
///
/// # Safety
/// `store` null or live; `out_bundle` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal_store_current_bundle(
    store: *const SignalStore,
    out_bundle: *mut SignalBuffer,
) -> SignalErrorCode {
    guard(|| {
        // SAFETY: forwarded contract.
        let store = unsafe { handle(store, "store") }?;
        // SAFETY: forwarded contract.
        let out_bundle = unsafe { out(out_bundle, "out_bundle") }?;
        let s = store.lock()?;
        let not_found = |what: &str| {
            FfiError::new(
                SignalErrorCode::SIGNAL_ERR_NOT_FOUND,
                format!("no {what} stored: run key maintenance first"),
            )
        };
        let mut signed = None;
        for id in s.signed_prekey_ids()? {
            if let Some(r) = s.load_signed_prekey(id)? {
                signed = match signed {
                    Some(best) if key_of(&best) >= (r.created_at(), r.id()) => Some(best),
                    _ => Some(r),
                };
            }
        }
        let mut kem = None;
        for id in s.kem_prekey_ids()? {
            if let Some(r) = s.load_kem_prekey(id)?.filter(|r| r.is_last_resort()) {
                kem = match kem {
                    Some(best) if kem_key_of(&best) >= (r.created_at(), r.id()) => Some(best),
                    _ => Some(r),
                };
            }
        }
        let signed = signed.ok_or_else(|| not_found("signed prekey"))?;
        let kem = kem.ok_or_else(|| not_found("last-resort KEM prekey"))?;
        let identity = s.local_identity()?;
        let bundle = PreKeyBundle {
            registration_id: s.local_registration_id()?,
            identity: *identity.public(),
            signed_prekey: signed.public().clone(),
            one_time_prekey: None,
            kem_prekey: kem.public().clone(),
        };
        *out_bundle = SignalBuffer::from_vec(bundle.encode());
        Ok(())
    })
}

fn key_of(r: &signal_core::prekey::SignedPreKeyRecord) -> (u64, u32) {
    (r.created_at(), r.id())
}

fn kem_key_of(r: &signal_core::prekey::KemPreKeyRecord) -> (u64, u32) {
    (r.created_at(), r.id())
}
