//! Root key and the root KDF: `RK', CK = HKDF-SHA256(salt = RK, ikm = DH, info, 64)`.

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::ChainKey;

/// HKDF info of the root KDF.
pub(crate) const ROOT_INFO: &[u8] = b"signal-core v1 ratchet";

/// The root key. Secret.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct RootKey([u8; 32]);

impl RootKey {
    pub(crate) fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// One DH ratchet step: mixes a DH output into the root key, returning the next root
    /// key and a fresh chain key at index 0.
    pub(crate) fn step(&self, dh_output: &[u8; 32]) -> (RootKey, ChainKey) {
        let hk = Hkdf::<Sha256>::new(Some(&self.0), dh_output);
        let mut okm = zeroize::Zeroizing::new([0u8; 64]);
        // 64 bytes is far below HKDF-SHA256's 8160-byte maximum: expand cannot fail.
        let _ = hk.expand(ROOT_INFO, &mut okm[..]);
        let mut rk = [0u8; 32];
        let mut ck = [0u8; 32];
        rk.copy_from_slice(&okm[..32]);
        ck.copy_from_slice(&okm[32..]);
        (RootKey(rk), ChainKey::new(ck, 0))
    }
}

impl core::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("RootKey(..)")
    }
}
