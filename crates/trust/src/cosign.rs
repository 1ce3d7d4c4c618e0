//! cosign-compatible image signatures.
//!
//! - Legacy signatures: the simple-signing payload, signed as raw bytes, stored as a layer
//!   (media type [`SIMPLESIGNING_MEDIA_TYPE`]) of a manifest tagged `sha256-<hex>.sig`, with the
//!   base64 signature in the layer descriptor's [`SIGNATURE_ANNOTATION`].
//! - cosign v3: a Sigstore bundle v0.3 whose DSSE envelope wraps an in-toto Statement with
//!   predicateType [`SIGN_PREDICATE_TYPE`], stored as an OCI 1.1 referrer of the image.
//!
//! Everything here builds or parses bytes and descriptors; storing them is the caller's job.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kiln_oci::{Descriptor, Digest, ImageManifest, media};
use serde::{Deserialize, Serialize};

use crate::TrustError;
use crate::dsse::Envelope;
use crate::keys::{PrivateKey, PublicKey};
use crate::statement::{Statement, Subject};

/// Media type of a simple-signing payload layer.
pub const SIMPLESIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation holding base64 of the signature over the payload bytes.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// `critical.type` of a simple-signing payload.
pub const SIMPLESIGNING_TYPE: &str = "cosign container image signature";
/// Media type (and artifactType) of a Sigstore bundle v0.3.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// predicateType of cosign's image-signature statement.
pub const SIGN_PREDICATE_TYPE: &str = "https://sigstore.dev/cosign/sign/v1";
/// Referrer annotation: what the bundle holds.
pub const BUNDLE_CONTENT_ANNOTATION: &str = "dev.sigstore.bundle.content";
/// Referrer annotation: the predicate type of the bundle's statement.
pub const BUNDLE_PREDICATE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";

/// Errors from building or parsing cosign artifacts.
#[derive(Debug, thiserror::Error)]
pub enum CosignError {
    #[error("invalid simple-signing payload: {0}")]
    Payload(String),
    #[error("signature layer {index} ({digest}): {reason}")]
    Layer {
        index: usize,
        digest: String,
        reason: String,
    },
    #[error("invalid Sigstore bundle: {0}")]
    Bundle(String),
    #[error(transparent)]
    Trust(#[from] TrustError),
}

/// The `sha256-<hex>.sig` tag of the signatures of `image`.
pub fn signature_tag(image: &Digest) -> String {
    format!("sha256-{}.sig", image.hex())
}

/// A simple-signing payload: "`docker_reference` is the image `manifest_digest`".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimpleSigning {
    pub docker_reference: String,
    pub manifest_digest: Digest,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WirePayload {
    critical: WireCritical,
    // Present as `null` or an object in cosign's output; its content is unsigned metadata.
    #[serde(default)]
    optional: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireCritical {
    identity: WireIdentity,
    image: WireImage,
    #[serde(rename = "type")]
    type_: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireIdentity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireImage {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|e| unreachable!("serialising a string: {e}"))
}

impl SimpleSigning {
    pub fn new(docker_reference: impl Into<String>, manifest_digest: Digest) -> SimpleSigning {
        SimpleSigning {
            docker_reference: docker_reference.into(),
            manifest_digest,
        }
    }

    /// The exact bytes that get signed (cosign's field order, `"optional":null`).
    pub fn to_bytes(&self) -> Vec<u8> {
        format!(
            r#"{{"critical":{{"identity":{{"docker-reference":{}}},"image":{{"docker-manifest-digest":{}}},"type":{}}},"optional":null}}"#,
            json_string(&self.docker_reference),
            json_string(&self.manifest_digest.to_string()),
            json_string(SIMPLESIGNING_TYPE),
        )
        .into_bytes()
    }

    /// Parses a payload strictly: no unknown or duplicate fields, the right `type`, a valid
    /// sha256 digest. `optional` may be absent, `null` or an object (it is not interpreted).
    pub fn parse(bytes: &[u8]) -> Result<SimpleSigning, CosignError> {
        let w: WirePayload = serde_json::from_slice(bytes)
            .map_err(|e| CosignError::Payload(format!("malformed JSON: {e}")))?;
        let _ = w.optional;
        if w.critical.type_ != SIMPLESIGNING_TYPE {
            return Err(CosignError::Payload(format!(
                "critical.type is {:?}, expected {SIMPLESIGNING_TYPE:?}",
                w.critical.type_
            )));
        }
        let digest: Digest = w
            .critical
            .image
            .docker_manifest_digest
            .parse()
            .map_err(|e| CosignError::Payload(format!("docker-manifest-digest: {e}")))?;
        Ok(SimpleSigning {
            docker_reference: w.critical.identity.docker_reference,
            manifest_digest: digest,
        })
    }
}

/// The layer descriptor of one legacy signature: `payload` (already stored by the caller
/// under [`SIMPLESIGNING_MEDIA_TYPE`]) with base64 of `signature` as annotation.
pub fn signature_layer(payload: &[u8], signature: &[u8]) -> Descriptor {
    let mut d = Descriptor::new(
        SIMPLESIGNING_MEDIA_TYPE,
        Digest::of(payload),
        payload.len() as u64,
    );
    d.annotations
        .insert(SIGNATURE_ANNOTATION.to_owned(), STANDARD.encode(signature));
    d
}

/// Adds `layer` to the layers of an existing signature manifest unless an identical layer
/// (same payload and same signature) is already there.
pub fn merge_layers(existing: &[Descriptor], layer: Descriptor) -> Vec<Descriptor> {
    let mut out = existing.to_vec();
    if !out.contains(&layer) {
        out.push(layer);
    }
    out
}

/// The config blob of a signature manifest: an OCI config with the layers as `diff_ids`
/// (the payloads are uncompressed, so diff_id = layer digest).
pub fn signature_config(layers: &[Descriptor]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| l.digest.to_string()).collect();
    let v = serde_json::json!({
        "architecture": "",
        "os": "",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    serde_json::to_vec(&v).unwrap_or_else(|e| unreachable!("serialising JSON: {e}"))
}

/// The `sha256-<hex>.sig` manifest: `config` is the stored [`signature_config`] blob.
pub fn signature_manifest(config: Descriptor, layers: Vec<Descriptor>) -> ImageManifest {
    ImageManifest {
        schema_version: 2,
        media_type: Some(media::MANIFEST.to_owned()),
        artifact_type: None,
        config,
        layers,
        subject: None,
        annotations: BTreeMap::new(),
    }
}

/// One legacy signature read from a signature manifest layer.
#[derive(Clone, Debug)]
pub struct SignatureLayer {
    pub index: usize,
    pub descriptor: Descriptor,
    pub signature: Vec<u8>,
}

/// Reads the signature of layer `index` of a signature manifest (media type and base64
/// annotation checked; the payload blob is the caller's to fetch).
pub fn read_signature_layer(
    index: usize,
    layer: &Descriptor,
) -> Result<SignatureLayer, CosignError> {
    let err = |reason: String| CosignError::Layer {
        index,
        digest: layer.digest.to_string(),
        reason,
    };
    if layer.media_type != SIMPLESIGNING_MEDIA_TYPE {
        return Err(err(format!(
            "media type is {:?}, expected {SIMPLESIGNING_MEDIA_TYPE:?}",
            layer.media_type
        )));
    }
    let b64 = layer
        .annotations
        .get(SIGNATURE_ANNOTATION)
        .ok_or_else(|| err(format!("no {SIGNATURE_ANNOTATION} annotation")))?;
    let signature = STANDARD.decode(b64).map_err(|e| {
        err(format!(
            "annotation {SIGNATURE_ANNOTATION} is not valid base64: {e}"
        ))
    })?;
    if signature.is_empty() {
        return Err(err(format!("annotation {SIGNATURE_ANNOTATION} is empty")));
    }
    Ok(SignatureLayer {
        index,
        descriptor: layer.clone(),
        signature,
    })
}

/// A Sigstore bundle v0.3 (the subset kiln writes and reads: key hint + DSSE envelope).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    pub media_type: String,
    pub verification_material: VerificationMaterial,
    pub dsse_envelope: Envelope,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMaterial {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<PublicKeyIdentifier>,
    /// Transparency log entries. kiln signs offline and logs nothing, but writes the empty
    /// list: Sigstore clients (sigstore-js's bundle validator, sigstore-go) require the
    /// field. Entries in a bundle read from elsewhere are kept, not interpreted.
    #[serde(default)]
    pub tlog_entries: Vec<serde_json::Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PublicKeyIdentifier {
    pub hint: String,
}

impl Bundle {
    /// Signs cosign's image-signature statement for `name`@`image` with `key`.
    pub fn sign_image(key: &PrivateKey, name: &str, image: &Digest) -> Bundle {
        let st = Statement::new(
            vec![Subject::sha256(name, image.hex())],
            SIGN_PREDICATE_TYPE,
            serde_json::Value::Null,
        );
        Bundle::for_envelope(&st.sign(&[key]), &key.public_key())
            .unwrap_or_else(|e| unreachable!("a fresh single-key signature: {e}"))
    }

    /// The bundle of a single-signer DSSE envelope (an attestation, or cosign's image
    /// signature): `signer` must have made its one signature. The key is named by
    /// `verificationMaterial.publicKey.hint`; the DSSE keyid is emptied, as cosign writes
    /// it: sigstore-go (inside cosign) skips a signature whose keyid is not its own
    /// SSH-style fingerprint of the key, so kiln's hex key id there made cosign reject a
    /// valid bundle. The keyid is not signed, so the signature is unchanged.
    pub fn for_envelope(envelope: &Envelope, signer: &PublicKey) -> Result<Bundle, CosignError> {
        let [sig] = envelope.signatures.as_slice() else {
            return Err(CosignError::Bundle(format!(
                "a bundle holds one signature, the envelope has {}",
                envelope.signatures.len()
            )));
        };
        signer.verify(&envelope.pae(), &sig.sig).map_err(|e| {
            CosignError::Bundle(format!(
                "the envelope's signature is not by key {}: {e}",
                signer.key_id()
            ))
        })?;
        let mut dsse_envelope = envelope.clone();
        for s in &mut dsse_envelope.signatures {
            s.keyid.clear();
        }
        Ok(Bundle {
            media_type: BUNDLE_MEDIA_TYPE.to_owned(),
            verification_material: VerificationMaterial {
                public_key: Some(PublicKeyIdentifier {
                    hint: signer.hint(),
                }),
                tlog_entries: Vec::new(),
            },
            dsse_envelope,
        })
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|e| unreachable!("serialising a bundle: {e}"))
    }

    /// Parses a bundle and checks its media type (signatures are NOT verified here).
    pub fn from_json(bytes: &[u8]) -> Result<Bundle, CosignError> {
        let b: Bundle = serde_json::from_slice(bytes)
            .map_err(|e| CosignError::Bundle(format!("malformed JSON: {e}")))?;
        if b.media_type != BUNDLE_MEDIA_TYPE {
            return Err(CosignError::Bundle(format!(
                "mediaType is {:?}, expected {BUNDLE_MEDIA_TYPE:?}",
                b.media_type
            )));
        }
        Ok(b)
    }

    /// The in-toto statement of the envelope (any predicate type; NOT verified).
    pub fn statement(&self) -> Result<Statement, CosignError> {
        Ok(Statement::from_envelope(&self.dsse_envelope)?)
    }

    /// Whether the envelope holds cosign's image-signature statement (an image's bundles
    /// are its signature and its attestations).
    pub fn is_image_signature(&self) -> Result<bool, CosignError> {
        Ok(self.statement()?.predicate_type == SIGN_PREDICATE_TYPE)
    }

    /// The statement of the envelope, checked to be a cosign image signature; returns the
    /// sha256 subject digests it names.
    pub fn signed_digests(&self) -> Result<Vec<Digest>, CosignError> {
        let st = self.statement()?;
        if st.predicate_type != SIGN_PREDICATE_TYPE {
            return Err(CosignError::Bundle(format!(
                "predicateType is {:?}, expected {SIGN_PREDICATE_TYPE:?}",
                st.predicate_type
            )));
        }
        let mut out = Vec::new();
        for s in &st.subject {
            if let Some(hex) = s.digest.get("sha256") {
                let d = Digest::from_hex(hex)
                    .map_err(|e| CosignError::Bundle(format!("subject {:?}: {e}", s.name)))?;
                out.push(d);
            }
        }
        if out.is_empty() {
            return Err(CosignError::Bundle("no sha256 subject digest".into()));
        }
        Ok(out)
    }

    /// Whether `key` is the key named by the bundle's hint (a missing hint matches any key).
    pub fn hint_matches(&self, key: &PublicKey) -> bool {
        match &self.verification_material.public_key {
            Some(p) => p.hint == key.hint(),
            None => true,
        }
    }
}

/// The OCI 1.1 referrer manifest for a stored bundle blob (`bundle`, media type
/// [`BUNDLE_MEDIA_TYPE`]) of an image signature attached to `subject`. Its config is the
/// empty descriptor.
pub fn bundle_manifest(bundle: Descriptor, subject: &Descriptor) -> ImageManifest {
    attestation_bundle_manifest(bundle, subject, SIGN_PREDICATE_TYPE)
}

/// The referrer manifest of a stored bundle blob whose statement has `predicate_type`,
/// annotated as cosign annotates its own (`cosign attest --new-bundle-format`). cosign 2.6
/// finds an image's attestations only in such referrers once the image has any bundle.
pub fn attestation_bundle_manifest(
    bundle: Descriptor,
    subject: &Descriptor,
    predicate_type: &str,
) -> ImageManifest {
    let subject = Descriptor::new(&subject.media_type, subject.digest, subject.size);
    ImageManifest {
        schema_version: 2,
        media_type: Some(media::MANIFEST.to_owned()),
        artifact_type: Some(BUNDLE_MEDIA_TYPE.to_owned()),
        config: Descriptor::empty(),
        layers: vec![bundle],
        subject: Some(subject),
        annotations: BTreeMap::from([
            (
                BUNDLE_CONTENT_ANNOTATION.to_owned(),
                "dsse-envelope".to_owned(),
            ),
            (
                BUNDLE_PREDICATE_ANNOTATION.to_owned(),
                predicate_type.to_owned(),
            ),
        ]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyAlgorithm;

    fn digest() -> Digest {
        Digest::of(b"image")
    }

    #[test]
    fn payload_bytes_are_cosigns_and_round_trip() {
        let p = SimpleSigning::new("hello", digest());
        let bytes = p.to_bytes();
        let expected = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"hello"}},"image":{{"docker-manifest-digest":"{}"}},"type":"cosign container image signature"}},"optional":null}}"#,
            digest()
        );
        assert_eq!(String::from_utf8(bytes.clone()).unwrap(), expected);
        assert_eq!(SimpleSigning::parse(&bytes).unwrap(), p);
    }

    #[test]
    fn payload_parsing_is_strict() {
        let good = String::from_utf8(SimpleSigning::new("hello", digest()).to_bytes()).unwrap();
        let with_optional = good.replace(r#""optional":null"#, r#""optional":{"a":"b"}"#);
        assert!(SimpleSigning::parse(with_optional.as_bytes()).is_ok());
        for bad in [
            good.replace("cosign container image signature", "other"),
            good.replace(r#""optional":null"#, r#""optional":null,"x":1"#),
            good.replace("sha256:", "sha512:"),
            good.replace(r#""type""#, r#""kind""#),
            good.replace(r#""identity":{"#, r#""identity":{"docker-reference":"a","#),
            "[]".to_owned(),
        ] {
            assert!(SimpleSigning::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn signature_layers_merge_and_decode() {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256Sha256).unwrap();
        let payload = SimpleSigning::new("hello", digest()).to_bytes();
        let sig = key.sign(&payload);
        let l = signature_layer(&payload, &sig);
        let merged = merge_layers(std::slice::from_ref(&l), l.clone());
        assert_eq!(merged.len(), 1);
        // ECDSA here is deterministic (RFC 6979): re-signing yields the same layer.
        assert_eq!(
            merge_layers(&merged, signature_layer(&payload, &key.sign(&payload))).len(),
            1
        );
        let other = PrivateKey::generate(KeyAlgorithm::EcdsaP256Sha256).unwrap();
        let l2 = signature_layer(&payload, &other.sign(&payload));
        assert_eq!(merge_layers(&merged, l2).len(), 2);
        let read = read_signature_layer(0, &l).unwrap();
        key.public_key().verify(&payload, &read.signature).unwrap();
        let mut bad = l.clone();
        bad.annotations
            .insert(SIGNATURE_ANNOTATION.into(), "not*base64".into());
        let e = read_signature_layer(3, &bad).unwrap_err().to_string();
        assert!(
            e.contains("signature layer 3") && e.contains("not valid base64"),
            "{e}"
        );
        let cfg: serde_json::Value = serde_json::from_slice(&signature_config(&merged)).unwrap();
        assert_eq!(cfg["rootfs"]["diff_ids"][0], l.digest.to_string());
    }

    #[test]
    fn bundle_round_trip() {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256Sha256).unwrap();
        let b = Bundle::sign_image(&key, "hello", &digest());
        let parsed = Bundle::from_json(&b.to_json()).unwrap();
        assert_eq!(parsed.signed_digests().unwrap(), vec![digest()]);
        assert!(parsed.hint_matches(&key.public_key()));
        parsed.dsse_envelope.verify(&[key.public_key()], 1).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&b.to_json()).unwrap();
        assert_eq!(v["mediaType"], BUNDLE_MEDIA_TYPE);
        assert_eq!(
            v["verificationMaterial"]["publicKey"]["hint"],
            key.public_key().hint()
        );
        // Spelled out even though empty: sigstore-js and sigstore-go reject a bundle
        // without it.
        assert_eq!(
            v["verificationMaterial"]["tlogEntries"],
            serde_json::json!([])
        );
        assert_eq!(v["dsseEnvelope"]["signatures"][0]["keyid"], "");
        let m = bundle_manifest(
            Descriptor::new(BUNDLE_MEDIA_TYPE, Digest::of(b"b"), 1),
            &Descriptor::new(media::MANIFEST, digest(), 5),
        );
        assert_eq!(m.artifact_type.as_deref(), Some(BUNDLE_MEDIA_TYPE));
        assert_eq!(m.config, Descriptor::empty());
        assert_eq!(
            m.annotations[BUNDLE_PREDICATE_ANNOTATION],
            SIGN_PREDICATE_TYPE
        );
        assert!(parsed.is_image_signature().unwrap());
    }

    #[test]
    fn attestation_bundles_wrap_one_signers_envelope() {
        let key = PrivateKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let other = PrivateKey::generate(KeyAlgorithm::EcdsaP256Sha256).unwrap();
        let st = Statement::new(
            vec![Subject::sha256("hello", digest().hex())],
            crate::attest::APPROVAL_PREDICATE_TYPE,
            serde_json::json!({"reason": "ok"}),
        );
        let env = st.sign(&[&key]);
        assert_eq!(env.signatures[0].keyid, key.public_key().key_id());
        let b = Bundle::for_envelope(&env, &key.public_key()).unwrap();
        let parsed = Bundle::from_json(&b.to_json()).unwrap();
        // Same statement and signature; the keyid is emptied and the hint names the key.
        assert_eq!(parsed.dsse_envelope.payload, env.payload);
        assert_eq!(
            parsed.dsse_envelope.signatures[0].sig,
            env.signatures[0].sig
        );
        assert_eq!(parsed.dsse_envelope.signatures[0].keyid, "");
        assert!(parsed.hint_matches(&key.public_key()));
        assert!(!parsed.hint_matches(&other.public_key()));
        parsed.dsse_envelope.verify(&[key.public_key()], 1).unwrap();
        assert!(!parsed.is_image_signature().unwrap());
        assert!(parsed.signed_digests().is_err());
        assert_eq!(
            parsed.statement().unwrap().predicate_type,
            crate::attest::APPROVAL_PREDICATE_TYPE
        );
        // Fail closed: another key's hint, or more (or fewer) than one signature.
        let e = Bundle::for_envelope(&env, &other.public_key()).unwrap_err();
        assert!(e.to_string().contains("not by key"), "{e}");
        let two = st.sign(&[&key, &other]);
        let e = Bundle::for_envelope(&two, &key.public_key()).unwrap_err();
        assert!(e.to_string().contains("has 2"), "{e}");
        let none = Envelope {
            signatures: Vec::new(),
            ..env.clone()
        };
        assert!(Bundle::for_envelope(&none, &key.public_key()).is_err());
        let m = attestation_bundle_manifest(
            Descriptor::new(BUNDLE_MEDIA_TYPE, Digest::of(b"b"), 1),
            &Descriptor::new(media::MANIFEST, digest(), 5),
            crate::attest::APPROVAL_PREDICATE_TYPE,
        );
        assert_eq!(m.artifact_type.as_deref(), Some(BUNDLE_MEDIA_TYPE));
        assert_eq!(
            m.annotations[BUNDLE_PREDICATE_ANNOTATION],
            crate::attest::APPROVAL_PREDICATE_TYPE
        );
        assert_eq!(m.annotations[BUNDLE_CONTENT_ANNOTATION], "dsse-envelope");
    }
}
