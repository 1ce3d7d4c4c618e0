//! Property tests for envelope parsing, PAE and sign/verify.

use std::sync::OnceLock;

use kiln_trust::{Envelope, KeyAlgorithm, PrivateKey, pae};
use proptest::prelude::*;

fn keys() -> &'static [PrivateKey; 2] {
    static KEYS: OnceLock<[PrivateKey; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        [
            PrivateKey::generate(KeyAlgorithm::EcdsaP256Sha256).unwrap(),
            PrivateKey::generate(KeyAlgorithm::Ed25519).unwrap(),
        ]
    })
}

proptest! {
    #[test]
    fn envelope_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Envelope::from_json(&bytes);
        let _ = serde_json::from_slice::<Envelope>(&bytes);
    }

    #[test]
    fn envelope_parser_never_panics_on_near_json(
        ty in ".{0,20}", payload in "[A-Za-z0-9+/=_-]{0,40}", sig in "[A-Za-z0-9+/=_-]{0,40}",
        keyid in ".{0,10}",
    ) {
        let json = serde_json::json!({
            "payloadType": ty, "payload": payload,
            "signatures": [{"keyid": keyid, "sig": sig}],
        });
        if let Ok(env) = Envelope::from_json(json.to_string().as_bytes()) {
            let _ = env.verify(&[keys()[0].public_key()], 1);
        }
    }

    #[test]
    fn pae_is_injective(
        t1 in ".{0,16}", b1 in proptest::collection::vec(any::<u8>(), 0..32),
        t2 in ".{0,16}", b2 in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        if (t1.as_str(), &b1) != (t2.as_str(), &b2) {
            prop_assert_ne!(pae(&t1, &b1), pae(&t2, &b2));
        }
    }

    #[test]
    fn sign_verify_round_trip(
        payload in proptest::collection::vec(any::<u8>(), 0..256),
        ty in "[a-z/+.-]{1,30}",
        flip in any::<prop::sample::Index>(),
    ) {
        let [ec, ed] = keys();
        let trusted = [ec.public_key(), ed.public_key()];
        let env = Envelope::sign(&ty, &payload, &[ec, ed]);
        let back = Envelope::from_json(env.to_json().as_bytes()).unwrap();
        prop_assert_eq!(&back, &env);
        prop_assert_eq!(back.verify(&trusted, 2).unwrap().key_ids.len(), 2);
        if !payload.is_empty() {
            let mut bad = back.clone();
            let i = flip.index(payload.len());
            bad.payload[i] ^= 0x01;
            prop_assert!(bad.verify(&trusted, 1).is_err());
        }
    }
}
