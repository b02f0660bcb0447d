//! HTTP handlers. Each parses and checks its input completely before touching the
//! store, so a refused request changes nothing. Errors are JSON [`ErrorBody`]s with a
//! stable code; bad input is always a 4xx.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use signal_core::IdentityKey;
use signal_core::identity::SIGNATURE_LEN;
use signal_core::keys::{DhPublicKey, KemPublicKey};
use signal_core::prekey::{KemPreKeyPublic, OneTimePreKeyPublic, PreKeyBundle, SignedPreKeyPublic};
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use crate::auth::{self, AuthError, Principal};
use crate::config::MAX_PREKEYS_PER_UPLOAD;
use crate::server::State;
use crate::store::{ClaimedBundle, KeyUpload, OutgoingMessage, StoreError, StoredPreKey};
use crate::types::{
    BundleEntry, BundleResponse, DeviceCreated, DeviceEntry, DeviceList, ErrorBody,
    KeyCountsResponse, KeyUploadRequest, LinkDeviceRequest, MismatchedDevices, PreKeyJson,
    RegisterRequest, SendRequest, StaleDevices,
};

/// A refused request: status and body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Box<ErrorBody>,
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a code and message.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: Box::new(ErrorBody {
                error: code.to_owned(),
                message: Some(message.into()),
                mismatched: None,
                stale: None,
            }),
            retry_after: None,
        }
    }

    fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong credentials",
        )
    }

    fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "storage failure",
        )
    }

    /// The HTTP response.
    pub fn into_response(self) -> Response {
        let mut r =
            warp::reply::with_status(warp::reply::json(&self.body), self.status).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = warp::http::HeaderValue::from_str(&secs.to_string())
        {
            r.headers_mut().insert("retry-after", v);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                "www-authenticate",
                warp::http::HeaderValue::from_static("Basic realm=\"relay\""),
            );
        }
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::IdentityConflict => Self::new(
                StatusCode::CONFLICT,
                "identity_conflict",
                "a different identity key is already set for this device",
            ),
            StoreError::QueueFull { device } => Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "queue_full",
                format!("the queue of device {device} is full"),
            ),
            other => {
                tracing::error!(error = %other, "storage error");
                Self::internal()
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthorized => Self::unauthorized(),
            AuthError::Store(s) => s.into(),
        }
    }
}

type ApiResult = Result<Response, ApiError>;

/// Runs a handler and turns its error into a response.
pub async fn respond(f: impl Future<Output = ApiResult>) -> Response {
    match f.await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn json<T: Serialize>(status: StatusCode, v: &T) -> Response {
    warp::reply::with_status(warp::reply::json(v), status).into_response()
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let code = if e.is_data() {
            "invalid_field"
        } else {
            "malformed_json"
        };
        ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string())
    })
}

fn unprocessable(code: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn authenticate(state: &State, header: Option<String>) -> Result<Principal, ApiError> {
    Ok(auth::authenticate(state.store.as_ref(), header.as_deref()).await?)
}

/// `POST /v1/accounts`.
pub async fn register(state: Arc<State>, body: Bytes) -> ApiResult {
    let req: RegisterRequest = parse(&body)?;
    if let Some(token) = &state.config.invite_token {
        use subtle::ConstantTimeEq;
        let given = req.invite_token.as_deref().unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "invite_required",
                "registration requires a valid invite token",
            ));
        }
    }
    if !auth::valid_account(&req.account) {
        return Err(unprocessable(
            "invalid_account",
            "account: 1-64 of a-z 0-9 _ -",
        ));
    }
    if !auth::valid_credential(&req.credential) {
        return Err(unprocessable(
            "invalid_credential",
            "credential: 22-512 printable ASCII characters carrying >= 128 random bits",
        ));
    }
    let cred = auth::hash_credential(&req.credential).map_err(|_| ApiError::internal())?;
    if !state
        .store
        .create_account(&req.account, req.registration_id, &cred, now())
        .await?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "account_exists",
            "account name taken",
        ));
    }
    Ok(json(
        StatusCode::OK,
        &DeviceCreated {
            account: req.account,
            device: 1,
        },
    ))
}

/// `POST /v1/devices`.
pub async fn link_device(state: Arc<State>, header: Option<String>, body: Bytes) -> ApiResult {
    let me = authenticate(&state, header).await?;
    let req: LinkDeviceRequest = parse(&body)?;
    if !auth::valid_credential(&req.credential) {
        return Err(unprocessable(
            "invalid_credential",
            "credential: 22-512 printable ASCII characters carrying >= 128 random bits",
        ));
    }
    let cred = auth::hash_credential(&req.credential).map_err(|_| ApiError::internal())?;
    match state
        .store
        .add_device(
            &me.account,
            req.registration_id,
            &cred,
            state.config.max_devices,
            now(),
        )
        .await?
    {
        Some(device) => Ok(json(
            StatusCode::OK,
            &DeviceCreated {
                account: me.account,
                device,
            },
        )),
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            "device_limit",
            format!(
                "an account has at most {} devices",
                state.config.max_devices
            ),
        )),
    }
}

/// `DELETE /v1/devices/{device}`.
pub async fn remove_device(state: Arc<State>, device: u32, header: Option<String>) -> ApiResult {
    let me = authenticate(&state, header).await?;
    if device == 1 {
        return Err(unprocessable(
            "primary_device",
            "device 1 cannot be removed",
        ));
    }
    if !state.store.remove_device(&me.account, device).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_device",
            "no such device",
        ));
    }
    state.hub.remove_device(&me.account, device);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v1/accounts/{account}/devices`.
pub async fn list_devices(state: Arc<State>, account: String, header: Option<String>) -> ApiResult {
    authenticate(&state, header).await?;
    let devices = if auth::valid_account(&account) {
        state.store.devices(&account).await?
    } else {
        Vec::new()
    };
    if devices.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_account",
            "no such account",
        ));
    }
    Ok(json(
        StatusCode::OK,
        &DeviceList {
            devices: devices
                .into_iter()
                .map(|d| DeviceEntry {
                    device: d.device,
                    registration_id: d.registration_id,
                    identity: d.identity,
                })
                .collect(),
        },
    ))
}

fn signature(k: &PreKeyJson, what: &str) -> Result<[u8; SIGNATURE_LEN], ApiError> {
    k.signature
        .as_slice()
        .try_into()
        .map_err(|_| unprocessable("invalid_key", format!("{what}: signature must be 64 bytes")))
}

fn dh_key(k: &PreKeyJson, what: &str) -> Result<DhPublicKey, ApiError> {
    DhPublicKey::decode(&k.key)
        .map_err(|_| unprocessable("invalid_key", format!("{what}: not an encoded X25519 key")))
}

fn kem_key(k: &PreKeyJson, what: &str) -> Result<KemPublicKey, ApiError> {
    KemPublicKey::decode(&k.key).map_err(|_| {
        unprocessable(
            "invalid_key",
            format!("{what}: not an encoded ML-KEM-1024 key"),
        )
    })
}

fn bad_signature(what: &str) -> ApiError {
    unprocessable(
        "bad_signature",
        format!("{what}: signature does not verify"),
    )
}

fn stored(k: &PreKeyJson) -> StoredPreKey {
    StoredPreKey {
        id: k.id,
        created_at: k.created_at,
        key: k.key.clone(),
        signature: k.signature.clone(),
    }
}

/// `PUT /v1/keys`.
pub async fn upload_keys(state: Arc<State>, header: Option<String>, body: Bytes) -> ApiResult {
    let me = authenticate(&state, header).await?;
    let req: KeyUploadRequest = parse(&body)?;
    if req.one_time_prekeys.len() > MAX_PREKEYS_PER_UPLOAD
        || req.kem_prekeys.len() > MAX_PREKEYS_PER_UPLOAD
    {
        return Err(unprocessable(
            "too_many_prekeys",
            format!("at most {MAX_PREKEYS_PER_UPLOAD} one-time prekeys of each kind per request"),
        ));
    }
    let devices = state.store.devices(&me.account).await?;
    let Some(dev) = devices.iter().find(|d| d.device == me.device) else {
        return Err(ApiError::unauthorized());
    };
    let new_identity = req
        .identity
        .as_deref()
        .map(|b| {
            IdentityKey::decode(b).map_err(|_| {
                unprocessable("invalid_identity", "identity: not an encoded identity key")
            })
        })
        .transpose()?;
    let current = dev
        .identity
        .as_deref()
        .map(|b| IdentityKey::decode(b).map_err(|_| ApiError::internal()))
        .transpose()?;
    if let (Some(cur), Some(new)) = (&current, &new_identity)
        && cur != new
    {
        return Err(StoreError::IdentityConflict.into());
    }
    let has_prekeys = req.signed_prekey.is_some()
        || req.last_resort_kem_prekey.is_some()
        || !req.one_time_prekeys.is_empty()
        || !req.kem_prekeys.is_empty();
    if !has_prekeys && new_identity.is_none() {
        return Err(unprocessable("empty_upload", "nothing to upload"));
    }
    let Some(identity) = current.or(new_identity) else {
        return Err(unprocessable(
            "identity_required",
            "upload the identity key before (or with) prekeys",
        ));
    };

    if let Some(k) = &req.signed_prekey {
        let p = SignedPreKeyPublic {
            id: k.id,
            created_at: k.created_at,
            key: dh_key(k, "signed_prekey")?,
            signature: signature(k, "signed_prekey")?,
        };
        if !p.verify(&identity, dev.registration_id) {
            return Err(bad_signature("signed_prekey"));
        }
    }
    for k in &req.one_time_prekeys {
        let p = OneTimePreKeyPublic {
            id: k.id,
            created_at: k.created_at,
            key: dh_key(k, "one_time_prekeys")?,
            signature: signature(k, "one_time_prekeys")?,
        };
        if !p.verify(&identity) {
            return Err(bad_signature("one_time_prekeys"));
        }
    }
    for (k, last_resort, what) in req
        .kem_prekeys
        .iter()
        .map(|k| (k, false, "kem_prekeys"))
        .chain(
            req.last_resort_kem_prekey
                .iter()
                .map(|k| (k, true, "last_resort_kem_prekey")),
        )
    {
        let p = KemPreKeyPublic {
            id: k.id,
            created_at: k.created_at,
            last_resort,
            key: kem_key(k, what)?,
            signature: signature(k, what)?,
        };
        if !p.verify(&identity) {
            return Err(bad_signature(what));
        }
    }
    let upload = KeyUpload {
        identity: Some(identity.encode().to_vec()),
        signed_prekey: req.signed_prekey.as_ref().map(stored),
        one_time_prekeys: req.one_time_prekeys.iter().map(stored).collect(),
        kem_prekeys: req.kem_prekeys.iter().map(stored).collect(),
        last_resort_kem_prekey: req.last_resort_kem_prekey.as_ref().map(stored),
    };
    state
        .store
        .upload_keys(&me.account, me.device, &upload)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v1/keys/count`.
pub async fn key_counts(state: Arc<State>, header: Option<String>) -> ApiResult {
    let me = authenticate(&state, header).await?;
    let c = state.store.key_counts(&me.account, me.device).await?;
    Ok(json(
        StatusCode::OK,
        &KeyCountsResponse {
            one_time: c.one_time,
            kem_one_time: c.kem_one_time,
        },
    ))
}

fn rate_limited(wait: std::time::Duration) -> ApiError {
    let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "slow down");
    e.retry_after = Some(wait.as_secs().max(1));
    e
}

fn encode_bundle(c: ClaimedBundle) -> Result<BundleEntry, ApiError> {
    let corrupt = |_| ApiError::internal();
    let identity = IdentityKey::decode(&c.identity).map_err(corrupt)?;
    let sig = |s: &[u8]| -> Result<[u8; SIGNATURE_LEN], ApiError> {
        s.try_into().map_err(|_| ApiError::internal())
    };
    let bundle = PreKeyBundle {
        registration_id: c.registration_id,
        identity,
        signed_prekey: SignedPreKeyPublic {
            id: c.signed_prekey.id,
            created_at: c.signed_prekey.created_at,
            key: DhPublicKey::decode(&c.signed_prekey.key).map_err(corrupt)?,
            signature: sig(&c.signed_prekey.signature)?,
        },
        one_time_prekey: c
            .one_time_prekey
            .map(|k| -> Result<_, ApiError> {
                Ok(OneTimePreKeyPublic {
                    id: k.id,
                    created_at: k.created_at,
                    key: DhPublicKey::decode(&k.key).map_err(corrupt)?,
                    signature: sig(&k.signature)?,
                })
            })
            .transpose()?,
        kem_prekey: KemPreKeyPublic {
            id: c.kem_prekey.id,
            created_at: c.kem_prekey.created_at,
            last_resort: c.kem_last_resort,
            key: KemPublicKey::decode(&c.kem_prekey.key).map_err(corrupt)?,
            signature: sig(&c.kem_prekey.signature)?,
        },
    };
    Ok(BundleEntry {
        device: c.device,
        bundle: bundle.encode(),
    })
}

/// `GET /v1/bundles/{account}` and `GET /v1/bundles/{account}/{device}`.
pub async fn bundles(
    state: Arc<State>,
    account: String,
    device: Option<u32>,
    header: Option<String>,
) -> ApiResult {
    let me = authenticate(&state, header).await?;
    state
        .bundle_limiter
        .check(&me.account, 1.0)
        .map_err(rate_limited)?;
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "no_bundle", "no keys published");
    if !auth::valid_account(&account) {
        return Err(not_found());
    }
    let targets: Vec<u32> = match device {
        Some(d) => vec![d],
        None => state
            .store
            .devices(&account)
            .await?
            .into_iter()
            .map(|d| d.device)
            .collect(),
    };
    let mut out = Vec::new();
    for d in targets {
        if let Some(c) = state.store.claim_bundle(&account, d).await? {
            out.push(encode_bundle(c)?);
        }
    }
    if out.is_empty() {
        return Err(not_found());
    }
    Ok(json(StatusCode::OK, &BundleResponse { bundles: out }))
}

fn valid_message_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `PUT /v1/messages/{account}`.
pub async fn send(
    state: Arc<State>,
    recipient: String,
    header: Option<String>,
    body: Bytes,
) -> ApiResult {
    let me = authenticate(&state, header).await?;
    let req: SendRequest = parse(&body)?;
    if !valid_message_id(&req.id) {
        return Err(unprocessable(
            "invalid_message_id",
            "id: 1-64 of A-Z a-z 0-9 _ -",
        ));
    }
    if req.messages.is_empty() {
        return Err(unprocessable("no_messages", "messages must not be empty"));
    }
    let mut given = BTreeSet::new();
    for m in &req.messages {
        if !given.insert(m.device) {
            return Err(unprocessable("duplicate_device", "one message per device"));
        }
        if m.body.len() > state.config.max_message_bytes {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "message_too_large",
                format!(
                    "a message is at most {} bytes",
                    state.config.max_message_bytes
                ),
            ));
        }
    }
    state
        .send_limiter
        .check(&me.account, 1.0)
        .map_err(rate_limited)?;
    let devices = if auth::valid_account(&recipient) {
        state.store.devices(&recipient).await?
    } else {
        Vec::new()
    };
    if devices.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_account",
            "no such account",
        ));
    }
    let expected: BTreeSet<u32> = devices
        .iter()
        .map(|d| d.device)
        .filter(|d| !(recipient == me.account && *d == me.device))
        .collect();
    let missing: Vec<u32> = expected.difference(&given).copied().collect();
    let extra: Vec<u32> = given.difference(&expected).copied().collect();
    if !missing.is_empty() || !extra.is_empty() {
        let mut e = ApiError::new(
            StatusCode::CONFLICT,
            "mismatched_devices",
            "device list differs",
        );
        e.body.mismatched = Some(MismatchedDevices { missing, extra });
        return Err(e);
    }
    let stale: Vec<u32> = req
        .messages
        .iter()
        .filter(|m| {
            devices
                .iter()
                .any(|d| d.device == m.device && d.registration_id != m.registration_id)
        })
        .map(|m| m.device)
        .collect();
    if !stale.is_empty() {
        let mut e = ApiError::new(
            StatusCode::GONE,
            "stale_devices",
            "registration ids changed",
        );
        e.body.stale = Some(StaleDevices { stale });
        return Err(e);
    }
    let outgoing: Vec<OutgoingMessage> = req
        .messages
        .into_iter()
        .map(|m| OutgoingMessage {
            device: m.device,
            body: m.body,
        })
        .collect();
    state
        .store
        .store_messages(
            &me.account,
            me.device,
            &req.id,
            &recipient,
            &outgoing,
            state.config.max_queue_per_device,
            now(),
        )
        .await?;
    state
        .metrics
        .accepted
        .fetch_add(outgoing.len() as u64, Ordering::Relaxed);
    for m in &outgoing {
        state.hub.notify(&recipient, m.device);
    }
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "stored": outgoing.len() }),
    ))
}

/// `GET /readyz`.
pub async fn ready(state: Arc<State>) -> Response {
    if state.shutting_down.load(Ordering::Acquire) {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "shutting down",
        )
        .into_response();
    }
    match state.store.ping().await {
        Ok(()) => json(StatusCode::OK, &serde_json::json!({ "status": "ready" })),
        Err(e) => {
            tracing::warn!(error = %e, "storage not reachable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "storage not reachable",
            )
            .into_response()
        }
    }
}

/// `GET /metrics`.
pub async fn metrics(state: Arc<State>) -> Response {
    let depth = state.store.queue_depth().await.ok();
    let text = state.metrics.render(depth, state.hub.len());
    warp::reply::with_header(text, "content-type", "text/plain; version=0.0.4").into_response()
}
