//! `inspect NAME`: what this device holds about a contact — session metadata, trust,
//! sender-key chains — and never a key byte.

use std::fmt::Write as _;

use session_store::SqlStore;
use signal_core::Address;
use signal_core::session::SessionInfo;
use signal_core::store::{IdentityStore, SenderKeyStore, SessionStore};

use crate::appdb;
use crate::envelope::hex;
use crate::error::Result;
use crate::messenger::now;

fn age(created_at: u64, now: u64) -> String {
    let s = now.saturating_sub(created_at);
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

fn describe(out: &mut String, label: &str, info: &SessionInfo, now: u64) {
    let skipped: usize = info.receiving_chains.iter().map(|(_, n)| n).sum();
    let _ = writeln!(
        out,
        "    {label}: {} session, created {} ago, peer registration id {}",
        if info.initiator {
            "initiated"
        } else {
            "accepted"
        },
        age(info.created_at, now),
        info.remote_registration_id
    );
    let _ = writeln!(
        out,
        "      sending chain: {}{}",
        info.sending_index
            .map_or("none yet (next send ratchets)".into(), |i| format!(
                "next index {i}"
            )),
        if info.awaiting_reply {
            " (pre-key messages until the peer replies)"
        } else {
            ""
        }
    );
    let chains: Vec<String> = info
        .receiving_chains
        .iter()
        .map(|(next, skipped)| format!("next {next}, {skipped} skipped"))
        .collect();
    let _ = writeln!(
        out,
        "      receiving chains: {} [{}], skipped message keys held: {skipped}",
        info.receiving_chains.len(),
        chains.join("; ")
    );
}

/// The report for `user`.
pub fn report(store: &SqlStore, user: &str) -> Result<String> {
    let now = now();
    let mut out = String::new();
    let devices = store.session_devices(user)?;
    let _ = writeln!(out, "{user}: sessions with {} device(s)", devices.len());
    for device in devices {
        let address = Address::new(user, device).map_err(signal_core::SessionError::from)?;
        let _ = writeln!(out, "  device {device}:");
        let trust = match (
            store.remote_identity(&address)?,
            appdb::verified_identity(store, user, device)?,
        ) {
            (Some(id), Some(v)) if v[..] == id.encode()[..] => "verified".to_owned(),
            (Some(_), Some(_)) => "CHANGED since verified".to_owned(),
            (Some(id), None) => format!(
                "not verified (identity fingerprint {}…)",
                &hex(&id.fingerprint())[..16]
            ),
            (None, _) => "no identity recorded".to_owned(),
        };
        let _ = writeln!(out, "    identity: {trust}");
        if appdb::identity_changes(store, user)?.contains(&device) {
            let _ = writeln!(
                out,
                "    !!! identity change pending verification: sending is blocked"
            );
        }
        let Some(record) = store.load_session(&address)? else {
            continue;
        };
        match record.current() {
            Some(state) => describe(&mut out, "current", &state.info(), now),
            None => {
                let _ = writeln!(
                    out,
                    "    current: none (archived; the next send starts a new one)"
                );
            }
        }
        let archived: Vec<_> = record.archived().collect();
        let _ = writeln!(out, "    archived sessions: {}", archived.len());
        for (i, state) in archived.iter().enumerate() {
            describe(
                &mut out,
                &format!("archived #{}", i + 1),
                &state.info(),
                now,
            );
        }
    }
    for g in appdb::groups(store)? {
        if !g.members.iter().any(|m| m == user) {
            continue;
        }
        let senders: Vec<Address> = store
            .sender_key_senders(&g.id)?
            .into_iter()
            .filter(|a| a.user() == user)
            .collect();
        let mut line = format!(
            "  group {}{}: ",
            g.name,
            if g.active { "" } else { " (left)" }
        );
        if senders.is_empty() {
            line.push_str("no sender-key chain received yet");
        }
        for s in senders {
            if let Some(record) = store.load_sender_key(&g.id, &s)? {
                let ids: Vec<String> = record.chain_ids().map(|c| c.to_string()).collect();
                let _ = write!(line, "device {} chain(s) [{}] ", s.device(), ids.join(", "));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    Ok(out)
}
