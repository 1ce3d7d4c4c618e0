//! `kiln build`: arguments to a build request; the build, its provenance and its event
//! are `kiln_patch::build`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use kiln_audit::Resource;
use kiln_image::provenance::Builder;
use kiln_image::{BuildOptions, Compression, Spec};
use kiln_patch::BuildRequest;

use super::{Ctx, human, print_json};
use kiln_image::lock::LockState;

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
    /// Sign SLSA provenance for the image with this key (password from KILN_KEY_PASSWORD)
    /// and attach it (OCI referrer and cosign `.att`). The image digest does not change.
    #[arg(long, value_name = "KEY")]
    sign_key: Option<PathBuf>,
    /// With [packages]: a missing kiln.lock is an error (exit status 1) instead of
    /// being resolved and written. (A stale lock is always an error: `kiln lock`.)
    #[arg(long)]
    locked: bool,
    /// No network: repository packages only from the cache (a missing .deb is an
    /// error naming it); needs a fresh kiln.lock (implies --locked).
    #[arg(long)]
    offline: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    ctx.touch(Resource::new("spec", a.file.display().to_string()));
    let started_on = kiln_image::provenance::rfc3339_micros(std::time::SystemTime::now());
    // Load the key first: a wrong password should fail before a long build.
    let key = match &a.sign_key {
        Some(p) => Some(super::sign::load_key(p)?),
        None => None,
    };
    let mut spec = Spec::load(&a.file)?;
    if spec.packages.is_some() {
        match kiln_image::packages::check_fresh(&spec) {
            Ok(()) => {}
            // No lock yet: as cargo does, resolve, write the lock, say so. A
            // lock that no longer matches the spec is never re-resolved by a
            // build (the lock is the build): that is `kiln lock`'s job.
            Err(kiln_image::packages::PackagesError::Lock(
                why @ (LockState::Missing | LockState::Unresolved),
            )) if !(a.locked || a.offline) => {
                let update = kiln_image::packages::Update::Keep;
                super::lock::resolve_and_write(&ctx.state_dir, &spec, &update)?;
                // On stderr, also with --json (stdout stays the report).
                eprintln!(
                    "kiln: {why}; resolved and wrote {}",
                    spec.dir.join(kiln_image::lock::LOCK_FILE).display()
                );
                spec = Spec::load(&a.file)?;
            }
            Err(e) => {
                let context = if a.offline {
                    "--offline: the lock cannot be used"
                } else if a.locked {
                    "--locked: the lock cannot be used"
                } else {
                    "the lock cannot be used"
                };
                return Err(anyhow::Error::new(e).context(context));
            }
        }
    }
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
        offline: a.offline,
    };
    // Staged, recorded, then published (see `kiln_patch::build`).
    let builder = match &key {
        Some(_) => Some(Builder::current()?),
        None => None,
    };
    let built = kiln_patch::build(
        ctx,
        &BuildRequest {
            spec_path: &a.file,
            spec: &spec,
            options: &opts,
            provenance: key.as_ref().zip(builder.as_ref()),
            started_on: &started_on,
        },
    )?;
    let (r, provenance) = (built.report, built.provenance);
    if ctx.json {
        let mut v = serde_json::to_value(&r)?;
        if let (Some(p), Some(obj)) = (&provenance, v.as_object_mut()) {
            obj.insert(
                "provenance".into(),
                serde_json::json!({
                    "referrer": p.referrer.digest,
                    "envelope": p.envelope.digest,
                    "bundle": p.bundle.digest,
                    "attestation_tag": p.att_tag,
                }),
            );
        }
        return print_json(&v);
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
    // Maintainer scripts are never run (the warning above lists them); what
    // kiln did in their place, per package:
    for (pkg, done) in &r.done_by_kiln {
        for d in done {
            println!(
                "  in place  {pkg}: {}",
                d.strip_prefix("kiln: ").unwrap_or(d)
            );
        }
    }
    if let Some(p) = &provenance {
        println!(
            "  provenance {}  (SLSA v1, also {})",
            p.referrer.digest, p.att_tag
        );
    }
    if let Some(o) = &r.out {
        println!("  exported  {}", o.display());
    }
    println!("{}", r.digest);
    Ok(())
}
