//! Harness: a real `relay-server` process on a temporary SQLite file and real
//! `secure_messenger` processes, each with its own home directory (SQLCipher store).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The messenger binary under test.
pub fn messenger_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_secure_messenger"))
}

/// The relay binary beside it, built first if this test run did not build it.
pub fn relay_bin() -> PathBuf {
    let bin = messenger_bin().with_file_name("relay-server");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "relay-server", "--bin", "relay-server"])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building relay-server failed");
    }
    bin
}

/// A relay process.
pub struct Relay {
    child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Relay {
    /// Starts a relay with `RELAY_*` overrides.
    pub fn start(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(relay_bin());
        cmd.current_dir(dir.path())
            .env("RELAY_LISTEN", "127.0.0.1:0")
            .env("RELAY_STORAGE", "sqlite")
            .env("RELAY_SQLITE_PATH", dir.path().join("relay.sqlite3"))
            .env("RELAY_LOG_FORMAT", "json")
            .env("RELAY_CATCH_UP_SECS", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent {
                    let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                    if v["fields"]["message"] == "relay listening" {
                        let _ =
                            tx.send(v["fields"]["addr"].as_str().unwrap_or_default().to_owned());
                        sent = true;
                    }
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("relay listening within 30 s");
        Self {
            child,
            url: format!("http://{addr}"),
            dir,
        }
    }

    /// Stops the relay (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One device: a home directory and a passphrase.
pub struct User {
    pub name: String,
    pub home: tempfile::TempDir,
    pub passphrase: String,
}

impl User {
    /// `init` in a fresh home.
    pub fn init(name: &str) -> Self {
        let u = Self {
            name: name.to_owned(),
            home: tempfile::tempdir().unwrap(),
            passphrase: format!("passphrase of {name}"),
        };
        let out = u.run(&["init"]);
        assert!(
            stdout(&out).contains("created identity"),
            "{}",
            stdout(&out)
        );
        u
    }

    /// `init` + `register` at `relay`.
    pub fn registered(name: &str, relay: &Relay) -> Self {
        let u = Self::init(name);
        let out = u.run(&["register", "--relay", &relay.url, "--name", name]);
        assert!(stdout(&out).contains(&format!("registered {name} (device 1)")));
        u
    }

    pub fn db(&self) -> PathBuf {
        self.home.path().join("account.db")
    }

    /// The command with this user's home and passphrase.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(messenger_bin());
        c.args(args)
            .env("SECURE_MESSENGER_HOME", self.home.path())
            .env("SECURE_MESSENGER_PASSPHRASE", &self.passphrase)
            .env("SECURE_MESSENGER_RETRIES", "3")
            .stdin(Stdio::null());
        c
    }

    /// Runs a command that must succeed.
    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd(args).output().unwrap();
        assert!(
            out.status.success(),
            "{} {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            self.name,
            out.status,
            stdout(&out),
            stderr(&out)
        );
        out
    }

    /// Runs a command that must fail with `code`.
    pub fn fails(&self, args: &[&str], code: i32) -> Output {
        let out = self.cmd(args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{} {args:?}: expected exit {code}:\nstdout: {}\nstderr: {}",
            self.name,
            stdout(&out),
            stderr(&out)
        );
        out
    }

    /// Everything `listen --until-empty` prints on stdout.
    pub fn receive(&self) -> String {
        stdout(&self.run(&["listen", "--until-empty"]))
    }

    /// Starts a long-running command, collecting stdout and stderr lines.
    pub fn spawn(&self, args: &[&str]) -> Spawned {
        let mut child = self
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Spawned {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }
}

/// A running command.
pub struct Spawned {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Spawned {
    /// Waits until a line containing `needle` appears; returns it.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line containing {needle:?} within {timeout:?}; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits for the process to exit by itself.
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(l);
                }
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "process still running; saw:\n{}",
                self.seen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// SHA-256-free fingerprint of a file's bytes (for "nothing changed" checks).
pub fn file_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}
