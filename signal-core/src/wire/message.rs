//! Layouts of the 1:1 messages (`docs/protocol.md` §Messages).

use crate::error::DecodeError;
use crate::identity::IdentityKey;
use crate::keys::{DH_PUBLIC_LEN, DhPublicKey, KEM_CIPHERTEXT_LEN};
use crate::limits::MAX_MESSAGE_LEN;
use crate::prekey::PreKeyId;
use crate::ratchet::message_key::TAG_LEN;

use super::{Reader, VERSION, Writer, kind};

/// Length of a [`SignalMessage`] header: version, type, ratchet key, previous counter,
/// counter.
pub(crate) const MESSAGE_HEADER_LEN: usize = 2 + DH_PUBLIC_LEN + 4 + 4;

/// Which kind of encoded message a byte string is, read from its first two bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A [`SignalMessage`]: a message on an established session.
    Message,
    /// A [`PreKeyMessage`]: a message that also establishes the session.
    PreKey,
    /// A sender-key group message.
    SenderKey,
    /// A sender-key distribution message.
    SenderKeyDistribution,
}

impl MessageKind {
    /// Classifies an encoded message by its version and type bytes.
    pub fn of(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion {
                found: version,
                supported: VERSION,
            });
        }
        match r.u8()? {
            kind::MESSAGE => Ok(Self::Message),
            kind::PREKEY_MESSAGE => Ok(Self::PreKey),
            kind::SENDER_KEY_MESSAGE => Ok(Self::SenderKey),
            kind::SENDER_KEY_DISTRIBUTION => Ok(Self::SenderKeyDistribution),
            found => Err(DecodeError::WrongType {
                found,
                expected: kind::MESSAGE,
            }),
        }
    }
}

/// A Double Ratchet message: header and AES-256-GCM ciphertext with its tag.
#[derive(Clone, PartialEq, Eq)]
pub struct SignalMessage {
    /// Sender's current ratchet public key.
    pub ratchet_key: DhPublicKey,
    /// Number of messages in the sender's previous sending chain.
    pub previous_counter: u32,
    /// This message's counter in the current sending chain.
    pub counter: u32,
    /// The encoding, kept so the header bytes authenticated as AD are exactly the bytes
    /// received.
    encoded: Vec<u8>,
}

impl SignalMessage {
    /// Encodes a header; the caller appends ciphertext and tag.
    pub(crate) fn encode_header(
        ratchet_key: &DhPublicKey,
        previous_counter: u32,
        counter: u32,
        plaintext_len: usize,
    ) -> Vec<u8> {
        let mut w = Writer::new(kind::MESSAGE, MESSAGE_HEADER_LEN + plaintext_len + TAG_LEN);
        w.bytes(&ratchet_key.encode());
        w.u32(previous_counter);
        w.u32(counter);
        w.into_vec()
    }

    /// Decodes a message. The ciphertext must hold at least a tag.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(DecodeError::TooLong {
                length: bytes.len(),
                limit: MAX_MESSAGE_LEN,
            });
        }
        let mut r = Reader::new(bytes);
        r.header(kind::MESSAGE)?;
        let ratchet_key = DhPublicKey::read(&mut r)?;
        let previous_counter = r.u32()?;
        let counter = r.u32()?;
        if r.remaining() < TAG_LEN {
            return Err(DecodeError::UnexpectedEnd {
                needed: TAG_LEN,
                available: r.remaining(),
            });
        }
        Ok(Self {
            ratchet_key,
            previous_counter,
            counter,
            encoded: bytes.to_vec(),
        })
    }

    /// The header bytes (authenticated as associated data).
    pub(crate) fn header_bytes(&self) -> &[u8] {
        &self.encoded[..MESSAGE_HEADER_LEN]
    }

    /// Ciphertext followed by the 16-byte tag.
    pub(crate) fn ciphertext(&self) -> &[u8] {
        &self.encoded[MESSAGE_HEADER_LEN..]
    }

    /// The full encoding.
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }
}

impl core::fmt::Debug for SignalMessage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SignalMessage")
            .field("ratchet_key", &self.ratchet_key)
            .field("previous_counter", &self.previous_counter)
            .field("counter", &self.counter)
            .field("ciphertext_len", &self.ciphertext().len())
            .finish()
    }
}

/// The fields of a [`PreKeyMessage`] other than the enclosed message, borrowed.
#[derive(Clone, Copy)]
pub(crate) struct PreKeyFields<'a> {
    pub(crate) registration_id: u32,
    pub(crate) signed_prekey_id: PreKeyId,
    pub(crate) one_time_prekey_id: Option<PreKeyId>,
    pub(crate) kem_prekey_id: PreKeyId,
    pub(crate) kem_ciphertext: &'a [u8; KEM_CIPHERTEXT_LEN],
    pub(crate) base_key: &'a DhPublicKey,
    pub(crate) identity: &'a [u8; crate::identity::IDENTITY_KEY_LEN],
}

/// The first messages of a session: the PQXDH parameters the responder needs, and the
/// first [`SignalMessage`].
#[derive(Clone, PartialEq, Eq)]
pub struct PreKeyMessage {
    /// Sender's registration id.
    pub registration_id: u32,
    /// Responder's signed prekey used.
    pub signed_prekey_id: PreKeyId,
    /// Responder's one-time prekey used, if any.
    pub one_time_prekey_id: Option<PreKeyId>,
    /// Responder's KEM prekey used.
    pub kem_prekey_id: PreKeyId,
    /// ML-KEM-1024 ciphertext.
    pub kem_ciphertext: Box<[u8; KEM_CIPHERTEXT_LEN]>,
    /// Initiator's ephemeral (base) key.
    pub base_key: DhPublicKey,
    /// Initiator's identity.
    pub identity: IdentityKey,
    /// The enclosed message.
    pub message: SignalMessage,
}

impl PreKeyMessage {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        Self::encode_parts(self.fields(&self.identity.encode()), self.message.encoded())
    }

    /// The fields outside the inner message; `identity` is `self.identity` encoded.
    pub(crate) fn fields<'a>(
        &'a self,
        identity: &'a [u8; crate::identity::IDENTITY_KEY_LEN],
    ) -> PreKeyFields<'a> {
        PreKeyFields {
            registration_id: self.registration_id,
            signed_prekey_id: self.signed_prekey_id,
            one_time_prekey_id: self.one_time_prekey_id,
            kem_prekey_id: self.kem_prekey_id,
            kem_ciphertext: &self.kem_ciphertext,
            base_key: &self.base_key,
            identity,
        }
    }

    /// Encodes from parts: the sender's own identity is passed encoded, so sending needs
    /// no point decompression.
    pub(crate) fn encode_parts(f: PreKeyFields<'_>, inner: &[u8]) -> Vec<u8> {
        let mut w = Writer::new(
            kind::PREKEY_MESSAGE,
            4 * 5 + 1 + KEM_CIPHERTEXT_LEN + 2 * DH_PUBLIC_LEN + inner.len(),
        );
        w.u32(f.registration_id);
        w.u32(f.signed_prekey_id);
        w.bool(f.one_time_prekey_id.is_some());
        if let Some(id) = f.one_time_prekey_id {
            w.u32(id);
        }
        w.u32(f.kem_prekey_id);
        w.bytes(&f.kem_ciphertext[..]);
        w.bytes(&f.base_key.encode());
        w.bytes(f.identity);
        w.bytes(inner);
        w.into_vec()
    }

    /// Decodes the message (the inner message must be a complete [`SignalMessage`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(DecodeError::TooLong {
                length: bytes.len(),
                limit: MAX_MESSAGE_LEN,
            });
        }
        let mut r = Reader::new(bytes);
        r.header(kind::PREKEY_MESSAGE)?;
        let registration_id = r.u32()?;
        let signed_prekey_id = r.u32()?;
        let one_time_prekey_id = if r.bool("one_time_prekey flag")? {
            Some(r.u32()?)
        } else {
            None
        };
        let kem_prekey_id = r.u32()?;
        let kem_ciphertext = Box::new(r.array::<KEM_CIPHERTEXT_LEN>()?);
        let base_key = DhPublicKey::read(&mut r)?;
        let identity = IdentityKey::read(&mut r)?;
        let message = SignalMessage::decode(r.rest())?;
        Ok(Self {
            registration_id,
            signed_prekey_id,
            one_time_prekey_id,
            kem_prekey_id,
            kem_ciphertext,
            base_key,
            identity,
            message,
        })
    }
}

impl core::fmt::Debug for PreKeyMessage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PreKeyMessage")
            .field("registration_id", &self.registration_id)
            .field("signed_prekey_id", &self.signed_prekey_id)
            .field("one_time_prekey_id", &self.one_time_prekey_id)
            .field("kem_prekey_id", &self.kem_prekey_id)
            .field("base_key", &self.base_key)
            .field("identity", &self.identity)
            .field("message", &self.message)
            .finish()
    }
}
