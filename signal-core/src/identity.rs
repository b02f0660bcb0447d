//! Identity keys.
//!
//! An identity is **one** Ed25519 key pair. It signs prekeys, and the same key, mapped to
//! Montgomery form by the standard birational map (the public key's
//! `to_montgomery()`, the secret's clamped SHA-512 scalar half, as libsodium's
//! `crypto_sign_ed25519_*_to_curve25519`), is the X25519 identity key used in PQXDH's DH1
//! and DH2. Because the X25519 key is derived from the Ed25519 key rather than carried
//! beside it, a bundle cannot swap half of an identity, and the safety number, which
//! covers the encoded Ed25519 key, covers both uses. Joint security of Ed25519 signatures
//! and X25519 key agreement on one key pair: Thormarker, "On using the same key pair for
//! Ed25519 and an X25519 based KEM" (IACR ePrint 2021/509).

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

use crate::error::{CryptoError, DecodeError};
use crate::keys::{DhPoint, DhPublicKey, Secret32, dh_point, ed25519_public, key_type};
use crate::random;
use crate::wire::{Reader, Writer, kind};

/// Length of an encoded identity key (type byte + 32).
pub const IDENTITY_KEY_LEN: usize = 33;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// The public identity of one device: an Ed25519 verifying key, with its X25519 form
/// precomputed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IdentityKey {
    ed: VerifyingKey,
    dh: [u8; 32],
}

impl IdentityKey {
    fn from_verifying(ed: VerifyingKey) -> Result<Self, DecodeError> {
        if ed.is_weak() {
            return Err(DecodeError::InvalidKey {
                kind: "Ed25519 identity",
            });
        }
        Ok(Self {
            dh: ed.to_montgomery().to_bytes(),
            ed,
        })
    }

    /// `0x06 ‖ Ed25519 public key`.
    pub fn encode(&self) -> [u8; IDENTITY_KEY_LEN] {
        let mut out = [0u8; IDENTITY_KEY_LEN];
        out[0] = key_type::ED25519_IDENTITY;
        out[1..].copy_from_slice(self.ed.as_bytes());
        out
    }

    /// Decodes `0x06 ‖ Ed25519 public key`, refusing points that do not decompress,
    /// small-order points ([`DecodeError::InvalidKey`]) and non-canonical encodings
    /// (`y ≥ p`, or a sign bit that the point does not re-encode with:
    /// [`DecodeError::NonCanonical`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let key = Self::read(&mut r)?;
        r.finish()?;
        Ok(key)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let t = r.u8()?;
        if t != key_type::ED25519_IDENTITY {
            return Err(DecodeError::WrongKeyType {
                found: t,
                expected: key_type::ED25519_IDENTITY,
            });
        }
        let raw: [u8; 32] = r.array()?;
        Self::from_verifying(ed25519_public(&raw, "Ed25519 identity")?)
    }

    /// The X25519 form of this identity (used as DH1/DH2 input).
    pub fn dh_public(&self) -> DhPublicKey {
        DhPublicKey::from_raw(self.dh)
    }

    /// The identity as an X25519 peer point, straight from the Edwards point the
    /// verifying key already holds (no square root).
    pub(crate) fn dh_point(&self) -> DhPoint {
        DhPoint::from_edwards(self.ed.to_edwards())
    }

    /// Verifies an Ed25519 `signature` over `message` (RFC 8032, cofactorless, `s`
    /// must be canonical). Small-order identity keys were already refused at decoding;
    /// the remaining difference to dalek's `verify_strict` (small-order `R`) concerns
    /// signature malleability, which no use here depends on, and costs ≈ 30 % more.
    pub fn verify(&self, message: &[u8], signature: &[u8; SIGNATURE_LEN]) -> bool {
        let sig = Signature::from_bytes(signature);
        self.ed.verify(message, &sig).is_ok()
    }

    /// SHA-256 of the encoded key: a short, stable fingerprint for display and lookup.
    /// For comparing identities between people use [`crate::safety_number`].
    pub fn fingerprint(&self) -> [u8; 32] {
        Sha256::digest(self.encode()).into()
    }
}

impl core::fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let fp = self.fingerprint();
        write!(f, "IdentityKey(")?;
        for b in &fp[..6] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// A device's identity key pair. The secret is wiped on drop and never printed.
#[derive(Clone)]
pub struct IdentityKeyPair {
    signing: SigningKey,
    dh_secret: StaticSecret,
    public: IdentityKey,
}

impl IdentityKeyPair {
    /// Generates a fresh identity from OS randomness.
    pub fn generate() -> Result<Self, CryptoError> {
        let seed = Zeroizing::new(random::bytes::<32>()?);
        Self::from_seed(&seed).map_err(|_| CryptoError::Randomness)
    }

    fn from_seed(seed: &[u8; 32]) -> Result<Self, DecodeError> {
        let signing = SigningKey::from_bytes(seed);
        let dh_secret = StaticSecret::from(signing.to_scalar_bytes());
        let public = IdentityKey::from_verifying(signing.verifying_key())?;
        Ok(Self {
            signing,
            dh_secret,
            public,
        })
    }

    /// The public identity.
    pub fn public(&self) -> &IdentityKey {
        &self.public
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.signing.sign(message).to_bytes()
    }

    /// X25519 between this identity and `their` key.
    #[cfg(test)]
    pub(crate) fn agree(&self, their: &DhPublicKey) -> Result<Secret32, CryptoError> {
        crate::keys::dh(&self.dh_secret, their.as_bytes())
    }

    /// X25519 between this identity and a peer point on the Edwards curve.
    pub(crate) fn agree_point(&self, their: &DhPoint) -> Result<Secret32, CryptoError> {
        dh_point(&self.dh_secret, their)
    }

    /// Secret serialization: `VERSION ‖ 0x21 ‖ seed(32)`. The result is secret; store it
    /// only in encrypted storage.
    pub fn to_secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::new(kind::IDENTITY_KEY_PAIR, 32);
        w.bytes(self.signing.as_bytes());
        Zeroizing::new(w.into_vec())
    }

    /// Inverse of [`Self::to_secret_bytes`].
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        r.header(kind::IDENTITY_KEY_PAIR)?;
        let seed = Zeroizing::new(r.array::<32>()?);
        r.finish()?;
        Self::from_seed(&seed)
    }
}

impl core::fmt::Debug for IdentityKeyPair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IdentityKeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::DhKeyPair;

    #[test]
    fn x25519_form_matches_the_ed25519_key() {
        let id = IdentityKeyPair::generate().unwrap();
        let other = DhKeyPair::generate().unwrap();
        let a = id.agree(other.public()).unwrap();
        let b = other.agree(&id.public().dh_public()).unwrap();
        assert_eq!(*a, *b);
    }

    #[test]
    fn serialization_round_trips() {
        let id = IdentityKeyPair::generate().unwrap();
        let back = IdentityKeyPair::from_secret_bytes(&id.to_secret_bytes()).unwrap();
        assert_eq!(back.public(), id.public());
        assert_eq!(
            IdentityKey::decode(&id.public().encode()).unwrap(),
            *id.public()
        );
    }

    #[test]
    fn signatures_verify_and_tampering_fails() {
        let id = IdentityKeyPair::generate().unwrap();
        let mut sig = id.sign(b"hello");
        assert!(id.public().verify(b"hello", &sig));
        assert!(!id.public().verify(b"hellp", &sig));
        sig[10] ^= 1;
        assert!(!id.public().verify(b"hello", &sig));
    }

    #[test]
    fn small_order_identity_is_refused() {
        // The identity element (y = 1) is a small-order point.
        let mut enc = [0u8; 33];
        enc[0] = key_type::ED25519_IDENTITY;
        enc[1] = 1;
        assert!(IdentityKey::decode(&enc).is_err());
    }

    /// Regression (issue 14, item 7): `y + p` (for the few `y < 19` whose `y + p` fits
    /// in 255 bits) decompressed to the same point as `y`, so one identity had two
    /// encodings. Every such encoding of a valid, non-small-order point is refused.
    #[test]
    fn non_canonical_identity_encodings_are_refused() {
        let candidates = crate::keys::test_vectors::non_canonical_ed25519();
        assert!(
            !candidates.is_empty(),
            "no valid non-canonical point tested"
        );
        for raw in candidates {
            let mut enc = [0u8; 33];
            enc[0] = key_type::ED25519_IDENTITY;
            enc[1..].copy_from_slice(&raw);
            assert_eq!(
                IdentityKey::decode(&enc),
                Err(DecodeError::NonCanonical {
                    field: "Ed25519 identity"
                })
            );
        }
    }

    #[test]
    fn debug_does_not_print_secrets() {
        let id = IdentityKeyPair::generate().unwrap();
        let dbg = format!("{id:?}");
        let seed_hex: String = id
            .signing
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(!dbg.contains(&seed_hex[..8]));
    }
}
