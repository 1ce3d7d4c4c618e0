//! DSSE (Dead Simple Signing Envelope) v1: PAE, JSON envelope and threshold verification.

use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::{Deserialize, Serialize};

use crate::TrustError;
use crate::keys::{PrivateKey, PublicKey};

const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Decodes standard or URL-safe base64, padded or not (but not a mix of alphabets).
/// A failure is reported as the standard alphabet's error.
pub(crate) fn decode_b64(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    match STANDARD_LENIENT.decode(s) {
        Ok(v) => Ok(v),
        Err(std_err) => URL_SAFE_LENIENT.decode(s).map_err(|_| std_err),
    }
}

/// Pre-Authentication Encoding:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in ASCII decimal.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let ty = payload_type.as_bytes();
    let mut out = Vec::with_capacity(32 + ty.len() + payload.len());
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(ty.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(ty);
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// One DSSE signature. `keyid` is an unauthenticated hint (may be empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub keyid: String,
    pub sig: Vec<u8>,
}

/// A DSSE envelope. Serialises to
/// `{"payloadType":..,"payload":b64,"signatures":[{"keyid":..,"sig":b64}]}` (standard base64);
/// parsing accepts standard and URL-safe base64, padded or not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "WireEnvelope", into = "WireEnvelope")]
pub struct Envelope {
    pub payload_type: String,
    pub payload: Vec<u8>,
    pub signatures: Vec<Signature>,
}

/// Result of a successful [`Envelope::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// [`PublicKey::key_id`]s of the distinct trusted keys with a valid signature, in the
    /// order of the `trusted` slice.
    pub key_ids: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireSignature {
    #[serde(default)]
    keyid: String,
    sig: String,
}

#[derive(Serialize, Deserialize)]
struct WireEnvelope {
    #[serde(rename = "payloadType")]
    payload_type: String,
    payload: String,
    signatures: Vec<WireSignature>,
}

impl TryFrom<WireEnvelope> for Envelope {
    type Error = TrustError;

    fn try_from(w: WireEnvelope) -> Result<Self, TrustError> {
        let payload = decode_b64(&w.payload).map_err(|source| TrustError::Base64 {
            field: "payload".into(),
            source,
        })?;
        let signatures = w
            .signatures
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let sig = decode_b64(&s.sig).map_err(|source| TrustError::Base64 {
                    field: format!("signatures[{i}].sig"),
                    source,
                })?;
                Ok(Signature {
                    keyid: s.keyid,
                    sig,
                })
            })
            .collect::<Result<Vec<_>, TrustError>>()?;
        Ok(Envelope {
            payload_type: w.payload_type,
            payload,
            signatures,
        })
    }
}

impl From<Envelope> for WireEnvelope {
    fn from(e: Envelope) -> Self {
        WireEnvelope {
            payload_type: e.payload_type,
            payload: STANDARD.encode(&e.payload),
            signatures: e
                .signatures
                .into_iter()
                .map(|s| WireSignature {
                    keyid: s.keyid,
                    sig: STANDARD.encode(&s.sig),
                })
                .collect(),
        }
    }
}

impl Envelope {
    /// Signs PAE(payload_type, payload) with each key; `keyid` = [`PublicKey::key_id`].
    pub fn sign(payload_type: &str, payload: &[u8], keys: &[&PrivateKey]) -> Envelope {
        let mut env = Envelope {
            payload_type: payload_type.to_owned(),
            payload: payload.to_vec(),
            signatures: Vec::new(),
        };
        for key in keys {
            env.add_signature(key);
        }
        env
    }

    /// Adds one more signature (e.g. a co-signer's) over this envelope's PAE.
    pub fn add_signature(&mut self, key: &PrivateKey) {
        let sig = key.sign(&self.pae());
        self.signatures.push(Signature {
            keyid: key.public_key().key_id(),
            sig,
        });
    }

    /// PAE of this envelope's type and payload: the bytes every signature covers.
    pub fn pae(&self) -> Vec<u8> {
        pae(&self.payload_type, &self.payload)
    }

    /// Parses envelope JSON; truncated or malformed JSON and bad base64 are errors.
    pub fn from_json(bytes: &[u8]) -> Result<Envelope, TrustError> {
        let wire: WireEnvelope = serde_json::from_slice(bytes)
            .map_err(|e| TrustError::Envelope(format!("malformed envelope JSON: {e}")))?;
        Envelope::try_from(wire)
    }

    /// Compact JSON with standard, padded base64.
    pub fn to_json(&self) -> String {
        let wire = WireEnvelope::from(self.clone());
        serde_json::to_string(&wire)
            .unwrap_or_else(|e| unreachable!("serialising strings cannot fail: {e}"))
    }

    /// Verifies that at least `threshold` DISTINCT keys from `trusted` produced a valid
    /// signature over PAE. A key counts once however many signatures (or key ids) it has;
    /// duplicates in `trusted` (same SPKI) also count once. The `keyid` field is only a
    /// hint for ordering: every trusted key is tried.
    pub fn verify(&self, trusted: &[PublicKey], threshold: usize) -> Result<Verified, TrustError> {
        if threshold == 0 {
            return Err(TrustError::InvalidThreshold(threshold));
        }
        let pae = self.pae();
        // Distinct trusted keys, by key id.
        let mut keys: Vec<(String, &PublicKey)> = Vec::new();
        for k in trusted {
            let id = k.key_id();
            if !keys.iter().any(|(i, _)| *i == id) {
                keys.push((id, k));
            }
        }
        let mut accepted = vec![false; keys.len()];
        let mut unknown: Vec<String> = Vec::new();
        let mut invalid: Vec<String> = Vec::new();
        for sig in &self.signatures {
            // Try the key named by keyid first, then all others.
            let mut order: Vec<usize> = (0..keys.len()).collect();
            order.sort_by_key(|&i| keys[i].0 != sig.keyid);
            let hit = order
                .into_iter()
                .find(|&i| keys[i].1.verify(&pae, &sig.sig).is_ok());
            match hit {
                Some(i) => accepted[i] = true,
                None => {
                    let label = if sig.keyid.is_empty() {
                        "<empty keyid>".to_owned()
                    } else {
                        sig.keyid.clone()
                    };
                    let list = if keys.iter().any(|(i, _)| *i == sig.keyid) {
                        &mut invalid
                    } else {
                        &mut unknown
                    };
                    if !list.contains(&label) {
                        list.push(label);
                    }
                }
            }
        }
        let key_ids: Vec<String> = keys
            .iter()
            .zip(&accepted)
            .filter(|(_, a)| **a)
            .map(|((id, _), _)| id.clone())
            .collect();
        if key_ids.len() >= threshold {
            Ok(Verified { key_ids })
        } else {
            Err(TrustError::Threshold {
                valid: key_ids.len(),
                required: threshold,
                unknown,
                invalid,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyAlgorithm;

    #[test]
    fn pae_vector() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn base64_variants() {
        // 0xfb 0xff -> "+/8=" standard, "-_8=" URL-safe.
        for s in ["+/8=", "+/8", "-_8=", "-_8"] {
            assert_eq!(decode_b64(s).unwrap(), vec![0xfb, 0xff], "{s}");
        }
        assert!(decode_b64("+_8=").is_err());
        assert!(decode_b64("abc$").is_err());
        assert!(decode_b64("a").is_err());
    }

    fn keys() -> Vec<PrivateKey> {
        vec![
            PrivateKey::generate(KeyAlgorithm::EcdsaP256Sha256).unwrap(),
            PrivateKey::generate(KeyAlgorithm::Ed25519).unwrap(),
            PrivateKey::generate(KeyAlgorithm::EcdsaP256Sha256).unwrap(),
        ]
    }

    #[test]
    fn json_round_trip_and_threshold() {
        let k = keys();
        let pubs: Vec<PublicKey> = k.iter().map(|k| k.public_key()).collect();
        let env = Envelope::sign("text/plain", b"hi", &[&k[0], &k[1]]);
        let json = env.to_json();
        assert!(json.starts_with(r#"{"payloadType":"text/plain","payload":"aGk=""#));
        let back = Envelope::from_json(json.as_bytes()).unwrap();
        assert_eq!(back, env);
        let v = back.verify(&pubs, 2).unwrap();
        assert_eq!(v.key_ids, vec![pubs[0].key_id(), pubs[1].key_id()]);
        let err = back.verify(&pubs, 3).unwrap_err().to_string();
        assert!(
            err.contains("2 valid") && err.contains("3 required"),
            "{err}"
        );
        assert!(matches!(
            back.verify(&pubs, 0),
            Err(TrustError::InvalidThreshold(0))
        ));
        // serde path matches from_json/to_json
        let via_serde: Envelope = serde_json::from_str(&json).unwrap();
        assert_eq!(via_serde, env);
        assert_eq!(serde_json::to_string(&env).unwrap(), json);
    }

    #[test]
    fn same_key_twice_counts_once() {
        let k = keys();
        let pubs: Vec<PublicKey> = k.iter().map(|k| k.public_key()).collect();
        let mut env = Envelope::sign("t", b"p", &[&k[0], &k[0]]);
        // also the same key under a different keyid
        let extra = k[0].sign(&env.pae());
        env.signatures.push(Signature {
            keyid: "alias".into(),
            sig: extra,
        });
        let err = env.verify(&pubs, 2).unwrap_err();
        match err {
            TrustError::Threshold {
                valid, required, ..
            } => {
                assert_eq!((valid, required), (1, 2))
            }
            e => panic!("{e}"),
        }
        // duplicate trusted keys do not help either
        let dup = vec![pubs[0].clone(), pubs[0].clone(), pubs[1].clone()];
        assert!(env.verify(&dup, 2).is_err());
        assert!(env.verify(&dup, 1).is_ok());
    }

    #[test]
    fn tampering_and_unknown_keys() {
        let k = keys();
        let outsider = PrivateKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let pubs: Vec<PublicKey> = k.iter().map(|k| k.public_key()).collect();
        let env = Envelope::sign("t", b"payload", &[&k[0], &k[1]]);

        let mut flipped = env.clone();
        flipped.payload[0] ^= 1;
        let err = flipped.verify(&pubs, 1).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("0 valid") && msg.contains("1 required"),
            "{msg}"
        );
        assert!(msg.contains(&pubs[0].key_id()), "{msg}");

        let mut typ = env.clone();
        typ.payload_type = "u".into();
        assert!(typ.verify(&pubs, 1).is_err());

        let foreign = Envelope::sign("t", b"payload", &[&outsider]);
        let err = foreign.verify(&pubs, 1).unwrap_err();
        match &err {
            TrustError::Threshold { unknown, .. } => {
                assert_eq!(unknown, &vec![outsider.public_key().key_id()])
            }
            e => panic!("{e}"),
        }

        // signature for another payload, transplanted
        let other = Envelope::sign("t", b"other", &[&k[2]]);
        let mut mixed = env.clone();
        mixed.signatures = other.signatures.clone();
        assert!(mixed.verify(&pubs, 1).is_err());
    }

    #[test]
    fn malformed_json() {
        let k = keys();
        let json = Envelope::sign("t", b"payload", &[&k[0]]).to_json();
        for cut in [0, 1, 10, json.len() / 2, json.len() - 1] {
            let e = Envelope::from_json(&json.as_bytes()[..cut]).unwrap_err();
            assert!(matches!(e, TrustError::Envelope(_)), "{cut}: {e}");
            assert!(e.to_string().contains("malformed envelope JSON"));
        }
        let bad = r#"{"payloadType":"t","payload":"!!!","signatures":[]}"#;
        let e = Envelope::from_json(bad.as_bytes()).unwrap_err();
        assert!(
            matches!(&e, TrustError::Base64 { field, .. } if field == "payload"),
            "{e}"
        );
        let bad = r#"{"payloadType":"t","payload":"","signatures":[{"keyid":"","sig":"a"}]}"#;
        let e = Envelope::from_json(bad.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("signatures[0].sig"), "{e}");
        let missing = r#"{"payload":"","signatures":[]}"#;
        assert!(Envelope::from_json(missing.as_bytes()).is_err());
        // URL-safe unpadded accepted; keyid optional
        let ok = r#"{"payloadType":"t","payload":"-_8","signatures":[{"sig":"AA"}]}"#;
        let env = Envelope::from_json(ok.as_bytes()).unwrap();
        assert_eq!(env.payload, vec![0xfb, 0xff]);
        assert_eq!(env.signatures[0].keyid, "");
    }
}
