//! Attacks, bad input, concurrent claims, and two signal-core clients end to end.

// Test bodies shared by the sqlite/postgres variants are plain fns, not #[test]s, so
// clippy.toml's allowances for tests do not reach them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Backend, Device, TestRelay, credential, random_name, raw};
use relay_server::auth::basic_header;
use relay_server::client::ClientError;
use relay_server::types::{OutgoingJson, ServerFrame};
use signal_core::store::InMemoryStore;
use signal_core::{Address, session};

const T: Duration = Duration::from_secs(5);

async fn next(d: &mut relay_server::client::Delivery) -> ServerFrame {
    tokio::time::timeout(T, d.next())
        .await
        .expect("frame within 5 s")
        .expect("socket open")
}

fn msg(device: u32, registration_id: u32, body: &[u8]) -> OutgoingJson {
    OutgoingJson {
        device,
        registration_id,
        body: body.to_vec(),
    }
}

async fn attacks(backend: Backend) {
    let relay = TestRelay::start(backend).await;
    let alice_name = random_name("alice");
    let alice = Device::register(&relay.client, &alice_name, 2, 2).await;
    let alice2 = Device::link(&alice.client, 0, 0).await;
    let mallory = Device::register(&relay.client, &random_name("mallory"), 0, 0).await;
    alice2
        .client
        .send(
            &alice_name,
            "to-one",
            vec![msg(1, alice.registration_id, b"secret")],
        )
        .await
        .unwrap();

    // Mallory's credential under Alice's name: refused for every route, WebSocket too.
    let forged = relay
        .client
        .authenticated(&alice_name, 1, &mallory.credential);
    for e in [
        forged.key_counts().await.map(|_| ()).unwrap_err(),
        forged
            .upload_keys(&mallory.full_upload())
            .await
            .unwrap_err(),
        forged.connect().await.map(|_| ()).unwrap_err(),
        forged.remove_device(2).await.unwrap_err(),
        forged
            .link_device(5, &credential())
            .await
            .map(|_| ())
            .unwrap_err(),
    ] {
        match e {
            ClientError::Status { status, .. } => assert_eq!(status, 401),
            ClientError::WebSocket(_) => {}
            other => panic!("{other:?}"),
        }
    }
    // Alice's device 2 cannot read device 1's queue: its credential is only valid for
    // device 2.
    let cross = relay
        .client
        .authenticated(&alice_name, 1, &alice2.credential);
    assert!(cross.connect().await.is_err());
    // Replaying another device's ack: Mallory and Alice's device 2 ack device 1's seq.
    let mut ws1 = alice.client.connect().await.unwrap();
    let ServerFrame::Message { seq, body, .. } = next(&mut ws1).await else {
        panic!()
    };
    assert_eq!(body, b"secret");
    ws1.close().await;
    for attacker in [&mallory, &alice2] {
        let mut ws = attacker.client.connect().await.unwrap();
        assert_eq!(next(&mut ws).await, ServerFrame::QueueEmpty);
        ws.ack(seq).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        ws.close().await;
    }
    let mut ws1 = alice.client.connect().await.unwrap();
    let ServerFrame::Message { seq: again, .. } = next(&mut ws1).await else {
        panic!()
    };
    assert_eq!(again, seq, "message survived the replayed acks");
    // Key uploads cannot target another account: Mallory uploading changes only her
    // own keys, and Alice's counts are unchanged.
    mallory
        .client
        .upload_keys(&mallory.full_upload())
        .await
        .unwrap();
    let counts = alice.client.key_counts().await.unwrap();
    assert_eq!((counts.one_time, counts.kem_one_time), (2, 2));
    let list = mallory.client.devices(&alice_name).await.unwrap();
    assert_eq!(
        list.devices[0].identity.as_deref(),
        Some(&alice.identity.public().encode()[..])
    );
    // Mallory cannot remove Alice's device 2 (she can only name devices of her account).
    let e = mallory.client.remove_device(2).await.unwrap_err();
    assert!(matches!(e, ClientError::Status { status: 404, .. }));
    assert_eq!(
        mallory
            .client
            .devices(&alice_name)
            .await
            .unwrap()
            .devices
            .len(),
        2
    );
    relay.stop().await;
}

async fn bad_input(backend: Backend) {
    let relay = TestRelay::start(backend).await;
    let base = relay.base();
    let a = Device::register(&relay.client, &random_name("a"), 1, 1).await;
    let b_name = random_name("b");
    Device::register(&relay.client, &b_name, 1, 1).await;
    let auth = basic_header(&a.account(), 1, &a.credential);
    let cases: Vec<(&str, String, Vec<u8>)> = vec![
        ("POST", format!("{base}/v1/accounts"), b"{not json".to_vec()),
        ("POST", format!("{base}/v1/accounts"), b"[]".to_vec()),
        ("POST", format!("{base}/v1/accounts"), br#"{"account":"x","registration_id":"one","credential":"c"}"#.to_vec()),
        ("POST", format!("{base}/v1/accounts"), br#"{"account":"x","registration_id":-1,"credential":"c"}"#.to_vec()),
        ("POST", format!("{base}/v1/accounts"), br#"{"account":"x","registration_id":99999999999,"credential":"c"}"#.to_vec()),
        ("POST", format!("{base}/v1/accounts"), br#"{"account":"x","registration_id":1,"credential":"c","extra":1}"#.to_vec()),
        ("POST", format!("{base}/v1/accounts"), vec![0xff, 0xfe, 0x00]),
        ("POST", format!("{base}/v1/accounts"), vec![]),
        ("PUT", format!("{base}/v1/keys"), br#"{"identity":"!!!not base64!!!"}"#.to_vec()),
        ("PUT", format!("{base}/v1/keys"), br#"{"identity":"AAAA"}"#.to_vec()),
        ("PUT", format!("{base}/v1/keys"), br#"{"signed_prekey":{"id":1,"created_at":1,"key":"AAAA","signature":"AAAA"}}"#.to_vec()),
        ("PUT", format!("{base}/v1/keys"), br#"{"one_time_prekeys":{"id":1}}"#.to_vec()),
        ("PUT", format!("{base}/v1/keys"), br#"{}"#.to_vec()),
        ("PUT", format!("{base}/v1/keys"), format!("{{\"one_time_prekeys\":[{}]}}", vec!["{\"id\":1,\"created_at\":1,\"key\":\"AA==\",\"signature\":\"AA==\"}"; 5000].join(",")).into_bytes()),
        ("PUT", format!("{base}/v1/messages/{b_name}"), br#"{"id":"x","messages":[{"device":1,"registration_id":1,"body":"%%%"}]}"#.to_vec()),
        ("PUT", format!("{base}/v1/messages/{b_name}"), br#"{"id":"x","messages":"many"}"#.to_vec()),
        ("PUT", format!("{base}/v1/messages/{b_name}"), br#"{"id":"x","messages":[]}"#.to_vec()),
        ("PUT", format!("{base}/v1/messages/{b_name}"), br#"{"id":"x","messages":[{"device":1,"registration_id":1,"body":""},{"device":1,"registration_id":1,"body":""}]}"#.to_vec()),
        ("PUT", format!("{base}/v1/messages/{b_name}"), br#"{"id":"","messages":[{"device":1,"registration_id":1,"body":""}]}"#.to_vec()),
        ("PUT", format!("{base}/v1/messages/..%2F..%2Fetc"), br#"{"id":"x","messages":[{"device":1,"registration_id":1,"body":""}]}"#.to_vec()),
        ("PUT", format!("{base}/v1/messages/{b_name}"), vec![b'{'; 100_000]),
        ("PUT", format!("{base}/v1/messages/{b_name}"), vec![b'['; 10_000]),
        ("POST", format!("{base}/v1/devices"), br#"{"registration_id":1,"credential":""}"#.to_vec()),
        ("DELETE", format!("{base}/v1/devices/99999999999"), vec![]),
        ("DELETE", format!("{base}/v1/devices/-1"), vec![]),
        ("GET", format!("{base}/v1/bundles/{b_name}/abc"), vec![]),
        ("GET", format!("{base}/v1/bundles/{b_name}/4294967295"), vec![]),
        ("GET", format!("{base}/v1/bundles/UPPER"), vec![]),
        ("GET", format!("{base}/v1/accounts/{}/devices", "x".repeat(5000)), vec![]),
        ("GET", format!("{base}/v1/websocket"), vec![]),
        ("PATCH", format!("{base}/v1/keys"), vec![]),
        ("GET", format!("{base}/nope"), vec![]),
    ];
    for (method, url, body) in cases {
        let (code, text) = raw(method, &url, Some(&auth), body).await;
        assert!((400..500).contains(&code), "{method} {url}: {code} {text}");
    }
    // Oversized body (default limit 4 MiB).
    let code = common::oversized(
        relay.handle.addr(),
        &format!("/v1/messages/{b_name}"),
        &auth,
        5 << 20,
    )
    .await;
    assert_eq!(code, 413);
    // Garbage on the WebSocket closes only that socket.
    let mut ws = a.client.connect().await.unwrap();
    assert_eq!(next(&mut ws).await, ServerFrame::QueueEmpty);
    ws.send_raw("{\"type\":\"ack\",\"seq\":\"x\"}")
        .await
        .unwrap();
    assert!(tokio::time::timeout(T, ws.next()).await.unwrap().is_err());
    // Still alive and consistent.
    assert_eq!(
        raw("GET", &format!("{base}/readyz"), None, vec![]).await.0,
        200
    );
    let counts = a.client.key_counts().await.unwrap();
    assert_eq!((counts.one_time, counts.kem_one_time), (1, 1));
    relay.stop().await;
}

async fn concurrent_claims(backend: Backend) {
    let relay = TestRelay::start(backend).await;
    let name = random_name("target");
    let target = Device::register(&relay.client, &name, 60, 40).await;
    let fetcher = Device::register(&relay.client, &random_name("f"), 0, 0).await;
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let c = fetcher.client.clone();
        let name = name.clone();
        tasks.push(tokio::spawn(async move {
            c.bundles(&name, Some(1)).await.unwrap()
        }));
    }
    let mut otk = Vec::new();
    let mut kem = Vec::new();
    let mut last_resort = 0;
    for t in tasks {
        let (_, b) = t.await.unwrap().pop().unwrap();
        let b = b
            .verify_for(target.identity.public())
            .unwrap()
            .bundle()
            .clone();
        if let Some(k) = b.one_time_prekey {
            otk.push(k.id);
        }
        if b.kem_prekey.last_resort {
            last_resort += 1;
        } else {
            kem.push(b.kem_prekey.id);
        }
    }
    let unique: HashSet<_> = otk.iter().collect();
    assert_eq!(
        unique.len(),
        otk.len(),
        "a one-time EC prekey was handed out twice"
    );
    let unique_kem: HashSet<_> = kem.iter().collect();
    assert_eq!(
        unique_kem.len(),
        kem.len(),
        "a one-time KEM prekey was handed out twice"
    );
    assert_eq!(otk.len(), 60);
    assert_eq!(kem.len(), 40);
    assert_eq!(last_resort, 60);
    let counts = target.client.key_counts().await.unwrap();
    assert_eq!((counts.one_time, counts.kem_one_time), (0, 0));
    relay.stop().await;
}

/// Two clients with real signal-core stores: register, upload, PQXDH, both ways.
async fn end_to_end(backend: Backend) {
    let relay = TestRelay::start(backend).await;
    let (alice_name, bob_name) = (random_name("alice"), random_name("bob"));
    let alice = Device::register(&relay.client, &alice_name, 5, 5).await;
    let bob = Device::register(&relay.client, &bob_name, 5, 5).await;
    let store_of = |d: &Device| {
        use signal_core::store::{KemPreKeyStore, PreKeyStore, SignedPreKeyStore};
        let mut s = InMemoryStore::new(d.identity.clone(), d.registration_id);
        s.store_signed_prekey(&d.signed).unwrap();
        for k in &d.one_time {
            s.store_prekey(k).unwrap();
        }
        for k in &d.kem {
            s.store_kem_prekey(k).unwrap();
        }
        s.store_kem_prekey(&d.last_resort).unwrap();
        s
    };
    let (mut alice_store, mut bob_store) = (store_of(&alice), store_of(&bob));
    let alice_addr = Address::new(alice_name.clone(), 1).unwrap();
    let bob_addr = Address::new(bob_name.clone(), 1).unwrap();

    let (_, bundle) = alice
        .client
        .bundles(&bob_name, Some(1))
        .await
        .unwrap()
        .pop()
        .unwrap();
    session::initiate(&mut alice_store, &bob_addr, &bundle.verify().unwrap()).unwrap();
    let mut bob_ws = bob.client.connect().await.unwrap();
    assert_eq!(next(&mut bob_ws).await, ServerFrame::QueueEmpty);
    let mut alice_ws = alice.client.connect().await.unwrap();
    assert_eq!(next(&mut alice_ws).await, ServerFrame::QueueEmpty);
    for round in 0..3 {
        let text = format!("hello Bob {round}");
        let wire = session::encrypt(&mut alice_store, &bob_addr, text.as_bytes()).unwrap();
        alice
            .client
            .send(
                &bob_name,
                &format!("a{round}"),
                vec![msg(1, bob.registration_id, &wire)],
            )
            .await
            .unwrap();
        let ServerFrame::Message {
            seq, body, sender, ..
        } = next(&mut bob_ws).await
        else {
            panic!()
        };
        assert_eq!(sender, alice_name);
        assert_ne!(body, text.as_bytes(), "the relay only sees ciphertext");
        let plain = session::decrypt_and_commit(&mut bob_store, &alice_addr, &body).unwrap();
        assert_eq!(&plain[..], text.as_bytes());
        bob_ws.ack(seq).await.unwrap();

        let reply = format!("hi Alice {round}");
        let wire = session::encrypt(&mut bob_store, &alice_addr, reply.as_bytes()).unwrap();
        bob.client
            .send(
                &alice_name,
                &format!("b{round}"),
                vec![msg(1, alice.registration_id, &wire)],
            )
            .await
            .unwrap();
        let ServerFrame::Message { seq, body, .. } = next(&mut alice_ws).await else {
            panic!()
        };
        let plain = session::decrypt_and_commit(&mut alice_store, &bob_addr, &body).unwrap();
        assert_eq!(&plain[..], reply.as_bytes());
        alice_ws.ack(seq).await.unwrap();
    }
    relay.stop().await;
}

both_backends!(attacks, bad_input, concurrent_claims, end_to_end);

/// Two relays on one PostgreSQL: a message accepted by A reaches a socket held by B
/// (LISTEN/NOTIFY), well within 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cross_replica_delivery() {
    let db = common::TestDb::new(Backend::Postgres).await;
    let a = relay_server::start(common::test_config(db.storage.clone()))
        .await
        .unwrap();
    let mut cfg = common::test_config(db.storage.clone());
    // Rule out the periodic catch-up read: only the notification can deliver in time.
    cfg.catch_up_interval = Duration::from_secs(3600);
    let b = relay_server::start(cfg).await.unwrap();
    let client_a = relay_server::RelayClient::new(format!("http://{}", a.addr()));
    let client_b = relay_server::RelayClient::new(format!("http://{}", b.addr()));
    let sender = Device::register(&client_a, &random_name("s"), 0, 0).await;
    let r_name = random_name("r");
    let receiver = Device::register(&client_b, &r_name, 0, 0).await;
    let mut ws = receiver.client.connect().await.unwrap();
    assert_eq!(next(&mut ws).await, ServerFrame::QueueEmpty);
    for i in 0..20 {
        let started = std::time::Instant::now();
        sender
            .client
            .send(
                &r_name,
                &format!("x{i}"),
                vec![msg(1, receiver.registration_id, b"c")],
            )
            .await
            .unwrap();
        let ServerFrame::Message { id, seq, .. } = next(&mut ws).await else {
            panic!()
        };
        assert_eq!(id, format!("x{i}"));
        assert!(started.elapsed() < Duration::from_secs(5));
        ws.ack(seq).await.unwrap();
    }
    a.shutdown().await;
    b.shutdown().await;
    db.drop_db().await;
}

#[tokio::test]
async fn credential_helper_has_128_bits() {
    assert!(credential().len() >= 22);
}
