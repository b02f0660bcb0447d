//! Issue 14, item 3 for sender keys: a group member cannot wrap a receiver's copy of its
//! chain (one distribution at iteration 2^32 − 2 plus one validly signed message at
//! 2^32 − 1 used to step the chain to 0 and leave a record that fails its own decoder),
//! and a sending chain stops at its last iteration.
//!
//! The attacker builds its messages from `docs/protocol.md` §Groups with its own chain
//! key and signing seed, as a modified client would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aes_gcm::aead::Nonce;
use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
use ed25519_dalek::{Signer, SigningKey};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use signal_core::group::{self, GroupId, SenderKeyDistributionMessage, SenderKeyRecord};
use signal_core::limits::MAX_CHAIN_COUNTER;
use signal_core::store::{InMemoryStore, SenderKeyStore};
use signal_core::{Address, GroupError, IdentityKeyPair};

/// Offsets in an encoded sender-key record with one state (§Groups, sender-key record).
const RECORD_ITERATION: usize = 2 + 4 + 4;
const RECORD_CHAIN_KEY: usize = RECORD_ITERATION + 4;
const RECORD_SEED: usize = RECORD_CHAIN_KEY + 32 + 32 + 1;
/// Offset of the iteration in a distribution message.
const DISTRIBUTION_ITERATION: usize = 2 + 32 + 4;

fn hmac(key: &[u8; 32], byte: u8) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(&[byte]);
    mac.finalize().into_bytes().into()
}

/// A group message at `iteration` encrypted with the message key of `chain_key` and
/// signed with `seed`, built from the specification.
fn group_message(chain_id: u32, iteration: u32, chain_key: &[u8; 32], seed: &[u8; 32]) -> Vec<u8> {
    let mut okm = [0u8; 44];
    Hkdf::<Sha256>::from_prk(&hmac(chain_key, 0x01))
        .unwrap()
        .expand(b"signal-core v1 sender key message keys", &mut okm)
        .unwrap();
    let mut out = vec![1, 3];
    out.extend_from_slice(&chain_id.to_be_bytes());
    out.extend_from_slice(&iteration.to_be_bytes());
    let header = out.clone();
    let mut body = b"attack".to_vec();
    let key: [u8; 32] = okm[..32].try_into().unwrap();
    let nonce: [u8; 12] = okm[32..].try_into().unwrap();
    let tag = Aes256Gcm::new(&key.into())
        .encrypt_inout_detached(
            &Nonce::<Aes256Gcm>::from(nonce),
            &header,
            InOutBuf::from(&mut body[..]),
        )
        .unwrap();
    out.extend_from_slice(&body);
    out.extend_from_slice(&tag);
    let signature = SigningKey::from_bytes(seed).sign(&out);
    out.extend_from_slice(&signature.to_bytes());
    out
}

fn device(name: &str, id: u32) -> (Address, InMemoryStore) {
    (
        Address::new(name, id).unwrap(),
        InMemoryStore::new(IdentityKeyPair::generate().unwrap(), id),
    )
}

fn record_bytes(store: &InMemoryStore, group: &GroupId, sender: &Address) -> Vec<u8> {
    let record = store.load_sender_key(group, sender).unwrap().unwrap();
    let bytes = record.encode().to_vec();
    // Every stored record decodes.
    SenderKeyRecord::decode(&bytes).unwrap();
    bytes
}

fn with_iteration(encoded: &[u8], at: usize, iteration: u32) -> Vec<u8> {
    let mut bytes = encoded.to_vec();
    bytes[at..at + 4].copy_from_slice(&iteration.to_be_bytes());
    bytes
}

#[test]
fn a_member_cannot_wrap_its_chain_in_a_receivers_record() {
    let group = GroupId::generate().unwrap();
    let (_, mut alice_store) = device("alice", 1);
    let (mallory, mut mallory_store) = device("mallory", 2);
    let (carol, mut carol_store) = device("carol", 3);

    let skdm = group::create_distribution(&mut mallory_store, &group, &mallory).unwrap();
    let own = record_bytes(&mallory_store, &group, &mallory);
    let ck0: [u8; 32] = own[RECORD_CHAIN_KEY..RECORD_CHAIN_KEY + 32]
        .try_into()
        .unwrap();
    let seed: [u8; 32] = own[RECORD_SEED..RECORD_SEED + 32].try_into().unwrap();
    let ck1 = hmac(&ck0, 0x02);

    // A distribution at 2^32 − 2 is accepted: it allows exactly one message.
    let high = with_iteration(&skdm.encode(), DISTRIBUTION_ITERATION, MAX_CHAIN_COUNTER);
    let high = SenderKeyDistributionMessage::decode(&high).unwrap();
    group::process_distribution(&mut alice_store, &mallory, &high).unwrap();

    // A validly signed and encrypted message at 2^32 − 1 is refused, nothing changes.
    let wrap = group_message(skdm.chain_id(), u32::MAX, &ck1, &seed);
    let before = record_bytes(&alice_store, &group, &mallory);
    let refused = group::decrypt_and_commit(&mut alice_store, &group, &mallory, &wrap);
    assert!(
        matches!(refused, Err(GroupError::InvalidMessage)),
        "{refused:?}"
    );
    assert_eq!(record_bytes(&alice_store, &group, &mallory), before);

    // The message at 2^32 − 2 decrypts; after it the chain is exhausted, still decodes,
    // and the wrapping message is still refused.
    let last = group_message(skdm.chain_id(), MAX_CHAIN_COUNTER, &ck0, &seed);
    let plaintext = group::decrypt_and_commit(&mut alice_store, &group, &mallory, &last);
    assert_eq!(&plaintext.unwrap()[..], b"attack");
    assert!(group::decrypt_and_commit(&mut alice_store, &group, &mallory, &wrap).is_err());
    record_bytes(&alice_store, &group, &mallory);

    // A distribution of an exhausted chain (a new chain id at 2^32 − 1) is refused.
    let mut other = InMemoryStore::new(IdentityKeyPair::generate().unwrap(), 9);
    let fresh = group::create_distribution(&mut other, &group, &mallory).unwrap();
    let exhausted = with_iteration(&fresh.encode(), DISTRIBUTION_ITERATION, u32::MAX);
    let exhausted = SenderKeyDistributionMessage::decode(&exhausted).unwrap();
    let before = record_bytes(&alice_store, &group, &mallory);
    assert!(matches!(
        group::process_distribution(&mut alice_store, &mallory, &exhausted),
        Err(GroupError::ChainExhausted { chain_id }) if chain_id == fresh.chain_id()
    ));
    assert_eq!(record_bytes(&alice_store, &group, &mallory), before);

    // Legitimate members are unaffected.
    let carol_skdm = group::create_distribution(&mut carol_store, &group, &carol).unwrap();
    group::process_distribution(&mut alice_store, &carol, &carol_skdm).unwrap();
    let hello = group::encrypt(&mut carol_store, &group, &carol, b"hello").unwrap();
    let plaintext = group::decrypt_and_commit(&mut alice_store, &group, &carol, &hello);
    assert_eq!(&plaintext.unwrap()[..], b"hello");
}

#[test]
fn a_sending_chain_stops_at_its_last_iteration_and_rotates() {
    let group = GroupId::generate().unwrap();
    let (alice, mut alice_store) = device("alice", 1);
    let (_, mut bob_store) = device("bob", 2);
    let first = group::create_distribution(&mut alice_store, &group, &alice).unwrap();
    // Move Alice's own chain to its last iteration (no quick way to send 2^32 messages).
    let own = record_bytes(&alice_store, &group, &alice);
    let moved = with_iteration(&own, RECORD_ITERATION, MAX_CHAIN_COUNTER);
    alice_store
        .store_sender_key(&group, &alice, SenderKeyRecord::decode(&moved).unwrap())
        .unwrap();
    let high = group::create_distribution(&mut alice_store, &group, &alice).unwrap();
    assert_eq!(high.iteration(), MAX_CHAIN_COUNTER);
    group::process_distribution(&mut bob_store, &alice, &high).unwrap();

    let last = group::encrypt(&mut alice_store, &group, &alice, b"last").unwrap();
    assert_eq!(&last[6..10], &MAX_CHAIN_COUNTER.to_be_bytes());
    let before = record_bytes(&alice_store, &group, &alice);
    assert!(matches!(
        group::encrypt(&mut alice_store, &group, &alice, b"one more"),
        Err(GroupError::ChainExhausted { chain_id }) if chain_id == first.chain_id()
    ));
    assert_eq!(record_bytes(&alice_store, &group, &alice), before);
    let plaintext = group::decrypt_and_commit(&mut bob_store, &group, &alice, &last);
    assert_eq!(&plaintext.unwrap()[..], b"last");

    // The exhausted chain is never distributed again: a fresh one replaces it.
    let next = group::create_distribution(&mut alice_store, &group, &alice).unwrap();
    assert_ne!(next.chain_id(), first.chain_id());
    assert_eq!(next.iteration(), 0);
    group::process_distribution(&mut bob_store, &alice, &next).unwrap();
    let m = group::encrypt(&mut alice_store, &group, &alice, b"rotated").unwrap();
    let plaintext = group::decrypt_and_commit(&mut bob_store, &group, &alice, &m);
    assert_eq!(&plaintext.unwrap()[..], b"rotated");
}
