//! `PreKeyMessage::decode`, then a full (non-committing) decryption by the responder.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use signal_core::session;
use signal_core::wire::PreKeyMessage;

static PAIR: OnceLock<signal_fuzz::Pair> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let p = PAIR.get_or_init(signal_fuzz::pair);
    if let Ok(m) = PreKeyMessage::decode(data) {
        // The encoding is canonical: what decodes re-encodes to the same bytes.
        assert_eq!(m.encode(), data);
    }
    // Read-only: a decryption attempt changes nothing, so the fixture can be shared.
    let _ = session::decrypt(&p.bob, &p.alice_addr, data);
});
