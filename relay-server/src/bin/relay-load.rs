//! `relay-load`: registers N clients, connects N WebSockets, sends M messages between
//! random pairs through the relay, and reports delivered messages/s end to end,
//! p50/p99/p999 latency (send start → frame received), and the relay's RSS.
//!
//! By default it starts the `relay-server` binary next to itself on a temporary SQLite
//! file (or on `--postgres-url`); `--relay-url` with `--relay-pid` targets a running
//! relay instead.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use clap::Parser;
use relay_server::RelayClient;
use relay_server::types::{OutgoingJson, ServerFrame};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{Mutex, Semaphore};

#[derive(Debug, Parser)]
#[command(name = "relay-load", about = "Load generator for relay-server")]
struct Args {
    /// Number of clients (accounts with one device, each with a WebSocket).
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Messages to send in total.
    #[arg(long, default_value_t = 10_000)]
    messages: usize,
    /// Sends in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// A running relay to target (otherwise one is started).
    #[arg(long)]
    relay_url: Option<String>,
    /// The PID of the relay at `--relay-url` (for RSS).
    #[arg(long)]
    relay_pid: Option<u32>,
    /// Start the relay on this PostgreSQL instead of a temporary SQLite file.
    #[arg(long)]
    postgres_url: Option<String>,
    /// Give up waiting for deliveries after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

async fn start_relay(
    args: &Args,
    dir: &std::path::Path,
) -> Result<(tokio::process::Child, String), BoxError> {
    let exe = std::env::current_exe()?;
    let bin: PathBuf = exe
        .parent()
        .ok_or("no parent directory")?
        .join("relay-server");
    let mut cmd = tokio::process::Command::new(bin);
    cmd.current_dir(dir)
        .env("RELAY_LISTEN", "127.0.0.1:0")
        .env("RELAY_LOG_FORMAT", "json")
        .env("RELAY_LOG", "warn,relay_server::server=info")
        .env("RELAY_SEND_RATE", "1000000")
        .env("RELAY_SEND_BURST", "1000000")
        .env("RELAY_MAX_CONNECTIONS", "1000000")
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    match &args.postgres_url {
        Some(url) => {
            cmd.env("RELAY_STORAGE", "postgres")
                .env("RELAY_POSTGRES_URL", url);
        }
        None => {
            cmd.env("RELAY_STORAGE", "sqlite")
                .env("RELAY_SQLITE_PATH", dir.join("load.sqlite3"));
        }
    }
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await? {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["fields"]["message"] == "relay listening"
            && let Some(addr) = v["fields"]["addr"].as_str()
        {
            let addr = format!("http://{addr}");
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok((child, addr));
        }
    }
    Err("relay exited before listening".into())
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1e6
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let (_child, base, pid) = match &args.relay_url {
        Some(url) => (None, url.clone(), args.relay_pid),
        None => {
            let (child, base) = start_relay(&args, dir.path()).await?;
            let pid = child.id();
            (Some(child), base, pid)
        }
    };
    let relay = RelayClient::new(base.clone());
    let rss_start = pid.and_then(rss_kib);

    // Register.
    let t0 = Instant::now();
    let run = {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b)?;
        hex(&b)
    };
    let sem = Arc::new(Semaphore::new(args.concurrency));
    let mut regs = Vec::new();
    for i in 0..args.clients {
        let (relay, sem, run) = (relay.clone(), Arc::clone(&sem), run.clone());
        regs.push(tokio::spawn(async move {
            let _p = sem.acquire().await?;
            let mut c = [0u8; 16];
            getrandom::fill(&mut c)?;
            let cred = base64::engine::general_purpose::STANDARD.encode(c);
            let client = relay
                .register(&format!("load-{run}-{i}"), i as u32 + 1, &cred, None)
                .await?;
            Ok::<_, BoxError>(client)
        }));
    }
    let mut clients = Vec::new();
    for r in regs {
        clients.push(r.await??);
    }
    eprintln!(
        "registered {} clients in {:.1?}",
        clients.len(),
        t0.elapsed()
    );
    // The baseline for the per-connection figure: accounts, the database cache and the
    // HTTP connections of the registration are already in it.
    let rss_registered = pid.and_then(rss_kib);

    // Connect.
    let delivered = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(args.messages)));
    let last_delivery = Arc::new(Mutex::new(Instant::now()));
    let mut readers = Vec::new();
    for c in &clients {
        let mut ws = c.connect().await?;
        loop {
            match ws.next().await {
                Ok(ServerFrame::QueueEmpty) => break,
                Ok(_) => {}
                Err(_) => return Err("socket closed during connect".into()),
            }
        }
        let (delivered, latencies, last) = (
            Arc::clone(&delivered),
            Arc::clone(&latencies),
            Arc::clone(&last_delivery),
        );
        readers.push(tokio::spawn(async move {
            while let Ok(frame) = ws.next().await {
                if let ServerFrame::Message { seq, body, .. } = frame {
                    let sent = body
                        .get(..8)
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_le_bytes)
                        .unwrap_or(0);
                    latencies
                        .lock()
                        .await
                        .push(now_nanos().saturating_sub(sent));
                    delivered.fetch_add(1, Ordering::Relaxed);
                    *last.lock().await = Instant::now();
                    if ws.ack(seq).await.is_err() {
                        break;
                    }
                }
            }
        }));
    }
    let rss_connected = pid.and_then(rss_kib);
    eprintln!("connected {} WebSockets", clients.len());

    // Send.
    let clients = Arc::new(clients);
    let start = Instant::now();
    let mut sends = Vec::new();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ now_nanos());
    let n = clients.len();
    let failures = Arc::new(AtomicU64::new(0));
    for m in 0..args.messages {
        let from = (rng.next() % n as u64) as usize;
        let mut to = (rng.next() % n as u64) as usize;
        if to == from && n > 1 {
            to = (to + 1) % n;
        }
        let permit = Arc::clone(&sem).acquire_owned().await?;
        let (clients, failures) = (Arc::clone(&clients), Arc::clone(&failures));
        sends.push(tokio::spawn(async move {
            let _permit = permit;
            let Some((to_account, _)) = clients[to].identity() else {
                return;
            };
            let mut body = now_nanos().to_le_bytes().to_vec();
            body.extend_from_slice(&[0u8; 56]);
            let r = clients[from]
                .send(
                    to_account,
                    &format!("m{m}"),
                    vec![OutgoingJson {
                        device: 1,
                        registration_id: to as u32 + 1,
                        body,
                    }],
                )
                .await;
            if r.is_err() {
                failures.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for s in sends {
        let _ = s.await;
    }
    let sent_ok = args.messages as u64 - failures.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    while delivered.load(Ordering::Relaxed) < sent_ok && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = last_delivery.lock().await.duration_since(start);
    let got = delivered.load(Ordering::Relaxed);
    let mut lat = latencies.lock().await.clone();
    lat.sort_unstable();
    let rss_end = pid.and_then(rss_kib);

    println!("clients            {}", n);
    println!(
        "messages sent      {} ok, {} failed",
        sent_ok,
        failures.load(Ordering::Relaxed)
    );
    println!("delivered          {got}");
    println!(
        "throughput         {:.0} messages/s end to end ({:.2} s)",
        got as f64 / elapsed.as_secs_f64().max(1e-9),
        elapsed.as_secs_f64()
    );
    println!(
        "latency            p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms",
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        percentile(&lat, 0.999)
    );
    if let (Some(a), Some(r), Some(b), Some(c)) =
        (rss_start, rss_registered, rss_connected, rss_end)
    {
        println!(
            "relay RSS          {a} KiB at start, {r} KiB after registration, {b} KiB with {n} idle connections, {c} KiB at end"
        );
        println!(
            "per idle connection {:.1} KiB",
            b.saturating_sub(r) as f64 / n.max(1) as f64
        );
    }
    for r in readers {
        r.abort();
    }
    if got < sent_ok {
        return Err(format!("only {got} of {sent_ok} messages delivered").into());
    }
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
