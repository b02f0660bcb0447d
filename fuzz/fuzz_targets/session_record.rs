//! `SessionRecord::decode`; a record that decodes re-encodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signal_core::session::SessionRecord;

fuzz_target!(|data: &[u8]| {
    let Ok(record) = SessionRecord::decode(data) else {
        return;
    };
    let encoded = record.encode();
    let again = SessionRecord::decode(&encoded).expect("an encoding decodes");
    assert_eq!(again.encode(), encoded, "encode ∘ decode is stable");
    if let Some(s) = record.current() {
        let _ = (s.remote_identity(), s.local_identity(), s.info());
    }
    for s in record.archived() {
        let _ = (s.remote_identity(), s.info());
    }
});
