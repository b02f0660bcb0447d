//! Device credentials and request authentication.
//!
//! A credential is chosen by the client and carries at least 128 random bits. The relay
//! stores only `SHA-256(domain ‖ salt ‖ credential)` with a random per-device salt and
//! compares hashes in constant time. A slow password hash (argon2) is not needed: it
//! defends low-entropy human passwords against offline guessing, while guessing a
//! 128-bit random credential from a leaked hash costs 2^128 hashes either way, and a
//! fast hash keeps per-request authentication (every API call and WebSocket upgrade)
//! cheap.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::{CredentialHash, Storage, StoreError};

const DOMAIN: &[u8] = b"relay-server v1 device credential";

/// Shortest accepted credential (22 base64 characters carry 132 bits).
pub const MIN_CREDENTIAL_LEN: usize = 22;
/// Longest accepted credential.
pub const MAX_CREDENTIAL_LEN: usize = 512;

/// An authenticated device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Account name.
    pub account: String,
    /// Device id.
    pub device: u32,
}

/// Why a request was not authenticated. Unknown account, unknown device and wrong
/// credential are one variant: the caller cannot tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Missing, malformed or wrong credentials.
    #[error("unauthorized")]
    Unauthorized,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether `account` is a valid account name: 1–64 of `a-z 0-9 _ -`.
pub fn valid_account(account: &str) -> bool {
    !account.is_empty()
        && account.len() <= 64
        && account
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Whether `credential` is acceptable: 22–512 printable ASCII characters.
pub fn valid_credential(credential: &str) -> bool {
    (MIN_CREDENTIAL_LEN..=MAX_CREDENTIAL_LEN).contains(&credential.len())
        && credential.bytes().all(|b| b.is_ascii_graphic())
}

fn digest(salt: &[u8; 16], credential: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(salt);
    h.update(credential.as_bytes());
    h.finalize().into()
}

/// Hashes a new credential with a fresh random salt.
pub fn hash_credential(credential: &str) -> Result<CredentialHash, getrandom::Error> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt)?;
    Ok(CredentialHash {
        hash: digest(&salt, credential),
        salt,
    })
}

/// Parses `Authorization: Basic base64(account.device:credential)` or
/// `Authorization: Bearer account.device:credential`.
pub fn parse_header(header: &str) -> Option<(String, u32, String)> {
    let decoded;
    let raw = if let Some(b) = header.strip_prefix("Basic ") {
        decoded = String::from_utf8(STANDARD.decode(b.trim()).ok()?).ok()?;
        decoded.as_str()
    } else if let Some(t) = header.strip_prefix("Bearer ") {
        t.trim()
    } else {
        return None;
    };
    let (user, credential) = raw.split_once(':')?;
    let (account, device) = user.rsplit_once('.')?;
    if !valid_account(account) {
        return None;
    }
    let device: u32 = device.parse().ok()?;
    Some((account.to_owned(), device, credential.to_owned()))
}

/// Authenticates a request's `Authorization` header against the store.
pub async fn authenticate(
    store: &dyn Storage,
    header: Option<&str>,
) -> Result<Principal, AuthError> {
    let Some((account, device, credential)) = header.and_then(parse_header) else {
        return Err(AuthError::Unauthorized);
    };
    let stored = store.credential(&account, device).await?;
    // Hash and compare even when the device is unknown, so both cases take the same
    // work and return the same error.
    let (salt, expected, known) = match &stored {
        Some(c) => (c.salt, c.hash, true),
        None => ([0u8; 16], [0u8; 32], false),
    };
    let ok = digest(&salt, &credential).ct_eq(&expected);
    if bool::from(ok) && known {
        Ok(Principal { account, device })
    } else {
        Err(AuthError::Unauthorized)
    }
}

/// Builds the `Authorization` header value for a device (HTTP Basic).
pub fn basic_header(account: &str, device: u32, credential: &str) -> String {
    format!(
        "Basic {}",
        STANDARD.encode(format!("{account}.{device}:{credential}"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = basic_header("alice", 3, "abcdefghijklmnopqrstuvwxyz");
        assert_eq!(
            parse_header(&h),
            Some(("alice".into(), 3, "abcdefghijklmnopqrstuvwxyz".into()))
        );
        assert_eq!(
            parse_header("Bearer bob.1:x:y"),
            Some(("bob".into(), 1, "x:y".into()))
        );
        assert_eq!(parse_header("Basic !!!"), None);
        assert_eq!(parse_header("Bearer Bob.1:x"), None);
        assert_eq!(parse_header("Bearer bob.x:x"), None);
    }

    #[test]
    fn hash_is_salted() {
        let a = hash_credential("same-credential-0123456789").unwrap();
        let b = hash_credential("same-credential-0123456789").unwrap();
        assert_ne!(a.hash, b.hash);
        assert_eq!(digest(&a.salt, "same-credential-0123456789"), a.hash);
    }
}
