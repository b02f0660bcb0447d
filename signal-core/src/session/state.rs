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
use crate::limits::{MAX_DECRYPT_DERIVATIONS, MAX_RECEIVER_CHAINS, MAX_SKIPPED_KEYS_PER_CHAIN};
use crate::pqxdh::{AD_LEN, PreKeyTranscript, associated_data, prekey_transcript};
use crate::prekey::{PreKeyId, Timestamp};
use crate::ratchet::message_key::MESSAGE_KEYS_INFO;
use crate::ratchet::receiver_chain::{advance_to, skip_to};
use crate::ratchet::{ChainKey, MessageKeySeed, ReceiverChain, RootKey};
use crate::wire::message::{MESSAGE_HEADER_LEN, PreKeyFields};
use crate::wire::{Reader, SignalMessage, Writer};

/// Length of an encoded skipped key: counter (4) + seed (32).
pub(crate) const SKIPPED_KEY_LEN: usize = 36;

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

    /// Whether `identity` is our own identity in this session.
    pub fn is_local_identity(&self, identity: &IdentityKey) -> bool {
        identity.encode() == self.local_identity
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

    /// The pre-key message fields this session sends with every message until the peer
    /// replies (`None` once it has, and always for the responder).
    pub(crate) fn prekey_fields(&self) -> Option<PreKeyFields<'_>> {
        self.pending_prekey.as_ref().map(|p| PreKeyFields {
            registration_id: self.local_registration_id,
            signed_prekey_id: p.signed_prekey_id,
            one_time_prekey_id: p.one_time_prekey_id,
            kem_prekey_id: p.kem_prekey_id,
            kem_ciphertext: &p.kem_ciphertext,
            base_key: &self.base_key,
            identity: &self.local_identity,
        })
    }

    /// Encrypts one message, advancing the sending chain (and taking the sending half of
    /// a DH ratchet step first if one is due). Returns the encoded [`SignalMessage`].
    /// While a pre-key message is pending ([`Self::prekey_fields`]) the message is
    /// sealed with the pre-key associated data `AD ‖ T ‖ header` (`docs/protocol.md`
    /// §5.3) and must be sent inside that pre-key message.
    /// The state changes only if encryption succeeds.
    pub(crate) fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, SessionError> {
        let transcript = self.prekey_fields().map(|f| prekey_transcript(&f));
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
        let (seed, next) = chain.step()?;
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
        let aad = self.aad(transcript.as_ref(), &buf[..MESSAGE_HEADER_LEN]);
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

    /// AES-GCM associated data: `AD ‖ header` for a message sent on its own,
    /// `AD ‖ T ‖ header` for one carried in a pre-key message with transcript `T`.
    /// The two never coincide (their lengths differ), so a relay can neither unwrap a
    /// pre-key message's inner message nor wrap a plain one.
    fn aad(&self, transcript: Option<&PreKeyTranscript>, header: &[u8]) -> Vec<u8> {
        let t = transcript.map_or(&[][..], PreKeyTranscript::as_bytes);
        let mut aad = Vec::with_capacity(AD_LEN + t.len() + header.len());
        aad.extend_from_slice(&self.ad);
        aad.extend_from_slice(t);
        aad.extend_from_slice(header);
        aad
    }

    fn open(
        &self,
        seed: &MessageKeySeed,
        message: &SignalMessage,
        transcript: Option<&PreKeyTranscript>,
    ) -> Result<Zeroizing<Vec<u8>>, SessionError> {
        let aad = self.aad(transcript, message.header_bytes());
        seed.expand(MESSAGE_KEYS_INFO)
            .open(&aad, message.ciphertext())
            .ok_or(SessionError::InvalidMessage)
    }

    /// Decrypts a message received on its own (not inside a pre-key message) without
    /// changing the state, with the whole [`MAX_DECRYPT_DERIVATIONS`] budget. On
    /// success returns the plaintext and the update to apply.
    #[cfg(test)]
    pub(crate) fn decrypt(
        &self,
        message: &SignalMessage,
    ) -> Result<(Zeroizing<Vec<u8>>, StateUpdate), SessionError> {
        let mut budget = MAX_DECRYPT_DERIVATIONS;
        self.decrypt_within(message, None, &mut budget)
    }

    /// Decrypts the inner message of a pre-key message whose transcript is
    /// `transcript`, without changing the state (see [`Self::decrypt`]).
    pub(crate) fn decrypt_prekey(
        &self,
        message: &SignalMessage,
        transcript: &PreKeyTranscript,
    ) -> Result<(Zeroizing<Vec<u8>>, StateUpdate), SessionError> {
        let mut budget = MAX_DECRYPT_DERIVATIONS;
        self.decrypt_within(message, Some(transcript), &mut budget)
    }

    /// Whether this session holds a receiving chain for `ratchet_key`.
    pub(crate) fn has_chain(&self, ratchet_key: &DhPublicKey) -> bool {
        self.receivers.iter().any(|c| c.ratchet_key == *ratchet_key)
    }

    /// Decrypts (see [`Self::decrypt`]; `transcript` for the inner message of a pre-key
    /// message) making at most `budget` chain-key derivations before the tag check;
    /// `budget` is reduced by the derivations made, whether or not the message
    /// authenticates. Only the newest receiving chain is open: every older one was
    /// closed at the `PN` of the message that replaced it, so a counter at or above its
    /// next counter is refused (`InvalidMessage`) unless a skipped key is stored.
    pub(crate) fn decrypt_within(
        &self,
        message: &SignalMessage,
        transcript: Option<&PreKeyTranscript>,
        budget: &mut u32,
    ) -> Result<(Zeroizing<Vec<u8>>, StateUpdate), SessionError> {
        let counter = message.counter;
        let Some(idx) = self
            .receivers
            .iter()
            .position(|c| c.ratchet_key == message.ratchet_key)
        else {
            return self.decrypt_new_chain(message, transcript, budget);
        };
        let chain = &self.receivers[idx];
        if counter < chain.chain.index() {
            let pos = chain
                .find_skipped(counter)
                .ok_or(SessionError::DuplicateMessage { counter })?;
            let plaintext = self.open(&chain.skipped[pos], message, transcript)?;
            return Ok((plaintext, StateUpdate::UsedSkipped { chain: idx, pos }));
        }
        if self.remote_ratchet != Some(chain.ratchet_key) {
            return Err(SessionError::InvalidMessage);
        }
        let adv = advance_to(&chain.chain, counter, *budget)?;
        *budget -= counter - chain.chain.index();
        let plaintext = self.open(&adv.key, message, transcript)?;
        Ok((
            plaintext,
            StateUpdate::Advanced {
                chain: idx,
                skipped: adv.skipped()?,
                next: adv.next,
            },
        ))
    }

    /// A new ratchet key: the peer took a DH ratchet step. Only the new chain is walked
    /// before the tag check; the previous chain's skip to `PN` is counted against
    /// `budget` first but derived only once the message authenticated.
    fn decrypt_new_chain(
        &self,
        message: &SignalMessage,
        transcript: Option<&PreKeyTranscript>,
        budget: &mut u32,
    ) -> Result<(Zeroizing<Vec<u8>>, StateUpdate), SessionError> {
        let counter = message.counter;
        let previous_idx = self
            .remote_ratchet
            .and_then(|r| self.receivers.iter().position(|c| c.ratchet_key == r));
        let previous_gap = previous_idx.map_or(0, |idx| {
            message
                .previous_counter
                .saturating_sub(self.receivers[idx].chain.index())
        });
        // The new chain starts at 0: the message jumps `counter` keys on it. Both walks
        // are bounded before the (costly) agreement.
        let jump = counter.saturating_add(previous_gap);
        if jump > *budget {
            return Err(SessionError::TooFarAhead {
                counter,
                jump,
                limit: *budget,
            });
        }
        let dh = self.our_ratchet.agree(&message.ratchet_key)?;
        let (root, chain_key) = self.root_key.step(&dh);
        let adv = advance_to(&chain_key, counter, *budget - previous_gap)?;
        *budget -= counter;
        let plaintext = self.open(&adv.key, message, transcript)?;
        let previous = match previous_idx {
            Some(idx) if previous_gap > 0 => {
                let (next, keys) = skip_to(&self.receivers[idx].chain, message.previous_counter)?;
                Some((idx, next, keys))
            }
            _ => None,
        };
        let mut chain = ReceiverChain::new(message.ratchet_key, adv.next.clone());
        chain.push_skipped(adv.skipped()?);
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
                self.drop_sending_chain();
            }
        }
        self.pending_prekey = None;
    }

    /// Length of [`Self::write`]'s output, computed without encoding.
    pub(crate) fn encoded_len(&self) -> usize {
        const KEY: usize = 33;
        const FIXED: usize = 2 * IDENTITY_KEY_LEN + 1 + 4 + 4 + KEY + 8 + 32 + KEY + 32;
        let sending = 1 + self.sending_chain.as_ref().map_or(0, |_| 32 + 4);
        let remote = 1 + self.remote_ratchet.map_or(0, |_| KEY);
        let chains: usize = self
            .receivers
            .iter()
            .map(|c| KEY + 32 + 4 + 4 + SKIPPED_KEY_LEN * c.skipped.len())
            .sum();
        let pending = 1 + self.pending_prekey.as_ref().map_or(0, |p| {
            4 + 1 + p.one_time_prekey_id.map_or(0, |_| 4) + 4 + KEM_CIPHERTEXT_LEN
        });
        FIXED + sending + 4 + remote + 4 + chains + pending
    }

    /// Deletes up to `n` skipped keys, oldest receiving chain first and oldest key
    /// first; returns how many were deleted.
    pub(crate) fn drop_oldest_skipped(&mut self, n: usize) -> usize {
        let mut dropped = 0;
        for chain in &mut self.receivers {
            let take = (n - dropped).min(chain.skipped.len());
            chain.skipped.drain(..take);
            dropped += take;
        }
        dropped
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

    /// The sending chain, for tests that play a peer moving its own chain.
    #[cfg(test)]
    pub(crate) fn sending_chain_mut(&mut self) -> &mut Option<ChainKey> {
        &mut self.sending_chain
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

#[cfg(test)]
mod tests {
    //! Chain counters at the top of the `u32` range (issue 14, item 3). No quick
    //! exchange reaches counter 2^32 − 2, so the tests move both parties' chains there
    //! (the chain key does not depend on the index, so the two stay in step).

    use super::*;
    use crate::limits::MAX_CHAIN_COUNTER;
    use crate::ratchet::chain_key::hmac_sha256;
    use crate::session::test_support::established;
    use hmac::Mac;

    /// Alice's current sending chain and Bob's newest receiving chain (the same chain)
    /// moved to `index`.
    fn move_chain_to(
        alice: &mut crate::session::test_support::Side,
        bob: &mut crate::session::test_support::Side,
        index: u32,
    ) {
        let (a, b) = (alice.addr.clone(), bob.addr.clone());
        alice.edit(&b, |r| {
            let s = r.current.as_mut().unwrap();
            let key = *s.sending_chain.as_ref().unwrap().key_bytes();
            s.sending_chain = Some(ChainKey::new(key, index));
        });
        bob.edit(&a, |r| {
            let c = r.current.as_mut().unwrap().receivers.back_mut().unwrap();
            c.chain = ChainKey::new(*c.chain.key_bytes(), index);
        });
    }

    /// A correctly encrypted message on `state`'s sending chain at `counter`, whatever
    /// the chain's index says: what a peer that ignores the counter limit would send.
    fn forge(state: &SessionState, counter: u32) -> Vec<u8> {
        let chain = state.sending_chain.as_ref().unwrap();
        let mut m = hmac_sha256(chain.key_bytes());
        m.update(&[0x01]);
        let seed = MessageKeySeed::new(m.finalize().into_bytes().into(), counter);
        let mut buf = SignalMessage::encode_header(
            state.our_ratchet.public(),
            state.previous_counter,
            counter,
            1,
        );
        let aad = state.aad(None, &buf[..MESSAGE_HEADER_LEN]);
        buf.push(b'!');
        seed.expand(MESSAGE_KEYS_INFO)
            .seal(&aad, &mut buf, MESSAGE_HEADER_LEN);
        buf
    }

    #[test]
    fn counters_stop_below_u32_max_and_the_record_keeps_decoding() {
        let (mut alice, mut bob) = established();
        let (a, b) = (alice.addr.clone(), bob.addr.clone());
        let m0 = alice.encrypt(&b, b"m0");
        bob.decrypt(&a, &m0).unwrap();
        move_chain_to(&mut alice, &mut bob, MAX_CHAIN_COUNTER);

        // The last counter is sent and received; the chain is then exhausted.
        let last = alice.encrypt(&b, b"last");
        let alice_before = alice.snapshot(&b);
        assert!(matches!(
            session::encrypt(&mut alice.store, &b, b"one more"),
            Err(SessionError::ChainExhausted { index: u32::MAX })
        ));
        assert_eq!(alice.snapshot(&b), alice_before);

        // A correctly encrypted message at u32::MAX (a peer ignoring the limit) is
        // refused with the last message still outstanding, and nothing changes.
        let at_max = forge(alice.record(&b).current().unwrap(), u32::MAX);
        let bob_before = bob.snapshot(&a);
        assert!(matches!(
            bob.decrypt(&a, &at_max),
            Err(SessionError::InvalidMessage)
        ));
        assert_eq!(bob.snapshot(&a), bob_before);
        assert_eq!(bob.decrypt(&a, &last).unwrap(), b"last");
        assert!(bob.decrypt(&a, &at_max).is_err());
        let record = bob.record(&a);
        let decoded = SessionRecord::decode(&record.encode()).unwrap();
        assert_eq!(
            decoded.current().unwrap().info().receiving_chains.last(),
            Some(&(u32::MAX, 0))
        );

        // The conversation goes on after a DH ratchet step.
        let reply = bob.encrypt(&a, b"reply");
        assert_eq!(alice.decrypt(&b, &reply).unwrap(), b"reply");
        let next = alice.encrypt(&b, b"new chain");
        assert_eq!(bob.decrypt(&a, &next).unwrap(), b"new chain");
    }

    use crate::session::{self, SessionRecord};
}
