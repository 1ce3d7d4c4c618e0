//! `kiln scan` (known vulnerabilities from OSV advisories, and the baseline
//! findings) and `kiln patch` (patching is rebuilding: pin the fixed
//! package, rebuild, scan, sign and roll out — with the time each advisory
//! took to reach the fleet).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result, bail};
use kiln_audit::Resource;
use kiln_scan::{AdvisoryDb, DebVersion, Gate, ScanReport, Severity, VulnState};
use kiln_trust::attest::SCAN_PREDICATE_TYPE;
use kiln_trust::{Statement, Subject};
use serde_json::{Value, json};

use super::approve::attach;
use super::sign::{image_name, load_key};
use super::{Ctx, image_resource, print_json, resolve};

#[derive(clap::Args)]
pub struct ScanArgs {
    /// NAME:TAG, NAME@sha256:<hex> or sha256:<hex>.
    image: String,
    /// OSV advisories: files or directories (osv.dev's export format).
    #[arg(long, required = true, num_args = 1..)]
    advisories: Vec<PathBuf>,
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
    fn gate(&self) -> Result<Gate> {
        let fail_on = match self.fail_on.as_str() {
            "none" => None,
            s => Some(Severity::parse(s).with_context(|| {
                format!("--fail-on {s:?}: expected none, low, medium, high or critical")
            })?),
        };
        Ok(Gate {
            fail_on,
            fail_unfixed: self.fail_unfixed,
            fail_findings: self.fail_findings.clone(),
            max_advisory_age_hours: self.max_advisory_age_hours,
            allow_empty_advisories: self.allow_empty_advisories,
            allow_no_packages: self.allow_no_packages,
        })
    }
}

/// Scan one image; the report and the gate's verdict.
fn scan_image(
    store: &kiln_oci::Store,
    img: &super::Resolved,
    db: &AdvisoryDb,
    gate: &Gate,
) -> Result<(ScanReport, kiln_scan::Verdict)> {
    let mut inv = kiln_scan::inventory_from_store(store, &img.descriptor.digest)
        .with_context(|| format!("reading the packages of {}", img.reference))?;
    inv.image = img.reference.clone();
    let report = kiln_scan::scan(&inv, db);
    let verdict = gate.evaluate(&report);
    Ok((report, verdict))
}

fn record_scan(
    ctx: &Ctx,
    img: &super::Resolved,
    report: &ScanReport,
    verdict: &kiln_scan::Verdict,
) -> Result<()> {
    let mut ev = ctx
        .event("scan")
        .resource(image_resource(img))
        .detail("advisories", serde_json::to_value(&report.advisories)?)
        .detail("counts", serde_json::to_value(&report.counts)?)
        .detail(
            "vulnerabilities",
            report
                .vulnerabilities
                .iter()
                .map(|v| json!({"id": v.id, "package": v.package, "installed": v.installed, "fixed": v.fixed, "severity": v.severity}))
                .collect::<Vec<_>>(),
        )
        .detail(
            "findings",
            report.findings.iter().map(|f| f.id.clone()).collect::<Vec<_>>(),
        )
        .detail("gate_pass", verdict.pass);
    if !verdict.pass {
        ev = ev.failed(&format!("gate failed: {}", verdict.reasons.join("; ")));
    }
    ctx.record(ev)?;
    Ok(())
}

pub fn scan(ctx: &Ctx, a: ScanArgs) -> Result<()> {
    let store = ctx.store()?;
    let img = resolve(&store, &a.image)?;
    ctx.touch(image_resource(&img));
    let db = AdvisoryDb::load(&a.advisories)?;
    let gate = a.gate.gate()?;
    let (report, verdict) = scan_image(&store, &img, &db, &gate)?;
    // A scan that saw nothing is no result at all: no report, no attestation.
    let refusals = gate.refusals(&report);
    if !refusals.is_empty() {
        bail!(
            "refusing to scan {}: {}",
            img.reference,
            refusals.join("; ")
        );
    }
    let mut attested = None;
    let mut pending = super::Pending::default();
    if a.attest {
        let key_path = a.key.as_ref().context("--attest needs --key")?;
        let key = load_key(key_path)?;
        let name = image_name(&store, &img)?;
        let st = Statement::new(
            vec![Subject::sha256(&name, img.descriptor.digest.hex())],
            SCAN_PREDICATE_TYPE,
            json!({
                "scanner": {"name": "kiln", "version": env!("CARGO_PKG_VERSION")},
                "advisories": report.advisories,
                "gate": {
                    "fail_on": a.gate.fail_on,
                    "fail_unfixed": a.gate.fail_unfixed,
                    "fail_findings": a.gate.fail_findings,
                    "max_advisory_age_hours": a.gate.max_advisory_age_hours,
                    "allow_empty_advisories": a.gate.allow_empty_advisories,
                    "allow_no_packages": a.gate.allow_no_packages,
                },
                "result": {
                    "pass": verdict.pass,
                    "reasons": verdict.reasons,
                    "counts": report.counts,
                },
                "vulnerabilities": report.vulnerabilities,
                "findings": report.findings,
                "scanned_at": kiln_oci::time::rfc3339_millis(SystemTime::now()),
            }),
        );
        let env = st.sign(&[&key]);
        let (at, staged) = attach(
            &store,
            &name,
            &img.descriptor,
            &env,
            &key.public_key(),
            SCAN_PREDICATE_TYPE,
        )?;
        pending = staged;
        attested = Some((at, key.public_key().key_id()));
    }
    // The attestation appears in the index only after the event is durable.
    record_scan(ctx, &img, &report, &verdict)?;
    pending.apply(&store)?;
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
    /// OSV advisories: files or directories.
    #[arg(long, num_args = 1..)]
    advisories: Vec<PathBuf>,
    /// A directory of .deb files with fixed versions.
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

/// Run this kiln binary as a step of the patch, with the same state dir.
fn step(ctx: &Ctx, args: &[&str]) -> Result<String> {
    let exe = std::env::current_exe().context("locating the kiln binary")?;
    let mut c = Command::new(exe);
    c.env("KILN_STATE_DIR", &ctx.state_dir).args(args);
    if let Some(r) = &ctx.reason {
        c.env("KILN_REASON", r);
    }
    let out = c
        .output()
        .with_context(|| format!("running kiln {}", args.join(" ")))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "kiln {} failed: {}",
            args.first().copied().unwrap_or(""),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(stdout)
}

struct Pin {
    package: String,
    from: String,
    to: String,
    advisories: Vec<String>,
    severity: Severity,
}

pub fn patch(ctx: &Ctx, a: PatchArgs) -> Result<()> {
    if let Some(PatchCmd::Report) = a.report {
        return report(ctx);
    }
    let t0 = Instant::now();
    let ingested = SystemTime::now();
    let file = a.file.clone().context("kiln patch needs -f kiln.toml")?;
    let debs_dir = a.debs.clone().context("kiln patch needs --debs DIR")?;
    let key = a
        .key
        .clone()
        .context("kiln patch needs --key (the fixed image is signed)")?;
    if a.advisories.is_empty() {
        bail!("kiln patch needs --advisories");
    }
    let db = AdvisoryDb::load(&a.advisories)?;
    // No advisories would read as "nothing to patch".
    if db.is_empty() {
        bail!(
            "no Debian advisories loaded from {} ({} advisory file(s) read, {} other file(s) \
             skipped, {} withdrawn, {} without a Debian entry): nothing to patch against",
            db.source,
            db.files,
            db.skipped_files,
            db.withdrawn,
            db.non_debian
        );
    }
    let spec = kiln_image::Spec::load(&file)?;
    // The spec's packages against the advisories.
    let mut pool: Vec<(PathBuf, kiln_deb::Deb)> = Vec::new();
    for e in
        std::fs::read_dir(&debs_dir).with_context(|| format!("reading {}", debs_dir.display()))?
    {
        let p = e?.path();
        if p.extension().and_then(|x| x.to_str()) != Some("deb") {
            continue;
        }
        // Streamed: file contents are not kept (only control data is needed).
        match kiln_deb::Deb::read_path(&p) {
            Ok(d) => pool.push((p, d)),
            Err(e) => eprintln!("kiln: warning: {}: not a usable .deb: {e}", p.display()),
        }
    }
    let mut lock = kiln_image::lock::Lock::load(&spec.dir)?
        .map(|(l, _)| l)
        .unwrap_or_default();
    let mut pins: Vec<Pin> = Vec::new();
    // Fixed .debs to copy beside the spec, written after `patch.start` is
    // recorded.
    let mut copies: Vec<(PathBuf, tempfile::NamedTempFile)> = Vec::new();
    for entry in &spec.debs {
        let deb = kiln_deb::Deb::read_path(&entry.path)
            .with_context(|| format!("{}", entry.path.display()))?;
        let status = kiln_deb::render_status(&[deb.status_stanza()]);
        let pkgs = kiln_scan::inventory_from_status(status.as_bytes())
            .with_context(|| format!("{}: control", entry.path.display()))?;
        let Some(c) = pkgs.first().cloned() else {
            continue;
        };
        let inv = kiln_scan::Inventory::from_packages(&spec.name, pkgs);
        let found = db.match_inventory(&inv);
        let vulns: Vec<_> = found
            .vulnerabilities
            .iter()
            .filter(|v| v.state == VulnState::Vulnerable && v.fixed.is_some())
            .collect();
        if vulns.is_empty() {
            continue;
        }
        // The highest fixed version any advisory asks for.
        let need = vulns
            .iter()
            .filter_map(|v| v.fixed.as_deref().and_then(|f| DebVersion::parse(f).ok()))
            .max()
            .context("unparseable fixed version")?;
        let candidate = pool
            .iter()
            .filter(|(_, d)| d.control.get("Package") == Some(c.name.as_str()))
            .filter_map(|(p, d)| Some((p, DebVersion::parse(d.control.get("Version")?).ok()?)))
            .filter(|(_, v)| *v >= need)
            .max_by(|x, y| x.1.cmp(&y.1));
        let ids: Vec<String> = vulns.iter().map(|v| v.id.clone()).collect();
        let Some((src, version)) = candidate else {
            eprintln!(
                "kiln: warning: {} {} is affected by {} but --debs has no version >= {}",
                c.name,
                c.version,
                ids.join(", "),
                need.as_str()
            );
            continue;
        };
        // Copy the fixed .deb beside the spec so the pin is self-contained.
        let fname = src.file_name().context("deb file name")?.to_owned();
        let rel = Path::new("debs").join(&fname);
        let dst = spec.dir.join(&rel);
        let (staged, sha) = stage_deb_copy(src, &spec.dir)?;
        copies.push((dst, staged));
        let replaces = lock
            .deb
            .iter()
            .find(|d| d.package == c.name)
            .map(|d| d.replaces.clone())
            .unwrap_or_else(|| {
                entry
                    .path
                    .strip_prefix(&spec.dir)
                    .unwrap_or(&entry.path)
                    .display()
                    .to_string()
            });
        lock.deb.retain(|d| d.package != c.name);
        lock.deb.push(kiln_image::lock::LockedDeb {
            package: c.name.clone(),
            version: version.as_str().to_string(),
            replaces,
            path: rel.display().to_string(),
            sha256: sha.clone(),
            advisories: ids.clone(),
        });
        let severity = vulns
            .iter()
            .map(|v| v.severity)
            .max()
            .unwrap_or(Severity::Unknown);
        pins.push(Pin {
            package: c.name.clone(),
            from: c.version.clone(),
            to: version.as_str().to_string(),
            advisories: ids,
            severity,
        });
    }
    if pins.is_empty() {
        if ctx.json {
            return print_json(
                &json!({"patched": [], "message": "no advisory affects the spec's packages"}),
            );
        }
        println!(
            "nothing to patch: no advisory with an available fix affects {}'s packages",
            spec.name
        );
        return Ok(());
    }
    let all_ids: Vec<String> = pins.iter().flat_map(|p| p.advisories.clone()).collect();
    ctx.record(
        ctx.event("patch.start")
            .resource(Resource::new("spec", file.display().to_string()))
            .detail("advisories", all_ids.clone())
            .detail(
                "pins",
                pins.iter()
                    .map(|p| json!({"package": p.package, "from": p.from, "to": p.to, "advisories": p.advisories}))
                    .collect::<Vec<_>>(),
            ),
    )?;
    for (dst, staged) in copies {
        let dir = dst.parent().unwrap_or(&spec.dir);
        std::fs::create_dir_all(dir)?;
        staged
            .persist(&dst)
            .with_context(|| format!("writing {}", dst.display()))?;
        std::fs::File::open(dir)?.sync_all()?;
    }
    kiln_oci::layout::write_atomic(
        &spec.dir.join(kiln_image::lock::LOCK_FILE),
        lock.render().as_bytes(),
    )?;
    for p in &pins {
        eprintln!(
            "pin          {} {} -> {} ({})",
            p.package,
            p.from,
            p.to,
            p.advisories.join(", ")
        );
    }
    // Rebuild (with provenance), scan, sign.
    let file_s = file.display().to_string();
    let key_s = key.display().to_string();
    let built = step(ctx, &["build", "-f", &file_s, "--sign-key", &key_s])?;
    let digest = built.lines().last().unwrap_or("").trim().to_string();
    let image = format!("{}@{digest}", spec.name);
    let mut scan_args = vec![
        "scan",
        image.as_str(),
        "--attest",
        "--key",
        key_s.as_str(),
        "--advisories",
    ];
    let adv: Vec<String> = a
        .advisories
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    scan_args.extend(adv.iter().map(String::as_str));
    step(ctx, &scan_args)?;
    step(ctx, &["sign", &image, "--key", &key_s])?;
    let built_at = SystemTime::now();
    // Roll out.
    let mut deployed = None;
    if let Some(d) = &a.deploy {
        let text = kiln_oci::untrusted::read_small_string(d)
            .with_context(|| format!("reading {}", d.display()))?;
        let mut changed = false;
        let updated: Vec<String> = text
            .lines()
            .map(|l| {
                let t = l.trim_start();
                if t.starts_with("image")
                    && let Some((_, v)) = t.split_once('=')
                    && v.trim()
                        .trim_matches('"')
                        .starts_with(&format!("{}@sha256:", spec.name))
                {
                    changed = true;
                    return format!("image = \"{image}\"");
                }
                l.to_string()
            })
            .collect();
        if !changed {
            bail!(
                "{}: no service runs {}@sha256:…; nothing to roll out",
                d.display(),
                spec.name
            );
        }
        kiln_oci::layout::write_atomic(d, (updated.join("\n") + "\n").as_bytes())?;
        let reason = format!("patch {}", all_ids.join(", "));
        step(
            ctx,
            &["apply", "-f", &d.display().to_string(), "--reason", &reason],
        )?;
        deployed = Some(SystemTime::now());
    }
    let ms = |t: SystemTime| {
        t.duration_since(ingested)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    };
    for p in &pins {
        for id in &p.advisories {
            ctx.record(
                ctx.event("patch.complete")
                    .resource(Resource::new("advisory", id.clone()))
                    .resource(Resource::named("image", &digest, image.clone()))
                    .detail("package", p.package.clone())
                    .detail("from", p.from.clone())
                    .detail("to", p.to.clone())
                    .detail("severity", p.severity.as_str())
                    .detail("ingested_at", kiln_oci::time::rfc3339_millis(ingested))
                    .detail("fixed_image_ms", ms(built_at))
                    .detail("fleet_ms", deployed.map(ms))
                    .detail("deployed", deployed.is_some()),
            )?;
        }
    }
    let total = t0.elapsed();
    if ctx.json {
        return print_json(&json!({
            "image": image,
            "pins": pins.iter().map(|p| json!({"package": p.package, "from": p.from, "to": p.to, "advisories": p.advisories})).collect::<Vec<_>>(),
            "fixed_image_ms": ms(built_at),
            "fleet_ms": deployed.map(ms),
            "total_ms": total.as_millis() as u64,
        }));
    }
    println!(
        "fixed image  {image} (built, scanned, signed in {:.1} s)",
        ms(built_at) as f64 / 1000.0
    );
    if let Some(t) = deployed {
        println!(
            "fleet        running it {:.1} s after the advisories were read",
            ms(t) as f64 / 1000.0
        );
    }
    println!("{digest}");
    Ok(())
}

fn report(ctx: &Ctx) -> Result<()> {
    let log = ctx.audit_log()?;
    let mut rows: Vec<Value> = Vec::new();
    log.events(0, |le| {
        if le.event.action == "patch.complete" {
            let e = &le.event;
            let adv = e
                .resources
                .iter()
                .find(|r| r.kind == "advisory")
                .map(|r| r.id.clone());
            let img = e
                .resources
                .iter()
                .find(|r| r.kind == "image")
                .map(|r| r.id.clone());
            rows.push(json!({
                "index": le.index,
                "advisory": adv,
                "package": e.details.get("package"),
                "from": e.details.get("from"),
                "to": e.details.get("to"),
                "severity": e.details.get("severity"),
                "ingested_at": e.details.get("ingested_at"),
                "fixed_image": img,
                "fixed_image_ms": e.details.get("fixed_image_ms"),
                "fleet_ms": e.details.get("fleet_ms"),
            }));
        }
        true
    })?;
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

/// Copy the `.deb` at `src` (from `--debs`, untrusted) to a temporary file in
/// `dir`, streaming and hashing it; returns the file (renamed into place
/// only after `patch.start` is recorded) and its SHA-256. The source must be
/// a regular file (opened without blocking: a FIFO fails at once) and is read
/// no further than its size when opened: a file that grows meanwhile is
/// refused, never followed forever.
fn stage_deb_copy(src: &Path, dir: &Path) -> Result<(tempfile::NamedTempFile, String)> {
    use sha2::Digest as _;
    use std::io::{Read as _, Write as _};
    let (f, len) = kiln_oci::untrusted::open_regular(src, kiln_oci::untrusted::Follow::Yes)
        .with_context(|| format!("reading {}", src.display()))?;
    let mut staged = tempfile::Builder::new()
        .prefix(".kiln-patch-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let mut h = sha2::Sha256::new();
    let mut r = f.take(len.saturating_add(1));
    let mut buf = vec![0u8; 256 << 10];
    let mut n = 0u64;
    loop {
        let k = r
            .read(&mut buf)
            .with_context(|| format!("reading {}", src.display()))?;
        if k == 0 {
            break;
        }
        n += k as u64;
        if n > len {
            bail!("{}: grew while being copied; refused", src.display());
        }
        h.update(&buf[..k]);
        staged.write_all(&buf[..k])?;
    }
    if n != len {
        bail!(
            "{}: shrank while being copied ({n} of {len} bytes); refused",
            src.display()
        );
    }
    staged.as_file().sync_all()?;
    Ok((staged, hex::encode(h.finalize())))
}
