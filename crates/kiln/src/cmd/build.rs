use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use kiln_image::{BuildOptions, Compression, Spec};

use super::{Ctx, human, print_json};

#[derive(clap::Args)]
pub struct Args {
    /// The spec file.
    #[arg(short = 'f', long = "file", default_value = "kiln.toml")]
    file: PathBuf,
    /// Also export the image (with its SBOMs) as an OCI layout here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Name and tag to store the image under, overriding the spec's.
    #[arg(long, value_name = "NAME:TAG")]
    tag: Option<String>,
    /// Layer compression: gzip (compatible everywhere), zstd, or none.
    #[arg(long, default_value = "gzip")]
    compression: Compression,
    /// Worker threads for hashing and compression (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let spec = Spec::load(&a.file)?;
    let tag = match &a.tag {
        None => None,
        Some(t) => match kiln_oci::ImageRef::parse(t)? {
            kiln_oci::ImageRef::Tag { name, tag } => Some((name, tag)),
            _ => bail!("--tag {t}: expected NAME:TAG"),
        },
    };
    let threads = a
        .threads
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        })
        .max(1);
    let opts = BuildOptions {
        state_dir: ctx.state_dir.clone(),
        compression: a.compression,
        tag,
        out: a.out.clone(),
        threads,
        source_date_epoch: std::env::var("SOURCE_DATE_EPOCH").ok(),
        progress: crate::progress::for_terminal(ctx.json),
    };
    let r = kiln_image::build(&spec, &opts)
        .with_context(|| format!("building {}", a.file.display()))?;
    if ctx.json {
        return print_json(&r);
    }
    for w in &r.warnings {
        eprintln!("kiln: warning: {w}");
    }
    println!("built {}:{} ({} ms)", r.name, r.tag, r.elapsed_ms);
    println!("  created   {} (epoch from {})", r.created, r.epoch_source);
    if let Some(b) = &r.base {
        println!("  base      {b}");
    }
    for l in &r.layers {
        println!(
            "  layer     {:<9} {}  {:>10}  {} entries{}",
            l.role,
            l.digest,
            human(l.size),
            l.entries,
            if l.cached { "  (cached)" } else { "" }
        );
    }
    for rf in &r.referrers {
        println!("  referrer  {}  {}", rf.digest, rf.artifact_type);
    }
    println!("  contents  {} packages, {} paths", r.packages, r.files);
    if let Some(o) = &r.out {
        println!("  exported  {}", o.display());
    }
    println!("{}", r.digest);
    Ok(())
}
