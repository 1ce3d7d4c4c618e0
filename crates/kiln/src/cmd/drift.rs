//! Drift detection: `kiln drift check|history` for the fleet, and the
//! standalone `kiln fim init|check` for any host or VM tree.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use kiln_audit::Resource;
use kiln_fleet::api::{self, Request};
use serde_json::{Value, json};

use super::{Ctx, print_json};

#[derive(clap::Subcommand)]
pub enum DriftCmd {
    /// Compare running instances with their image now; exit 1 on drift (drifted instances
    /// are replaced, never repaired).
    Check(CheckArgs),
    /// What drifted, when, and what replaced it (from the audit log).
    History,
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// A service name or an instance id (default: every instance).
    target: Option<String>,
    /// Every instance (the default without a target).
    #[arg(long, conflicts_with = "target")]
    all: bool,
}

#[derive(clap::Subcommand)]
pub enum FimCmd {
    /// Record a tree: every path with type, mode, owner, size, sha256, link target and, for
    /// files, the number of hard links.
    Init(FimInitArgs),
    /// Compare a tree with its manifest. Exit status as AIDE's: 1 added, 2 removed,
    /// 4 changed (or'ed); 0 if equal; 18 if the check itself failed.
    Check(FimCheckArgs),
}

#[derive(clap::Args)]
pub struct FimInitArgs {
    dir: PathBuf,
    /// The manifest to write (a metadata cache is written beside it).
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
pub struct FimCheckArgs {
    dir: PathBuf,
    #[arg(long)]
    manifest: PathBuf,
    /// Re-hash only files whose inode, size, mtime or ctime changed since the last check.
    #[arg(long)]
    incremental: bool,
}

pub fn run(ctx: &Ctx, cmd: DriftCmd) -> Result<()> {
    match cmd {
        DriftCmd::Check(a) => check(ctx, a),
        DriftCmd::History => history(ctx),
    }
}

fn check(ctx: &Ctx, a: CheckArgs) -> Result<()> {
    let _ = a.all;
    let res = api::request(
        &ctx.state_dir,
        &Request::DriftCheck {
            target: a.target.clone(),
        },
    )?;
    let instances = res["instances"].as_array().cloned().unwrap_or_default();
    let drifted = res["drifted"].as_u64().unwrap_or(0);
    if ctx.json {
        print_json(&res)?;
    } else {
        for i in &instances {
            let id = i["instance"].as_str().unwrap_or("?");
            if i["drift"] != true {
                println!("{id}: matches its image");
                continue;
            }
            println!(
                "{id}: DRIFT (service {}, image {})",
                i["service"].as_str().unwrap_or("?"),
                i["image"].as_str().unwrap_or("?")
            );
            if let Some(fs) = i["filesystem"].as_object() {
                for (what, key) in [
                    ("added", "added"),
                    ("removed", "removed"),
                    ("changed", "changed"),
                ] {
                    for e in fs.get(key).and_then(Value::as_array).into_iter().flatten() {
                        println!("  {what:<8} {}", e["path"].as_str().unwrap_or("?"));
                    }
                }
            }
            for f in i["runtime"].as_array().into_iter().flatten() {
                println!(
                    "  {:<8} {}",
                    f["kind"].as_str().unwrap_or("?"),
                    f["detail"].as_str().unwrap_or("")
                );
            }
            if let Some(m) = i["already_marked"].as_str() {
                println!("  marked   {m}");
            }
        }
    }
    if drifted > 0 {
        bail!(
            "drift in {drifted} of {} instance(s); they are being replaced",
            instances.len()
        );
    }
    Ok(())
}

fn history(ctx: &Ctx) -> Result<()> {
    let log = ctx.audit_log()?;
    let mut rows = Vec::new();
    log.events(0, |le| {
        let e = &le.event;
        let drift_replace = e.action == "instance.replace"
            && e.reason.as_deref().is_some_and(|r| r.starts_with("drift"));
        if e.action.starts_with("drift.") || drift_replace {
            rows.push(le);
        }
        true
    })?;
    if ctx.json {
        return print_json(
            &rows
                .iter()
                .map(|le| json!({"index": le.index, "event": le.event}))
                .collect::<Vec<_>>(),
        );
    }
    if rows.is_empty() {
        println!("no drift checks recorded");
        return Ok(());
    }
    for le in rows {
        let e = &le.event;
        let what: Vec<String> = e
            .resources
            .iter()
            .map(|r| match &r.name {
                Some(n) => format!("{} {} ({n})", r.kind, r.id),
                None => format!("{} {}", r.kind, r.id),
            })
            .collect();
        let drift = e.details.get("drift").and_then(Value::as_bool);
        let note = match (e.action.as_str(), drift) {
            ("drift.check", Some(false)) => "no drift".to_string(),
            ("drift.check", _) => format!(
                "{} instance(s), {} drifted",
                e.details.get("instances").cloned().unwrap_or(Value::Null),
                e.details.get("drifted").cloned().unwrap_or(Value::Null)
            ),
            _ => e.reason.clone().unwrap_or_default(),
        };
        println!(
            "{:>6}  {}  {:<16} {}  {}",
            le.index,
            e.time,
            e.action,
            what.join(", "),
            note
        );
    }
    Ok(())
}

pub fn fim(ctx: &Ctx, cmd: FimCmd) -> Result<()> {
    match cmd {
        FimCmd::Init(a) => {
            // Written under a temporary name, recorded, then renamed into
            // place: a baseline never exists without its event.
            let mut name = std::ffi::OsString::from(".");
            name.push(a.out.file_name().unwrap_or_default());
            name.push(format!(".kiln-new-{}", std::process::id()));
            let tmp = a.out.with_file_name(name);
            let tmp_cache = kiln_drift::cache_path(&tmp);
            struct Remove<'a>(&'a [&'a std::path::Path]);
            impl Drop for Remove<'_> {
                fn drop(&mut self) {
                    for p in self.0 {
                        let _ = std::fs::remove_file(p);
                    }
                }
            }
            let _cleanup = Remove(&[&tmp, &tmp_cache]);
            let mut s = kiln_drift::fim_init(&a.dir, &tmp)
                .with_context(|| format!("recording {}", a.dir.display()))?;
            ctx.record(
                ctx.event("fim.init")
                    .resource(Resource::named(
                        "tree",
                        s.digest.clone(),
                        a.dir.display().to_string(),
                    ))
                    .detail("entries", s.entries)
                    .detail("schema", s.schema.clone())
                    .detail("manifest", a.out.display().to_string()),
            )?;
            std::fs::rename(&tmp, &a.out)
                .with_context(|| format!("moving {} into place", a.out.display()))?;
            let cache = kiln_drift::cache_path(&a.out);
            // The cache is an optimisation keyed to the manifest's hash.
            s.cache = match std::fs::rename(&tmp_cache, &cache) {
                Ok(()) => Some(cache),
                Err(_) => {
                    let _ = std::fs::remove_file(&cache);
                    None
                }
            };
            if ctx.json {
                return print_json(&s);
            }
            println!(
                "recorded {} entries of {} in {} ({} files, {:.2} s)",
                s.entries,
                a.dir.display(),
                a.out.display(),
                s.stats.files,
                s.stats.elapsed.as_secs_f64()
            );
            for p in &s.problems {
                eprintln!("kiln: warning: {}: {}", p.path, p.reason);
            }
            println!("{}", s.digest);
            Ok(())
        }
        FimCmd::Check(a) => {
            let (diff, stats) = match kiln_drift::fim_check(&a.dir, &a.manifest, a.incremental) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("kiln: error: checking {}: {e}", a.dir.display());
                    std::process::exit(18);
                }
            };
            let code = diff.exit_code();
            let mut ev = ctx
                .event("drift.check")
                .resource(Resource::new("tree", a.dir.display().to_string()))
                .detail(
                    "kind",
                    if a.incremental {
                        "fim incremental"
                    } else {
                        "fim full re-hash"
                    },
                )
                .detail("drift", code != 0)
                .detail("added", diff.added.len())
                .detail("removed", diff.removed.len())
                .detail("changed", diff.changed.len() + diff.unverified.len())
                .detail("files_hashed", stats.files_hashed);
            if code != 0 {
                ev = ev.detail("diff", serde_json::to_value(&diff).unwrap_or(Value::Null));
            }
            if let Err(e) = ctx.record(ev) {
                eprintln!("kiln: warning: could not record the check: {e:#}");
            }
            if ctx.json {
                print_json(&json!({"diff": diff, "stats": stats, "exit": code}))?;
            } else {
                print!("{}", diff.render());
                eprintln!(
                    "checked {} files ({} hashed, {:.1} MiB) in {:.3} s",
                    stats.files,
                    stats.files_hashed,
                    stats.bytes_hashed as f64 / 1048576.0,
                    stats.elapsed.as_secs_f64()
                );
            }
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
    }
}
