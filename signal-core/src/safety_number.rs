//! Safety numbers: what two people compare to be sure no one sits between them.
//!
//! For each party, `F = SHA-512^5200` iterated as
//! `H_0 = SHA-512(0x00 0x00 ‖ Encode(IK) ‖ user id)`, `H_i = SHA-512(H_{i-1} ‖ Encode(IK))`.
//! The *numeric* form takes the first 30 bytes of each party's `F` as six 5-byte
//! big-endian integers, each printed as `n mod 100000` in five digits (30 digits per
//! party), and concatenates the two parties' 30-digit strings in ascending order: 60
//! digits, identical on both sides. The *scannable* form is
//! `0x01 ‖ F_local[..32] ‖ F_remote[..32]`; the peer scans it and compares with its own
//! (local and remote swapped) in constant time.

use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use crate::identity::IdentityKey;

/// Hash iterations (as in Signal's numeric fingerprints).
pub const ITERATIONS: usize = 5200;
/// Version byte of the scannable form.
pub const SCANNABLE_VERSION: u8 = 1;
/// Length of the scannable form.
pub const SCANNABLE_LEN: usize = 65;

fn fingerprint(identity: &IdentityKey, user_id: &[u8]) -> [u8; 64] {
    let key = identity.encode();
    let mut h = Sha512::new();
    h.update([0u8, 0u8]);
    h.update(key);
    h.update(user_id);
    let mut out: [u8; 64] = h.finalize().into();
    for _ in 1..ITERATIONS {
        let mut h = Sha512::new();
        h.update(out);
        h.update(key);
        out = h.finalize().into();
    }
    out
}

fn digits(fp: &[u8; 64]) -> String {
    let mut s = String::with_capacity(30);
    for chunk in fp[..30].chunks_exact(5) {
        let n = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        s.push_str(&format!("{:05}", n % 100_000));
    }
    s
}

/// The safety number between a local and a remote identity.
#[derive(Clone)]
pub struct SafetyNumber {
    numeric: String,
    scannable: [u8; SCANNABLE_LEN],
}

impl SafetyNumber {
    /// Computes the safety number of `(local_user, local)` and `(remote_user, remote)`.
    /// User ids are the stable account ids both sides know each other by.
    pub fn new(
        local_user: &str,
        local: &IdentityKey,
        remote_user: &str,
        remote: &IdentityKey,
    ) -> Self {
        let l = fingerprint(local, local_user.as_bytes());
        let r = fingerprint(remote, remote_user.as_bytes());
        let (dl, dr) = (digits(&l), digits(&r));
        let numeric = if dl <= dr { dl + &dr } else { dr + &dl };
        let mut scannable = [0u8; SCANNABLE_LEN];
        scannable[0] = SCANNABLE_VERSION;
        scannable[1..33].copy_from_slice(&l[..32]);
        scannable[33..].copy_from_slice(&r[..32]);
        Self { numeric, scannable }
    }

    /// The 60-digit number.
    pub fn numeric(&self) -> &str {
        &self.numeric
    }

    /// The 60 digits in 12 groups of five, as people read them aloud.
    pub fn display_groups(&self) -> String {
        let groups: Vec<&str> = (0..12)
            .filter_map(|i| self.numeric.get(i * 5..i * 5 + 5))
            .collect();
        groups.join(" ")
    }

    /// The bytes to show as a QR code.
    pub fn scannable(&self) -> &[u8; SCANNABLE_LEN] {
        &self.scannable
    }

    /// Compares a number the user typed or read out, in constant time.
    pub fn matches_numeric(&self, other: &str) -> bool {
        let other: String = other.chars().filter(|c| !c.is_whitespace()).collect();
        other.len() == self.numeric.len()
            && bool::from(self.numeric.as_bytes().ct_eq(other.as_bytes()))
    }

    /// Compares the peer's scanned code with ours, in constant time: theirs lists their
    /// fingerprint first.
    pub fn matches_scanned(&self, scanned: &[u8]) -> bool {
        if scanned.len() != SCANNABLE_LEN || scanned[0] != SCANNABLE_VERSION {
            return false;
        }
        let mut swapped = [0u8; SCANNABLE_LEN];
        swapped[0] = SCANNABLE_VERSION;
        swapped[1..33].copy_from_slice(&self.scannable[33..]);
        swapped[33..].copy_from_slice(&self.scannable[1..33]);
        bool::from(swapped.ct_eq(scanned))
    }
}

impl core::fmt::Debug for SafetyNumber {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("SafetyNumber")
            .field(&self.display_groups())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityKeyPair;

    #[test]
    fn both_sides_agree_and_changes_show() {
        let a = IdentityKeyPair::generate().unwrap();
        let b = IdentityKeyPair::generate().unwrap();
        let at_a = SafetyNumber::new("alice", a.public(), "bob", b.public());
        let at_b = SafetyNumber::new("bob", b.public(), "alice", a.public());
        assert_eq!(at_a.numeric(), at_b.numeric());
        assert_eq!(at_a.numeric().len(), 60);
        assert!(at_a.numeric().chars().all(|c| c.is_ascii_digit()));
        assert!(at_a.matches_numeric(&at_b.display_groups()));
        assert!(at_a.matches_scanned(at_b.scannable()));
        assert!(at_b.matches_scanned(at_a.scannable()));
        assert!(!at_a.matches_scanned(at_a.scannable()));

        let m = IdentityKeyPair::generate().unwrap();
        let mitm = SafetyNumber::new("alice", a.public(), "bob", m.public());
        assert_ne!(mitm.numeric(), at_a.numeric());
        assert!(!mitm.matches_scanned(at_b.scannable()));
        let mut wrong = at_a.numeric().to_string();
        wrong.replace_range(0..1, if wrong.starts_with('0') { "1" } else { "0" });
        assert!(!at_b.matches_numeric(&wrong));
    }
}
