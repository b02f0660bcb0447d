//! Key maintenance: rotation of the signed and last-resort KEM prekeys, deletion after
//! the grace period, one-time prekey replenishment.

use signal_core::maintenance::{KeyMaintenance, ServerPreKeyCounts};

use crate::buffer::{handle, out};
use crate::error::{SignalErrorCode, guard};
use crate::store::SignalStore;

/// What one maintenance run did. Everything new is already stored; fetch a bundle to
/// upload with `signal_store_generate_prekeys` as usual, or upload per your relay's
/// protocol.
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
