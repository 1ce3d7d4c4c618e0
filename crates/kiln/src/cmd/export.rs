//! `kiln export IMAGE --out DIR`: a standalone OCI layout for air-gapped moves, carrying
//! everything attached to the image: its referrers (SBOMs, Sigstore bundles,
//! attestations), their referrers in turn, and cosign's legacy `sha256-<hex>.sig` /
//! `.att` tags. Every blob is re-hashed before it is copied; the layout is written
//! beside DIR and renamed into place. `kiln import DIR` brings it back into a store.
//!
//! `--format oci-archive|docker-archive --out FILE`: the image alone (no signatures or
//! referrers) as a single-image tar that `podman load` / `docker load` accept.

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use kiln_image::archive::{ArchiveFormat, write_archive};
use kiln_image::export::{Tagged, export_recorded};
use kiln_oci::{Descriptor, Digest, ImageRef, Store};
use serde_json::json;

use super::{Ctx, print_json, resolve};
use kiln_trust::store::image_name;

#[derive(clap::Args)]
pub struct Args {
    /// NAME:TAG, NAME@sha256:<hex> or sha256:<hex> (an untagged image too).
    image: String,
    /// The OCI layout directory (replaced atomically if it is already a layout), or the
    /// archive file to write.
    #[arg(long)]
    out: PathBuf,
    /// `oci`: a layout with everything attached; `oci-archive` / `docker-archive`: a
    /// single-image tar for `podman load` / `docker load` (the image only).
    #[arg(long, value_enum, default_value_t = Format::Oci)]
    format: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Oci,
    OciArchive,
    DockerArchive,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Oci => "oci",
            Format::OciArchive => "oci-archive",
            Format::DockerArchive => "docker-archive",
        }
    }
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
    // The name:tag the export carries; `None`: an untagged image (by digest).
    let name_tag = match ImageRef::parse(&a.image)? {
        ImageRef::Tag { name, tag } => Some((name, tag)),
        ImageRef::Digest { name, .. } => {
            let tags: Vec<_> = store
                .images()?
                .into_iter()
                .filter(|t| {
                    t.descriptor.digest == digest
                        && kiln_oci::gc::legacy_subject(&t.tag).is_none()
                        && name.as_ref().is_none_or(|n| *n == t.name)
                })
                .collect();
            match tags.as_slice() {
                [] => None,
                [one, ..] if name.is_some() || tags.iter().all(|t| t.name == one.name) => {
                    Some((one.name.clone(), one.tag.clone()))
                }
                _ => {
                    // Several names: as `kiln sign` does, ask for NAME@digest.
                    let n = image_name(&store, &img)?;
                    bail!("{digest} is tagged under several names; export {n}@{digest}")
                }
            }
        }
    };
    let label = match &name_tag {
        Some((n, t)) => format!("{n}:{t}"),
        None => digest.to_string(),
    };
    if a.format != Format::Oci {
        let format = match a.format {
            Format::DockerArchive => ArchiveFormat::Docker,
            _ => ArchiveFormat::Oci,
        };
        let reference = name_tag.as_ref().map(|(n, t)| format!("{n}:{t}"));
        // The archive is complete under a temporary name when the event is
        // recorded, and renamed into place only after.
        let mut failed = None;
        let res = write_archive(
            &store,
            &img.descriptor,
            reference.as_deref(),
            format,
            &a.out,
            recorder(
                ctx,
                ctx.event("image.export")
                    .resource(super::image_resource(&img))
                    .resource(kiln_audit::Resource::new(
                        "archive",
                        a.out.display().to_string(),
                    ))
                    .detail("format", a.format.name()),
                &mut failed,
            ),
        );
        if let Some(e) = failed {
            return Err(e.context(format!("{} was not exported", a.out.display())));
        }
        res.with_context(|| format!("exporting {} to {}", a.image, a.out.display()))?;
        if ctx.json {
            return print_json(&json!({
                "image": label,
                "digest": digest,
                "config": img.manifest.config.digest,
                "format": a.format.name(),
                "out": a.out,
            }));
        }
        println!(
            "exported     {label} to {} ({})",
            a.out.display(),
            a.format.name()
        );
        println!("config       {}", img.manifest.config.digest);
        println!("{digest}");
        return Ok(());
    }
    let (referrers, tagged) = attached(&store, &digest)?;
    // The layout is complete under a temporary name when the event is
    // recorded, and renamed into place only after.
    let mut failed = None;
    let res = export_recorded(
        &store,
        name_tag.as_ref().map(|(n, t)| (n.as_str(), t.as_str())),
        &img.descriptor,
        &referrers,
        &tagged,
        &a.out,
        recorder(
            ctx,
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
            &mut failed,
        ),
    );
    if let Some(e) = failed {
        return Err(e.context(format!("{} was not exported", a.out.display())));
    }
    res.with_context(|| format!("exporting {} to {}", a.image, a.out.display()))?;
    if ctx.json {
        return print_json(&json!({
            "image": label,
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
    println!("exported     {label} to {}", a.out.display());
    println!("referrers    {}", referrers.len());
    for t in &tagged {
        println!("tag          {}:{}", t.name, t.tag);
    }
    println!("{digest}");
    Ok(())
}

/// The `record` step of an export: append `event` to the audit log once the
/// output is complete under its temporary name, before it is renamed into
/// place. The library sees only a message; the full error is kept in
/// `failed` so the command reports it with its chain.
fn recorder<'a>(
    ctx: &'a Ctx,
    event: kiln_audit::Event,
    failed: &'a mut Option<anyhow::Error>,
) -> impl FnOnce() -> std::result::Result<(), String> + 'a {
    move || {
        ctx.record(event).map(|_| ()).map_err(|e| {
            let msg = format!("{e:#}");
            *failed = Some(e);
            msg
        })
    }
}
