//! `kiln patch`: advisory → pinned fix → rebuilt, scanned, signed image → fleet.
//!
//! 1. The spec's packages are matched against the advisories. Repository packages
//!    (`[packages]`, the lock's `[[package]]` closure): the affected ones are re-locked
//!    to the newest the repositories offer, every other package keeping its version, and
//!    the new versions must fix every advisory, or the patch fails with the lock
//!    unchanged ([`crate::repo`]). Local `[[debs]]`: for every package a fixable advisory
//!    affects, the highest fixed version in the `--debs` pool (needed only then) is pinned
//!    in `kiln.lock` (copied beside the spec, so the pin is self-contained).
//! 2. `patch.start` is recorded, then the copies and the lock are written.
//! 3. The spec is rebuilt with signed provenance, scanned with an attested result
//!    (default gate) and signed — each step recorded as its own event.
//! 4. With a deploy file, every service running the spec's image is moved to the fixed
//!    digest and applied through the daemon's normal rollout, waiting for convergence.
//! 5. `patch.complete` is recorded per advisory, with how long the fixed image and the
//!    fleet took from the moment the advisories were read.
//!
//! A failing step records its own failure event (as the command would) and fails the
//! patch.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use kiln_audit::{Recorder, Resource};
use kiln_image::provenance::Builder;
use kiln_image::{BuildOptions, Spec};
use kiln_oci::{Digest, Store};
use kiln_scan::{AdvisoryDb, DebVersion, Severity, VulnState};
use serde_json::json;

use crate::{BuildRequest, Error, GateSettings, Key, error_chain, rollout};

/// What to patch.
pub struct PatchRequest<'a> {
    /// The image spec (`kiln.toml`); `kiln.lock` is written beside it.
    pub spec_path: &'a Path,
    /// The advisories, already loaded.
    pub db: &'a AdvisoryDb,
    /// When the advisories were read: the start of every time reported.
    pub ingested: SystemTime,
    /// A directory of `.deb` files with fixed versions of the spec's `[[debs]]`
    /// (needed only when one of them is affected).
    pub debs: Option<&'a Path>,
    /// The key that signs the provenance, the scan attestation and the image, and its
    /// password (loaded when the build starts, as `kiln build --sign-key` does).
    pub key_path: &'a Path,
    pub key_password: Option<&'a str>,
    /// The builder run the provenance names.
    pub builder: &'a Builder,
    /// How to rebuild (no tag override, no `--out`).
    pub build: &'a BuildOptions,
    /// Roll the fixed image out: this `deploy.toml`'s services on the image are updated
    /// and applied.
    pub deploy: Option<&'a Path>,
}

/// A package moved to a fixed version.
#[derive(Debug, Clone)]
pub struct Pin {
    pub package: String,
    pub from: String,
    pub to: String,
    /// The advisories the new version fixes.
    pub advisories: Vec<String>,
    /// The highest severity among them.
    pub severity: Severity,
}

/// Something the caller may show while the patch runs.
#[derive(Debug, Clone)]
pub enum Note {
    /// A problem that does not stop the patch (an unusable `.deb`, no fixed version).
    Warning(String),
    /// A package was pinned (the lock is written).
    Pinned(Pin),
}

/// What the patch did.
#[derive(Debug, Clone)]
pub enum Patched {
    /// No advisory with an available fix affects the spec's packages (`spec`: its name).
    Nothing { spec: String },
    /// A fixed image was built, scanned and signed (and rolled out with a deploy file).
    Fixed {
        /// `NAME@sha256:…`.
        image: String,
        digest: Digest,
        pins: Vec<Pin>,
        /// From reading the advisories to a signed fixed image.
        fixed_image_ms: u64,
        /// From reading the advisories to a converged fleet.
        fleet_ms: Option<u64>,
    },
}

/// Patch the spec of `req`; `note` sees warnings and pins as they happen.
pub fn patch(
    rec: &dyn Recorder,
    req: &PatchRequest,
    note: &mut dyn FnMut(Note),
) -> Result<Patched, Error> {
    let db = req.db;
    // No advisories would read as "nothing to patch".
    if db.is_empty() {
        return Err(Error::NoAdvisories {
            source_name: db.source.clone(),
            files: db.files,
            skipped: db.skipped_files,
            withdrawn: db.withdrawn,
            non_debian: db.non_debian,
        });
    }
    let spec = Spec::load(req.spec_path)?;
    // Repository packages first: their re-lock keeps the lock's [[deb]] pins.
    let (start, mut pins) = if spec.packages.is_some() {
        let r = crate::repo::plan(&spec, db, &req.build.state_dir)?;
        (Some(r.lock), r.pins)
    } else {
        (None, Vec::new())
    };
    let start = match start {
        Some(l) => l,
        None => kiln_image::lock::Lock::load(&spec.dir)?
            .map(|(l, _)| l)
            .unwrap_or_default(),
    };
    let Planned {
        lock,
        pins: deb_pins,
        copies,
    } = plan(&spec, db, req.debs, start, note)?;
    pins.extend(deb_pins);
    if pins.is_empty() {
        return Ok(Patched::Nothing {
            spec: spec.name.clone(),
        });
    }
    let all_ids: Vec<String> = pins.iter().flat_map(|p| p.advisories.clone()).collect();
    rec.record(
        rec.event("patch.start")
            .resource(Resource::new("spec", req.spec_path.display().to_string()))
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
        staged.persist(&dst).map_err(|e| Error::Write {
            path: dst.clone(),
            source: e.error,
        })?;
        std::fs::File::open(dir)?.sync_all()?;
    }
    kiln_oci::layout::write_atomic(
        &spec.dir.join(kiln_image::lock::LOCK_FILE),
        lock.render().as_bytes(),
    )?;
    for p in &pins {
        note(Note::Pinned(p.clone()));
    }

    // Rebuild (with provenance), scan, sign.
    let spec_resource = Resource::new("spec", req.spec_path.display().to_string());
    let (built, key) = step(rec, "build", "image.build", &[spec_resource], || {
        let started_on = kiln_image::provenance::rfc3339_micros(SystemTime::now());
        let key = crate::load_key(req.key_path, req.key_password)?;
        // The spec again: the lock written above is one of its inputs.
        let spec = Spec::load(req.spec_path)?;
        let built = crate::build(
            rec,
            &BuildRequest {
                spec_path: req.spec_path,
                spec: &spec,
                options: req.build,
                provenance: Some((&key, req.builder)),
                started_on: &started_on,
            },
        )?;
        Ok((built, key))
    })?;
    let digest = built.report.digest;
    let image = format!("{}@{digest}", spec.name);
    let image_resource = Resource::named("image", digest.to_string(), image.clone());
    let store = Store::open(req.build.state_dir.join("store"))?;
    step(
        rec,
        "scan",
        "scan",
        std::slice::from_ref(&image_resource),
        || {
            let img = kiln_verify::resolve(&store, &image)?;
            let s = crate::scan(
                rec,
                &store,
                &img,
                db,
                &GateSettings::default(),
                Some(Key::Loaded(&key)),
                SystemTime::now(),
            )?;
            if !s.verdict.pass {
                return Err(Error::GateFailed {
                    image: img.reference,
                    reasons: s.verdict.reasons,
                });
            }
            Ok(())
        },
    )?;
    step(
        rec,
        "sign",
        "image.sign",
        std::slice::from_ref(&image_resource),
        || {
            let img = kiln_verify::resolve(&store, &image)?;
            crate::sign(rec, &store, &img, Key::Loaded(&key))
        },
    )?;
    let built_at = SystemTime::now();
    // Roll out.
    let mut deployed = None;
    if let Some(d) = req.deploy {
        rollout::update_deploy_file(d, &spec.name, &image)?;
        let reason = format!("patch {}", all_ids.join(", "));
        step(rec, "apply", "fleet.apply", &[], || {
            rollout::apply(&req.build.state_dir, d, &reason)
        })?;
        deployed = Some(SystemTime::now());
    }
    let ms = |t: SystemTime| {
        t.duration_since(req.ingested)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    };
    for p in &pins {
        for id in &p.advisories {
            rec.record(
                rec.event("patch.complete")
                    .resource(Resource::new("advisory", id.clone()))
                    .resource(Resource::named("image", digest.to_string(), image.clone()))
                    .detail("package", p.package.clone())
                    .detail("from", p.from.clone())
                    .detail("to", p.to.clone())
                    .detail("severity", p.severity.as_str())
                    .detail("ingested_at", kiln_oci::time::rfc3339_millis(req.ingested))
                    .detail("fixed_image_ms", ms(built_at))
                    .detail("fleet_ms", deployed.map(ms))
                    .detail("deployed", deployed.is_some()),
            )?;
        }
    }
    Ok(Patched::Fixed {
        image,
        digest,
        pins,
        fixed_image_ms: ms(built_at),
        fleet_ms: deployed.map(ms),
    })
}

/// Run step `name` of the patch. If it fails, its failure is recorded as the command
/// would have recorded it (`action`, naming `resources`; best effort, as any failure
/// event), unless the step recorded it itself (a failing scan gate).
fn step<T>(
    rec: &dyn Recorder,
    name: &'static str,
    action: &str,
    resources: &[Resource],
    f: impl FnOnce() -> Result<T, Error>,
) -> Result<T, Error> {
    f().map_err(|e| {
        if !matches!(e, Error::GateFailed { .. }) {
            let mut ev = rec.event(action).failed(&error_chain(&e));
            ev.resources = resources.to_vec();
            let _ = rec.record(ev);
        }
        Error::Step {
            step: name,
            source: Box::new(e),
        }
    })
}

/// The pins a patch makes: the new lock, the pins, and the fixed `.deb`s staged for
/// copying beside the spec (written only after `patch.start` is recorded).
struct Planned {
    lock: kiln_image::lock::Lock,
    pins: Vec<Pin>,
    copies: Vec<(PathBuf, tempfile::NamedTempFile)>,
}

/// Match the spec's `[[debs]]` against the advisories and pick the fixes from
/// `debs_dir` (an error without one when a package needs a fix), pinning them in
/// `lock`.
fn plan(
    spec: &Spec,
    db: &AdvisoryDb,
    debs_dir: Option<&Path>,
    mut lock: kiln_image::lock::Lock,
    note: &mut dyn FnMut(Note),
) -> Result<Planned, Error> {
    let mut pool: Vec<(PathBuf, kiln_deb::Deb)> = Vec::new();
    let listing = match debs_dir {
        Some(dir) => std::fs::read_dir(dir)
            .map_err(|source| Error::Read {
                path: dir.to_path_buf(),
                source,
            })?
            .map(|e| {
                e.map(|e| e.path()).map_err(|source| Error::Read {
                    path: dir.to_path_buf(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    for p in listing {
        if p.extension().and_then(|x| x.to_str()) != Some("deb") {
            continue;
        }
        // Streamed: file contents are not kept (only control data is needed).
        match kiln_deb::Deb::read_path(&p) {
            Ok(d) => pool.push((p, d)),
            Err(e) => note(Note::Warning(format!(
                "{}: not a usable .deb: {e}",
                p.display()
            ))),
        }
    }
    let mut pins: Vec<Pin> = Vec::new();
    let mut need_debs: Vec<String> = Vec::new();
    let mut copies: Vec<(PathBuf, tempfile::NamedTempFile)> = Vec::new();
    for entry in &spec.debs {
        let deb = kiln_deb::Deb::read_path(&entry.path).map_err(|source| Error::Deb {
            path: entry.path.clone(),
            source,
        })?;
        let status = kiln_deb::render_status(&[deb.status_stanza()]);
        let pkgs = kiln_scan::inventory_from_status(status.as_bytes()).map_err(|source| {
            Error::Control {
                path: entry.path.clone(),
                source,
            }
        })?;
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
            .ok_or(Error::FixedVersion)?;
        let candidate = pool
            .iter()
            .filter(|(_, d)| d.control.get("Package") == Some(c.name.as_str()))
            .filter_map(|(p, d)| Some((p, DebVersion::parse(d.control.get("Version")?).ok()?)))
            .filter(|(_, v)| *v >= need)
            .max_by(|x, y| x.1.cmp(&y.1));
        let ids: Vec<String> = vulns.iter().map(|v| v.id.clone()).collect();
        if debs_dir.is_none() {
            need_debs.push(format!("{} {} ({})", c.name, c.version, ids.join(", ")));
            continue;
        }
        let Some((src, version)) = candidate else {
            note(Note::Warning(format!(
                "{} {} is affected by {} but --debs has no version >= {}",
                c.name,
                c.version,
                ids.join(", "),
                need.as_str()
            )));
            continue;
        };
        // Copy the fixed .deb beside the spec so the pin is self-contained.
        let fname = src
            .file_name()
            .ok_or_else(|| Error::DebFileName { path: src.clone() })?
            .to_owned();
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
    if !need_debs.is_empty() {
        return Err(Error::NeedDebs {
            packages: need_debs,
        });
    }
    Ok(Planned { lock, pins, copies })
}

/// Copy the `.deb` at `src` (from `--debs`, untrusted) to a temporary file in
/// `dir`, streaming and hashing it; returns the file (renamed into place
/// only after `patch.start` is recorded) and its SHA-256. The source must be
/// a regular file (opened without blocking: a FIFO fails at once) and is read
/// no further than its size when opened: a file that grows meanwhile is
/// refused, never followed forever.
fn stage_deb_copy(src: &Path, dir: &Path) -> Result<(tempfile::NamedTempFile, String), Error> {
    use sha2::Digest as _;
    use std::io::{Read as _, Write as _};
    let read_err = |source| Error::Read {
        path: src.to_path_buf(),
        source,
    };
    let (f, len) = kiln_oci::untrusted::open_regular(src, kiln_oci::untrusted::Follow::Yes)
        .map_err(read_err)?;
    let mut staged = tempfile::Builder::new()
        .prefix(".kiln-patch-")
        .tempfile_in(dir)
        .map_err(|source| Error::TempFile {
            dir: dir.to_path_buf(),
            source,
        })?;
    let mut h = sha2::Sha256::new();
    let mut r = f.take(len.saturating_add(1));
    let mut buf = vec![0u8; 256 << 10];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf).map_err(read_err)?;
        if k == 0 {
            break;
        }
        n += k as u64;
        if n > len {
            return Err(Error::Grew {
                path: src.to_path_buf(),
            });
        }
        h.update(&buf[..k]);
        staged.write_all(&buf[..k])?;
    }
    if n != len {
        return Err(Error::Shrank {
            path: src.to_path_buf(),
            copied: n,
            size: len,
        });
    }
    staged.as_file().sync_all()?;
    Ok((staged, hex::encode(h.finalize())))
}
