//! `kiln log`: the tamper-evident audit log (RFC 6962 Merkle tree, C2SP
//! signed-note checkpoints, tlog-tiles export).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use kiln_audit::{AuditLog, LoggedEvent, Outcome};
use kiln_tlog::{Checkpoint, Verifier};
use serde_json::json;

use super::{Ctx, print_json};

#[derive(clap::Subcommand)]
pub enum LogCmd {
    /// Print events, oldest first.
    Show(ShowArgs),
    /// Recompute the whole tree and check every record and checkpoint.
    Verify(VerifyArgs),
    /// Print the latest signed checkpoint (C2SP signed note).
    Checkpoint,
    /// Inclusion proof (RFC 9162) of one event, as JSON.
    Prove(ProveArgs),
    /// Consistency proof (RFC 9162) between two tree sizes, as JSON.
    Consistency(ConsistencyArgs),
    /// Print the log's checkpoint verifier key (`<name>+<id>+<key>`).
    Key,
    /// Write the log in the C2SP tlog-tiles layout, for any static web server.
    Export(ExportArgs),
}

#[derive(clap::Args)]
pub struct ShowArgs {
    /// Only events at or after this UTC date or time (2026-11-01, 2026-11-01T12:00:00Z).
    #[arg(long)]
    since: Option<String>,
    /// Only events before this UTC time, or up to the end of this UTC date.
    #[arg(long)]
    until: Option<String>,
    /// Only actions starting with this (e.g. `image.` or `image.sign`).
    #[arg(long)]
    action: Option<String>,
    /// Only failures.
    #[arg(long)]
    failures: bool,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// A checkpoint saved earlier: prove the log only grew since.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// The verifier key you trust (string or file); it must be the log's.
    #[arg(long)]
    key: Option<String>,
}

#[derive(clap::Args)]
pub struct ProveArgs {
    /// Event index.
    index: u64,
    /// Tree size to prove against (default: the latest checkpoint's).
    #[arg(long)]
    size: Option<u64>,
}

#[derive(clap::Args)]
pub struct ConsistencyArgs {
    old: u64,
    new: u64,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// Output directory (created, or a previous export that is replaced).
    dir: PathBuf,
}

impl LogCmd {
    pub fn command_name(&self) -> &'static str {
        match self {
            LogCmd::Show(_) => "kiln log show",
            LogCmd::Verify(_) => "kiln log verify",
            LogCmd::Checkpoint => "kiln log checkpoint",
            LogCmd::Prove(_) => "kiln log prove",
            LogCmd::Consistency(_) => "kiln log consistency",
            LogCmd::Key => "kiln log key",
            LogCmd::Export(_) => "kiln log export",
        }
    }

    /// A failed `log verify` is a failure of a critical control (PCI DSS
    /// 10.7.2) and is recorded — if the log still accepts appends.
    pub fn failure_action(&self) -> Option<&'static str> {
        match self {
            LogCmd::Verify(_) => Some("log.verify"),
            LogCmd::Export(_) => Some("log.export"),
            _ => None,
        }
    }
}

pub fn run(ctx: &Ctx, cmd: LogCmd) -> Result<()> {
    let log = ctx.audit_log()?;
    match cmd {
        LogCmd::Show(a) => show(ctx, log, a),
        LogCmd::Verify(a) => verify(ctx, log, a),
        LogCmd::Checkpoint => {
            let (cp, text) = latest(log)?;
            if ctx.json {
                return print_json(&json!({
                    "origin": cp.origin,
                    "size": cp.size,
                    "root_hash": hex::encode(cp.root),
                    "signed_note": text,
                }));
            }
            print!("{text}");
            Ok(())
        }
        LogCmd::Prove(a) => prove(log, a),
        LogCmd::Consistency(a) => {
            let l = log.log();
            let proof = l
                .consistency_proof(a.old, a.new)
                .with_context(|| format!("consistency proof {} → {}", a.old, a.new))?;
            print_json(&json!({
                "origin": l.verifier().name(),
                "old_size": a.old,
                "new_size": a.new,
                "old_root_hash": hex::encode(l.root_at(a.old)?),
                "new_root_hash": hex::encode(l.root_at(a.new)?),
                "hashes": proof.iter().map(hex::encode).collect::<Vec<_>>(),
                "checkpoint": checkpoint_for(log, a.new)?,
            }))
        }
        LogCmd::Key => {
            let key = log.log().verifier().to_key_str();
            if ctx.json {
                return print_json(&json!({ "verifier_key": key }));
            }
            println!("{key}");
            Ok(())
        }
        LogCmd::Export(a) => export(ctx, log, a),
    }
}

fn latest(log: &AuditLog) -> Result<(Checkpoint, String)> {
    log.log()
        .checkpoint()
        .context("the audit log has no checkpoint yet")
}

/// The signed checkpoint of exactly `size`, if one was issued.
fn checkpoint_for(log: &AuditLog, size: u64) -> Result<Option<String>> {
    let l = log.log();
    if let Some((cp, text)) = l.checkpoint()
        && cp.size == size
    {
        return Ok(Some(text));
    }
    for text in l.checkpoints()?.iter().rev() {
        if let Ok((cp, _)) = Checkpoint::open(text, std::slice::from_ref(l.verifier()))
            && cp.size == size
        {
            return Ok(Some(String::from_utf8_lossy(text).into_owned()));
        }
    }
    Ok(None)
}

fn show(ctx: &Ctx, log: &AuditLog, a: ShowArgs) -> Result<()> {
    let bound = |s: &Option<String>, flag: &str| -> Result<Option<u64>> {
        s.as_deref()
            .map(|v| {
                kiln_oci::time::parse_utc(v).with_context(|| {
                    format!("--{flag} {v:?}: expected a UTC date like 2026-11-01 or 2026-11-01T12:00:00Z")
                })
            })
            .transpose()
    };
    let since = bound(&a.since, "since")?;
    // A bare date as --until includes that whole day (as in `kiln evidence`).
    let until = bound(&a.until, "until")?.map(|u| {
        if a.until.as_deref().is_some_and(|s| s.len() == 10) {
            u + 86_400
        } else {
            u
        }
    });
    let mut rows: Vec<LoggedEvent> = Vec::new();
    log.events(0, |le| {
        let t = le.event.unix_time();
        let keep = since.is_none_or(|s| t.is_some_and(|t| t >= s))
            && until.is_none_or(|u| t.is_some_and(|t| t < u))
            && a.action
                .as_deref()
                .is_none_or(|p| le.event.action.starts_with(p))
            && (!a.failures || le.event.outcome == Outcome::Failure);
        if keep {
            rows.push(le);
        }
        true
    })?;
    if ctx.json {
        let v: Vec<_> = rows
            .iter()
            .map(|le| json!({ "index": le.index, "event": le.event }))
            .collect();
        return print_json(&v);
    }
    if rows.is_empty() {
        println!("no events");
        return Ok(());
    }
    println!(
        "{:>6}  {:<24}  {:<15}  {:<7}  {:<10}  RESOURCES / REASON",
        "INDEX", "TIME (UTC)", "ACTION", "OUTCOME", "USER"
    );
    for le in &rows {
        let e = &le.event;
        let res: Vec<String> = e
            .resources
            .iter()
            .map(|r| match &r.name {
                Some(n) => format!("{n} ({})", short(&r.id)),
                None => format!("{} {}", r.kind, short(&r.id)),
            })
            .collect();
        let mut what = res.join(", ");
        if let Some(r) = &e.reason {
            what = if what.is_empty() {
                r.clone()
            } else {
                format!("{what} — {r}")
            };
        }
        let user = match &e.actor.sudo_user {
            Some(s) => format!("{}({s})", e.actor.user),
            None => e.actor.user.clone(),
        };
        let outcome = match e.outcome {
            Outcome::Success => "ok",
            Outcome::Failure => "FAILED",
        };
        println!(
            "{:>6}  {:<24}  {:<15}  {:<7}  {:<10}  {}",
            le.index, e.time, e.action, outcome, user, what
        );
    }
    Ok(())
}

fn short(id: &str) -> String {
    match id.strip_prefix("sha256:") {
        Some(h) if h.len() > 12 => format!("sha256:{}", &h[..12]),
        _ if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) => id[..12].to_string(),
        _ => id.to_string(),
    }
}

fn parse_key(s: &str) -> Result<Verifier> {
    let text = match kiln_oci::untrusted::read_small_string(std::path::Path::new(s)) {
        Ok(t) => t,
        Err(_) => s.to_string(),
    };
    Verifier::from_key_str(text.trim()).with_context(|| format!("--key {s:?}: not a verifier key"))
}

fn verify(ctx: &Ctx, log: &AuditLog, a: VerifyArgs) -> Result<()> {
    let l = log.log();
    let trusted = a.key.as_deref().map(parse_key).transpose()?;
    let saved = match &a.checkpoint {
        Some(p) => Some(
            kiln_oci::untrusted::read_small(p)
                .with_context(|| format!("reading {}", p.display()))?,
        ),
        None => None,
    };
    let report = match check(log, trusted.as_ref(), saved.as_deref()) {
        Ok(r) => r,
        Err(e) => {
            // A failed verification is an event (while the log still takes
            // appends), then the log refuses every change until a passing
            // verification: the marker outlives this process.
            let why = format!("{e:#}");
            if let Err(le) = ctx.record_failure("log.verify", &why) {
                eprintln!("kiln: warning: could not record the failure in the audit log: {le:#}");
            }
            l.refuse_changes(&why)
                .context("leaving the refuse-changes marker")?;
            return Err(e.context(format!(
                "kiln refuses changes until `kiln log verify` passes ({} left in place)",
                l.dir().join(kiln_tlog::REFUSE_CHANGES).display()
            )));
        }
    };
    let cleared = l
        .clear_refusal()
        .context("clearing the refuse-changes marker")?;
    if ctx.json {
        return print_json(&json!({
            "ok": true,
            "size": report.size,
            "root_hash": hex::encode(report.root),
            "checkpoints": report.checkpoints,
            "saved_checkpoint_size": report.saved_size,
            "cleared_refuse_changes": cleared,
        }));
    }
    println!(
        "ok: {} events, {} checkpoints verified, root {}",
        report.size,
        report.checkpoints,
        hex::encode(report.root)
    );
    if let Some(s) = report.saved_size {
        println!(
            "ok: the log only grew since the saved checkpoint (size {s} → {})",
            report.size
        );
    }
    if cleared {
        println!("ok: cleared the refuse-changes marker; kiln accepts changes again");
    }
    Ok(())
}

/// The full verification: the trusted key, every record, tree node and
/// checkpoint, the saved checkpoint, and every entry as a kiln event.
fn check(
    log: &AuditLog,
    trusted: Option<&Verifier>,
    saved: Option<&[u8]>,
) -> Result<kiln_tlog::VerifyReport> {
    let l = log.log();
    if let Some(trusted) = trusted
        && trusted.to_key_str() != l.verifier().to_key_str()
    {
        bail!(
            "the log's checkpoint key {} is not the trusted key {}",
            l.verifier().to_key_str(),
            trusted.to_key_str()
        );
    }
    let report = l.verify(saved).map_err(|e| match e.index {
        Some(i) => anyhow::anyhow!("audit log verification failed at event {i}: {e}"),
        None => anyhow::anyhow!("audit log verification failed: {e}"),
    })?;
    // Every entry must also parse as a kiln event (an error names it).
    log.events(0, |_| true)?;
    // What the log refused on open (e.g. a tampered newest batch) fails
    // the verification too.
    if let Some(why) = l.contradiction() {
        bail!("audit log verification failed: {why}");
    }
    Ok(report)
}

fn prove(log: &AuditLog, a: ProveArgs) -> Result<()> {
    let l = log.log();
    let size = match a.size {
        Some(s) => s,
        None => latest(log)?.0.size,
    };
    let (le, leaf) = log.event(a.index)?;
    let proof = l
        .inclusion_proof(a.index, size)
        .with_context(|| format!("inclusion proof of event {} in tree size {size}", a.index))?;
    print_json(&json!({
        "origin": l.verifier().name(),
        "index": a.index,
        "tree_size": size,
        "leaf_hash": hex::encode(leaf),
        "hashes": proof.iter().map(hex::encode).collect::<Vec<_>>(),
        "root_hash": hex::encode(l.root_at(size)?),
        "checkpoint": checkpoint_for(log, size)?,
        "entry": String::from_utf8_lossy(&le.raw),
    }))
}

fn export(ctx: &Ctx, log: &AuditLog, a: ExportArgs) -> Result<()> {
    // Written under a temporary name, re-read as a mirror or witness would,
    // recorded, and only then renamed into place.
    let mut failed = None;
    let mut root = None;
    let res = kiln_tlog::tiles::export_then(log.log(), &a.dir, |tmp, r| {
        let mut step = || -> Result<()> {
            let cp = kiln_tlog::tiles::verify_dir(tmp, log.log().verifier())
                .with_context(|| format!("re-verifying the export of {}", a.dir.display()))?;
            // An external copy of the log (PCI DSS 10.3.3) is itself an
            // event; it lands after the exported checkpoint, in the next one.
            ctx.record(
                ctx.event("log.export")
                    .resource(kiln_audit::Resource::named(
                        "log",
                        hex::encode(cp.root),
                        a.dir.display().to_string(),
                    ))
                    .detail("tree_size", r.tree_size)
                    .detail("format", "c2sp-tlog-tiles"),
            )?;
            root = Some(cp.root);
            Ok(())
        };
        step().map_err(|e| {
            let msg = format!("{e:#}");
            failed = Some(e);
            msg
        })
    });
    if let Some(e) = failed {
        return Err(e.context(format!("{} was not exported", a.dir.display())));
    }
    let r = res.with_context(|| format!("exporting the audit log to {}", a.dir.display()))?;
    let root = root.context("the export was not verified")?;
    if ctx.json {
        return print_json(&json!({
            "dir": a.dir,
            "tree_size": r.tree_size,
            "root_hash": hex::encode(root),
            "hash_tiles": r.hash_tiles,
            "entry_bundles": r.entry_bundles,
            "bytes": r.bytes,
            "verifier_key": log.log().verifier().to_key_str(),
        }));
    }
    println!(
        "exported     {} events to {} (C2SP tlog-tiles: {} hash tiles, {} entry bundles, {})",
        r.tree_size,
        a.dir.display(),
        r.hash_tiles,
        r.entry_bundles,
        super::human(r.bytes)
    );
    println!("checkpoint   {}/checkpoint", a.dir.display());
    println!("verifier key {}", log.log().verifier().to_key_str());
    Ok(())
}
