//! `SenderKeyMessage::parse`, then a (non-committing) group decryption.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use signal_core::group::{self, SenderKeyMessage};

static GROUP: OnceLock<signal_fuzz::Group> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let g = GROUP.get_or_init(signal_fuzz::group);
    if let Ok(m) = SenderKeyMessage::parse(data) {
        let _ = (m.chain_id, m.iteration);
    }
    // Bob reads what Alice and Carol send; his own address is refused.
    for sender in &g.addrs {
        let _ = group::decrypt(&g.stores[1], &g.id, sender, data);
    }
});
