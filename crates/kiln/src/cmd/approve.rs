//! `kiln approve IMAGE --key alice.key --reason "CHG-1234 reviewed"`: a DSSE-signed in-toto
//! approval of the image digest, attached as an OCI 1.1 referrer, as a Sigstore bundle
//! referrer and to the cosign `.att` manifest, by `kiln_patch::approve`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use kiln_patch::Approved;
use serde_json::json;

use super::{Ctx, print_json, resolve};

#[derive(clap::Args)]
pub struct Args {
    /// NAME:TAG, NAME@sha256:<hex> or sha256:<hex>.
    image: String,
    /// The approver's private key (password from KILN_KEY_PASSWORD).
    #[arg(long)]
    key: PathBuf,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let reason = ctx.reason.as_deref().unwrap_or("").trim();
    if reason.is_empty() {
        bail!("--reason must not be empty: say why the image is approved");
    }
    let store = ctx.store()?;
    let img = resolve(&store, &a.image)?;
    ctx.touch(super::image_resource(&img));
    let password = super::sign::key_password();
    let key = kiln_patch::Key::File {
        path: &a.key,
        password: password.as_deref(),
    };
    let Approved {
        key_id,
        time,
        attached: at,
    } = kiln_patch::approve(ctx, &store, &img, key, reason)?;
    let digest = img.descriptor.digest;
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
