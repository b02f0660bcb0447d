//! The prekey bundle a relay hands to an initiator.

use crate::error::{BundleError, DecodeError, SignedItem};
use crate::identity::IdentityKey;
use crate::prekey::{KemPreKeyPublic, OneTimePreKeyPublic, SignedPreKeyPublic};
use crate::wire::{Reader, Writer, kind};

/// Everything an initiator needs to start a PQXDH session with one device.
///
/// A bundle straight from the network is untrusted; [`PreKeyBundle::verify`] checks
/// every signature and yields a [`VerifiedBundle`], the only thing
/// [`crate::session::initiate`] accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreKeyBundle {
    /// The device's registration id (random per installation; covered by the signed
    /// prekey's signature).
    pub registration_id: u32,
    /// The device's identity key.
    pub identity: IdentityKey,
    /// The current signed X25519 prekey.
    pub signed_prekey: SignedPreKeyPublic,
    /// A one-time X25519 prekey, when the relay had one left.
    pub one_time_prekey: Option<OneTimePreKeyPublic>,
    /// A one-time ML-KEM-1024 prekey, or the last-resort one.
    pub kem_prekey: KemPreKeyPublic,
}

/// A bundle whose every signature verified under its identity key.
#[derive(Debug, Clone)]
pub struct VerifiedBundle(PreKeyBundle);

impl VerifiedBundle {
    /// The verified bundle.
    pub fn bundle(&self) -> &PreKeyBundle {
        &self.0
    }
}

impl PreKeyBundle {
    /// Verifies the signed prekey, one-time prekey and KEM prekey signatures under the
    /// bundle's identity key.
    pub fn verify(self) -> Result<VerifiedBundle, BundleError> {
        if !self
            .signed_prekey
            .verify(&self.identity, self.registration_id)
        {
            return Err(BundleError::BadSignature {
                item: SignedItem::SignedPreKey,
            });
        }
        if let Some(opk) = &self.one_time_prekey
            && !opk.verify(&self.identity)
        {
            return Err(BundleError::BadSignature {
                item: SignedItem::OneTimePreKey,
            });
        }
        if !self.kem_prekey.verify(&self.identity) {
            return Err(BundleError::BadSignature {
                item: SignedItem::KemPreKey,
            });
        }
        Ok(VerifiedBundle(self))
    }

    /// Like [`Self::verify`], and also requires the identity to equal `expected` (the
    /// identity the caller already trusts for this peer).
    pub fn verify_for(self, expected: &IdentityKey) -> Result<VerifiedBundle, BundleError> {
        if &self.identity != expected {
            return Err(BundleError::IdentityMismatch);
        }
        self.verify()
    }

    /// Encodes the bundle (`docs/protocol.md` §Bundle).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(kind::PREKEY_BUNDLE, 1900);
        w.u32(self.registration_id);
        w.bytes(&self.identity.encode());
        self.signed_prekey.write(&mut w);
        w.bool(self.one_time_prekey.is_some());
        if let Some(opk) = &self.one_time_prekey {
            opk.write(&mut w);
        }
        self.kem_prekey.write(&mut w);
        w.into_vec()
    }

    /// Decodes a bundle. Does not verify signatures.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        r.header(kind::PREKEY_BUNDLE)?;
        let registration_id = r.u32()?;
        let identity = IdentityKey::read(&mut r)?;
        let signed_prekey = SignedPreKeyPublic::read(&mut r)?;
        let one_time_prekey = if r.bool("one_time_prekey flag")? {
            Some(OneTimePreKeyPublic::read(&mut r)?)
        } else {
            None
        };
        let kem_prekey = KemPreKeyPublic::read(&mut r)?;
        r.finish()?;
        Ok(Self {
            registration_id,
            identity,
            signed_prekey,
            one_time_prekey,
            kem_prekey,
        })
    }
}
