//! Assemble a bundle: select the period's events, map them and the images'
//! artifacts to requirements, write everything with its proofs to a
//! temporary sibling of `--out`, sign the MANIFEST, rename into place.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use kiln_audit::{AuditLog, Event, Outcome};
use kiln_oci::time::{parse_utc, rfc3339, rfc3339_millis};
use kiln_oci::{Digest, Store};
use kiln_tlog::{Checkpoint, Hash, Signer, leaf_hash, sign_note};
use sha2::{Digest as _, Sha256};

use crate::artifacts::{self, ArtifactKind};
use crate::framework::{Check, Framework, Status};
use crate::model::*;
use crate::{EvidenceError, html, manifest};

/// What to generate.
#[derive(Debug, Clone)]
pub struct Options {
    pub framework: &'static Framework,
    pub out: PathBuf,
    /// Unix seconds, inclusive.
    pub since: Option<u64>,
    /// Unix seconds, inclusive.
    pub until: Option<u64>,
    /// "Now" for generated_at and retention (default: the system clock).
    pub now: Option<SystemTime>,
}

/// A written bundle.
#[derive(Debug, Clone)]
pub struct Generated {
    pub out: PathBuf,
    pub evidence: Evidence,
    /// `sha256:<hex>` of the MANIFEST file.
    pub manifest_digest: String,
    /// Files in the bundle, MANIFEST included.
    pub files: usize,
}

/// Parse `--since` / `--until`: `YYYY-MM-DD` (UTC; as an upper bound, the
/// end of that day) or `YYYY-MM-DDTHH:MM:SS[.fff]Z`.
pub fn parse_date(s: &str, end_of_day: bool) -> Result<u64, EvidenceError> {
    let t = parse_utc(s).ok_or_else(|| EvidenceError::BadDate(s.to_string()))?;
    Ok(if end_of_day && s.len() == 10 {
        t + 86_399
    } else {
        t
    })
}

struct Ev {
    index: u64,
    leaf: Hash,
    event: Event,
    raw: Vec<u8>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EvidenceError + '_ {
    move |source| EvidenceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn action_matches(pattern: &str, action: &str) -> bool {
    match pattern.strip_suffix(".*") {
        Some(prefix) => action
            .strip_prefix(prefix)
            .is_some_and(|r| r.starts_with('.')),
        None => pattern == action,
    }
}

pub(crate) fn event_path(i: u64) -> String {
    format!("log/events/{i}.json")
}

pub(crate) fn proof_path(i: u64) -> String {
    format!("log/proofs/{i}.json")
}

pub(crate) fn artifact_path(d: &Digest) -> String {
    format!("artifacts/sha256/{}", d.hex())
}

pub(crate) const CHECKPOINT: &str = "log/checkpoint";
pub(crate) const VERIFIER_KEY: &str = "log/verifier.key";
pub(crate) const CONSISTENCY: &str = "log/consistency.json";
pub(crate) const EVIDENCE: &str = "evidence.json";
pub(crate) const INDEX_HTML: &str = "index.html";
pub(crate) const MANIFEST: &str = "MANIFEST";

/// A bundle directory under construction; removed unless committed.
struct Staging {
    dir: PathBuf,
    done: bool,
}

impl Staging {
    fn write(&self, rel: &str, bytes: &[u8]) -> Result<(), EvidenceError> {
        let path = self.dir.join(rel);
        if let Some(p) = path.parent() {
            fs::create_dir_all(p).map_err(io(p))?;
        }
        let mut f = fs::File::create(&path).map_err(io(&path))?;
        f.write_all(bytes).map_err(io(&path))?;
        f.sync_all().map_err(io(&path))?;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Every regular file under `root` as (relative path, bytes hash), and
/// every directory (for fsync).
pub(crate) fn walk(
    root: &Path,
    rel: &str,
    files: &mut Vec<String>,
    dirs: &mut Vec<PathBuf>,
) -> Result<(), (String, String)> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    dirs.push(dir.clone());
    let rd = fs::read_dir(&dir).map_err(|e| (rel.to_string(), e.to_string()))?;
    let mut entries = Vec::new();
    for e in rd {
        let e = e.map_err(|e| (rel.to_string(), e.to_string()))?;
        entries.push(e);
    }
    for e in entries {
        let name = e.file_name();
        let name = name
            .to_str()
            .ok_or_else(|| (rel.to_string(), format!("file name {name:?} is not UTF-8")))?;
        let child = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        let t = e.file_type().map_err(|e| (child.clone(), e.to_string()))?;
        if t.is_dir() {
            walk(root, &child, files, dirs)?;
        } else if t.is_file() {
            files.push(child);
        } else {
            return Err((child, "not a regular file or directory".to_string()));
        }
    }
    Ok(())
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// `out` may be replaced when it does not exist, is an empty directory, or
/// holds a previous bundle. Returns whether it exists.
fn check_out(out: &Path) -> Result<bool, EvidenceError> {
    match fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io(out)(e)),
        Ok(m) if m.is_dir() => {
            let empty = fs::read_dir(out).map_err(io(out))?.next().is_none();
            let bundle = out.join(MANIFEST).is_file() && out.join(EVIDENCE).is_file();
            if empty || bundle {
                Ok(true)
            } else {
                Err(EvidenceError::OutNotEmpty(out.to_path_buf()))
            }
        }
        Ok(_) => Err(EvidenceError::OutNotEmpty(out.to_path_buf())),
    }
}

struct NeedResult {
    met: bool,
    events: Vec<u64>,
    artifacts: Vec<usize>,
    proofs: Vec<String>,
    why: String,
}

impl NeedResult {
    fn new(met: bool, why: impl Into<String>) -> Self {
        NeedResult {
            met,
            events: Vec::new(),
            artifacts: Vec::new(),
            proofs: Vec::new(),
            why: why.into(),
        }
    }
}

struct Eval<'a> {
    events: &'a [Ev],
    first: Option<&'a Ev>,
    artifacts: &'a [(ArtifactKind, Artifact)],
    baselines: &'a BTreeMap<String, Option<serde_json::Value>>,
    consistency: Option<&'a ConsistencyRef>,
    start: Option<u64>,
    end: u64,
    now: u64,
}

fn list(actions: &[&str]) -> String {
    actions.join(", ")
}

fn days(secs: u64) -> String {
    format!("{:.1}", secs as f64 / 86_400.0)
}

impl Eval<'_> {
    fn check(&self, check: Check) -> NeedResult {
        match check {
            Check::Events {
                actions,
                failures_only,
            } => {
                let ev: Vec<u64> = self
                    .events
                    .iter()
                    .filter(|e| actions.iter().any(|a| action_matches(a, &e.event.action)))
                    .filter(|e| !failures_only || e.event.outcome == Outcome::Failure)
                    .map(|e| e.index)
                    .collect();
                let why = if failures_only {
                    format!("no failed {} event in the period", list(actions))
                } else {
                    format!(
                        "no {} event in the period (recorded by kiln once that command runs)",
                        list(actions)
                    )
                };
                let mut r = NeedResult::new(!ev.is_empty(), why);
                r.events = ev;
                r
            }
            Check::AnyEvent => {
                let mut r =
                    NeedResult::new(!self.events.is_empty(), "no audit event in the period");
                r.events = self.events.iter().map(|e| e.index).collect();
                r
            }
            Check::EventFields => {
                let bad: Vec<u64> = self
                    .events
                    .iter()
                    .filter(|e| {
                        let ev = &e.event;
                        ev.actor.user.trim().is_empty()
                            || ev.action.trim().is_empty()
                            || ev.unix_time().is_none()
                            || ev.origin.host.trim().is_empty()
                            || (ev.resources.is_empty() && ev.reason.is_none())
                    })
                    .map(|e| e.index)
                    .collect();
                let why = if self.events.is_empty() {
                    "no audit event in the period".to_string()
                } else {
                    let shown: Vec<String> = bad.iter().take(20).map(u64::to_string).collect();
                    format!(
                        "{} event(s) lack a field (user, UTC time, origin host, or resource/reason): {}{}",
                        bad.len(),
                        shown.join(", "),
                        if bad.len() > 20 { ", …" } else { "" }
                    )
                };
                let mut r = NeedResult::new(!self.events.is_empty() && bad.is_empty(), why);
                r.events = self.events.iter().map(|e| e.index).collect();
                r
            }
            Check::Artifacts(kinds) => {
                let a: Vec<usize> = self
                    .artifacts
                    .iter()
                    .enumerate()
                    .filter(|(_, (k, _))| kinds.contains(k))
                    .map(|(i, _)| i)
                    .collect();
                let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
                let mut r = NeedResult::new(
                    !a.is_empty(),
                    format!(
                        "no {} artifact in the store for the images of the period",
                        names.join(" / ")
                    ),
                );
                r.artifacts = a;
                r
            }
            Check::Baseline => {
                let declared = |img: &str| {
                    self.baselines.get(img).is_some_and(|b| {
                        b.as_ref().is_some_and(|b| {
                            b.get("ingress").is_some() || b.get("egress").is_some()
                        })
                    })
                };
                let a: Vec<usize> = self
                    .artifacts
                    .iter()
                    .enumerate()
                    .filter(|(_, (k, art))| *k == ArtifactKind::ImageConfig && declared(&art.image))
                    .map(|(i, _)| i)
                    .collect();
                let mut r = NeedResult::new(
                    !a.is_empty(),
                    "no image config of the period declares a [baseline] (label dev.kiln.baseline)",
                );
                r.artifacts = a;
                r
            }
            Check::SignedLog => {
                let mut r = NeedResult::new(true, "");
                r.proofs = vec![CHECKPOINT.to_string(), VERIFIER_KEY.to_string()];
                r
            }
            Check::Consistency => match self.consistency {
                Some(c) if c.old_size < c.new_size => {
                    let mut r = NeedResult::new(true, "");
                    r.proofs = vec![c.path.clone(), c.old_checkpoint.clone()];
                    r
                }
                _ => NeedResult::new(
                    false,
                    "no earlier checkpoint than the latest covers the period, so there is nothing to prove consistency from",
                ),
            },
            Check::Retention { days: want } => {
                let Some(first) = self.first else {
                    return NeedResult::new(false, "the log is empty");
                };
                let t = first.event.unix_time().unwrap_or(self.now);
                let age = self.now.saturating_sub(t);
                let mut r = NeedResult::new(
                    age >= want * 86_400,
                    format!(
                        "the log's history begins at {} ({} days ago); {want} days are required",
                        first.event.time,
                        days(age)
                    ),
                );
                r.events = vec![first.index];
                r
            }
            Check::Periodic {
                actions,
                max_gap_days,
            } => {
                let hits: Vec<&Ev> = self
                    .events
                    .iter()
                    .filter(|e| actions.iter().any(|a| action_matches(a, &e.event.action)))
                    .collect();
                let mut times: Vec<u64> = hits.iter().filter_map(|e| e.event.unix_time()).collect();
                times.sort_unstable();
                let start = self
                    .start
                    .or_else(|| self.first.and_then(|f| f.event.unix_time()))
                    .unwrap_or(self.end);
                let mut points = vec![start];
                points.extend(times.iter().copied());
                points.push(self.end.max(start));
                let (gap, from, to) = points
                    .windows(2)
                    .map(|w| (w[1].saturating_sub(w[0]), w[0], w[1]))
                    .max()
                    .unwrap_or((0, start, start));
                let met = !times.is_empty() && gap <= max_gap_days * 86_400;
                let why = if times.is_empty() {
                    format!("no {} event in the period", list(actions))
                } else {
                    format!(
                        "longest gap without {}: {} days ({} to {}); at most {max_gap_days} allowed",
                        list(actions),
                        days(gap),
                        rfc3339(from),
                        rfc3339(to)
                    )
                };
                let mut r = NeedResult::new(met, why);
                r.events = hits.iter().map(|e| e.index).collect();
                r
            }
            Check::DigestPinned => {
                let with_images: Vec<&Ev> = self
                    .events
                    .iter()
                    .filter(|e| e.event.images().next().is_some())
                    .collect();
                let bad: Vec<String> = with_images
                    .iter()
                    .flat_map(|e| {
                        e.event
                            .images()
                            .filter(|r| r.id.parse::<Digest>().is_err())
                            .map(move |r| format!("event {}: {}", e.index, r.id))
                    })
                    .collect();
                let why = if with_images.is_empty() {
                    "no event of the period names an image".to_string()
                } else {
                    format!("images named without a sha256 digest: {}", bad.join("; "))
                };
                let mut r = NeedResult::new(!with_images.is_empty() && bad.is_empty(), why);
                r.events = with_images.iter().map(|e| e.index).collect();
                r
            }
        }
    }
}

/// Generate a bundle for `opts.framework` from `log`, signed with the log
/// key `signer`, taking artifacts from `store` (if there is one).
pub fn generate(
    log: &AuditLog,
    signer: &Signer,
    store: Option<&Store>,
    opts: &Options,
) -> Result<Generated, EvidenceError> {
    generate_then(log, signer, store, opts, |_| Ok::<_, Infallible>(()))
}

/// [`generate`], calling `before_swap` with the finished bundle (still under
/// its temporary name) before renaming it into place; an error from it
/// removes the temporary bundle and leaves `opts.out` as it was. Lets the
/// caller record the bundle's audit event first.
pub fn generate_then<E>(
    log: &AuditLog,
    signer: &Signer,
    store: Option<&Store>,
    opts: &Options,
    before_swap: impl FnOnce(&Generated) -> Result<(), E>,
) -> Result<Generated, EvidenceError>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match assemble(log, signer, store, opts, Some(before_swap))? {
        Ok(g) => Ok(g),
        Err(_) => Err(EvidenceError::Internal("the bundle was not written".into())),
    }
}

/// What [`generate`] would report for `opts.framework` (`opts.out` is not
/// used), without writing a bundle: the status of each requirement, e.g.
/// for a dashboard.
pub fn assess(
    log: &AuditLog,
    signer: &Signer,
    store: Option<&Store>,
    opts: &Options,
) -> Result<Evidence, EvidenceError> {
    type Never = fn(&Generated) -> Result<(), Infallible>;
    match assemble(log, signer, store, opts, None::<Never>)? {
        Ok(g) => Ok(g.evidence),
        Err(e) => Ok(*e),
    }
}

/// Assess, then (with `before_swap`) write the bundle; without it, return
/// the assessment.
fn assemble<E, F>(
    log: &AuditLog,
    signer: &Signer,
    store: Option<&Store>,
    opts: &Options,
    before_swap: Option<F>,
) -> Result<Result<Generated, Box<Evidence>>, EvidenceError>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
    F: FnOnce(&Generated) -> Result<(), E>,
{
    if let (Some(s), Some(u)) = (opts.since, opts.until)
        && s > u
    {
        return Err(EvidenceError::EmptyPeriod {
            since: rfc3339(s),
            until: rfc3339(u),
        });
    }
    let out_exists = before_swap.is_some() && check_out(&opts.out)?;
    let now_t = opts.now.unwrap_or_else(SystemTime::now);
    let now = now_t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let verifier = signer.verifier();

    // The checkpoint everything is proved against.
    let (_, cp_note) = log.log().checkpoint().ok_or(EvidenceError::NoCheckpoint)?;
    let (cp, _) = Checkpoint::open(cp_note.as_bytes(), std::slice::from_ref(&verifier))?;
    let size = cp.size;
    if size == 0 {
        return Err(EvidenceError::NoCheckpoint);
    }

    // The period's events, and the log's first event (for retention).
    let in_period = |e: &Event| match e.unix_time() {
        Some(t) => opts.since.is_none_or(|s| t >= s) && opts.until.is_none_or(|u| t <= u),
        None => opts.since.is_none() && opts.until.is_none(),
    };
    let mut events = Vec::new();
    let mut first = None;
    log.events(0, |le| {
        if le.index >= size {
            return false;
        }
        let ev = Ev {
            index: le.index,
            leaf: leaf_hash(&le.raw),
            event: le.event,
            raw: le.raw,
        };
        if ev.index == 0 && !in_period(&ev.event) {
            first = Some(ev);
        } else if in_period(&ev.event) {
            events.push(ev);
        }
        true
    })?;

    // The images those events name, and what the store holds for them.
    let mut names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in &events {
        for r in e.event.images() {
            let n = names.entry(r.id.clone()).or_default();
            if let Some(name) = &r.name {
                n.insert(name.clone());
            }
        }
    }
    let mut images = Vec::new();
    let mut arts: Vec<(ArtifactKind, Artifact)> = Vec::new();
    let mut blobs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut baselines = BTreeMap::new();
    for (id, n) in &names {
        let Ok(digest) = id.parse::<Digest>() else {
            continue;
        };
        let collected = match store {
            Some(s) if s.has_blob(&digest) => Some(artifacts::collect(s, &digest).map_err(
                |source| EvidenceError::Store {
                    image: id.clone(),
                    source,
                },
            )?),
            _ => None,
        };
        let count = collected.as_ref().map_or(0, |c| c.blobs.len());
        let baseline = collected.as_ref().and_then(|c| c.baseline.clone());
        baselines.insert(id.clone(), baseline.clone());
        for c in collected.into_iter().flat_map(|c| c.blobs) {
            let path = artifact_path(&c.digest);
            arts.push((
                c.kind,
                Artifact {
                    kind: c.kind.as_str().to_string(),
                    media_type: c.media_type,
                    digest: c.digest.to_string(),
                    size: c.bytes.len() as u64,
                    path: path.clone(),
                    image: c.image.to_string(),
                },
            ));
            blobs.insert(path, c.bytes);
        }
        images.push(ImageEvidence {
            digest: id.clone(),
            names: n.iter().cloned().collect(),
            in_store: count > 0,
            baseline,
            artifacts: count,
        });
    }

    // The oldest checkpoint covering the period, for the consistency proof.
    let first_index = events.first().map(|e| e.index);
    let mut old = None;
    for note in log.log().checkpoints()? {
        let (c, _) = Checkpoint::open(&note, std::slice::from_ref(&verifier))?;
        if c.size > 0 && c.size <= size && first_index.is_none_or(|f| c.size > f) {
            old = Some((c, note));
            break;
        }
    }
    let consistency = match &old {
        Some((c, note)) => {
            let hashes = log.log().consistency_proof(c.size, size)?;
            let path = format!("log/checkpoints/{}", c.size);
            Some((
                ConsistencyRef {
                    path: CONSISTENCY.to_string(),
                    old_checkpoint: path.clone(),
                    old_size: c.size,
                    new_size: size,
                },
                ConsistencyProof {
                    old_checkpoint: path,
                    old_size: c.size,
                    old_root: hex::encode(c.root),
                    new_size: size,
                    new_root: hex::encode(cp.root),
                    hashes: hashes.iter().map(hex::encode).collect(),
                },
                note.clone(),
            ))
        }
        None => None,
    };

    // Map requirements.
    let eval = Eval {
        events: &events,
        first: if first.is_some() {
            first.as_ref()
        } else {
            events.first().filter(|e| e.index == 0)
        },
        artifacts: &arts,
        baselines: &baselines,
        consistency: consistency.as_ref().map(|c| &c.0),
        start: opts.since,
        end: opts.until.map_or(now, |u| u.min(now)),
        now,
    };
    let by_index: BTreeMap<u64, &Ev> = events
        .iter()
        .chain(first.as_ref())
        .map(|e| (e.index, e))
        .collect();
    let mut cited: BTreeSet<u64> = BTreeSet::new();
    let mut requirements = Vec::new();
    let mut summary = Summary::default();
    for req in opts.framework.requirements {
        let mut satisfied_by = Vec::new();
        let mut missing = Vec::new();
        let mut ev_idx = BTreeSet::new();
        let mut art_idx = BTreeSet::new();
        let mut proofs = BTreeSet::new();
        for need in req.needs {
            let r = eval.check(need.check);
            if r.met {
                satisfied_by.push(need.what.to_string());
            } else {
                missing.push(MissingNeed {
                    need: need.what.to_string(),
                    why: r.why,
                });
            }
            ev_idx.extend(r.events);
            art_idx.extend(r.artifacts);
            proofs.extend(r.proofs);
        }
        if !ev_idx.is_empty() {
            proofs.insert(CHECKPOINT.to_string());
        }
        let status = if missing.is_empty() {
            summary.satisfied += 1;
            Status::Satisfied
        } else if satisfied_by.is_empty() {
            summary.missing += 1;
            Status::Missing
        } else {
            summary.partial += 1;
            Status::Partial
        };
        let mut evs = Vec::new();
        for i in ev_idx {
            let Some(e) = by_index.get(&i) else { continue };
            cited.insert(i);
            evs.push(CitedEvent::of(i, &e.leaf, &e.event));
        }
        requirements.push(RequirementEvidence {
            id: req.id.to_string(),
            title: req.title.to_string(),
            kiln_evidence: req.kiln_evidence.to_string(),
            status,
            satisfied_by,
            missing,
            events: evs,
            artifacts: art_idx
                .into_iter()
                .filter_map(|i| arts.get(i))
                .map(|(_, a)| ArtifactRef {
                    kind: a.kind.clone(),
                    digest: a.digest.clone(),
                    path: a.path.clone(),
                })
                .collect(),
            proofs: proofs.into_iter().collect(),
        });
    }
    summary.events_cited = cited.len();
    summary.artifacts = arts.len();

    let evidence = Evidence {
        format: FORMAT.to_string(),
        framework: FrameworkRef {
            id: opts.framework.id.to_string(),
            title: opts.framework.title.to_string(),
        },
        generated_at: rfc3339_millis(now_t),
        generator: format!("kiln-evidence {}", env!("CARGO_PKG_VERSION")),
        period: Period {
            since: opts.since.map(rfc3339),
            until: opts.until.map(rfc3339),
        },
        log: LogInfo {
            origin: cp.origin.clone(),
            verifier_key: verifier.to_key_str(),
            checkpoint: CheckpointRef {
                path: CHECKPOINT.to_string(),
                size,
                root_hash: hex::encode(cp.root),
            },
            consistency: consistency.as_ref().map(|c| c.0.clone()),
            first_event_time: eval.first.map(|f| f.event.time.clone()),
            events_in_period: events.len() as u64,
        },
        summary,
        requirements,
        images,
        artifacts: arts.into_iter().map(|(_, a)| a).collect(),
    };

    let Some(before_swap) = before_swap else {
        return Ok(Err(Box::new(evidence)));
    };
    // Write the bundle beside `out`.
    let parent = match opts.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = opts
        .out
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            EvidenceError::Internal(format!("{}: not a directory name", opts.out.display()))
        })?;
    let tmp = parent.join(format!(".{name}.kiln-tmp-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    fs::create_dir(&tmp).map_err(io(&tmp))?;
    let mut st = Staging {
        dir: tmp.clone(),
        done: false,
    };
    st.write(CHECKPOINT, cp_note.as_bytes())?;
    st.write(
        VERIFIER_KEY,
        format!("{}\n", verifier.to_key_str()).as_bytes(),
    )?;
    for i in &cited {
        let Some(e) = by_index.get(i) else { continue };
        st.write(&event_path(*i), &e.raw)?;
        let proof = InclusionProof {
            index: *i,
            tree_size: size,
            leaf_hash: hex::encode(e.leaf),
            hashes: log
                .log()
                .inclusion_proof(*i, size)?
                .iter()
                .map(hex::encode)
                .collect(),
        };
        st.write(&proof_path(*i), &to_json(&proof)?)?;
    }
    if let Some((r, proof, note)) = &consistency {
        st.write(&r.old_checkpoint, note)?;
        st.write(CONSISTENCY, &to_json(proof)?)?;
    }
    for (path, bytes) in &blobs {
        st.write(path, bytes)?;
    }
    st.write(EVIDENCE, &to_json(&evidence)?)?;
    st.write(INDEX_HTML, html::render(&evidence).as_bytes())?;

    let mut files = Vec::new();
    let mut dirs = Vec::new();
    walk(&tmp, "", &mut files, &mut dirs)
        .map_err(|(p, e)| EvidenceError::Internal(format!("{p}: {e}")))?;
    let mut entries = Vec::new();
    for f in &files {
        let path = tmp.join(f);
        let bytes = fs::read(&path).map_err(io(&path))?;
        entries.push((f.clone(), sha256(&bytes)));
    }
    let body = manifest::render(&entries);
    let signed = sign_note(&body, signer)?;
    st.write(MANIFEST, signed.as_bytes())?;
    for d in &dirs {
        fs::File::open(d)
            .and_then(|f| f.sync_all())
            .map_err(io(d))?;
    }

    let generated = Generated {
        out: opts.out.clone(),
        evidence,
        manifest_digest: format!("sha256:{}", hex::encode(sha256(signed.as_bytes()))),
        files: files.len() + 1,
    };
    before_swap(&generated).map_err(|e| EvidenceError::Aborted { source: e.into() })?;

    // Swap into place.
    if out_exists {
        let old = parent.join(format!(".{name}.kiln-old-{}", std::process::id()));
        if old.exists() {
            fs::remove_dir_all(&old).map_err(io(&old))?;
        }
        fs::rename(&opts.out, &old).map_err(io(&opts.out))?;
        if let Err(e) = fs::rename(&tmp, &opts.out) {
            let _ = fs::rename(&old, &opts.out);
            return Err(io(&opts.out)(e));
        }
        st.done = true;
        fs::remove_dir_all(&old).map_err(io(&old))?;
    } else {
        fs::rename(&tmp, &opts.out).map_err(io(&opts.out))?;
        st.done = true;
    }
    fs::File::open(&parent)
        .and_then(|f| f.sync_all())
        .map_err(io(&parent))?;

    Ok(Ok(generated))
}

fn to_json(v: &impl serde::Serialize) -> Result<Vec<u8>, EvidenceError> {
    let mut b = serde_json::to_vec_pretty(v).map_err(|e| EvidenceError::Internal(e.to_string()))?;
    b.push(b'\n');
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_actions() {
        assert!(action_matches("patch.*", "patch.apply"));
        assert!(!action_matches("patch.*", "patchy.apply"));
        assert!(!action_matches("patch.*", "patch"));
        assert!(action_matches("image.build", "image.build"));
        assert!(!action_matches("image.build", "image.builds"));
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-02", false).unwrap(), 86_400);
        assert_eq!(parse_date("1970-01-02", true).unwrap(), 2 * 86_400 - 1);
        assert_eq!(parse_date("1970-01-02T00:00:01Z", true).unwrap(), 86_401);
        assert!(parse_date("yesterday", false).is_err());
    }
}
