//! Signatures and attestations written into a kiln store, in the forms cosign and other
//! OCI clients read.
//!
//! - [`stage_signature`]: an image signature as a legacy `sha256-<hex>.sig` manifest (one
//!   simple-signing layer per signature, merged into the existing manifest) and as a
//!   Sigstore bundle referrer (cosign v3).
//! - [`stage_attestation`]: a signed DSSE envelope as an OCI 1.1 referrer, as a Sigstore
//!   bundle referrer (what cosign 2.6+ reads once the image has any bundle) and as a layer
//!   of the cosign `sha256-<hex>.att` manifest (other clients and older cosign).
//!
//! Both commit their blobs, unreferenced, and return the index changes as a
//! [`Pending`]: the caller records its audit event first and applies them after, so a
//! signature never appears without its event. Readers (`kiln-verify`) count one envelope
//! once, whichever of its forms they find.

use kiln_oci::{Descriptor, Digest, ImageManifest, ImageRef, OciError, Pending, Resolved, Store};
use kiln_oci::{Staging, media};

use crate::attest;
use crate::cosign::{self, Bundle, CosignError, SimpleSigning};
use crate::dsse::Envelope;
use crate::keys::{PrivateKey, PublicKey};

/// Why a signature or attestation could not be staged.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Oci(#[from] OciError),
    /// The manifest already tagged `what` (`NAME:sha256-….sig` or `.att`) is unreadable.
    #[error("reading the existing {what}")]
    Existing {
        what: String,
        #[source]
        source: OciError,
    },
    /// A bare digest names an image no tag gives a repository name.
    #[error("{digest} has no name in the store; use NAME@{digest}")]
    Unnamed { digest: Digest },
    /// A bare digest names an image tagged under several repository names.
    #[error("{digest} is tagged under several names ({names}); use NAME@{digest}")]
    ManyNames { digest: Digest, names: String },
    #[error("wrapping the attestation in a Sigstore bundle")]
    Bundle(#[source] CosignError),
}

/// The repository name signatures of `img` are stored under: from its reference, else
/// from the one name the store tags its digest with (signature and attestation tags
/// aside).
pub fn image_name(store: &Store, img: &Resolved) -> Result<String, StoreError> {
    match ImageRef::parse(&img.reference)? {
        ImageRef::Tag { name, .. } => Ok(name),
        ImageRef::Digest {
            name: Some(name), ..
        } => Ok(name),
        ImageRef::Digest { name: None, digest } => {
            let mut names: Vec<String> = store
                .images()?
                .into_iter()
                .filter(|t| {
                    t.descriptor.digest == digest
                        && !t.tag.ends_with(".sig")
                        && !t.tag.ends_with(".att")
                })
                .map(|t| t.name)
                .collect();
            names.dedup();
            match names.as_slice() {
                [one] => Ok(one.clone()),
                [] => Err(StoreError::Unnamed { digest }),
                many => Err(StoreError::ManyNames {
                    digest,
                    names: many.join(", "),
                }),
            }
        }
    }
}

/// The layers of the manifest tagged `name:tag`, none if there is no such tag.
fn existing_layers(store: &Store, name: &str, tag: &str) -> Result<Vec<Descriptor>, StoreError> {
    let what = format!("{name}:{tag}");
    match store.resolve(&ImageRef::Tag {
        name: name.to_owned(),
        tag: tag.to_owned(),
    }) {
        Ok(d) => {
            let bytes = store
                .read_descriptor(&d)
                .map_err(|source| StoreError::Existing {
                    what: what.clone(),
                    source,
                })?;
            Ok(ImageManifest::from_bytes(&bytes, &what)?.layers)
        }
        Err(OciError::UnknownImage(_)) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// Stages `layer` added to the `name:tag` manifest (`.sig` or `.att`); returns the new
/// manifest and its descriptor.
fn stage_merged(
    store: &Store,
    staging: &mut Staging,
    name: &str,
    tag: &str,
    layer: Descriptor,
) -> Result<(ImageManifest, Descriptor), StoreError> {
    let layers = cosign::merge_layers(&existing_layers(store, name, tag)?, layer);
    let config = staging.put(media::CONFIG, &cosign::signature_config(&layers))?;
    let manifest = cosign::signature_manifest(config, layers);
    let desc = staging.put(media::MANIFEST, &manifest.to_bytes())?;
    Ok((manifest, desc))
}

/// Where an image signature was stored.
#[derive(Debug, Clone)]
pub struct Signed {
    /// `NAME:sha256-<hex>.sig`.
    pub signature_tag: String,
    /// The `.sig` manifest (with every signature so far).
    pub signature_manifest: Descriptor,
    /// How many signatures the `.sig` manifest holds.
    pub signatures: usize,
    /// The Sigstore bundle referrer manifest.
    pub bundle: Descriptor,
}

/// Signs image `subject` (stored as `name`) with `key`: stages a simple-signing layer
/// merged into `name`'s `.sig` manifest and a Sigstore bundle referrer. The blobs are
/// committed; the tag and the referrer are in the returned [`Pending`].
pub fn stage_signature(
    store: &Store,
    name: &str,
    subject: &Descriptor,
    key: &PrivateKey,
) -> Result<(Signed, Pending), StoreError> {
    let digest = subject.digest;
    // Legacy signature: payload layer, merged into the existing .sig manifest.
    let payload = SimpleSigning::new(name, digest).to_bytes();
    let sig = key.sign(&payload);
    let mut staging = store.staging()?;
    staging.put(cosign::SIMPLESIGNING_MEDIA_TYPE, &payload)?;
    let layer = cosign::signature_layer(&payload, &sig);
    let sig_tag = cosign::signature_tag(&digest);
    let (sig_manifest, sig_desc) = stage_merged(store, &mut staging, name, &sig_tag, layer)?;

    // cosign v3: Sigstore bundle as an OCI 1.1 referrer.
    let bundle = Bundle::sign_image(key, name, &digest);
    let bundle_desc = staging.put(cosign::BUNDLE_MEDIA_TYPE, &bundle.to_json())?;
    staging.put(media::EMPTY, media::EMPTY_CONTENT)?;
    let bundle_manifest = cosign::bundle_manifest(bundle_desc, subject);
    let mut bm_desc = staging.put(media::MANIFEST, &bundle_manifest.to_bytes())?;
    bm_desc.artifact_type = Some(cosign::BUNDLE_MEDIA_TYPE.to_owned());
    staging.commit()?;

    let mut pending = Pending::default();
    pending.tag(name, &sig_tag, &sig_desc);
    pending.untagged(&bm_desc);
    Ok((
        Signed {
            signature_tag: format!("{name}:{sig_tag}"),
            signature_manifest: sig_desc,
            signatures: sig_manifest.layers.len(),
            bundle: bm_desc,
        },
        pending,
    ))
}

/// Where an attestation was stored.
#[derive(Debug, Clone)]
pub struct Attached {
    /// The DSSE referrer manifest.
    pub referrer: Descriptor,
    /// `NAME:sha256-<hex>.att`.
    pub att_tag: String,
    /// The envelope blob.
    pub envelope: Descriptor,
    /// The Sigstore bundle referrer manifest (the same envelope, for cosign 2.6+).
    pub bundle: Descriptor,
}

/// Stages `envelope` (signed by `signer` alone) as a DSSE referrer of `subject`, as a
/// Sigstore bundle referrer and as a layer of `name`'s `.att` manifest. The blobs are
/// committed; the index changes are in the returned [`Pending`].
pub fn stage_attestation(
    store: &Store,
    name: &str,
    subject: &Descriptor,
    envelope: &Envelope,
    signer: &PublicKey,
    predicate_type: &str,
) -> Result<(Attached, Pending), StoreError> {
    let bytes = envelope.to_json().into_bytes();
    let bundle = Bundle::for_envelope(envelope, signer).map_err(StoreError::Bundle)?;
    let mut staging = store.staging()?;
    let env_desc = staging.put(attest::DSSE_MEDIA_TYPE, &bytes)?;
    staging.put(media::EMPTY, media::EMPTY_CONTENT)?;
    let rm = attest::referrer_manifest(&env_desc, subject, predicate_type);
    let mut rm_desc = staging.put(media::MANIFEST, &rm.to_bytes())?;
    rm_desc.artifact_type = Some(attest::DSSE_MEDIA_TYPE.to_owned());
    rm_desc.annotations.insert(
        attest::PREDICATE_TYPE_ANNOTATION.to_owned(),
        predicate_type.to_owned(),
    );
    let bundle_blob = staging.put(cosign::BUNDLE_MEDIA_TYPE, &bundle.to_json())?;
    let bm = cosign::attestation_bundle_manifest(bundle_blob, subject, predicate_type);
    let mut bm_desc = staging.put(media::MANIFEST, &bm.to_bytes())?;
    bm_desc.artifact_type = Some(cosign::BUNDLE_MEDIA_TYPE.to_owned());

    let att_tag = attest::attestation_tag(&subject.digest);
    let layer = attest::att_layer(&env_desc, predicate_type);
    let (_, att_desc) = stage_merged(store, &mut staging, name, &att_tag, layer)?;
    staging.commit()?;
    let mut pending = Pending::default();
    pending.tag(name, &att_tag, &att_desc);
    pending.untagged(&rm_desc);
    pending.untagged(&bm_desc);
    Ok((
        Attached {
            referrer: rm_desc,
            att_tag: format!("{name}:{att_tag}"),
            envelope: env_desc,
            bundle: bm_desc,
        },
        pending,
    ))
}
