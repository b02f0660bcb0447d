//! Shared test harness: real relays on real sockets over a real SQLite file or a real
//! PostgreSQL database (one fresh database per test, dropped at the end).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use base64::Engine;
use relay_server::client::{kem_prekey_json, one_time_prekey_json, signed_prekey_json};
use relay_server::config::{Config, StorageConfig};
use relay_server::types::KeyUploadRequest;
use relay_server::{RelayClient, RelayHandle};
use signal_core::IdentityKeyPair;
use signal_core::prekey::{KemPreKeyRecord, OneTimePreKeyRecord, SignedPreKeyRecord};

/// The PostgreSQL server the tests use (CI: trust auth, database `test`).
pub fn postgres_admin_url() -> String {
    std::env::var("RELAY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Storage for one test: a temporary SQLite file or a fresh PostgreSQL database.
pub struct TestDb {
    pub storage: StorageConfig,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

async fn admin() -> tokio_postgres::Client {
    let url = postgres_admin_url();
    let (client, conn) = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        Ok(c) => c,
        Err(e) => panic!(
            "PostgreSQL is required for this test but not reachable at {url}: {e}. \
             Run scripts/ensure-postgres.sh (or set RELAY_TEST_POSTGRES_URL)."
        ),
    };
    tokio::spawn(conn);
    client
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                Self {
                    storage: StorageConfig::Sqlite {
                        path: dir.path().join("relay.sqlite3"),
                    },
                    _dir: Some(dir),
                    pg_name: None,
                }
            }
            Backend::Postgres => {
                let name = format!("relay_test_{}", random_hex(8));
                admin()
                    .await
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .await
                    .unwrap();
                let base = postgres_admin_url();
                let url = match base.rsplit_once('/') {
                    Some((head, _)) => format!("{head}/{name}"),
                    None => panic!("bad RELAY_TEST_POSTGRES_URL"),
                };
                Self {
                    storage: StorageConfig::Postgres { url, pool_size: 8 },
                    _dir: None,
                    pg_name: Some(name),
                }
            }
        }
    }

    pub fn url(&self) -> Option<&str> {
        match &self.storage {
            StorageConfig::Postgres { url, .. } => Some(url),
            StorageConfig::Sqlite { .. } => None,
        }
    }

    pub async fn drop_db(self) {
        if let Some(name) = &self.pg_name {
            let _ = admin()
                .await
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
}

/// A running relay with its database.
pub struct TestRelay {
    pub handle: RelayHandle,
    pub db: TestDb,
    pub client: RelayClient,
}

pub fn test_config(storage: StorageConfig) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        storage,
        log_json: false,
        catch_up_interval: Duration::from_secs(1),
        bundle_rate: (10_000.0, 10_000.0),
        send_rate: (10_000.0, 10_000.0),
        ..Config::default()
    }
}

impl TestRelay {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        let db = TestDb::new(backend).await;
        let mut config = test_config(db.storage.clone());
        tweak(&mut config);
        let handle = relay_server::start(config).await.unwrap();
        let client = RelayClient::new(format!("http://{}", handle.addr()));
        Self { handle, db, client }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.handle.addr())
    }

    pub async fn stop(self) {
        self.handle.shutdown().await;
        self.db.drop_db().await;
    }
}

/// A fresh credential with 128 random bits.
pub fn credential() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).unwrap();
    base64::engine::general_purpose::STANDARD.encode(b)
}

pub fn random_name(prefix: &str) -> String {
    format!("{prefix}-{}", random_hex(4))
}

/// A device with real signal-core keys.
pub struct Device {
    pub client: RelayClient,
    pub credential: String,
    pub identity: IdentityKeyPair,
    pub registration_id: u32,
    pub one_time: Vec<OneTimePreKeyRecord>,
    pub kem: Vec<KemPreKeyRecord>,
    pub signed: SignedPreKeyRecord,
    pub last_resort: KemPreKeyRecord,
}

pub const NOW: u64 = 1_700_000_000;

impl Device {
    #[allow(clippy::type_complexity)]
    pub fn keys(
        registration_id: u32,
        n_one_time: u32,
        n_kem: u32,
    ) -> (
        IdentityKeyPair,
        SignedPreKeyRecord,
        Vec<OneTimePreKeyRecord>,
        Vec<KemPreKeyRecord>,
        KemPreKeyRecord,
    ) {
        let identity = IdentityKeyPair::generate().unwrap();
        let signed = SignedPreKeyRecord::generate(&identity, registration_id, 1, NOW).unwrap();
        let one_time = OneTimePreKeyRecord::generate_batch(&identity, 1, n_one_time, NOW).unwrap();
        let kem = KemPreKeyRecord::generate_batch(&identity, 1, n_kem, NOW).unwrap();
        let last_resort = KemPreKeyRecord::generate(&identity, 100_000, NOW, true).unwrap();
        (identity, signed, one_time, kem, last_resort)
    }

    /// Registers an account (device 1) and uploads a full set of keys.
    pub async fn register(relay: &RelayClient, account: &str, n_one_time: u32, n_kem: u32) -> Self {
        let registration_id = 1000 + (rand_u32() % 10_000);
        let credential = credential();
        let client = relay
            .register(account, registration_id, &credential, None)
            .await
            .unwrap();
        Self::with_keys(client, credential, registration_id, n_one_time, n_kem).await
    }

    /// Links a further device to `primary`'s account and uploads its keys.
    pub async fn link(primary: &RelayClient, n_one_time: u32, n_kem: u32) -> Self {
        let registration_id = 1000 + (rand_u32() % 10_000);
        let credential = credential();
        let client = primary
            .link_device(registration_id, &credential)
            .await
            .unwrap();
        Self::with_keys(client, credential, registration_id, n_one_time, n_kem).await
    }

    async fn with_keys(
        client: RelayClient,
        credential: String,
        registration_id: u32,
        n_one_time: u32,
        n_kem: u32,
    ) -> Self {
        let (identity, signed, one_time, kem, last_resort) =
            Self::keys(registration_id, n_one_time, n_kem);
        let d = Self {
            client,
            credential,
            identity,
            registration_id,
            one_time,
            kem,
            signed,
            last_resort,
        };
        d.client.upload_keys(&d.full_upload()).await.unwrap();
        d
    }

    pub fn full_upload(&self) -> KeyUploadRequest {
        KeyUploadRequest {
            identity: Some(self.identity.public().encode().to_vec()),
            signed_prekey: Some(signed_prekey_json(self.signed.public())),
            one_time_prekeys: self
                .one_time
                .iter()
                .map(|k| one_time_prekey_json(k.public()))
                .collect(),
            kem_prekeys: self
                .kem
                .iter()
                .map(|k| kem_prekey_json(k.public()))
                .collect(),
            last_resort_kem_prekey: Some(kem_prekey_json(self.last_resort.public())),
        }
    }

    pub fn account(&self) -> String {
        self.client.identity().unwrap().0.to_owned()
    }

    pub fn device(&self) -> u32 {
        self.client.identity().unwrap().1
    }
}

pub fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).unwrap();
    u32::from_le_bytes(b)
}

/// Status of a raw HTTP request (for malformed-input tests).
pub async fn raw(method: &str, url: &str, auth: Option<&str>, body: Vec<u8>) -> (u16, String) {
    let client = reqwest::Client::new();
    let mut r = client.request(method.parse().unwrap(), url).body(body);
    if let Some(a) = auth {
        r = r.header("authorization", a);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// Declares an async test body `fn(Backend)` as two tests, `sqlite` and `postgres`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(super::common::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(super::common::Backend::Postgres).await
                }
            }
        )*
    };
}

/// Sends only the headers of a `PUT` announcing a `len`-byte body and returns the status
/// the relay answers with (it must refuse from the Content-Length alone).
pub async fn oversized(addr: std::net::SocketAddr, path: &str, auth: &str, len: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nhost: relay\r\nauthorization: {auth}\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split_whitespace().nth(1).unwrap().parse().unwrap()
}
