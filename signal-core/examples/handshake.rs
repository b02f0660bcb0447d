//! A full PQXDH handshake and a short conversation between two in-memory parties,
//! printing what each side sends and what crosses the wire.
//!
//! Run: `cargo run -p signal-core --example handshake`

use signal_core::prekey::{KemPreKeyRecord, OneTimePreKeyRecord, PreKeyBundle, SignedPreKeyRecord};
use signal_core::store::{
    InMemoryStore, KemPreKeyStore, PreKeyStore, SessionStore, SignedPreKeyStore,
};
use signal_core::wire::MessageKind;
use signal_core::{Address, IdentityKeyPair, SafetyNumber, session};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let alice_addr = Address::new("alice", 1)?;
    let bob_addr = Address::new("bob", 1)?;

    // Bob creates his identity and publishes prekeys.
    let bob_identity = IdentityKeyPair::generate()?;
    let mut bob = InMemoryStore::new(bob_identity.clone(), 4242);
    let spk = SignedPreKeyRecord::generate(&bob_identity, 4242, 1, now)?;
    let opks = OneTimePreKeyRecord::generate_batch(&bob_identity, 1, 5, now)?;
    let kems = KemPreKeyRecord::generate_batch(&bob_identity, 1, 5, now)?;
    let last_resort = KemPreKeyRecord::generate(&bob_identity, 1000, now, true)?;
    bob.store_signed_prekey(&spk)?;
    for k in &opks {
        bob.store_prekey(k)?;
    }
    for k in kems.iter().chain([&last_resort]) {
        bob.store_kem_prekey(k)?;
    }
    println!(
        "Bob      identity fingerprint {}",
        &hex(&bob_identity.public().fingerprint())[..16]
    );
    println!(
        "Bob      published signed prekey 1, 5 one-time X25519 prekeys, 5 one-time ML-KEM-1024 prekeys, 1 last-resort ML-KEM-1024 prekey"
    );

    // The relay hands Alice a bundle: one one-time prekey of each kind.
    let bundle = PreKeyBundle {
        registration_id: 4242,
        identity: *bob_identity.public(),
        signed_prekey: spk.public().clone(),
        one_time_prekey: Some(opks[0].public().clone()),
        kem_prekey: kems[0].public().clone(),
    };
    let bundle_bytes = bundle.encode();
    println!(
        "Relay    -> Alice: prekey bundle, {} bytes",
        bundle_bytes.len()
    );

    let alice_identity = IdentityKeyPair::generate()?;
    let mut alice = InMemoryStore::new(alice_identity.clone(), 1717);
    println!(
        "Alice    identity fingerprint {}",
        &hex(&alice_identity.public().fingerprint())[..16]
    );
    let verified = PreKeyBundle::decode(&bundle_bytes)?.verify()?;
    println!("Alice    verified the signed prekey, one-time prekey and ML-KEM prekey signatures");
    session::initiate(&mut alice, &bob_addr, &verified)?;
    println!("Alice    ran PQXDH (4 X25519 + ML-KEM-1024 encapsulation): session established");

    let script: [(bool, &str); 6] = [
        (
            true,
            "Hi Bob! This is our first message, inside a pre-key message.",
        ),
        (true, "A second one before you answer."),
        (
            false,
            "Hi Alice, got both. My reply ratchets the session forward.",
        ),
        (true, "Great, now we are on the Double Ratchet proper."),
        (false, "Each reply takes a new DH ratchet step."),
        (false, "And several in a row just advance the chain."),
    ];
    for (from_alice, text) in script {
        let (sender, receiver, to, from, who, whom) = if from_alice {
            (&mut alice, &mut bob, &bob_addr, &alice_addr, "Alice", "Bob")
        } else {
            (&mut bob, &mut alice, &alice_addr, &bob_addr, "Bob", "Alice")
        };
        let wire = session::encrypt(sender, to, text.as_bytes())?;
        let kind = match MessageKind::of(&wire)? {
            MessageKind::PreKey => "pre-key message",
            _ => "message",
        };
        println!(
            "{who:<8} -> {whom}: {kind}, {} bytes on the wire (plaintext {} bytes)",
            wire.len(),
            text.len()
        );
        let plaintext = session::decrypt_and_commit(receiver, from, &wire)?;
        println!("{whom:<8} read: {}", String::from_utf8_lossy(&plaintext));
    }

    println!(
        "Bob      one-time prekeys left: {} X25519; ML-KEM one-time prekey 1 consumed: {}",
        bob.prekey_count()?,
        bob.load_kem_prekey(1)?.is_none()
    );
    if let Some(state) = bob
        .load_session(&alice_addr)?
        .as_ref()
        .and_then(|r| r.current().cloned())
    {
        println!("Bob      session with Alice: {:?}", state.info());
    }
    let at_alice = SafetyNumber::new(
        "alice",
        alice_identity.public(),
        "bob",
        bob_identity.public(),
    );
    let at_bob = SafetyNumber::new(
        "bob",
        bob_identity.public(),
        "alice",
        alice_identity.public(),
    );
    println!("Safety number (both sides): {}", at_alice.display_groups());
    println!(
        "Numbers match: {}",
        at_alice.matches_numeric(at_bob.numeric())
    );
    Ok(())
}
