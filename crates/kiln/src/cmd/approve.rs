//! `kiln approve IMAGE --key alice.key --reason "CHG-1234 reviewed"`: a DSSE-signed in-toto
//! approval of the image digest, attached as an OCI 1.1 referrer, as a Sigstore bundle
//! referrer and to the cosign `.att` manifest (`kiln_trust::store::stage_attestation`).

use std::path::PathBuf;

use anyhow::{Result, bail};
use kiln_trust::attest::APPROVAL_PREDICATE_TYPE;
use kiln_trust::store::{image_name, stage_attestation};
use kiln_trust::{Statement, Subject};
use serde_json::json;

use super::sign::load_key;
use super::{Ctx, print_json, resolve};

#[derive(clap::Args)]
pub struct Args {
    /// NAME:TAG, NAME@sha256:<hex> or sha256:<hex>.
    image: String,
    /// The approver's private key (password from KILN_KEY_PASSWORD).
    #[arg(long)]
    key: PathBuf,
}

/// The current UTC time, RFC 3339 with microseconds (two approvals by one key in the same
/// second are still distinct statements).
pub fn now_rfc3339() -> String {
    kiln_image::provenance::rfc3339_micros(std::time::SystemTime::now())
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
    kiln_verify::verify_image_blobs(&store, &img)?;
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
    let (at, pending) = stage_attestation(
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
