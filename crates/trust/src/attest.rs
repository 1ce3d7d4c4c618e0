//! Attestations: DSSE-wrapped in-toto statements about an image (SLSA provenance, approvals),
//! stored as OCI 1.1 referrers (artifactType [`DSSE_MEDIA_TYPE`], annotation
//! [`PREDICATE_TYPE_ANNOTATION`]) and as layers of cosign's legacy `sha256-<hex>.att` manifest
//! (media type [`DSSE_MEDIA_TYPE`], annotation [`COSIGN_PREDICATE_ANNOTATION`]). A
//! single-signer attestation is also stored as a Sigstore bundle referrer
//! ([`crate::cosign::Bundle::for_envelope`]), the only place cosign 2.6 looks for
//! attestations once an image has a bundle.
//!
//! Everything here builds or parses bytes and descriptors; storing them is the caller's job.

use std::collections::BTreeMap;

use kiln_oci::{Descriptor, Digest, ImageManifest, media};

use crate::TrustError;
use crate::dsse::Envelope;
use crate::statement::Statement;

/// Media type of a DSSE envelope (layer media type and referrer artifactType).
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// Referrer manifest annotation naming the statement's predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "in-toto.io/predicate-type";
/// cosign's `.att` layer annotation naming the predicate type.
pub const COSIGN_PREDICATE_ANNOTATION: &str = "predicateType";
/// SLSA provenance v1.
pub const PROVENANCE_PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// kiln's approval predicate.
pub const APPROVAL_PREDICATE_TYPE: &str = "https://kiln.dev/approval/v1";
/// Predicate type of a kiln scan result (vulnerabilities and baseline findings, and the
/// advisory set they were matched against: digest, count, newest `modified`).
pub const SCAN_PREDICATE_TYPE: &str = "https://kiln.dev/scan/v2";
/// The superseded scan predicate: it did not record which advisories were used, so a scan of
/// no advisories looked like a clean one. The trust policy no longer accepts it.
pub const SCAN_PREDICATE_TYPE_V1: &str = "https://kiln.dev/scan/v1";
/// `buildDefinition.buildType` of kiln builds.
pub const BUILD_TYPE: &str = "https://kiln.dev/build/v1";
/// `runDetails.builder.id` of a local kiln build.
pub const BUILDER_ID: &str = "https://kiln.dev/builder/local";

/// Errors from reading an attestation.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error("{source_name}: {reason}")]
    Invalid { source_name: String, reason: String },
    #[error("{source_name}: {error}")]
    Trust {
        source_name: String,
        #[source]
        error: TrustError,
    },
}

/// The `sha256-<hex>.att` tag of the attestations of `image`.
pub fn attestation_tag(image: &Digest) -> String {
    format!("sha256-{}.att", image.hex())
}

/// The `.att` layer descriptor of a stored envelope blob.
/// Like cosign's, it carries an empty `dev.cosignproject.cosign/signature` annotation (the
/// signatures are inside the envelope): cosign refuses an `.att` layer without it.
pub fn att_layer(envelope: &Descriptor, predicate_type: &str) -> Descriptor {
    let mut d = Descriptor::new(DSSE_MEDIA_TYPE, envelope.digest, envelope.size);
    d.annotations.insert(
        COSIGN_PREDICATE_ANNOTATION.to_owned(),
        predicate_type.to_owned(),
    );
    d.annotations.insert(
        crate::cosign::SIGNATURE_ANNOTATION.to_owned(),
        String::new(),
    );
    d
}

/// The OCI 1.1 referrer manifest of a stored envelope blob (`envelope`, media type
/// [`DSSE_MEDIA_TYPE`]) attached to `subject`. Its config is the empty descriptor.
pub fn referrer_manifest(
    envelope: &Descriptor,
    subject: &Descriptor,
    predicate_type: &str,
) -> ImageManifest {
    let subject = Descriptor::new(&subject.media_type, subject.digest, subject.size);
    let layer = Descriptor::new(DSSE_MEDIA_TYPE, envelope.digest, envelope.size);
    ImageManifest {
        schema_version: 2,
        media_type: Some(media::MANIFEST.to_owned()),
        artifact_type: Some(DSSE_MEDIA_TYPE.to_owned()),
        config: Descriptor::empty(),
        layers: vec![layer],
        subject: Some(subject),
        annotations: BTreeMap::from([(
            PREDICATE_TYPE_ANNOTATION.to_owned(),
            predicate_type.to_owned(),
        )]),
    }
}

/// A parsed (NOT yet verified) attestation.
#[derive(Clone, Debug)]
pub struct Attestation {
    pub envelope: Envelope,
    pub statement: Statement,
    /// The sha256 subject digests of the statement.
    pub digests: Vec<Digest>,
}

impl Attestation {
    /// Parses envelope bytes from `source_name`: the envelope (truncated JSON or bad base64
    /// are errors), its in-toto statement, and at least one valid sha256 subject digest.
    pub fn parse(source_name: &str, bytes: &[u8]) -> Result<Attestation, AttestError> {
        let trust = |error| AttestError::Trust {
            source_name: source_name.to_owned(),
            error,
        };
        let envelope = Envelope::from_json(bytes).map_err(trust)?;
        Attestation::from_envelope(source_name, envelope)
    }

    /// An envelope already parsed (e.g. the `dsseEnvelope` of a Sigstore bundle): its
    /// in-toto statement, at least one valid sha256 subject digest, at least one signature.
    pub fn from_envelope(
        source_name: &str,
        envelope: Envelope,
    ) -> Result<Attestation, AttestError> {
        let trust = |error| AttestError::Trust {
            source_name: source_name.to_owned(),
            error,
        };
        let statement = Statement::from_envelope(&envelope).map_err(trust)?;
        let mut digests = Vec::new();
        for s in &statement.subject {
            if let Some(hex) = s.digest.get("sha256") {
                let d = Digest::from_hex(hex).map_err(|e| AttestError::Invalid {
                    source_name: source_name.to_owned(),
                    reason: format!("subject {:?}: {e}", s.name),
                })?;
                digests.push(d);
            }
        }
        if digests.is_empty() {
            return Err(AttestError::Invalid {
                source_name: source_name.to_owned(),
                reason: "no sha256 subject digest".into(),
            });
        }
        if envelope.signatures.is_empty() {
            return Err(AttestError::Invalid {
                source_name: source_name.to_owned(),
                reason: "the envelope has no signatures".into(),
            });
        }
        Ok(Attestation {
            envelope,
            statement,
            digests,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statement::Subject;
    use crate::{KeyAlgorithm, PrivateKey};

    #[test]
    fn att_layers_carry_cosigns_annotations() {
        let d = att_layer(
            &Descriptor::new(DSSE_MEDIA_TYPE, Digest::of(b"env"), 3),
            "https://slsa.dev/provenance/v1",
        );
        assert_eq!(
            d.annotations[COSIGN_PREDICATE_ANNOTATION],
            "https://slsa.dev/provenance/v1"
        );
        // Present and empty, as cosign writes it (and requires it).
        assert_eq!(d.annotations[crate::cosign::SIGNATURE_ANNOTATION], "");
    }

    #[test]
    fn parse_round_trip_and_errors() {
        let key = PrivateKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let d = Digest::of(b"img");
        let st = Statement::new(
            vec![Subject::sha256("img", d.hex())],
            APPROVAL_PREDICATE_TYPE,
            serde_json::json!({"reason": "ok"}),
        );
        let json = st.sign(&[&key]).to_json();
        let a = Attestation::parse("x", json.as_bytes()).unwrap();
        assert_eq!(a.digests, vec![d]);
        let truncated = &json[..json.len() / 2];
        let e = Attestation::parse("x", truncated.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("malformed envelope JSON"), "{e}");
        let bad = json.replacen("\"sig\":\"", "\"sig\":\"!!", 1);
        let e = Attestation::parse("x", bad.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("invalid base64"), "{e}");
    }
}
