//! `demo`: the whole system in one command, no setup. An in-process relay on a
//! temporary SQLite file, three users with their own SQLCipher stores, a 1:1
//! conversation, a group, a member removal — printed as a transcript of what the relay
//! stored next to what each user read, and checked at the end: no plaintext in the
//! relay's database or in any store.

use std::path::Path;
use std::time::Duration;

use relay_server::config::{Config, StorageConfig};
use signal_core::Address;
use signal_core::group;
use signal_core::store::{IdentityStore, InMemoryStore, SenderKeyStore};

use crate::envelope::Transport;
use crate::error::{AppError, Result};
use crate::listen::{self, ListenOptions};
use crate::messenger::{self, Event, Messenger, SendReport};
use crate::profile::{self, Home};

/// The passphrase of the demo's throw-away stores.
const DEMO_PASSPHRASE: &str = "demo passphrase (throw-away stores)";

fn relay_saw(report: &SendReport) {
    for s in &report.stored {
        println!(
            "    relay stored for {}.{}: {} bytes, {}",
            s.user,
            s.device,
            s.body.len(),
            s.kind
        );
    }
}

async fn reads(m: &mut Messenger) -> Result<Vec<Event>> {
    let events = listen::run(
        m,
        &ListenOptions {
            until_empty: true,
            chat_with: None,
            maintenance_every: Duration::from_secs(3600),
            print: false,
        },
    )
    .await?;
    let name = m.account.name.clone();
    let mut shown = 0;
    for e in &events {
        if !matches!(e, Event::Duplicate) {
            println!("    {name} reads  {e}");
            shown += 1;
        }
    }
    if shown == 0 {
        println!("    {name} reads  (nothing)");
    }
    Ok(events)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every file in `dir` (recursively) that contains one of `needles`.
fn scan(dir: &Path, needles: &[&str]) -> Result<Vec<String>> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            // SQLite removes its -wal and -shm files when the last connection closes.
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            for n in needles {
                if contains(&bytes, n.as_bytes()) {
                    hits.push(format!("{} contains {n:?}", path.display()));
                }
            }
        }
    }
    Ok(hits)
}

/// Runs the tour. `keep` leaves the temporary directory in place.
pub async fn run(keep: bool) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("secure-messenger-demo-")
        .tempdir()?;
    let root = tmp.path().to_owned();
    let relay_db = root.join("relay").join("relay.sqlite3");
    std::fs::create_dir_all(root.join("relay"))?;
    let relay = relay_server::start(Config {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        storage: StorageConfig::Sqlite {
            path: relay_db.clone(),
        },
        log_json: false,
        ..Config::default()
    })
    .await
    .map_err(|e| AppError::Usage(format!("cannot start the in-process relay: {e}")))?;
    let url = format!("http://{}", relay.addr());
    println!("== secure_messenger demo");
    println!(
        "relay: in-process at {url}, SQLite database {}",
        relay_db.display()
    );

    let mut users = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let home = Home {
            dir: root.join(name),
        };
        let store = profile::init(&home, DEMO_PASSPHRASE)?;
        let m = messenger::register(store, &url, name, None).await?;
        println!(
            "{name}: new identity, SQLCipher store {} (Argon2id passphrase), registered as device {}; uploaded signed, last-resort ML-KEM and 100 + 100 one-time prekeys",
            home.db_path().display(),
            m.account.device
        );
        users.push(m);
    }
    let [alice, bob, carol] = &mut users[..] else {
        return Err(AppError::Usage("demo setup failed".into()));
    };
    let mut plaintexts: Vec<String> = Vec::new();

    println!("\n-- 1:1 conversation (PQXDH with ML-KEM-1024, then the Double Ratchet)");
    let text = "Hi Bob! This is end-to-end encrypted.";
    println!("alice → bob: {text:?}");
    relay_saw(&alice.send_text("bob", text).await?);
    plaintexts.push(text.into());
    reads(bob).await?;
    let text = "Hi Alice, reading you loud and clear.";
    println!("bob → alice: {text:?}");
    relay_saw(&bob.send_text("alice", text).await?);
    plaintexts.push(text.into());
    reads(alice).await?;

    println!("\n-- group \"weekend\" (sender keys: one ciphertext per message, stored per device)");
    println!("alice creates weekend with bob and carol");
    relay_saw(
        &alice
            .create_group("weekend", &["bob".into(), "carol".into()])
            .await?,
    );
    reads(bob).await?;
    reads(carol).await?;
    let text = "Hiking on Saturday?";
    println!("bob → [weekend]: {text:?}");
    relay_saw(&bob.send_group_text("weekend", text).await?);
    plaintexts.push(text.into());
    reads(alice).await?;
    reads(carol).await?;
    let text = "I'm in, 9am at the station.";
    println!("carol → [weekend]: {text:?}");
    relay_saw(&carol.send_group_text("weekend", text).await?);
    plaintexts.push(text.into());
    reads(alice).await?;
    reads(bob).await?;

    // A carol who ignores her removal and keeps every key she has: a copy of alice's
    // sender-key chain as it was before the removal.
    let alice_addr = Address::new("alice", 1).map_err(signal_core::SessionError::from)?;
    let Some(group_id) = crate::appdb::group_by_name(&carol.store, "weekend")?.map(|g| g.id) else {
        return Err(AppError::UnknownGroup("weekend".into()));
    };
    let mut kept = InMemoryStore::new(carol.store.local_identity()?, 0);
    if let Some(record) = carol.store.load_sender_key(&group_id, &alice_addr)? {
        kept.store_sender_key(&group_id, &alice_addr, record.into_owned())?;
    }

    println!(
        "\n-- alice removes carol (alice's chain is replaced; bob rotates before he next sends)"
    );
    relay_saw(&alice.remove_member("weekend", "carol").await?);
    reads(bob).await?;
    reads(carol).await?;
    let text = "Change of plan: the surprise party for carol is on.";
    println!("alice → [weekend]: {text:?}");
    let report = alice.send_group_text("weekend", text).await?;
    relay_saw(&report);
    plaintexts.push(text.into());
    reads(bob).await?;
    // The relay never queues this for carol; even with the ciphertext in hand (say she
    // copied bob's queue) and alice's old chain key, she cannot read it.
    for s in report.stored.iter().filter(|s| s.user == "bob") {
        if let Ok(Transport::Group { message, .. }) = Transport::decode(&s.body) {
            match group::decrypt(&kept, &group_id, &alice_addr, message) {
                Ok(_) => {
                    return Err(AppError::Usage(
                        "carol decrypted a message sent after her removal".into(),
                    ));
                }
                Err(e) => println!(
                    "    carol (removed, kept alice's old chain key) tries the {}-byte ciphertext: refused ({e})",
                    s.body.len()
                ),
            }
        }
    }
    let text = "Carol won't see this either.";
    println!("bob → [weekend]: {text:?}");
    relay_saw(&bob.send_group_text("weekend", text).await?);
    plaintexts.push(text.into());
    reads(alice).await?;
    reads(carol).await?;

    println!("\n-- safety numbers (compare out of band; `verify` pins them)");
    let from_alice = alice.safety_numbers("bob").await?;
    let from_bob = bob.safety_numbers("alice").await?;
    if let (Some(a), Some(b)) = (from_alice.first(), from_bob.first()) {
        println!("    alice sees for bob:  {}", a.number.display_groups());
        println!("    bob sees for alice:  {}", b.number.display_groups());
        let same = a.number.matches_numeric(b.number.numeric());
        println!("    the numbers {}", if same { "match" } else { "DIFFER" });
        if !same {
            return Err(AppError::Usage("safety numbers differ".into()));
        }
    }
    let verified = alice.verify("bob").await?;
    println!("    alice marks bob verified ({} device)", verified.len());

    println!("\n-- what the relay holds");
    drop(users);
    relay.shutdown().await;
    let relay_hits = scan(
        &root.join("relay"),
        &plaintexts.iter().map(String::as_str).collect::<Vec<_>>(),
    )?;
    println!(
        "    relay database scanned for the {} plaintexts: {}",
        plaintexts.len(),
        if relay_hits.is_empty() {
            "none found".to_owned()
        } else {
            relay_hits.join("; ")
        }
    );
    let mut store_hits = Vec::new();
    for name in ["alice", "bob", "carol"] {
        store_hits.extend(scan(
            &root.join(name),
            &plaintexts.iter().map(String::as_str).collect::<Vec<_>>(),
        )?);
    }
    println!(
        "    SQLCipher stores (db, WAL, salt) scanned: {}",
        if store_hits.is_empty() {
            "none found (whole-database encryption)".to_owned()
        } else {
            store_hits.join("; ")
        }
    );
    if keep {
        let kept = tmp.keep();
        println!(
            "\nkept {} (passphrase: {DEMO_PASSPHRASE:?})",
            kept.display()
        );
    }
    if !relay_hits.is_empty() || !store_hits.is_empty() {
        return Err(AppError::Usage("plaintext found on disk".into()));
    }
    println!("\ndemo finished: every check passed");
    Ok(())
}
