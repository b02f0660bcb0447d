//! One Double Ratchet session.
//!
//! Decryption is split into a pure step ([`SessionState::decrypt`], which borrows the
//! state immutably and returns the plaintext plus a [`StateUpdate`]) and
//! [`SessionState::apply`], so a message that fails any check cannot change the state.
//!
//! The sending half of a DH ratchet step is taken lazily: receiving a new ratchet key
//! only derives the receiving chain; the next sending chain (a fresh ratchet key and a
//! second root-KDF step) is derived when we next send. The key schedule is identical to
//! the eager form of the Double Ratchet specification, because the peer cannot send a
//! newer ratchet key before it has seen our new one.

use std::collections::VecDeque;

use zeroize::Zeroizing;

use crate::error::{CryptoError, DecodeError, SessionError};
use crate::identity::{IDENTITY_KEY_LEN, IdentityKey};
use crate::keys::{DhKeyPair, DhPoint, DhPublicKey, KEM_CIPHERTEXT_LEN};
use crate::limits::{MAX_RECEIVER_CHAINS, MAX_SKIPPED_KEYS_PER_CHAIN};
use crate::pqxdh::{AD_LEN, associated_data};
use crate::prekey::{PreKeyId, Timestamp};
use crate::ratchet::message_key::MESSAGE_KEYS_INFO;
use crate::ratchet::receiver_chain::{advance_to, skip_to};
use crate::ratchet::{ChainKey, MessageKeySeed, ReceiverChain, RootKey};
use crate::wire::message::MESSAGE_HEADER_LEN;
use crate::wire::{Reader, SignalMessage, Writer};

/// PQXDH parameters the initiator repeats in every message until the responder answers.
#[derive(Clone)]
pub(crate) struct PendingPreKey {
    pub(crate) signed_prekey_id: PreKeyId,
    pub(crate) one_time_prekey_id: Option<PreKeyId>,
    pub(crate) kem_prekey_id: PreKeyId,
    pub(crate) kem_ciphertext: Box<[u8; KEM_CIPHERTEXT_LEN]>,
}

/// Who the two parties of a new session are.
pub(crate) struct Parties {
    /// Encoded identities.
    pub(crate) local_identity: [u8; IDENTITY_KEY_LEN],
    pub(crate) remote_identity: [u8; IDENTITY_KEY_LEN],
    pub(crate) local_registration_id: u32,
    pub(crate) remote_registration_id: u32,
    /// The initiator's PQXDH base key.
    pub(crate) base_key: DhPublicKey,
    pub(crate) created_at: Timestamp,
}

/// The state of one session. Secret: it holds the root key, chain keys and skipped
/// message keys. Its `Debug` prints only counters.
#[derive(Clone)]
pub struct SessionState {
    /// Encoded identities (§1.2). Kept encoded: a session only needs them as bytes (for
    /// AD and comparison), and decoding an identity costs a point decompression.
    local_identity: [u8; IDENTITY_KEY_LEN],
    remote_identity: [u8; IDENTITY_KEY_LEN],
    initiator: bool,
    ad: [u8; AD_LEN],
    local_registration_id: u32,
    remote_registration_id: u32,
    base_key: DhPublicKey,
    created_at: Timestamp,
    root_key: RootKey,
    our_ratchet: DhKeyPair,
    sending_chain: Option<ChainKey>,
    previous_counter: u32,
    remote_ratchet: Option<DhPublicKey>,
    receivers: VecDeque<ReceiverChain>,
    pub(crate) pending_prekey: Option<PendingPreKey>,
}

/// The change a successful decryption makes, applied by [`SessionState::apply`].
pub(crate) enum StateUpdate {
    /// A stored skipped key was used and must be deleted.
    UsedSkipped { chain: usize, pos: usize },
    /// An existing receiving chain advanced.
    Advanced {
        chain: usize,
        next: ChainKey,
        skipped: Vec<MessageKeySeed>,
    },
    /// The peer took a DH ratchet step: a new receiving chain.
    NewChain {
        root: RootKey,
        chain: ReceiverChain,
        /// Keys skipped at the end of the previous receiving chain (index, next, keys).
        previous: Option<(usize, ChainKey, Vec<MessageKeySeed>)>,
    },
}

/// Non-secret facts about a session, for inspection tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// Whether we initiated this session.
    pub initiator: bool,
    /// When the session was created (seconds since the epoch).
    pub created_at: Timestamp,
    /// The peer's registration id.
    pub remote_registration_id: u32,
    /// Index of the next message on our sending chain (`None` until we send after a
    /// ratchet step).
    pub sending_index: Option<u32>,
    /// For each receiving chain (oldest first): next expected counter and number of
    /// stored skipped keys.
    pub receiving_chains: Vec<(u32, usize)>,
    /// Whether we are still sending pre-key messages (no reply received yet).
    pub awaiting_reply: bool,
}

impl SessionState {
    /// Alice's state after PQXDH: she sends first, on a chain derived from a fresh ratchet
    /// key and Bob's signed prekey.
    pub(crate) fn new_initiator(
        parties: Parties,
        shared_secret: &[u8; 32],
        their_signed_prekey: (DhPublicKey, &DhPoint),
        pending: PendingPreKey,
    ) -> Result<Self, CryptoError> {
        let (their_signed_prekey, spk_point) = their_signed_prekey;
        let our_ratchet = DhKeyPair::generate()?;
        let dh = our_ratchet.agree_point(spk_point)?;
        let (root_key, sending) = RootKey::new(*shared_secret).step(&dh);
        Ok(Self::from_parts(
            parties,
            true,
            root_key,
            our_ratchet,
            Some(sending),
            Some(their_signed_prekey),
            Some(pending),
        ))
    }

    /// Bob's state after PQXDH: his signed prekey is his first ratchet key.
    pub(crate) fn new_responder(
        parties: Parties,
        shared_secret: &[u8; 32],
        our_signed_prekey: DhKeyPair,
    ) -> Self {
        Self::from_parts(
            parties,
            false,
            RootKey::new(*shared_secret),
            our_signed_prekey,
            None,
            None,
            None,
        )
    }

    fn from_parts(
        p: Parties,
        initiator: bool,
        root_key: RootKey,
        our_ratchet: DhKeyPair,
        sending_chain: Option<ChainKey>,
        remote_ratchet: Option<DhPublicKey>,
        pending_prekey: Option<PendingPreKey>,
    ) -> Self {
        let local = (&p.local_identity, p.local_registration_id);
        let remote = (&p.remote_identity, p.remote_registration_id);
        let ad = if initiator {
            associated_data(local, remote)
        } else {
            associated_data(remote, local)
        };
        Self {
            ad,
            local_identity: p.local_identity,
            remote_identity: p.remote_identity,
            initiator,
            local_registration_id: p.local_registration_id,
            remote_registration_id: p.remote_registration_id,
            base_key: p.base_key,
            created_at: p.created_at,
            root_key,
            our_ratchet,
            sending_chain,
            previous_counter: 0,
            remote_ratchet,
            receivers: VecDeque::new(),
            pending_prekey,
        }
    }

    /// The peer's identity.
    pub fn remote_identity(&self) -> Result<IdentityKey, DecodeError> {
        IdentityKey::decode(&self.remote_identity)
    }

    /// Whether `identity` is the peer's identity in this session.
    pub fn is_remote_identity(&self, identity: &IdentityKey) -> bool {
        identity.encode() == self.remote_identity
    }

    /// Our identity in this session.
    pub fn local_identity(&self) -> Result<IdentityKey, DecodeError> {
        IdentityKey::decode(&self.local_identity)
    }

    /// The peer's registration id.
    pub fn remote_registration_id(&self) -> u32 {
        self.remote_registration_id
    }

    /// The initiator's base key, which identifies the session on both sides.
    pub fn base_key(&self) -> &DhPublicKey {
        &self.base_key
    }

    /// Non-secret facts for inspection.
    pub fn info(&self) -> SessionInfo {
        SessionInfo {
            initiator: self.initiator,
            created_at: self.created_at,
            remote_registration_id: self.remote_registration_id,
            sending_index: self.sending_chain.as_ref().map(ChainKey::index),
            receiving_chains: self
                .receivers
                .iter()
                .map(|c| (c.chain.index(), c.skipped.len()))
                .collect(),
            awaiting_reply: self.pending_prekey.is_some(),
        }
    }

    /// Encrypts one message, advancing the sending chain (and taking the sending half of
    /// a DH ratchet step first if one is due). Returns the encoded [`SignalMessage`].
    /// The state changes only if encryption succeeds.
    pub(crate) fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, SessionError> {
        let (chain, new_ratchet) = match &self.sending_chain {
            Some(chain) => (chain.clone(), None),
            None => {
                // A responder always has the initiator's ratchet key once its state exists.
                let remote = self.remote_ratchet.ok_or(SessionError::InvalidMessage)?;
                let ratchet = DhKeyPair::generate()?;
                let dh = ratchet.agree(&remote)?;
                let (root, chain) = self.root_key.step(&dh);
                (chain, Some((ratchet, root)))
            }
        };
        let (seed, next) = chain.step();
        let ratchet_public = match &new_ratchet {
            Some((r, _)) => *r.public(),
            None => *self.our_ratchet.public(),
        };
        let mut buf = SignalMessage::encode_header(
            &ratchet_public,
            self.previous_counter,
            seed.counter(),
            plaintext.len(),
        );
        let aad = self.aad(&buf[..MESSAGE_HEADER_LEN]);
        buf.extend_from_slice(plaintext);
        seed.expand(MESSAGE_KEYS_INFO)
            .seal(&aad, &mut buf, MESSAGE_HEADER_LEN);
        if let Some((ratchet, root)) = new_ratchet {
            self.our_ratchet = ratchet;
            self.root_key = root;
        }
        self.sending_chain = Some(next);
        Ok(buf)
    }

    fn aad(&self, header: &[u8]) -> [u8; AD_LEN + MESSAGE_HEADER_LEN] {
        let mut aad = [0u8; AD_LEN + MESSAGE_HEADER_LEN];
        aad[..AD_LEN].copy_from_slice(&self.ad);
        aad[AD_LEN..].copy_from_slice(header);
        aad
    }

    fn open(
        &self,
        seed: &MessageKeySeed,
        message: &SignalMessage,
    ) -> Result<Zeroizing<Vec<u8>>, SessionError> {
        let aad = self.aad(message.header_bytes());
        seed.expand(MESSAGE_KEYS_INFO)
            .open(&aad, message.ciphertext())
            .ok_or(SessionError::InvalidMessage)
    }

    /// Decrypts without changing the state. On success returns the plaintext and the
    /// update to apply.
    pub(crate) fn decrypt(
        &self,
        message: &SignalMessage,
    ) -> Result<(Zeroizing<Vec<u8>>, StateUpdate), SessionError> {
        let counter = message.counter;
        if let Some(idx) = self
            .receivers
            .iter()
            .position(|c| c.ratchet_key == message.ratchet_key)
        {
            let chain = &self.receivers[idx];
            if counter < chain.chain.index() {
                let pos = chain
                    .find_skipped(counter)
                    .ok_or(SessionError::DuplicateMessage { counter })?;
                let plaintext = self.open(&chain.skipped[pos], message)?;
                return Ok((plaintext, StateUpdate::UsedSkipped { chain: idx, pos }));
            }
            let adv = advance_to(&chain.chain, counter)?;
            let plaintext = self.open(&adv.key, message)?;
            return Ok((
                plaintext,
                StateUpdate::Advanced {
                    chain: idx,
                    next: adv.next,
                    skipped: adv.skipped,
                },
            ));
        }

        // A new ratchet key: the peer took a DH ratchet step.
        let previous = match self
            .remote_ratchet
            .and_then(|r| self.receivers.iter().position(|c| c.ratchet_key == r))
        {
            Some(idx) if message.previous_counter > self.receivers[idx].chain.index() => {
                let (_, next, keys) =
                    skip_to(&self.receivers[idx].chain, message.previous_counter, false)?;
                Some((idx, next, keys))
            }
            _ => None,
        };
        let dh = self.our_ratchet.agree(&message.ratchet_key)?;
        let (root, chain_key) = self.root_key.step(&dh);
        let adv = advance_to(&chain_key, counter)?;
        let plaintext = self.open(&adv.key, message)?;
        let mut chain = ReceiverChain::new(message.ratchet_key, adv.next);
        chain.push_skipped(adv.skipped);
        Ok((
            plaintext,
            StateUpdate::NewChain {
                root,
                chain,
                previous,
            },
        ))
    }

    /// Applies the update of a successful [`Self::decrypt`]. A reply was received, so
    /// pre-key messages stop.
    pub(crate) fn apply(&mut self, update: StateUpdate) {
        match update {
            StateUpdate::UsedSkipped { chain, pos } => {
                if let Some(c) = self.receivers.get_mut(chain) {
                    c.skipped.remove(pos);
                }
            }
            StateUpdate::Advanced {
                chain,
                next,
                skipped,
            } => {
                if let Some(c) = self.receivers.get_mut(chain) {
                    c.chain = next;
                    c.push_skipped(skipped);
                }
            }
            StateUpdate::NewChain {
                root,
                chain,
                previous,
            } => {
                if let Some((idx, next, keys)) = previous
                    && let Some(c) = self.receivers.get_mut(idx)
                {
                    c.chain = next;
                    c.push_skipped(keys);
                }
                self.remote_ratchet = Some(chain.ratchet_key);
                self.receivers.push_back(chain);
                while self.receivers.len() > MAX_RECEIVER_CHAINS {
                    self.receivers.pop_front();
                }
                self.root_key = root;
                if let Some(sending) = self.sending_chain.take() {
                    self.previous_counter = sending.index();
                }
            }
        }
        self.pending_prekey = None;
    }

    /// Forgets the sending chain, as a received DH ratchet step does: the next send
    /// takes the sending half of a new ratchet step (a fresh random ratchet key), and
    /// announces the dropped chain's length as PN.
    pub(crate) fn drop_sending_chain(&mut self) {
        if let Some(sending) = self.sending_chain.take() {
            self.previous_counter = sending.index();
        }
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.bytes(&self.local_identity);
        w.bytes(&self.remote_identity);
        w.bool(self.initiator);
        w.u32(self.local_registration_id);
        w.u32(self.remote_registration_id);
        w.bytes(&self.base_key.encode());
        w.u64(self.created_at);
        w.bytes(self.root_key.as_bytes());
        w.bytes(&self.our_ratchet.public().encode());
        w.bytes(&*self.our_ratchet.secret_bytes());
        w.bool(self.sending_chain.is_some());
        if let Some(c) = &self.sending_chain {
            w.bytes(c.key_bytes());
            w.u32(c.index());
        }
        w.u32(self.previous_counter);
        w.bool(self.remote_ratchet.is_some());
        if let Some(r) = &self.remote_ratchet {
            w.bytes(&r.encode());
        }
        w.count(self.receivers.len());
        for c in &self.receivers {
            w.bytes(&c.ratchet_key.encode());
            w.bytes(c.chain.key_bytes());
            w.u32(c.chain.index());
            w.count(c.skipped.len());
            for s in &c.skipped {
                w.u32(s.counter());
                w.bytes(s.seed_bytes());
            }
        }
        w.bool(self.pending_prekey.is_some());
        if let Some(p) = &self.pending_prekey {
            w.u32(p.signed_prekey_id);
            w.bool(p.one_time_prekey_id.is_some());
            if let Some(id) = p.one_time_prekey_id {
                w.u32(id);
            }
            w.u32(p.kem_prekey_id);
            w.bytes(&p.kem_ciphertext[..]);
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        // Stored identities were validated when the session was created; the record is
        // read from authenticated storage, so only the structure is checked here.
        let local_identity = read_identity_encoding(r)?;
        let remote_identity = read_identity_encoding(r)?;
        let initiator = r.bool("initiator")?;
        let local_registration_id = r.u32()?;
        let remote_registration_id = r.u32()?;
        let base_key = DhPublicKey::read(r)?;
        let created_at = r.u64()?;
        let root_key = RootKey::new(*Zeroizing::new(r.array::<32>()?));
        let our_public = DhPublicKey::read(r)?;
        let our_secret = Zeroizing::new(r.array::<32>()?);
        let our_ratchet = DhKeyPair::from_parts(*our_secret, our_public);
        let sending_chain = if r.bool("sending chain flag")? {
            let key = Zeroizing::new(r.array::<32>()?);
            Some(ChainKey::new(*key, r.u32()?))
        } else {
            None
        };
        let previous_counter = r.u32()?;
        let remote_ratchet = if r.bool("remote ratchet flag")? {
            Some(DhPublicKey::read(r)?)
        } else {
            None
        };
        let n = r.count(MAX_RECEIVER_CHAINS, 33 + 32 + 8)?;
        let mut receivers = VecDeque::with_capacity(n);
        for _ in 0..n {
            let ratchet_key = DhPublicKey::read(r)?;
            let key = Zeroizing::new(r.array::<32>()?);
            let chain = ChainKey::new(*key, r.u32()?);
            let m = r.count(MAX_SKIPPED_KEYS_PER_CHAIN, 36)?;
            let mut skipped = VecDeque::with_capacity(m);
            for _ in 0..m {
                let counter = r.u32()?;
                let seed = Zeroizing::new(r.array::<32>()?);
                let ascending = skipped
                    .back()
                    .is_none_or(|s: &MessageKeySeed| s.counter() < counter);
                if !ascending || counter >= chain.index() {
                    return Err(DecodeError::NonCanonical {
                        field: "skipped keys",
                    });
                }
                skipped.push_back(MessageKeySeed::new(*seed, counter));
            }
            receivers.push_back(ReceiverChain {
                ratchet_key,
                chain,
                skipped,
            });
        }
        let pending_prekey = if r.bool("pending prekey flag")? {
            let signed_prekey_id = r.u32()?;
            let one_time_prekey_id = if r.bool("one-time prekey flag")? {
                Some(r.u32()?)
            } else {
                None
            };
            Some(PendingPreKey {
                signed_prekey_id,
                one_time_prekey_id,
                kem_prekey_id: r.u32()?,
                kem_ciphertext: Box::new(r.array()?),
            })
        } else {
            None
        };
        let mut state = Self::from_parts(
            Parties {
                local_identity,
                remote_identity,
                local_registration_id,
                remote_registration_id,
                base_key,
                created_at,
            },
            initiator,
            root_key,
            our_ratchet,
            sending_chain,
            remote_ratchet,
            pending_prekey,
        );
        state.previous_counter = previous_counter;
        state.receivers = receivers;
        Ok(state)
    }

    /// Our identity in this session, encoded.
    pub(crate) fn local_identity_encoded(&self) -> &[u8; IDENTITY_KEY_LEN] {
        &self.local_identity
    }

    /// Our registration id as recorded at session creation.
    pub(crate) fn local_registration_id(&self) -> u32 {
        self.local_registration_id
    }
}

/// Reads an encoded identity key, checking its type byte but not the point.
fn read_identity_encoding(r: &mut Reader<'_>) -> Result<[u8; IDENTITY_KEY_LEN], DecodeError> {
    let encoded: [u8; IDENTITY_KEY_LEN] = r.array()?;
    if encoded[0] != crate::keys::key_type::ED25519_IDENTITY {
        return Err(DecodeError::WrongKeyType {
            found: encoded[0],
            expected: crate::keys::key_type::ED25519_IDENTITY,
        });
    }
    Ok(encoded)
}

impl core::fmt::Debug for SessionState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SessionState")
            .field("info", &self.info())
            .finish_non_exhaustive()
    }
}
