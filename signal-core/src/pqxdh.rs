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
//! The registration ids in AD (an addition the specification allows) make every field
//! of a pre-key message authenticated: a changed registration id fails decryption.
//! The X25519 identity keys are the Montgomery forms of the Ed25519 identities
//! (see [`crate::identity`]).

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::CryptoError;
use crate::identity::{IDENTITY_KEY_LEN, IdentityKey, IdentityKeyPair};
use crate::keys::{DhKeyPair, DhPoint, DhPublicKey, KEM_CIPHERTEXT_LEN, Secret32};
use crate::prekey::{KemPreKeyRecord, OneTimePreKeyRecord, SignedPreKeyRecord, VerifiedBundle};

/// HKDF info of the PQXDH KDF.
pub const PQXDH_INFO: &[u8] = b"signal-core v1 PQXDH X25519 SHA-256 ML-KEM-1024";

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

/// Responder side.
pub(crate) fn accept(
    ours: &IdentityKeyPair,
    signed_prekey: &SignedPreKeyRecord,
    one_time_prekey: Option<&OneTimePreKeyRecord>,
    kem_prekey: &KemPreKeyRecord,
    their_identity: &IdentityKey,
    base_key: &DhPublicKey,
    kem_ciphertext: &[u8; KEM_CIPHERTEXT_LEN],
) -> Result<Secret32, CryptoError> {
    let spk = signed_prekey.key_pair();
    let base = base_key.point()?;
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
