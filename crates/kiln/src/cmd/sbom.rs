use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use super::{Ctx, resolve};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Spdx,
    Cyclonedx,
    /// The file manifest (drift baseline).
    Files,
}

#[derive(clap::Args)]
pub struct Args {
    /// NAME:TAG, NAME@sha256:<hex> or sha256:<hex>.
    image: String,
    #[arg(long, value_enum, default_value = "spdx")]
    format: Format,
    /// Write to this file instead of stdout.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let store = ctx.store()?;
    let img = resolve(&store, &a.image)?;
    let want = match a.format {
        Format::Spdx => kiln_sbom::MEDIA_TYPE_SPDX,
        Format::Cyclonedx => kiln_sbom::MEDIA_TYPE_CYCLONEDX,
        Format::Files => kiln_sbom::MEDIA_TYPE_FILE_MANIFEST,
    };
    let Some((_, m)) = store
        .referrers(&img.descriptor.digest)?
        .into_iter()
        .find(|(_, m)| m.artifact_type.as_deref() == Some(want))
    else {
        bail!("{} has no {want} artifact attached", a.image);
    };
    let Some(layer) = m.layers.first() else {
        bail!("the {want} artifact of {} has no content", a.image);
    };
    let bytes = store.read_descriptor(layer)?;
    match &a.output {
        Some(p) => kiln_oci::layout::write_atomic(p, &bytes)
            .with_context(|| format!("writing {}", p.display()))?,
        None => std::io::stdout().write_all(&bytes)?,
    }
    Ok(())
}
