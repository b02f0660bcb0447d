//! `selftest`: known-answer tests of every primitive the protocol is built on (the
//! published vectors of each standard), then full protocol round trips — PQXDH and the
//! Double Ratchet, sender-key groups, the SQLCipher store — each reported pass/fail.

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::aead::{Nonce, Tag};
use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use libcrux_ml_kem::mlkem1024;
use session_store::{PassphraseKey, SqlStore};
use sha2::{Digest, Sha256, Sha512};
use signal_core::group::{self, GroupId, SenderKeyDistributionMessage};
use signal_core::prekey::{KemPreKeyRecord, OneTimePreKeyRecord, PreKeyBundle, SignedPreKeyRecord};
use signal_core::store::{IdentityStore, InMemoryStore, ProtocolStore};
use signal_core::{Address, IdentityKeyPair, SafetyNumber, StoreError, session};

use crate::envelope::hex;

type Check = Result<(), String>;

/// A named check.
type NamedCheck = (&'static str, fn() -> Check);

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

fn arr<const N: usize>(s: &str) -> Result<[u8; N], String> {
    unhex(s)
        .try_into()
        .map_err(|_| format!("bad test vector length (want {N} bytes)"))
}

fn expect(what: &str, got: &[u8], want_hex: &str) -> Check {
    if hex(got) == want_hex {
        Ok(())
    } else {
        Err(format!("{what}: got {}, want {want_hex}", hex(got)))
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn sha2_vectors() -> Check {
    // FIPS 180-2, appendix B.1 / C.1: "abc".
    expect(
        "SHA-256(abc)",
        &Sha256::digest(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    )?;
    expect(
        "SHA-512(abc)",
        &Sha512::digest(b"abc"),
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
    )
}

fn hmac_vector() -> Check {
    // RFC 4231, test case 2.
    let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").map_err(err)?;
    mac.update(b"what do ya want for nothing?");
    expect(
        "HMAC-SHA256",
        &mac.finalize().into_bytes(),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    )
}

fn hkdf_vector() -> Check {
    // RFC 5869, test case 1.
    let ikm = [0x0b; 22];
    let salt = unhex("000102030405060708090a0b0c");
    let info = unhex("f0f1f2f3f4f5f6f7f8f9");
    let mut okm = [0u8; 42];
    Hkdf::<Sha256>::new(Some(&salt), &ikm)
        .expand(&info, &mut okm)
        .map_err(err)?;
    expect(
        "HKDF-SHA256",
        &okm,
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
    )
}

fn aes_gcm_vectors() -> Check {
    // The GCM specification's test cases 13 and 14 (AES-256, zero key and IV).
    let cipher = Aes256Gcm::new(&[0u8; 32].into());
    let nonce = Nonce::<Aes256Gcm>::from([0u8; 12]);
    let mut empty: [u8; 0] = [];
    let tag = cipher
        .encrypt_inout_detached(&nonce, b"", InOutBuf::from(&mut empty[..]))
        .map_err(err)?;
    expect(
        "AES-256-GCM tag (case 13)",
        &tag,
        "530f8afbc74536b9a963b4f1c4cb738b",
    )?;
    let mut block = [0u8; 16];
    let tag = cipher
        .encrypt_inout_detached(&nonce, b"", InOutBuf::from(&mut block[..]))
        .map_err(err)?;
    expect(
        "AES-256-GCM ciphertext (case 14)",
        &block,
        "cea7403d4d606b6e074ec5d3baf39d18",
    )?;
    expect(
        "AES-256-GCM tag (case 14)",
        &tag,
        "d0d1c8a799996bf0265b98b5d48ab919",
    )?;
    let mut tampered = block;
    tampered[0] ^= 1;
    let tag = Tag::<Aes256Gcm>::from(<[u8; 16]>::from(tag));
    if cipher
        .decrypt_inout_detached(&nonce, b"", InOutBuf::from(&mut tampered[..]), &tag)
        .is_ok()
    {
        return Err("AES-256-GCM accepted a tampered ciphertext".into());
    }
    Ok(())
}

fn x25519_vector() -> Check {
    // RFC 7748, section 6.1.
    let alice = x25519_dalek::StaticSecret::from(arr::<32>(
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
    )?);
    let bob = x25519_dalek::StaticSecret::from(arr::<32>(
        "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
    )?);
    let alice_pub = x25519_dalek::PublicKey::from(&alice);
    let bob_pub = x25519_dalek::PublicKey::from(&bob);
    expect(
        "X25519 public key",
        alice_pub.as_bytes(),
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
    )?;
    let shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
    expect(
        "X25519 shared (alice)",
        alice.diffie_hellman(&bob_pub).as_bytes(),
        shared,
    )?;
    expect(
        "X25519 shared (bob)",
        bob.diffie_hellman(&alice_pub).as_bytes(),
        shared,
    )
}

fn ed25519_vector() -> Check {
    // RFC 8032, section 7.1, TEST 1 (empty message).
    let key = SigningKey::from_bytes(&arr::<32>(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
    )?);
    expect(
        "Ed25519 public key",
        key.verifying_key().as_bytes(),
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    )?;
    let sig = key.sign(b"");
    expect(
        "Ed25519 signature",
        &sig.to_bytes(),
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    )?;
    let public = VerifyingKey::from_bytes(key.verifying_key().as_bytes()).map_err(err)?;
    public.verify_strict(b"", &sig).map_err(err)?;
    let mut bad = sig.to_bytes();
    bad[0] ^= 1;
    if public
        .verify_strict(b"", &Signature::from_bytes(&bad))
        .is_ok()
    {
        return Err("Ed25519 accepted a tampered signature".into());
    }
    Ok(())
}

fn ml_kem_vector() -> Check {
    // The NIST known-answer test of ML-KEM-1024 as FIPS 203 (final) defines it, count 0:
    // d ‖ z and m are the first outputs of the KAT's AES-CTR DRBG seeded with
    // 061550234d158c5e…; the vector gives SHA3-256 of the encapsulation key, the
    // decapsulation key, the ciphertext and the shared secret.
    let pair = mlkem1024::generate_key_pair(arr::<64>(
        "7c9935a0b07694aa0c6d10e4db6b1add2fd81a25ccb148032dcd739936737f2d8626ed79d451140800e03b59b956f8210e556067407d13dc90fa9e8b872bfb8f",
    )?);
    expect(
        "ML-KEM-1024 H(ek)",
        &libcrux_sha3::sha256(pair.pk()),
        "ebbe41cd4dea489dedd00e76ae0bcf54aa8550202920eb64d5892ad02b13f2e5",
    )?;
    expect(
        "ML-KEM-1024 H(dk)",
        &libcrux_sha3::sha256(pair.sk()),
        "ecfa369ec7e834204291fccb4d59c3fd1557b0ec3ab2ed7d50c98c01f292612e",
    )?;
    let (ct, ss) = mlkem1024::encapsulate(
        pair.public_key(),
        arr::<32>("147c03f7a5bebba406c8fae1874d7f13c80efe79a3a9a874cc09fe76f6997615")?,
    );
    expect(
        "ML-KEM-1024 H(ct)",
        &libcrux_sha3::sha256(ct.as_ref()),
        "507dcdae0432f558189a09c5e79fd69896e2f830e37ae4d598b00566e55f20f5",
    )?;
    let want = "2184138ce3b4d73ccc2f1c8b6c14b2c52df6ffc8d34dce162af386c6fad2d941";
    expect(
        "ML-KEM-1024 H(K) (encaps)",
        &libcrux_sha3::sha256(&ss),
        want,
    )?;
    expect(
        "ML-KEM-1024 H(K) (decaps)",
        &libcrux_sha3::sha256(&mlkem1024::decapsulate(pair.private_key(), &ct)),
        want,
    )
}

fn os_random() -> Check {
    let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
    getrandom::fill(&mut a).map_err(err)?;
    getrandom::fill(&mut b).map_err(err)?;
    if a == b || a == [0; 32] {
        return Err("the OS random source returned repeated or zero output".into());
    }
    Ok(())
}

const NOW: u64 = 1_700_000_000;

/// Bob's keys in `store` and the bundle he would publish.
fn publish<S: ProtocolStore>(
    store: &mut S,
    id: &IdentityKeyPair,
    reg: u32,
) -> Result<PreKeyBundle, String> {
    let spk = SignedPreKeyRecord::generate(id, reg, 1, NOW).map_err(err)?;
    let opk = OneTimePreKeyRecord::generate(id, 1, NOW).map_err(err)?;
    let kem = KemPreKeyRecord::generate(id, 1, NOW, false).map_err(err)?;
    store.store_signed_prekey(&spk).map_err(err)?;
    store.store_prekey(&opk).map_err(err)?;
    store.store_kem_prekey(&kem).map_err(err)?;
    Ok(PreKeyBundle {
        registration_id: reg,
        identity: *id.public(),
        signed_prekey: spk.public().clone(),
        one_time_prekey: Some(opk.public().clone()),
        kem_prekey: kem.public().clone(),
    })
}

fn conversation<A: ProtocolStore, B: ProtocolStore>(
    alice: &mut A,
    bob: &mut B,
    bundle: PreKeyBundle,
) -> Check {
    let (a, b) = (
        Address::new("alice", 1).map_err(err)?,
        Address::new("bob", 1).map_err(err)?,
    );
    session::initiate(alice, &b, &bundle.verify().map_err(err)?).map_err(err)?;
    let first = session::encrypt(alice, &b, b"hello bob").map_err(err)?;
    let pt = session::decrypt_and_commit(bob, &a, &first).map_err(err)?;
    if &pt[..] != b"hello bob" {
        return Err("PQXDH: wrong first plaintext".into());
    }
    if session::decrypt_and_commit(bob, &a, &first).is_ok() {
        return Err("a replayed pre-key message was accepted".into());
    }
    // Three replies, delivered out of order; one tampered copy is refused.
    let replies: Vec<Vec<u8>> = (0..3)
        .map(|i| session::encrypt(bob, &a, format!("reply {i}").as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(err)?;
    let mut tampered = replies[1].clone();
    if let Some(last) = tampered.last_mut() {
        *last ^= 1;
    }
    if session::decrypt_and_commit(alice, &b, &tampered).is_ok() {
        return Err("a tampered message was accepted".into());
    }
    for i in [2usize, 0, 1] {
        let pt = session::decrypt_and_commit(alice, &b, &replies[i]).map_err(err)?;
        if pt[..] != *format!("reply {i}").as_bytes() {
            return Err(format!("Double Ratchet: wrong plaintext for reply {i}"));
        }
    }
    if session::decrypt_and_commit(alice, &b, &replies[0]).is_ok() {
        return Err("a replayed message was accepted".into());
    }
    let back = session::encrypt(alice, &b, b"after the ratchet step").map_err(err)?;
    let pt = session::decrypt_and_commit(bob, &a, &back).map_err(err)?;
    if &pt[..] != b"after the ratchet step" {
        return Err("Double Ratchet: wrong plaintext after a ratchet step".into());
    }
    Ok(())
}

fn pqxdh_ratchet_round_trip() -> Check {
    let bob_id = IdentityKeyPair::generate().map_err(err)?;
    let mut bob = InMemoryStore::new(bob_id.clone(), 2);
    let bundle = publish(&mut bob, &bob_id, 2)?;
    let mut alice = InMemoryStore::new(IdentityKeyPair::generate().map_err(err)?, 1);
    conversation(&mut alice, &mut bob, bundle)?;
    let ours = alice.local_identity().map_err(err)?;
    let a = SafetyNumber::new("alice", ours.public(), "bob", bob_id.public());
    let b = SafetyNumber::new("bob", bob_id.public(), "alice", ours.public());
    if !a.matches_numeric(b.numeric()) {
        return Err("safety numbers differ between the two sides".into());
    }
    Ok(())
}

fn group_round_trip() -> Check {
    let group = GroupId::generate().map_err(err)?;
    let names = ["alice", "bob", "carol"];
    let addrs: Vec<Address> = names
        .iter()
        .map(|n| Address::new(*n, 1))
        .collect::<Result<_, _>>()
        .map_err(err)?;
    let mut stores: Vec<InMemoryStore> = (0..3)
        .map(|i| IdentityKeyPair::generate().map(|id| InMemoryStore::new(id, i + 1)))
        .collect::<Result<_, _>>()
        .map_err(err)?;
    // Everyone hands everyone else their chain (in the app this goes over 1:1 sessions).
    for i in 0..3 {
        let d = group::create_distribution(&mut stores[i], &group, &addrs[i]).map_err(err)?;
        let bytes = d.encode();
        for (j, store) in stores.iter_mut().enumerate() {
            if j != i {
                let d = SenderKeyDistributionMessage::decode(&bytes).map_err(err)?;
                group::process_distribution(store, &addrs[i], &d).map_err(err)?;
            }
        }
    }
    for i in 0..3 {
        let text = format!("hello from {}", names[i]);
        let ct = group::encrypt(&mut stores[i], &group, &addrs[i], text.as_bytes()).map_err(err)?;
        for (j, store) in stores.iter_mut().enumerate() {
            if j == i {
                continue;
            }
            let pt = group::decrypt_and_commit(store, &group, &addrs[i], &ct).map_err(err)?;
            if pt[..] != *text.as_bytes() {
                return Err(format!("group: {} read the wrong plaintext", names[j]));
            }
            if group::decrypt_and_commit(store, &group, &addrs[i], &ct).is_ok() {
                return Err("group: a replayed message was accepted".into());
            }
        }
    }
    Ok(())
}

fn sqlcipher_round_trip() -> Check {
    let dir = tempfile::tempdir().map_err(err)?;
    let path = dir.path().join("bob.db");
    let key = PassphraseKey::new("selftest passphrase");
    let bob_id = IdentityKeyPair::generate().map_err(err)?;
    let bundle = {
        let mut bob = SqlStore::create(&path, &key, &bob_id, 2).map_err(err)?;
        publish(&mut bob, &bob_id, 2)?
    };
    let mut bob = SqlStore::open(&path, &key).map_err(err)?;
    let mut alice = InMemoryStore::new(IdentityKeyPair::generate().map_err(err)?, 1);
    conversation(&mut alice, &mut bob, bundle)?;
    drop(bob);
    match SqlStore::open(&path, &PassphraseKey::new("wrong passphrase")) {
        Err(StoreError::WrongKey) => {}
        Err(e) => return Err(format!("wrong passphrase gave {e}, not WrongKey")),
        Ok(_) => return Err("a wrong passphrase opened the store".into()),
    }
    let bob = SqlStore::open(&path, &key).map_err(err)?;
    bob.integrity_check().map_err(err)?;
    drop(bob);
    let secret = bob_id.to_secret_bytes();
    for entry in std::fs::read_dir(dir.path()).map_err(err)? {
        let file = entry.map_err(err)?.path();
        let bytes = std::fs::read(&file).map_err(err)?;
        for needle in [&b"hello bob"[..], b"reply 1", &secret[..]] {
            if bytes.windows(needle.len()).any(|w| w == needle) {
                return Err(format!("{} contains plaintext", file.display()));
            }
        }
    }
    Ok(())
}

/// Runs every check, prints one line each, and returns the number that failed.
pub fn run() -> usize {
    let checks: [NamedCheck; 11] = [
        ("SHA-256 / SHA-512 (FIPS 180-2 \"abc\")", sha2_vectors),
        ("HMAC-SHA256 (RFC 4231 case 2)", hmac_vector),
        ("HKDF-SHA256 (RFC 5869 case 1)", hkdf_vector),
        (
            "AES-256-GCM (GCM spec cases 13, 14; tamper refused)",
            aes_gcm_vectors,
        ),
        ("X25519 (RFC 7748 §6.1)", x25519_vector),
        (
            "Ed25519 (RFC 8032 §7.1 test 1; tamper refused)",
            ed25519_vector,
        ),
        ("ML-KEM-1024 (NIST FIPS 203 KAT, count 0)", ml_kem_vector),
        ("OS random source", os_random),
        (
            "PQXDH + Double Ratchet round trip (out of order, tamper, replay, safety numbers)",
            pqxdh_ratchet_round_trip,
        ),
        (
            "sender-key group of three (replay refused)",
            group_round_trip,
        ),
        (
            "SQLCipher store: conversation, wrong passphrase, no plaintext on disk",
            sqlcipher_round_trip,
        ),
    ];
    let mut failed = 0;
    for (name, check) in checks {
        match check() {
            Ok(()) => println!("pass  {name}"),
            Err(e) => {
                failed += 1;
                println!("FAIL  {name}: {e}");
            }
        }
    }
    println!(
        "{} of {} checks passed",
        checks.len() - failed,
        checks.len()
    );
    failed
}
