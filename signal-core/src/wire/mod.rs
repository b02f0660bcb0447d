//! Versioned, canonical binary encoding. Every byte this crate parses goes through
//! [`Reader`]; nothing else indexes into untrusted buffers.
//!
//! All integers are big-endian. Every structure starts with [`VERSION`] and a type byte
//! from [`kind`]. Variable-length fields carry a `u32` length prefix checked against a
//! documented bound *before* anything is allocated.

pub(crate) mod message;

pub use message::{MessageKind, PreKeyMessage, SignalMessage};

use crate::error::DecodeError;

/// The wire format version this implementation speaks. The first byte of every
/// encoded structure.
pub const VERSION: u8 = 1;

/// Type bytes of encoded structures (the second byte of every encoding).
pub mod kind {
    /// A Double Ratchet message ([`super::SignalMessage`]).
    pub const MESSAGE: u8 = 0x01;
    /// A pre-key message ([`super::PreKeyMessage`]).
    pub const PREKEY_MESSAGE: u8 = 0x02;
    /// A sender-key group message.
    pub const SENDER_KEY_MESSAGE: u8 = 0x03;
    /// A sender-key distribution message.
    pub const SENDER_KEY_DISTRIBUTION: u8 = 0x04;
    /// A prekey bundle.
    pub const PREKEY_BUNDLE: u8 = 0x10;
    /// A session record.
    pub const SESSION_RECORD: u8 = 0x20;
    /// An identity key pair (secret).
    pub const IDENTITY_KEY_PAIR: u8 = 0x21;
    /// A signed prekey record (secret).
    pub const SIGNED_PREKEY_RECORD: u8 = 0x22;
    /// A one-time prekey record (secret).
    pub const ONE_TIME_PREKEY_RECORD: u8 = 0x23;
    /// A KEM prekey record (secret).
    pub const KEM_PREKEY_RECORD: u8 = 0x24;
    /// A sender-key record.
    pub const SENDER_KEY_RECORD: u8 = 0x25;
}

/// A cursor over untrusted bytes. Every read is bounds-checked and returns
/// [`DecodeError`] instead of panicking.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Reads and checks the version byte and the type byte.
    pub(crate) fn header(&mut self, expected_kind: u8) -> Result<(), DecodeError> {
        let version = self.u8()?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion {
                found: version,
                supported: VERSION,
            });
        }
        let found = self.u8()?;
        if found != expected_kind {
            return Err(DecodeError::WrongType {
                found,
                expected: expected_kind,
            });
        }
        Ok(())
    }

    /// Takes the next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::UnexpectedEnd {
                needed: n,
                available: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Takes exactly `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Reads a flag byte that must be 0 or 1.
    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::NonCanonical { field }),
        }
    }

    /// Reads a `u32` element count bounded by `limit`, also checking that at least
    /// `min_elem_len` bytes per element remain (so the count cannot drive a large
    /// pre-allocation).
    pub(crate) fn count(
        &mut self,
        limit: usize,
        min_elem_len: usize,
    ) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n > limit {
            return Err(DecodeError::TooLong { length: n, limit });
        }
        let needed = n.saturating_mul(min_elem_len);
        if needed > self.buf.len() {
            return Err(DecodeError::UnexpectedEnd {
                needed,
                available: self.buf.len(),
            });
        }
        Ok(n)
    }

    /// Everything not yet read.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.buf)
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Fails unless every byte was read.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                count: self.buf.len(),
            })
        }
    }
}

/// Appends encodings to a byte vector.
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// Starts an encoding with the version and type bytes.
    pub(crate) fn new(kind: u8, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity + 2);
        buf.push(VERSION);
        buf.push(kind);
        Self { buf }
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }

    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    /// A `u32` element count.
    pub(crate) fn count(&mut self, n: usize) {
        self.u32(len_u32(n));
    }

    pub(crate) fn into_vec(self) -> Vec<u8> {
        self.buf
    }

    pub(crate) fn as_mut_vec(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }
}

/// Lengths in this crate are bounded far below `u32::MAX` before they are encoded;
/// saturate rather than wrap if that ever stops being true, so decoding fails loudly.
fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_checks_remaining_bytes() {
        let bytes = [0, 0, 0, 10, 1, 2, 3];
        let mut r = Reader::new(&bytes);
        assert!(matches!(
            r.count(100, 4),
            Err(DecodeError::UnexpectedEnd { .. })
        ));
    }

    #[test]
    fn header_checks_version_and_kind() {
        assert!(matches!(
            Reader::new(&[2, 1]).header(1),
            Err(DecodeError::UnsupportedVersion { found: 2, .. })
        ));
        assert!(matches!(
            Reader::new(&[1, 2]).header(1),
            Err(DecodeError::WrongType { found: 2, .. })
        ));
        assert!(Reader::new(&[1]).header(1).is_err());
    }
}
