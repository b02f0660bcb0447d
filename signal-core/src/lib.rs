//! `signal-core`: the Signal protocol in pure Rust — identities, signed, one-time and
//! ML-KEM-1024 prekeys, PQXDH key agreement, the Double Ratchet, and safety numbers.
//!
//! No I/O happens here except through the store traits in [`store`]. The wire format and
//! every constant are specified in `docs/protocol.md`.
//!
//! ```
//! use signal_core::prekey::{KemPreKeyRecord, OneTimePreKeyRecord, PreKeyBundle, SignedPreKeyRecord};
//! use signal_core::store::{InMemoryStore, KemPreKeyStore, PreKeyStore, SignedPreKeyStore};
//! use signal_core::{session, Address, IdentityKeyPair};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Bob publishes a bundle.
//! let bob_identity = IdentityKeyPair::generate()?;
//! let mut bob = InMemoryStore::new(bob_identity.clone(), 2);
//! let spk = SignedPreKeyRecord::generate(&bob_identity, 2, 1, 1_700_000_000)?;
//! let opk = OneTimePreKeyRecord::generate(&bob_identity, 1, 1_700_000_000)?;
//! let kem = KemPreKeyRecord::generate(&bob_identity, 1, 1_700_000_000, false)?;
//! bob.store_signed_prekey(&spk)?;
//! bob.store_prekey(&opk)?;
//! bob.store_kem_prekey(&kem)?;
//! let bundle = PreKeyBundle {
//!     registration_id: 2,
//!     identity: *bob_identity.public(),
//!     signed_prekey: spk.public().clone(),
//!     one_time_prekey: Some(opk.public().clone()),
//!     kem_prekey: kem.public().clone(),
//! };
//!
//! // Alice verifies it, runs PQXDH and sends.
//! let mut alice = InMemoryStore::new(IdentityKeyPair::generate()?, 1);
//! let (alice_addr, bob_addr) = (Address::new("alice", 1)?, Address::new("bob", 1)?);
//! session::initiate(&mut alice, &bob_addr, &bundle.verify()?)?;
//! let wire = session::encrypt(&mut alice, &bob_addr, b"hello Bob")?;
//!
//! // Bob decrypts and commits in one step; his one-time prekey is now consumed.
//! let plaintext = session::decrypt_and_commit(&mut bob, &alice_addr, &wire)?;
//! assert_eq!(&plaintext[..], b"hello Bob");
//! let reply = session::encrypt(&mut bob, &alice_addr, b"hi Alice")?;
//! assert_eq!(&session::decrypt_and_commit(&mut alice, &bob_addr, &reply)?[..], b"hi Alice");
//! # Ok(()) }
//! ```

pub mod address;
pub mod error;
pub mod fanout;
pub mod group;
pub mod identity;
pub mod keys;
pub mod limits;
pub mod maintenance;
pub mod pqxdh;
pub mod prekey;
mod random;
pub(crate) mod ratchet;
pub mod safety_number;
pub mod session;
pub mod store;
pub mod wire;

pub use address::Address;
pub use error::{
    BundleError, CryptoError, DecodeError, GroupError, MaintenanceError, SessionError, StoreError,
};
pub use identity::{IdentityKey, IdentityKeyPair};
pub use safety_number::SafetyNumber;
