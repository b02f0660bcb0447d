//! Fixtures shared by the fuzz targets, and the generator of the seed corpora.
//!
//! Every fixture is built with the crates' public APIs, the way a client would: real
//! identities, real prekeys, real PQXDH. Targets build them once per process
//! (`std::sync::OnceLock`) and clone them per input.
//!
//! The seed corpora in `fuzz/corpus/<target>/` are written by [`write_corpora`]:
//!
//! ```text
//! cd fuzz && cargo test --lib -- --ignored write_seed_corpora
//! ```

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use relay_server::types::{
    ClientFrame, KeyUploadRequest, LinkDeviceRequest, OutgoingJson, PreKeyJson, RegisterRequest,
    SendRequest, ServerFrame,
};
use signal_core::group::{self, GroupId};
use signal_core::prekey::{KemPreKeyRecord, OneTimePreKeyRecord, PreKeyBundle, SignedPreKeyRecord};
use signal_core::store::{
    InMemoryStore, KemPreKeyStore, PreKeyStore, SenderKeyStore, SessionStore, SignedPreKeyStore,
};
use signal_core::{Address, IdentityKeyPair, session};

/// A fixed creation time for every prekey (the protocol never reads the clock for them).
pub const CREATED_AT: u64 = 1_700_000_000;

/// Number of one-time prekeys (X25519 and ML-KEM) Bob publishes.
pub const ONE_TIME_PREKEYS: u32 = 4;

/// Alice and Bob: Bob has published prekeys; Alice has verified his bundle and run
/// PQXDH, so her first messages are pre-key messages. Bob has no session yet.
#[derive(Clone)]
pub struct Pair {
    /// Alice's store.
    pub alice: InMemoryStore,
    /// Bob's store.
    pub bob: InMemoryStore,
    /// Alice's address.
    pub alice_addr: Address,
    /// Bob's address.
    pub bob_addr: Address,
    /// Bob's bundle as Alice fetched it.
    pub bundle: PreKeyBundle,
    /// Bob's signed prekey record.
    pub signed_prekey: SignedPreKeyRecord,
    /// Bob's first one-time prekey record.
    pub one_time_prekey: OneTimePreKeyRecord,
    /// Bob's last-resort KEM prekey record.
    pub kem_prekey: KemPreKeyRecord,
    /// Bob's identity.
    pub bob_identity: IdentityKeyPair,
}

/// Builds a fresh [`Pair`].
pub fn pair() -> Pair {
    let bob_identity = IdentityKeyPair::generate().expect("identity");
    let mut bob = InMemoryStore::new(bob_identity.clone(), 2);
    let spk = SignedPreKeyRecord::generate(&bob_identity, 2, 1, CREATED_AT).expect("spk");
    bob.store_signed_prekey(&spk).expect("store");
    let mut first_opk = None;
    for id in 1..=ONE_TIME_PREKEYS {
        let opk = OneTimePreKeyRecord::generate(&bob_identity, id, CREATED_AT).expect("opk");
        bob.store_prekey(&opk).expect("store");
        first_opk.get_or_insert(opk);
        let kem = KemPreKeyRecord::generate(&bob_identity, id, CREATED_AT, false).expect("kem");
        bob.store_kem_prekey(&kem).expect("store");
    }
    let last_resort =
        KemPreKeyRecord::generate(&bob_identity, 1000, CREATED_AT, true).expect("kem");
    bob.store_kem_prekey(&last_resort).expect("store");
    let one_time_prekey = first_opk.expect("at least one one-time prekey");
    let bundle = PreKeyBundle {
        registration_id: 2,
        identity: *bob_identity.public(),
        signed_prekey: spk.public().clone(),
        one_time_prekey: Some(one_time_prekey.public().clone()),
        kem_prekey: last_resort.public().clone(),
    };
    let mut alice = InMemoryStore::new(IdentityKeyPair::generate().expect("identity"), 1);
    let alice_addr = Address::new("alice", 1).expect("address");
    let bob_addr = Address::new("bob", 1).expect("address");
    session::initiate(
        &mut alice,
        &bob_addr,
        &bundle.clone().verify().expect("bundle verifies"),
    )
    .expect("initiate");
    Pair {
        alice,
        bob,
        alice_addr,
        bob_addr,
        bundle,
        signed_prekey: spk,
        one_time_prekey,
        kem_prekey: last_resort,
        bob_identity,
    }
}

/// Three members of one group; each has created a sending chain and every other
/// member has processed its distribution message.
#[derive(Clone)]
pub struct Group {
    /// The group.
    pub id: GroupId,
    /// The members' stores.
    pub stores: [InMemoryStore; 3],
    /// The members' addresses.
    pub addrs: [Address; 3],
}

/// Builds a fresh [`Group`].
pub fn group() -> Group {
    let id = GroupId::generate().expect("group id");
    let addrs = ["alice", "bob", "carol"].map(|u| Address::new(u, 1).expect("address"));
    let mut stores =
        [1, 2, 3].map(|r| InMemoryStore::new(IdentityKeyPair::generate().expect("identity"), r));
    for i in 0..3 {
        let skdm = group::create_distribution(&mut stores[i], &id, &addrs[i]).expect("skdm");
        for (j, store) in stores.iter_mut().enumerate() {
            if j != i {
                group::process_distribution(store, &addrs[i], &skdm).expect("process");
            }
        }
    }
    Group { id, stores, addrs }
}

/// Input selectors of the `store_records` target: the first byte picks the table.
pub mod store_record {
    /// `local_identity.key_pair`.
    pub const LOCAL_IDENTITY: u8 = 0;
    /// `remote_identities.identity`.
    pub const REMOTE_IDENTITY: u8 = 1;
    /// `prekeys.record`.
    pub const ONE_TIME_PREKEY: u8 = 2;
    /// `signed_prekeys.record`.
    pub const SIGNED_PREKEY: u8 = 3;
    /// `kem_prekeys.record`.
    pub const KEM_PREKEY: u8 = 4;
    /// `sessions.record`.
    pub const SESSION: u8 = 5;
    /// `sender_keys.record`.
    pub const SENDER_KEY: u8 = 6;
    /// Number of selectors.
    pub const COUNT: u8 = 7;
}

/// Input selectors of the `relay_requests` target: the first byte picks the body type.
pub mod relay_request {
    /// `POST /v1/accounts`.
    pub const REGISTER: u8 = 0;
    /// `POST /v1/devices`.
    pub const LINK_DEVICE: u8 = 1;
    /// `PUT /v1/keys`.
    pub const KEY_UPLOAD: u8 = 2;
    /// `PUT /v1/messages/{account}`.
    pub const SEND: u8 = 3;
    /// The `Authorization` header.
    pub const AUTH_HEADER: u8 = 4;
    /// Number of selectors.
    pub const COUNT: u8 = 5;
}

/// Input selectors of the `relay_frames` target.
pub mod relay_frame {
    /// A frame the relay reads (client to relay).
    pub const CLIENT: u8 = 0;
    /// A frame the client reads (relay to client).
    pub const SERVER: u8 = 1;
}

fn prefixed(selector: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![selector];
    v.extend_from_slice(body);
    v
}

fn prekey_json(id: u32, key: Vec<u8>, signature: &[u8]) -> PreKeyJson {
    PreKeyJson {
        id,
        created_at: CREATED_AT,
        key,
        signature: signature.to_vec(),
    }
}

/// Real encodings for every target, by target name.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let mut p = pair();
    let first = session::encrypt(&mut p.alice, &p.bob_addr, b"hello Bob").expect("encrypt");
    let second = session::encrypt(&mut p.alice, &p.bob_addr, b"").expect("encrypt");
    out.push(("prekey_message", first.clone()));
    out.push(("prekey_message", second.clone()));
    session::decrypt_and_commit(&mut p.bob, &p.alice_addr, &first).expect("decrypt");
    let reply = session::encrypt(&mut p.bob, &p.alice_addr, b"hi Alice").expect("encrypt");
    out.push(("message", reply.clone()));
    session::decrypt_and_commit(&mut p.alice, &p.bob_addr, &reply).expect("decrypt");
    let next = session::encrypt(&mut p.alice, &p.bob_addr, &[0x42; 100]).expect("encrypt");
    out.push(("message", next));

    out.push(("prekey_bundle", p.bundle.encode()));
    let mut no_opk = p.bundle.clone();
    no_opk.one_time_prekey = None;
    out.push(("prekey_bundle", no_opk.encode()));

    let g = group();
    let mut g2 = g.clone();
    let gm = group::encrypt(&mut g2.stores[0], &g.id, &g.addrs[0], b"hello group").expect("enc");
    let gm2 = group::encrypt(&mut g2.stores[0], &g.id, &g.addrs[0], b"").expect("enc");
    out.push(("sender_key_message", gm));
    out.push(("sender_key_message", gm2));
    let skdm = group::create_distribution(&mut g2.stores[1], &g.id, &g.addrs[1]).expect("skdm");
    out.push(("sender_key_distribution", skdm.encode().to_vec()));

    let alice_record = p
        .alice
        .load_session(&p.bob_addr)
        .expect("load")
        .expect("record");
    let bob_record = p
        .bob
        .load_session(&p.alice_addr)
        .expect("load")
        .expect("record");
    out.push(("session_record", alice_record.encode().to_vec()));
    out.push(("session_record", bob_record.encode().to_vec()));

    let sender_key = g2.stores[1]
        .load_sender_key(&g.id, &g.addrs[0])
        .expect("load")
        .expect("record")
        .encode()
        .to_vec();
    let own_sender_key = g2.stores[0]
        .load_sender_key(&g.id, &g.addrs[0])
        .expect("load")
        .expect("record")
        .encode()
        .to_vec();
    use store_record as s;
    for (sel, bytes) in [
        (s::LOCAL_IDENTITY, p.bob_identity.to_secret_bytes().to_vec()),
        (
            s::REMOTE_IDENTITY,
            p.bob_identity.public().encode().to_vec(),
        ),
        (
            s::ONE_TIME_PREKEY,
            p.one_time_prekey.to_secret_bytes().to_vec(),
        ),
        (s::SIGNED_PREKEY, p.signed_prekey.to_secret_bytes().to_vec()),
        (s::KEM_PREKEY, p.kem_prekey.to_secret_bytes().to_vec()),
        (s::SESSION, bob_record.encode().to_vec()),
        (s::SENDER_KEY, sender_key),
        (s::SENDER_KEY, own_sender_key),
    ] {
        out.push(("store_records", prefixed(sel, &bytes)));
    }

    use relay_request as r;
    let register = RegisterRequest {
        account: "alice".into(),
        registration_id: 7,
        credential: "c2VjcmV0LWNyZWRlbnRpYWwtMTIz".into(),
        invite_token: Some("invite".into()),
    };
    let link = LinkDeviceRequest {
        registration_id: 9,
        credential: "another-credential-with-entropy".into(),
    };
    let spk = p.signed_prekey.public();
    let opk = p.one_time_prekey.public();
    let upload = KeyUploadRequest {
        identity: Some(p.bob_identity.public().encode().to_vec()),
        signed_prekey: Some(prekey_json(
            spk.id,
            spk.key.encode().to_vec(),
            &spk.signature,
        )),
        one_time_prekeys: vec![prekey_json(
            opk.id,
            opk.key.encode().to_vec(),
            &opk.signature,
        )],
        kem_prekeys: Vec::new(),
        last_resort_kem_prekey: None,
    };
    let send = SendRequest {
        id: "msg-1".into(),
        messages: vec![OutgoingJson {
            device: 1,
            registration_id: 2,
            body: first,
        }],
    };
    for (sel, json) in [
        (r::REGISTER, serde_json::to_vec(&register).expect("json")),
        (r::LINK_DEVICE, serde_json::to_vec(&link).expect("json")),
        (r::KEY_UPLOAD, serde_json::to_vec(&upload).expect("json")),
        (r::SEND, serde_json::to_vec(&send).expect("json")),
        (
            r::AUTH_HEADER,
            relay_server::auth::basic_header("alice", 1, "c2VjcmV0LWNyZWRlbnRpYWwtMTIz")
                .into_bytes(),
        ),
    ] {
        out.push(("relay_requests", prefixed(sel, &json)));
    }

    let frames = [
        (
            relay_frame::CLIENT,
            serde_json::to_vec(&ClientFrame::Ack { seq: 42 }).expect("json"),
        ),
        (
            relay_frame::SERVER,
            serde_json::to_vec(&ServerFrame::Message {
                seq: 42,
                sender: "alice".into(),
                sender_device: 1,
                id: "msg-1".into(),
                timestamp: CREATED_AT,
                body: second,
            })
            .expect("json"),
        ),
        (
            relay_frame::SERVER,
            serde_json::to_vec(&ServerFrame::QueueEmpty).expect("json"),
        ),
        (
            relay_frame::SERVER,
            serde_json::to_vec(&ServerFrame::Reconnect).expect("json"),
        ),
    ];
    for (sel, json) in frames {
        out.push(("relay_frames", prefixed(sel, &json)));
    }

    // The conversation and FFI targets read structured input with `arbitrary`: any
    // bytes are a valid script, so a few varied ones are enough to start from.
    for seed in [
        &b"\x00\x10\x02\x00\x05\x01\x00\x03\x00\x00"[..],
        &b"\x00\x20\x00\x30\x02\x00\x02\x01\x06\x00\x07\x01\x03\x01\x04\x02\x05"[..],
        &b"\x01\x05\x01\x06\x02\x00\x02\x00\x03\x00\x04\x00\x05\x00\x06\x00\x07\x00"[..],
    ] {
        out.push(("conversation", seed.to_vec()));
    }
    for seed in [
        &b"\x00\x01\x02\x03"[..],
        &b"\x03\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"[..],
        &b"\x05\x10abcdefghijklmnop"[..],
    ] {
        out.push(("ffi_abi", seed.to_vec()));
    }
    out
}

/// Writes [`seeds`] to `dir/<target>/seed-<n>`, replacing earlier seeds.
pub fn write_corpora(dir: &Path) -> std::io::Result<()> {
    let mut counts = std::collections::HashMap::<&str, usize>::new();
    for (target, bytes) in seeds() {
        let d = dir.join(target);
        let n = counts.entry(target).or_default();
        if *n == 0 {
            if d.exists() {
                std::fs::remove_dir_all(&d)?;
            }
            std::fs::create_dir_all(&d)?;
        }
        std::fs::write(d.join(format!("seed-{n}")), bytes)?;
        *n += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regenerates `fuzz/corpus/` (run by hand; the seeds hold fresh random keys).
    #[test]
    #[ignore = "writes fuzz/corpus/"]
    fn write_seed_corpora() {
        write_corpora(&Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")).expect("write");
    }

    #[test]
    fn fixtures_build() {
        assert!(!seeds().is_empty());
    }
}
