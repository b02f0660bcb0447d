//! A typed async client for the whole relay API, used by the tests and by applications.

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use signal_core::prekey::{KemPreKeyPublic, OneTimePreKeyPublic, PreKeyBundle, SignedPreKeyPublic};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::auth::basic_header;
use crate::types::{
    BundleResponse, ClientFrame, DeviceCreated, DeviceList, ErrorBody, KeyCountsResponse,
    KeyUploadRequest, LinkDeviceRequest, MismatchedDevices, OutgoingJson, PreKeyJson,
    RegisterRequest, SendRequest, ServerFrame, StaleDevices,
};

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The HTTP request failed (connection, timeout, body).
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// The WebSocket failed.
    #[error("websocket: {0}")]
    WebSocket(#[from] Box<tungstenite::Error>),
    /// The relay refused the request.
    #[error("relay answered {status}: {error}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The error code of the body (`docs/relay-api.md`).
        error: String,
    },
    /// 409 on send: the device list is not the account's.
    #[error("mismatched devices: {0:?}")]
    Mismatched(MismatchedDevices),
    /// 410 on send: some devices re-registered.
    #[error("stale devices: {0:?}")]
    Stale(StaleDevices),
    /// 429: retry after this many seconds.
    #[error("rate limited; retry after {0} s")]
    RateLimited(u64),
    /// A bundle from the relay did not decode.
    #[error("bundle: {0}")]
    Decode(#[from] signal_core::DecodeError),
    /// A frame from the relay was not valid JSON.
    #[error("frame: {0}")]
    Frame(#[from] serde_json::Error),
}

/// How long [`RelayClient`] waits for a TCP connection to the relay.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long [`RelayClient`] waits for a whole HTTP request (not the WebSocket).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A device's credentials.
#[derive(Clone)]
struct Credentials {
    account: String,
    device: u32,
    credential: String,
}

/// The relay client. Cheap to clone.
#[derive(Clone)]
pub struct RelayClient {
    http: reqwest::Client,
    base: String,
    creds: Option<Credentials>,
}

impl std::fmt::Debug for RelayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayClient")
            .field("base", &self.base)
            .field(
                "account",
                &self.creds.as_ref().map(|c| (&c.account, c.device)),
            )
            .finish_non_exhaustive()
    }
}

impl RelayClient {
    /// An unauthenticated client for the relay at `base` (e.g. `http://127.0.0.1:8080`).
    /// Connecting times out after [`CONNECT_TIMEOUT`], a whole request after
    /// [`REQUEST_TIMEOUT`] (both reported as [`ClientError::Http`]).
    pub fn new(base: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .unwrap_or_default();
        Self {
            http,
            base: base.into().trim_end_matches('/').to_owned(),
            creds: None,
        }
    }

    /// This client acting as `account.device`.
    pub fn authenticated(&self, account: &str, device: u32, credential: &str) -> Self {
        Self {
            http: self.http.clone(),
            base: self.base.clone(),
            creds: Some(Credentials {
                account: account.to_owned(),
                device,
                credential: credential.to_owned(),
            }),
        }
    }

    /// The authenticated account and device, if any.
    pub fn identity(&self) -> Option<(&str, u32)> {
        self.creds.as_ref().map(|c| (c.account.as_str(), c.device))
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(c) = &self.creds {
            r = r.header(
                "authorization",
                basic_header(&c.account, c.device, &c.credential),
            );
        }
        r
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<Option<T>, ClientError> {
        let mut r = self.request(method, path);
        if let Some(b) = body {
            r = r.json(b);
        }
        let resp = r.send().await?;
        let status = resp.status();
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        if status.is_success() {
            return Ok(Some(resp.json().await?));
        }
        let retry = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body: Option<ErrorBody> = resp.json().await.ok();
        Err(match (status, body) {
            (StatusCode::TOO_MANY_REQUESTS, _) => ClientError::RateLimited(retry.unwrap_or(1)),
            (
                _,
                Some(ErrorBody {
                    mismatched: Some(m),
                    ..
                }),
            ) => ClientError::Mismatched(m),
            (_, Some(ErrorBody { stale: Some(s), .. })) => ClientError::Stale(s),
            (s, b) => ClientError::Status {
                status: s.as_u16(),
                error: b.map(|b| b.error).unwrap_or_default(),
            },
        })
    }

    /// Registers `account` with its first device (id 1) and returns a client
    /// authenticated as that device.
    pub async fn register(
        &self,
        account: &str,
        registration_id: u32,
        credential: &str,
        invite_token: Option<&str>,
    ) -> Result<Self, ClientError> {
        let created: Option<DeviceCreated> = self
            .call(
                reqwest::Method::POST,
                "/v1/accounts",
                Some(&RegisterRequest {
                    account: account.to_owned(),
                    registration_id,
                    credential: credential.to_owned(),
                    invite_token: invite_token.map(str::to_owned),
                }),
            )
            .await?;
        let device = created.map(|c| c.device).unwrap_or(1);
        Ok(self.authenticated(account, device, credential))
    }

    /// Links a new device to this client's account; returns a client for it.
    pub async fn link_device(
        &self,
        registration_id: u32,
        credential: &str,
    ) -> Result<Self, ClientError> {
        let created: Option<DeviceCreated> = self
            .call(
                reqwest::Method::POST,
                "/v1/devices",
                Some(&LinkDeviceRequest {
                    registration_id,
                    credential: credential.to_owned(),
                }),
            )
            .await?;
        let (account, device) = match created {
            Some(c) => (c.account, c.device),
            None => {
                return Err(ClientError::Status {
                    status: 204,
                    error: "no body".into(),
                });
            }
        };
        Ok(self.authenticated(&account, device, credential))
    }

    /// Removes a device of this client's account.
    pub async fn remove_device(&self, device: u32) -> Result<(), ClientError> {
        self.call::<serde_json::Value>(
            reqwest::Method::DELETE,
            &format!("/v1/devices/{device}"),
            None::<&()>,
        )
        .await?;
        Ok(())
    }

    /// Lists an account's devices.
    pub async fn devices(&self, account: &str) -> Result<DeviceList, ClientError> {
        self.call(
            reqwest::Method::GET,
            &format!("/v1/accounts/{account}/devices"),
            None::<&()>,
        )
        .await?
        .ok_or(ClientError::Status {
            status: 204,
            error: "no body".into(),
        })
    }

    /// Uploads keys (any subset).
    pub async fn upload_keys(&self, upload: &KeyUploadRequest) -> Result<(), ClientError> {
        self.call::<serde_json::Value>(reqwest::Method::PUT, "/v1/keys", Some(upload))
            .await?;
        Ok(())
    }

    /// Remaining one-time prekey counts of this device.
    pub async fn key_counts(&self) -> Result<KeyCountsResponse, ClientError> {
        self.call(reqwest::Method::GET, "/v1/keys/count", None::<&()>)
            .await?
            .ok_or(ClientError::Status {
                status: 204,
                error: "no body".into(),
            })
    }

    /// Fetches (and so claims) bundles of one device or every device of `account`.
    /// The bundles are decoded, not verified: call `PreKeyBundle::verify`.
    pub async fn bundles(
        &self,
        account: &str,
        device: Option<u32>,
    ) -> Result<Vec<(u32, PreKeyBundle)>, ClientError> {
        let path = match device {
            Some(d) => format!("/v1/bundles/{account}/{d}"),
            None => format!("/v1/bundles/{account}"),
        };
        let resp: Option<BundleResponse> =
            self.call(reqwest::Method::GET, &path, None::<&()>).await?;
        resp.map(|r| r.bundles)
            .unwrap_or_default()
            .into_iter()
            .map(|b| Ok((b.device, PreKeyBundle::decode(&b.bundle)?)))
            .collect()
    }

    /// Sends one ciphertext per device of `recipient`. `id` makes resends idempotent.
    pub async fn send(
        &self,
        recipient: &str,
        id: &str,
        messages: Vec<OutgoingJson>,
    ) -> Result<(), ClientError> {
        self.call::<serde_json::Value>(
            reqwest::Method::PUT,
            &format!("/v1/messages/{recipient}"),
            Some(&SendRequest {
                id: id.to_owned(),
                messages,
            }),
        )
        .await?;
        Ok(())
    }

    /// Opens this device's delivery WebSocket.
    pub async fn connect(&self) -> Result<Delivery, ClientError> {
        let url = format!(
            "ws{}/v1/websocket",
            self.base.strip_prefix("http").unwrap_or(&self.base)
        );
        let mut req = url.into_client_request().map_err(Box::new)?;
        if let Some(c) = &self.creds
            && let Ok(v) = basic_header(&c.account, c.device, &c.credential).parse()
        {
            req.headers_mut().insert("authorization", v);
        }
        let timed_out = || {
            Box::new(tungstenite::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "websocket handshake timed out",
            )))
        };
        let (ws, _) = tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(req))
            .await
            .map_err(|_| timed_out())?
            .map_err(Box::new)?;
        Ok(Delivery { ws })
    }
}

/// An open delivery WebSocket.
pub struct Delivery {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

/// Why a delivery socket ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// The close code, if the relay sent one.
    pub code: Option<u16>,
}

impl Delivery {
    /// The next frame, or `Err(Closed)` once the socket closed.
    pub async fn next(&mut self) -> Result<ServerFrame, Closed> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    if let Ok(f) = serde_json::from_str(t.as_str()) {
                        return Ok(f);
                    }
                }
                Some(Ok(Message::Close(c))) => {
                    return Err(Closed {
                        code: c.map(|c| u16::from(c.code)),
                    });
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Err(Closed { code: None }),
            }
        }
    }

    /// Acknowledges a message by its `seq`.
    pub async fn ack(&mut self, seq: i64) -> Result<(), ClientError> {
        let text = serde_json::to_string(&ClientFrame::Ack { seq })?;
        self.ws.send(Message::text(text)).await.map_err(Box::new)?;
        Ok(())
    }

    /// Sends a raw text frame (for tests of malformed input).
    pub async fn send_raw(&mut self, text: &str) -> Result<(), ClientError> {
        self.ws
            .send(Message::text(text.to_owned()))
            .await
            .map_err(Box::new)?;
        Ok(())
    }

    /// Closes the socket.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// JSON form of a signed prekey.
pub fn signed_prekey_json(k: &SignedPreKeyPublic) -> PreKeyJson {
    PreKeyJson {
        id: k.id,
        created_at: k.created_at,
        key: k.key.encode().to_vec(),
        signature: k.signature.to_vec(),
    }
}

/// JSON form of a one-time prekey.
pub fn one_time_prekey_json(k: &OneTimePreKeyPublic) -> PreKeyJson {
    PreKeyJson {
        id: k.id,
        created_at: k.created_at,
        key: k.key.encode().to_vec(),
        signature: k.signature.to_vec(),
    }
}

/// JSON form of a KEM prekey (one-time or last-resort).
pub fn kem_prekey_json(k: &KemPreKeyPublic) -> PreKeyJson {
    PreKeyJson {
        id: k.id,
        created_at: k.created_at,
        key: k.key.encode(),
        signature: k.signature.to_vec(),
    }
}
