//! `kiln export IMAGE --out DIR`: a standalone OCI layout for air-gapped moves, carrying
//! everything attached to the image: its referrers (SBOMs, Sigstore bundles,
//! attestations), their referrers in turn, and cosign's legacy `sha256-<hex>.sig` /
//! `.att` tags. Every blob is re-hashed before it is copied; the layout is written
//! beside DIR and renamed into place. `kiln import DIR` brings it back into a store.

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use kiln_image::export::{Tagged, export_recorded};
use kiln_oci::{Descriptor, Digest, ImageRef, Store};
use serde_json::json;

use super::sign::image_name;
use super::{Ctx, print_json, resolve};

#[derive(clap::Args)]
pub struct Args {
    /// NAME:TAG, NAME@sha256:<hex> or sha256:<hex> (a digest needs a tag in the store).
    image: String,
    /// The OCI layout to write (replaced atomically if it is already a layout).
    #[arg(long)]
    out: PathBuf,
}

/// cosign's legacy tags for `d`: `sha256-<hex>.sig` and `sha256-<hex>.att`.
pub fn legacy_tags(d: &Digest) -> [String; 2] {
    [
        format!("sha256-{}.sig", d.hex()),
        format!("sha256-{}.att", d.hex()),
    ]
}

/// Everything attached to `root`, transitively: OCI 1.1 referrers (and their
/// referrers), and manifests under cosign's legacy tags (and what is attached to them).
pub fn attached(store: &Store, root: &Digest) -> Result<(Vec<Descriptor>, Vec<Tagged>)> {
    let images = store.images()?;
    let mut seen = BTreeSet::from([*root]);
    let mut queue = VecDeque::from([*root]);
    let mut referrers = Vec::new();
    let mut tagged = Vec::new();
    while let Some(d) = queue.pop_front() {
        for (desc, _) in store
            .referrers(&d)
            .with_context(|| format!("reading the referrers of {d}"))?
        {
            if seen.insert(desc.digest) {
                queue.push_back(desc.digest);
                referrers.push(desc);
            }
        }
        let legacy = legacy_tags(&d);
        for t in images.iter().filter(|t| legacy.contains(&t.tag)) {
            let mut desc = t.descriptor.clone();
            desc.annotations.remove(kiln_oci::annotations::REF_NAME);
            tagged.push(Tagged {
                name: t.name.clone(),
                tag: t.tag.clone(),
                descriptor: desc.clone(),
            });
            if seen.insert(desc.digest) {
                queue.push_back(desc.digest);
            }
        }
    }
    Ok((referrers, tagged))
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let store = ctx.store()?;
    let img = resolve(&store, &a.image)?;
    ctx.touch(super::image_resource(&img));
    let digest = img.descriptor.digest;
    let (name, tag) = match ImageRef::parse(&a.image)? {
        ImageRef::Tag { name, tag } => (name, tag),
        ImageRef::Digest { .. } => {
            let name = image_name(&store, &img)?;
            let tag = store
                .images()?
                .into_iter()
                .find(|t| t.name == name && t.descriptor.digest == digest)
                .map(|t| t.tag);
            match tag {
                Some(t) => (name, t),
                None => bail!("{digest} has no tag under {name}; export NAME:TAG instead"),
            }
        }
    };
    let (referrers, tagged) = attached(&store, &digest)?;
    // The layout is complete under a temporary name when the event is
    // recorded, and renamed into place only after.
    let mut failed = None;
    let res = export_recorded(
        &store,
        &name,
        &tag,
        &img.descriptor,
        &referrers,
        &tagged,
        &a.out,
        || {
            ctx.record(
                ctx.event("image.export")
                    .resource(super::image_resource(&img))
                    .resource(kiln_audit::Resource::new(
                        "layout",
                        a.out.display().to_string(),
                    ))
                    .detail(
                        "referrers",
                        referrers
                            .iter()
                            .map(|d| d.digest.to_string())
                            .collect::<Vec<_>>(),
                    ),
            )
            .map(|_| ())
            .map_err(|e| {
                let msg = format!("{e:#}");
                failed = Some(e);
                msg
            })
        },
    );
    if let Some(e) = failed {
        return Err(e.context(format!("{} was not exported", a.out.display())));
    }
    res.with_context(|| format!("exporting {} to {}", a.image, a.out.display()))?;
    if ctx.json {
        return print_json(&json!({
            "image": format!("{name}:{tag}"),
            "digest": digest,
            "out": a.out,
            "referrers": referrers
                .iter()
                .map(|d| json!({
                    "digest": d.digest,
                    "artifact_type": d.artifact_type,
                }))
                .collect::<Vec<_>>(),
            "tags": tagged
                .iter()
                .map(|t| json!({
                    "ref": format!("{}:{}", t.name, t.tag),
                    "digest": t.descriptor.digest,
                }))
                .collect::<Vec<_>>(),
        }));
    }
    println!("exported     {name}:{tag} to {}", a.out.display());
    println!("referrers    {}", referrers.len());
    for t in &tagged {
        println!("tag          {}:{}", t.name, t.tag);
    }
    println!("{digest}");
    Ok(())
}
