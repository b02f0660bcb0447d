//! `SenderKeyDistributionMessage::decode`, then processing it into a member's store.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use signal_core::group::{self, SenderKeyDistributionMessage};
use signal_core::store::SenderKeyStore;

static GROUP: OnceLock<signal_fuzz::Group> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let g = GROUP.get_or_init(signal_fuzz::group);
    let Ok(m) = SenderKeyDistributionMessage::decode(data) else {
        return;
    };
    assert_eq!(&m.encode()[..], data, "distribution encoding is canonical");
    let mut bob = g.stores[1].clone();
    for sender in &g.addrs {
        let before = bob
            .load_sender_key(m.group(), sender)
            .expect("load")
            .map(|r| r.encode().to_vec());
        if group::process_distribution(&mut bob, sender, &m).is_err() {
            let after = bob
                .load_sender_key(m.group(), sender)
                .expect("load")
                .map(|r| r.encode().to_vec());
            assert_eq!(before, after, "a refused distribution changes nothing");
        } else if let Ok(wire) = group::encrypt(&mut g.stores[0].clone(), &g.id, &g.addrs[0], b"x")
        {
            let _ = group::decrypt(&bob, &g.id, sender, &wire);
        }
    }
});
