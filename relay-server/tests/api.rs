//! Every endpoint's happy path and errors, against SQLite and PostgreSQL.

// Test bodies shared by the sqlite/postgres variants are plain fns, not #[test]s, so
// clippy.toml's allowances for tests do not reach them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Backend, Device, TestRelay, credential, random_name, raw};
use relay_server::auth::basic_header;
use relay_server::client::{ClientError, kem_prekey_json, signed_prekey_json};
use relay_server::types::{
    KeyUploadRequest, MismatchedDevices, OutgoingJson, ServerFrame, StaleDevices,
};
use signal_core::IdentityKeyPair;
use signal_core::prekey::{KemPreKeyRecord, SignedPreKeyRecord};

fn status(e: ClientError) -> (u16, String) {
    match e {
        ClientError::Status { status, error } => (status, error),
        other => panic!("expected a status error, got {other:?}"),
    }
}

fn msg(device: u32, registration_id: u32, body: &[u8]) -> OutgoingJson {
    OutgoingJson {
        device,
        registration_id,
        body: body.to_vec(),
    }
}

const T: Duration = Duration::from_secs(5);

async fn next(d: &mut relay_server::client::Delivery) -> ServerFrame {
    tokio::time::timeout(T, d.next())
        .await
        .expect("frame within 5 s")
        .expect("socket open")
}

async fn accounts_and_devices(backend: Backend) {
    let relay = TestRelay::start_with(backend, |c| c.max_devices = 3).await;
    let name = random_name("alice");
    let cred = credential();
    let alice = relay.client.register(&name, 7, &cred, None).await.unwrap();
    assert_eq!(alice.identity(), Some((name.as_str(), 1)));
    // Taken name.
    let e = relay
        .client
        .register(&name, 8, &credential(), None)
        .await
        .unwrap_err();
    assert_eq!(status(e), (409, "account_exists".into()));
    // Invalid name, weak credential.
    let e = relay
        .client
        .register("Not Valid", 8, &credential(), None)
        .await
        .unwrap_err();
    assert_eq!(status(e).1, "invalid_account");
    let e = relay
        .client
        .register(&random_name("x"), 8, "short", None)
        .await
        .unwrap_err();
    assert_eq!(status(e).1, "invalid_credential");

    let d2 = alice.link_device(9, &credential()).await.unwrap();
    assert_eq!(d2.identity().unwrap().1, 2);
    let d3 = alice.link_device(10, &credential()).await.unwrap();
    assert_eq!(d3.identity().unwrap().1, 3);
    let e = alice.link_device(11, &credential()).await.unwrap_err();
    assert_eq!(status(e), (409, "device_limit".into()));

    let list = d3.devices(&name).await.unwrap();
    let ids: Vec<(u32, u32)> = list
        .devices
        .iter()
        .map(|d| (d.device, d.registration_id))
        .collect();
    assert_eq!(ids, vec![(1, 7), (2, 9), (3, 10)]);
    let e = alice.devices("nobody-here").await.unwrap_err();
    assert_eq!(status(e).0, 404);

    alice.remove_device(2).await.unwrap();
    let e = alice.remove_device(2).await.unwrap_err();
    assert_eq!(status(e).0, 404);
    let e = alice.remove_device(1).await.unwrap_err();
    assert_eq!(status(e), (422, "primary_device".into()));
    // The removed device's credential no longer works.
    let e = d2.key_counts().await.unwrap_err();
    assert_eq!(status(e).0, 401);
    // A slot is free again; ids are not reused.
    let d4 = alice.link_device(12, &credential()).await.unwrap();
    assert_eq!(d4.identity().unwrap().1, 4);
    relay.stop().await;
}

async fn invite_token(backend: Backend) {
    let relay = TestRelay::start_with(backend, |c| {
        c.invite_token = Some("invite-0123456789abcdef".into())
    })
    .await;
    let e = relay
        .client
        .register(&random_name("a"), 1, &credential(), None)
        .await
        .unwrap_err();
    assert_eq!(status(e), (403, "invite_required".into()));
    let e = relay
        .client
        .register(&random_name("a"), 1, &credential(), Some("wrong"))
        .await
        .unwrap_err();
    assert_eq!(status(e).0, 403);
    relay
        .client
        .register(
            &random_name("a"),
            1,
            &credential(),
            Some("invite-0123456789abcdef"),
        )
        .await
        .unwrap();
    relay.stop().await;
}

async fn authentication(backend: Backend) {
    let relay = TestRelay::start(backend).await;
    let name = random_name("bob");
    let cred = credential();
    relay.client.register(&name, 1, &cred, None).await.unwrap();
    let url = format!("{}/v1/keys/count", relay.base());
    let ok = raw("GET", &url, Some(&basic_header(&name, 1, &cred)), vec![]).await;
    assert_eq!(ok.0, 200);
    let bearer = raw(
        "GET",
        &url,
        Some(&format!("Bearer {name}.1:{cred}")),
        vec![],
    )
    .await;
    assert_eq!(bearer.0, 200);
    let wrong = raw(
        "GET",
        &url,
        Some(&basic_header(&name, 1, &credential())),
        vec![],
    )
    .await;
    let unknown = raw("GET", &url, Some(&basic_header("nobody", 1, &cred)), vec![]).await;
    let other_device = raw("GET", &url, Some(&basic_header(&name, 2, &cred)), vec![]).await;
    let none = raw("GET", &url, None, vec![]).await;
    let garbage = raw("GET", &url, Some("Basic %%%"), vec![]).await;
    assert_eq!(wrong.0, 401);
    // Unknown account and wrong credential look the same.
    assert_eq!(wrong, unknown);
    assert_eq!(wrong, other_device);
    assert_eq!(wrong, none);
    assert_eq!(wrong, garbage);
    relay.stop().await;
}

async fn keys_and_bundles(backend: Backend) {
    let relay = TestRelay::start(backend).await;
    let name = random_name("carol");
    let carol = Device::register(&relay.client, &name, 3, 2).await;
    let counts = carol.client.key_counts().await.unwrap();
    assert_eq!((counts.one_time, counts.kem_one_time), (3, 2));

    // A prekey signed by another identity is refused and changes nothing.
    let other = IdentityKeyPair::generate().unwrap();
    let forged = SignedPreKeyRecord::generate(&other, carol.registration_id, 2, 1).unwrap();
    let e = carol
        .client
        .upload_keys(&KeyUploadRequest {
            signed_prekey: Some(signed_prekey_json(forged.public())),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status(e), (422, "bad_signature".into()));
    // The signed prekey's signature covers the registration id.
    let wrong_reg =
        SignedPreKeyRecord::generate(&carol.identity, carol.registration_id + 1, 2, 1).unwrap();
    let e = carol
        .client
        .upload_keys(&KeyUploadRequest {
            signed_prekey: Some(signed_prekey_json(wrong_reg.public())),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status(e).1, "bad_signature");
    // A one-time KEM key presented as last-resort fails (the flag is signed).
    let e = carol
        .client
        .upload_keys(&KeyUploadRequest {
            last_resort_kem_prekey: Some(kem_prekey_json(carol.kem[0].public())),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status(e).1, "bad_signature");
    // One bad key in a batch refuses the whole batch.
    let mut up = carol.full_upload();
    up.one_time_prekeys[1].signature[0] ^= 1;
    let e = carol.client.upload_keys(&up).await.unwrap_err();
    assert_eq!(status(e).1, "bad_signature");
    // Identity is fixed once set.
    let e = carol
        .client
        .upload_keys(&KeyUploadRequest {
            identity: Some(other.public().encode().to_vec()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status(e), (409, "identity_conflict".into()));
    // Too many in one request.
    let many: Vec<_> = (0..101).map(|_| up.one_time_prekeys[0].clone()).collect();
    let e = carol
        .client
        .upload_keys(&KeyUploadRequest {
            one_time_prekeys: many,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status(e), (422, "too_many_prekeys".into()));
    let counts = carol.client.key_counts().await.unwrap();
    assert_eq!((counts.one_time, counts.kem_one_time), (3, 2));

    // Prekeys before an identity are refused.
    let fresh = relay
        .client
        .register(&random_name("d"), 5, &credential(), None)
        .await
        .unwrap();
    let e = fresh
        .upload_keys(&KeyUploadRequest {
            signed_prekey: Some(signed_prekey_json(carol.signed.public())),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status(e).1, "identity_required");

    // Bundles verify with signal-core; one-time keys are claimed once, then the
    // last-resort KEM key.
    let fetcher = Device::register(&relay.client, &random_name("dave"), 0, 0).await;
    let mut seen_otk = HashSet::new();
    let mut seen_kem = HashSet::new();
    for i in 0..4 {
        let bundles = fetcher.client.bundles(&name, Some(1)).await.unwrap();
        assert_eq!(bundles.len(), 1);
        let (device, bundle) = bundles.into_iter().next().unwrap();
        assert_eq!(device, 1);
        let v = bundle.verify_for(carol.identity.public()).unwrap();
        let b = v.bundle();
        assert_eq!(b.registration_id, carol.registration_id);
        match &b.one_time_prekey {
            Some(k) => assert!(seen_otk.insert(k.id), "one-time key handed out twice"),
            None => assert_eq!(i, 3),
        }
        if b.kem_prekey.last_resort {
            assert!(i >= 2);
            assert_eq!(b.kem_prekey.id, carol.last_resort.id());
        } else {
            assert!(seen_kem.insert(b.kem_prekey.id));
        }
    }
    let counts = carol.client.key_counts().await.unwrap();
    assert_eq!((counts.one_time, counts.kem_one_time), (0, 0));
    // All devices of an account; unknown account or device is 404.
    let carol2 = Device::link(&carol.client, 1, 1).await;
    let all = fetcher.client.bundles(&name, None).await.unwrap();
    assert_eq!(all.iter().map(|b| b.0).collect::<Vec<_>>(), vec![1, 2]);
    all[1]
        .1
        .clone()
        .verify_for(carol2.identity.public())
        .unwrap();
    let e = fetcher.client.bundles(&name, Some(9)).await.unwrap_err();
    assert_eq!(status(e), (404, "no_bundle".into()));
    let e = fetcher.client.bundles("nobody", None).await.unwrap_err();
    assert_eq!(status(e).0, 404);
    // Device list now carries identities.
    let list = fetcher.client.devices(&name).await.unwrap();
    assert_eq!(
        list.devices[0].identity.as_deref(),
        Some(&carol.identity.public().encode()[..])
    );
    relay.stop().await;
}

async fn messages_and_delivery(backend: Backend) {
    let relay = TestRelay::start_with(backend, |c| c.max_message_bytes = 1024).await;
    let alice = Device::register(&relay.client, &random_name("alice"), 0, 0).await;
    let bob_name = random_name("bob");
    let bob = Device::register(&relay.client, &bob_name, 0, 0).await;
    let bob2 = Device::link(&bob.client, 0, 0).await;

    // 409: missing and extra devices.
    let e = alice
        .client
        .send(
            &bob_name,
            "m0",
            vec![msg(1, bob.registration_id, b"x"), msg(5, 1, b"x")],
        )
        .await
        .unwrap_err();
    match e {
        ClientError::Mismatched(m) => assert_eq!(
            m,
            MismatchedDevices {
                missing: vec![2],
                extra: vec![5]
            }
        ),
        other => panic!("{other:?}"),
    }
    // 410: stale registration id.
    let e = alice
        .client
        .send(
            &bob_name,
            "m0",
            vec![
                msg(1, bob.registration_id, b"x"),
                msg(2, bob2.registration_id + 1, b"x"),
            ],
        )
        .await
        .unwrap_err();
    match e {
        ClientError::Stale(s) => assert_eq!(s, StaleDevices { stale: vec![2] }),
        other => panic!("{other:?}"),
    }
    // 413: over the message size limit.
    let e = alice
        .client
        .send(
            &bob_name,
            "m0",
            vec![
                msg(1, bob.registration_id, &[0u8; 1025]),
                msg(2, bob2.registration_id, b"x"),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(status(e), (413, "message_too_large".into()));
    // 404: unknown recipient.
    let e = alice
        .client
        .send("nobody", "m0", vec![msg(1, 1, b"x")])
        .await
        .unwrap_err();
    assert_eq!(status(e).0, 404);
    // 422: bad id.
    let e = alice
        .client
        .send(&bob_name, "bad id!", vec![msg(1, 1, b"x")])
        .await
        .unwrap_err();
    assert_eq!(status(e).1, "invalid_message_id");

    let to_bob = |i: usize| {
        vec![
            msg(1, bob.registration_id, format!("one-{i}").as_bytes()),
            msg(2, bob2.registration_id, format!("two-{i}").as_bytes()),
        ]
    };
    for i in 0..5 {
        alice
            .client
            .send(&bob_name, &format!("m{i}"), to_bob(i))
            .await
            .unwrap();
    }
    // A resend with the same id is stored once.
    alice.client.send(&bob_name, "m0", to_bob(0)).await.unwrap();
    // Sending to one's own other devices: the sender's device is excluded.
    bob.client
        .send(
            &bob_name,
            "self-1",
            vec![msg(2, bob2.registration_id, b"sync")],
        )
        .await
        .unwrap();

    // Backlog in order, then queue_empty.
    let mut ws = bob.client.connect().await.unwrap();
    let mut seqs = Vec::new();
    for i in 0..5 {
        match next(&mut ws).await {
            ServerFrame::Message {
                seq,
                sender,
                sender_device,
                id,
                body,
                ..
            } => {
                assert_eq!(
                    (sender.as_str(), sender_device),
                    (alice.account().as_str(), 1)
                );
                assert_eq!(id, format!("m{i}"));
                assert_eq!(body, format!("one-{i}").into_bytes());
                seqs.push(seq);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(next(&mut ws).await, ServerFrame::QueueEmpty);
    // Live delivery.
    alice.client.send(&bob_name, "m5", to_bob(5)).await.unwrap();
    let ServerFrame::Message { seq, id, .. } = next(&mut ws).await else {
        panic!()
    };
    assert_eq!(id, "m5");
    seqs.push(seq);
    // Acknowledge only the first three; reconnect: the rest are pushed again.
    for s in &seqs[..3] {
        ws.ack(*s).await.unwrap();
    }
    // Round-trip a frame so the acks are processed before closing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    ws.close().await;
    let mut ws = bob.client.connect().await.unwrap();
    let mut again = Vec::new();
    loop {
        match next(&mut ws).await {
            ServerFrame::Message { id, seq, .. } => {
                again.push(id);
                ws.ack(seq).await.unwrap();
            }
            ServerFrame::QueueEmpty => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(again, vec!["m3", "m4", "m5"]);
    // A second connection of the same device closes the older one.
    let mut newer = bob.client.connect().await.unwrap();
    // (Acks still in flight from the older socket may not have landed yet.)
    while next(&mut newer).await != ServerFrame::QueueEmpty {}
    let closed = tokio::time::timeout(T, ws.next())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(closed.code, Some(relay_server::delivery::CLOSE_REPLACED));

    // Device 2 has its own queue, including the sync message from device 1.
    let mut ws2 = bob2.client.connect().await.unwrap();
    let mut ids = Vec::new();
    loop {
        match next(&mut ws2).await {
            ServerFrame::Message { id, sender, .. } => ids.push((sender, id)),
            ServerFrame::QueueEmpty => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(ids.len(), 7);
    // In acceptance order: m0..m4, the sync message, then m5.
    assert_eq!(ids[5], (bob_name.clone(), "self-1".to_owned()));
    assert_eq!(ids[6].1, "m5");
    // Removing a device closes its socket.
    bob.client.remove_device(2).await.unwrap();
    let closed = tokio::time::timeout(T, ws2.next())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(closed.code, Some(relay_server::delivery::CLOSE_REMOVED));
    relay.stop().await;
}

async fn limits(backend: Backend) {
    let relay = TestRelay::start_with(backend, |c| {
        c.max_queue_per_device = 2;
        c.bundle_rate = (0.5, 2.0);
        c.max_body_bytes = 32 * 1024;
    })
    .await;
    let a = Device::register(&relay.client, &random_name("a"), 0, 0).await;
    let b_name = random_name("b");
    let b = Device::register(&relay.client, &b_name, 5, 5).await;
    a.client
        .send(&b_name, "1", vec![msg(1, b.registration_id, b"x")])
        .await
        .unwrap();
    a.client
        .send(&b_name, "2", vec![msg(1, b.registration_id, b"x")])
        .await
        .unwrap();
    let e = a
        .client
        .send(&b_name, "3", vec![msg(1, b.registration_id, b"x")])
        .await
        .unwrap_err();
    assert_eq!(status(e), (507, "queue_full".into()));
    // Bundle rate limit: burst of 2, then 429 with Retry-After.
    a.client.bundles(&b_name, Some(1)).await.unwrap();
    a.client.bundles(&b_name, Some(1)).await.unwrap();
    match a.client.bundles(&b_name, Some(1)).await.unwrap_err() {
        ClientError::RateLimited(secs) => assert!((1..=3).contains(&secs)),
        other => panic!("{other:?}"),
    }
    // Body limit.
    let code = common::oversized(
        relay.handle.addr(),
        &format!("/v1/messages/{b_name}"),
        &basic_header(&a.account(), 1, &a.credential),
        40_000,
    )
    .await;
    assert_eq!(code, 413);
    relay.stop().await;
}

async fn message_ttl(backend: Backend) {
    let relay = TestRelay::start_with(backend, |c| c.message_ttl = Duration::from_secs(1)).await;
    let a = Device::register(&relay.client, &random_name("a"), 0, 0).await;
    let b_name = random_name("b");
    let b = Device::register(&relay.client, &b_name, 0, 0).await;
    a.client
        .send(&b_name, "old", vec![msg(1, b.registration_id, b"x")])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut ws = b.client.connect().await.unwrap();
    assert_eq!(next(&mut ws).await, ServerFrame::QueueEmpty);
    relay.stop().await;
}

async fn operations(backend: Backend) {
    let relay = TestRelay::start(backend).await;
    let base = relay.base();
    assert_eq!(
        raw("GET", &format!("{base}/healthz"), None, vec![]).await.0,
        200
    );
    assert_eq!(
        raw("GET", &format!("{base}/readyz"), None, vec![]).await.0,
        200
    );
    let (code, openapi) = raw("GET", &format!("{base}/openapi.json"), None, vec![]).await;
    assert_eq!(code, 200);
    let doc: serde_json::Value = serde_json::from_str(&openapi).unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    let secret_name = random_name("secretname");
    let a = Device::register(&relay.client, &secret_name, 1, 1).await;
    let mut ws = a.client.connect().await.unwrap();
    assert_eq!(next(&mut ws).await, ServerFrame::QueueEmpty);
    a.client
        .send(&secret_name, "msg-id-secret", vec![])
        .await
        .unwrap_err();
    let (code, metrics) = raw("GET", &format!("{base}/metrics"), None, vec![]).await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("relay_requests_total{route=\"POST /v1/accounts\",status=\"200\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("relay_connected_devices 1"));
    assert!(metrics.contains("relay_queue_depth 0"));
    assert!(metrics.contains("relay_request_duration_seconds_bucket"));
    assert!(!metrics.contains(&secret_name));
    assert!(!metrics.contains("msg-id-secret"));
    assert!(!metrics.contains(&a.credential));
    // Graceful shutdown: the socket is told to reconnect, then closed with 1012.
    let addr = relay.handle.addr();
    let TestRelay { handle, db, .. } = relay;
    handle.shutdown().await;
    assert_eq!(next(&mut ws).await, ServerFrame::Reconnect);
    let closed = tokio::time::timeout(T, ws.next())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(closed.code, Some(relay_server::delivery::CLOSE_SHUTDOWN));
    assert!(
        reqwest::get(format!("http://{addr}/healthz"))
            .await
            .is_err()
    );
    db.drop_db().await;
}

both_backends!(
    accounts_and_devices,
    invite_token,
    authentication,
    keys_and_bundles,
    messages_and_delivery,
    limits,
    message_ttl,
    operations,
);

#[test]
fn kem_helper_round_trips() {
    let id = IdentityKeyPair::generate().unwrap();
    let k = KemPreKeyRecord::generate(&id, 1, 1, true).unwrap();
    let j = kem_prekey_json(k.public());
    assert_eq!(j.signature.len(), 64);
}
