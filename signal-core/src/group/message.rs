//! The sender-key group message.
//!
//! ```text
//! VERSION(1) ‖ 0x03 ‖ chain_id(u32) ‖ iteration(u32) ‖ AES-256-GCM(ciphertext ‖ tag(16))
//!   ‖ signature(64)
//! ```
//!
//! The AEAD's associated data is the 10-byte header; the Ed25519 signature (chain
//! signing key) covers every byte before it.

use crate::error::DecodeError;
use crate::identity::SIGNATURE_LEN;
use crate::limits::MAX_MESSAGE_LEN;
use crate::ratchet::message_key::TAG_LEN;
use crate::wire::{Reader, kind};

/// Length of the header: version, type, chain id, iteration.
pub const HEADER_LEN: usize = 2 + 4 + 4;
/// Length of the shortest message (empty plaintext).
pub const MIN_MESSAGE_LEN: usize = HEADER_LEN + TAG_LEN + SIGNATURE_LEN;

/// A parsed group message: borrowed views into the encoded bytes. Nothing in it is
/// authenticated until the signature is verified.
#[derive(Debug, Clone, Copy)]
pub struct SenderKeyMessage<'a> {
    /// The sender chain.
    pub chain_id: u32,
    /// The chain iteration that encrypted it.
    pub iteration: u32,
    pub(crate) header: &'a [u8],
    pub(crate) ciphertext: &'a [u8],
    pub(crate) signed: &'a [u8],
    pub(crate) signature: [u8; SIGNATURE_LEN],
}

impl<'a> SenderKeyMessage<'a> {
    /// Parses a group message without verifying anything.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(DecodeError::TooLong {
                length: bytes.len(),
                limit: MAX_MESSAGE_LEN,
            });
        }
        if bytes.len() < MIN_MESSAGE_LEN {
            return Err(DecodeError::UnexpectedEnd {
                needed: MIN_MESSAGE_LEN,
                available: bytes.len(),
            });
        }
        let mut r = Reader::new(bytes);
        r.header(kind::SENDER_KEY_MESSAGE)?;
        let chain_id = r.u32()?;
        let iteration = r.u32()?;
        let body_len = r.remaining().saturating_sub(SIGNATURE_LEN);
        let ciphertext = r.take(body_len)?;
        let signature = r.array::<SIGNATURE_LEN>()?;
        r.finish()?;
        let signed_len = bytes.len() - SIGNATURE_LEN;
        Ok(Self {
            chain_id,
            iteration,
            header: bytes.get(..HEADER_LEN).unwrap_or_default(),
            ciphertext,
            signed: bytes.get(..signed_len).unwrap_or_default(),
            signature,
        })
    }
}
