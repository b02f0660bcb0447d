//! OTLP trace export: a real relay process exports its spans over OTLP/HTTP (protobuf)
//! to a collector endpoint, flushes them on SIGTERM, and no span carries an account
//! name, credential or message id.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Device, random_name};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;
use relay_server::RelayClient;
use relay_server::types::OutgoingJson;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;
use tokio::sync::mpsc;

/// One HTTP request the collector received: path, content type, body.
type Received = (String, String, Vec<u8>);

/// A minimal OTLP/HTTP collector: answers every POST with 200 and hands over what it got.
async fn collector() -> (String, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                while serve_one(&mut stream, &tx).await {}
            });
        }
    });
    (base, rx)
}

/// Serves one request of a keep-alive connection; `false` when the connection ends.
async fn serve_one(s: &mut BufReader<TcpStream>, tx: &mpsc::UnboundedSender<Received>) -> bool {
    let mut request_line = String::new();
    if s.read_line(&mut request_line).await.unwrap_or(0) == 0 {
        return false;
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let (mut len, mut content_type) = (0usize, String::new());
    loop {
        let mut line = String::new();
        if s.read_line(&mut line).await.unwrap_or(0) == 0 {
            return false;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            match k.to_ascii_lowercase().as_str() {
                "content-length" => len = v.trim().parse().unwrap(),
                "content-type" => content_type = v.trim().to_owned(),
                _ => {}
            }
        }
    }
    assert!(len <= 16 << 20, "absurd OTLP body of {len} bytes");
    let mut body = vec![0; len];
    s.read_exact(&mut body).await.unwrap();
    s.get_mut()
        .write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
        )
        .await
        .unwrap();
    tx.send((path, content_type, body)).is_ok()
}

fn string_attr(
    attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue],
    key: &str,
) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    })
}

#[tokio::test]
async fn spans_are_exported_over_otlp_and_reveal_nothing() {
    let (endpoint, mut received) = collector().await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_relay-server"))
        .current_dir(dir.path())
        .env("RELAY_LISTEN", "127.0.0.1:0")
        .env("RELAY_STORAGE", "sqlite")
        .env("RELAY_SQLITE_PATH", dir.path().join("relay.sqlite3"))
        .env("RELAY_OTLP_ENDPOINT", &endpoint)
        .env_remove("RELAY_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
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
    .unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let relay = RelayClient::new(format!("http://{addr}"));
    let alice = Device::register(&relay, &random_name("otlpalice"), 1, 1).await;
    let bob_name = random_name("otlpbob");
    let bob = Device::register(&relay, &bob_name, 1, 1).await;
    let message_id = "otlp-secret-message-id";
    alice
        .client
        .send(
            &bob_name,
            message_id,
            vec![OutgoingJson {
                device: 1,
                registration_id: bob.registration_id,
                body: b"otlp-secret-ciphertext".to_vec(),
            }],
        )
        .await
        .unwrap();
    let _ = alice.client.bundles(&bob_name, Some(1)).await.unwrap();

    // SIGTERM: the relay shuts down gracefully and flushes the buffered spans.
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit}");

    let mut routes = Vec::new();
    let mut raw = Vec::new();
    while let Ok((path, content_type, body)) = received.try_recv() {
        assert_eq!(path, "/v1/traces");
        assert_eq!(content_type, "application/x-protobuf");
        let request = ExportTraceServiceRequest::decode(&body[..]).unwrap();
        for resource_spans in &request.resource_spans {
            let resource = resource_spans.resource.as_ref().unwrap();
            assert_eq!(
                string_attr(&resource.attributes, "service.name").as_deref(),
                Some("relay-server")
            );
            for span in resource_spans.scope_spans.iter().flat_map(|s| &s.spans) {
                if span.name == "request" {
                    routes.push(string_attr(&span.attributes, "route").unwrap());
                }
            }
        }
        raw.extend_from_slice(&body);
    }
    for route in [
        "POST /v1/accounts",
        "PUT /v1/keys",
        "PUT /v1/messages/{account}",
        "GET /v1/bundles/{account}/{device}",
    ] {
        assert!(
            routes.iter().any(|r| r == route),
            "no span for {route}: {routes:?}"
        );
    }
    let contains = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
    for secret in [
        alice.account().as_bytes(),
        bob_name.as_bytes(),
        alice.credential.as_bytes(),
        message_id.as_bytes(),
        b"otlp-secret-ciphertext",
    ] {
        assert!(
            !contains(secret),
            "a span reveals {}",
            String::from_utf8_lossy(secret)
        );
    }
}
