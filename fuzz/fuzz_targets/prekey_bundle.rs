//! `PreKeyBundle::decode`, `verify`, and PQXDH initiation with a bundle that verified.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use signal_core::prekey::PreKeyBundle;
use signal_core::session;

static PAIR: OnceLock<signal_fuzz::Pair> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let p = PAIR.get_or_init(signal_fuzz::pair);
    let Ok(bundle) = PreKeyBundle::decode(data) else {
        return;
    };
    assert_eq!(bundle.encode(), data, "bundle encoding is canonical");
    let _ = bundle.clone().verify_for(&p.bundle.identity);
    if let Ok(verified) = bundle.verify() {
        let mut alice = p.alice.clone();
        let _ = session::initiate(&mut alice, &p.bob_addr, &verified);
    }
});
