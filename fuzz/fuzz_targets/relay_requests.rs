//! Every JSON request body the relay parses, and the `Authorization` header: the first
//! byte picks which. A body that parses goes through the checks the handlers apply
//! (`relay-server/src/api.rs`) and survives a serialization round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_server::auth;
use relay_server::types::{
    KeyUploadRequest, LinkDeviceRequest, PreKeyJson, RegisterRequest, SendRequest,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use signal_core::IdentityKey;
use signal_core::keys::{DhPublicKey, KemPublicKey};
use signal_fuzz::relay_request as sel;

fn round_trip<T: Serialize + DeserializeOwned>(v: &T) {
    let json = serde_json::to_vec(v).expect("serialize");
    let _: T = serde_json::from_slice(&json).expect("what serializes parses");
}

fn keys(k: &PreKeyJson) {
    let _ = DhPublicKey::decode(&k.key);
    let _ = KemPublicKey::decode(&k.key);
    let _ = <[u8; 64]>::try_from(k.signature.as_slice());
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % sel::COUNT {
        sel::REGISTER => {
            if let Ok(r) = serde_json::from_slice::<RegisterRequest>(body) {
                let _ = auth::valid_account(&r.account);
                let _ = auth::valid_credential(&r.credential);
                round_trip(&r);
            }
        }
        sel::LINK_DEVICE => {
            if let Ok(r) = serde_json::from_slice::<LinkDeviceRequest>(body) {
                let _ = auth::valid_credential(&r.credential);
                round_trip(&r);
            }
        }
        sel::KEY_UPLOAD => {
            if let Ok(r) = serde_json::from_slice::<KeyUploadRequest>(body) {
                if let Some(i) = &r.identity {
                    let _ = IdentityKey::decode(i);
                }
                r.signed_prekey.iter().for_each(keys);
                r.one_time_prekeys.iter().for_each(keys);
                r.kem_prekeys.iter().for_each(keys);
                r.last_resort_kem_prekey.iter().for_each(keys);
                round_trip(&r);
            }
        }
        sel::SEND => {
            if let Ok(r) = serde_json::from_slice::<SendRequest>(body) {
                for m in &r.messages {
                    let _ = signal_core::wire::MessageKind::of(&m.body);
                }
                round_trip(&r);
            }
        }
        _ => {
            if let Ok(header) = std::str::from_utf8(body)
                && let Some((account, device, credential)) = auth::parse_header(header)
            {
                let _ = (auth::valid_account(&account), device);
                let _ = auth::valid_credential(&credential);
            }
        }
    }
});
