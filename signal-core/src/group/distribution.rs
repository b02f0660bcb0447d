//! The sender-key distribution message: how a sender hands one chain to a member
//! device, over their 1:1 session.
//!
//! ```text
//! VERSION(1) ‖ 0x04 ‖ group_id(32) ‖ chain_id(u32) ‖ iteration(u32) ‖ chain_key(32)
//!   ‖ signing_public(32)                                               = 106 bytes
//! ```

use ed25519_dalek::VerifyingKey;
use zeroize::Zeroizing;

use crate::error::DecodeError;
use crate::wire::{Reader, Writer, kind};

use super::sender_key::read_signing_public;
use super::{GROUP_ID_LEN, GroupId};

/// Length of an encoded distribution message.
pub const DISTRIBUTION_MESSAGE_LEN: usize = 2 + GROUP_ID_LEN + 4 + 4 + 32 + 32;

/// A sender chain's position and public signing key, for one group. Secret: whoever
/// holds it can read every message of the chain from `iteration` on. Send it only over
/// an authenticated 1:1 session; the sender is the session's peer.
#[derive(Clone)]
pub struct SenderKeyDistributionMessage {
    pub(crate) group: GroupId,
    pub(crate) chain_id: u32,
    pub(crate) iteration: u32,
    pub(crate) chain_key: Zeroizing<[u8; 32]>,
    pub(crate) signing_public: VerifyingKey,
}

impl SenderKeyDistributionMessage {
    /// The group.
    pub fn group(&self) -> &GroupId {
        &self.group
    }

    /// The chain id.
    pub fn chain_id(&self) -> u32 {
        self.chain_id
    }

    /// The first iteration the receiver will be able to decrypt.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// Encodes the message. The bytes are secret.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::new(kind::SENDER_KEY_DISTRIBUTION, DISTRIBUTION_MESSAGE_LEN);
        w.bytes(self.group.as_bytes());
        w.u32(self.chain_id);
        w.u32(self.iteration);
        w.bytes(&self.chain_key[..]);
        w.bytes(self.signing_public.as_bytes());
        Zeroizing::new(w.into_vec())
    }

    /// Decodes a message, refusing invalid or small-order signing keys.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        r.header(kind::SENDER_KEY_DISTRIBUTION)?;
        let group = GroupId::from_bytes(r.array()?);
        let chain_id = r.u32()?;
        let iteration = r.u32()?;
        let chain_key = Zeroizing::new(r.array::<32>()?);
        let signing_public = read_signing_public(&mut r)?;
        r.finish()?;
        Ok(Self {
            group,
            chain_id,
            iteration,
            chain_key,
            signing_public,
        })
    }
}

impl core::fmt::Debug for SenderKeyDistributionMessage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SenderKeyDistributionMessage")
            .field("group", &self.group)
            .field("chain_id", &self.chain_id)
            .field("iteration", &self.iteration)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14, item 7: a signing key with a non-canonical encoding (`y ≥ p`) is
    /// refused like an invalid one, so a chain's key has exactly one encoding.
    #[test]
    fn non_canonical_signing_key_is_refused() {
        for raw in crate::keys::test_vectors::non_canonical_ed25519() {
            let mut bytes = vec![crate::wire::VERSION, kind::SENDER_KEY_DISTRIBUTION];
            bytes.extend_from_slice(&[0x11; 32 + 4 + 4 + 32]);
            bytes.extend_from_slice(&raw);
            assert_eq!(
                SenderKeyDistributionMessage::decode(&bytes).err(),
                Some(DecodeError::NonCanonical {
                    field: "sender-key signing"
                })
            );
        }
    }
}
