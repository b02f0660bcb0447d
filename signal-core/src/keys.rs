//! Key types below the identity: X25519 keys for Diffie-Hellman and ML-KEM-1024 keys.
//!
//! Public keys encode with a leading type byte ([`key_type`]) so that encodings of
//! different kinds of key are disjoint: a byte string is a valid encoding of at most
//! one kind.

use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::montgomery::MontgomeryPoint;
use libcrux_ml_kem::mlkem1024::{
    self, MlKem1024Ciphertext, MlKem1024PrivateKey, MlKem1024PublicKey,
};
use subtle::ConstantTimeEq;
use x25519_dalek::{PublicKey as XPublic, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{CryptoError, DecodeError};
use crate::random;
use crate::wire::Reader;

/// Type bytes that prefix encoded public keys.
pub mod key_type {
    /// An X25519 public key (32 bytes follow).
    pub const X25519: u8 = 0x05;
    /// An Ed25519 identity key (32 bytes follow).
    pub const ED25519_IDENTITY: u8 = 0x06;
    /// An ML-KEM-1024 encapsulation key (1568 bytes follow).
    pub const ML_KEM_1024: u8 = 0x0A;
}

/// Length of an encoded X25519 public key (type byte + 32).
pub const DH_PUBLIC_LEN: usize = 33;
/// Length of an ML-KEM-1024 encapsulation key.
pub const KEM_PUBLIC_KEY_RAW_LEN: usize = 1568;
/// Length of an encoded ML-KEM-1024 encapsulation key (type byte + 1568).
pub const KEM_PUBLIC_LEN: usize = 1 + KEM_PUBLIC_KEY_RAW_LEN;
/// Length of an ML-KEM-1024 ciphertext.
pub const KEM_CIPHERTEXT_LEN: usize = 1568;
/// Length of an ML-KEM-1024 decapsulation key.
pub const KEM_SECRET_KEY_LEN: usize = 3168;

/// A 32-byte shared secret that is wiped when dropped.
pub(crate) type Secret32 = Zeroizing<[u8; 32]>;

/// An X25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DhPublicKey([u8; 32]);

impl DhPublicKey {
    /// The raw 32-byte Montgomery u-coordinate.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// `0x05 ‖ u`.
    pub fn encode(&self) -> [u8; DH_PUBLIC_LEN] {
        let mut out = [0u8; DH_PUBLIC_LEN];
        out[0] = key_type::X25519;
        out[1..].copy_from_slice(&self.0);
        out
    }

    /// Decodes `0x05 ‖ u`, refusing a non-canonical `u` (the high bit set, or
    /// `u ≥ 2^255 − 19`) with [`DecodeError::NonCanonical`]: X25519 ignores the high
    /// bit, so two encodings would otherwise name one key and defeat every check that
    /// compares keys by their bytes (a session's base key, last-resort replays).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let key = Self::read(&mut r)?;
        r.finish()?;
        Ok(key)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let t = r.u8()?;
        if t != key_type::X25519 {
            return Err(DecodeError::WrongKeyType {
                found: t,
                expected: key_type::X25519,
            });
        }
        let u: [u8; 32] = r.array()?;
        if !is_canonical_u(&u) {
            return Err(DecodeError::NonCanonical {
                field: "X25519 public key",
            });
        }
        Ok(Self(u))
    }

    pub(crate) fn from_raw(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

/// Whether `u` (little-endian) is the canonical encoding of a field element: below
/// `p = 2^255 − 19`, so in particular with the high bit clear.
fn is_canonical_u(u: &[u8; 32]) -> bool {
    if u[31] & 0x80 != 0 {
        return false;
    }
    // p = 0x7fff…ffed: u ≥ p only if its top byte is 0x7f, the middle bytes are
    // 0xff and the low byte is at least 0xed.
    !(u[31] == 0x7f && u[1..31].iter().all(|&b| b == 0xff) && u[0] >= 0xed)
}

impl core::fmt::Debug for DhPublicKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "DhPublicKey(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// An X25519 key pair. The secret is wiped on drop and never printed.
#[derive(Clone)]
pub struct DhKeyPair {
    secret: StaticSecret,
    public: DhPublicKey,
}

impl DhKeyPair {
    /// Generates a key pair from OS randomness.
    pub fn generate() -> Result<Self, CryptoError> {
        let seed = Zeroizing::new(random::bytes::<32>()?);
        Ok(Self::from_secret_bytes(*seed))
    }

    /// Rebuilds a key pair from its (clamped or unclamped) secret scalar bytes.
    pub(crate) fn from_secret_bytes(bytes: [u8; 32]) -> Self {
        let secret = StaticSecret::from(bytes);
        let public = DhPublicKey(XPublic::from(&secret).to_bytes());
        Self { secret, public }
    }

    /// Rebuilds a key pair from stored parts without recomputing the public key.
    pub(crate) fn from_parts(secret: [u8; 32], public: DhPublicKey) -> Self {
        Self {
            secret: StaticSecret::from(secret),
            public,
        }
    }

    /// The public half.
    pub fn public(&self) -> &DhPublicKey {
        &self.public
    }

    /// The secret scalar bytes, for serialization into a secret record.
    pub(crate) fn secret_bytes(&self) -> Secret32 {
        Zeroizing::new(self.secret.to_bytes())
    }

    /// X25519 with `their` public key. Fails on an all-zero (non-contributory) result,
    /// which only a small-order public key produces.
    pub fn agree(&self, their: &DhPublicKey) -> Result<Secret32, CryptoError> {
        dh(&self.secret, &their.0)
    }

    /// X25519 with a peer point already mapped to the Edwards curve.
    pub(crate) fn agree_point(&self, their: &DhPoint) -> Result<Secret32, CryptoError> {
        dh_point(&self.secret, their)
    }
}

/// X25519 of a secret scalar and a peer's u-coordinate, refusing a non-contributory
/// (all-zero) result, checked in constant time.
///
/// Computed on the Edwards form: `u` is mapped to an Edwards point (either sign: the
/// result's u-coordinate is the same for ±P) and multiplied by the *clamped, unreduced*
/// scalar with curve25519-dalek's variable-base multiplication, which uses the AVX2
/// backend where the CPU has it (≈ 20 % faster than the Montgomery ladder here). For
/// every point on the curve the result equals RFC 7748 X25519 (a unit test checks this
/// against the ladder, small-order points included). A `u` on the quadratic twist has no
/// Edwards form and is refused as non-contributory: honest peers never produce one.
pub(crate) fn dh(secret: &StaticSecret, their: &[u8; 32]) -> Result<Secret32, CryptoError> {
    dh_point(secret, &DhPoint::from_u(their)?)
}

/// X25519 with a peer point already in Edwards form (see [`dh`]).
pub(crate) fn dh_point(secret: &StaticSecret, their: &DhPoint) -> Result<Secret32, CryptoError> {
    let scalar = Zeroizing::new(secret.to_bytes());
    let out = Zeroizing::new(their.0.mul_clamped(*scalar).to_montgomery().to_bytes());
    if bool::from(out.ct_eq(&[0u8; 32])) {
        return Err(CryptoError::NonContributoryDh);
    }
    Ok(out)
}

/// A peer's X25519 public key mapped to the Edwards curve once, for use in several
/// Diffie-Hellman operations (PQXDH uses the same peer key up to three times).
pub(crate) struct DhPoint(EdwardsPoint);

impl DhPoint {
    /// Maps a u-coordinate to an Edwards point; a point on the twist is refused.
    pub(crate) fn from_u(u: &[u8; 32]) -> Result<Self, CryptoError> {
        MontgomeryPoint(*u)
            .to_edwards(0)
            .map(Self)
            .ok_or(CryptoError::NonContributoryDh)
    }

    pub(crate) fn from_edwards(point: EdwardsPoint) -> Self {
        Self(point)
    }
}

impl DhPublicKey {
    /// This key on the Edwards curve, for repeated Diffie-Hellman.
    pub(crate) fn point(&self) -> Result<DhPoint, CryptoError> {
        DhPoint::from_u(&self.0)
    }
}

impl core::fmt::Debug for DhKeyPair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DhKeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// An ML-KEM-1024 encapsulation (public) key, validated per FIPS 203 §7.2.
#[derive(Clone)]
pub struct KemPublicKey(Box<MlKem1024PublicKey>);

impl KemPublicKey {
    /// `0x0A ‖ ek` (1569 bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(KEM_PUBLIC_LEN);
        out.push(key_type::ML_KEM_1024);
        out.extend_from_slice(self.0.as_slice());
        out
    }

    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        out.push(key_type::ML_KEM_1024);
        out.extend_from_slice(self.0.as_slice());
    }

    /// Decodes `0x0A ‖ ek`, checking the FIPS 203 encapsulation-key modulus check.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let key = Self::read(&mut r)?;
        r.finish()?;
        Ok(key)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let t = r.u8()?;
        if t != key_type::ML_KEM_1024 {
            return Err(DecodeError::WrongKeyType {
                found: t,
                expected: key_type::ML_KEM_1024,
            });
        }
        let raw: [u8; KEM_PUBLIC_KEY_RAW_LEN] = r.array()?;
        let key = MlKem1024PublicKey::from(raw);
        if !mlkem1024::validate_public_key(&key) {
            return Err(DecodeError::InvalidKey {
                kind: "ML-KEM-1024",
            });
        }
        Ok(Self(Box::new(key)))
    }

    /// Encapsulates a fresh shared secret to this key.
    pub(crate) fn encapsulate(
        &self,
    ) -> Result<(Box<[u8; KEM_CIPHERTEXT_LEN]>, Secret32), CryptoError> {
        let randomness = Zeroizing::new(random::bytes::<32>()?);
        let (ct, ss) = mlkem1024::encapsulate(&self.0, *randomness);
        let mut ct_out = Box::new([0u8; KEM_CIPHERTEXT_LEN]);
        ct_out.copy_from_slice(ct.as_ref());
        Ok((ct_out, Zeroizing::new(ss)))
    }
}

impl PartialEq for KemPublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_slice() == other.0.as_slice()
    }
}
impl Eq for KemPublicKey {}

impl core::fmt::Debug for KemPublicKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "KemPublicKey(")?;
        for b in &self.0.as_slice()[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// An ML-KEM-1024 key pair. The decapsulation key is wiped on drop and never printed.
pub struct KemKeyPair {
    secret: Box<MlKem1024PrivateKey>,
    public: KemPublicKey,
}

impl KemKeyPair {
    /// Generates a key pair from OS randomness.
    pub fn generate() -> Result<Self, CryptoError> {
        let seed = Zeroizing::new(random::bytes::<64>()?);
        let pair = mlkem1024::generate_key_pair(*seed);
        let (sk, pk) = pair.into_parts();
        Ok(Self {
            secret: Box::new(sk),
            public: KemPublicKey(Box::new(pk)),
        })
    }

    /// Rebuilds a key pair from stored bytes, checking the FIPS 203 decapsulation-key
    /// hash check.
    pub(crate) fn from_parts(secret: &[u8], public: KemPublicKey) -> Result<Self, DecodeError> {
        let raw: &[u8; KEM_SECRET_KEY_LEN] =
            secret.try_into().map_err(|_| DecodeError::InvalidKey {
                kind: "ML-KEM-1024 secret",
            })?;
        let sk = Box::new(MlKem1024PrivateKey::from(raw));
        // FIPS 203 §7.3 hash check: H(ek) embedded in dk must match; and ek must be the
        // embedded one.
        let ek_in_dk = &sk.as_slice()[1536..1536 + KEM_PUBLIC_KEY_RAW_LEN];
        if ek_in_dk != public.0.as_slice() {
            return Err(DecodeError::InvalidKey {
                kind: "ML-KEM-1024 secret",
            });
        }
        Ok(Self { secret: sk, public })
    }

    /// The public half.
    pub fn public(&self) -> &KemPublicKey {
        &self.public
    }

    /// The decapsulation key bytes, for serialization into a secret record.
    pub(crate) fn secret_bytes(&self) -> &[u8] {
        self.secret.as_slice()
    }

    /// Decapsulates. ML-KEM uses implicit rejection: a tampered ciphertext yields an
    /// unrelated secret, which then fails authentication further on.
    pub(crate) fn decapsulate(&self, ct: &[u8; KEM_CIPHERTEXT_LEN]) -> Secret32 {
        let ct = MlKem1024Ciphertext::from(ct);
        Zeroizing::new(mlkem1024::decapsulate(&self.secret, &ct))
    }
}

impl Clone for KemKeyPair {
    fn clone(&self) -> Self {
        Self {
            secret: Box::new(MlKem1024PrivateKey::from(self.secret.as_slice())),
            public: self.public.clone(),
        }
    }
}

impl Drop for KemKeyPair {
    fn drop(&mut self) {
        self.secret[0..].zeroize();
    }
}

impl core::fmt::Debug for KemKeyPair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KemKeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (fuzz/conversation): a pre-key message whose base key had its high
    /// bit flipped was accepted as a second, distinct base key for the same X25519
    /// key, which would let a replayed last-resort pre-key message past the replay
    /// check. Non-canonical encodings are refused.
    #[test]
    fn dh_public_key_refuses_non_canonical_encodings() {
        let key = *DhKeyPair::generate().expect("key").public();
        let mut high_bit = key.encode();
        high_bit[32] |= 0x80;
        assert!(matches!(
            DhPublicKey::decode(&high_bit),
            Err(DecodeError::NonCanonical { .. })
        ));
        let mut p = [0xffu8; DH_PUBLIC_LEN];
        p[0] = key_type::X25519;
        p[1] = 0xed;
        p[32] = 0x7f;
        assert!(matches!(
            DhPublicKey::decode(&p),
            Err(DecodeError::NonCanonical { .. })
        ));
        p[1] = 0xec;
        assert!(DhPublicKey::decode(&p).is_ok(), "p - 1 is canonical");
        assert_eq!(DhPublicKey::decode(&key.encode()), Ok(key));
    }

    #[test]
    fn dh_agrees_and_encodings_round_trip() {
        let a = DhKeyPair::generate().unwrap();
        let b = DhKeyPair::generate().unwrap();
        assert_eq!(*a.agree(b.public()).unwrap(), *b.agree(a.public()).unwrap());
        assert_eq!(
            DhPublicKey::decode(&a.public().encode()).unwrap(),
            *a.public()
        );
    }

    #[test]
    fn edwards_path_matches_the_x25519_ladder() {
        for _ in 0..64 {
            let a = DhKeyPair::generate().unwrap();
            let b = DhKeyPair::generate().unwrap();
            let ladder = a
                .secret
                .diffie_hellman(&XPublic::from(b.public.0))
                .to_bytes();
            assert_eq!(*a.agree(b.public()).unwrap(), ladder);
        }
        // A point with a small-order component: clamping kills the torsion part, in both.
        let a = DhKeyPair::generate().unwrap();
        let b = DhKeyPair::generate().unwrap();
        let torsion = curve25519_dalek::constants::EIGHT_TORSION[1];
        let mixed = (MontgomeryPoint(b.public.0).to_edwards(0).unwrap() + torsion).to_montgomery();
        let ladder = a
            .secret
            .diffie_hellman(&XPublic::from(mixed.to_bytes()))
            .to_bytes();
        assert_eq!(*a.agree(&DhPublicKey(mixed.to_bytes())).unwrap(), ladder);
        // Pure small-order points give zero, which is refused.
        for t in curve25519_dalek::constants::EIGHT_TORSION {
            let u = t.to_montgomery().to_bytes();
            assert_eq!(
                a.agree(&DhPublicKey(u)),
                Err(CryptoError::NonContributoryDh)
            );
        }
    }

    #[test]
    fn small_order_point_is_refused() {
        let a = DhKeyPair::generate().unwrap();
        let zero = DhPublicKey::from_raw([0; 32]);
        assert_eq!(a.agree(&zero), Err(CryptoError::NonContributoryDh));
    }

    #[test]
    fn kem_round_trip_and_disjoint_encodings() {
        let kp = KemKeyPair::generate().unwrap();
        let (ct, ss) = kp.public().encapsulate().unwrap();
        assert_eq!(*kp.decapsulate(&ct), *ss);
        let enc = kp.public().encode();
        assert_eq!(KemPublicKey::decode(&enc).unwrap(), *kp.public());
        assert!(DhPublicKey::decode(&enc).is_err());
        let rebuilt = KemKeyPair::from_parts(kp.secret_bytes(), kp.public().clone()).unwrap();
        assert_eq!(*rebuilt.decapsulate(&ct), *ss);
    }

    #[test]
    fn kem_key_failing_modulus_check_is_refused() {
        let mut enc = vec![key_type::ML_KEM_1024];
        enc.extend_from_slice(&[0xff; KEM_PUBLIC_KEY_RAW_LEN]);
        assert_eq!(
            KemPublicKey::decode(&enc),
            Err(DecodeError::InvalidKey {
                kind: "ML-KEM-1024"
            })
        );
    }
}
