//! Real relay processes: kill -9 during a send loop, and three replicas on one
//! PostgreSQL.

// Test bodies shared by the sqlite/postgres variants are plain fns, not #[test]s, so
// clippy.toml's allowances for tests do not reach them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{Backend, Device, TestDb, random_name};
use relay_server::RelayClient;
use relay_server::config::StorageConfig;
use relay_server::types::{OutgoingJson, ServerFrame};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const T: Duration = Duration::from_secs(5);

/// A relay binary; killed with SIGKILL when dropped.
struct Proc {
    child: Child,
    addr: String,
}

async fn spawn_relay(storage: &StorageConfig, listen: &str, dir: &Path) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_relay-server"));
    cmd.current_dir(dir)
        .env("RELAY_LISTEN", listen)
        .env("RELAY_LOG_FORMAT", "json")
        .env("RELAY_CATCH_UP_SECS", "1")
        .env("RELAY_SEND_RATE", "100000")
        .env("RELAY_SEND_BURST", "100000")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    match storage {
        StorageConfig::Sqlite { path } => {
            cmd.env("RELAY_STORAGE", "sqlite")
                .env("RELAY_SQLITE_PATH", path);
        }
        StorageConfig::Postgres { url, .. } => {
            cmd.env("RELAY_STORAGE", "postgres")
                .env("RELAY_POSTGRES_URL", url);
        }
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["fields"]["message"] == "relay listening" {
                return v["fields"]["addr"].as_str().unwrap().to_owned();
            }
        }
        panic!("relay exited before listening");
    })
    .await
    .expect("relay started within 30 s");
    // Keep draining stdout so the relay never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Proc { child, addr }
}

impl Proc {
    fn client(&self) -> RelayClient {
        RelayClient::new(format!("http://{}", self.addr))
    }
}

fn msg(device: u32, registration_id: u32, body: &[u8]) -> OutgoingJson {
    OutgoingJson {
        device,
        registration_id,
        body: body.to_vec(),
    }
}

async fn crash_during_sends(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(backend).await;
    let relay = spawn_relay(&db.storage, "127.0.0.1:0", dir.path()).await;
    let client = relay.client();
    let a = Device::register(&client, &random_name("a"), 0, 0).await;
    let b_name = random_name("b");
    let b = Device::register(&client, &b_name, 0, 0).await;
    let b_cred = b.credential.clone();

    // Send as fast as possible; kill -9 the relay once 40 sends got a 200.
    let (ok_tx, mut ok_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let sender = {
        let (c, b_name, reg) = (a.client.clone(), b_name.clone(), b.registration_id);
        tokio::spawn(async move {
            for i in 0.. {
                let id = format!("m{i:05}");
                match c.send(&b_name, &id, vec![msg(1, reg, id.as_bytes())]).await {
                    Ok(()) => {
                        let _ = ok_tx.send(id);
                    }
                    Err(_) => break,
                }
            }
        })
    };
    let mut acknowledged = Vec::new();
    while acknowledged.len() < 40 {
        acknowledged.push(ok_rx.recv().await.unwrap());
    }
    let mut relay = relay;
    relay.child.kill().await.unwrap(); // SIGKILL
    sender.await.unwrap();
    while let Ok(id) = ok_rx.try_recv() {
        acknowledged.push(id);
    }

    // Restart on the same storage.
    let relay = spawn_relay(&db.storage, "127.0.0.1:0", dir.path()).await;
    let b = relay.client().authenticated(&b_name, 1, &b_cred);
    let mut ws = b.connect().await.unwrap();
    let mut seen = HashSet::new();
    let mut order = Vec::new();
    loop {
        match tokio::time::timeout(T, ws.next()).await.unwrap().unwrap() {
            ServerFrame::Message { id, body, seq, .. } => {
                assert_eq!(body, id.as_bytes());
                assert!(seen.insert(id.clone()), "delivered twice: {id}");
                order.push(id);
                ws.ack(seq).await.unwrap();
            }
            ServerFrame::QueueEmpty => break,
            other => panic!("{other:?}"),
        }
    }
    for id in &acknowledged {
        assert!(seen.contains(id), "{id} got a 200 but was lost");
    }
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "delivered in send order");
    drop(relay);
    db.drop_db().await;
}

both_backends!(crash_during_sends);

/// Three relay processes on one PostgreSQL; clients registered, connected and sending
/// through different replicas. Every message arrives exactly once, in order per sender.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Postgres).await;
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(spawn_relay(&db.storage, "127.0.0.1:0", dir.path()).await);
    }
    const CLIENTS: usize = 6;
    const PER_SENDER: usize = 30;
    let mut devices = Vec::new();
    for i in 0..CLIENTS {
        devices.push(
            Device::register(
                &replicas[i % 3].client(),
                &random_name(&format!("c{i}")),
                0,
                0,
            )
            .await,
        );
    }
    let names: Vec<String> = devices.iter().map(|d| d.account()).collect();
    let regs: Vec<u32> = devices.iter().map(|d| d.registration_id).collect();
    // Each client listens on a different replica than it registered on.
    let mut sockets = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        let c = replicas[(i + 1) % 3]
            .client()
            .authenticated(&names[i], 1, &d.credential);
        let mut ws = c.connect().await.unwrap();
        assert_eq!(
            tokio::time::timeout(T, ws.next()).await.unwrap().unwrap(),
            ServerFrame::QueueEmpty
        );
        sockets.push(ws);
    }
    // Sender i sends PER_SENDER messages to recipient (i + k) % CLIENTS through replica
    // (i + 2) % 3, with k cycling over the other clients.
    let mut expected: Vec<usize> = vec![0; CLIENTS];
    let mut senders = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        let c = replicas[(i + 2) % 3]
            .client()
            .authenticated(&names[i], 1, &d.credential);
        let mut plan = Vec::new();
        for n in 0..PER_SENDER {
            let to = (i + 1 + n % (CLIENTS - 1)) % CLIENTS;
            expected[to] += 1;
            plan.push((to, n));
        }
        let (names, regs) = (names.clone(), regs.clone());
        senders.push(tokio::spawn(async move {
            for (to, n) in plan {
                c.send(&names[to], &format!("{n:04}"), vec![msg(1, regs[to], b"x")])
                    .await
                    .unwrap();
            }
        }));
    }
    let mut receivers = Vec::new();
    for (i, mut ws) in sockets.into_iter().enumerate() {
        let want = expected[i];
        receivers.push(tokio::spawn(async move {
            let mut by_sender: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut got = 0;
            while got < want {
                match tokio::time::timeout(Duration::from_secs(20), ws.next())
                    .await
                    .unwrap()
                    .unwrap()
                {
                    ServerFrame::Message {
                        sender, id, seq, ..
                    } => {
                        by_sender.entry(sender).or_default().push(id);
                        ws.ack(seq).await.unwrap();
                        got += 1;
                    }
                    other => panic!("{other:?}"),
                }
            }
            // Nothing more arrives (no duplicates).
            assert!(
                tokio::time::timeout(Duration::from_millis(1500), ws.next())
                    .await
                    .is_err()
            );
            by_sender
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    for r in receivers {
        for (_, ids) in r.await.unwrap() {
            let mut sorted = ids.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(ids, sorted, "in order per sender, each once");
        }
    }
    drop(replicas);
    db.drop_db().await;
}

/// SIGTERM on a real process with many sockets: every one of them gets `reconnect` and
/// close code 1012 before the process exits (clients tell a restart from a crash by it).
async fn sigterm_closes_every_socket(backend: Backend) {
    const SOCKETS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(backend).await;
    let mut relay = spawn_relay(&db.storage, "127.0.0.1:0", dir.path()).await;
    let mut sockets = Vec::new();
    for i in 0..SOCKETS {
        let d = Device::register(&relay.client(), &random_name(&format!("t{i}")), 0, 0).await;
        let mut ws = d.client.connect().await.unwrap();
        assert_eq!(
            tokio::time::timeout(T, ws.next()).await.unwrap().unwrap(),
            ServerFrame::QueueEmpty
        );
        sockets.push(ws);
    }
    let pid = relay.child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), relay.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit}");
    for mut ws in sockets {
        assert_eq!(
            tokio::time::timeout(T, ws.next()).await.unwrap(),
            Ok(ServerFrame::Reconnect)
        );
        let closed = tokio::time::timeout(T, ws.next())
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(closed.code, Some(relay_server::delivery::CLOSE_SHUTDOWN));
    }
    db.drop_db().await;
}

both_backends!(sigterm_closes_every_socket);
