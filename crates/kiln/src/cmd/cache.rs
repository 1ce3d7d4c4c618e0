//! `kiln cache status` and `kiln cache prune`: the repository cache under
//! `<state>/cache` (`debs/`, `indexes/`, `parsed/`, `suites/`; see
//! `kiln_repo::cache`), shared by every build. Pruning is safe while builds
//! run: entries appear by atomic rename, temporary files younger than a day
//! (downloads in progress) are never removed, and a build that finds an
//! entry gone fetches it again. Cache contents are not evidence, so nothing
//! here is an audit event.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, Result};
use kiln_repo::{Cache, digests_in};
use serde_json::json;

use super::{Ctx, human, print_json};

#[derive(clap::Subcommand)]
pub enum CacheCmd {
    /// Entries and bytes per kind (packages, indexes, compact indexes) and the suites whose
    /// last verified Release is kept for offline use.
    Status,
    /// Remove cache entries no given lock references, keeping the newest verified Release of
    /// every suite and the indexes it lists; --all empties the cache.
    #[command(
        after_help = "Kept without --all: every entry whose SHA-256 a --lock file names (packages, \
InRelease digests), and each suite's newest verified Release with the indexes it lists. \
Temporary files of downloads in progress are never removed.\n\nExit status: 0 done, 1 error \
(e.g. an unreadable lock file; nothing is removed then)."
    )]
    Prune(PruneArgs),
}

#[derive(clap::Args)]
pub struct PruneArgs {
    /// A kiln.lock whose packages and Releases to keep (repeatable).
    #[arg(short = 'f', long = "lock", value_name = "LOCK")]
    locks: Vec<PathBuf>,
    /// Remove everything, the newest Releases too (offline use needs a new online run).
    #[arg(long, conflicts_with = "locks")]
    all: bool,
}

impl CacheCmd {
    pub fn command_name(&self) -> &'static str {
        match self {
            CacheCmd::Status => "kiln cache status",
            CacheCmd::Prune(_) => "kiln cache prune",
        }
    }
}

fn cache(ctx: &Ctx) -> Cache {
    Cache::new(ctx.state_dir.join("cache"))
}

pub fn run(ctx: &Ctx, c: CacheCmd) -> Result<()> {
    match c {
        CacheCmd::Status => status(ctx),
        CacheCmd::Prune(a) => prune(ctx, a),
    }
}

fn status(ctx: &Ctx) -> Result<()> {
    let c = cache(ctx);
    let usage = c.usage()?;
    let suites = c.last_releases()?;
    if ctx.json {
        let suites: Vec<_> = suites
            .iter()
            .map(|s| {
                json!({
                    "url": s.url,
                    "suite": s.suite,
                    "release": s.last.digests().iter().map(|d| d.to_string()).collect::<Vec<_>>(),
                })
            })
            .collect();
        return print_json(&json!({
            "root": c.root(),
            "kinds": usage,
            "files": usage.iter().map(|u| u.files).sum::<usize>(),
            "bytes": usage.iter().map(|u| u.bytes).sum::<u64>(),
            "suites": suites,
        }));
    }
    println!("cache        {}", c.root().display());
    for u in &usage {
        let tmp = if u.temporary > 0 {
            format!(" ({} temporary)", u.temporary)
        } else {
            String::new()
        };
        println!("{:<12} {} files, {}{tmp}", u.kind, u.files, human(u.bytes));
    }
    println!(
        "total        {} files, {}",
        usage.iter().map(|u| u.files).sum::<usize>(),
        human(usage.iter().map(|u| u.bytes).sum())
    );
    for s in &suites {
        println!(
            "suite        {} {} (last verified Release {})",
            s.url,
            s.suite,
            s.last.digests()[0]
        );
    }
    Ok(())
}

fn prune(ctx: &Ctx, a: PruneArgs) -> Result<()> {
    let c = cache(ctx);
    let mut keep = BTreeSet::new();
    if !a.all {
        // Read every lock before removing anything.
        for l in &a.locks {
            let text = std::fs::read_to_string(l)
                .with_context(|| format!("reading lock file {}", l.display()))?;
            keep.extend(digests_in(&text));
        }
        keep.extend(c.newest_release_digests()?);
    }
    let forgotten = if a.all { c.forget_releases()? } else { 0 };
    let pruned = c.prune(&keep)?;
    if ctx.json {
        return print_json(&json!({
            "files": pruned.files,
            "bytes": pruned.bytes,
            "suites_forgotten": forgotten,
        }));
    }
    println!(
        "removed      {} files, {}",
        pruned.files,
        human(pruned.bytes)
    );
    if forgotten > 0 {
        println!("forgot       the last verified Release of {forgotten} suite(s)");
    }
    Ok(())
}
