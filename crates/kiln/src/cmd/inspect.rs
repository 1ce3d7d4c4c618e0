use anyhow::Result;
use serde_json::json;

use super::{Ctx, human, print_json, resolve};

#[derive(clap::Args)]
pub struct Args {
    /// NAME:TAG, NAME@sha256:<hex> or sha256:<hex>.
    image: String,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let store = ctx.store()?;
    let img = resolve(&store, &a.image)?;
    let mut refs = Vec::new();
    for (d, m) in store.referrers(&img.descriptor.digest)? {
        let summary = match m.layers.first() {
            Some(l) => {
                let bytes = store.read_descriptor(l)?;
                kiln_sbom::summarize(&bytes).ok()
            }
            None => None,
        };
        refs.push((d, m, summary));
    }
    if ctx.json {
        let v = json!({
            "reference": img.reference,
            "digest": img.descriptor.digest,
            "manifest": img.manifest,
            "config": img.config,
            "referrers": refs.iter().map(|(d, m, s)| json!({
                "digest": d.digest,
                "artifactType": m.artifact_type,
                "summary": s.as_ref().map(|s| json!({
                    "format": s.format.to_string(),
                    "version": s.version,
                    "packages": s.packages,
                    "files": s.files,
                })),
            })).collect::<Vec<_>>(),
        });
        return print_json(&v);
    }
    let c = &img.config;
    let rc = &c.config;
    println!("Image        {}", img.reference);
    println!("Digest       {}", img.descriptor.digest);
    println!("Created      {}", c.created.as_deref().unwrap_or("-"));
    println!("Platform     {}/{}", c.os, c.architecture);
    println!(
        "Entrypoint   {:?}",
        rc.entrypoint.clone().unwrap_or_default()
    );
    if let Some(cmd) = &rc.cmd {
        println!("Cmd          {cmd:?}");
    }
    println!("User         {}", rc.user.as_deref().unwrap_or("(root)"));
    println!("WorkingDir   {}", rc.working_dir.as_deref().unwrap_or("/"));
    println!(
        "Ports        {}",
        rc.exposed_ports
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("Env");
    for e in &rc.env {
        println!("  {e}");
    }
    println!("Labels");
    for (k, v) in &rc.labels {
        println!("  {k}={v}");
    }
    println!("Layers");
    for (l, d) in img.manifest.layers.iter().zip(&c.rootfs.diff_ids) {
        println!(
            "  {}  {:>10}  {}  (diff_id {})",
            l.digest,
            human(l.size),
            l.media_type,
            d
        );
    }
    println!("Annotations");
    for (k, v) in &img.manifest.annotations {
        println!("  {k}={v}");
    }
    println!("Referrers");
    for (d, m, s) in &refs {
        let what = match s {
            Some(s) => format!(
                "{} {}: {} packages, {} files",
                s.format, s.version, s.packages, s.files
            ),
            None => String::new(),
        };
        println!(
            "  {}  {:<44} {what}",
            d.digest,
            m.artifact_type.as_deref().unwrap_or("?")
        );
    }
    Ok(())
}
