use anyhow::{Context, Result};
use kiln_oci::Store;
use kiln_registry::Reference;
use serde_json::json;

use super::push::RegistryArgs;
use super::{Ctx, print_json};

#[derive(clap::Args)]
pub struct Args {
    /// HOST[:PORT]/REPO:TAG or HOST[:PORT]/REPO@sha256:<hex>.
    reference: String,
    #[command(flatten)]
    registry: RegistryArgs,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let reference: Reference = a.reference.parse()?;
    let store = Store::open_or_init(ctx.state_dir.join("store"))?;
    let client = a.registry.client()?;
    // Every blob is verified against its digest before it enters the store.
    let d = client
        .pull(&reference, &store)
        .with_context(|| format!("pulling {reference}"))?;
    let referrers = store.referrers(&d.digest)?;
    if ctx.json {
        return print_json(&json!({
            "reference": reference.to_string(),
            "digest": d.digest,
            "referrers": referrers.iter().map(|(d, m)| json!({"digest": d.digest, "artifactType": m.artifact_type})).collect::<Vec<_>>(),
        }));
    }
    println!("pulled {reference} ({} referrers)", referrers.len());
    println!("{}", d.digest);
    Ok(())
}
