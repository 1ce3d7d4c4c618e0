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
    ctx.touch(kiln_audit::Resource::new("registry", reference.to_string()));
    let store = Store::open_or_init(ctx.state_dir.join("store"))?;
    let client = a.registry.client()?;
    // Every blob is verified against its digest before it enters the store.
    let d = client
        .pull(&reference, &store)
        .with_context(|| format!("pulling {reference}"))?;
    // cosign's legacy tags, when the registry has them (404 = none).
    let mut legacy = Vec::new();
    for suffix in ["sig", "att"] {
        let tag = format!("sha256-{}.{suffix}", d.digest.hex());
        match client.pull(&reference.with_tag(&tag), &store) {
            Ok(_) => legacy.push(tag),
            Err(kiln_registry::RegistryError::NotFound(_)) => {}
            Err(e) => return Err(e).with_context(|| format!("pulling {tag} of {reference}")),
        }
    }
    let referrers = store.referrers(&d.digest)?;
    ctx.record(
        ctx.event("image.pull")
            .resource(kiln_audit::Resource::named(
                "image",
                d.digest.to_string(),
                reference.to_string(),
            ))
            .resource(kiln_audit::Resource::new("registry", reference.to_string()))
            .detail(
                "referrers",
                referrers
                    .iter()
                    .map(|(d, _)| d.digest.to_string())
                    .collect::<Vec<_>>(),
            )
            .detail("legacy_tags", legacy.clone()),
    )?;
    if ctx.json {
        return print_json(&json!({
            "reference": reference.to_string(),
            "digest": d.digest,
            "referrers": referrers.iter().map(|(d, m)| json!({"digest": d.digest, "artifactType": m.artifact_type})).collect::<Vec<_>>(),
            "legacy_tags": legacy,
        }));
    }
    println!("pulled {reference} ({} referrers)", referrers.len());
    for t in &legacy {
        println!("  with {t}");
    }
    println!("{}", d.digest);
    Ok(())
}
