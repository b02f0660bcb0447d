//! The JSON bodies of the API, shared by the server and [`crate::client`]. Byte fields
//! are base64 with the standard alphabet and padding (`docs/relay-api.md`).

use serde::{Deserialize, Serialize};

/// Base64 (standard alphabet, padded) for `Vec<u8>` fields.
pub mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes bytes as base64.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    /// Deserializes base64 into bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD
            .decode(s)
            .map_err(|_| serde::de::Error::custom("invalid base64"))
    }

    /// `Option<Vec<u8>>` as optional base64.
    pub mod option {
        use super::STANDARD;
        use base64::Engine;
        use serde::{Deserialize, Deserializer, Serializer};

        /// Serializes optional bytes.
        pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(b) => s.serialize_some(&STANDARD.encode(b)),
                None => s.serialize_none(),
            }
        }

        /// Deserializes optional bytes.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
            let s: Option<String> = Option::deserialize(d)?;
            s.map(|s| {
                STANDARD
                    .decode(s)
                    .map_err(|_| serde::de::Error::custom("invalid base64"))
            })
            .transpose()
        }
    }
}

/// `POST /v1/accounts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Account name: 1–64 of `a-z 0-9 _ -`.
    pub account: String,
    /// The first device's registration id.
    pub registration_id: u32,
    /// The device's credential (≥ 128 random bits, 22–512 printable ASCII characters).
    pub credential: String,
    /// Required when the relay is configured with an invite token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite_token: Option<String>,
}

/// Answer to registration and device linking.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceCreated {
    /// The account.
    pub account: String,
    /// The new device's id.
    pub device: u32,
}

/// `POST /v1/devices`: link another device to the authenticated account.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkDeviceRequest {
    /// The new device's registration id.
    pub registration_id: u32,
    /// The new device's credential.
    pub credential: String,
}

/// One device of an account.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceEntry {
    /// Device id.
    pub device: u32,
    /// Registration id.
    pub registration_id: u32,
    /// Encoded identity key, once uploaded.
    #[serde(default, with = "b64::option", skip_serializing_if = "Option::is_none")]
    pub identity: Option<Vec<u8>>,
}

/// `GET /v1/accounts/{account}/devices`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceList {
    /// Devices in id order.
    pub devices: Vec<DeviceEntry>,
}

/// A public prekey in JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PreKeyJson {
    /// Prekey id.
    pub id: u32,
    /// Creation time (seconds since the epoch).
    pub created_at: u64,
    /// Encoded public key (`DhPublicKey::encode`, 33 bytes, or `KemPublicKey::encode`).
    #[serde(with = "b64")]
    pub key: Vec<u8>,
    /// 64-byte identity signature.
    #[serde(with = "b64")]
    pub signature: Vec<u8>,
}

/// `PUT /v1/keys`: any subset; everything is verified, then stored atomically.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyUploadRequest {
    /// Encoded identity key (`IdentityKey::encode`); fixed once set.
    #[serde(default, with = "b64::option", skip_serializing_if = "Option::is_none")]
    pub identity: Option<Vec<u8>>,
    /// The signed X25519 prekey (replaces the current one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_prekey: Option<PreKeyJson>,
    /// One-time X25519 prekeys (at most 100).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub one_time_prekeys: Vec<PreKeyJson>,
    /// One-time ML-KEM-1024 prekeys (at most 100).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kem_prekeys: Vec<PreKeyJson>,
    /// The last-resort ML-KEM-1024 prekey (replaces the current one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_resort_kem_prekey: Option<PreKeyJson>,
}

/// `GET /v1/keys/count`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyCountsResponse {
    /// Remaining one-time X25519 prekeys.
    pub one_time: u64,
    /// Remaining one-time ML-KEM prekeys.
    pub kem_one_time: u64,
}

/// One device's bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleEntry {
    /// Device id.
    pub device: u32,
    /// `PreKeyBundle::encode` of the device's bundle (verify it with
    /// `PreKeyBundle::decode(..)?.verify()`).
    #[serde(with = "b64")]
    pub bundle: Vec<u8>,
}

/// `GET /v1/bundles/{account}[/{device}]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleResponse {
    /// One entry per device with published keys.
    pub bundles: Vec<BundleEntry>,
}

/// One ciphertext for one device.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutgoingJson {
    /// Recipient device.
    pub device: u32,
    /// The registration id the sender believes the device has.
    pub registration_id: u32,
    /// Ciphertext.
    #[serde(with = "b64")]
    pub body: Vec<u8>,
}

/// `PUT /v1/messages/{account}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// Client-chosen message id (1–64 of `A-Z a-z 0-9 _ -`); a resend with the same id
    /// is stored once.
    pub id: String,
    /// One entry per recipient device (every device of the account except the sender).
    pub messages: Vec<OutgoingJson>,
}

/// 409 body of a send: the device list differs from the account's.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MismatchedDevices {
    /// Devices the account has that the request left out.
    pub missing: Vec<u32>,
    /// Devices in the request the account does not have.
    pub extra: Vec<u32>,
}

/// 410 body of a send: devices whose registration id changed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StaleDevices {
    /// The stale device ids.
    pub stale: Vec<u32>,
}

/// Every error body: a stable code plus, for 409/410, the device lists.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable machine-readable code (`docs/relay-api.md` lists them).
    pub error: String,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// 409 on send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mismatched: Option<MismatchedDevices>,
    /// 410 on send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale: Option<StaleDevices>,
}

/// A frame the relay sends on the WebSocket (JSON text frame).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// A queued message; acknowledge with its `seq`.
    Message {
        /// Queue position: the acknowledgement handle.
        seq: i64,
        /// Sender account.
        sender: String,
        /// Sender device.
        sender_device: u32,
        /// The sender's message id.
        id: String,
        /// When the relay accepted it.
        timestamp: u64,
        /// Ciphertext.
        #[serde(with = "b64")]
        body: Vec<u8>,
    },
    /// Every message queued when the connection opened has been pushed.
    QueueEmpty,
    /// The relay is shutting down: reconnect (to any replica).
    Reconnect,
}

/// A frame the client sends on the WebSocket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// The message with this `seq` was received and may be deleted.
    Ack {
        /// The `seq` of a [`ServerFrame::Message`].
        seq: i64,
    },
}
