//! The storage backends' group commits, driven through the `Storage` trait on a real
//! SQLite file and a real PostgreSQL database: many concurrent sends and acks, with
//! resends, duplicate acks and acks from the wrong device mixed in.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::{Backend, TestDb};
use relay_server::config::StorageConfig;
use relay_server::store::postgres::PostgresStore;
use relay_server::store::sqlite::SqliteStore;
use relay_server::store::{OutgoingMessage, Storage};

async fn open(db: &TestDb) -> Arc<dyn Storage> {
    match &db.storage {
        StorageConfig::Sqlite { path } => Arc::new(SqliteStore::open(path).unwrap()),
        StorageConfig::Postgres { url, pool_size } => {
            Arc::new(PostgresStore::connect(url, *pool_size).await.unwrap())
        }
    }
}

async fn concurrent_sends_and_acks_are_exact(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;

    // 300 sends to two devices each, every one sent twice at once (a client's resend).
    let mut tasks = Vec::new();
    for i in 0..300u32 {
        for _ in 0..2 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                let messages = [1, 2].map(|device| OutgoingMessage {
                    device,
                    body: i.to_le_bytes().to_vec(),
                });
                store
                    .store_messages("alice", 1, &format!("m{i}"), "bob", &messages, 10_000, 1)
                    .await
                    .unwrap();
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.queue_depth().await.unwrap(), 600);

    // Device 1 acknowledges every other message twice at once; device 2 tries to
    // acknowledge device 1's remaining messages.
    let queue = store.fetch_messages("bob", 1, 0, 1000, 0).await.unwrap();
    assert_eq!(queue.len(), 300);
    let mut acks = Vec::new();
    for (n, m) in queue.iter().enumerate() {
        let (store, seq) = (Arc::clone(&store), m.seq);
        acks.push(tokio::spawn(async move {
            if n % 2 == 0 {
                let (a, b) = tokio::join!(store.ack("bob", 1, seq), store.ack("bob", 1, seq));
                // Exactly one of the two deleted it.
                assert!(a.unwrap() ^ b.unwrap(), "seq {seq} acknowledged twice");
            } else {
                assert!(
                    !store.ack("bob", 2, seq).await.unwrap(),
                    "foreign ack deleted {seq}"
                );
            }
        }));
    }
    for t in acks {
        t.await.unwrap();
    }
    let left = store.fetch_messages("bob", 1, 0, 1000, 0).await.unwrap();
    let expected: Vec<i64> = queue.iter().skip(1).step_by(2).map(|m| m.seq).collect();
    assert_eq!(left.iter().map(|m| m.seq).collect::<Vec<_>>(), expected);
    assert_eq!(
        store
            .fetch_messages("bob", 2, 0, 1000, 0)
            .await
            .unwrap()
            .len(),
        300
    );
    assert_eq!(store.queue_depth().await.unwrap(), 450);
    drop(store);
    db.drop_db().await;
}

both_backends!(concurrent_sends_and_acks_are_exact);
