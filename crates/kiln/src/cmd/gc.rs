//! `kiln gc [--keep-untagged 7d] [--dry-run]`: remove untagged images older than the
//! window (counted from when each entered the store), the referrers and cosign
//! `.sig`/`.att` tags of what is removed, and every blob nothing kept reaches. Tagged
//! images stay, and so does every image a fleet release references: a running
//! `kiln serve` is asked over its API socket; without one, its state database is read.
//! The whole run holds the store's index lock; the plan is recorded as a `store.gc`
//! audit event before anything is deleted.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use kiln_fleet::api::{self, ApiError, Request};
use kiln_oci::gc::{GcPolicy, Removal, now_secs};
use kiln_oci::{Digest, Store, annotations};
use serde_json::json;

use super::{Ctx, human, print_json};

#[derive(clap::Args)]
pub struct Args {
    /// Keep untagged images that entered the store less than this long ago
    /// (e.g. 7d, 12h, 30m, 0s).
    #[arg(long, default_value = "7d", value_parser = parse_duration)]
    keep_untagged: u64,
    /// Show what would be removed; change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// `<n><unit>` with unit s, m, h, d or w, in seconds: the workspace's duration
/// parser in its `kiln gc` grammar, with this command's wording of the error.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    use kiln_oci::duration::{Grammar, parse_duration_in};
    parse_duration_in(s, Grammar::GC)
        .map(|d| d.as_secs())
        .map_err(|_| format!("{s:?} is not a duration like 7d, 12h, 30m or 0s"))
}

/// Image digests the fleet references, from the daemon or its state.
fn fleet_pins(ctx: &Ctx) -> Result<BTreeSet<Digest>> {
    let strings: BTreeSet<String> = match api::request(&ctx.state_dir, &Request::Images) {
        Ok(v) => serde_json::from_value(v["images"].clone())
            .context("kiln serve's list of release images")?,
        // No daemon (or a stale socket): read its state, if there is any.
        Err(ApiError::Connect { .. }) => {
            let db = ctx.state_dir.join("fleet/fleet.redb");
            if !db.exists() {
                return Ok(BTreeSet::new());
            }
            kiln_fleet::state::Db::open(&db)
                .and_then(|d| d.load())
                .context("reading the fleet state for the images releases use (is `kiln serve` starting? retry)")?
                .image_digests()
        }
        Err(e) => {
            return Err(e).context("asking kiln serve which images its releases use");
        }
    };
    strings
        .iter()
        .map(|s| {
            s.parse::<Digest>()
                .with_context(|| format!("fleet release image {s:?}"))
        })
        .collect()
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    // The fleet's pins first: asking the daemon while holding the store
    // would wait on a daemon that is itself waiting to open the store.
    let pinned = fleet_pins(ctx)?;
    let root = ctx.state_dir.join("store");
    if !root.join("oci-layout").exists() {
        anyhow::bail!(
            "no image store at {} (build an image first, or pass --state-dir)",
            root.display()
        );
    }
    // Alone with the store: a build, pull or sign that has written blobs
    // but not yet tagged them holds it open (shared) until it is done.
    let store = Store::open_exclusive(&root)?;
    let lock = store.lock_index()?;
    let policy = GcPolicy {
        keep_untagged_secs: a.keep_untagged,
        now: now_secs(),
        pinned: pinned.clone(),
    };
    let plan = store.gc_plan(&lock, &policy)?;
    let removed: Vec<_> = plan
        .removed
        .iter()
        .map(|r| {
            let (kind, subject) = match &r.why {
                Removal::Untagged => ("untagged", None),
                Removal::Referrer { subject } => ("referrer", Some(subject)),
                Removal::LegacyTag { subject } => ("tag", Some(subject)),
            };
            json!({
                "digest": r.descriptor.digest,
                "kind": kind,
                "ref": r.descriptor.annotations.get(annotations::REF_NAME),
                "subject": subject,
                "stored": r.descriptor.annotations.get(annotations::STORED),
            })
        })
        .collect();
    let summary = json!({
        "dry_run": a.dry_run,
        "keep_untagged_secs": a.keep_untagged,
        "pinned_by_fleet": pinned,
        "removed": removed,
        "blobs_removed": plan.blobs.len(),
        "bytes_freed": plan.freed(),
        "kept": plan.kept,
        "young_blobs_kept": plan.young_blobs,
    });
    if !a.dry_run {
        if plan.removed.is_empty() && plan.blobs.is_empty() && !plan.index_changed {
            // Nothing to change: nothing to record.
        } else {
            ctx.record(
                ctx.event("store.gc")
                    .resource(kiln_audit::Resource::new(
                        "store",
                        store.root().display().to_string(),
                    ))
                    .detail("keep_untagged_secs", a.keep_untagged)
                    .detail(
                        "manifests_removed",
                        plan.removed
                            .iter()
                            .map(|r| r.descriptor.digest.to_string())
                            .collect::<Vec<_>>(),
                    )
                    .detail("blobs_removed", plan.blobs.len())
                    .detail("bytes_freed", plan.freed()),
            )?;
            store
                .gc_apply(&lock, &plan)
                .context("removing what gc planned (recorded in the audit log)")?;
        }
    }
    drop(lock);
    if ctx.json {
        return print_json(&summary);
    }
    let verb = if a.dry_run { "would remove" } else { "removed" };
    for r in &plan.removed {
        let what = match (&r.why, r.descriptor.annotations.get(annotations::REF_NAME)) {
            (Removal::LegacyTag { .. }, Some(t)) => format!("tag {t}"),
            (Removal::Referrer { subject }, _) => format!("referrer of {subject}"),
            _ => "untagged image".to_string(),
        };
        println!("{verb} {}  {what}", r.descriptor.digest);
    }
    println!(
        "{verb} {} manifest(s), {} blob(s), {} freed; kept {} manifest(s){}",
        plan.removed.len(),
        plan.blobs.len(),
        human(plan.freed()),
        plan.kept,
        if pinned.is_empty() {
            String::new()
        } else {
            format!(", {} image(s) pinned by fleet releases", pinned.len())
        }
    );
    if plan.young_blobs > 0 {
        println!(
            "kept {} unreferenced blob(s) younger than --keep-untagged",
            plan.young_blobs
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The grammar itself is tested in `kiln_oci::duration`; here only what
    /// this wrapper adds: seconds, and the command's wording of the error.
    #[test]
    fn seconds_and_the_commands_wording() {
        assert_eq!(parse_duration("2w"), Ok(14 * 86_400));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(
            parse_duration("7 d"),
            Err("\"7 d\" is not a duration like 7d, 12h, 30m or 0s".to_owned())
        );
    }
}
