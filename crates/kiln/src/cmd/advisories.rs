//! `kiln advisories sync [--url URL]`: fetch an OSV export (osv.dev's Debian
//! `all.zip` by default), check it, store it, record an `advisories.sync` event and
//! make it the set `kiln scan` uses when it is given no `--advisories`.
//! `kiln advisories status`: the set in use, its records checked against the digest
//! recorded when it was synced. The work is `kiln_scan::feed`'s.

use std::time::{Duration, SystemTime};

use anyhow::Result;
use kiln_audit::Resource;
use kiln_scan::feed::{self, SyncOptions, SyncedSet};
use serde_json::json;

use super::{Ctx, human, print_json};

#[derive(clap::Subcommand)]
pub enum AdvisoriesCmd {
    /// Download an OSV export, check it (size, content type, zip safety, records) and make it
    /// the advisory set `kiln scan` uses without --advisories.
    Sync(SyncArgs),
    /// The synced advisory set in use: source, digest, fetch time, count, newest record.
    Status,
}

#[derive(clap::Args)]
pub struct SyncArgs {
    /// The export to fetch: osv.dev's `<ecosystem>/all.zip` layout.
    #[arg(long, env = "KILN_ADVISORIES_URL", default_value = feed::DEFAULT_URL)]
    url: String,
    /// Seconds allowed for connecting, for the response, and for each read.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Largest archive accepted, in bytes.
    #[arg(long, default_value_t = 1 << 30)]
    max_bytes: u64,
}

impl AdvisoriesCmd {
    pub fn command_name(&self) -> &'static str {
        match self {
            AdvisoriesCmd::Sync(_) => "kiln advisories sync",
            AdvisoriesCmd::Status => "kiln advisories status",
        }
    }

    pub fn failure_action(&self) -> Option<&'static str> {
        match self {
            AdvisoriesCmd::Sync(_) => Some("advisories.sync"),
            AdvisoriesCmd::Status => None,
        }
    }
}

pub fn run(ctx: &Ctx, c: AdvisoriesCmd) -> Result<()> {
    match c {
        AdvisoriesCmd::Sync(a) => sync(ctx, a),
        AdvisoriesCmd::Status => status(ctx),
    }
}

fn resource(set: &SyncedSet) -> Resource {
    Resource::named("advisories", set.archive_digest.clone(), set.url.clone())
}

fn sync(ctx: &Ctx, a: SyncArgs) -> Result<()> {
    let mut opts = SyncOptions::new(&a.url);
    opts.timeout = Duration::from_secs(a.timeout.max(1));
    opts.max_bytes = a.max_bytes;
    let s = feed::fetch(&ctx.state_dir, &opts, SystemTime::now())?;
    let set = &s.set;
    ctx.touch(resource(set));
    // Recorded before it takes effect: scans use the new set only once the event is durable.
    ctx.record(
        ctx.event("advisories.sync")
            .resource(resource(set))
            .detail("url", set.url.clone())
            .detail("archive_digest", set.archive_digest.clone())
            .detail("archive_bytes", set.archive_bytes)
            .detail("set_digest", set.set_digest.clone())
            .detail("count", set.count as u64)
            .detail("newest_modified", json!(set.newest_modified))
            .detail("fetched_at", set.fetched_at.clone())
            .detail("unchanged", s.unchanged)
            .detail(
                "previous",
                json!(s.previous.as_ref().map(|p| &p.archive_digest)),
            ),
    )?;
    feed::make_current(&ctx.state_dir, set)?;
    // Older sets go; the previous one stays for scans that started before the switch.
    let pruned = feed::prune(&ctx.state_dir, &s.previous.iter().collect::<Vec<_>>());
    if !pruned.is_empty() && !ctx.json {
        eprintln!("removed      {} older advisory set(s)", pruned.len());
    }
    if ctx.json {
        return print_json(&json!({"set": set, "unchanged": s.unchanged}));
    }
    print_set(set);
    if s.unchanged {
        println!("unchanged    the same export as stored before");
    }
    Ok(())
}

fn print_set(set: &SyncedSet) {
    println!("source       {}", set.url);
    println!(
        "archive      {} ({})",
        set.archive_digest,
        human(set.archive_bytes)
    );
    println!("fetched      {}", set.fetched_at);
    println!(
        "advisories   {} Debian advisories in {} files ({} other entries skipped)",
        set.count, set.files, set.skipped
    );
    println!(
        "newest       {}",
        set.newest_modified.as_deref().unwrap_or("-")
    );
    println!("set digest   {}", set.set_digest);
}

fn status(ctx: &Ctx) -> Result<()> {
    let Some((set, _db)) = feed::load_current(&ctx.state_dir)? else {
        if ctx.json {
            return print_json(&serde_json::Value::Null);
        }
        println!("no advisories synced (run kiln advisories sync)");
        return Ok(());
    };
    if ctx.json {
        return print_json(&set);
    }
    print_set(&set);
    Ok(())
}
