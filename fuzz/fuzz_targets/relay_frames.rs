//! The relay's WebSocket frames: what the relay reads from a client (`ClientFrame`) and
//! what a client reads from the relay (`ServerFrame`). Both are JSON text frames, so the
//! bytes must be UTF-8 first, as `warp`'s `Message::to_str` requires.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_server::types::{ClientFrame, ServerFrame};
use signal_fuzz::relay_frame;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(body) else {
        return;
    };
    if which % 2 == relay_frame::CLIENT {
        if let Ok(f) = serde_json::from_str::<ClientFrame>(text) {
            let json = serde_json::to_string(&f).expect("serialize");
            assert_eq!(serde_json::from_str::<ClientFrame>(&json).ok(), Some(f));
        }
    } else if let Ok(f) = serde_json::from_str::<ServerFrame>(text) {
        let json = serde_json::to_string(&f).expect("serialize");
        assert_eq!(serde_json::from_str::<ServerFrame>(&json).ok(), Some(f));
    }
});
