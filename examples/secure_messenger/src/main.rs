//! `secure_messenger`: an end-to-end encrypted CLI messenger over the relay.
//!
//! Each home directory (`--home`, default `~/.secure_messenger`) is one device: an
//! identity, its prekeys, sessions, sender keys and received messages in one SQLCipher
//! database protected by a passphrase. The relay only ever sees ciphertext. See
//! `examples/secure_messenger/README.md`.

mod appdb;
mod demo;
mod envelope;
mod error;
mod inspect;
mod listen;
mod messenger;
mod profile;
mod selftest;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use signal_core::store::IdentityStore;

use crate::error::{AppError, Result};
use crate::listen::ListenOptions;
use crate::messenger::{Trust, now};
use crate::profile::Home;

#[derive(Debug, Parser)]
#[command(
    name = "secure_messenger",
    version,
    about = "End-to-end encrypted messaging over the relay (PQXDH + Double Ratchet, sender-key groups, SQLCipher storage).",
    after_help = "Passphrase: typed without echo, or from SECURE_MESSENGER_PASSPHRASE for scripts.\nStart with `secure_messenger demo` for a tour that needs no setup."
)]
struct Cli {
    /// The device's directory (its SQLCipher store lives here).
    #[arg(long, global = true, env = "SECURE_MESSENGER_HOME")]
    home: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create an identity and a passphrase-protected SQLCipher store.
    Init,
    /// Register with a relay as a new account and upload prekeys.
    Register {
        /// The relay's base URL, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        relay: String,
        /// Your account name (1–64 of a-z 0-9 _ -).
        #[arg(long)]
        name: String,
        /// The relay's invite token, if it requires one.
        #[arg(long, env = "SECURE_MESSENGER_INVITE_TOKEN")]
        invite_token: Option<String>,
    },
    /// Show this device's account, relay and prekey counts.
    Whoami,
    /// Send one message to a contact (all their devices, and your other devices).
    Send {
        /// The contact's account name.
        name: String,
        /// The message (several words are joined with spaces).
        #[arg(required = true, num_args = 1..)]
        message: Vec<String>,
    },
    /// Print messages as they arrive; stays connected and reconnects with backoff.
    Listen {
        /// Exit once every queued message has been received.
        #[arg(long)]
        until_empty: bool,
        /// Seconds between key-maintenance runs while connected.
        #[arg(long, default_value_t = 3600, hide = true)]
        maintenance_every: u64,
    },
    /// Interactive conversation: type lines to send, see replies as they arrive.
    Chat {
        /// The contact's account name.
        name: String,
    },
    /// Show received messages stored on this device.
    History {
        /// Only messages with this contact.
        name: Option<String>,
        /// How many (the newest).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Groups: create, add, remove (rotates keys), send, list.
    #[command(subcommand)]
    Group(GroupCommand),
    /// This account's devices: list (default), link a new one, join as a new one, remove.
    Devices {
        #[command(subcommand)]
        command: Option<DevicesCommand>,
    },
    /// Show the safety numbers with a contact's devices.
    SafetyNumber {
        /// The contact's account name.
        name: String,
    },
    /// Mark a contact's current identity keys verified (after comparing safety numbers).
    Verify {
        /// The contact's account name.
        name: String,
    },
    /// Session metadata with a contact (chain indices, skipped keys, archived sessions, ages; never key bytes).
    Inspect {
        /// The contact's account name.
        name: String,
    },
    /// Known-answer tests of every primitive and full protocol round trips.
    Selftest,
    /// A tour with no setup: in-process relay, three users, 1:1, a group, a removal.
    Demo {
        /// Keep the temporary directory (stores and relay database) afterwards.
        #[arg(long)]
        keep: bool,
    },
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    /// Create a group with these members (you are added).
    Create {
        /// Group name (1–64 of a-z A-Z 0-9 _ - .).
        name: String,
        /// Member account names.
        #[arg(required = true, num_args = 1..)]
        members: Vec<String>,
    },
    /// Add members (they read messages from now on, nothing earlier).
    Add {
        /// Group name.
        group: String,
        /// Account names to add.
        #[arg(required = true, num_args = 1..)]
        members: Vec<String>,
    },
    /// Remove a member; your sender key is replaced and every member rotates theirs.
    Remove {
        /// Group name.
        group: String,
        /// Account name to remove.
        member: String,
    },
    /// Send a message to the group.
    Send {
        /// Group name.
        group: String,
        /// The message.
        #[arg(required = true, num_args = 1..)]
        message: Vec<String>,
    },
    /// List your groups and their members.
    List,
}

#[derive(Debug, Subcommand)]
enum DevicesCommand {
    /// List this account's devices at the relay.
    List,
    /// On an existing device: link the new device that printed CODE.
    Link {
        /// The code `devices join` printed.
        code: String,
    },
    /// On a new device (after `init`): print a link code and wait until it is linked.
    Join {
        /// The relay's base URL.
        #[arg(long)]
        relay: String,
        /// The account to join.
        #[arg(long)]
        name: String,
        /// Seconds to wait for the link.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Remove one of this account's other devices.
    Remove {
        /// Device id.
        device: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}

fn joined(words: &[String]) -> String {
    words.join(" ")
}

async fn run(cli: Cli) -> Result<()> {
    let home = Home::resolve(cli.home)?;
    match cli.command {
        Command::Init => {
            if home.exists() {
                return Err(AppError::AlreadyInitialised {
                    path: home.db_path(),
                });
            }
            let pass = profile::passphrase(&home.db_path(), true)?;
            let store = profile::init(&home, &pass)?;
            let fp = store.local_identity()?.public().fingerprint();
            println!(
                "created identity {}… in {} (SQLCipher, Argon2id passphrase)",
                &envelope::hex(&fp)[..16],
                home.db_path().display()
            );
            println!("next: secure_messenger register --relay URL --name NAME");
        }
        Command::Register {
            relay,
            name,
            invite_token,
        } => {
            let store = profile::open_prompted(&home)?;
            let m = messenger::register(store, &relay, &name, invite_token.as_deref()).await?;
            println!(
                "registered {} (device {}) at {}; identity and prekeys uploaded",
                m.account.name, m.account.device, m.account.relay
            );
        }
        Command::Whoami => {
            let mut m = profile::messenger(&home)?;
            if let Some(s) = m.maintain().await? {
                eprintln!("key maintenance: {s}");
            }
            let counts = m.relay().key_counts().await?;
            let fp = m.store.local_identity()?.public().fingerprint();
            println!("account:  {} (device {})", m.account.name, m.account.device);
            println!("relay:    {}", m.account.relay);
            println!("store:    {}", home.db_path().display());
            println!("identity: {}…", &envelope::hex(&fp)[..16]);
            println!(
                "prekeys on the relay: {} one-time X25519, {} one-time ML-KEM-1024",
                counts.one_time, counts.kem_one_time
            );
        }
        Command::Send { name, message } => {
            let mut m = profile::messenger(&home)?;
            if let Some(s) = m.maintain().await? {
                eprintln!("key maintenance: {s}");
            }
            let text = joined(&message);
            let report = m.send_text(&name, &text).await?;
            let to_them = report.stored.iter().filter(|s| s.user == name).count();
            println!("sent to {name} ({to_them} device(s))");
        }
        Command::Listen {
            until_empty,
            maintenance_every,
        } => {
            let mut m = profile::messenger(&home)?;
            listen::run(
                &mut m,
                &ListenOptions {
                    until_empty,
                    chat_with: None,
                    maintenance_every: Duration::from_secs(maintenance_every.max(10)),
                    print: true,
                },
            )
            .await?;
        }
        Command::Chat { name } => {
            let mut m = profile::messenger(&home)?;
            m.user_devices(&name).await?;
            listen::run(
                &mut m,
                &ListenOptions {
                    until_empty: false,
                    chat_with: Some(name),
                    maintenance_every: Duration::from_secs(3600),
                    print: true,
                },
            )
            .await?;
        }
        Command::History { name, limit } => {
            let store = profile::open_prompted(&home)?;
            for e in appdb::history(&store, name.as_deref(), limit)? {
                let when = now().saturating_sub(e.received_at);
                match (&e.group, &e.recipient) {
                    (Some(g), _) => println!("[{g}] {}: {}  ({when} s ago)", e.sender, e.body),
                    (None, Some(to)) => println!("you → {to}: {}  ({when} s ago)", e.body),
                    (None, None) => println!("{}: {}  ({when} s ago)", e.sender, e.body),
                }
            }
        }
        Command::Group(g) => group(&home, g).await?,
        Command::Devices { command } => devices(&home, command).await?,
        Command::SafetyNumber { name } => {
            let m = profile::messenger(&home)?;
            let numbers = m.safety_numbers(&name).await?;
            if numbers.is_empty() {
                println!("{name} has not published an identity yet");
            }
            println!(
                "safety numbers with {name} (compare them with {name} in person or over a channel you trust):"
            );
            for d in numbers {
                let status = match d.trust {
                    Trust::Verified => "verified",
                    Trust::Unverified => "not verified",
                    Trust::Changed => "CHANGED — compare again before you verify",
                };
                println!(
                    "  device {}: {}  [{status}]",
                    d.device,
                    d.number.display_groups()
                );
            }
        }
        Command::Verify { name } => {
            let mut m = profile::messenger(&home)?;
            let devices = m.verify(&name).await?;
            println!(
                "{name} marked verified (device {})",
                devices
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Command::Inspect { name } => {
            let store = profile::open_prompted(&home)?;
            print!("{}", inspect::report(&store, &name)?);
        }
        Command::Selftest => {
            let failed = selftest::run();
            if failed > 0 {
                return Err(AppError::SelftestFailed(failed));
            }
        }
        Command::Demo { keep } => demo::run(keep).await?,
    }
    Ok(())
}

async fn group(home: &Home, command: GroupCommand) -> Result<()> {
    if let GroupCommand::List = command {
        let store = profile::open_prompted(home)?;
        let groups = appdb::groups(&store)?;
        if groups.is_empty() {
            println!("no groups");
        }
        for g in groups {
            println!(
                "{}{}: {}",
                g.name,
                if g.active { "" } else { " (you were removed)" },
                g.members.join(", ")
            );
        }
        return Ok(());
    }
    let mut m = profile::messenger(home)?;
    if let Some(s) = m.maintain().await? {
        eprintln!("key maintenance: {s}");
    }
    match command {
        GroupCommand::Create { name, members } => {
            m.create_group(&name, &members).await?;
            println!("created group {name} with {}", members.join(", "));
        }
        GroupCommand::Add { group, members } => {
            m.add_members(&group, &members).await?;
            println!("added {} to {group}", members.join(", "));
        }
        GroupCommand::Remove { group, member } => {
            m.remove_member(&group, &member).await?;
            println!("removed {member} from {group}; your sender key was replaced");
        }
        GroupCommand::Send { group, message } => {
            let report = m.send_group_text(&group, &joined(&message)).await?;
            let devices = report
                .stored
                .iter()
                .filter(|s| s.kind == "sender-key message")
                .count();
            println!("sent to {group} ({devices} device(s))");
            if !report.skipped.is_empty() {
                return Err(AppError::IdentityChanged {
                    name: report.skipped.join(", "),
                    devices: "see above".into(),
                });
            }
        }
        GroupCommand::List => {}
    }
    Ok(())
}

async fn devices(home: &Home, command: Option<DevicesCommand>) -> Result<()> {
    match command.unwrap_or(DevicesCommand::List) {
        DevicesCommand::List => {
            let m = profile::messenger(home)?;
            let own = m.account.name.clone();
            let list = m.user_devices(&own).await?;
            for d in list.devices {
                println!(
                    "device {}{}: registration id {}, identity {}",
                    d.device,
                    if d.device == m.account.device {
                        " (this device)"
                    } else {
                        ""
                    },
                    d.registration_id,
                    d.identity.map_or("not uploaded".into(), |i| format!(
                        "{}…",
                        &envelope::hex(&i.fingerprint())[..16]
                    ))
                );
            }
        }
        DevicesCommand::Link { code } => {
            let m = profile::messenger(home)?;
            let device = m.link_device(&code).await?;
            println!("linked device {device} to {}", m.account.name);
        }
        DevicesCommand::Join {
            relay,
            name,
            timeout,
        } => join(home, &relay, &name, Duration::from_secs(timeout)).await?,
        DevicesCommand::Remove { device } => {
            let m = profile::messenger(home)?;
            m.remove_device(device).await?;
            println!("removed device {device} from {}", m.account.name);
        }
    }
    Ok(())
}

/// Devices ids a joining device probes for its own.
const MAX_DEVICE_ID: u32 = 16;

async fn join(home: &Home, relay: &str, name: &str, timeout: Duration) -> Result<()> {
    let mut store = profile::open_prompted(home)?;
    if let Some(a) = appdb::account(&store)? {
        return Err(AppError::AlreadyRegistered {
            name: a.name,
            device: a.device,
            relay: a.relay,
        });
    }
    let relay = relay.trim_end_matches('/');
    let credential = match appdb::pending_join(&store)? {
        Some((r, n, c)) if r == relay && n == name => c,
        _ => {
            let c = messenger::new_credential()?;
            appdb::save_pending_join(&mut store, relay, name, &c)?;
            c
        }
    };
    let registration_id = store.local_registration_id()?;
    println!(
        "link code: {}",
        messenger::link_code(registration_id, &credential)
    );
    println!(
        "on a device already registered as {name}, run: secure_messenger devices link <code>\n(the code is a secret: it lets the device act as this one until linked)"
    );
    let client = relay_server::RelayClient::new(relay);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        for device in 2..=MAX_DEVICE_ID {
            let candidate = client.authenticated(name, device, &credential);
            if candidate.key_counts().await.is_ok() {
                let account = appdb::Account {
                    relay: relay.to_owned(),
                    name: name.to_owned(),
                    device,
                    credential: credential.clone(),
                    keys_uploaded: false,
                };
                appdb::save_account(&mut store, &account, now())?;
                let mut m = messenger::Messenger::new(store, account)?;
                m.maintain().await?;
                println!("joined {name} as device {device}; identity and prekeys uploaded");
                return Ok(());
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(AppError::Link(format!(
                "not linked within {} s; run `devices join` again to keep waiting (same code)",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
