//! `relay-scaleout`: the scale-out proof of `docs/operations.md`. It starts three
//! `relay-server` processes with one production-shaped config on one fresh PostgreSQL
//! database, connects clients to all three, and runs a continuous send load (plus
//! concurrent bundle fetches through different replicas) while
//!
//! 1. each replica is replaced in turn, as a Kubernetes rolling update with
//!    `maxUnavailable: 0` does it: the new process starts and becomes ready, the old one
//!    leaves the endpoint list, and after a preStop pause it gets SIGTERM;
//! 2. one replica is killed with SIGKILL; its clients reconnect to the others.
//!
//! Afterwards it checks that every message that got a 200 was delivered, exactly once
//! after deduplication by message id, to the right recipient with its body intact and
//! in send order per sender; that no one-time prekey (X25519 or ML-KEM) was handed out
//! twice and every bundle verifies; and that every queue ends empty. It prints messages/s
//! and delivery latency (p50/p99) before, during and after each event, and exits
//! non-zero if any check failed.
//!
//! Every address is loopback: the replicas listen on 127.0.0.1 (port 0), and the
//! PostgreSQL URL must name a loopback host or a Unix socket. The run is bounded in time
//! and stops by itself. `scripts/scale-out.sh` builds and runs it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use clap::Parser;
use relay_server::RelayClient;
use relay_server::client::{
    ClientError, kem_prekey_json, one_time_prekey_json, signed_prekey_json,
};
use relay_server::types::{KeyUploadRequest, OutgoingJson, ServerFrame};
use signal_core::prekey::{KemPreKeyRecord, OneTimePreKeyRecord, SignedPreKeyRecord};
use signal_core::{IdentityKey, IdentityKeyPair};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

#[derive(Debug, Parser)]
#[command(
    name = "relay-scaleout",
    about = "Three relay replicas on one PostgreSQL under load: rolling restart, then SIGKILL"
)]
struct Args {
    /// The relay configuration every replica runs with (scripts/scale-out.sh passes the
    /// ConfigMap's config.toml of k8s-deployment.yaml). `listen` and `postgres_url` are
    /// overridden per replica through RELAY_LISTEN and RELAY_POSTGRES_URL.
    #[arg(long)]
    config: PathBuf,
    /// The relay-server binary (default: next to this one).
    #[arg(long)]
    relay_bin: Option<PathBuf>,
    /// PostgreSQL server on which a fresh database is created for the run and dropped
    /// after it. Loopback or Unix socket only.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres_admin_url: String,
    /// Clients: accounts with one device, each with a WebSocket and a sender.
    #[arg(long, default_value_t = 48)]
    clients: usize,
    /// Messages per second over all senders (each sender sends one at a time, paced).
    #[arg(long, default_value_t = 150.0)]
    rate: f64,
    /// Milliseconds between receiving a message and acknowledging it (a client decrypts
    /// and commits to its own store first). Acknowledgements still pending when a socket
    /// closes are lost, so those messages are delivered again: the dedupe check needs it.
    #[arg(long, default_value_t = 100)]
    ack_delay_ms: u64,
    /// Bundle-fetch rounds per second; each round fetches one device's bundle three
    /// times at once, from three clients through three different replicas.
    #[arg(long, default_value_t = 4.0)]
    fetch_rate: f64,
    /// One-time X25519 and ML-KEM prekeys uploaded per client (at most 100 of each).
    #[arg(long, default_value_t = 100)]
    prekeys: u32,
    /// Seconds of load before the first event.
    #[arg(long, default_value_t = 8)]
    baseline_secs: u64,
    /// Seconds of load after each event.
    #[arg(long, default_value_t = 6)]
    settle_secs: u64,
    /// Stand-in for the preStop pause: seconds between taking a replica out of the
    /// endpoint list and sending it SIGTERM.
    #[arg(long, default_value_t = 2)]
    prestop_secs: u64,
    /// After SIGKILL, milliseconds until the dead replica leaves the endpoint list (the
    /// time Kubernetes takes to see the container exit and update the endpoints).
    #[arg(long, default_value_t = 1000)]
    kill_detect_ms: u64,
    /// Give up waiting for the remaining deliveries after this many seconds.
    #[arg(long, default_value_t = 60)]
    drain_timeout_secs: u64,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Time since the start of the run, in microseconds.
#[derive(Clone, Copy)]
struct Clock(Instant);
impl Clock {
    fn us(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

struct Rng(u64);
impl Rng {
    fn seeded() -> Self {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        Self(u64::from_le_bytes(b) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------
// Replicas and the endpoint list

/// One relay process. Killed with SIGKILL if dropped while running.
struct Replica {
    name: String,
    child: Child,
    addr: String,
    problems: Arc<AtomicU64>,
}

async fn spawn_replica(
    bin: &std::path::Path,
    config: &std::path::Path,
    db_url: &str,
    name: String,
) -> Result<Replica, BoxError> {
    let mut cmd = Command::new(bin);
    cmd.arg("--config")
        .arg(config)
        .env("RELAY_LISTEN", "127.0.0.1:0")
        .env("RELAY_POSTGRES_URL", db_url)
        .env("RELAY_LOG", "info")
        // Traces stay on this machine (nothing needs to listen there).
        .env("RELAY_OTLP_ENDPOINT", "http://127.0.0.1:4318")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let problems = Arc::new(AtomicU64::new(0));
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["fields"]["message"] == "relay listening"
                && let Some(addr) = v["fields"]["addr"].as_str()
            {
                return Ok::<_, BoxError>(addr.to_owned());
            }
        }
        Err("relay exited before listening".into())
    })
    .await
    .map_err(|_| "relay did not listen within 30 s")??;
    {
        // Keep draining stdout; count warnings and errors (the relay logs no secrets).
        let (problems, name) = (Arc::clone(&problems), name.clone());
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if matches!(v["level"].as_str(), Some("WARN" | "ERROR")) {
                    problems.fetch_add(1, Ordering::Relaxed);
                    eprintln!("  [{name}] {line}");
                }
            }
        });
    }
    let replica = Replica {
        name,
        child,
        addr,
        problems,
    };
    // Ready (storage answers) within 10 s.
    let http = reqwest::Client::new();
    let ready_url = format!("http://{}/readyz", replica.addr);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = http
            .get(&ready_url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            return Ok(replica);
        }
        if Instant::now() > deadline {
            return Err(format!("{} not ready within 10 s", replica.name).into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Replica {
    /// CPU time (user + system) the process used so far, from /proc (Linux).
    fn cpu_secs(&self) -> f64 {
        let Some(pid) = self.child.id() else {
            return 0.0;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return 0.0;
        };
        // Fields after the parenthesised command name; utime and stime are fields 14
        // and 15 of the line, in clock ticks (USER_HZ = 100 on Linux).
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (ticks(11) + ticks(12)) / 100.0
    }

    fn signal(&self, sig: &str) -> Result<(), BoxError> {
        let pid = self.child.id().ok_or("replica already exited")?;
        let status = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill -{sig} {pid} failed").into())
        }
    }

    /// Waits for the process to exit; SIGKILL after `limit`.
    async fn wait_exit(&mut self, limit: Duration) -> Result<std::process::ExitStatus, BoxError> {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(s) => Ok(s?),
            Err(_) => {
                self.child.kill().await?;
                Err(format!("{} did not exit within {limit:?}", self.name).into())
            }
        }
    }
}

/// A replica as clients see it through the Service.
#[derive(Clone)]
struct Endpoint {
    name: String,
    client: RelayClient,
}

/// The ready endpoints, as a Kubernetes Service would route to them.
#[derive(Clone, Default)]
struct Endpoints(Arc<RwLock<Vec<Endpoint>>>);

impl Endpoints {
    fn pick(&self, k: usize) -> Option<Endpoint> {
        let v = self.0.read().unwrap_or_else(|e| e.into_inner());
        if v.is_empty() {
            None
        } else {
            v.get(k % v.len()).cloned()
        }
    }
    fn add(&self, r: &Replica) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Endpoint {
                name: r.name.clone(),
                client: RelayClient::new(format!("http://{}", r.addr)),
            });
    }
    fn remove(&self, name: &str) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|e| e.name != name);
    }
}

// ---------------------------------------------------------------------------------------
// Clients

struct ClientInfo {
    account: String,
    credential: String,
    registration_id: u32,
    identity: IdentityKey,
    one_time_ids: HashSet<u32>,
    kem_ids: HashSet<u32>,
}

fn keys_for(
    registration_id: u32,
    prekeys: u32,
) -> Result<(IdentityKeyPair, KeyUploadRequest), BoxError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let identity = IdentityKeyPair::generate()?;
    let signed = SignedPreKeyRecord::generate(&identity, registration_id, 1, now)?;
    let one_time = OneTimePreKeyRecord::generate_batch(&identity, 1, prekeys, now)?;
    let kem = KemPreKeyRecord::generate_batch(&identity, 1, prekeys, now)?;
    let last_resort = KemPreKeyRecord::generate(&identity, 1_000_000, now, true)?;
    let upload = KeyUploadRequest {
        identity: Some(identity.public().encode().to_vec()),
        signed_prekey: Some(signed_prekey_json(signed.public())),
        one_time_prekeys: one_time
            .iter()
            .map(|k| one_time_prekey_json(k.public()))
            .collect(),
        kem_prekeys: kem.iter().map(|k| kem_prekey_json(k.public())).collect(),
        last_resort_kem_prekey: Some(kem_prekey_json(last_resort.public())),
    };
    Ok((identity, upload))
}

/// Message body: sender index, per-sender sequence number, send start (µs), padding.
const BODY_LEN: usize = 64;

fn body(sender: usize, n: u64, start_us: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(BODY_LEN);
    b.extend_from_slice(&(sender as u32).to_le_bytes());
    b.extend_from_slice(&n.to_le_bytes());
    b.extend_from_slice(&start_us.to_le_bytes());
    b.resize(BODY_LEN, 0xA5);
    b
}

fn parse_body(b: &[u8]) -> Option<(usize, u64, u64)> {
    if b.len() != BODY_LEN || b[20..].iter().any(|x| *x != 0xA5) {
        return None;
    }
    let s = u32::from_le_bytes(b.get(0..4)?.try_into().ok()?) as usize;
    let n = u64::from_le_bytes(b.get(4..12)?.try_into().ok()?);
    let t = u64::from_le_bytes(b.get(12..20)?.try_into().ok()?);
    Some((s, n, t))
}

fn message_id(sender: usize, n: u64) -> String {
    format!("m{sender}-{n}")
}

/// One message a sender tried to send.
struct SendRec {
    to: usize,
    n: u64,
    start_us: u64,
    /// When the 200 came (after retries), if it did.
    ok_us: Option<u64>,
    /// Attempts that failed (each retried on another endpoint).
    failed_attempts: u32,
}

/// Sends one message at a time, paced at `interval`, until `stop`; retries a failed
/// attempt on the next endpoint with the same message id (the relay deduplicates).
async fn sender(
    me: usize,
    clients: Arc<Vec<ClientInfo>>,
    eps: Endpoints,
    clock: Clock,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> Vec<SendRec> {
    let mut out = Vec::new();
    let mut rng = Rng::seeded();
    // Spread the senders' first sends over one interval.
    let offset = interval.mul_f64(rng.below(1000) as f64 / 1000.0);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let info = &clients[me];
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        let mut to = rng.below(clients.len() - 1);
        if to >= me {
            to += 1;
        }
        n += 1;
        let start_us = clock.us();
        let id = message_id(me, n);
        let msg = OutgoingJson {
            device: 1,
            registration_id: clients[to].registration_id,
            body: body(me, n, start_us),
        };
        let mut rec = SendRec {
            to,
            n,
            start_us,
            ok_us: None,
            failed_attempts: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut k = me + rng.below(3);
        while Instant::now() < deadline {
            let Some(ep) = eps.pick(k) else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let c = ep.client.authenticated(&info.account, 1, &info.credential);
            let r = tokio::time::timeout(
                Duration::from_secs(5),
                c.send(&clients[to].account, &id, vec![msg.clone()]),
            )
            .await;
            match r {
                Ok(Ok(())) => {
                    rec.ok_us = Some(clock.us());
                    break;
                }
                Ok(Err(ClientError::RateLimited(s))) => {
                    rec.failed_attempts += 1;
                    tokio::time::sleep(Duration::from_secs(s.min(2))).await;
                }
                Ok(Err(ClientError::Status { status, error })) if status < 500 => {
                    // A refusal, not a replica going away: never expected here.
                    eprintln!("  send {id} refused: {status} {error}");
                    rec.failed_attempts += 1;
                    break;
                }
                Ok(Err(_)) | Err(_) => {
                    rec.failed_attempts += 1;
                    k += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        out.push(rec);
    }
    out
}

/// One frame that carried a message.
struct Recv {
    sender: usize,
    n: u64,
    at_us: u64,
    /// First time this recipient saw this message id.
    first: bool,
}

#[derive(Default)]
struct RecvLog {
    msgs: Vec<Recv>,
    /// Frames whose sender, id and body disagree.
    corrupt: Vec<String>,
    /// (time, close code, whether `reconnect` came first, endpoint)
    disconnects: Vec<(u64, Option<u16>, bool, String)>,
    /// (time of the disconnect, µs until the queue was pushed again on another replica)
    gaps: Vec<(u64, u64)>,
}

/// Shared view of the receivers, for the orchestrator.
#[derive(Default)]
struct Live {
    /// Connected receivers per endpoint name.
    connected: Mutex<HashMap<String, usize>>,
    /// (recipient, sender, n) seen at least once.
    delivered: Mutex<HashSet<(usize, usize, u64)>>,
}

impl Live {
    fn total_connected(&self) -> usize {
        lock(&self.connected).values().sum()
    }
    fn connected_to(&self, name: &str) -> usize {
        lock(&self.connected).get(name).copied().unwrap_or(0)
    }
}

/// Keeps this client's delivery WebSocket open on some replica, acknowledging every
/// message `ack_delay` after it arrived; on close it reconnects to the next endpoint.
async fn receiver(
    me: usize,
    clients: Arc<Vec<ClientInfo>>,
    eps: Endpoints,
    clock: Clock,
    live: Arc<Live>,
    ack_delay: Duration,
    mut stop: watch::Receiver<bool>,
) -> RecvLog {
    let mut log = RecvLog::default();
    let info = &clients[me];
    let mut seen: HashSet<(usize, u64)> = HashSet::new();
    let mut k = me;
    let mut down_since: Option<u64> = None;
    'outer: while !*stop.borrow() {
        let Some(ep) = eps.pick(k) else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let c = ep.client.authenticated(&info.account, 1, &info.credential);
        let mut ws = match tokio::time::timeout(Duration::from_secs(5), c.connect()).await {
            Ok(Ok(ws)) => ws,
            _ => {
                k += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        *lock(&live.connected).entry(ep.name.clone()).or_default() += 1;
        let mut saw_reconnect = false;
        // Acknowledgements not sent yet: (due, seq). Lost if the socket closes first,
        // so those messages come again on the next connection.
        let mut pending: VecDeque<(tokio::time::Instant, i64)> = VecDeque::new();
        loop {
            let due = pending.front().map(|p| p.0);
            let frame = tokio::select! {
                f = ws.next() => f,
                _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                    let now = tokio::time::Instant::now();
                    let mut failed = false;
                    while let Some(&(d, seq)) = pending.front() {
                        if d > now {
                            break;
                        }
                        pending.pop_front();
                        if ws.ack(seq).await.is_err() {
                            failed = true;
                            break;
                        }
                    }
                    if failed {
                        break;
                    }
                    continue;
                }
                _ = stop.changed() => {
                    ws.close().await;
                    *lock(&live.connected).entry(ep.name.clone()).or_default() -= 1;
                    break 'outer;
                }
            };
            match frame {
                Ok(ServerFrame::Message {
                    seq,
                    sender,
                    id,
                    body,
                    ..
                }) => {
                    let at_us = clock.us();
                    match parse_body(&body) {
                        Some((s, n, _))
                            if s < clients.len()
                                && clients[s].account == sender
                                && id == message_id(s, n) =>
                        {
                            let first = seen.insert((s, n));
                            if first {
                                lock(&live.delivered).insert((me, s, n));
                            }
                            log.msgs.push(Recv {
                                sender: s,
                                n,
                                at_us,
                                first,
                            });
                        }
                        _ => log.corrupt.push(format!("frame {id} from {sender}")),
                    }
                    pending.push_back((tokio::time::Instant::now() + ack_delay, seq));
                }
                Ok(ServerFrame::QueueEmpty) => {
                    if let Some(t) = down_since.take() {
                        log.gaps.push((t, clock.us().saturating_sub(t)));
                    }
                }
                Ok(ServerFrame::Reconnect) => saw_reconnect = true,
                Err(closed) => {
                    let t = clock.us();
                    log.disconnects
                        .push((t, closed.code, saw_reconnect, ep.name.clone()));
                    down_since = Some(t);
                    break;
                }
            }
        }
        *lock(&live.connected).entry(ep.name.clone()).or_default() -= 1;
        k += 1;
    }
    log
}

/// One bundle fetch.
struct FetchRec {
    at_us: u64,
    target: usize,
    result: Result<(Option<u32>, u32, bool), String>,
}

/// Every `1/rate` s: three clients fetch the same device's bundle at once, each through
/// a different endpoint, so that concurrent claims on different replicas race.
async fn fetcher(
    clients: Arc<Vec<ClientInfo>>,
    eps: Endpoints,
    clock: Clock,
    rate: f64,
    mut stop: watch::Receiver<bool>,
) -> Vec<FetchRec> {
    let mut out = Vec::new();
    let mut rng = Rng::seeded();
    let n = clients.len();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.01)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        let target = rng.below(n);
        let mut fetchers = Vec::new();
        while fetchers.len() < 3 {
            let f = rng.below(n);
            if f != target && !fetchers.contains(&f) {
                fetchers.push(f);
            }
        }
        let base = rng.below(3);
        let mut calls = Vec::new();
        for (j, f) in fetchers.into_iter().enumerate() {
            let Some(ep) = eps.pick(base + j) else {
                continue;
            };
            let c = ep
                .client
                .authenticated(&clients[f].account, 1, &clients[f].credential);
            let account = clients[target].account.clone();
            calls.push(async move {
                tokio::time::timeout(Duration::from_secs(5), c.bundles(&account, Some(1))).await
            });
        }
        for r in futures_util::future::join_all(calls).await {
            let at_us = clock.us();
            let result = match r {
                Err(_) => Err("timeout".to_owned()),
                Ok(Err(e)) => Err(e.to_string()),
                Ok(Ok(bundles)) => check_bundles(&clients[target], bundles),
            };
            out.push(FetchRec {
                at_us,
                target,
                result,
            });
        }
    }
    out
}

/// The claimed one-time ids of a fetched bundle, after verifying it.
fn check_bundles(
    target: &ClientInfo,
    bundles: Vec<(u32, signal_core::prekey::PreKeyBundle)>,
) -> Result<(Option<u32>, u32, bool), String> {
    let [(1, b)] = <[_; 1]>::try_from(bundles).map_err(|_| "not exactly one bundle")? else {
        return Err("bundle of another device".into());
    };
    if b.registration_id != target.registration_id {
        return Err("INVALID: wrong registration id".into());
    }
    let ot = b.one_time_prekey.as_ref().map(|k| k.id);
    let (kem, last_resort) = (b.kem_prekey.id, b.kem_prekey.last_resort);
    b.verify_for(&target.identity)
        .map_err(|e| format!("INVALID: bundle does not verify: {e}"))?;
    Ok((ot, kem, last_resort))
}

// ---------------------------------------------------------------------------------------
// Report

fn percentile_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

struct Window {
    name: String,
    from_us: u64,
    to_us: u64,
}

struct Event {
    /// SIGTERM (graceful) rather than SIGKILL.
    graceful: bool,
    name: String,
    start_us: u64,
    end_us: u64,
    note: String,
}

// ---------------------------------------------------------------------------------------

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("relay-scaleout: FAILED (see above)");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("relay-scaleout: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

fn require_loopback(url: &str) -> Result<(), BoxError> {
    let config: tokio_postgres::Config = url.parse()?;
    for h in config.get_hosts() {
        let ok = match h {
            tokio_postgres::config::Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(_) => true,
        };
        if !ok {
            return Err("the PostgreSQL URL must name a loopback host or a Unix socket".into());
        }
    }
    Ok(())
}

async fn admin(url: &str) -> Result<tokio_postgres::Client, BoxError> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

async fn run(args: Args) -> Result<bool, BoxError> {
    require_loopback(&args.postgres_admin_url)?;
    if args.clients < 4 {
        return Err("--clients must be at least 4".into());
    }
    let db_name = {
        let mut b = [0u8; 6];
        getrandom::fill(&mut b)?;
        format!("relay_scaleout_{}", hex(&b))
    };
    admin(&args.postgres_admin_url)
        .await?
        .batch_execute(&format!("CREATE DATABASE {db_name}"))
        .await?;
    let db_url = match args.postgres_admin_url.rsplit_once('/') {
        Some((head, _)) => format!("{head}/{db_name}"),
        None => return Err("--postgres-admin-url must end in /DATABASE".into()),
    };
    let result = scenario(&args, &db_url).await;
    let _ = admin(&args.postgres_admin_url)
        .await?
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))
        .await;
    result
}

async fn scenario(args: &Args, db_url: &str) -> Result<bool, BoxError> {
    let bin = match &args.relay_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .ok_or("no parent directory")?
            .join("relay-server"),
    };
    let clock = Clock(Instant::now());
    let t_setup = Instant::now();

    // Three replicas.
    let eps = Endpoints::default();
    let mut slots: Vec<Replica> = Vec::new();
    for slot in 0..3 {
        let r = spawn_replica(&bin, &args.config, db_url, format!("r{slot}.0")).await?;
        eps.add(&r);
        slots.push(r);
    }
    println!(
        "3 replicas up: {}",
        slots
            .iter()
            .map(|r| format!("{} {}", r.name, r.addr))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // Clients: register and upload keys through replica i % 3.
    let run_id = {
        let mut b = [0u8; 3];
        getrandom::fill(&mut b)?;
        hex(&b)
    };
    let prekeys = args.prekeys.min(100);
    let mut keygen = Vec::new();
    for i in 0..args.clients {
        keygen.push(tokio::task::spawn_blocking(move || {
            keys_for(i as u32 + 1, prekeys).map_err(|e| e.to_string())
        }));
    }
    let mut clients = Vec::new();
    for (i, k) in keygen.into_iter().enumerate() {
        let (identity, upload) = k.await??;
        let mut c = [0u8; 16];
        getrandom::fill(&mut c)?;
        let credential = base64::engine::general_purpose::STANDARD.encode(c);
        let account = format!("so-{run_id}-{i}");
        let ep = eps.pick(i).ok_or("no endpoint")?;
        let client = ep
            .client
            .register(&account, i as u32 + 1, &credential, None)
            .await?;
        client.upload_keys(&upload).await?;
        clients.push(ClientInfo {
            account,
            credential,
            registration_id: i as u32 + 1,
            identity: *identity.public(),
            one_time_ids: (1..=prekeys).collect(),
            kem_ids: (1..=prekeys).collect(),
        });
    }
    let clients = Arc::new(clients);

    // Receivers on replica i % 3.
    let live = Arc::new(Live::default());
    let (stop_rx_tx, stop_rx) = watch::channel(false);
    let mut receivers = Vec::new();
    for i in 0..args.clients {
        receivers.push(tokio::spawn(receiver(
            i,
            Arc::clone(&clients),
            eps.clone(),
            clock,
            Arc::clone(&live),
            Duration::from_millis(args.ack_delay_ms),
            stop_rx.clone(),
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while live.total_connected() < args.clients {
        if Instant::now() > deadline {
            return Err("receivers did not connect within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "{} clients registered ({} one-time X25519 + {} ML-KEM prekeys each) and connected in {:.1?}",
        args.clients,
        prekeys,
        prekeys,
        t_setup.elapsed()
    );

    // Load.
    let (stop_tx, stop) = watch::channel(false);
    let interval = Duration::from_secs_f64(args.clients as f64 / args.rate.max(0.1));
    let mut senders = Vec::new();
    for i in 0..args.clients {
        senders.push(tokio::spawn(sender(
            i,
            Arc::clone(&clients),
            eps.clone(),
            clock,
            interval,
            stop.clone(),
        )));
    }
    let fetch = tokio::spawn(fetcher(
        Arc::clone(&clients),
        eps.clone(),
        clock,
        args.fetch_rate,
        stop.clone(),
    ));
    let load_start = clock.us();
    println!(
        "load: {} msg/s target ({} senders, one send at a time each), {} bundle-fetch rounds/s x 3",
        args.rate, args.clients, args.fetch_rate
    );

    let mut events: Vec<Event> = Vec::new();
    let mut ok = true;
    // WARN/ERROR lines and CPU seconds of replicas already stopped.
    let mut problems: u64 = 0;
    let mut relay_cpu = 0.0;
    tokio::time::sleep(Duration::from_secs(args.baseline_secs)).await;

    // (1) Rolling update: replace each replica in turn.
    for (slot, current) in slots.iter_mut().enumerate() {
        let start_us = clock.us();
        let old_name = current.name.clone();
        let generation: usize = old_name
            .rsplit('.')
            .next()
            .and_then(|g| g.parse().ok())
            .unwrap_or(0);
        let new = spawn_replica(
            &bin,
            &args.config,
            db_url,
            format!("r{slot}.{}", generation + 1),
        )
        .await?;
        let ready_ms = (clock.us() - start_us) / 1000;
        eps.add(&new);
        eps.remove(&old_name);
        let on_old = live.connected_to(&old_name);
        tokio::time::sleep(Duration::from_secs(args.prestop_secs)).await;
        let mut old = std::mem::replace(current, new);
        let term_us = clock.us();
        relay_cpu += old.cpu_secs();
        old.signal("TERM")?;
        let status = old.wait_exit(Duration::from_secs(40)).await?;
        problems += old.problems.load(Ordering::Relaxed);
        let exit_ms = (clock.us() - term_us) as f64 / 1000.0;
        if !status.success() {
            eprintln!("CHECK FAILED: {old_name} exited with {status} after SIGTERM");
            ok = false;
        }
        let moved = wait_reconnected(&live, &old_name, args.clients).await;
        let end_us = clock.us();
        events.push(Event {
            graceful: true,
            name: format!("rolling {old_name}->{}", current.name),
            start_us,
            end_us,
            note: format!(
                "new replica ready in {ready_ms} ms; {on_old} sockets on the old one; SIGTERM -> exit {exit_ms:.0} ms ({status}); all sockets back {} ms after SIGTERM{}",
                (end_us - term_us) / 1000,
                if moved { "" } else { " (NOT all reconnected)" }
            ),
        });
        if let Some(e) = events.last() {
            println!("  {}: {}", e.name, e.note);
        }
        if !moved {
            ok = false;
        }
        tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    }

    // (2) SIGKILL one replica; it leaves the endpoint list after kill_detect_ms.
    {
        let start_us = clock.us();
        let victim = &mut slots[0];
        let name = victim.name.clone();
        let on_victim = live.connected_to(&name);
        relay_cpu += victim.cpu_secs();
        victim.signal("KILL")?;
        let _ = victim.wait_exit(Duration::from_secs(10)).await?;
        tokio::time::sleep(Duration::from_millis(args.kill_detect_ms)).await;
        eps.remove(&name);
        let moved = wait_reconnected(&live, &name, args.clients).await;
        let end_us = clock.us();
        events.push(Event {
            graceful: false,
            name: format!("SIGKILL {name}"),
            start_us,
            end_us,
            note: format!(
                "{on_victim} sockets on it; endpoint removed after {} ms; all sockets back {} ms after the kill{}",
                args.kill_detect_ms,
                (end_us - start_us) / 1000,
                if moved { "" } else { " (NOT all reconnected)" }
            ),
        });
        if let Some(e) = events.last() {
            println!("  {}: {}", e.name, e.note);
        }
        if !moved {
            ok = false;
        }
        tokio::time::sleep(Duration::from_secs(args.settle_secs.max(8))).await;
    }

    // Stop the load; collect what was sent.
    let _ = stop_tx.send(true);
    let load_end = clock.us();
    let mut sends: Vec<Vec<SendRec>> = Vec::new();
    for s in senders {
        sends.push(s.await?);
    }
    let fetches = fetch.await?;
    let wanted: HashSet<(usize, usize, u64)> = sends
        .iter()
        .enumerate()
        .flat_map(|(s, v)| {
            v.iter()
                .filter(|r| r.ok_us.is_some())
                .map(move |r| (r.to, s, r.n))
        })
        .collect();

    // Drain: every message that got a 200 arrives.
    let drain_start = Instant::now();
    let deadline = drain_start + Duration::from_secs(args.drain_timeout_secs);
    let mut missing = usize::MAX;
    while Instant::now() < deadline {
        missing = {
            let d = lock(&live.delivered);
            wanted.iter().filter(|k| !d.contains(k)).count()
        };
        if missing == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained_in = drain_start.elapsed();
    // Every queue ends empty once the last acknowledgements are in.
    let pg = admin(db_url).await?;
    let mut left: i64 = -1;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        left = pg
            .query_one("SELECT COUNT(*) FROM messages", &[])
            .await?
            .get(0);
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A late duplicate would show up within a catch-up period.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = stop_rx_tx.send(true);
    let mut logs = Vec::new();
    for r in receivers {
        logs.push(r.await?);
    }
    let keys_left: (i64, i64) = {
        let row = pg
            .query_one(
                "SELECT (SELECT COUNT(*) FROM one_time_prekeys), (SELECT COUNT(*) FROM kem_prekeys)",
                &[],
            )
            .await?;
        (row.get(0), row.get(1))
    };
    drop(pg);
    for mut r in slots {
        problems += r.problems.load(Ordering::Relaxed);
        if r.child.id().is_some() {
            relay_cpu += r.cpu_secs();
            let _ = r.signal("TERM");
            let _ = r.wait_exit(Duration::from_secs(40)).await;
        }
    }

    // ---- Checks.
    println!();
    println!("checks");
    let mut check = |name: &str, pass: bool, detail: String| {
        println!(
            "  [{}] {name}: {detail}",
            if pass { "ok" } else { "FAILED" }
        );
        if !pass {
            ok = false;
        }
    };
    let total_ok = wanted.len();
    let total_sent: usize = sends.iter().map(Vec::len).sum();
    check(
        "every 200 delivered",
        missing == 0,
        format!(
            "{total_ok} of {total_sent} sends got a 200; {missing} missing after a {drained_in:.1?} drain"
        ),
    );
    // Exactly once after dedupe, addressed right, intact.
    let mut sent_to: HashMap<(usize, u64), usize> = HashMap::new();
    for (s, v) in sends.iter().enumerate() {
        for r in v {
            sent_to.insert((s, r.n), r.to);
        }
    }
    let (mut frames, mut dups, mut misaddressed, mut corrupt) = (0usize, 0usize, 0usize, 0usize);
    let mut order_violations = 0usize;
    for (me, log) in logs.iter().enumerate() {
        corrupt += log.corrupt.len();
        let mut last: HashMap<usize, u64> = HashMap::new();
        for m in &log.msgs {
            frames += 1;
            if !m.first {
                dups += 1;
                continue;
            }
            if sent_to.get(&(m.sender, m.n)) != Some(&me) {
                misaddressed += 1;
            }
            let l = last.entry(m.sender).or_insert(0);
            if m.n < *l {
                order_violations += 1;
            }
            *l = m.n;
        }
    }
    check(
        "exactly once after dedupe",
        misaddressed == 0 && corrupt == 0,
        format!(
            "{frames} message frames, {} distinct, {dups} redeliveries (deduplicated by id), {misaddressed} to a wrong recipient or never sent, {corrupt} corrupt",
            frames - dups
        ),
    );
    check(
        "per-sender order",
        order_violations == 0,
        format!("{order_violations} messages delivered before an earlier one of the same sender"),
    );
    // One-time prekeys.
    let mut claimed_ot: HashSet<(usize, u32)> = HashSet::new();
    let mut claimed_kem: HashSet<(usize, u32)> = HashSet::new();
    let (mut twice, mut foreign, mut invalid, mut fetch_ok, mut fetch_err, mut last_resort) =
        (0usize, 0usize, 0usize, 0usize, 0usize, 0usize);
    let mut fetch_errors: BTreeMap<String, usize> = BTreeMap::new();
    for f in &fetches {
        match &f.result {
            Ok((ot, kem, lr)) => {
                fetch_ok += 1;
                if let Some(id) = ot {
                    if !clients[f.target].one_time_ids.contains(id) {
                        foreign += 1;
                    }
                    if !claimed_ot.insert((f.target, *id)) {
                        twice += 1;
                    }
                }
                if *lr {
                    last_resort += 1;
                } else {
                    if !clients[f.target].kem_ids.contains(kem) {
                        foreign += 1;
                    }
                    if !claimed_kem.insert((f.target, *kem)) {
                        twice += 1;
                    }
                }
            }
            Err(e) if e.starts_with("INVALID") => {
                invalid += 1;
                eprintln!("  fetch of {}: {e}", clients[f.target].account);
            }
            Err(e) => {
                fetch_err += 1;
                *fetch_errors.entry(short(e)).or_default() += 1;
            }
        }
    }
    let uploaded = (args.clients as i64) * i64::from(prekeys);
    let (ot_left, kem_left) = keys_left;
    check(
        "no one-time prekey handed out twice",
        twice == 0 && foreign == 0 && invalid == 0,
        format!(
            "{fetch_ok} bundles fetched (3 at once per device, through different replicas), all verified; {} X25519 and {} ML-KEM one-time keys claimed, {twice} twice, {foreign} unknown; {last_resort} with the last-resort KEM key; {fetch_err} fetches failed {fetch_errors:?}",
            claimed_ot.len(),
            claimed_kem.len()
        ),
    );
    check(
        "claimed keys are gone",
        ot_left + claimed_ot.len() as i64 <= uploaded
            && kem_left + claimed_kem.len() as i64 <= uploaded,
        format!(
            "{uploaded} of each kind uploaded; {ot_left} X25519 and {kem_left} ML-KEM left in the database"
        ),
    );
    check(
        "every queue empty at the end",
        left == 0,
        format!("{left} messages left unacknowledged"),
    );
    let (mut graceful_closes, mut unclean) = (0usize, 0usize);
    for e in events.iter().filter(|e| e.graceful) {
        for l in &logs {
            for d in l
                .disconnects
                .iter()
                .filter(|d| d.0 >= e.start_us && d.0 <= e.end_us)
            {
                graceful_closes += 1;
                if !(d.2 && d.1 == Some(relay_server::delivery::CLOSE_SHUTDOWN)) {
                    unclean += 1;
                }
            }
        }
    }
    check(
        "SIGTERM closes every socket with reconnect + 1012",
        unclean == 0,
        format!("{graceful_closes} sockets closed by SIGTERM, {unclean} without reconnect + 1012"),
    );
    check(
        "relay warnings/errors",
        true,
        format!("{problems} WARN/ERROR log lines over all replicas (printed above)"),
    );

    // ---- Report.
    let mut windows = Vec::new();
    let mut from = load_start;
    let mut prev = "before (3 replicas)".to_owned();
    for e in &events {
        windows.push(Window {
            name: prev.clone(),
            from_us: from,
            to_us: e.start_us,
        });
        windows.push(Window {
            name: format!("during {}", e.name),
            from_us: e.start_us,
            to_us: e.end_us,
        });
        from = e.end_us;
        prev = format!("after {}", e.name);
    }
    windows.push(Window {
        name: format!("{prev} (2 replicas)"),
        from_us: from,
        to_us: load_end,
    });
    // First delivery time of each message.
    let mut first_at: HashMap<(usize, usize, u64), u64> = HashMap::new();
    for (me, log) in logs.iter().enumerate() {
        for m in log.msgs.iter().filter(|m| m.first) {
            first_at.insert((me, m.sender, m.n), m.at_us);
        }
    }
    let all_disconnects: Vec<&(u64, Option<u16>, bool, String)> =
        logs.iter().flat_map(|l| l.disconnects.iter()).collect();
    let all_gaps: Vec<(u64, u64)> = logs.iter().flat_map(|l| l.gaps.iter().copied()).collect();
    println!();
    println!(
        "{:<34} {:>6} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "window", "secs", "sent/s", "deliv/s", "p50 ms", "p99 ms", "max ms", "retries", "fetches"
    );
    for w in &windows {
        let secs = (w.to_us.saturating_sub(w.from_us)) as f64 / 1e6;
        let mut lat = Vec::new();
        let (mut accepted, mut retries) = (0usize, 0u64);
        for (s, v) in sends.iter().enumerate() {
            for r in v
                .iter()
                .filter(|r| r.start_us >= w.from_us && r.start_us < w.to_us)
            {
                retries += u64::from(r.failed_attempts);
                if r.ok_us.is_some() {
                    accepted += 1;
                    if let Some(at) = first_at.get(&(r.to, s, r.n)) {
                        lat.push(at.saturating_sub(r.start_us));
                    }
                }
            }
        }
        lat.sort_unstable();
        let delivered = first_at
            .values()
            .filter(|t| **t >= w.from_us && **t < w.to_us)
            .count();
        let f = fetches
            .iter()
            .filter(|f| f.at_us >= w.from_us && f.at_us < w.to_us)
            .count();
        println!(
            "{:<34} {:>6.1} {:>9.1} {:>9.1} {:>8.1} {:>8.1} {:>8.1} {:>8} {:>7}",
            w.name,
            secs,
            accepted as f64 / secs.max(1e-9),
            delivered as f64 / secs.max(1e-9),
            percentile_ms(&lat, 0.5),
            percentile_ms(&lat, 0.99),
            percentile_ms(&lat, 1.0),
            retries,
            f
        );
    }
    println!();
    println!("sent/s: sends started in the window that got a 200, per second; deliv/s: first");
    println!("deliveries in the window; p50/p99/max: send start -> first delivery of the sends");
    println!("started in the window; retries: failed attempts retried on another replica.");
    println!();
    for e in &events {
        let d: Vec<_> = all_disconnects
            .iter()
            .filter(|d| d.0 >= e.start_us && d.0 <= e.end_us)
            .collect();
        let mut codes: BTreeMap<String, usize> = BTreeMap::new();
        for x in &d {
            let k = match (x.1, x.2) {
                (Some(c), true) => format!("reconnect+{c}"),
                (Some(c), false) => c.to_string(),
                (None, _) => "no close frame".to_owned(),
            };
            *codes.entry(k).or_default() += 1;
        }
        let mut gaps: Vec<u64> = all_gaps
            .iter()
            .filter(|g| g.0 >= e.start_us && g.0 <= e.end_us)
            .map(|g| g.1)
            .collect();
        gaps.sort_unstable();
        println!(
            "{}: {} sockets closed {:?}; reconnect to another replica and queue pushed: p50 {:.0} ms, max {:.0} ms",
            e.name,
            d.len(),
            codes,
            percentile_ms(&gaps, 0.5),
            percentile_ms(&gaps, 1.0)
        );
    }
    let accepted_total = wanted.len().max(1) as f64;
    println!(
        "relay CPU: {relay_cpu:.1} s over all replicas (setup included) = {:.2} ms per message sent and delivered",
        relay_cpu * 1000.0 / accepted_total
    );
    println!(
        "whole run: {:.1} s of load, {:.1} s in all",
        (load_end - load_start) as f64 / 1e6,
        clock.us() as f64 / 1e6
    );
    Ok(ok)
}

/// Waits until no receiver is on `old` and all `n` are connected again (bounded).
async fn wait_reconnected(live: &Live, old: &str, n: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if live.connected_to(old) == 0 && live.total_connected() == n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

fn short(e: &str) -> String {
    e.chars().take(60).collect()
}
