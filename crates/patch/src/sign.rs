//! The sign step (`kiln sign`): re-hash every blob of an image, sign it in both forms
//! cosign reads (`.sig` simple signing and a Sigstore bundle referrer), record
//! `image.sign`, then tag the signature and list the referrer.

use kiln_audit::{Recorder, Resource};
use kiln_oci::{Resolved, Store};
use kiln_trust::Signed;

use crate::{Error, Key};

/// What `kiln sign` did.
pub struct SignedImage {
    /// The repository name the signature is stored under.
    pub name: String,
    /// Blobs re-hashed before signing (manifest, config, layers).
    pub blobs_verified: usize,
    /// The signing key's id.
    pub key_id: String,
    pub signed: Signed,
}

/// Sign `img` with `key`: intact blobs first, then the signatures, the event, the tag.
pub fn sign(
    rec: &dyn Recorder,
    store: &Store,
    img: &Resolved,
    key: Key,
) -> Result<SignedImage, Error> {
    let name = kiln_trust::store::image_name(store, img)?;
    let blobs = kiln_verify::verify_image_blobs(store, img)?;
    let key = key.get()?;
    let key = &*key;
    let (signed, pending) = kiln_trust::store::stage_signature(store, &name, &img.descriptor, key)?;
    // Blobs (unreferenced) first, then the event, then the index: the signature never
    // appears without its event.
    let key_id = key.public_key().key_id();
    rec.record(
        rec.event("image.sign")
            .resource(Resource::named(
                "image",
                img.descriptor.digest.to_string(),
                img.reference.clone(),
            ))
            .key(key_id.clone())
            .detail(
                "signature_manifest",
                signed.signature_manifest.digest.to_string(),
            )
            .detail("bundle_referrer", signed.bundle.digest.to_string())
            .detail("blobs_verified", blobs),
    )?;
    pending.apply(store)?;
    Ok(SignedImage {
        name,
        blobs_verified: blobs,
        key_id,
        signed,
    })
}
