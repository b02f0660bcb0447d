//! The messenger's two small formats (README, "Formats"):
//!
//! - the **transport envelope** is the body the relay stores. It is all the relay sees:
//!   `0x01 ‖ 0x01 ‖ session ciphertext` (a `signal-core` `SignalMessage` or
//!   `PreKeyMessage`) or `0x01 ‖ 0x02 ‖ group id (32) ‖ sender-key message`;
//! - the **content** is what a session or group ciphertext decrypts to: `0x01 ‖ JSON` of
//!   [`Content`]. It never leaves a device unencrypted.
//!
//! Both start with a version byte; anything else is rejected. Decoding is bounded by
//! the input (the relay caps bodies at 256 KiB; `signal-core` caps plaintexts).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use signal_core::group::GroupId;

/// Version byte of both formats.
pub const VERSION: u8 = 1;
const KIND_SESSION: u8 = 1;
const KIND_GROUP: u8 = 2;
/// Group ids are 32 bytes.
const GROUP_ID_LEN: usize = 32;
/// Most members a group may list.
pub const MAX_GROUP_MEMBERS: usize = 64;
/// Longest text message accepted, in bytes.
pub const MAX_TEXT_LEN: usize = 64 * 1024;

/// A relay body, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport<'a> {
    /// A 1:1 session ciphertext.
    Session(&'a [u8]),
    /// A sender-key ciphertext for a group.
    Group {
        /// The group.
        group: GroupId,
        /// The sender-key message.
        message: &'a [u8],
    },
}

/// Why a body or content did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The input is shorter than its header.
    #[error("truncated envelope")]
    Truncated,
    /// An unknown version byte.
    #[error("unsupported format version {0}")]
    Version(u8),
    /// An unknown envelope kind.
    #[error("unknown envelope kind {0}")]
    Kind(u8),
    /// The content is not valid (JSON, names, lengths).
    #[error("invalid content: {0}")]
    Content(String),
}

impl<'a> Transport<'a> {
    /// Encodes a session ciphertext.
    pub fn session(ciphertext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + ciphertext.len());
        out.extend_from_slice(&[VERSION, KIND_SESSION]);
        out.extend_from_slice(ciphertext);
        out
    }

    /// Encodes a group ciphertext.
    pub fn group(group: &GroupId, message: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + GROUP_ID_LEN + message.len());
        out.extend_from_slice(&[VERSION, KIND_GROUP]);
        out.extend_from_slice(group.as_bytes());
        out.extend_from_slice(message);
        out
    }

    /// Decodes a relay body.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let (&version, rest) = bytes.split_first().ok_or(FormatError::Truncated)?;
        if version != VERSION {
            return Err(FormatError::Version(version));
        }
        let (&kind, rest) = rest.split_first().ok_or(FormatError::Truncated)?;
        match kind {
            KIND_SESSION => Ok(Self::Session(rest)),
            KIND_GROUP => {
                let (id, message) = rest
                    .split_first_chunk::<GROUP_ID_LEN>()
                    .ok_or(FormatError::Truncated)?;
                Ok(Self::Group {
                    group: GroupId::from_bytes(*id),
                    message,
                })
            }
            other => Err(FormatError::Kind(other)),
        }
    }
}

/// What a ciphertext decrypts to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Content {
    /// A 1:1 text message. `to` is set on the copy sent to the sender's own other
    /// devices: the contact it was sent to.
    Text {
        /// The text.
        body: String,
        /// For a copy to our own devices: the recipient.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
    },
    /// A group's state as the sender sees it (sent over 1:1 sessions): its name and
    /// members, and optionally the sender's current sender-key chain.
    Group {
        /// Group id, hex.
        group: String,
        /// Display name.
        name: String,
        /// Every member account, the sender included.
        members: Vec<String>,
        /// The sender's `SenderKeyDistributionMessage`, base64.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        distribution: Option<String>,
    },
    /// A group text (inside a sender-key ciphertext).
    GroupText {
        /// The text.
        body: String,
    },
}

impl Content {
    /// `0x01 ‖ JSON`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        // Serializing these plain structs to a Vec cannot fail.
        if let Ok(json) = serde_json::to_vec(self) {
            out.extend_from_slice(&json);
        }
        out
    }

    /// Decodes and validates content.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let (&version, json) = bytes.split_first().ok_or(FormatError::Truncated)?;
        if version != VERSION {
            return Err(FormatError::Version(version));
        }
        let content: Self =
            serde_json::from_slice(json).map_err(|e| FormatError::Content(e.to_string()))?;
        content.validate()?;
        Ok(content)
    }

    fn validate(&self) -> Result<(), FormatError> {
        let bad = |what: &str| Err(FormatError::Content(what.to_owned()));
        match self {
            Self::Text { body, to } => {
                if body.len() > MAX_TEXT_LEN {
                    return bad("text too long");
                }
                if to.as_deref().is_some_and(|t| !valid_name(t)) {
                    return bad("invalid recipient name");
                }
            }
            Self::GroupText { body } => {
                if body.len() > MAX_TEXT_LEN {
                    return bad("text too long");
                }
            }
            Self::Group {
                group,
                name,
                members,
                distribution,
            } => {
                if parse_group_id(group).is_none() {
                    return bad("invalid group id");
                }
                if !valid_group_name(name) {
                    return bad("invalid group name");
                }
                if members.is_empty() || members.len() > MAX_GROUP_MEMBERS {
                    return bad("invalid member count");
                }
                if members.iter().any(|m| !valid_name(m)) {
                    return bad("invalid member name");
                }
                if distribution
                    .as_deref()
                    .is_some_and(|d| STANDARD.decode(d).is_err())
                {
                    return bad("invalid distribution encoding");
                }
            }
        }
        Ok(())
    }
}

/// An account name as the relay accepts it: 1–64 of `a-z 0-9 _ -`.
pub fn valid_name(name: &str) -> bool {
    relay_server::auth::valid_account(name)
}

/// A group's display name: 1–64 of `a-z A-Z 0-9 _ - .`.
pub fn valid_group_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A group id from 64 hex digits.
pub fn parse_group_id(text: &str) -> Option<GroupId> {
    if text.len() != 2 * GROUP_ID_LEN {
        return None;
    }
    let mut id = [0u8; GROUP_ID_LEN];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(GroupId::from_bytes(id))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn transport_round_trips_and_refuses_garbage() {
        let group = GroupId::from_bytes([7; 32]);
        let body = Transport::session(b"abc");
        assert_eq!(Transport::decode(&body), Ok(Transport::Session(b"abc")));
        let body = Transport::group(&group, b"xyz");
        assert_eq!(
            Transport::decode(&body),
            Ok(Transport::Group {
                group,
                message: b"xyz"
            })
        );
        assert_eq!(Transport::decode(&[]), Err(FormatError::Truncated));
        assert_eq!(Transport::decode(&[1]), Err(FormatError::Truncated));
        assert_eq!(Transport::decode(&[2, 1]), Err(FormatError::Version(2)));
        assert_eq!(Transport::decode(&[1, 9]), Err(FormatError::Kind(9)));
        assert_eq!(
            Transport::decode(&[1, 2, 0, 0]),
            Err(FormatError::Truncated)
        );
    }

    #[test]
    fn content_round_trips_and_validates() {
        let c = Content::Group {
            group: hex(&[1; 32]),
            name: "weekend".into(),
            members: vec!["alice".into(), "bob".into()],
            distribution: Some(STANDARD.encode([1, 2, 3])),
        };
        assert_eq!(Content::decode(&c.encode()), Ok(c));
        let t = Content::Text {
            body: "hi".into(),
            to: None,
        };
        assert_eq!(Content::decode(&t.encode()), Ok(t));
        for bad in [
            &b""[..],
            b"\x02{}",
            b"\x01{",
            b"\x01{\"type\":\"text\"}",
            b"\x01{\"type\":\"text\",\"body\":\"x\",\"extra\":1}",
            b"\x01{\"type\":\"group\",\"group\":\"00\",\"name\":\"g\",\"members\":[\"a\"]}",
        ] {
            assert!(Content::decode(bad).is_err(), "{bad:?}");
        }
        let evil = Content::Group {
            group: hex(&[1; 32]),
            name: "g".into(),
            members: vec!["Not Valid".into()],
            distribution: None,
        };
        assert!(Content::decode(&evil.encode()).is_err());
    }

    #[test]
    fn group_ids_parse_only_as_64_hex_digits() {
        let id = GroupId::from_bytes([0xab; 32]);
        assert_eq!(parse_group_id(&hex(id.as_bytes())), Some(id));
        assert_eq!(parse_group_id("ab"), None);
        assert_eq!(parse_group_id(&"zz".repeat(32)), None);
        assert_eq!(parse_group_id(&"é".repeat(32)), None);
    }
}
