//! Message keys: `HKDF-Expand-SHA256(PRK = MK, info, 44)` → AES-256 key ‖ GCM nonce, and
//! the AES-256-GCM encryption of one message.
//!
//! `MK` is an HMAC-SHA256 output, already a uniformly random 32-byte key, so the
//! HKDF-Extract step is skipped as RFC 5869 §3.3 allows; this halves the hashing per
//! message.

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::aead::{Nonce, Tag};
use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// HKDF info for 1:1 message keys.
pub(crate) const MESSAGE_KEYS_INFO: &[u8] = b"signal-core v1 message keys";
/// Length of the GCM tag appended to each ciphertext.
pub(crate) const TAG_LEN: usize = 16;

/// The 32-byte output of the chain KDF for one counter. Kept for skipped messages;
/// expanded into [`MessageKeys`] when used. Secret.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct MessageKeySeed {
    seed: [u8; 32],
    counter: u32,
}

impl MessageKeySeed {
    pub(crate) fn new(seed: [u8; 32], counter: u32) -> Self {
        Self { seed, counter }
    }

    pub(crate) fn counter(&self) -> u32 {
        self.counter
    }

    pub(crate) fn seed_bytes(&self) -> &[u8; 32] {
        &self.seed
    }

    /// Expands to the AEAD key and nonce with `info`.
    pub(crate) fn expand(&self, info: &[u8]) -> MessageKeys {
        let mut okm = zeroize::Zeroizing::new([0u8; 44]);
        // A 32-byte PRK is accepted (≥ the hash length) and 44 bytes is below the maximum
        // output, so neither step can fail.
        if let Ok(hk) = Hkdf::<Sha256>::from_prk(&self.seed) {
            let _ = hk.expand(info, &mut okm[..]);
        }
        let mut keys = MessageKeys {
            key: [0u8; 32],
            nonce: [0u8; 12],
        };
        keys.key.copy_from_slice(&okm[..32]);
        keys.nonce.copy_from_slice(&okm[32..]);
        keys
    }
}

impl core::fmt::Debug for MessageKeySeed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "MessageKeySeed {{ counter: {}, .. }}", self.counter)
    }
}

/// An AES-256-GCM key and nonce for exactly one message. Secret.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct MessageKeys {
    key: [u8; 32],
    nonce: [u8; 12],
}

impl MessageKeys {
    /// Encrypts `buf` in place and appends the tag.
    pub(crate) fn seal(&self, aad: &[u8], buf: &mut Vec<u8>, start: usize) {
        let cipher = Aes256Gcm::new(&self.key.into());
        let nonce = Nonce::<Aes256Gcm>::from(self.nonce);
        // Encryption fails only for plaintexts over 64 GiB; callers bound plaintexts to
        // MAX_PLAINTEXT_LEN, far below.
        if let Ok(tag) =
            cipher.encrypt_inout_detached(&nonce, aad, InOutBuf::from(&mut buf[start..]))
        {
            buf.extend_from_slice(&tag);
        }
    }

    /// Decrypts `ciphertext ‖ tag`, returning the plaintext, or `None` if authentication
    /// fails.
    pub(crate) fn open(
        &self,
        aad: &[u8],
        ciphertext_and_tag: &[u8],
    ) -> Option<zeroize::Zeroizing<Vec<u8>>> {
        let split = ciphertext_and_tag.len().checked_sub(TAG_LEN)?;
        let (ct, tag) = ciphertext_and_tag.split_at(split);
        let tag = Tag::<Aes256Gcm>::try_from(tag).ok()?;
        let cipher = Aes256Gcm::new(&self.key.into());
        let nonce = Nonce::<Aes256Gcm>::from(self.nonce);
        let mut out = zeroize::Zeroizing::new(ct.to_vec());
        cipher
            .decrypt_inout_detached(&nonce, aad, InOutBuf::from(&mut out[..]), &tag)
            .ok()?;
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let keys = MessageKeySeed::new([7; 32], 0).expand(MESSAGE_KEYS_INFO);
        let mut buf = b"hdr".to_vec();
        buf.extend_from_slice(b"hello");
        keys.seal(b"ad", &mut buf, 3);
        assert_eq!(&keys.open(b"ad", &buf[3..]).unwrap()[..], b"hello");
        assert!(keys.open(b"ae", &buf[3..]).is_none());
        let mut bad = buf.clone();
        bad[4] ^= 1;
        assert!(keys.open(b"ad", &bad[3..]).is_none());
        assert!(keys.open(b"ad", &buf[3..10]).is_none());
    }
}
