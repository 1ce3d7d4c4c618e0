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
    // Staged: blobs in the store, unreferenced; the index names them only
    // after the event is recorded.
    let (d, pulled) = client
        .pull_staged(&reference, &store)
        .with_context(|| format!("pulling {reference}"))?;
    let pulled_referrers: Vec<String> = pulled
        .referrers()
        .iter()
        .map(|d| d.digest.to_string())
        .collect();
    let mut staged = vec![pulled];
    // cosign's legacy tags, when the registry has them (404 = none).
    let mut legacy = Vec::new();
    for suffix in ["sig", "att"] {
        let tag = format!("sha256-{}.{suffix}", d.digest.hex());
        match client.pull_staged(&reference.with_tag(&tag), &store) {
            Ok((_, p)) => {
                legacy.push(tag);
                staged.push(p);
            }
            Err(kiln_registry::RegistryError::NotFound(_)) => {}
            Err(e) => return Err(e).with_context(|| format!("pulling {tag} of {reference}")),
        }
    }
    ctx.record(
        ctx.event("image.pull")
            .resource(kiln_audit::Resource::named(
                "image",
                d.digest.to_string(),
                reference.to_string(),
            ))
            .resource(kiln_audit::Resource::new("registry", reference.to_string()))
            .detail("referrers", pulled_referrers)
            .detail("legacy_tags", legacy.clone()),
    )?;
    for p in staged {
        p.apply(&store)?;
    }
    let referrers = store.referrers(&d.digest)?;
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
