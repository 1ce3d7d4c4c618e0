//! `kiln evidence --framework F --out DIR`: the assessor's bundle (every
//! requirement of the framework mapped to the audit events, artifacts and
//! proofs that satisfy it, and what is missing), and `kiln evidence verify
//! DIR`, which re-checks a bundle without the state directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use kiln_audit::{AuditLog, Resource};
use kiln_evidence::{KeySource, Options, Status, framework, parse_date};
use kiln_tlog::Verifier;
use serde_json::json;

use super::{Ctx, print_json};

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    cmd: Option<Sub>,
    /// The framework to map the evidence to.
    #[arg(long, required = true, value_parser = ["pci-dss-4.0", "soc2", "nist-800-190", "gdpr-art32"])]
    framework: Option<String>,
    /// The bundle directory to write (a new or empty directory, or a previous bundle, which is replaced).
    #[arg(long, required = true)]
    out: Option<PathBuf>,
    /// Start of the period (UTC): YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ.
    #[arg(long)]
    since: Option<String>,
    /// End of the period (UTC, inclusive; a bare date means its end).
    #[arg(long)]
    until: Option<String>,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Verify a bundle offline: MANIFEST signature, every file's hash, the
    /// checkpoints, every inclusion and consistency proof, every artifact digest.
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// The bundle directory.
    dir: PathBuf,
    /// The log's verifier key (`kiln log key`), or a file holding it. Without
    /// it, the bundle's own log/verifier.key is used.
    #[arg(long)]
    key: Option<String>,
}

pub fn command_name(a: &Args) -> &'static str {
    match a.cmd {
        Some(Sub::Verify(_)) => "kiln evidence verify",
        None => "kiln evidence",
    }
}

pub fn failure_action(a: &Args) -> Option<&'static str> {
    match a.cmd {
        Some(Sub::Verify(_)) => Some("evidence.verify"),
        None => Some("evidence.generate"),
    }
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    match a.cmd {
        Some(Sub::Verify(v)) => verify(ctx, v),
        None => {
            let (Some(fw), Some(out)) = (a.framework, a.out) else {
                bail!("--framework and --out are required");
            };
            generate(ctx, &fw, out, a.since.as_deref(), a.until.as_deref())
        }
    }
}

fn generate(
    ctx: &Ctx,
    fw: &str,
    out: PathBuf,
    since: Option<&str>,
    until: Option<&str>,
) -> Result<()> {
    let framework = framework(fw).with_context(|| format!("unknown framework {fw:?}"))?;
    let since = since.map(|s| parse_date(s, false)).transpose()?;
    let until = until.map(|s| parse_date(s, true)).transpose()?;
    if !AuditLog::dir(&ctx.state_dir).is_dir() {
        bail!(
            "no audit log in {} (run kiln commands first, or pass --state-dir)",
            ctx.state_dir.display()
        );
    }
    let log = ctx.audit_log()?;
    let signer = AuditLog::signer(&ctx.state_dir).context("loading the audit log key")?;
    let store = if ctx.state_dir.join("store/oci-layout").exists() {
        Some(ctx.store()?)
    } else {
        None
    };
    // The bundle is complete under a temporary name when its event is
    // recorded, and renamed into place only after.
    let mut failed = None;
    let res = kiln_evidence::generate_then(
        log,
        &signer,
        store.as_ref(),
        &Options {
            framework,
            out: out.clone(),
            since,
            until,
            now: None,
        },
        |g| {
            let e = &g.evidence;
            ctx.record(
                ctx.event("evidence.generate")
                    .resource(Resource::named(
                        "evidence",
                        g.manifest_digest.clone(),
                        out.display().to_string(),
                    ))
                    .detail("framework", framework.id)
                    .detail("since", e.period.since.clone())
                    .detail("until", e.period.until.clone())
                    .detail("checkpoint_size", e.log.checkpoint.size)
                    .detail("satisfied", e.summary.satisfied)
                    .detail("partial", e.summary.partial)
                    .detail("missing", e.summary.missing)
                    .detail("events_cited", e.summary.events_cited)
                    .detail("artifacts", e.summary.artifacts),
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
        return Err(e.context(format!("{} was not written", out.display())));
    }
    let g = res.with_context(|| format!("writing the evidence bundle {}", out.display()))?;
    let e = &g.evidence;
    if ctx.json {
        return print_json(&json!({
            "out": out,
            "manifest": g.manifest_digest,
            "files": g.files,
            "framework": e.framework,
            "period": e.period,
            "log": e.log,
            "summary": e.summary,
            "requirements": e.requirements.iter().map(|r| json!({
                "id": r.id,
                "status": r.status,
                "events": r.events.len(),
                "artifacts": r.artifacts.len(),
                "missing": r.missing,
            })).collect::<Vec<_>>(),
        }));
    }
    println!("framework    {} ({})", e.framework.id, e.framework.title);
    println!(
        "period       {} — {}",
        e.period.since.as_deref().unwrap_or("the first event"),
        e.period.until.as_deref().unwrap_or("now")
    );
    println!(
        "log          {}, {} events in the period, checkpoint of {}",
        e.log.origin, e.log.events_in_period, e.log.checkpoint.size
    );
    println!();
    table(e.requirements.iter().map(|r| {
        (
            r.id.as_str(),
            r.status,
            Some(format!(
                "{} events, {} artifacts",
                r.events.len(),
                r.artifacts.len()
            )),
        )
    }));
    println!();
    println!(
        "{} satisfied, {} partial, {} missing; {} events cited, {} artifacts",
        e.summary.satisfied,
        e.summary.partial,
        e.summary.missing,
        e.summary.events_cited,
        e.summary.artifacts
    );
    println!("wrote        {} ({} files)", out.display(), g.files);
    println!("MANIFEST     {}", g.manifest_digest);
    Ok(())
}

fn table<'a>(rows: impl Iterator<Item = (&'a str, Status, Option<String>)>) {
    let mut rows = rows.peekable();
    let detail = rows.peek().is_some_and(|r| r.2.is_some());
    if detail {
        println!("{:<12} {:<10} evidence", "requirement", "status");
    } else {
        println!("{:<12} status", "requirement");
    }
    for (id, st, what) in rows {
        match what {
            Some(w) => println!("{id:<12} {:<10} {w}", st.as_str()),
            None => println!("{id:<12} {}", st.as_str()),
        }
    }
}

/// `--key`: a verifier key, or a file holding one.
fn load_key(k: &str) -> Result<Verifier> {
    let text = if Path::new(k).is_file() {
        kiln_oci::untrusted::read_small_string(Path::new(k))
            .with_context(|| format!("reading the key file {k}"))?
    } else {
        k.to_string()
    };
    Verifier::from_key_str(text.trim()).with_context(|| {
        format!("--key {k}: not a verifier key (`kiln log key` prints one) or a file holding one")
    })
}

fn verify(ctx: &Ctx, a: VerifyArgs) -> Result<()> {
    let key = a.key.as_deref().map(load_key).transpose()?;
    match kiln_evidence::verify(&a.dir, key.as_ref()) {
        Ok(r) => {
            if ctx.json {
                return print_json(&json!({
                    "ok": true,
                    "dir": a.dir,
                    "report": r,
                }));
            }
            println!(
                "verified     {}: {} bundle of {}",
                a.dir.display(),
                r.framework,
                r.generated_at
            );
            println!(
                "checked      MANIFEST signature, {} file hashes, checkpoint of {}, {} inclusion proofs{}, {} artifact digests",
                r.files,
                r.checkpoint_size,
                r.events,
                match r.consistency {
                    Some((o, n)) => format!(", consistency {o} → {n}"),
                    None => String::new(),
                },
                r.artifacts
            );
            match r.key_source {
                KeySource::Given => println!("key          {} (given)", r.verifier_key),
                KeySource::Bundle => {
                    println!("key          {}", r.verifier_key);
                    println!(
                        "warning      the key was taken from the bundle (log/verifier.key): this proves the bundle is \
consistent, not who made it. Compare the key with the log's (`kiln log key`) out of band, or pass --key."
                    );
                }
            }
            println!();
            table(
                r.requirements
                    .iter()
                    .map(|(id, st)| (id.as_str(), *st, None)),
            );
            println!();
            println!(
                "{} satisfied, {} partial, {} missing",
                r.summary.satisfied, r.summary.partial, r.summary.missing
            );
            Ok(())
        }
        Err(e) => {
            if ctx.json {
                print_json(&json!({
                    "ok": false,
                    "dir": a.dir,
                    "path": e.path,
                    "index": e.index,
                    "error": e.message,
                }))?;
            }
            bail!("evidence bundle {} does not verify: {e}", a.dir.display())
        }
    }
}
