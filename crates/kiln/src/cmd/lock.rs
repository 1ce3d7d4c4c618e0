//! `kiln lock`: resolve a spec's `[packages]` against its `[[repositories]]`
//! and write `kiln.lock` beside it (see `kiln_image::packages`), with a
//! summary: packages, suites with their InRelease digest and signing key,
//! download size. Also the "no lock yet" step of `kiln build`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use kiln_audit::Resource;
use kiln_image::Spec;
use kiln_image::lock::Lock;
use kiln_image::packages::{self, Update};

use super::{Ctx, human, print_json};

#[derive(clap::Args)]
pub struct Args {
    /// The spec file; kiln.lock is written beside it.
    #[arg(short = 'f', long = "file", default_value = "kiln.toml")]
    file: PathBuf,
    /// Re-resolve: with no PKG everything moves to the newest; with PKGs
    /// only they (and what they newly need) move, every other locked
    /// version is kept when still possible. Without --update, locked
    /// versions are kept and only what a changed spec needs moves.
    #[arg(long, num_args = 0.., value_name = "PKG")]
    update: Option<Vec<String>>,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Resolve `spec` into a new lock (keeping `kiln patch` pins) and write it.
pub fn resolve_and_write(state_dir: &Path, spec: &Spec, update: &Update) -> Result<Lock> {
    let client = packages::client(state_dir, false);
    let lock = packages::lock(spec, &client, update, now())
        .with_context(|| format!("resolving the packages of {}", spec.path.display()))?;
    lock.write(&spec.dir).with_context(|| {
        format!(
            "writing {}",
            spec.dir.join(kiln_image::lock::LOCK_FILE).display()
        )
    })?;
    Ok(lock)
}

/// The human summary of a lock, on stdout.
pub fn print_summary(lock: &Lock) {
    let total: u64 = lock.packages.iter().map(|p| p.size).sum();
    println!(
        "locked {} packages from {} suites ({} to download)",
        lock.packages.len(),
        lock.repositories.len(),
        human(total)
    );
    for r in &lock.repositories {
        let n = lock
            .packages
            .iter()
            .filter(|p| lock.repositories.get(p.repository) == Some(r))
            .count();
        println!(
            "  suite  {} {}  InRelease sha256:{}  key {}  ({n} packages)",
            r.url, r.suite, r.inrelease_sha256, r.signing_key
        );
    }
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    ctx.touch(Resource::new("spec", a.file.display().to_string()));
    let spec = Spec::load(&a.file)?;
    if spec.packages.is_none() {
        bail!(
            "{}: the spec has no [packages] table: nothing to lock",
            spec.path.display()
        );
    }
    let update = match a.update {
        None => Update::Keep,
        Some(v) if v.is_empty() => Update::All,
        Some(v) => Update::Only(v),
    };
    let lock = resolve_and_write(&ctx.state_dir, &spec, &update)?;
    let before = spec
        .lock
        .as_ref()
        .map(|l| l.packages.clone())
        .unwrap_or_default();
    let changed: Vec<serde_json::Value> = lock
        .packages
        .iter()
        .filter_map(|p| {
            let old = before.iter().find(|o| o.name == p.name);
            match old {
                Some(o) if o.version == p.version => None,
                o => Some(serde_json::json!({
                    "name": p.name,
                    "from": o.map(|o| o.version.clone()),
                    "to": p.version,
                })),
            }
        })
        .chain(
            before
                .iter()
                .filter(|o| !lock.packages.iter().any(|p| p.name == o.name))
                .map(|o| serde_json::json!({"name": o.name, "from": o.version, "to": null})),
        )
        .collect();
    if ctx.json {
        let total: u64 = lock.packages.iter().map(|p| p.size).sum();
        return print_json(&serde_json::json!({
            "lock": spec.dir.join(kiln_image::lock::LOCK_FILE),
            "packages": lock.packages.len(),
            "download_size": total,
            "inputs_digest": lock.inputs.as_ref().map(|i| i.digest.clone()),
            "repositories": lock.repositories,
            "changed": changed,
        }));
    }
    print_summary(&lock);
    // Which versions moved (a first lock lists nothing: everything is new).
    for c in changed.iter().filter(|_| !before.is_empty()) {
        println!(
            "  {}  {} -> {}",
            c["name"].as_str().unwrap_or(""),
            c["from"].as_str().unwrap_or("(new)"),
            c["to"].as_str().unwrap_or("(removed)")
        );
    }
    println!(
        "wrote {}",
        spec.dir.join(kiln_image::lock::LOCK_FILE).display()
    );
    Ok(())
}
