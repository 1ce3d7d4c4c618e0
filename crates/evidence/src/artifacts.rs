//! The artifacts attached to an image in the store: its manifest and
//! config, its OCI 1.1 referrers (SBOMs, file manifest, DSSE provenance and
//! approvals, Sigstore bundles, scan results) transitively, and cosign's
//! `sha256-<hex>.sig` / `.att` tagged manifests. Image layers are not
//! artifacts: the manifest names them by digest.

use std::collections::{BTreeSet, VecDeque};

use kiln_oci::{Digest, ImageManifest, OciError, Store, media};
use serde::{Deserialize, Serialize};

/// What an artifact is, for mapping it to requirements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArtifactKind {
    ImageManifest,
    ImageConfig,
    SbomSpdx,
    SbomCycloneDx,
    FileManifest,
    Provenance,
    Approval,
    SigstoreBundle,
    CosignSignature,
    CosignAttestation,
    ScanResult,
    Other,
}

impl ArtifactKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactKind::ImageManifest => "image-manifest",
            ArtifactKind::ImageConfig => "image-config",
            ArtifactKind::SbomSpdx => "sbom-spdx",
            ArtifactKind::SbomCycloneDx => "sbom-cyclone-dx",
            ArtifactKind::FileManifest => "file-manifest",
            ArtifactKind::Provenance => "provenance",
            ArtifactKind::Approval => "approval",
            ArtifactKind::SigstoreBundle => "sigstore-bundle",
            ArtifactKind::CosignSignature => "cosign-signature",
            ArtifactKind::CosignAttestation => "cosign-attestation",
            ArtifactKind::ScanResult => "scan-result",
            ArtifactKind::Other => "other",
        }
    }
}

pub const SPDX: &str = "application/spdx+json";
pub const CYCLONEDX: &str = "application/vnd.cyclonedx+json";
pub const FILE_MANIFEST: &str = "application/vnd.kiln.file-manifest.v1+json";
pub const DSSE: &str = "application/vnd.dsse.envelope.v1+json";
pub const SIGSTORE_BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
pub const PREDICATE_ANNOTATION: &str = "in-toto.io/predicate-type";
/// Annotation of a Sigstore bundle referrer naming its statement's predicate type.
pub const BUNDLE_PREDICATE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";
/// cosign's image-signature predicate.
pub const COSIGN_SIGN: &str = "https://sigstore.dev/cosign/sign/v1";
pub const SLSA_PROVENANCE: &str = "https://slsa.dev/provenance/v1";
pub const KILN_APPROVAL: &str = "https://kiln.dev/approval/v1";
/// Config label carrying the image's `[baseline]`.
pub const BASELINE_LABEL: &str = "dev.kiln.baseline";

/// One blob taken from the store.
#[derive(Debug, Clone)]
pub struct Collected {
    pub kind: ArtifactKind,
    pub media_type: String,
    pub digest: Digest,
    pub bytes: Vec<u8>,
    /// The image it is attached to.
    pub image: Digest,
}

/// An image's artifacts, plus what its config declares.
#[derive(Debug, Clone, Default)]
pub struct ImageArtifacts {
    pub blobs: Vec<Collected>,
    /// The parsed `dev.kiln.baseline` label, if the config has one.
    pub baseline: Option<serde_json::Value>,
}

/// The kind of an attestation with predicate type `p`.
fn by_predicate(p: &str) -> ArtifactKind {
    match p {
        SLSA_PROVENANCE => ArtifactKind::Provenance,
        KILN_APPROVAL => ArtifactKind::Approval,
        p if p.contains("vuln") || p.contains("scan") => ArtifactKind::ScanResult,
        _ => ArtifactKind::Other,
    }
}

fn classify(m: &ImageManifest, legacy: Option<ArtifactKind>) -> ArtifactKind {
    if let Some(k) = legacy {
        return k;
    }
    let at = m
        .artifact_type
        .as_deref()
        .unwrap_or(m.config.media_type.as_str());
    match at {
        SPDX => ArtifactKind::SbomSpdx,
        CYCLONEDX => ArtifactKind::SbomCycloneDx,
        FILE_MANIFEST => ArtifactKind::FileManifest,
        // A bundle holds an image signature (cosign's sign predicate; a bundle without the
        // annotation is taken as one, as before) or an attestation: kiln writes each
        // attestation as a bundle too, and it is not a signature of the image.
        SIGSTORE_BUNDLE => match m.annotations.get(BUNDLE_PREDICATE_ANNOTATION) {
            None => ArtifactKind::SigstoreBundle,
            Some(p) if p == COSIGN_SIGN => ArtifactKind::SigstoreBundle,
            Some(p) => by_predicate(p),
        },
        DSSE => match m.annotations.get(PREDICATE_ANNOTATION) {
            Some(p) => by_predicate(p),
            None => ArtifactKind::Other,
        },
        t if t.contains("vuln") || t.contains("scan") || t.contains("sarif") => {
            ArtifactKind::ScanResult
        }
        _ => ArtifactKind::Other,
    }
}

/// Collect everything attached to `image` (which must be in the store).
pub fn collect(store: &Store, image: &Digest) -> Result<ImageArtifacts, OciError> {
    let mut out = ImageArtifacts::default();
    let mut seen_blobs = BTreeSet::new();
    let mut push = |out: &mut ImageArtifacts, kind, media_type: &str, digest: Digest, bytes| {
        if seen_blobs.insert(digest) {
            out.blobs.push(Collected {
                kind,
                media_type: media_type.to_string(),
                digest,
                bytes,
                image: *image,
            });
        }
    };

    let mbytes = store.read_blob(image)?;
    let manifest = ImageManifest::from_bytes(&mbytes, &image.to_string())?;
    let mt = manifest
        .media_type
        .clone()
        .unwrap_or_else(|| media::MANIFEST.to_string());
    push(&mut out, ArtifactKind::ImageManifest, &mt, *image, mbytes);
    let cbytes = store.read_descriptor(&manifest.config)?;
    out.baseline = serde_json::from_slice::<serde_json::Value>(&cbytes)
        .ok()
        .and_then(|c| {
            c.get("config")?
                .get("Labels")?
                .get(BASELINE_LABEL)?
                .as_str()
                .and_then(|s| serde_json::from_str(s).ok())
        });
    push(
        &mut out,
        ArtifactKind::ImageConfig,
        &manifest.config.media_type,
        manifest.config.digest,
        cbytes,
    );

    let tagged = store.images()?;
    let mut seen = BTreeSet::from([*image]);
    let mut queue = VecDeque::from([*image]);
    while let Some(d) = queue.pop_front() {
        let mut attached: Vec<(Digest, ImageManifest, Option<ArtifactKind>)> = store
            .referrers(&d)?
            .into_iter()
            .map(|(desc, m)| (desc.digest, m, None))
            .collect();
        for (suffix, kind) in [
            (".sig", ArtifactKind::CosignSignature),
            (".att", ArtifactKind::CosignAttestation),
        ] {
            let tag = format!("sha256-{}{suffix}", d.hex());
            for t in tagged.iter().filter(|t| t.tag == tag) {
                let bytes = store.read_descriptor(&t.descriptor)?;
                let m = ImageManifest::from_bytes(&bytes, &t.descriptor.digest.to_string())?;
                attached.push((t.descriptor.digest, m, Some(kind)));
            }
        }
        for (digest, m, legacy) in attached {
            if !seen.insert(digest) {
                continue;
            }
            queue.push_back(digest);
            let kind = classify(&m, legacy);
            let mt = m
                .media_type
                .clone()
                .unwrap_or_else(|| media::MANIFEST.to_string());
            push(&mut out, kind, &mt, digest, store.read_blob(&digest)?);
            if m.config.media_type != media::EMPTY {
                let b = store.read_descriptor(&m.config)?;
                push(&mut out, kind, &m.config.media_type, m.config.digest, b);
            }
            for l in &m.layers {
                let b = store.read_descriptor(l)?;
                push(&mut out, kind, &l.media_type, l.digest, b);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_oci::Descriptor;

    fn referrer(artifact_type: &str, annotations: &[(&str, &str)]) -> ImageManifest {
        ImageManifest {
            schema_version: 2,
            media_type: Some(media::MANIFEST.to_owned()),
            artifact_type: Some(artifact_type.to_owned()),
            config: Descriptor::empty(),
            layers: Vec::new(),
            subject: None,
            annotations: annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn attestation_bundles_are_not_signatures() {
        let b = |p: Option<&str>| {
            let a: Vec<(&str, &str)> = p
                .map(|p| (BUNDLE_PREDICATE_ANNOTATION, p))
                .into_iter()
                .collect();
            classify(&referrer(SIGSTORE_BUNDLE, &a), None)
        };
        assert_eq!(b(Some(COSIGN_SIGN)), ArtifactKind::SigstoreBundle);
        assert_eq!(b(None), ArtifactKind::SigstoreBundle);
        assert_eq!(b(Some(SLSA_PROVENANCE)), ArtifactKind::Provenance);
        assert_eq!(b(Some(KILN_APPROVAL)), ArtifactKind::Approval);
        assert_eq!(
            b(Some("https://kiln.dev/scan/v2")),
            ArtifactKind::ScanResult
        );
        assert_eq!(b(Some("https://example.com/x")), ArtifactKind::Other);
        let d = |p: &str| classify(&referrer(DSSE, &[(PREDICATE_ANNOTATION, p)]), None);
        assert_eq!(d(SLSA_PROVENANCE), ArtifactKind::Provenance);
        assert_eq!(d(KILN_APPROVAL), ArtifactKind::Approval);
        assert_eq!(classify(&referrer(DSSE, &[]), None), ArtifactKind::Other);
    }
}
