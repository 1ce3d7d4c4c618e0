use std::path::PathBuf;

use anyhow::{Context, Result};
use kiln_registry::{Client, Options, Reference};
use serde_json::json;

use super::{Ctx, print_json, resolve};

/// How to reach a registry (shared by push and pull).
#[derive(clap::Args)]
pub struct RegistryArgs {
    /// Plain HTTP; only allowed for loopback registries.
    #[arg(long)]
    insecure: bool,
    /// PEM file with the CA certificates to trust.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Registry user (password from KILN_REGISTRY_PASSWORD).
    #[arg(long, env = "KILN_REGISTRY_USER")]
    username: Option<String>,
    /// Seconds to wait for a registry's response headers (connecting is
    /// limited to 10 s; a body fails if under 1 KiB arrives in 30 s).
    #[arg(long, value_name = "SECS", env = "KILN_REGISTRY_TIMEOUT", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout: u64,
}

impl RegistryArgs {
    pub fn client(&self) -> Result<Client> {
        let mut timeouts = kiln_registry::Timeouts {
            response: std::time::Duration::from_secs(self.timeout),
            ..Default::default()
        };
        // Internal (tests): the low-speed limit as BYTES/SECONDS.
        if let Ok(v) = std::env::var("KILN_REGISTRY_LOW_SPEED") {
            timeouts.low_speed = kiln_registry::LowSpeedLimit::parse(&v)
                .map_err(|e| anyhow::anyhow!("KILN_REGISTRY_LOW_SPEED: {e}"))?;
        }
        Ok(Client::new(Options {
            insecure: self.insecure,
            ca_file: self.ca_file.clone(),
            username: self.username.clone(),
            password: std::env::var("KILN_REGISTRY_PASSWORD").ok(),
            timeouts,
            ..Options::default()
        })?)
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// The local image: NAME:TAG or NAME@sha256:<hex>.
    image: String,
    /// Where to: HOST[:PORT]/REPO:TAG.
    target: String,
    #[command(flatten)]
    registry: RegistryArgs,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let store = ctx.store()?;
    let img = resolve(&store, &a.image)?;
    ctx.touch(super::image_resource(&img));
    let target: Reference = a.target.parse()?;
    ctx.touch(kiln_audit::Resource::new("registry", target.to_string()));
    let client = a.registry.client()?;
    let pushed = client
        .push_image(&store, &img.descriptor, &target)
        .with_context(|| format!("pushing {} to {target}", a.image))?;
    let referrers = client
        .push_referrers(&store, &img.descriptor.digest, &target)
        .with_context(|| format!("pushing the artifacts attached to {}", a.image))?;
    // cosign's legacy signature tag, if the image was signed.
    let sig_tag = format!("sha256-{}.sig", img.descriptor.digest.hex());
    let local_name = match kiln_oci::ImageRef::parse(&a.image)? {
        kiln_oci::ImageRef::Tag { name, .. }
        | kiln_oci::ImageRef::Digest {
            name: Some(name), ..
        } => Some(name),
        kiln_oci::ImageRef::Digest { name: None, .. } => None,
    };
    let att_tag = format!("sha256-{}.att", img.descriptor.digest.hex());
    let local_tag = |tag: &str| match &local_name {
        Some(n) => store
            .resolve(&kiln_oci::ImageRef::Tag {
                name: n.clone(),
                tag: tag.to_owned(),
            })
            .ok(),
        None => None,
    };
    let sig = local_tag(&sig_tag);
    // cosign's legacy attestation tag (provenance, approvals), if any.
    let att = local_tag(&att_tag);
    if let Some(att) = &att {
        client
            .push_image(&store, att, &target.with_tag(&att_tag))
            .with_context(|| format!("pushing the attestations of {}", a.image))?;
    }
    if let Some(sig) = &sig {
        client
            .push_image(&store, sig, &target.with_tag(&sig_tag))
            .with_context(|| format!("pushing the signatures of {}", a.image))?;
    }
    ctx.record(
        ctx.event("image.push")
            .resource(super::image_resource(&img))
            .resource(kiln_audit::Resource::new("registry", target.to_string()))
            .detail("pushed_manifest", pushed.digest.to_string())
            .detail(
                "referrers",
                referrers
                    .iter()
                    .map(|d| d.digest.to_string())
                    .collect::<Vec<_>>(),
            )
            .detail("signatures", sig.as_ref().map(|d| d.digest.to_string()))
            .detail("attestations", att.as_ref().map(|d| d.digest.to_string())),
    )?;
    if ctx.json {
        return print_json(&json!({
            "target": target.to_string(),
            "digest": pushed.digest,
            "referrers": referrers.iter().map(|d| json!({"digest": d.digest, "artifactType": d.artifact_type})).collect::<Vec<_>>(),
            "signatures": sig.as_ref().map(|d| json!({"tag": sig_tag, "digest": d.digest})),
            "attestations": att.as_ref().map(|d| json!({"tag": att_tag, "digest": d.digest})),
        }));
    }
    println!("pushed {} -> {target}", a.image);
    if sig.is_some() {
        println!("  signatures {sig_tag}");
    }
    if att.is_some() {
        println!("  attestations {att_tag}");
    }
    for r in &referrers {
        println!(
            "  referrer  {}  {}",
            r.digest,
            r.artifact_type.as_deref().unwrap_or("?")
        );
    }
    println!("{}", pushed.digest);
    Ok(())
}
