//! `kiln sign IMAGE --key ci.key`: cosign-compatible signatures of an image in the store
//! (a `sha256-<hex>.sig` manifest and a Sigstore bundle referrer).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use kiln_oci::{Descriptor, ImageManifest, ImageRef, Store, media};
use kiln_trust::PrivateKey;
use kiln_trust::cosign::{self, Bundle, SimpleSigning};
use serde_json::json;

use super::{Ctx, Resolved, print_json, resolve};

#[derive(clap::Args)]
pub struct Args {
    /// NAME:TAG, NAME@sha256:<hex> or sha256:<hex>.
    image: String,
    /// Private key (cosign's encrypted format; password from KILN_KEY_PASSWORD, or PKCS#8).
    #[arg(long)]
    key: PathBuf,
}

/// The repository name of a resolved image: from the reference, else from a tag of it.
pub fn image_name(store: &Store, img: &Resolved) -> Result<String> {
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
                [] => bail!("{digest} has no name in the store; use NAME@{digest}"),
                many => bail!(
                    "{digest} is tagged under several names ({}); use NAME@{digest}",
                    many.join(", ")
                ),
            }
        }
    }
}

/// Re-hash every blob of the image (manifest, config, layers); returns how many.
pub fn verify_image_blobs(store: &Store, img: &Resolved) -> Result<usize> {
    let mut n = 0;
    for d in std::iter::once(&img.descriptor)
        .chain(std::iter::once(&img.manifest.config))
        .chain(img.manifest.layers.iter())
    {
        store
            .verify_blob(d)
            .with_context(|| format!("image {} is not intact", img.reference))?;
        n += 1;
    }
    Ok(n)
}

pub fn load_key(path: &std::path::Path) -> Result<PrivateKey> {
    let text = kiln_oci::untrusted::read_small_string(path)
        .with_context(|| format!("reading the private key {}", path.display()))?;
    let password = std::env::var("KILN_KEY_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    PrivateKey::from_pem(&text, password.as_deref().map(str::as_bytes))
        .with_context(|| format!("loading the private key {}", path.display()))
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let store = ctx.store()?;
    let img = resolve(&store, &a.image)?;
    ctx.touch(super::image_resource(&img));
    let name = image_name(&store, &img)?;
    let blobs = verify_image_blobs(&store, &img)?;
    let key = load_key(&a.key)?;
    let digest = img.descriptor.digest;

    // Legacy signature: payload layer, merged into the existing .sig manifest.
    let payload = SimpleSigning::new(&name, digest).to_bytes();
    let sig = key.sign(&payload);
    let mut staging = store.staging()?;
    staging.put(cosign::SIMPLESIGNING_MEDIA_TYPE, &payload)?;
    let layer = cosign::signature_layer(&payload, &sig);
    let sig_tag = cosign::signature_tag(&digest);
    let existing = match store.resolve(&ImageRef::Tag {
        name: name.clone(),
        tag: sig_tag.clone(),
    }) {
        Ok(d) => {
            let bytes = store
                .read_descriptor(&d)
                .with_context(|| format!("reading the existing {name}:{sig_tag}"))?;
            ImageManifest::from_bytes(&bytes, &format!("{name}:{sig_tag}"))?.layers
        }
        Err(kiln_oci::OciError::UnknownImage(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let layers = cosign::merge_layers(&existing, layer);
    let config = staging.put(media::CONFIG, &cosign::signature_config(&layers))?;
    let sig_manifest = cosign::signature_manifest(config, layers);
    let sig_desc = staging.put(media::MANIFEST, &sig_manifest.to_bytes())?;

    // cosign v3: Sigstore bundle as an OCI 1.1 referrer.
    let bundle = Bundle::sign_image(&key, &name, &digest);
    let bundle_desc = staging.put(cosign::BUNDLE_MEDIA_TYPE, &bundle.to_json())?;
    staging.put(media::EMPTY, media::EMPTY_CONTENT)?;
    let bundle_manifest = cosign::bundle_manifest(bundle_desc, &img.descriptor);
    let mut bm_desc: Descriptor = staging.put(media::MANIFEST, &bundle_manifest.to_bytes())?;
    bm_desc.artifact_type = Some(cosign::BUNDLE_MEDIA_TYPE.to_owned());

    // Blobs (unreferenced) first, then the event, then the index: the
    // signature never appears without its event.
    staging.commit()?;
    let public = key.public_key();
    ctx.record(
        ctx.event("image.sign")
            .resource(super::image_resource(&img))
            .key(public.key_id())
            .detail("signature_manifest", sig_desc.digest.to_string())
            .detail("bundle_referrer", bm_desc.digest.to_string())
            .detail("blobs_verified", blobs),
    )?;
    store.tag(&name, &sig_tag, &sig_desc)?;
    store.add_untagged(std::slice::from_ref(&bm_desc))?;
    if ctx.json {
        return print_json(&json!({
            "image": img.reference,
            "digest": digest,
            "blobs_verified": blobs,
            "key_id": public.key_id(),
            "signature": {
                "tag": format!("{name}:{sig_tag}"),
                "manifest": sig_desc.digest,
                "signatures": sig_manifest.layers.len(),
            },
            "bundle": {
                "manifest": bm_desc.digest,
                "artifact_type": cosign::BUNDLE_MEDIA_TYPE,
            },
        }));
    }
    println!("verified     {blobs} blobs of {}", img.reference);
    println!("key id       {}", public.key_id());
    println!(
        "signature    {name}:{sig_tag} ({} signature(s))",
        sig_manifest.layers.len()
    );
    println!("bundle       {} (referrer)", bm_desc.digest);
    println!("{digest}");
    Ok(())
}
