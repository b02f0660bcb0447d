//! One device's messenger: its SQLCipher store, its relay registration, and every
//! operation the commands use. Data flows one way: relay bytes → decode → decrypt →
//! commit (with the plaintext, in one transaction) → acknowledge.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use relay_server::RelayClient;
use relay_server::client::{
    ClientError, kem_prekey_json, one_time_prekey_json, signed_prekey_json,
};
use relay_server::types::{DeviceList, KeyUploadRequest, OutgoingJson};
use session_store::SqlStore;
use signal_core::fanout::{self, DeviceInfo, FanOut, UserDevices};
use signal_core::group::{self, GroupId, SenderKeyDistributionMessage};
use signal_core::maintenance::{KeyMaintenance, ServerPreKeyCounts};
use signal_core::prekey::{KemPreKeyPublic, SignedPreKeyPublic};
use signal_core::store::{IdentityStore, KemPreKeyStore, SenderKeyStore, SignedPreKeyStore};
use signal_core::wire::{MessageKind, PreKeyMessage};
use signal_core::{Address, GroupError, IdentityKey, SafetyNumber, SessionError, StoreError};

use crate::appdb::{self, Account, Group};
use crate::envelope::{Content, Transport, hex, parse_group_id, valid_group_name, valid_name};
use crate::error::{AppError, Result};

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `n` random bytes as hex.
pub fn random_hex(n: usize) -> Result<String> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| AppError::Io(std::io::Error::other(e.to_string())))?;
    Ok(hex(&b))
}

/// How often an unreachable relay is retried, and how long 429s are waited out.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per request while the relay is unreachable.
    pub attempts: u32,
    /// First backoff delay (doubled per attempt, capped at `max_delay`).
    pub first_delay: Duration,
    /// Longest single backoff delay.
    pub max_delay: Duration,
    /// Longest total wait for rate limits per request.
    pub max_rate_wait: Duration,
}

impl RetryPolicy {
    /// Defaults, or `SECURE_MESSENGER_RETRIES` attempts if set.
    pub fn from_env() -> Self {
        let attempts = std::env::var("SECURE_MESSENGER_RETRIES")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n| n >= 1)
            .unwrap_or(6);
        Self {
            attempts,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            max_rate_wait: Duration::from_secs(120),
        }
    }

    /// The delay before attempt `attempt + 1` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Whether a client error means "could not reach the relay".
pub fn unreachable(e: &ClientError) -> bool {
    match e {
        ClientError::Http(e) => e.is_connect() || e.is_timeout(),
        ClientError::WebSocket(_) => true,
        _ => false,
    }
}

/// Runs `call`, retrying with backoff while the relay is unreachable and waiting out
/// 429s as `Retry-After` asks; progress goes to stderr.
pub async fn with_retry<T, F, Fut>(relay: &str, policy: RetryPolicy, mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, ClientError>>,
{
    let mut attempt = 0;
    let mut waited = Duration::ZERO;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if unreachable(&e) => {
                attempt += 1;
                if attempt >= policy.attempts {
                    return Err(AppError::RelayUnreachable {
                        relay: relay.to_owned(),
                        attempts: attempt,
                        detail: short_error(&e),
                    });
                }
                let delay = policy.delay(attempt);
                eprintln!(
                    "relay unreachable at {relay} ({}); retrying in {:.1} s",
                    short_error(&e),
                    delay.as_secs_f64()
                );
                tokio::time::sleep(delay).await;
            }
            Err(ClientError::RateLimited(secs)) => {
                let wait = Duration::from_secs(secs.max(1));
                if waited + wait > policy.max_rate_wait {
                    return Err(AppError::RateLimited {
                        waited_secs: waited.as_secs(),
                    });
                }
                eprintln!(
                    "rate-limited by the relay; waiting {} s (Retry-After)",
                    wait.as_secs()
                );
                tokio::time::sleep(wait).await;
                waited += wait;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The innermost cause of a client error, for one-line messages.
fn short_error(e: &ClientError) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}

/// Something that happened while processing incoming messages, for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A 1:1 message.
    Text {
        /// Sender account.
        from: String,
        /// Sender device.
        device: u32,
        /// The text.
        body: String,
    },
    /// A copy of a message our other device sent.
    SentCopy {
        /// Our device that sent it.
        device: u32,
        /// The recipient.
        to: String,
        /// The text.
        body: String,
    },
    /// A group message.
    GroupText {
        /// Group name.
        group: String,
        /// Sender account.
        from: String,
        /// The text.
        body: String,
    },
    /// We were added to a group (or learnt of it).
    GroupJoined {
        /// Group name.
        group: String,
        /// Who told us.
        by: String,
        /// Its members.
        members: Vec<String>,
    },
    /// A group's members changed.
    GroupMembers {
        /// Group name.
        group: String,
        /// Who changed it.
        by: String,
        /// New members.
        added: Vec<String>,
        /// Removed members.
        removed: Vec<String>,
    },
    /// We were removed from a group.
    GroupRemoved {
        /// Group name.
        group: String,
        /// Who removed us.
        by: String,
    },
    /// A contact's device presented a new identity key; its messages are held.
    IdentityChanged {
        /// The contact.
        user: String,
        /// The device.
        device: u32,
    },
    /// A message that could not be used was discarded.
    Dropped {
        /// Sender account.
        from: String,
        /// Sender device.
        device: u32,
        /// Why.
        reason: String,
    },
    /// A message seen before (a redelivery) was acknowledged again.
    Duplicate,
}

impl Event {
    /// Whether this is a conversation line (stdout) rather than a notice (stderr).
    pub fn is_message(&self) -> bool {
        !matches!(
            self,
            Self::IdentityChanged { .. } | Self::Dropped { .. } | Self::Duplicate
        )
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Text { from, body, .. } => write!(f, "{from}: {body}"),
            Self::SentCopy { device, to, body } => {
                write!(f, "you → {to}: {body}  (sent from your device {device})")
            }
            Self::GroupText { group, from, body } => write!(f, "[{group}] {from}: {body}"),
            Self::GroupJoined { group, by, members } => write!(
                f,
                "[{group}] {by} added you to the group; members: {}",
                members.join(", ")
            ),
            Self::GroupMembers {
                group,
                by,
                added,
                removed,
            } => {
                write!(f, "[{group}] {by}")?;
                if !added.is_empty() {
                    write!(f, " added {}", added.join(", "))?;
                }
                if !removed.is_empty() {
                    if !added.is_empty() {
                        write!(f, " and")?;
                    }
                    write!(f, " removed {} (keys rotate)", removed.join(", "))?;
                }
                Ok(())
            }
            Self::GroupRemoved { group, by } => {
                write!(f, "[{group}] {by} removed you from the group")
            }
            Self::IdentityChanged { user, device } => write!(
                f,
                "!!! SAFETY NUMBER CHANGED: {user} (device {device}) now has a different identity key.\n\
                 !!! Their messages are held unread and sending to {user} is blocked until you compare\n\
                 !!! the new number (`secure_messenger safety-number {user}`) and run `secure_messenger verify {user}`."
            ),
            Self::Dropped {
                from,
                device,
                reason,
            } => write!(
                f,
                "(discarded an unusable message from {from} device {device}: {reason})"
            ),
            Self::Duplicate => write!(f, "(acknowledged a message already received)"),
        }
    }
}

/// The outcome of processing one relay message.
#[derive(Debug)]
pub struct Processed {
    /// What to show.
    pub events: Vec<Event>,
    /// Whether to acknowledge (delete at the relay). False only while the sender's
    /// identity change is unverified: the message is held until then.
    pub ack: bool,
}

/// One ciphertext a send stored at the relay.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Recipient account.
    pub user: String,
    /// Recipient device.
    pub device: u32,
    /// What kind of ciphertext it is.
    pub kind: &'static str,
    /// The body exactly as the relay stores it.
    pub body: Vec<u8>,
}

/// What one send put on the relay, for the demo's "what the relay saw".
#[derive(Debug, Default, Clone)]
pub struct SendReport {
    /// Every stored ciphertext.
    pub stored: Vec<Stored>,
    /// Members skipped because their identity changed (group sends only).
    pub skipped: Vec<String>,
}

impl SendReport {
    fn add(&mut self, user: &str, messages: &[OutgoingJson]) {
        for m in messages {
            let kind = match Transport::decode(&m.body) {
                Ok(Transport::Group { .. }) => "sender-key message",
                Ok(Transport::Session(ct)) => match MessageKind::of(ct) {
                    Ok(MessageKind::PreKey) => "PQXDH pre-key message",
                    _ => "Double Ratchet message",
                },
                Err(_) => "unknown",
            };
            self.stored.push(Stored {
                user: user.to_owned(),
                device: m.device,
                kind,
                body: m.body.clone(),
            });
        }
    }

    fn extend(&mut self, other: SendReport) {
        self.stored.extend(other.stored);
        self.skipped.extend(other.skipped);
    }
}

/// Safety-number status of one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Verified, and the identity is the one verified.
    Verified,
    /// Never verified (trusted on first use).
    Unverified,
    /// The identity differs from the trusted one.
    Changed,
}

/// One device's safety number.
#[derive(Debug, Clone)]
pub struct DeviceSafety {
    /// The contact's device.
    pub device: u32,
    /// The number.
    pub number: SafetyNumber,
    /// Its status.
    pub trust: Trust,
}

/// One registered device.
pub struct Messenger {
    /// The encrypted store.
    pub store: SqlStore,
    /// The registration.
    pub account: Account,
    /// This device's address.
    pub own: Address,
    relay: RelayClient,
    retry: RetryPolicy,
}

impl std::fmt::Debug for Messenger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messenger")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

/// Most prekeys per upload request (the relay's limit).
const UPLOAD_CHUNK: usize = 100;
/// Resends after a 409/410 before giving up.
const DEVICE_LIST_RETRIES: usize = 3;
/// Retries of a store operation that lost a race with another process.
const CONFLICT_RETRIES: usize = 3;

fn devices_of(list: DeviceList) -> Vec<DeviceInfo> {
    list.devices
        .into_iter()
        .map(|d| DeviceInfo {
            device: d.device,
            registration_id: d.registration_id,
            identity: d.identity.and_then(|b| IdentityKey::decode(&b).ok()),
        })
        .collect()
}

/// A 16-byte random relay credential as 32 hex digits.
pub fn new_credential() -> Result<String> {
    random_hex(16)
}

/// Registers this store's device as the first device of `name` at `relay` and uploads
/// its identity and prekeys.
pub async fn register(
    mut store: SqlStore,
    relay: &str,
    name: &str,
    invite_token: Option<&str>,
) -> Result<Messenger> {
    if let Some(a) = appdb::account(&store)? {
        return Err(AppError::AlreadyRegistered {
            name: a.name,
            device: a.device,
            relay: a.relay,
        });
    }
    if !valid_name(name) {
        return Err(AppError::Usage(format!(
            "invalid name {name:?}: use 1–64 of a-z 0-9 _ -"
        )));
    }
    let relay = relay.trim_end_matches('/');
    let registration_id = store.local_registration_id()?;
    let credential = new_credential()?;
    let retry = RetryPolicy::from_env();
    let client = RelayClient::new(relay);
    let authed = with_retry(relay, retry, || {
        client.register(name, registration_id, &credential, invite_token)
    })
    .await?;
    let (_, device) = authed.identity().unwrap_or((name, 1));
    let account = Account {
        relay: relay.to_owned(),
        name: name.to_owned(),
        device,
        credential,
        keys_uploaded: false,
    };
    appdb::save_account(&mut store, &account, now())?;
    let mut m = Messenger::new(store, account)?;
    m.maintain().await?;
    Ok(m)
}

impl Messenger {
    /// A messenger over an opened store with a registration.
    pub fn new(store: SqlStore, account: Account) -> Result<Self> {
        let own = Address::new(account.name.clone(), account.device)
            .map_err(|e| AppError::Usage(format!("stored account is invalid: {e}")))?;
        let relay = RelayClient::new(account.relay.clone()).authenticated(
            &account.name,
            account.device,
            &account.credential,
        );
        Ok(Self {
            store,
            account,
            own,
            relay,
            retry: RetryPolicy::from_env(),
        })
    }

    /// The authenticated relay client.
    pub fn relay(&self) -> &RelayClient {
        &self.relay
    }

    async fn retrying<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, ClientError>>,
    {
        with_retry(&self.account.relay, self.retry, call).await
    }

    // ------------------------------------------------------------------ key maintenance

    /// Rotates the signed and last-resort prekeys when due, tops up one-time prekeys
    /// when the relay runs low, and uploads what changed (the first run uploads the
    /// identity and every current key). Returns a one-line summary if anything changed.
    pub async fn maintain(&mut self) -> Result<Option<String>> {
        let counts = self.retrying(|| self.relay.key_counts()).await?;
        let report = KeyMaintenance::default().run(
            &mut self.store,
            now(),
            ServerPreKeyCounts {
                one_time: usize::try_from(counts.one_time).unwrap_or(usize::MAX),
                kem_one_time: usize::try_from(counts.kem_one_time).unwrap_or(usize::MAX),
            },
        )?;
        let first = !self.account.keys_uploaded;
        let signed = match (&report.new_signed_prekey, first) {
            (Some(k), _) => Some(k.clone()),
            (None, true) => current_signed_prekey(&self.store)?,
            (None, false) => None,
        };
        let last_resort = match (&report.new_last_resort_kem_prekey, first) {
            (Some(k), _) => Some(k.clone()),
            (None, true) => current_last_resort(&self.store)?,
            (None, false) => None,
        };
        let mut upload = KeyUploadRequest {
            identity: first
                .then(|| {
                    self.store
                        .local_identity()
                        .map(|i| i.public().encode().to_vec())
                })
                .transpose()?,
            signed_prekey: signed.as_ref().map(signed_prekey_json),
            last_resort_kem_prekey: last_resort.as_ref().map(kem_prekey_json),
            ..KeyUploadRequest::default()
        };
        let one_time: Vec<_> = report
            .new_one_time_prekeys
            .iter()
            .map(one_time_prekey_json)
            .collect();
        let kem: Vec<_> = report
            .new_kem_one_time_prekeys
            .iter()
            .map(kem_prekey_json)
            .collect();
        let mut summary = Vec::new();
        if signed.is_some() {
            summary.push("signed prekey".to_owned());
        }
        if last_resort.is_some() {
            summary.push("last-resort ML-KEM prekey".to_owned());
        }
        if !one_time.is_empty() {
            summary.push(format!("{} one-time prekeys", one_time.len()));
        }
        if !kem.is_empty() {
            summary.push(format!("{} one-time ML-KEM prekeys", kem.len()));
        }
        let chunks = one_time.len().max(kem.len()).div_ceil(UPLOAD_CHUNK).max(1);
        for i in 0..chunks {
            let range = |v: &[relay_server::types::PreKeyJson]| {
                v.iter()
                    .skip(i * UPLOAD_CHUNK)
                    .take(UPLOAD_CHUNK)
                    .cloned()
                    .collect::<Vec<_>>()
            };
            upload.one_time_prekeys = range(&one_time);
            upload.kem_prekeys = range(&kem);
            let empty = upload.identity.is_none()
                && upload.signed_prekey.is_none()
                && upload.last_resort_kem_prekey.is_none()
                && upload.one_time_prekeys.is_empty()
                && upload.kem_prekeys.is_empty();
            if !empty {
                self.retrying(|| self.relay.upload_keys(&upload)).await?;
            }
            upload.identity = None;
            upload.signed_prekey = None;
            upload.last_resort_kem_prekey = None;
        }
        if first {
            appdb::set_keys_uploaded(&mut self.store)?;
            self.account.keys_uploaded = true;
        }
        Ok((!summary.is_empty()).then(|| format!("uploaded {}", summary.join(", "))))
    }

    // ------------------------------------------------------------------ devices

    /// The relay's device list of `user`; an unknown account is
    /// [`AppError::UnknownContact`].
    pub async fn user_devices(&self, user: &str) -> Result<UserDevices> {
        if !valid_name(user) {
            return Err(AppError::UnknownContact {
                name: user.to_owned(),
            });
        }
        match self.retrying(|| self.relay.devices(user)).await {
            Ok(list) => Ok(UserDevices {
                user: user.to_owned(),
                devices: devices_of(list),
            }),
            Err(AppError::Relay(ClientError::Status { status: 404, .. })) => {
                Err(AppError::UnknownContact {
                    name: user.to_owned(),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Links the device that printed `code` (`devices join`) to this account.
    pub async fn link_device(&self, code: &str) -> Result<u32> {
        let (registration_id, credential) = parse_link_code(code)?;
        let linked = self
            .retrying(|| self.relay.link_device(registration_id, &credential))
            .await?;
        Ok(linked.identity().map_or(0, |(_, d)| d))
    }

    /// Removes one of this account's devices at the relay; its sessions here are
    /// archived by the next send.
    pub async fn remove_device(&self, device: u32) -> Result<()> {
        if device == self.account.device {
            return Err(AppError::Usage(
                "this is the current device; remove it from another device".into(),
            ));
        }
        self.retrying(|| self.relay.remove_device(device)).await
    }

    // ------------------------------------------------------------------ trust

    fn blocked_devices(&self, user: &str) -> Result<Vec<u32>> {
        Ok(appdb::identity_changes(&self.store, user)?)
    }

    fn identity_changed(&mut self, user: &str, changes: &[(u32, IdentityKey)]) -> Result<AppError> {
        for (device, identity) in changes {
            appdb::record_identity_change(
                &mut self.store,
                user,
                *device,
                &identity.encode(),
                now(),
            )?;
        }
        let mut devices: Vec<u32> = self.blocked_devices(user)?;
        devices.extend(changes.iter().map(|(d, _)| *d));
        devices.sort_unstable();
        devices.dedup();
        Ok(AppError::IdentityChanged {
            name: user.to_owned(),
            devices: devices
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// The safety numbers with every device of `user`, as the relay lists them.
    pub async fn safety_numbers(&self, user: &str) -> Result<Vec<DeviceSafety>> {
        let list = self.user_devices(user).await?;
        let ours = self.store.local_identity()?;
        let mut out = Vec::new();
        for d in &list.devices {
            let Some(identity) = d.identity else { continue };
            let address = Address::new(user, d.device).map_err(SessionError::from)?;
            let trusted = self.store.remote_identity(&address)?;
            let verified = appdb::verified_identity(&self.store, user, d.device)?;
            let pending = self.blocked_devices(user)?.contains(&d.device);
            let encoded = identity.encode();
            let trust = if pending
                || trusted.is_some_and(|t| t != identity)
                || verified.as_ref().is_some_and(|v| v[..] != encoded[..])
            {
                Trust::Changed
            } else if verified.is_some() {
                Trust::Verified
            } else {
                Trust::Unverified
            };
            out.push(DeviceSafety {
                device: d.device,
                number: SafetyNumber::new(&self.account.name, ours.public(), user, &identity),
                trust,
            });
        }
        Ok(out)
    }

    /// Marks every current device identity of `user` verified (after the user compared
    /// the safety numbers) and accepts changed ones; returns the devices verified.
    pub async fn verify(&mut self, user: &str) -> Result<Vec<u32>> {
        if user == self.account.name {
            return Err(AppError::Usage("you cannot verify yourself".into()));
        }
        let list = self.user_devices(user).await?;
        let mut verified = Vec::new();
        let t = now();
        for d in &list.devices {
            let Some(identity) = d.identity else { continue };
            let address = Address::new(user, d.device).map_err(SessionError::from)?;
            self.store.save_identity(&address, &identity)?;
            self.store
                .write(|tx| appdb::mark_verified(tx, user, d.device, &identity.encode(), t))?;
            verified.push(d.device);
        }
        Ok(verified)
    }

    // ------------------------------------------------------------------ sending

    /// Sends a text to `user` (every device) and a copy to our own other devices.
    pub async fn send_text(&mut self, user: &str, body: &str) -> Result<SendReport> {
        if body.len() > crate::envelope::MAX_TEXT_LEN {
            return Err(AppError::Usage("message too long (64 KiB at most)".into()));
        }
        if user == self.account.name {
            return Err(AppError::Usage("use a contact's name, not your own".into()));
        }
        let id = random_hex(16)?;
        let mut report = self
            .send_content(
                user,
                &Content::Text {
                    body: body.to_owned(),
                    to: None,
                },
                &id,
            )
            .await?;
        let copy = Content::Text {
            body: body.to_owned(),
            to: Some(user.to_owned()),
        };
        let own = self.account.name.clone();
        let r = self.send_content(&own, &copy, &id).await?;
        report.extend(r);
        Ok(report)
    }

    /// Encrypts `content` for every device of `user` (except this one) over 1:1
    /// sessions, starting sessions from fetched bundles where needed, and stores the
    /// ciphertexts at the relay under message id `id`. Re-reads the device list and
    /// re-encrypts after a 409/410.
    async fn send_content(
        &mut self,
        user: &str,
        content: &Content,
        id: &str,
    ) -> Result<SendReport> {
        let plaintext = content.encode();
        let mut report = SendReport::default();
        for attempt in 0..=DEVICE_LIST_RETRIES {
            let list = self.user_devices(user).await?;
            if user != self.account.name {
                let blocked = self.blocked_devices(user)?;
                if !blocked.is_empty() {
                    return Err(self.identity_changed(user, &[])?);
                }
            }
            let messages = self.seal(&list, &plaintext).await?;
            // On a changed device list the next round re-reads it and the fan-out
            // reconciles sessions with it.
            if self
                .deliver(
                    user,
                    id,
                    messages,
                    attempt < DEVICE_LIST_RETRIES,
                    &mut report,
                )
                .await?
            {
                break;
            }
        }
        Ok(report)
    }

    /// Stores `messages` for `user` at the relay under `id`. `Ok(false)`: the relay
    /// answered 409/410 (the device list changed) and `may_retry` asks for another round.
    async fn deliver(
        &self,
        user: &str,
        id: &str,
        messages: Vec<OutgoingJson>,
        may_retry: bool,
        report: &mut SendReport,
    ) -> Result<bool> {
        if messages.is_empty() {
            return Ok(true);
        }
        match self
            .retrying(|| self.relay.send(user, id, messages.clone()))
            .await
        {
            Ok(()) => {
                report.add(user, &messages);
                Ok(true)
            }
            Err(AppError::Relay(ClientError::Mismatched(_) | ClientError::Stale(_)))
                if may_retry =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// One ciphertext of `plaintext` per listed device (except this one).
    async fn seal(&mut self, list: &UserDevices, plaintext: &[u8]) -> Result<Vec<OutgoingJson>> {
        let user = list.user.clone();
        let mut fan = conflict_retry(|| {
            fanout::encrypt_for_users(
                &mut self.store,
                &self.own,
                std::slice::from_ref(list),
                plaintext,
            )
        })?;
        let mut changed = identity_failures(&fan, list);
        if !fan.missing_sessions.is_empty() {
            let mut bundles = Vec::new();
            for address in &fan.missing_sessions {
                let fetched = self
                    .retrying(|| self.relay.bundles(&user, Some(address.device())))
                    .await?;
                let Some((_, bundle)) = fetched.into_iter().next() else {
                    return Err(AppError::Link(format!(
                        "{user} device {} has no prekeys on the relay yet; try again later",
                        address.device()
                    )));
                };
                let bundle_identity = bundle.identity;
                match bundle.verify() {
                    Ok(v) => bundles.push((address.clone(), v)),
                    Err(e) => {
                        return Err(AppError::Session(SessionError::Bundle(e)));
                    }
                }
                if self
                    .store
                    .remote_identity(address)?
                    .is_some_and(|t| t != bundle_identity)
                {
                    changed.push((address.device(), bundle_identity));
                }
            }
            if changed.is_empty() {
                let more = conflict_retry(|| {
                    fanout::encrypt_with_new_sessions(&mut self.store, &bundles, plaintext)
                })?;
                changed.extend(identity_failures(&more, list));
                fan.messages.extend(more.messages);
                fan.failed.extend(more.failed);
            }
        }
        if !changed.is_empty() {
            return Err(self.identity_changed(&user, &changed)?);
        }
        if let Some((address, e)) = fan.failed.into_iter().next() {
            return Err(AppError::Link(format!("cannot encrypt for {address}: {e}")));
        }
        Ok(fan
            .messages
            .into_iter()
            .map(|m| OutgoingJson {
                device: m.address.device(),
                registration_id: m.registration_id,
                body: Transport::session(&m.ciphertext),
            })
            .collect())
    }

    // ------------------------------------------------------------------ groups

    /// Creates a group with `members` (plus ourselves) and hands each member our chain.
    pub async fn create_group(&mut self, name: &str, members: &[String]) -> Result<SendReport> {
        if !valid_group_name(name) {
            return Err(AppError::Usage(format!(
                "invalid group name {name:?}: use 1–64 of a-z A-Z 0-9 _ - ."
            )));
        }
        if appdb::group_by_name(&self.store, name)?.is_some() {
            return Err(AppError::GroupExists(name.to_owned()));
        }
        let mut all: BTreeSet<String> = members.iter().cloned().collect();
        all.insert(self.account.name.clone());
        if all.len() > crate::envelope::MAX_GROUP_MEMBERS {
            return Err(AppError::Usage("too many members (64 at most)".into()));
        }
        for m in &all {
            self.user_devices(m).await?;
        }
        let group = Group {
            id: GroupId::generate().map_err(GroupError::from)?,
            name: name.to_owned(),
            members: all.into_iter().collect(),
            active: true,
            needs_rotation: false,
        };
        self.store.write(|tx| appdb::save_group(tx, &group))?;
        let distribution = group::create_distribution(&mut self.store, &group.id, &self.own)?;
        self.send_group_state(&group, &group.members.clone(), Some(&distribution))
            .await
    }

    /// Adds members: they get the group state and our chain from its current
    /// iteration (nothing sent earlier); existing members learn of them.
    pub async fn add_members(&mut self, name: &str, new: &[String]) -> Result<SendReport> {
        let mut group = self.active_group(name)?;
        for m in new {
            self.user_devices(m).await?;
        }
        let mut all: BTreeSet<String> = group.members.iter().cloned().collect();
        all.extend(new.iter().cloned());
        if all.len() > crate::envelope::MAX_GROUP_MEMBERS {
            return Err(AppError::Usage("too many members (64 at most)".into()));
        }
        group.members = all.into_iter().collect();
        self.store.write(|tx| appdb::save_group(tx, &group))?;
        let distribution = group::create_distribution(&mut self.store, &group.id, &self.own)?;
        self.send_group_state(&group, &group.members.clone(), Some(&distribution))
            .await
    }

    /// Removes a member: their sender keys are deleted, our chain is replaced by a
    /// fresh one that only the remaining members receive, and the removed member is
    /// told. Every remaining member rotates their own chain before they next send.
    pub async fn remove_member(&mut self, name: &str, member: &str) -> Result<SendReport> {
        let mut group = self.active_group(name)?;
        if !group.members.iter().any(|m| m == member) {
            return Err(AppError::Usage(format!(
                "{member} is not a member of {name}"
            )));
        }
        if member == self.account.name {
            return Err(AppError::Usage(
                "to leave a group, ask a member to remove you".into(),
            ));
        }
        group.members.retain(|m| m != member);
        group.needs_rotation = false;
        self.store.write(|tx| appdb::save_group(tx, &group))?;
        delete_sender_keys(&mut self.store, &group.id, |a| a.user() == member)?;
        let distribution = group::rotate(&mut self.store, &group.id, &self.own)?;
        let mut report = self
            .send_group_state(&group, &group.members.clone(), Some(&distribution))
            .await?;
        let told = self
            .send_group_state(&group, &[member.to_owned()], None)
            .await?;
        report.extend(told);
        Ok(report)
    }

    /// Sends a text to the group: one sender-key ciphertext, stored for every device of
    /// every member. Members (and our own devices) that lack our current chain get it
    /// over 1:1 first.
    pub async fn send_group_text(&mut self, name: &str, body: &str) -> Result<SendReport> {
        if body.len() > crate::envelope::MAX_TEXT_LEN {
            return Err(AppError::Usage("message too long (64 KiB at most)".into()));
        }
        let mut group = self.active_group(name)?;
        if group.needs_rotation {
            group::rotate(&mut self.store, &group.id, &self.own)?;
            group.needs_rotation = false;
            self.store.write(|tx| appdb::save_group(tx, &group))?;
        }
        // The distribution is taken before encrypting, so it covers this message.
        let distribution = group::create_distribution(&mut self.store, &group.id, &self.own)?;
        let plaintext = Content::GroupText {
            body: body.to_owned(),
        }
        .encode();
        let ciphertext = group::encrypt(&mut self.store, &group.id, &self.own, &plaintext)?;
        let body = Transport::group(&group.id, &ciphertext);
        let id = random_hex(16)?;
        let mut report = SendReport::default();
        for member in group.members.clone() {
            match self
                .send_group_body(&group, &member, &distribution, &body, &id)
                .await
            {
                Ok(r) => report.extend(r),
                Err(AppError::IdentityChanged { name, .. }) => {
                    eprintln!(
                        "!!! not sent to {name}: their safety number changed; run `secure_messenger safety-number {name}` and `verify {name}`"
                    );
                    report.skipped.push(name);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    async fn send_group_body(
        &mut self,
        group: &Group,
        member: &str,
        distribution: &SenderKeyDistributionMessage,
        body: &[u8],
        id: &str,
    ) -> Result<SendReport> {
        let mut report = SendReport::default();
        for attempt in 0..=DEVICE_LIST_RETRIES {
            let list = self.user_devices(member).await?;
            let sent = appdb::chains_sent(&self.store, &group.id, member)?;
            let lacking = list.devices.iter().any(|d| {
                Address::new(member, d.device).is_ok_and(|a| a != self.own)
                    && !sent.contains(&(d.device, distribution.chain_id()))
            });
            if lacking {
                let r = self
                    .send_group_state(group, &[member.to_owned()], Some(distribution))
                    .await?;
                report.extend(r);
            }
            let messages: Vec<OutgoingJson> = list
                .devices
                .iter()
                .filter(|d| !(member == self.own.user() && d.device == self.own.device()))
                .map(|d| OutgoingJson {
                    device: d.device,
                    registration_id: d.registration_id,
                    body: body.to_vec(),
                })
                .collect();
            if self
                .deliver(
                    member,
                    id,
                    messages,
                    attempt < DEVICE_LIST_RETRIES,
                    &mut report,
                )
                .await?
            {
                break;
            }
        }
        Ok(report)
    }

    /// Sends the group's state (and, if given, our chain) to every device of `to`.
    async fn send_group_state(
        &mut self,
        group: &Group,
        to: &[String],
        distribution: Option<&SenderKeyDistributionMessage>,
    ) -> Result<SendReport> {
        let content = Content::Group {
            group: hex(group.id.as_bytes()),
            name: group.name.clone(),
            members: group.members.clone(),
            distribution: distribution.map(|d| STANDARD.encode(&d.encode()[..])),
        };
        let mut report = SendReport::default();
        let id = random_hex(16)?;
        for user in to {
            let r = self.send_content(user, &content, &id).await?;
            if let Some(d) = distribution {
                let devices: Vec<u32> = r.stored.iter().map(|s| s.device).collect();
                appdb::mark_chain_sent(&mut self.store, &group.id, user, &devices, d.chain_id())?;
            }
            report.extend(r);
        }
        Ok(report)
    }

    fn active_group(&self, name: &str) -> Result<Group> {
        let group = appdb::group_by_name(&self.store, name)?
            .ok_or_else(|| AppError::UnknownGroup(name.to_owned()))?;
        if !group.active {
            return Err(AppError::NotAMember(name.to_owned()));
        }
        Ok(group)
    }

    // ------------------------------------------------------------------ receiving

    /// Processes one message from the relay. Everything it changes is committed before
    /// it returns; acknowledge it at the relay if [`Processed::ack`].
    pub fn process(
        &mut self,
        sender: &str,
        sender_device: u32,
        id: &str,
        body: &[u8],
    ) -> Result<Processed> {
        if appdb::processed(&self.store, sender, sender_device, id)? {
            return Ok(Processed {
                events: vec![Event::Duplicate],
                ack: true,
            });
        }
        let Ok(from) = Address::new(sender, sender_device) else {
            return self.drop_message(sender, sender_device, id, "invalid sender address".into());
        };
        let mut last = None;
        for _ in 0..CONFLICT_RETRIES {
            let result = match Transport::decode(body) {
                Err(e) => return self.drop_message(sender, sender_device, id, e.to_string()),
                Ok(Transport::Session(ct)) => self.process_session(&from, id, ct),
                Ok(Transport::Group { group, message }) => {
                    self.process_group(&from, id, &group, message)
                }
            };
            match result {
                Err(AppError::Store(StoreError::Conflict { what })) => {
                    // Another process (a second `listen`, a `send`) changed the state
                    // this decryption was computed from: reload and redo.
                    last = Some(what);
                }
                other => return other,
            }
        }
        Err(AppError::Store(StoreError::Conflict {
            what: last.unwrap_or("repeated conflicts"),
        }))
    }

    /// Marks a message processed without storing anything else, and reports `event`.
    fn settle(&mut self, sender: &str, device: u32, id: &str, event: Event) -> Result<Processed> {
        let t = now();
        self.store
            .write(|tx| appdb::mark_processed(tx, sender, device, id, t))?;
        Ok(Processed {
            events: vec![event],
            ack: true,
        })
    }

    fn drop_message(
        &mut self,
        sender: &str,
        device: u32,
        id: &str,
        reason: String,
    ) -> Result<Processed> {
        let event = Event::Dropped {
            from: sender.to_owned(),
            device,
            reason,
        };
        self.settle(sender, device, id, event)
    }

    fn process_session(&mut self, from: &Address, id: &str, ct: &[u8]) -> Result<Processed> {
        let (sender, device) = (from.user().to_owned(), from.device());
        let decrypted = match signal_core::session::decrypt(&self.store, from, ct) {
            Ok(d) => d,
            Err(SessionError::UntrustedIdentity { .. }) => {
                if let Ok(m) = PreKeyMessage::decode(ct) {
                    appdb::record_identity_change(
                        &mut self.store,
                        &sender,
                        device,
                        &m.identity.encode(),
                        now(),
                    )?;
                }
                return Ok(Processed {
                    events: vec![Event::IdentityChanged {
                        user: sender,
                        device,
                    }],
                    ack: false,
                });
            }
            Err(SessionError::Store(e)) => return Err(e.into()),
            Err(SessionError::DuplicateMessage { .. }) => {
                return self.settle(&sender, device, id, Event::Duplicate);
            }
            Err(e) => return self.drop_message(&sender, device, id, e.to_string()),
        };
        let (plaintext, commit) = decrypted.into_parts();
        let t = now();
        let content = match Content::decode(&plaintext) {
            Ok(c) => c,
            Err(e) => {
                // Authentic but unusable: the session still advances.
                self.store.commit_with(commit, |tx| {
                    appdb::mark_processed(tx, &sender, device, id, t)
                })?;
                return Ok(Processed {
                    events: vec![Event::Dropped {
                        from: sender,
                        device,
                        reason: e.to_string(),
                    }],
                    ack: true,
                });
            }
        };
        let events = match content {
            Content::Text { body, to } => {
                let own_copy = sender == self.account.name;
                let recipient = if own_copy { to.clone() } else { None };
                self.store.commit_with(commit, |tx| {
                    appdb::insert_inbox(
                        tx,
                        &sender,
                        device,
                        id,
                        None,
                        recipient.as_deref(),
                        &body,
                        t,
                    )
                })?;
                match (own_copy, to) {
                    (true, Some(to)) => vec![Event::SentCopy { device, to, body }],
                    _ => vec![Event::Text {
                        from: sender,
                        device,
                        body,
                    }],
                }
            }
            Content::Group {
                group,
                name,
                members,
                distribution,
            } => {
                // Idempotent effects first, then the session commit that marks the
                // message processed: a crash in between replays the effects harmlessly.
                let events = self.apply_group_state(from, &group, &name, members, distribution)?;
                self.store.commit_with(commit, |tx| {
                    appdb::mark_processed(tx, &sender, device, id, t)
                })?;
                events
            }
            Content::GroupText { .. } => {
                self.store.commit_with(commit, |tx| {
                    appdb::mark_processed(tx, &sender, device, id, t)
                })?;
                vec![Event::Dropped {
                    from: sender,
                    device,
                    reason: "group text outside a group ciphertext".into(),
                }]
            }
        };
        Ok(Processed { events, ack: true })
    }

    fn apply_group_state(
        &mut self,
        from: &Address,
        group_hex: &str,
        name: &str,
        members: Vec<String>,
        distribution: Option<String>,
    ) -> Result<Vec<Event>> {
        let dropped = |reason: &str| {
            Ok(vec![Event::Dropped {
                from: from.user().to_owned(),
                device: from.device(),
                reason: reason.to_owned(),
            }])
        };
        let Some(id) = parse_group_id(group_hex) else {
            return dropped("invalid group id");
        };
        let me = self.account.name.clone();
        let by = from.user().to_owned();
        let mut members: Vec<String> = members
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let existing = appdb::group_by_id(&self.store, &id)?;
        let mut events = Vec::new();
        let group = match existing {
            None => {
                if !members.contains(&me) {
                    return dropped("state of a group we are not in");
                }
                let mut g = Group {
                    id,
                    name: name.to_owned(),
                    members: members.clone(),
                    active: true,
                    needs_rotation: false,
                };
                g.name = self.store.write(|tx| appdb::save_group(tx, &g))?;
                events.push(Event::GroupJoined {
                    group: g.name.clone(),
                    by: by.clone(),
                    members,
                });
                g
            }
            Some(mut g) => {
                if !g.members.contains(&by) {
                    return dropped("group state from a non-member");
                }
                if !members.contains(&me) {
                    g.active = false;
                    g.members.retain(|m| *m != me);
                    self.store.write(|tx| appdb::save_group(tx, &g))?;
                    delete_sender_keys(&mut self.store, &g.id, |_| true)?;
                    return Ok(vec![Event::GroupRemoved { group: g.name, by }]);
                }
                if !g.active {
                    // Re-added after a removal.
                    g.active = true;
                    events.push(Event::GroupJoined {
                        group: g.name.clone(),
                        by: by.clone(),
                        members: members.clone(),
                    });
                }
                let removed: Vec<String> = g
                    .members
                    .iter()
                    .filter(|m| !members.contains(m))
                    .cloned()
                    .collect();
                let added: Vec<String> = members
                    .iter()
                    .filter(|m| !g.members.contains(m))
                    .cloned()
                    .collect();
                if !removed.is_empty() {
                    delete_sender_keys(&mut self.store, &g.id, |a| {
                        removed.iter().any(|r| r == a.user())
                    })?;
                    g.needs_rotation = true;
                }
                if !added.is_empty() || !removed.is_empty() {
                    events.push(Event::GroupMembers {
                        group: g.name.clone(),
                        by: by.clone(),
                        added,
                        removed,
                    });
                }
                members.sort();
                g.members = members;
                self.store.write(|tx| appdb::save_group(tx, &g))?;
                g
            }
        };
        if let Some(d) = distribution {
            let bytes = STANDARD.decode(d).unwrap_or_default();
            match SenderKeyDistributionMessage::decode(&bytes) {
                Ok(message) if *message.group() == group.id => {
                    match group::process_distribution(&mut self.store, from, &message) {
                        Ok(()) => {}
                        Err(GroupError::Store(e)) => return Err(e.into()),
                        Err(e) => events.push(Event::Dropped {
                            from: by,
                            device: from.device(),
                            reason: format!("sender key refused: {e}"),
                        }),
                    }
                }
                Ok(_) => return dropped("sender key for another group"),
                Err(e) => return dropped(&format!("sender key: {e}")),
            }
        }
        Ok(events)
    }

    fn process_group(
        &mut self,
        from: &Address,
        id: &str,
        group_id: &GroupId,
        message: &[u8],
    ) -> Result<Processed> {
        let (sender, device) = (from.user().to_owned(), from.device());
        let Some(group) = appdb::group_by_id(&self.store, group_id)? else {
            return self.drop_message(&sender, device, id, "message for an unknown group".into());
        };
        if !group.active {
            return self.drop_message(
                &sender,
                device,
                id,
                format!("message for {} after we left", group.name),
            );
        }
        if !group.members.contains(&sender) {
            return self.drop_message(
                &sender,
                device,
                id,
                format!("{sender} is not a member of {}", group.name),
            );
        }
        let decrypted = match group::decrypt(&self.store, group_id, from, message) {
            Ok(d) => d,
            Err(GroupError::Store(e)) => return Err(e.into()),
            Err(GroupError::DuplicateMessage { .. }) => {
                return self.settle(&sender, device, id, Event::Duplicate);
            }
            Err(e) => return self.drop_message(&sender, device, id, e.to_string()),
        };
        let (plaintext, update) = decrypted.into_parts();
        let t = now();
        match Content::decode(&plaintext) {
            Ok(Content::GroupText { body }) => {
                self.store
                    .commit_sender_key_with(group_id, from, &update, |tx| {
                        appdb::insert_inbox(tx, &sender, device, id, Some(group_id), None, &body, t)
                    })?;
                Ok(Processed {
                    events: vec![Event::GroupText {
                        group: group.name,
                        from: sender,
                        body,
                    }],
                    ack: true,
                })
            }
            other => {
                self.store
                    .commit_sender_key_with(group_id, from, &update, |tx| {
                        appdb::mark_processed(tx, &sender, device, id, t)
                    })?;
                let reason = match other {
                    Err(e) => e.to_string(),
                    Ok(_) => "not a group text".into(),
                };
                Ok(Processed {
                    events: vec![Event::Dropped {
                        from: sender,
                        device,
                        reason,
                    }],
                    ack: true,
                })
            }
        }
    }
}

/// Runs a store operation again when it lost a race with another process.
fn conflict_retry<T>(mut f: impl FnMut() -> std::result::Result<T, SessionError>) -> Result<T> {
    let mut tries = 0;
    loop {
        match f() {
            Err(SessionError::Store(StoreError::Conflict { .. }))
                if tries + 1 < CONFLICT_RETRIES =>
            {
                tries += 1;
            }
            other => return other.map_err(AppError::from),
        }
    }
}

/// Devices whose session could not be started because their identity changed, with
/// the identity the relay lists for them.
fn identity_failures(fan: &FanOut, list: &UserDevices) -> Vec<(u32, IdentityKey)> {
    fan.failed
        .iter()
        .filter(|(_, e)| matches!(e, SessionError::UntrustedIdentity { .. }))
        .filter_map(|(a, _)| {
            list.devices
                .iter()
                .find(|d| d.device == a.device())
                .and_then(|d| d.identity)
                .map(|i| (a.device(), i))
        })
        .collect()
}

/// Deletes the sender keys of `group` whose sender matches.
fn delete_sender_keys(
    store: &mut SqlStore,
    group: &GroupId,
    matches: impl Fn(&Address) -> bool,
) -> Result<(), StoreError> {
    for sender in store.sender_key_senders(group)? {
        if matches(&sender) {
            store.delete_sender_key(group, &sender)?;
        }
    }
    Ok(())
}

/// The current (newest) signed prekey's public half.
fn current_signed_prekey(store: &SqlStore) -> Result<Option<SignedPreKeyPublic>> {
    let mut best = None;
    for id in store.signed_prekey_ids()? {
        if let Some(r) = store.load_signed_prekey(id)? {
            let key = (r.created_at(), r.id());
            if best.as_ref().is_none_or(|(k, _)| key > *k) {
                best = Some((key, r.public().clone()));
            }
        }
    }
    Ok(best.map(|(_, p)| p))
}

/// The current last-resort ML-KEM prekey's public half.
fn current_last_resort(store: &SqlStore) -> Result<Option<KemPreKeyPublic>> {
    let mut best = None;
    for id in store.kem_prekey_ids()? {
        if let Some(r) = store.load_kem_prekey(id)?
            && r.is_last_resort()
        {
            let key = (r.created_at(), r.id());
            if best.as_ref().is_none_or(|(k, _)| key > *k) {
                best = Some((key, r.public().clone()));
            }
        }
    }
    Ok(best.map(|(_, p)| p))
}

/// `sm-link-<registration id>-<credential>`: what `devices join` prints and
/// `devices link` reads.
pub fn link_code(registration_id: u32, credential: &str) -> String {
    format!("sm-link-{registration_id}-{credential}")
}

fn parse_link_code(code: &str) -> Result<(u32, String)> {
    let bad = || {
        AppError::Usage(format!(
            "not a link code: {code:?} (expected sm-link-<id>-<secret>)"
        ))
    };
    let rest = code.trim().strip_prefix("sm-link-").ok_or_else(bad)?;
    let (id, credential) = rest.split_once('-').ok_or_else(bad)?;
    let id: u32 = id.parse().map_err(|_| bad())?;
    if !relay_server::auth::valid_credential(credential) {
        return Err(bad());
    }
    Ok((id, credential.to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    use relay_server::config::{Config, StorageConfig};
    use relay_server::types::ServerFrame;
    use signal_core::IdentityKeyPair;

    use crate::listen::{self, ListenOptions};
    use crate::profile::{self, Home};

    struct Net {
        relay: relay_server::RelayHandle,
        url: String,
        dir: tempfile::TempDir,
    }

    async fn net() -> Net {
        let dir = tempfile::tempdir().unwrap();
        let relay = relay_server::start(Config {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            storage: StorageConfig::Sqlite {
                path: dir.path().join("relay.sqlite3"),
            },
            log_json: false,
            ..Config::default()
        })
        .await
        .unwrap();
        let url = format!("http://{}", relay.addr());
        Net { relay, url, dir }
    }

    async fn user(net: &Net, name: &str) -> Messenger {
        let home = Home {
            dir: net.dir.path().join(name),
        };
        let store = profile::init(&home, "pw").unwrap();
        register(store, &net.url, name, None).await.unwrap()
    }

    async fn drain(m: &mut Messenger) -> Vec<Event> {
        listen::run(
            m,
            &ListenOptions {
                until_empty: true,
                chat_with: None,
                maintenance_every: Duration::from_secs(3600),
                print: false,
            },
        )
        .await
        .unwrap()
    }

    fn text(from: &str, body: &str) -> Event {
        Event::Text {
            from: from.into(),
            device: 1,
            body: body.into(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn identity_change_blocks_sending_and_holds_messages_until_verified() {
        let net = net().await;
        let mut alice = user(&net, "alice").await;
        let mut bob = user(&net, "bob").await;
        alice.send_text("bob", "one").await.unwrap();
        assert_eq!(drain(&mut bob).await, vec![text("alice", "one")]);
        bob.send_text("alice", "two").await.unwrap();
        assert_eq!(drain(&mut alice).await, vec![text("bob", "two")]);

        // Alice's store now trusts another key for bob.1 than the one his session and
        // the relay show: as if his identity had changed under her.
        let bob1 = Address::new("bob", 1).unwrap();
        let other = *IdentityKeyPair::generate().unwrap().public();
        alice.store.save_identity(&bob1, &other).unwrap();
        let err = alice.send_text("bob", "three").await.unwrap_err();
        assert!(
            matches!(err, AppError::IdentityChanged { ref name, .. } if name == "bob"),
            "{err}"
        );
        assert_eq!(err.exit_code(), 4);
        // Blocked on every later try too, before anything is encrypted.
        assert!(matches!(
            alice.send_text("bob", "three again").await,
            Err(AppError::IdentityChanged { .. })
        ));
        let numbers = alice.safety_numbers("bob").await.unwrap();
        assert_eq!(numbers[0].trust, Trust::Changed);

        // What Bob sends meanwhile is held at the relay, unread.
        bob.send_text("alice", "four").await.unwrap();
        assert_eq!(
            drain(&mut alice).await,
            vec![Event::IdentityChanged {
                user: "bob".into(),
                device: 1
            }]
        );
        assert!(
            appdb::history(&alice.store, Some("bob"), 10)
                .unwrap()
                .iter()
                .all(|e| e.body != "four")
        );

        // After comparing numbers, Alice verifies: the held message is read and
        // sending works again.
        assert_eq!(alice.verify("bob").await.unwrap(), vec![1]);
        assert_eq!(
            alice.safety_numbers("bob").await.unwrap()[0].trust,
            Trust::Verified
        );
        assert_eq!(drain(&mut alice).await, vec![text("bob", "four")]);
        alice.send_text("bob", "five").await.unwrap();
        assert_eq!(drain(&mut bob).await, vec![text("alice", "five")]);
        net.relay.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_redelivered_message_is_acknowledged_without_being_processed_again() {
        let net = net().await;
        let mut alice = user(&net, "alice").await;
        let mut bob = user(&net, "bob").await;
        alice.send_text("bob", "exactly once").await.unwrap();

        // Bob processes the message but "crashes" before acknowledging it.
        let mut d = bob.relay().connect().await.unwrap();
        let ServerFrame::Message {
            sender,
            sender_device,
            id,
            body,
            ..
        } = d.next().await.unwrap()
        else {
            panic!("expected a message");
        };
        let first = bob.process(&sender, sender_device, &id, &body).unwrap();
        assert_eq!(first.events, vec![text("alice", "exactly once")]);
        d.close().await;

        // The relay redelivers it; the store says it is done.
        let mut d = bob.relay().connect().await.unwrap();
        let ServerFrame::Message {
            seq,
            sender,
            sender_device,
            id,
            body,
            ..
        } = d.next().await.unwrap()
        else {
            panic!("expected the redelivery");
        };
        let again = bob.process(&sender, sender_device, &id, &body).unwrap();
        assert_eq!(again.events, vec![Event::Duplicate]);
        assert!(again.ack);
        d.ack(seq).await.unwrap();
        d.close().await;
        assert_eq!(appdb::history(&bob.store, None, 10).unwrap().len(), 1);

        // Garbage from the relay is discarded (and acknowledged), never a panic.
        for (i, junk) in [
            &b""[..],
            b"\x01",
            b"\x01\x01garbage",
            b"\x01\x02short",
            b"\x09\x01x",
        ]
        .iter()
        .enumerate()
        {
            let p = bob.process("alice", 1, &format!("junk{i}"), junk).unwrap();
            assert!(p.ack);
            assert!(
                matches!(p.events[..], [Event::Dropped { .. }]),
                "{:?}",
                p.events
            );
        }
        net.relay.shutdown().await;
    }

    #[test]
    fn link_codes_round_trip_and_refuse_garbage() {
        let cred = "0123456789abcdef0123456789abcdef";
        let code = link_code(4242, cred);
        assert_eq!(parse_link_code(&code).unwrap(), (4242, cred.to_owned()));
        assert_eq!(parse_link_code(&format!("  {code}\n")).unwrap().0, 4242);
        for bad in [
            "",
            "sm-link-",
            "sm-link-x-abc",
            "sm-link-12",
            "link-1-abc",
            "sm-link-1-short",
        ] {
            assert!(parse_link_code(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy {
            attempts: 10,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            max_rate_wait: Duration::from_secs(1),
        };
        let d: Vec<u64> = (1..=7).map(|a| p.delay(a).as_millis() as u64).collect();
        assert_eq!(d, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
    }
}
