//! `SignalMessage::decode`, then a (non-committing) decryption on an established session.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use signal_core::session;
use signal_core::wire::{MessageKind, SignalMessage};

/// Alice and Bob after one round trip: both have a session.
static PAIR: OnceLock<signal_fuzz::Pair> = OnceLock::new();

fn established() -> signal_fuzz::Pair {
    let mut p = signal_fuzz::pair();
    let first = session::encrypt(&mut p.alice, &p.bob_addr, b"hi").expect("encrypt");
    session::decrypt_and_commit(&mut p.bob, &p.alice_addr, &first).expect("decrypt");
    let reply = session::encrypt(&mut p.bob, &p.alice_addr, b"hi").expect("encrypt");
    session::decrypt_and_commit(&mut p.alice, &p.bob_addr, &reply).expect("decrypt");
    p
}

fuzz_target!(|data: &[u8]| {
    let p = PAIR.get_or_init(established);
    let _ = MessageKind::of(data);
    if let Ok(m) = SignalMessage::decode(data) {
        assert_eq!(m.encoded(), data);
    }
    let _ = session::decrypt(&p.bob, &p.alice_addr, data);
    let _ = session::decrypt(&p.alice, &p.bob_addr, data);
});
