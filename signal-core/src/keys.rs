//! Key types below the identity: X25519 keys for Diffie-Hellman and ML-KEM-1024 keys.
//!
//! Public keys encode with a leading type byte ([`key_type`]) so that encodings of
//! different kinds of key are disjoint: a byte string is a valid encoding of at most
//! one kind.

use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::montgomery::MontgomeryPoint;
use ed25519_dalek::VerifyingKey;
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
/// Offset of `ek` inside an ML-KEM-1024 decapsulation key (the length of `dk_PKE`).
const KEM_DK_PKE_LEN: usize = 1536;

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

    /// This key on the Edwards curve, refusing (with [`DecodeError::InvalidKey`]) a `u`
    /// on the quadratic twist and a point outside the prime-order subgroup (with a
    /// non-zero component in the 8-torsion subgroup, small-order points included).
    ///
    /// X25519 clamps scalars to multiples of 8, so `u(P + T)` for any 8-torsion point
    /// `T` gives the same results as `u(P)`: without this check eight different
    /// canonical encodings would name one key. Honest keys (`clamped scalar × base
    /// point`) always pass. Costs one scalar multiplication (`ℓ · P`).
    pub(crate) fn prime_order_point(&self, kind: &'static str) -> Result<DhPoint, DecodeError> {
        let invalid = DecodeError::InvalidKey { kind };
        let point = MontgomeryPoint(self.0)
            .to_edwards(0)
            .ok_or(invalid.clone())?;
        if !point.is_torsion_free() {
            return Err(invalid);
        }
        Ok(DhPoint(point))
    }
}

/// Decompresses an RFC 8032 Ed25519 public key (`kind` names it in errors), refusing
/// bytes that do not decompress and small-order points ([`DecodeError::InvalidKey`]),
/// and non-canonical encodings ([`DecodeError::NonCanonical`]): the point must
/// re-encode to exactly these bytes, which refuses `y ≥ p` and a set sign bit on
/// `x = 0`, so every key has exactly one encoding.
pub(crate) fn ed25519_public(
    raw: &[u8; 32],
    kind: &'static str,
) -> Result<VerifyingKey, DecodeError> {
    let key = VerifyingKey::from_bytes(raw).map_err(|_| DecodeError::InvalidKey { kind })?;
    if key.to_edwards().compress().as_bytes() != raw {
        return Err(DecodeError::NonCanonical { field: kind });
    }
    if key.is_weak() {
        return Err(DecodeError::InvalidKey { kind });
    }
    Ok(key)
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

    /// Rebuilds a key pair from stored bytes. The decapsulation key
    /// `dk = dk_PKE ‖ ek ‖ H(ek) ‖ z` must embed `public` as its `ek`, and must pass the
    /// FIPS 203 §7.3 hash check (`H(ek) = SHA3-256(ek)`, recomputed here by libcrux's
    /// `validate_private_key_only`); otherwise [`DecodeError::InvalidKey`]. Both
    /// compared values are public, so the comparisons need not be constant time.
    pub(crate) fn from_parts(secret: &[u8], public: KemPublicKey) -> Result<Self, DecodeError> {
        let invalid = DecodeError::InvalidKey {
            kind: "ML-KEM-1024 secret",
        };
        let raw: &[u8; KEM_SECRET_KEY_LEN] = secret.try_into().map_err(|_| invalid.clone())?;
        let sk = Box::new(MlKem1024PrivateKey::from(raw));
        let ek_in_dk = &sk.as_slice()[KEM_DK_PKE_LEN..KEM_DK_PKE_LEN + KEM_PUBLIC_KEY_RAW_LEN];
        if ek_in_dk != public.0.as_slice() || !mlkem1024::portable::validate_private_key_only(&sk) {
            return Err(invalid);
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

/// Test vectors shared by the decoders' tests.
#[cfg(test)]
pub(crate) mod test_vectors {
    use ed25519_dalek::VerifyingKey;

    /// Non-canonical Ed25519 encodings (`y = p + k`, `k < 19`, either sign bit) that
    /// `VerifyingKey::from_bytes` decompresses to a point that is not of small order.
    pub(crate) fn non_canonical_ed25519() -> Vec<[u8; 32]> {
        // p = 2^255 - 19, little-endian.
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        let mut out = Vec::new();
        for k in 0u8..19 {
            for sign in [0u8, 0x80] {
                let mut y = p;
                y[0] += k; // 0xed + 18 = 0xff: no carry.
                y[31] |= sign;
                if VerifyingKey::from_bytes(&y).is_ok_and(|key| !key.is_weak()) {
                    out.push(y);
                }
            }
        }
        out
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

    /// Regression (issue 14, item 7): the FIPS 203 hash check was documented but not
    /// performed, so a decapsulation key with a tampered `H(ek)` loaded and silently
    /// broke decapsulation.
    #[test]
    fn kem_secret_with_a_tampered_ek_hash_is_refused() {
        let kp = KemKeyPair::generate().unwrap();
        let h = KEM_DK_PKE_LEN + KEM_PUBLIC_KEY_RAW_LEN;
        for i in [h, h + 17, h + 31] {
            let mut dk = kp.secret_bytes().to_vec();
            dk[i] ^= 0x01;
            assert_eq!(
                KemKeyPair::from_parts(&dk, kp.public().clone()).err(),
                Some(DecodeError::InvalidKey {
                    kind: "ML-KEM-1024 secret"
                }),
                "tampered H(ek) byte {i} loaded"
            );
        }
        // The implicit-rejection seed z is not covered by any check (FIPS 203).
        let mut dk = kp.secret_bytes().to_vec();
        dk[h + 32] ^= 0x01;
        assert!(KemKeyPair::from_parts(&dk, kp.public().clone()).is_ok());
    }

    /// The base-key check of `docs/protocol.md` §4: of the eight keys `u(P + T)` for
    /// the 8-torsion points `T`, only `u(P)` itself is accepted.
    #[test]
    fn only_the_prime_order_member_of_a_torsion_coset_is_accepted() {
        let key = DhKeyPair::generate().unwrap();
        let p = MontgomeryPoint(key.public.0).to_edwards(0).unwrap();
        for (i, t) in curve25519_dalek::constants::EIGHT_TORSION
            .iter()
            .enumerate()
        {
            let variant = DhPublicKey((p + t).to_montgomery().to_bytes());
            assert_eq!(i == 0, variant == *key.public());
            assert_eq!(
                variant.prime_order_point("X25519 base").is_ok(),
                i == 0,
                "torsion variant {i}"
            );
            // X25519 cannot tell them apart: that is why the check is needed.
            let other = DhKeyPair::generate().unwrap();
            assert_eq!(
                *other.agree(&variant).unwrap(),
                *other.agree(key.public()).unwrap()
            );
        }
        let twist = (0u8..=255)
            .map(|b| [b; 32])
            .find(|u| is_canonical_u(u) && MontgomeryPoint(*u).to_edwards(0).is_none())
            .unwrap();
        assert!(DhPublicKey(twist).prime_order_point("X25519 base").is_err());
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
