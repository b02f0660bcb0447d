//! Prekeys: the signed X25519 prekey, one-time X25519 prekeys, ML-KEM-1024 prekeys
//! (one-time and last-resort), and the bundle that carries their public halves.
//!
//! Every public prekey is signed by the identity key over a domain-separated message
//! that covers its id, creation time, kind and encoded key (`docs/protocol.md` §Prekeys),
//! so no field of a bundle can be altered without failing verification.

mod bundle;
mod kem;
mod one_time;
mod signed;

pub use bundle::{PreKeyBundle, VerifiedBundle};
pub use kem::{KemPreKeyPublic, KemPreKeyRecord};
pub use one_time::{OneTimePreKeyPublic, OneTimePreKeyRecord};
pub use signed::{SignedPreKeyPublic, SignedPreKeyRecord};

/// Identifies a prekey of any kind within one device's key space for that kind.
pub type PreKeyId = u32;

/// Seconds since the Unix epoch. The library never reads the clock itself where a
/// caller can supply the time: functions that need "now" take it as an argument.
pub type Timestamp = u64;
