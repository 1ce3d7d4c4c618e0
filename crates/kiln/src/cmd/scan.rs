//! `kiln scan` (known vulnerabilities from OSV advisories — given, or the synced
//! feed — with OpenVEX statements applied, and the baseline findings) and `kiln patch` (patching is rebuilding: pin the fixed
//! package, rebuild, scan, sign and roll out — with the time each advisory
//! took to reach the fleet). Both are `kiln-patch` library calls; this module
//! maps arguments and prints.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result, bail};
use kiln_image::provenance::Builder;
use kiln_patch::{GateSettings, Note, PatchRequest, Patched, Scanned};
use kiln_scan::AdvisoryDb;
use serde_json::{Value, json};

use super::{Ctx, image_resource, print_json, resolve};

#[derive(clap::Args)]
pub struct ScanArgs {
    /// NAME:TAG, NAME@sha256:<hex> or sha256:<hex>.
    image: String,
    /// OSV advisories: files or directories (osv.dev's export format). Without it, the set
    /// `kiln advisories sync` stored.
    #[arg(long, num_args = 1..)]
    advisories: Vec<PathBuf>,
    /// OpenVEX statements: findings they say do not apply (not_affected with a
    /// justification), or whose risk is accepted (affected, a reason and kiln:expires), are
    /// shown as suppressed and do not fail the gate; an expired one is not applied.
    #[arg(long)]
    vex: Option<PathBuf>,
    #[command(flatten)]
    gate: GateArgs,
    /// SARIF 2.1.0 on stdout, for code-scanning UIs.
    #[arg(long, conflicts_with = "json")]
    sarif: bool,
    /// Attach the signed result to the image (DSSE, predicate https://kiln.dev/scan/v2).
    #[arg(long, requires = "key")]
    attest: bool,
    /// The signing key for --attest (password from KILN_KEY_PASSWORD).
    #[arg(long)]
    key: Option<PathBuf>,
}

#[derive(clap::Args, Clone)]
pub struct GateArgs {
    /// Fail on fixable vulnerabilities of this severity or higher (none: never).
    #[arg(long, default_value = "high")]
    fail_on: String,
    /// Also fail on vulnerabilities without a fix (at or above --fail-on).
    #[arg(long)]
    fail_unfixed: bool,
    /// Fail on these baseline findings (ids like KILN-BASE-006, or a severity).
    #[arg(long, value_delimiter = ',')]
    fail_findings: Vec<String>,
    /// Fail if the newest advisory that applies to the image was modified more than this many
    /// hours ago (the age of the data, not of the scan).
    #[arg(long)]
    max_advisory_age_hours: Option<u64>,
    /// Accept a scan against no advisories (none loaded, or none for the image's Debian
    /// release); recorded in the attestation. Without it such a scan is refused.
    #[arg(long)]
    allow_empty_advisories: bool,
    /// Accept a scan of an image with no installed dpkg packages (nothing to match); recorded
    /// in the attestation. Without it such a scan is refused.
    #[arg(long)]
    allow_no_packages: bool,
}

impl GateArgs {
    fn settings(&self) -> GateSettings {
        GateSettings {
            fail_on: self.fail_on.clone(),
            fail_unfixed: self.fail_unfixed,
            fail_findings: self.fail_findings.clone(),
            max_advisory_age_hours: self.max_advisory_age_hours,
            allow_empty_advisories: self.allow_empty_advisories,
            allow_no_packages: self.allow_no_packages,
        }
    }
}

/// The advisories given, or else the set `kiln advisories sync` stored (fail closed
/// without either).
fn advisories(ctx: &Ctx, given: &[PathBuf]) -> Result<AdvisoryDb> {
    if !given.is_empty() {
        return Ok(AdvisoryDb::load(given)?);
    }
    match kiln_scan::feed::load_current(&ctx.state_dir)? {
        Some((_, db)) => Ok(db),
        None => bail!("no advisories: run kiln advisories sync or pass --advisories"),
    }
}

pub fn scan(ctx: &Ctx, a: ScanArgs) -> Result<()> {
    let store = ctx.store()?;
    let img = resolve(&store, &a.image)?;
    ctx.touch(image_resource(&img));
    let db = advisories(ctx, &a.advisories)?;
    let vex = a.vex.as_deref().map(kiln_scan::vex::load).transpose()?;
    let settings = a.gate.settings();
    // The gate first: a bad --fail-on is an error before anything is read.
    settings.gate()?;
    let password = super::sign::key_password();
    let key = match (a.attest, &a.key) {
        (false, _) => None,
        (true, Some(path)) => Some(kiln_patch::Key::File {
            path,
            password: password.as_deref(),
        }),
        (true, None) => bail!("--attest needs --key"),
    };
    let Scanned {
        report,
        verdict,
        attested,
    } = kiln_patch::scan_with(
        ctx,
        &store,
        &img,
        &db,
        vex.as_ref(),
        &settings,
        key,
        SystemTime::now(),
    )?;
    if a.sarif {
        print_json(&report.sarif())?;
    } else if ctx.json {
        let mut v = serde_json::to_value(&report)?;
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "gate".into(),
                json!({"pass": verdict.pass, "reasons": verdict.reasons}),
            );
            if let Some((at, _)) = &attested {
                o.insert(
                    "attestation".into(),
                    json!({"referrer": at.referrer.digest, "bundle": at.bundle.digest, "tag": at.att_tag}),
                );
            }
        }
        print_json(&v)?;
    } else {
        print!("{}", report.table());
        if let Some((at, key)) = &attested {
            println!(
                "attested     {} (key {key}, also bundle {} and {})",
                at.referrer.digest, at.bundle.digest, at.att_tag
            );
        }
        println!(
            "gate         {}",
            if verdict.pass {
                "PASS".to_string()
            } else {
                format!("FAIL: {}", verdict.reasons.join("; "))
            }
        );
    }
    if !verdict.pass {
        bail!(
            "{} fails the scan gate: {}",
            img.reference,
            verdict.reasons.join("; ")
        );
    }
    Ok(())
}

// ---- kiln patch -------------------------------------------------------------

#[derive(clap::Args)]
pub struct PatchArgs {
    #[command(subcommand)]
    report: Option<PatchCmd>,
    /// The image spec (kiln.toml); kiln.lock is written beside it.
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// OSV advisories: files or directories. Without it, the set `kiln advisories sync` stored.
    #[arg(long, num_args = 1..)]
    advisories: Vec<PathBuf>,
    /// A directory of .deb files with fixed versions of the spec's [[debs]] (needed only
    /// when one of them is affected; repository packages are re-locked instead).
    #[arg(long)]
    debs: Option<PathBuf>,
    /// Signing key: provenance, signature and scan attestation of the fixed image.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Roll the fixed image out: this deploy.toml's services on the image are updated and applied.
    #[arg(long)]
    deploy: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
pub enum PatchCmd {
    /// Advisory → fixed image → fleet, with the time each took.
    Report,
}

pub fn patch_command_name(a: &PatchArgs) -> &'static str {
    if a.report.is_some() {
        "kiln patch report"
    } else {
        "kiln patch"
    }
}

pub fn patch_failure_action(a: &PatchArgs) -> Option<&'static str> {
    if a.report.is_some() {
        None
    } else {
        Some("patch.failed")
    }
}

pub fn patch(ctx: &Ctx, a: PatchArgs) -> Result<()> {
    if let Some(PatchCmd::Report) = a.report {
        return report(ctx);
    }
    let t0 = Instant::now();
    let ingested = SystemTime::now();
    let file = a.file.clone().context("kiln patch needs -f kiln.toml")?;
    let key = a
        .key
        .clone()
        .context("kiln patch needs --key (the fixed image is signed)")?;
    let db = advisories(ctx, &a.advisories)?;
    let password = super::sign::key_password();
    let builder = Builder::current()?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let build = kiln_image::BuildOptions {
        state_dir: ctx.state_dir.clone(),
        compression: kiln_image::Compression::Gzip,
        tag: None,
        out: None,
        threads,
        source_date_epoch: std::env::var("SOURCE_DATE_EPOCH").ok(),
        progress: Arc::new(kiln_image::build::Quiet),
        offline: false,
    };
    let req = PatchRequest {
        spec_path: &file,
        db: &db,
        ingested,
        debs: a.debs.as_deref(),
        key_path: &key,
        key_password: password.as_deref(),
        builder: &builder,
        build: &build,
        deploy: a.deploy.as_deref(),
    };
    let outcome = kiln_patch::patch(ctx, &req, &mut |n| match n {
        Note::Warning(w) => eprintln!("kiln: warning: {w}"),
        Note::Pinned(p) => eprintln!(
            "pin          {} {} -> {} ({})",
            p.package,
            p.from,
            p.to,
            p.advisories.join(", ")
        ),
    })?;
    let (image, digest, pins, fixed_image_ms, fleet_ms) = match outcome {
        Patched::Nothing { spec } => {
            if ctx.json {
                return print_json(
                    &json!({"patched": [], "message": "no advisory affects the spec's packages"}),
                );
            }
            println!(
                "nothing to patch: no advisory with an available fix affects {spec}'s packages"
            );
            return Ok(());
        }
        Patched::Fixed {
            image,
            digest,
            pins,
            fixed_image_ms,
            fleet_ms,
        } => (image, digest, pins, fixed_image_ms, fleet_ms),
    };
    let total = t0.elapsed();
    if ctx.json {
        return print_json(&json!({
            "image": image,
            "pins": pins.iter().map(|p| json!({"package": p.package, "from": p.from, "to": p.to, "advisories": p.advisories})).collect::<Vec<_>>(),
            "fixed_image_ms": fixed_image_ms,
            "fleet_ms": fleet_ms,
            "total_ms": total.as_millis() as u64,
        }));
    }
    println!(
        "fixed image  {image} (built, scanned, signed in {:.1} s)",
        fixed_image_ms as f64 / 1000.0
    );
    if let Some(ms) = fleet_ms {
        println!(
            "fleet        running it {:.1} s after the advisories were read",
            ms as f64 / 1000.0
        );
    }
    println!("{digest}");
    Ok(())
}

fn report(ctx: &Ctx) -> Result<()> {
    let rows = serde_json::to_value(kiln_patch::history(ctx.audit_log()?)?)?;
    let rows = rows.as_array().cloned().unwrap_or_default();
    if ctx.json {
        return print_json(&rows);
    }
    if rows.is_empty() {
        println!("no patches recorded");
        return Ok(());
    }
    println!(
        "{:<28} {:<9} {:<24} {:>10} {:>10}  fixed image",
        "ADVISORY", "SEVERITY", "PACKAGE", "IMAGE", "FLEET"
    );
    for r in rows {
        let secs = |v: &Value| {
            v.as_u64()
                .map_or("-".to_string(), |ms| format!("{:.1} s", ms as f64 / 1000.0))
        };
        println!(
            "{:<28} {:<9} {:<24} {:>10} {:>10}  {}",
            r["advisory"].as_str().unwrap_or("?"),
            r["severity"].as_str().unwrap_or("?"),
            format!(
                "{} {}→{}",
                r["package"].as_str().unwrap_or("?"),
                r["from"].as_str().unwrap_or("?"),
                r["to"].as_str().unwrap_or("?")
            ),
            secs(&r["fixed_image_ms"]),
            secs(&r["fleet_ms"]),
            r["fixed_image"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}
