//! One-time X25519 prekeys: each is handed out once by the relay and consumed once.

use zeroize::Zeroizing;

use crate::error::{CryptoError, DecodeError};
use crate::identity::{IdentityKey, IdentityKeyPair, SIGNATURE_LEN};
use crate::keys::{DhKeyPair, DhPublicKey};
use crate::prekey::{PreKeyId, Timestamp};
use crate::wire::{Reader, Writer, kind};

const LABEL: &[u8] = b"signal-core v1 one-time prekey";

fn signed_message(id: PreKeyId, created_at: Timestamp, key: &DhPublicKey) -> Vec<u8> {
    let mut m = Vec::with_capacity(LABEL.len() + 4 + 8 + 33);
    m.extend_from_slice(LABEL);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&created_at.to_be_bytes());
    m.extend_from_slice(&key.encode());
    m
}

/// The public half of a one-time prekey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTimePreKeyPublic {
    /// Prekey id.
    pub id: PreKeyId,
    /// Creation time.
    pub created_at: Timestamp,
    /// The X25519 public key.
    pub key: DhPublicKey,
    /// Identity signature over id, creation time and key.
    pub signature: [u8; SIGNATURE_LEN],
}

impl OneTimePreKeyPublic {
    /// Checks the signature under `identity`.
    pub fn verify(&self, identity: &IdentityKey) -> bool {
        identity.verify(
            &signed_message(self.id, self.created_at, &self.key),
            &self.signature,
        )
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.u32(self.id);
        w.u64(self.created_at);
        w.bytes(&self.key.encode());
        w.bytes(&self.signature);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            id: r.u32()?,
            created_at: r.u64()?,
            key: DhPublicKey::read(r)?,
            signature: r.array()?,
        })
    }
}

/// A one-time prekey with its secret.
#[derive(Debug, Clone)]
pub struct OneTimePreKeyRecord {
    public: OneTimePreKeyPublic,
    key_pair: DhKeyPair,
}

impl OneTimePreKeyRecord {
    /// Generates and signs one prekey.
    pub fn generate(
        identity: &IdentityKeyPair,
        id: PreKeyId,
        created_at: Timestamp,
    ) -> Result<Self, CryptoError> {
        let key_pair = DhKeyPair::generate()?;
        let signature = identity.sign(&signed_message(id, created_at, key_pair.public()));
        Ok(Self {
            public: OneTimePreKeyPublic {
                id,
                created_at,
                key: *key_pair.public(),
                signature,
            },
            key_pair,
        })
    }

    /// Generates `count` prekeys with consecutive ids from `first_id` (wrapping).
    pub fn generate_batch(
        identity: &IdentityKeyPair,
        first_id: PreKeyId,
        count: u32,
        created_at: Timestamp,
    ) -> Result<Vec<Self>, CryptoError> {
        (0..count)
            .map(|i| Self::generate(identity, first_id.wrapping_add(i), created_at))
            .collect()
    }

    /// Prekey id.
    pub fn id(&self) -> PreKeyId {
        self.public.id
    }

    /// The public half for upload.
    pub fn public(&self) -> &OneTimePreKeyPublic {
        &self.public
    }

    pub(crate) fn key_pair(&self) -> &DhKeyPair {
        &self.key_pair
    }

    /// Secret serialization.
    pub fn to_secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::new(kind::ONE_TIME_PREKEY_RECORD, 150);
        self.public.write(&mut w);
        w.bytes(&*self.key_pair.secret_bytes());
        Zeroizing::new(w.into_vec())
    }

    /// Inverse of [`Self::to_secret_bytes`].
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        r.header(kind::ONE_TIME_PREKEY_RECORD)?;
        let public = OneTimePreKeyPublic::read(&mut r)?;
        let secret = Zeroizing::new(r.array::<32>()?);
        r.finish()?;
        Ok(Self {
            key_pair: DhKeyPair::from_parts(*secret, public.key),
            public,
        })
    }
}
