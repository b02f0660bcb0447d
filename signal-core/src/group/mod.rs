//! Sender-key groups (`docs/protocol.md` §Groups).
//!
//! Each device that sends to a group owns one *sender chain* per group: a chain id, an
//! HMAC-SHA256 chain key (the same ratchet as the Double Ratchet's symmetric chains) and
//! a per-chain Ed25519 signing key. It hands the chain's current position and the
//! public signing key to every member device in a [`SenderKeyDistributionMessage`]
//! over their 1:1 sessions. Group messages are AES-256-GCM encrypted under the chain's
//! message keys and signed as a whole; receivers verify the signature before anything
//! else.
//!
//! - [`sender_key`]: chain states and the per-(group, sender) [`SenderKeyRecord`].
//! - [`distribution`]: the distribution message.
//! - [`message`]: the group message encoding.
//! - [`cipher`]: create / rotate / process a chain, encrypt, decrypt.
//! - [`membership`]: distribution fan-out, adding and removing members.
//!
//! ```
//! use signal_core::group::{self, GroupId, SenderKeyDistributionMessage};
//! use signal_core::store::InMemoryStore;
//! use signal_core::{Address, IdentityKeyPair};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let group = GroupId::generate()?;
//! let (alice, bob) = (Address::new("alice", 1)?, Address::new("bob", 1)?);
//! let mut alice_store = InMemoryStore::new(IdentityKeyPair::generate()?, 1);
//! let mut bob_store = InMemoryStore::new(IdentityKeyPair::generate()?, 2);
//!
//! // Alice creates her chain; the encoded distribution message travels to Bob over
//! // their 1:1 session (see `group::distribute`), and Bob records it.
//! let skdm = group::create_distribution(&mut alice_store, &group, &alice)?.encode();
//! let skdm = SenderKeyDistributionMessage::decode(&skdm)?;
//! group::process_distribution(&mut bob_store, &alice, &skdm)?;
//!
//! // One ciphertext for the whole group, signed by Alice's chain key.
//! let wire = group::encrypt(&mut alice_store, &group, &alice, b"hello group")?;
//! let plaintext = group::decrypt_and_commit(&mut bob_store, &group, &alice, &wire)?;
//! assert_eq!(&plaintext[..], b"hello group");
//! // A second delivery is a duplicate.
//! assert!(group::decrypt_and_commit(&mut bob_store, &group, &alice, &wire).is_err());
//! # Ok(()) }
//! ```

pub mod cipher;
pub mod distribution;
pub mod membership;
pub mod message;
pub mod sender_key;

pub use cipher::{
    GroupDecrypted, commit, create_distribution, decrypt, decrypt_and_commit, encrypt,
    process_distribution, rotate,
};
pub use distribution::SenderKeyDistributionMessage;
pub use membership::{add_member, distribute, remove_member};
pub use message::SenderKeyMessage;
pub use sender_key::{SenderKeyRecord, SenderKeyUpdate};

use crate::error::CryptoError;
use crate::random;

/// Length of a group id in bytes.
pub const GROUP_ID_LEN: usize = 32;

/// Identifies a group: 32 random bytes chosen by the group's creator. Not secret, but
/// unguessable, so one group's state is never confused with another's.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId([u8; GROUP_ID_LEN]);

impl GroupId {
    /// A fresh random group id.
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(Self(random::bytes()?))
    }

    /// A group id from its bytes (as received from the group's creator).
    pub fn from_bytes(bytes: [u8; GROUP_ID_LEN]) -> Self {
        Self(bytes)
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8; GROUP_ID_LEN] {
        &self.0
    }
}

impl core::fmt::Debug for GroupId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "GroupId(")?;
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}
