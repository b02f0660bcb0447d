//! ML-KEM-1024 prekeys. A *one-time* KEM prekey is consumed on first use like a one-time
//! EC prekey. A *last-resort* KEM prekey is handed out when one-time keys run out and is
//! reused; a pre-key message naming it is accepted once per sender base key (a replay
//! is refused, see [`crate::store::KemPreKeyStore::last_resort_base_key_seen`]).

use zeroize::Zeroizing;

use crate::error::{CryptoError, DecodeError};
use crate::identity::{IdentityKey, IdentityKeyPair, SIGNATURE_LEN};
use crate::keys::{KEM_SECRET_KEY_LEN, KemKeyPair, KemPublicKey};
use crate::prekey::{PreKeyId, Timestamp};
use crate::wire::{Reader, Writer, kind};

const LABEL: &[u8] = b"signal-core v1 kem prekey";

fn signed_message(
    id: PreKeyId,
    created_at: Timestamp,
    last_resort: bool,
    key: &KemPublicKey,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(LABEL.len() + 1 + 4 + 8 + 1569);
    m.extend_from_slice(LABEL);
    m.push(u8::from(last_resort));
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&created_at.to_be_bytes());
    key.write_to(&mut m);
    m
}

/// The public half of an ML-KEM-1024 prekey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KemPreKeyPublic {
    /// Prekey id (its own id space, separate from EC prekeys).
    pub id: PreKeyId,
    /// Creation time.
    pub created_at: Timestamp,
    /// Whether this is the reusable last-resort key.
    pub last_resort: bool,
    /// The encapsulation key.
    pub key: KemPublicKey,
    /// Identity signature over kind, id, creation time and key.
    pub signature: [u8; SIGNATURE_LEN],
}

impl KemPreKeyPublic {
    /// Checks the signature under `identity`.
    pub fn verify(&self, identity: &IdentityKey) -> bool {
        identity.verify(
            &signed_message(self.id, self.created_at, self.last_resort, &self.key),
            &self.signature,
        )
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.u32(self.id);
        w.u64(self.created_at);
        w.bool(self.last_resort);
        self.key.write_to(w.as_mut_vec());
        w.bytes(&self.signature);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            id: r.u32()?,
            created_at: r.u64()?,
            last_resort: r.bool("last_resort")?,
            key: KemPublicKey::read(r)?,
            signature: r.array()?,
        })
    }
}

/// An ML-KEM-1024 prekey with its decapsulation key.
#[derive(Debug, Clone)]
pub struct KemPreKeyRecord {
    public: KemPreKeyPublic,
    key_pair: KemKeyPair,
}

impl KemPreKeyRecord {
    /// Generates and signs a KEM prekey.
    pub fn generate(
        identity: &IdentityKeyPair,
        id: PreKeyId,
        created_at: Timestamp,
        last_resort: bool,
    ) -> Result<Self, CryptoError> {
        let key_pair = KemKeyPair::generate()?;
        let signature = identity.sign(&signed_message(
            id,
            created_at,
            last_resort,
            key_pair.public(),
        ));
        Ok(Self {
            public: KemPreKeyPublic {
                id,
                created_at,
                last_resort,
                key: key_pair.public().clone(),
                signature,
            },
            key_pair,
        })
    }

    /// Generates `count` one-time KEM prekeys with consecutive ids from `first_id`.
    pub fn generate_batch(
        identity: &IdentityKeyPair,
        first_id: PreKeyId,
        count: u32,
        created_at: Timestamp,
    ) -> Result<Vec<Self>, CryptoError> {
        (0..count)
            .map(|i| Self::generate(identity, first_id.wrapping_add(i), created_at, false))
            .collect()
    }

    /// Prekey id.
    pub fn id(&self) -> PreKeyId {
        self.public.id
    }

    /// Creation time.
    pub fn created_at(&self) -> Timestamp {
        self.public.created_at
    }

    /// Whether this is a last-resort key.
    pub fn is_last_resort(&self) -> bool {
        self.public.last_resort
    }

    /// The public half for upload.
    pub fn public(&self) -> &KemPreKeyPublic {
        &self.public
    }

    pub(crate) fn key_pair(&self) -> &KemKeyPair {
        &self.key_pair
    }

    /// Secret serialization.
    pub fn to_secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::new(kind::KEM_PREKEY_RECORD, 1650 + KEM_SECRET_KEY_LEN);
        self.public.write(&mut w);
        w.bytes(self.key_pair.secret_bytes());
        Zeroizing::new(w.into_vec())
    }

    /// Inverse of [`Self::to_secret_bytes`].
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        r.header(kind::KEM_PREKEY_RECORD)?;
        let public = KemPreKeyPublic::read(&mut r)?;
        let secret = r.take(KEM_SECRET_KEY_LEN)?;
        r.finish()?;
        Ok(Self {
            key_pair: KemKeyPair::from_parts(secret, public.key.clone())?,
            public,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14, item 7, on the load path: a stored KEM prekey record whose
    /// decapsulation key carries a tampered `H(ek)` is refused when loaded.
    #[test]
    fn stored_record_with_a_tampered_ek_hash_does_not_load() {
        let id = IdentityKeyPair::generate().unwrap();
        let record = KemPreKeyRecord::generate(&id, 3, 100, true).unwrap();
        let bytes = record.to_secret_bytes();
        let loaded = KemPreKeyRecord::from_secret_bytes(&bytes).unwrap();
        assert_eq!(loaded.public(), record.public());
        // dk starts after the public part; H(ek) is at dk[3104..3136].
        let dk_at = bytes.len() - KEM_SECRET_KEY_LEN;
        let mut tampered = bytes.to_vec();
        tampered[dk_at + 3104 + 5] ^= 0x40;
        assert_eq!(
            KemPreKeyRecord::from_secret_bytes(&tampered).err(),
            Some(DecodeError::InvalidKey {
                kind: "ML-KEM-1024 secret"
            })
        );
    }
}
