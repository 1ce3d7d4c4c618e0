//! `kiln sign IMAGE --key ci.key`: cosign-compatible signatures of an image in the store
//! (a `sha256-<hex>.sig` manifest and a Sigstore bundle referrer), by `kiln_patch::sign`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use kiln_trust::PrivateKey;
use kiln_trust::cosign;
use serde_json::json;

use super::{Ctx, print_json, resolve};

#[derive(clap::Args)]
pub struct Args {
    /// NAME:TAG, NAME@sha256:<hex> or sha256:<hex>.
    image: String,
    /// Private key (cosign's encrypted format; password from KILN_KEY_PASSWORD, or PKCS#8).
    #[arg(long)]
    key: PathBuf,
}

/// The password of encrypted private keys: `KILN_KEY_PASSWORD` when set and not empty.
pub fn key_password() -> Option<String> {
    std::env::var("KILN_KEY_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty())
}

/// The private key at `path` (password from `KILN_KEY_PASSWORD`).
pub fn load_key(path: &Path) -> Result<PrivateKey> {
    Ok(kiln_patch::load_key(path, key_password().as_deref())?)
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let store = ctx.store()?;
    let img = resolve(&store, &a.image)?;
    ctx.touch(super::image_resource(&img));
    let password = key_password();
    let key = kiln_patch::Key::File {
        path: &a.key,
        password: password.as_deref(),
    };
    let s = kiln_patch::sign(ctx, &store, &img, key)?;
    let digest = img.descriptor.digest;
    let blobs = s.blobs_verified;
    if ctx.json {
        return print_json(&json!({
            "image": img.reference,
            "digest": digest,
            "blobs_verified": blobs,
            "key_id": s.key_id,
            "signature": {
                "tag": s.signed.signature_tag,
                "manifest": s.signed.signature_manifest.digest,
                "signatures": s.signed.signatures,
            },
            "bundle": {
                "manifest": s.signed.bundle.digest,
                "artifact_type": cosign::BUNDLE_MEDIA_TYPE,
            },
        }));
    }
    println!("verified     {blobs} blobs of {}", img.reference);
    println!("key id       {}", s.key_id);
    println!(
        "signature    {} ({} signature(s))",
        s.signed.signature_tag, s.signed.signatures
    );
    println!("bundle       {} (referrer)", s.signed.bundle.digest);
    println!("{digest}");
    Ok(())
}
