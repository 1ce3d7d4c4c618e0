//! OSV advisories for Debian: loading, indexing by package, and matching an
//! inventory (formats.md "Vulnerabilities (OSV, Debian)").
//!
//! Loading: files, or directories searched recursively for `*.json` (other
//! files are counted and skipped; symbolic links to directories are not
//! followed); a file holds one record or a JSON array of records. Each file
//! must be a regular file of at most [`MAX_ADVISORY_FILE`] bytes (a FIFO or
//! device named `*.json` is an error, not a hang). Records are checked strictly
//! (required `id` and RFC 3339 `modified`, typed fields, each event exactly
//! one of `introduced`/`fixed`/`last_affected`/`limit`, Debian versions that
//! parse); a bad file is an error `file: message`. `withdrawn` records are
//! counted and ignored. Only `affected[]` entries of ecosystem `Debian:<N>`
//! (or a bare `Debian`, meaning every release) are kept, indexed by package
//! name (the *source* package); other ecosystems are counted and ignored, and
//! a record with no Debian entry at all is not a Debian advisory: it is
//! counted in [`AdvisoryDb::non_debian`], not in [`AdvisoryDb::len`].
//!
//! The advisory set is identified by [`AdvisoryDb::set_digest`]
//! ([`SET_DIGEST_ALGORITHM`]): the SHA-256 of the lowercase hex SHA-256 of
//! every advisory file read, one per line (`\n`-terminated), lines sorted
//! bytewise, duplicates kept. It depends on the files' bytes only, not on
//! their names or the order they were found, so for a plain directory it is
//! `find DIR -type f -name '*.json' -exec sha256sum {} + | cut -c1-64 |
//! LC_ALL=C sort | sha256sum`.
//!
//! Matching (per image package, on its source name and source version):
//! events of an `ECOSYSTEM` range are sorted by version (`introduced: "0"`
//! first) and evaluated as the OSV specification says: `introduced ≤ v`
//! makes v affected, `fixed ≤ v` or `limit ≤ v` unaffected, `last_affected
//! < v` unaffected. An affected version with a later `fixed` event is
//! [`VulnState::Vulnerable`] with that fixed version (the highest one when
//! several ranges match); with only a `last_affected` bound it is
//! `Vulnerable` with `fixed: None` (a fix exists, its version is not named);
//! with neither it is [`VulnState::Unfixed`]. An explicit `versions` list
//! also matches (unfixed) when no range does. Other range types are ignored.
//!
//! Release: when the image's os-release says Debian `VERSION_ID=N`, only
//! `Debian:N` entries (and bare `Debian`) apply; otherwise every `Debian:*`
//! entry applies and the match result carries a note saying so.
//! [`AdvisoryDb::applicable`] counts the advisories that apply to a release,
//! and the newest `modified` among them: that is the data a scan of an image
//! of that release really used (zero of them is a scan of nothing).
//!
//! Severity, per record, first that applies: `database_specific.severity`
//! (a word); the highest of `severity[]` (`CVSS_V3` vectors scored with the
//! v3.1 base-score formula, numeric scores mapped with the CVSS scale, words
//! such as Debian's `low`/`medium` taken as is; `CVSS_V2`/`CVSS_V4` vectors
//! are not scored); the matched `affected[]` entry's
//! `ecosystem_specific.urgency` / `database_specific.severity`; else
//! `unknown`.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::inventory::Inventory;
use crate::report::{Vuln, VulnState};
use crate::version::DebVersion;
use crate::{Result, ScanError, Severity};

/// One loaded advisory.
#[derive(Clone, Debug)]
pub struct Advisory {
    pub id: String,
    pub aliases: Vec<String>,
    pub modified: String,
    pub summary: String,
    pub severity: Severity,
    /// The file it was read from.
    pub file: String,
    /// Unix seconds of `modified`.
    pub modified_secs: u64,
    /// The Debian releases its `affected[]` entries name (`None`: bare
    /// `Debian`, every release).
    pub releases: Vec<Option<String>>,
}

impl Advisory {
    /// Whether one of its entries applies to an image of `release` (`None`:
    /// release unknown, every Debian entry applies).
    pub fn applies_to(&self, release: Option<&str>) -> bool {
        match release {
            None => !self.releases.is_empty(),
            Some(want) => self
                .releases
                .iter()
                .any(|r| r.as_deref().is_none_or(|have| have == want)),
        }
    }
}

/// Largest advisory file read (a whole-ecosystem export as one JSON array
/// stays well under this).
pub const MAX_ADVISORY_FILE: u64 = 512 * 1024 * 1024;

/// Name of the algorithm of [`AdvisoryDb::set_digest`].
pub const SET_DIGEST_ALGORITHM: &str = "kiln-osv-files-sha256-v1";

/// The advisories that apply to one Debian release (see
/// [`AdvisoryDb::applicable`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applicable {
    pub count: usize,
    /// The newest `modified` among them, RFC 3339 UTC.
    pub newest_modified: Option<String>,
    pub newest_modified_secs: Option<u64>,
}

#[derive(Clone, Debug)]
enum Event {
    /// `None` is `"0"`: every earlier version.
    Introduced(Option<DebVersion>),
    Fixed(DebVersion),
    LastAffected(DebVersion),
    Limit(DebVersion),
}

impl Event {
    fn version(&self) -> Option<&DebVersion> {
        match self {
            Event::Introduced(v) => v.as_ref(),
            Event::Fixed(v) | Event::LastAffected(v) | Event::Limit(v) => Some(v),
        }
    }
}

#[derive(Clone, Debug)]
struct Affected {
    advisory: usize,
    /// `Some("12")` for `Debian:12`; `None` for bare `Debian`.
    release: Option<String>,
    ranges: Vec<Vec<Event>>,
    versions: Vec<DebVersion>,
    severity: Option<Severity>,
}

/// Tuning for [`AdvisoryDb::load_with`].
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Parser threads; 0 = available parallelism.
    pub threads: usize,
}

/// Loaded advisories, indexed by (package, release).
#[derive(Clone, Debug, Default)]
pub struct AdvisoryDb {
    advisories: Vec<Advisory>,
    index: HashMap<String, Vec<Affected>>,
    /// What was loaded (paths, comma-separated).
    pub source: String,
    /// Advisory files read.
    pub files: usize,
    /// Files in the advisory directories that are not `*.json` (skipped).
    pub skipped_files: usize,
    pub withdrawn: usize,
    /// `affected[]` entries skipped for being another ecosystem.
    pub other_ecosystems: usize,
    /// Records with no Debian `affected[]` entry (not Debian advisories).
    pub non_debian: usize,
    /// The newest `modified` of any loaded Debian advisory, RFC 3339 UTC.
    pub newest_modified: Option<String>,
    newest_modified_secs: Option<u64>,
    /// SHA-256 of each file read (for [`AdvisoryDb::set_digest`]).
    file_digests: Vec<[u8; 32]>,
    /// When loading finished, RFC 3339 UTC.
    pub loaded_at: String,
    /// The synced feed these came from ([`crate::feed::load_current`]).
    pub feed: Option<crate::feed::FeedRecord>,
}

/// What matching an inventory produced.
#[derive(Clone, Debug, Default)]
pub struct MatchResult {
    pub vulnerabilities: Vec<Vuln>,
    pub notes: Vec<String>,
}

impl AdvisoryDb {
    /// Load every advisory under `paths` (files or directories).
    pub fn load(paths: &[PathBuf]) -> Result<AdvisoryDb> {
        AdvisoryDb::load_with(paths, &LoadOptions::default())
    }

    pub fn load_with(paths: &[PathBuf], opts: &LoadOptions) -> Result<AdvisoryDb> {
        let mut files = Vec::new();
        let mut skipped = 0;
        for p in paths {
            collect_json(p, &mut files, &mut skipped)?;
        }
        files.sort();
        let threads = match opts.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
        .min(files.len().max(1));
        let chunk = files.len().div_ceil(threads).max(1);
        let parsed: Vec<Result<Vec<Parsed>>> = std::thread::scope(|s| {
            let handles: Vec<_> = files
                .chunks(chunk)
                .map(|c| {
                    s.spawn(move || {
                        let mut out = Vec::with_capacity(c.len());
                        for f in c {
                            let bytes = read_advisory_file(f)?;
                            out.push(parse_file(&bytes, &f.display().to_string())?);
                        }
                        Ok(out)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(ScanError::Advisory {
                            file: "<loader>".into(),
                            message: "advisory parser thread panicked".into(),
                        })
                    })
                })
                .collect()
        });
        let mut db = AdvisoryDb {
            source: paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(","),
            skipped_files: skipped,
            ..AdvisoryDb::default()
        };
        for chunk in parsed {
            for p in chunk? {
                db.files += 1;
                db.merge(p);
            }
        }
        db.loaded_at = kiln_oci::time::rfc3339_millis(SystemTime::now());
        Ok(db)
    }

    /// Add the records of one file's bytes (`file` names it in errors).
    pub fn add_json(&mut self, bytes: &[u8], file: &str) -> Result<()> {
        let p = parse_file(bytes, file)?;
        self.files += 1;
        self.merge(p);
        if self.loaded_at.is_empty() {
            self.loaded_at = kiln_oci::time::rfc3339_millis(SystemTime::now());
        }
        Ok(())
    }

    fn merge(&mut self, p: Parsed) {
        self.withdrawn += p.withdrawn;
        self.other_ecosystems += p.other_ecosystems;
        self.non_debian += p.non_debian;
        self.file_digests.push(p.sha256);
        for (adv, secs, affected) in p.records {
            if self.newest_modified_secs.is_none_or(|n| secs > n) {
                self.newest_modified_secs = Some(secs);
                self.newest_modified = Some(kiln_oci::time::rfc3339(secs));
            }
            let idx = self.advisories.len();
            self.advisories.push(adv);
            for (name, mut a) in affected {
                a.advisory = idx;
                self.index.entry(name).or_default().push(a);
            }
        }
    }

    /// Number of (non-withdrawn) Debian advisories loaded.
    pub fn len(&self) -> usize {
        self.advisories.len()
    }

    pub fn is_empty(&self) -> bool {
        self.advisories.is_empty()
    }

    pub fn advisories(&self) -> &[Advisory] {
        &self.advisories
    }

    /// Unix seconds of [`AdvisoryDb::newest_modified`].
    pub fn newest_modified_secs(&self) -> Option<u64> {
        self.newest_modified_secs
    }

    /// `sha256:<hex>` identifying the set of files read (see the module
    /// documentation, [`SET_DIGEST_ALGORITHM`]).
    pub fn set_digest(&self) -> String {
        let mut lines: Vec<String> = self.file_digests.iter().map(hex::encode).collect();
        lines.sort_unstable();
        let mut h = Sha256::new();
        for l in &lines {
            h.update(l.as_bytes());
            h.update(b"\n");
        }
        format!("sha256:{}", hex::encode(h.finalize()))
    }

    /// The Debian releases the loaded advisories name (`None` for a bare
    /// `Debian` ecosystem).
    pub fn releases(&self) -> BTreeSet<Option<String>> {
        self.advisories
            .iter()
            .flat_map(|a| a.releases.iter().cloned())
            .collect()
    }

    /// The advisories that apply to an image of `release` (`None`: unknown,
    /// every Debian advisory applies) and the newest `modified` among them.
    pub fn applicable(&self, release: Option<&str>) -> Applicable {
        let mut out = Applicable::default();
        for a in self.advisories.iter().filter(|a| a.applies_to(release)) {
            out.count += 1;
            if out.newest_modified_secs.is_none_or(|n| a.modified_secs > n) {
                out.newest_modified_secs = Some(a.modified_secs);
            }
        }
        out.newest_modified = out.newest_modified_secs.map(kiln_oci::time::rfc3339);
        out
    }

    /// Match every package of `inv` (see the module documentation).
    pub fn match_inventory(&self, inv: &Inventory) -> MatchResult {
        let mut out = MatchResult::default();
        let release = inv.debian_release();
        match release {
            Some(r) => out
                .notes
                .push(format!("matching Debian:{r} advisories (from os-release)")),
            None => out.notes.push(
                "the image's Debian release is unknown (no os-release saying debian): \
                 advisories of every Debian:* release were matched"
                    .to_string(),
            ),
        }
        for pkg in &inv.packages {
            let Some(entries) = self.index.get(&pkg.source_name) else {
                continue;
            };
            let v = match DebVersion::parse(&pkg.source_version) {
                Ok(v) => v,
                Err(e) => {
                    out.notes
                        .push(format!("package {}: not matched: {e}", pkg.name));
                    continue;
                }
            };
            // advisory index → (fixed max, bounded by last_affected, entry severity)
            let mut hits: Vec<(usize, Hit)> = Vec::new();
            for a in entries {
                if let (Some(want), Some(have)) = (release, a.release.as_deref())
                    && want != have
                {
                    continue;
                }
                let Some(h) = evaluate(a, &v) else { continue };
                match hits.iter_mut().find(|(i, _)| *i == a.advisory) {
                    Some((_, prev)) => prev.merge(h),
                    None => hits.push((a.advisory, h)),
                }
            }
            for (i, h) in hits {
                let Some(adv) = self.advisories.get(i) else {
                    continue;
                };
                let severity = if adv.severity == Severity::Unknown {
                    h.severity.unwrap_or(Severity::Unknown)
                } else {
                    adv.severity
                };
                let state = if h.fixed.is_some() || h.bounded {
                    VulnState::Vulnerable
                } else {
                    VulnState::Unfixed
                };
                out.vulnerabilities.push(Vuln {
                    id: adv.id.clone(),
                    aliases: adv.aliases.clone(),
                    package: pkg.name.clone(),
                    source: pkg.source_name.clone(),
                    installed: pkg.version.clone(),
                    source_version: pkg.source_version.clone(),
                    fixed: h.fixed.map(|f| f.as_str().to_string()),
                    state,
                    severity,
                    summary: adv.summary.clone(),
                    status_file: pkg.status_file.clone(),
                });
            }
        }
        out.vulnerabilities.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| a.id.cmp(&b.id))
                .then_with(|| a.package.cmp(&b.package))
        });
        out
    }
}

#[derive(Debug)]
struct Hit {
    fixed: Option<DebVersion>,
    bounded: bool,
    severity: Option<Severity>,
}

impl Hit {
    fn merge(&mut self, o: Hit) {
        if let Some(f) = o.fixed
            && self.fixed.as_ref().is_none_or(|s| f > *s)
        {
            self.fixed = Some(f);
        }
        self.bounded |= o.bounded;
        self.severity = self.severity.max(o.severity);
    }
}

/// Whether `v` is affected by entry `a`, and how.
fn evaluate(a: &Affected, v: &DebVersion) -> Option<Hit> {
    let mut result: Option<Hit> = None;
    for events in &a.ranges {
        let mut affected = false;
        for e in events {
            match e {
                Event::Introduced(None) => affected = true,
                Event::Introduced(Some(x)) if x <= v => affected = true,
                Event::Fixed(x) | Event::Limit(x) if x <= v => affected = false,
                Event::LastAffected(x) if x < v => affected = false,
                _ => {}
            }
        }
        if !affected {
            continue;
        }
        let fixed = events.iter().find_map(|e| match e {
            Event::Fixed(x) if x > v => Some(x.clone()),
            _ => None,
        });
        let bounded = events
            .iter()
            .any(|e| matches!(e, Event::LastAffected(x) if x >= v));
        let h = Hit {
            fixed,
            bounded,
            severity: a.severity,
        };
        match &mut result {
            Some(r) => r.merge(h),
            None => result = Some(h),
        }
    }
    if result.is_none() && a.versions.iter().any(|x| x == v) {
        result = Some(Hit {
            fixed: None,
            bounded: false,
            severity: a.severity,
        });
    }
    result
}

fn collect_json(p: &Path, out: &mut Vec<PathBuf>, skipped: &mut usize) -> Result<()> {
    let md = std::fs::metadata(p).map_err(|e| ScanError::io(p, e))?;
    if md.is_dir() {
        let rd = std::fs::read_dir(p).map_err(|e| ScanError::io(p, e))?;
        for e in rd {
            let e = e.map_err(|e| ScanError::io(p, e))?;
            let path = e.path();
            let ft = e.file_type().map_err(|e| ScanError::io(&path, e))?;
            if ft.is_dir() {
                collect_json(&path, out, skipped)?;
            } else if path.extension().is_some_and(|x| x == "json") {
                out.push(path);
            } else {
                *skipped += 1;
            }
        }
    } else {
        out.push(p.to_path_buf());
    }
    Ok(())
}

/// One advisory file's bytes: a regular file (opened without blocking, so a
/// FIFO cannot hang the scan) of at most [`MAX_ADVISORY_FILE`] bytes.
fn read_advisory_file(path: &Path) -> Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let invalid = |m: String| {
        ScanError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, m),
        )
    };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| ScanError::io(path, e))?;
    let md = f.metadata().map_err(|e| ScanError::io(path, e))?;
    if !md.is_file() {
        return Err(invalid("not a regular file".into()));
    }
    if md.len() > MAX_ADVISORY_FILE {
        return Err(invalid(format!(
            "{} bytes: larger than the {MAX_ADVISORY_FILE}-byte limit for an advisory file",
            md.len()
        )));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(md.len()).unwrap_or(0));
    f.take(MAX_ADVISORY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ScanError::io(path, e))?;
    if bytes.len() as u64 > MAX_ADVISORY_FILE {
        return Err(invalid(format!(
            "grew past the {MAX_ADVISORY_FILE}-byte limit for an advisory file while read"
        )));
    }
    Ok(bytes)
}

/// One file's records: (advisory, modified secs, [(package, entry)]).
type ParsedRecord = (Advisory, u64, Vec<(String, Affected)>);

struct Parsed {
    records: Vec<ParsedRecord>,
    withdrawn: usize,
    other_ecosystems: usize,
    non_debian: usize,
    sha256: [u8; 32],
}

#[derive(Deserialize)]
struct RawRecord {
    id: String,
    modified: String,
    #[serde(default)]
    withdrawn: Option<String>,
    #[serde(default)]
    aliases: Option<Vec<String>>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    severity: Option<Vec<RawSeverity>>,
    #[serde(default)]
    affected: Option<Vec<RawAffected>>,
    #[serde(default)]
    database_specific: Option<Value>,
}

#[derive(Deserialize)]
struct RawSeverity {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

#[derive(Deserialize)]
struct RawAffected {
    #[serde(default)]
    package: Option<RawPackage>,
    #[serde(default)]
    ranges: Option<Vec<RawRange>>,
    #[serde(default)]
    versions: Option<Vec<String>>,
    #[serde(default)]
    ecosystem_specific: Option<Value>,
    #[serde(default)]
    database_specific: Option<Value>,
}

#[derive(Deserialize)]
struct RawPackage {
    ecosystem: String,
    name: String,
}

#[derive(Deserialize)]
struct RawRange {
    #[serde(rename = "type")]
    kind: String,
    events: Vec<RawEvent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    #[serde(default)]
    introduced: Option<String>,
    #[serde(default)]
    fixed: Option<String>,
    #[serde(default)]
    last_affected: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

fn parse_file(bytes: &[u8], file: &str) -> Result<Parsed> {
    let err = |message: String| ScanError::Advisory {
        file: file.to_string(),
        message,
    };
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    let raws: Vec<RawRecord> = match first {
        None => return Err(err("empty file".into())),
        Some(b'[') => serde_json::from_slice(bytes).map_err(|e| err(e.to_string()))?,
        Some(b'{') => vec![serde_json::from_slice(bytes).map_err(|e| err(e.to_string()))?],
        Some(_) => {
            return Err(err(
                "not an OSV record (JSON object) or array of records".into()
            ));
        }
    };
    let mut out = Parsed {
        records: Vec::with_capacity(raws.len()),
        withdrawn: 0,
        other_ecosystems: 0,
        non_debian: 0,
        sha256: Sha256::digest(bytes).into(),
    };
    for (n, r) in raws.into_iter().enumerate() {
        let at = |m: String| err(format!("record {n} ({:?}): {m}", r.id));
        if r.id.trim().is_empty() {
            return Err(err(format!("record {n}: empty id")));
        }
        let secs = parse_time(&r.modified)
            .ok_or_else(|| at(format!("modified {:?} is not an RFC 3339 time", r.modified)))?;
        if r.withdrawn.is_some() {
            out.withdrawn += 1;
            continue;
        }
        let mut affected = Vec::new();
        for (ai, a) in r.affected.iter().flatten().enumerate() {
            let Some(pkg) = &a.package else {
                out.other_ecosystems += 1;
                continue;
            };
            let release = match pkg.ecosystem.split_once(':') {
                Some(("Debian", rel)) if !rel.is_empty() => Some(rel.to_string()),
                None if pkg.ecosystem == "Debian" => None,
                _ => {
                    out.other_ecosystems += 1;
                    continue;
                }
            };
            if pkg.name.trim().is_empty() {
                return Err(at(format!("affected[{ai}]: empty package name")));
            }
            let ver = |s: &str, what: &str| {
                DebVersion::parse(s).map_err(|e| at(format!("affected[{ai}]: {what}: {e}")))
            };
            let mut ranges = Vec::new();
            for (ri, range) in a.ranges.iter().flatten().enumerate() {
                if range.kind != "ECOSYSTEM" {
                    continue;
                }
                let mut events = Vec::with_capacity(range.events.len());
                for (ei, e) in range.events.iter().enumerate() {
                    let what = format!("ranges[{ri}].events[{ei}]");
                    let ev = match (&e.introduced, &e.fixed, &e.last_affected, &e.limit) {
                        (Some(x), None, None, None) if x == "0" => Event::Introduced(None),
                        (Some(x), None, None, None) => Event::Introduced(Some(ver(x, &what)?)),
                        (None, Some(x), None, None) => Event::Fixed(ver(x, &what)?),
                        (None, None, Some(x), None) => Event::LastAffected(ver(x, &what)?),
                        (None, None, None, Some(x)) => Event::Limit(ver(x, &what)?),
                        _ => {
                            return Err(at(format!(
                                "affected[{ai}].{what}: must have exactly one of \
                                 introduced, fixed, last_affected, limit"
                            )));
                        }
                    };
                    events.push(ev);
                }
                if !events.iter().any(|e| matches!(e, Event::Introduced(_))) {
                    return Err(at(format!(
                        "affected[{ai}].ranges[{ri}]: no introduced event"
                    )));
                }
                // Stable sort: "0" first, then by version.
                events.sort_by(|x, y| match (x.version(), y.version()) {
                    (None, None) => std::cmp::Ordering::Equal,
                    (None, Some(_)) => std::cmp::Ordering::Less,
                    (Some(_), None) => std::cmp::Ordering::Greater,
                    (Some(a), Some(b)) => a.cmp(b),
                });
                ranges.push(events);
            }
            let mut versions = Vec::new();
            for (vi, s) in a.versions.iter().flatten().enumerate() {
                versions.push(ver(s, &format!("versions[{vi}]"))?);
            }
            let severity = word_at(&a.ecosystem_specific, "urgency")
                .or_else(|| word_at(&a.ecosystem_specific, "severity"))
                .or_else(|| word_at(&a.database_specific, "severity"))
                .filter(|s| *s != Severity::Unknown);
            affected.push((
                pkg.name.clone(),
                Affected {
                    advisory: 0,
                    release,
                    ranges,
                    versions,
                    severity,
                },
            ));
        }
        if affected.is_empty() {
            out.non_debian += 1;
            continue;
        }
        let mut releases: Vec<Option<String>> =
            affected.iter().map(|(_, a)| a.release.clone()).collect();
        releases.sort();
        releases.dedup();
        let severity = record_severity(&r);
        out.records.push((
            Advisory {
                summary: r
                    .summary
                    .clone()
                    .or_else(|| {
                        r.details
                            .as_ref()
                            .and_then(|d| d.lines().next().map(str::to_string))
                    })
                    .unwrap_or_default(),
                aliases: r.aliases.clone().unwrap_or_default(),
                modified: r.modified.clone(),
                severity,
                file: file.to_string(),
                modified_secs: secs,
                releases,
                id: r.id,
            },
            secs,
            affected,
        ));
    }
    Ok(out)
}

fn word_at(v: &Option<Value>, key: &str) -> Option<Severity> {
    v.as_ref()?.get(key)?.as_str().and_then(Severity::parse)
}

fn record_severity(r: &RawRecord) -> Severity {
    if let Some(s) = word_at(&r.database_specific, "severity")
        && s != Severity::Unknown
    {
        return s;
    }
    let mut best: Option<Severity> = None;
    for s in r.severity.iter().flatten() {
        let score = s.score.trim();
        let sev = if s.kind == "CVSS_V3" || score.starts_with("CVSS:3.") {
            crate::cvss::cvss3_base_score(score).map(Severity::from_score)
        } else if let Ok(n) = score.parse::<f64>() {
            (0.0..=10.0).contains(&n).then(|| Severity::from_score(n))
        } else {
            Severity::parse(score)
        };
        best = best.max(sev);
    }
    best.unwrap_or(Severity::Unknown)
}

/// Unix seconds of an RFC 3339 time (`Z` or `±hh:mm` offset).
pub fn parse_time(s: &str) -> Option<u64> {
    if let Some(t) = kiln_oci::time::parse_utc(s) {
        return (s.len() > 10).then_some(t);
    }
    let n = s.len();
    if n < 25 || !s.is_char_boundary(n - 6) {
        return None;
    }
    let (base, off) = s.split_at(n - 6);
    let ob = off.as_bytes();
    let sign = match ob[0] {
        b'+' => 1i64,
        b'-' => -1,
        _ => return None,
    };
    if ob[3] != b':' {
        return None;
    }
    let hh: i64 = off.get(1..3)?.parse().ok()?;
    let mm: i64 = off.get(4..6)?.parse().ok()?;
    if hh > 23 || mm > 59 {
        return None;
    }
    let t = kiln_oci::time::parse_utc(&format!("{base}Z"))? as i64;
    u64::try_from(t - sign * (hh * 3600 + mm * 60)).ok()
}
