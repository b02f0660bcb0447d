//! PQXDH key agreement (Signal's PQXDH specification, rev. 2) with X25519 and
//! ML-KEM-1024.
//!
//! ```text
//! DH1 = DH(IK_A, SPK_B)   DH2 = DH(EK_A, IK_B)   DH3 = DH(EK_A, SPK_B)
//! DH4 = DH(EK_A, OPK_B)   (only when a one-time prekey was used)
//! (CT, SS) = ML-KEM-1024.Encaps(PQPK_B)
//! SK = HKDF-SHA256(salt = 0^32, ikm = 0xFF^32 ‖ DH1 ‖ DH2 ‖ DH3 [‖ DH4] ‖ SS,
//!                  info = PQXDH_INFO, L = 32)
//! AD = Encode(IK_A) ‖ Encode(IK_B) ‖ u32 RegId_A ‖ u32 RegId_B
//! ```
//! The registration ids in AD (an addition the specification allows) bind the session
//! to both devices. Every message Alice sends inside a pre-key message is authenticated
//! with `AD ‖ T` instead, where the transcript `T` ([`prekey_transcript`]) covers every
//! other field of the pre-key message (base key, prekey ids, a hash of the KEM
//! ciphertext, registration id, identity): a pre-key message with any changed field
//! fails authentication, the first one and every later one (`docs/protocol.md` §5.3).
//! The X25519 identity keys are the Montgomery forms of the Ed25519 identities
//! (see [`crate::identity`]); the base key must lie in the prime-order subgroup.

use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{CryptoError, SessionError};
use crate::identity::{IDENTITY_KEY_LEN, IdentityKey, IdentityKeyPair};
use crate::keys::{DH_PUBLIC_LEN, DhKeyPair, DhPoint, DhPublicKey, KEM_CIPHERTEXT_LEN, Secret32};
use crate::prekey::{KemPreKeyRecord, OneTimePreKeyRecord, SignedPreKeyRecord, VerifiedBundle};
use crate::wire::message::PreKeyFields;
use crate::wire::{VERSION, kind};

/// HKDF info of the PQXDH KDF.
pub const PQXDH_INFO: &[u8] = b"signal-core v1 PQXDH X25519 SHA-256 ML-KEM-1024";

/// How an invalid base key is named in [`crate::DecodeError::InvalidKey`].
pub(crate) const BASE_KEY_KIND: &str = "X25519 base";

/// Length of the associated data: two encoded identities and two registration ids.
pub const AD_LEN: usize = 2 * IDENTITY_KEY_LEN + 8;

/// `Encode(IK_A) ‖ Encode(IK_B) ‖ u32 RegId_A ‖ u32 RegId_B` (A = initiator).
pub(crate) fn associated_data(
    initiator: (&[u8; IDENTITY_KEY_LEN], u32),
    responder: (&[u8; IDENTITY_KEY_LEN], u32),
) -> [u8; AD_LEN] {
    let mut ad = [0u8; AD_LEN];
    ad[..IDENTITY_KEY_LEN].copy_from_slice(initiator.0);
    ad[IDENTITY_KEY_LEN..2 * IDENTITY_KEY_LEN].copy_from_slice(responder.0);
    ad[2 * IDENTITY_KEY_LEN..2 * IDENTITY_KEY_LEN + 4].copy_from_slice(&initiator.1.to_be_bytes());
    ad[2 * IDENTITY_KEY_LEN + 4..].copy_from_slice(&responder.1.to_be_bytes());
    ad
}

/// First bytes of every pre-key transcript ([`prekey_transcript`]). The `v2` marks the
/// revision that added the transcript; peers of the earlier revision do not
/// interoperate on pre-key messages.
pub const PREKEY_TRANSCRIPT_LABEL: &[u8] = b"signal-core v2 pre-key message";

/// Longest transcript: label, the pre-key message header and fixed fields with a
/// one-time prekey id, `SHA-256(CT)`, base key and identity.
pub(crate) const PREKEY_TRANSCRIPT_MAX_LEN: usize =
    PREKEY_TRANSCRIPT_LABEL.len() + 2 + 4 + 4 + 1 + 4 + 4 + 32 + DH_PUBLIC_LEN + IDENTITY_KEY_LEN;

/// The transcript `T` of a pre-key message, authenticated (after `AD`) with the message
/// it carries. Every field of the pre-key message outside the inner message, in wire
/// order, with the KEM ciphertext replaced by its SHA-256:
///
/// ```text
/// T = "signal-core v2 pre-key message" ‖ 0x01 0x02 ‖ u32 R_A ‖ u32 signed prekey id
///     ‖ u8 has_one_time ‖ [u32 one-time prekey id] ‖ u32 KEM prekey id
///     ‖ SHA-256(CT) ‖ Encode(EK_A) ‖ Encode(IK_A)
/// ```
pub(crate) struct PreKeyTranscript {
    bytes: [u8; PREKEY_TRANSCRIPT_MAX_LEN],
    len: usize,
}

impl PreKeyTranscript {
    /// The transcript bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    fn push(&mut self, v: &[u8]) {
        // Only called by `prekey_transcript`, whose pieces add up to at most the capacity.
        if let Some(dst) = self.bytes.get_mut(self.len..self.len + v.len()) {
            dst.copy_from_slice(v);
            self.len += v.len();
        }
    }
}

/// Builds the transcript `T` of a pre-key message from its fields (see
/// [`PreKeyTranscript`]).
pub(crate) fn prekey_transcript(f: &PreKeyFields<'_>) -> PreKeyTranscript {
    let mut t = PreKeyTranscript {
        bytes: [0; PREKEY_TRANSCRIPT_MAX_LEN],
        len: 0,
    };
    t.push(PREKEY_TRANSCRIPT_LABEL);
    t.push(&[VERSION, kind::PREKEY_MESSAGE]);
    t.push(&f.registration_id.to_be_bytes());
    t.push(&f.signed_prekey_id.to_be_bytes());
    t.push(&[u8::from(f.one_time_prekey_id.is_some())]);
    if let Some(id) = f.one_time_prekey_id {
        t.push(&id.to_be_bytes());
    }
    t.push(&f.kem_prekey_id.to_be_bytes());
    t.push(&Sha256::digest(&f.kem_ciphertext[..]));
    t.push(&f.base_key.encode());
    t.push(f.identity);
    t
}

fn kdf(dhs: &[&Secret32], ss: &Secret32) -> Secret32 {
    let mut ikm = Zeroizing::new(Vec::with_capacity(32 * 6));
    ikm.extend_from_slice(&[0xFF; 32]);
    for dh in dhs {
        ikm.extend_from_slice(&dh[..]);
    }
    ikm.extend_from_slice(&ss[..]);
    let hk = Hkdf::<Sha256>::new(Some(&[0u8; 32]), &ikm);
    let mut sk = Zeroizing::new([0u8; 32]);
    // 32 bytes is below HKDF-SHA256's maximum output: expand cannot fail.
    let _ = hk.expand(PQXDH_INFO, &mut sk[..]);
    sk
}

/// What the initiator derives and sends.
pub(crate) struct Initiated {
    pub(crate) shared_secret: Secret32,
    pub(crate) base_key: DhPublicKey,
    pub(crate) kem_ciphertext: Box<[u8; KEM_CIPHERTEXT_LEN]>,
    /// The responder's signed prekey on the Edwards curve, reused for the initiator's
    /// first ratchet step.
    pub(crate) signed_prekey_point: DhPoint,
}

/// Initiator side. The bundle's signatures were verified when the [`VerifiedBundle`] was
/// made.
pub(crate) fn initiate(
    ours: &IdentityKeyPair,
    bundle: &VerifiedBundle,
) -> Result<Initiated, CryptoError> {
    let b = bundle.bundle();
    let ek = DhKeyPair::generate()?;
    let spk = b.signed_prekey.key.point()?;
    let dh1 = ours.agree_point(&spk)?;
    let dh2 = ek.agree_point(&b.identity.dh_point())?;
    let dh3 = ek.agree_point(&spk)?;
    let (kem_ciphertext, ss) = b.kem_prekey.key.encapsulate()?;
    let shared_secret = match &b.one_time_prekey {
        Some(opk) => {
            let dh4 = ek.agree_point(&opk.key.point()?)?;
            kdf(&[&dh1, &dh2, &dh3, &dh4], &ss)
        }
        None => kdf(&[&dh1, &dh2, &dh3], &ss),
    };
    Ok(Initiated {
        shared_secret,
        base_key: *ek.public(),
        kem_ciphertext,
        signed_prekey_point: spk,
    })
}

/// Responder side. A base key outside the prime-order subgroup (on the twist, of small
/// order, or with an 8-torsion component) is refused with
/// [`crate::DecodeError::InvalidKey`] before any Diffie-Hellman, so the last-resort
/// replay record `(KEM id, base key)` names exactly one key.
pub(crate) fn accept(
    ours: &IdentityKeyPair,
    signed_prekey: &SignedPreKeyRecord,
    one_time_prekey: Option<&OneTimePreKeyRecord>,
    kem_prekey: &KemPreKeyRecord,
    their_identity: &IdentityKey,
    base_key: &DhPublicKey,
    kem_ciphertext: &[u8; KEM_CIPHERTEXT_LEN],
) -> Result<Secret32, SessionError> {
    let spk = signed_prekey.key_pair();
    let base = base_key.prime_order_point(BASE_KEY_KIND)?;
    let dh1 = spk.agree_point(&their_identity.dh_point())?;
    let dh2 = ours.agree_point(&base)?;
    let dh3 = spk.agree_point(&base)?;
    let ss = kem_prekey.key_pair().decapsulate(kem_ciphertext);
    Ok(match one_time_prekey {
        Some(opk) => {
            let dh4 = opk.key_pair().agree_point(&base)?;
            kdf(&[&dh1, &dh2, &dh3, &dh4], &ss)
        }
        None => kdf(&[&dh1, &dh2, &dh3], &ss),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prekey::PreKeyBundle;

    fn responder(
        with_opk: bool,
    ) -> (
        IdentityKeyPair,
        SignedPreKeyRecord,
        Option<OneTimePreKeyRecord>,
        KemPreKeyRecord,
        PreKeyBundle,
    ) {
        let id = IdentityKeyPair::generate().unwrap();
        let spk = SignedPreKeyRecord::generate(&id, 7, 1, 100).unwrap();
        let opk = with_opk.then(|| OneTimePreKeyRecord::generate(&id, 5, 100).unwrap());
        let kem = KemPreKeyRecord::generate(&id, 9, 100, !with_opk).unwrap();
        let bundle = PreKeyBundle {
            registration_id: 7,
            identity: *id.public(),
            signed_prekey: spk.public().clone(),
            one_time_prekey: opk.as_ref().map(|o| o.public().clone()),
            kem_prekey: kem.public().clone(),
        };
        (id, spk, opk, kem, bundle)
    }

    #[test]
    fn both_sides_derive_the_same_secret() {
        for with_opk in [true, false] {
            let alice = IdentityKeyPair::generate().unwrap();
            let (bob, spk, opk, kem, bundle) = responder(with_opk);
            let init = initiate(&alice, &bundle.verify().unwrap()).unwrap();
            let sk = accept(
                &bob,
                &spk,
                opk.as_ref(),
                &kem,
                alice.public(),
                &init.base_key,
                &init.kem_ciphertext,
            )
            .unwrap();
            assert_eq!(*sk, *init.shared_secret);
        }
    }

    /// `T` is the pre-key message's encoding up to the inner message, with the KEM
    /// ciphertext replaced by its SHA-256, after the label (`docs/protocol.md` §5.3).
    #[test]
    fn transcript_is_the_encoded_prefix_with_the_ciphertext_hashed() {
        let alice = IdentityKeyPair::generate().unwrap();
        let base_key = *DhKeyPair::generate().unwrap().public();
        let ct = Box::new([0x5a; KEM_CIPHERTEXT_LEN]);
        for one_time in [None, Some(0x0102_0304)] {
            let fields = PreKeyFields {
                registration_id: 0xa1a2_a3a4,
                signed_prekey_id: 0xb1b2_b3b4,
                one_time_prekey_id: one_time,
                kem_prekey_id: 0xc1c2_c3c4,
                kem_ciphertext: &ct,
                base_key: &base_key,
                identity: &alice.public().encode(),
            };
            let encoded = crate::wire::PreKeyMessage::encode_parts(fields, &[]);
            let ct_at = 2 + 4 + 4 + 1 + 4 * usize::from(one_time.is_some()) + 4;
            let mut expected = PREKEY_TRANSCRIPT_LABEL.to_vec();
            expected.extend_from_slice(&encoded[..ct_at]);
            expected.extend_from_slice(&Sha256::digest(&ct[..]));
            expected.extend_from_slice(&encoded[ct_at + KEM_CIPHERTEXT_LEN..]);
            assert_eq!(prekey_transcript(&fields).as_bytes(), &expected[..]);
        }
        assert_eq!(
            PREKEY_TRANSCRIPT_MAX_LEN,
            PREKEY_TRANSCRIPT_LABEL.len() + 2 + 17 + 32 + 66
        );
    }

    #[test]
    fn wrong_kem_ciphertext_gives_a_different_secret() {
        let alice = IdentityKeyPair::generate().unwrap();
        let (bob, spk, opk, kem, bundle) = responder(true);
        let init = initiate(&alice, &bundle.verify().unwrap()).unwrap();
        let mut ct = init.kem_ciphertext.clone();
        ct[0] ^= 1;
        let sk = accept(
            &bob,
            &spk,
            opk.as_ref(),
            &kem,
            alice.public(),
            &init.base_key,
            &ct,
        )
        .unwrap();
        assert_ne!(*sk, *init.shared_secret);
    }
}
