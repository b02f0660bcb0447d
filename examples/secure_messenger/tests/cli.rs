//! The messenger as a person uses it: a real relay process and real `secure_messenger`
//! processes with their own SQLCipher stores; assertions on what each prints.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Relay, User, stderr, stdout};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn init_register_send_listen_and_reply() {
    let relay = Relay::start(&[]);
    let alice = User::registered("alice", &relay);
    let bob = User::registered("bob", &relay);

    // Bob listens; Alice's message shows up while he stays connected.
    let mut listening = bob.spawn(&["listen"]);
    listening.wait_for("waiting for messages", WAIT);
    let out = alice.run(&["send", "bob", "hello", "bob,", "over", "PQXDH"]);
    assert!(stdout(&out).contains("sent to bob (1 device(s))"));
    listening.wait_for("alice: hello bob, over PQXDH", WAIT);
    alice.run(&["send", "bob", "second message"]);
    listening.wait_for("alice: second message", WAIT);
    drop(listening);

    // Bob replies; Alice drains her queue.
    bob.run(&["send", "alice", "hi alice"]);
    let got = alice.receive();
    assert!(got.contains("bob: hi alice"), "{got}");
    // Nothing is delivered twice.
    assert!(!alice.receive().contains("bob: hi alice"));

    // Both keep the conversation in their encrypted store.
    let history = stdout(&bob.run(&["history", "alice"]));
    assert!(
        history.contains("alice: hello bob, over PQXDH"),
        "{history}"
    );
    assert!(history.contains("alice: second message"), "{history}");

    // Session metadata, never keys.
    let inspect = stdout(&alice.run(&["inspect", "bob"]));
    assert!(
        inspect.contains("bob: sessions with 1 device(s)"),
        "{inspect}"
    );
    assert!(inspect.contains("current: initiated session"), "{inspect}");
    assert!(inspect.contains("receiving chains: 1"), "{inspect}");
    assert!(inspect.contains("archived sessions: 0"), "{inspect}");

    // Prekeys were uploaded and one was consumed by Alice's first message.
    let who = stdout(&bob.run(&["whoami"]));
    assert!(who.contains("account:  bob (device 1)"), "{who}");
    assert!(
        who.contains("99 one-time X25519, 99 one-time ML-KEM-1024"),
        "{who}"
    );
}

#[test]
fn group_with_removal_rotates_keys() {
    let relay = Relay::start(&[]);
    let alice = User::registered("alice", &relay);
    let bob = User::registered("bob", &relay);
    let carol = User::registered("carol", &relay);

    let out = alice.run(&["group", "create", "weekend", "bob", "carol"]);
    assert!(stdout(&out).contains("created group weekend with bob, carol"));
    let b = bob.receive();
    assert!(
        b.contains("[weekend] alice added you to the group; members: alice, bob, carol"),
        "{b}"
    );
    assert!(carol.receive().contains("[weekend] alice added you"));

    let out = bob.run(&["group", "send", "weekend", "hiking", "on", "saturday?"]);
    assert!(
        stdout(&out).contains("sent to weekend (2 device(s))"),
        "{}",
        stdout(&out)
    );
    assert!(
        alice
            .receive()
            .contains("[weekend] bob: hiking on saturday?")
    );
    assert!(
        carol
            .receive()
            .contains("[weekend] bob: hiking on saturday?")
    );
    carol.run(&["group", "send", "weekend", "count me in"]);
    assert!(alice.receive().contains("[weekend] carol: count me in"));
    assert!(bob.receive().contains("[weekend] carol: count me in"));

    let out = alice.run(&["group", "remove", "weekend", "carol"]);
    assert!(stdout(&out).contains("removed carol from weekend"));
    let c = carol.receive();
    assert!(
        c.contains("[weekend] alice removed you from the group"),
        "{c}"
    );
    let b = bob.receive();
    assert!(
        b.contains("[weekend] alice removed carol (keys rotate)"),
        "{b}"
    );

    alice.run(&["group", "send", "weekend", "surprise party for carol"]);
    bob.run(&["group", "send", "weekend", "carol must not see this"]);
    let b = bob.receive();
    assert!(
        b.contains("[weekend] alice: surprise party for carol"),
        "{b}"
    );
    let a = alice.receive();
    assert!(a.contains("[weekend] bob: carol must not see this"), "{a}");
    let c = carol.receive();
    assert!(!c.contains("surprise") && !c.contains("must not"), "{c}");

    // Carol can no longer send to the group; her store says so.
    let out = carol.fails(&["group", "send", "weekend", "hello?"], 1);
    assert!(stderr(&out).contains("no longer a member of group weekend"));
    let list = stdout(&carol.run(&["group", "list"]));
    assert!(list.contains("weekend (you were removed)"), "{list}");
    let list = stdout(&alice.run(&["group", "list"]));
    assert!(list.contains("weekend: alice, bob"), "{list}");
}

#[test]
fn linked_device_receives_fan_out_and_copies() {
    let relay = Relay::start(&[]);
    let alice = User::registered("alice", &relay);
    let bob = User::registered("bob", &relay);
    let alice2 = User::init("alice");

    let mut join = alice2.spawn(&["devices", "join", "--relay", &relay.url, "--name", "alice"]);
    let line = join.wait_for("link code: ", WAIT);
    let code = line.trim_start_matches("link code: ").trim().to_owned();
    let out = alice.run(&["devices", "link", &code]);
    assert!(
        stdout(&out).contains("linked device 2 to alice"),
        "{}",
        stdout(&out)
    );
    join.wait_for("joined alice as device 2", WAIT);
    assert!(join.wait(WAIT).success());

    let devices = stdout(&alice.run(&["devices"]));
    assert!(devices.contains("device 1 (this device)"), "{devices}");
    assert!(devices.contains("device 2: registration id"), "{devices}");

    // Bob's message reaches both of Alice's devices.
    let out = bob.run(&["send", "alice", "to all your devices"]);
    assert!(
        stdout(&out).contains("sent to alice (2 device(s))"),
        "{}",
        stdout(&out)
    );
    assert!(alice.receive().contains("bob: to all your devices"));
    assert!(alice2.receive().contains("bob: to all your devices"));

    // What Alice sends from device 1 shows up on device 2 as her own.
    alice.run(&["send", "bob", "sent from my laptop"]);
    let copy = alice2.receive();
    assert!(
        copy.contains("you → bob: sent from my laptop  (sent from your device 1)"),
        "{copy}"
    );
    assert!(bob.receive().contains("alice: sent from my laptop"));

    // Removing device 2: Bob's next message goes to device 1 only.
    let out = alice.run(&["devices", "remove", "2"]);
    assert!(stdout(&out).contains("removed device 2 from alice"));
    let out = bob.run(&["send", "alice", "only the laptop now"]);
    assert!(
        stdout(&out).contains("sent to alice (1 device(s))"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn safety_numbers_match_and_verify_marks_them() {
    let relay = Relay::start(&[]);
    let alice = User::registered("alice", &relay);
    let bob = User::registered("bob", &relay);
    let number = |out: &str| {
        out.lines()
            .find(|l| l.contains("device 1:"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.split('[').next().unwrap_or_default().trim().to_owned())
            .unwrap()
    };
    let a = stdout(&alice.run(&["safety-number", "bob"]));
    let b = stdout(&bob.run(&["safety-number", "alice"]));
    assert_eq!(number(&a), number(&b), "{a}\n{b}");
    assert_eq!(number(&a).replace(' ', "").len(), 60);
    assert!(a.contains("[not verified]"), "{a}");
    let out = alice.run(&["verify", "bob"]);
    assert!(stdout(&out).contains("bob marked verified (device 1)"));
    let a = stdout(&alice.run(&["safety-number", "bob"]));
    assert!(a.contains("[verified]"), "{a}");
}

#[test]
fn errors_users_hit_are_clear_and_change_nothing() {
    let relay = Relay::start(&[]);
    let alice = User::registered("alice", &relay);

    // Wrong passphrase: exit 3, the store is byte-for-byte unchanged.
    let before = common::file_bytes(&alice.db());
    let out = alice
        .cmd(&["send", "bob", "x"])
        .env("SECURE_MESSENGER_PASSPHRASE", "not the passphrase")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("wrong passphrase for"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("nothing was changed"));
    assert_eq!(common::file_bytes(&alice.db()), before);

    // Unknown contact: exit 6.
    let out = alice.fails(&["send", "nobody", "hello"], 6);
    assert!(
        stderr(&out).contains("unknown contact nobody"),
        "{}",
        stderr(&out)
    );

    // Not initialised / not registered: exit 7.
    let stranger = tempfile::tempdir().unwrap();
    let out = alice
        .cmd(&["send", "bob", "x"])
        .env("SECURE_MESSENGER_HOME", stranger.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert!(stderr(&out).contains("run `secure_messenger init` first"));
    let unregistered = User::init("dave");
    let out = unregistered.fails(&["send", "alice", "x"], 7);
    assert!(stderr(&out).contains("not registered with a relay"));

    // Relay unreachable: retried with backoff, then exit 5 with the address.
    let dead = "http://127.0.0.1:9";
    let out = unregistered.fails(&["register", "--relay", dead, "--name", "dave"], 5);
    let err = stderr(&out);
    assert!(
        err.contains("relay unreachable at http://127.0.0.1:9"),
        "{err}"
    );
    assert!(err.contains("retrying in"), "{err}");
    // ... and the failed registration left the store usable.
    unregistered.run(&["register", "--relay", &relay.url, "--name", "dave"]);
}

#[test]
fn rate_limits_are_waited_out() {
    let relay = Relay::start(&[("RELAY_SEND_RATE", "0.5"), ("RELAY_SEND_BURST", "2")]);
    let alice = User::registered("alice", &relay);
    let _bob = User::registered("bob", &relay);
    let mut limited = false;
    for i in 0..3 {
        let out = alice.run(&["send", "bob", &format!("message {i}")]);
        limited |= stderr(&out).contains("rate-limited by the relay; waiting");
    }
    assert!(limited, "no send was rate-limited");
    let got = _bob.receive();
    for i in 0..3 {
        assert!(got.contains(&format!("alice: message {i}")), "{got}");
    }
}

#[test]
fn selftest_passes() {
    let out = std::process::Command::new(common::messenger_bin())
        .arg("selftest")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("11 of 11 checks passed"), "{text}");
    assert!(
        text.contains("pass  ML-KEM-1024 (NIST FIPS 203 KAT, count 0)"),
        "{text}"
    );
    assert!(!text.contains("FAIL"), "{text}");
}

#[test]
fn demo_prints_a_checked_transcript() {
    let out = std::process::Command::new(common::messenger_bin())
        .arg("demo")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    for expected in [
        "relay: in-process at http://127.0.0.1:",
        "alice → bob: \"Hi Bob! This is end-to-end encrypted.\"",
        "relay stored for bob.1:",
        "PQXDH pre-key message",
        "bob reads  alice: Hi Bob! This is end-to-end encrypted.",
        "alice reads  bob: Hi Alice, reading you loud and clear.",
        "carol reads  [weekend] alice added you to the group; members: alice, bob, carol",
        "sender-key message",
        "carol reads  [weekend] bob: Hiking on Saturday?",
        "carol reads  [weekend] alice removed you from the group",
        "bob reads  [weekend] alice removed carol (keys rotate)",
        "bob reads  [weekend] alice: Change of plan: the surprise party for carol is on.",
        "carol (removed, kept alice's old chain key) tries the",
        "refused",
        "alice reads  [weekend] bob: Carol won't see this either.",
        "the numbers match",
        "relay database scanned for the 6 plaintexts: none found",
        "SQLCipher stores (db, WAL, salt) scanned: none found",
        "demo finished: every check passed",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    // After her removal carol reads nothing more.
    let after = text.split("alice removes carol").nth(1).unwrap();
    assert!(
        !after.contains("carol reads  [weekend] alice: Change"),
        "{text}"
    );
    assert!(
        !after.contains("carol reads  [weekend] bob: Carol"),
        "{text}"
    );
}
