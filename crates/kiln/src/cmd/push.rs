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
}

impl RegistryArgs {
    pub fn client(&self) -> Result<Client> {
        Ok(Client::new(Options {
            insecure: self.insecure,
            ca_file: self.ca_file.clone(),
            username: self.username.clone(),
            password: std::env::var("KILN_REGISTRY_PASSWORD").ok(),
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
    let target: Reference = a.target.parse()?;
    let client = a.registry.client()?;
    let pushed = client
        .push_image(&store, &img.descriptor, &target)
        .with_context(|| format!("pushing {} to {target}", a.image))?;
    let referrers = client
        .push_referrers(&store, &img.descriptor.digest, &target)
        .with_context(|| format!("pushing the artifacts attached to {}", a.image))?;
    if ctx.json {
        return print_json(&json!({
            "target": target.to_string(),
            "digest": pushed.digest,
            "referrers": referrers.iter().map(|d| json!({"digest": d.digest, "artifactType": d.artifact_type})).collect::<Vec<_>>(),
        }));
    }
    println!("pushed {} -> {target}", a.image);
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
