//! `kiln approve IMAGE --key alice.key --reason "CHG-1234 reviewed"`: a DSSE-signed in-toto
//! approval of the image digest, attached as an OCI 1.1 referrer, as a Sigstore bundle
//! referrer and to the cosign `.att` manifest. Also the attaching helpers that `kiln build --sign-key` uses for provenance.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use kiln_oci::{Descriptor, ImageManifest, ImageRef, Store, media};
use kiln_trust::attest::{self, APPROVAL_PREDICATE_TYPE};
use kiln_trust::cosign;
use kiln_trust::{Envelope, PublicKey, Statement, Subject};
use serde_json::json;

use super::sign::{image_name, load_key, verify_image_blobs};
use super::{Ctx, print_json, resolve};

#[derive(clap::Args)]
pub struct Args {
    /// NAME:TAG, NAME@sha256:<hex> or sha256:<hex>.
    image: String,
    /// The approver's private key (password from KILN_KEY_PASSWORD).
    #[arg(long)]
    key: PathBuf,
}

/// Where an attestation was stored.
pub struct Attached {
    /// The referrer manifest.
    pub referrer: Descriptor,
    /// `NAME:sha256-<hex>.att`.
    pub att_tag: String,
    /// The envelope blob.
    pub envelope: Descriptor,
    /// The Sigstore bundle referrer manifest (the same envelope, for cosign 2.6+).
    pub bundle: Descriptor,
}

/// Stages `envelope` (signed by `signer` alone) as a DSSE referrer of `subject`, as a
/// Sigstore bundle referrer and as a layer of `name`'s `.att` manifest: the blobs are
/// committed, the index changes are returned for the caller to apply once its audit
/// event is recorded. The bundle is what cosign 2.6+ reads once the image has any bundle
/// (`kiln sign` writes one); the DSSE referrer and `.att` layer are for other clients
/// and older cosign. `kiln verify` counts the same envelope once, whichever forms it finds.
pub fn attach(
    store: &Store,
    name: &str,
    subject: &Descriptor,
    envelope: &Envelope,
    signer: &PublicKey,
    predicate_type: &str,
) -> Result<(Attached, super::Pending)> {
    let bytes = envelope.to_json().into_bytes();
    let bundle = cosign::Bundle::for_envelope(envelope, signer)
        .context("wrapping the attestation in a Sigstore bundle")?;
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
    let existing = match store.resolve(&ImageRef::Tag {
        name: name.to_owned(),
        tag: att_tag.clone(),
    }) {
        Ok(d) => {
            let b = store
                .read_descriptor(&d)
                .with_context(|| format!("reading the existing {name}:{att_tag}"))?;
            ImageManifest::from_bytes(&b, &format!("{name}:{att_tag}"))?.layers
        }
        Err(kiln_oci::OciError::UnknownImage(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let layers = cosign::merge_layers(&existing, attest::att_layer(&env_desc, predicate_type));
    let config = staging.put(media::CONFIG, &cosign::signature_config(&layers))?;
    let att_manifest = cosign::signature_manifest(config, layers);
    let att_desc = staging.put(media::MANIFEST, &att_manifest.to_bytes())?;
    staging.commit()?;
    let mut pending = super::Pending::default();
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

/// The current UTC time, RFC 3339 with microseconds (two approvals by one key in the same
/// second are still distinct statements).
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let whole = kiln_image::time::rfc3339(now.as_secs());
    let base = whole.strip_suffix('Z').unwrap_or(&whole);
    format!("{base}.{:06}Z", now.subsec_micros())
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let reason = ctx.reason.as_deref().unwrap_or("").trim();
    if reason.is_empty() {
        bail!("--reason must not be empty: say why the image is approved");
    }
    let store = ctx.store()?;
    let img = resolve(&store, &a.image)?;
    ctx.touch(super::image_resource(&img));
    let name = image_name(&store, &img)?;
    verify_image_blobs(&store, &img)?;
    let key = load_key(&a.key)?;
    let digest = img.descriptor.digest;
    let key_id = key.public_key().key_id();
    let time = now_rfc3339();
    let st = Statement::new(
        vec![Subject::sha256(&name, digest.hex())],
        APPROVAL_PREDICATE_TYPE,
        json!({"reason": reason, "approver": key_id, "time": time}),
    );
    let env = st.sign(&[&key]);
    let (at, pending) = attach(
        &store,
        &name,
        &img.descriptor,
        &env,
        &key.public_key(),
        APPROVAL_PREDICATE_TYPE,
    )?;
    ctx.record(
        ctx.event("image.approve")
            .resource(super::image_resource(&img))
            .key(key_id.clone())
            .detail("referrer", at.referrer.digest.to_string())
            .detail("envelope", at.envelope.digest.to_string())
            .detail("bundle_referrer", at.bundle.digest.to_string()),
    )?;
    pending.apply(&store)?;
    if ctx.json {
        return print_json(&json!({
            "image": img.reference,
            "digest": digest,
            "key_id": key_id,
            "reason": reason,
            "time": time,
            "referrer": at.referrer.digest,
            "envelope": at.envelope.digest,
            "bundle": at.bundle.digest,
            "attestation_tag": at.att_tag,
        }));
    }
    println!("approved     {} by key {key_id}", img.reference);
    println!("reason       {reason}");
    println!("referrer     {}", at.referrer.digest);
    println!("bundle       {} (referrer)", at.bundle.digest);
    println!("attestation  {}", at.att_tag);
    println!("{digest}");
    Ok(())
}
