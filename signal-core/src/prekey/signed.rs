//! The signed X25519 prekey (medium-term, rotated on a schedule).

use zeroize::Zeroizing;

use crate::error::{CryptoError, DecodeError};
use crate::identity::{IdentityKey, IdentityKeyPair, SIGNATURE_LEN};
use crate::keys::{DhKeyPair, DhPublicKey};
use crate::prekey::{PreKeyId, Timestamp};
use crate::wire::{Reader, Writer, kind};

const LABEL: &[u8] = b"signal-core v1 signed prekey";

/// The message the identity signs for a signed prekey.
fn signed_message(
    registration_id: u32,
    id: PreKeyId,
    created_at: Timestamp,
    key: &DhPublicKey,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(LABEL.len() + 4 + 4 + 8 + 33);
    m.extend_from_slice(LABEL);
    m.extend_from_slice(&registration_id.to_be_bytes());
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&created_at.to_be_bytes());
    m.extend_from_slice(&key.encode());
    m
}

/// The public half of a signed prekey, as published in a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPreKeyPublic {
    /// Prekey id.
    pub id: PreKeyId,
    /// Creation time.
    pub created_at: Timestamp,
    /// The X25519 public key.
    pub key: DhPublicKey,
    /// Identity signature over id, creation time, registration id and key.
    pub signature: [u8; SIGNATURE_LEN],
}

impl SignedPreKeyPublic {
    /// Checks the signature under `identity` for the device with `registration_id`.
    pub fn verify(&self, identity: &IdentityKey, registration_id: u32) -> bool {
        identity.verify(
            &signed_message(registration_id, self.id, self.created_at, &self.key),
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

/// A signed prekey with its secret. Secret: store only in encrypted storage.
#[derive(Debug, Clone)]
pub struct SignedPreKeyRecord {
    public: SignedPreKeyPublic,
    key_pair: DhKeyPair,
}

impl SignedPreKeyRecord {
    /// Generates and signs a new signed prekey.
    pub fn generate(
        identity: &IdentityKeyPair,
        registration_id: u32,
        id: PreKeyId,
        created_at: Timestamp,
    ) -> Result<Self, CryptoError> {
        let key_pair = DhKeyPair::generate()?;
        let signature = identity.sign(&signed_message(
            registration_id,
            id,
            created_at,
            key_pair.public(),
        ));
        Ok(Self {
            public: SignedPreKeyPublic {
                id,
                created_at,
                key: *key_pair.public(),
                signature,
            },
            key_pair,
        })
    }

    /// Prekey id.
    pub fn id(&self) -> PreKeyId {
        self.public.id
    }

    /// Creation time.
    pub fn created_at(&self) -> Timestamp {
        self.public.created_at
    }

    /// The public half for upload.
    pub fn public(&self) -> &SignedPreKeyPublic {
        &self.public
    }

    pub(crate) fn key_pair(&self) -> &DhKeyPair {
        &self.key_pair
    }

    /// Secret serialization (`docs/protocol.md` §Stored records).
    pub fn to_secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::new(kind::SIGNED_PREKEY_RECORD, 150);
        self.public.write(&mut w);
        w.bytes(&*self.key_pair.secret_bytes());
        Zeroizing::new(w.into_vec())
    }

    /// Inverse of [`Self::to_secret_bytes`].
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        r.header(kind::SIGNED_PREKEY_RECORD)?;
        let public = SignedPreKeyPublic::read(&mut r)?;
        let secret = Zeroizing::new(r.array::<32>()?);
        r.finish()?;
        Ok(Self {
            key_pair: DhKeyPair::from_parts(*secret, public.key),
            public,
        })
    }
}
