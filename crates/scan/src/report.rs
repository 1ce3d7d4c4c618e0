//! The scan report, its forms (table, JSON, SARIF 2.1.0), and the gate.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Severity;
use crate::baseline::{Finding, baseline_findings};
use crate::inventory::{Inventory, Package};
use crate::osv::AdvisoryDb;
use crate::vex::{Suppressed, VexSummary};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VulnState {
    /// Affected, and a fixed version exists (named in `fixed`, or implied by
    /// a `last_affected` bound).
    Vulnerable,
    /// Affected, and no fix is known.
    Unfixed,
}

/// One advisory affecting one installed binary package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vuln {
    pub id: String,
    pub aliases: Vec<String>,
    /// Binary package name.
    pub package: String,
    /// Source package name (what the advisory names).
    pub source: String,
    /// Installed binary version.
    pub installed: String,
    /// Source version the match was made on.
    pub source_version: String,
    pub fixed: Option<String>,
    pub state: VulnState,
    pub severity: Severity,
    pub summary: String,
    /// dpkg status file the package came from (SARIF location).
    #[serde(default)]
    pub status_file: String,
}

/// The advisory set a scan used.
///
/// `count` and `newest_modified` are about the advisories that apply to the
/// image's Debian release (every Debian advisory when the release is
/// unknown): the data the scan really matched against. The age of a scan's
/// data is measured from `newest_modified`, never from `loaded_at` (when the
/// files were read says nothing about how current they are).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvisorySummary {
    /// What was loaded (paths, comma-separated).
    pub source: String,
    /// `sha256:<hex>` over the files read ([`crate::osv::SET_DIGEST_ALGORITHM`]).
    #[serde(default)]
    pub digest: String,
    #[serde(default)]
    pub digest_algorithm: String,
    /// Advisory files read, and other files skipped in the directories.
    #[serde(default)]
    pub files: usize,
    #[serde(default)]
    pub skipped_files: usize,
    /// Debian advisories loaded (any release).
    #[serde(default)]
    pub loaded: usize,
    /// The image's Debian release the advisories were selected for (`None`:
    /// unknown, every release applied).
    #[serde(default)]
    pub release: Option<String>,
    /// Advisories that apply to the image's release.
    pub count: usize,
    /// The newest `modified` of those, RFC 3339 UTC.
    pub newest_modified: Option<String>,
    /// Records skipped: withdrawn, or with no Debian entry.
    #[serde(default)]
    pub withdrawn: usize,
    #[serde(default)]
    pub non_debian: usize,
    /// When the files were read (informational only).
    pub loaded_at: String,
    /// The synced feed the advisories came from (`kiln advisories sync`):
    /// its URL, archive digest and fetch time. Absent for `--advisories`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed: Option<crate::feed::FeedRecord>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub critical: usize,
    pub high: usize,
    pub medium: usize,
    pub low: usize,
    pub unknown: usize,
}

impl Counts {
    fn add(&mut self, s: Severity) {
        match s {
            Severity::Critical => self.critical += 1,
            Severity::High => self.high += 1,
            Severity::Medium => self.medium += 1,
            Severity::Low => self.low += 1,
            Severity::Unknown => self.unknown += 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanReport {
    pub image: String,
    pub digest: Option<String>,
    pub advisories: AdvisorySummary,
    pub packages: Vec<Package>,
    pub vulnerabilities: Vec<Vuln>,
    pub findings: Vec<Finding>,
    /// Vulnerabilities and findings together, by severity.
    pub counts: Counts,
    /// How matching went (release used, unparseable versions, …).
    #[serde(default)]
    pub notes: Vec<String>,
    /// Vulnerabilities a VEX statement suppressed (`kiln scan --vex`): not
    /// counted, not judged by the gate, and listed with the statement.
    #[serde(default)]
    pub suppressed: Vec<Suppressed>,
    /// The VEX document applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vex: Option<VexSummary>,
}

/// Scan `inv` against `db`: vulnerabilities plus baseline findings.
pub fn scan(inv: &Inventory, db: &AdvisoryDb) -> ScanReport {
    let m = db.match_inventory(inv);
    let findings = baseline_findings(inv);
    let mut notes = m.notes;
    notes.extend(inv.warnings.iter().cloned());
    ScanReport::new(inv, db, m.vulnerabilities, findings, notes)
}

fn location_uri(path: &str) -> String {
    let p = path.trim_start_matches('/');
    if p.is_empty() {
        crate::inventory::STATUS_PATH.to_string()
    } else {
        p.to_string()
    }
}

fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Unknown => "note",
    }
}

/// GitHub code scanning's `security-severity` (a CVSS-like number).
fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "2.0",
        Severity::Unknown => "0.0",
    }
}

impl ScanReport {
    pub fn new(
        inv: &Inventory,
        db: &AdvisoryDb,
        vulnerabilities: Vec<Vuln>,
        findings: Vec<Finding>,
        notes: Vec<String>,
    ) -> ScanReport {
        let mut counts = Counts::default();
        for v in &vulnerabilities {
            counts.add(v.severity);
        }
        for f in &findings {
            counts.add(f.severity);
        }
        let release = inv.debian_release();
        let applicable = db.applicable(release);
        ScanReport {
            image: inv.image.clone(),
            digest: inv.digest.map(|d| d.to_string()),
            advisories: AdvisorySummary {
                source: db.source.clone(),
                digest: db.set_digest(),
                digest_algorithm: crate::osv::SET_DIGEST_ALGORITHM.to_string(),
                files: db.files,
                skipped_files: db.skipped_files,
                loaded: db.len(),
                release: release.map(str::to_string),
                count: applicable.count,
                newest_modified: applicable.newest_modified,
                withdrawn: db.withdrawn,
                non_debian: db.non_debian,
                loaded_at: db.loaded_at.clone(),
                feed: db.feed.clone(),
            },
            packages: inv.packages.clone(),
            vulnerabilities,
            findings,
            counts,
            notes,
            suppressed: Vec::new(),
            vex: None,
        }
    }

    /// Count the (unsuppressed) vulnerabilities and the findings again.
    pub fn recount(&mut self) {
        let mut counts = Counts::default();
        for v in &self.vulnerabilities {
            counts.add(v.severity);
        }
        for f in &self.findings {
            counts.add(f.severity);
        }
        self.counts = counts;
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// A readable table, grouped by severity (critical first).
    pub fn table(&self) -> String {
        let mut s = String::new();
        let a = &self.advisories;
        let _ = writeln!(
            s,
            "{} {}\n{} packages, {} advisories for {} ({} loaded from {}, newest modified {}, set {})",
            self.image,
            self.digest.as_deref().unwrap_or(""),
            self.packages.len(),
            a.count,
            a.release
                .as_deref()
                .map_or("any Debian release".to_string(), |r| format!("Debian {r}")),
            a.loaded,
            a.source,
            a.newest_modified.as_deref().unwrap_or("-"),
            a.digest,
        );
        if let Some(f) = &a.feed {
            let _ = writeln!(
                s,
                "synced from {}, fetched {}, archive {}",
                f.url, f.fetched_at, f.archive_digest
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        for sev in Severity::ALL_DESC {
            let vulns: Vec<&Vuln> = self
                .vulnerabilities
                .iter()
                .filter(|v| v.severity == sev)
                .collect();
            let finds: Vec<&Finding> = self.findings.iter().filter(|f| f.severity == sev).collect();
            if vulns.is_empty() && finds.is_empty() {
                continue;
            }
            let _ = writeln!(
                s,
                "\n{} ({})",
                sev.as_str().to_ascii_uppercase(),
                vulns.len() + finds.len()
            );
            if !vulns.is_empty() {
                let w_id = vulns.iter().map(|v| v.id.len()).max().unwrap_or(0).max(2);
                let w_pkg = vulns
                    .iter()
                    .map(|v| v.package.len())
                    .max()
                    .unwrap_or(0)
                    .max(7);
                let w_inst = vulns
                    .iter()
                    .map(|v| v.installed.len())
                    .max()
                    .unwrap_or(0)
                    .max(9);
                let w_fix = vulns
                    .iter()
                    .map(|v| v.fixed.as_deref().unwrap_or("-").len())
                    .max()
                    .unwrap_or(0)
                    .max(5);
                let _ = writeln!(
                    s,
                    "  {:w_id$}  {:w_pkg$}  {:w_inst$}  {:w_fix$}  {:10}  SUMMARY",
                    "ID", "PACKAGE", "INSTALLED", "FIXED", "STATE"
                );
                for v in vulns {
                    let state = match v.state {
                        VulnState::Vulnerable => "vulnerable",
                        VulnState::Unfixed => "unfixed",
                    };
                    let _ = writeln!(
                        s,
                        "  {:w_id$}  {:w_pkg$}  {:w_inst$}  {:w_fix$}  {:10}  {}",
                        v.id,
                        v.package,
                        v.installed,
                        v.fixed.as_deref().unwrap_or("-"),
                        state,
                        v.summary
                    );
                }
            }
            for f in finds {
                let _ = writeln!(
                    s,
                    "  {}  {}: {}\n      fix: {}",
                    f.id, f.title, f.detail, f.fix
                );
            }
        }
        if !self.suppressed.is_empty() {
            let _ = writeln!(
                s,
                "\nSUPPRESSED BY VEX ({}, from {})",
                self.suppressed.len(),
                self.vex.as_ref().map_or("?", |v| v.file.as_str())
            );
            for x in &self.suppressed {
                let v = &x.vuln;
                let _ = writeln!(
                    s,
                    "  {}  {} {}  ({})  {}",
                    v.id, v.package, v.installed, v.severity, x.suppression.reason
                );
            }
        }
        let c = &self.counts;
        let _ = writeln!(
            s,
            "\n{} vulnerabilities, {} findings: {} critical, {} high, {} medium, {} low, {} unknown",
            self.vulnerabilities.len(),
            self.findings.len(),
            c.critical,
            c.high,
            c.medium,
            c.low,
            c.unknown
        );
        if !self.suppressed.is_empty() {
            let _ = writeln!(
                s,
                "{} suppressed by VEX (listed above, not counted)",
                self.suppressed.len()
            );
        }
        s
    }

    /// SARIF 2.1.0: one run, tool `kiln`, a rule per advisory/finding id.
    pub fn sarif(&self) -> Value {
        let mut rules: Vec<Value> = Vec::new();
        let mut rule_ids: Vec<String> = Vec::new();
        let mut rule_index =
            |id: &str, rule: &dyn Fn() -> Value, rules: &mut Vec<Value>| match rule_ids
                .iter()
                .position(|r| r == id)
            {
                Some(i) => i,
                None => {
                    rule_ids.push(id.to_string());
                    rules.push(rule());
                    rules.len() - 1
                }
            };
        let mut results = Vec::new();
        let all = self.vulnerabilities.iter().map(|v| (v, None)).chain(
            self.suppressed
                .iter()
                .map(|x| (&x.vuln, Some(&x.suppression))),
        );
        for (v, suppression) in all {
            let idx = rule_index(
                &v.id,
                &|| {
                    json!({
                        "id": v.id,
                        "name": v.id,
                        "shortDescription": { "text": if v.summary.is_empty() { v.id.clone() } else { v.summary.clone() } },
                        "helpUri": format!("https://osv.dev/vulnerability/{}", v.id),
                        "help": { "text": format!("Advisory {} affects source package {}.", v.id, v.source) },
                        "defaultConfiguration": { "level": sarif_level(v.severity) },
                        "properties": {
                            "security-severity": security_severity(v.severity),
                            "tags": ["security", "vulnerability"],
                            "aliases": v.aliases,
                        }
                    })
                },
                &mut rules,
            );
            let text = match (&v.fixed, v.state) {
                (Some(f), _) => format!(
                    "{} {} ({} {}) is affected by {}; fixed in {f}",
                    v.package, v.installed, v.source, v.source_version, v.id
                ),
                (None, VulnState::Vulnerable) => format!(
                    "{} {} ({} {}) is affected by {}; later versions are not",
                    v.package, v.installed, v.source, v.source_version, v.id
                ),
                (None, VulnState::Unfixed) => format!(
                    "{} {} ({} {}) is affected by {}; no fix is available",
                    v.package, v.installed, v.source, v.source_version, v.id
                ),
            };
            let mut result = json!({
                "ruleId": v.id,
                "ruleIndex": idx,
                "level": sarif_level(v.severity),
                "message": { "text": text },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": location_uri(&v.status_file) }
                    },
                    "logicalLocations": [{ "name": v.package, "kind": "package" }]
                }],
                "properties": {
                    "package": v.package, "source": v.source, "installed": v.installed,
                    "fixed": v.fixed, "state": v.state, "severity": v.severity,
                }
            });
            if let (Some(x), Some(o)) = (suppression, result.as_object_mut()) {
                o.insert(
                    "suppressions".into(),
                    json!([{
                        "kind": "external",
                        "status": "accepted",
                        "justification": x.reason,
                        "properties": x,
                    }]),
                );
            }
            results.push(result);
        }
        for f in &self.findings {
            let idx = rule_index(
                &f.id,
                &|| {
                    json!({
                        "id": f.id,
                        "name": f.title,
                        "shortDescription": { "text": f.title },
                        "help": { "text": f.fix },
                        "defaultConfiguration": { "level": sarif_level(f.severity) },
                        "properties": {
                            "security-severity": security_severity(f.severity),
                            "tags": ["security", "baseline"],
                        }
                    })
                },
                &mut rules,
            );
            let uri = f
                .path
                .as_deref()
                .map(location_uri)
                .unwrap_or_else(|| "image-config.json".to_string());
            results.push(json!({
                "ruleId": f.id,
                "ruleIndex": idx,
                "level": sarif_level(f.severity),
                "message": { "text": format!("{} Fix: {}", f.detail, f.fix) },
                "locations": [{
                    "physicalLocation": { "artifactLocation": { "uri": uri } }
                }],
            }));
        }
        let mut out = json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [{
                "tool": {
                    "driver": {
                        "name": "kiln",
                        "version": env!("CARGO_PKG_VERSION"),
                        "informationUri": "https://example.invalid/kiln",
                        "rules": rules,
                    }
                },
                "results": results,
                "properties": {
                    "image": self.image,
                    "digest": self.digest,
                    "advisories": self.advisories,
                }
            }]
        });
        if let Some(vex) = &self.vex
            && let Some(p) = out["runs"][0]["properties"].as_object_mut()
        {
            p.insert("vex".into(), json!(vex));
        }
        out
    }
}

/// The scan gate policy.
///
/// * A scan that could not see anything fails, whatever else is set
///   ([`Gate::refusals`]): no advisory applies to the image (none loaded, or
///   none for its Debian release) unless `allow_empty_advisories`; the image
///   has no dpkg packages unless `allow_no_packages`.
/// * `fail_on`: a vulnerability in state `vulnerable` with severity at or
///   above this fails the gate.
/// * `fail_unfixed`: `unfixed` vulnerabilities count too (at or above
///   `fail_on`; every unfixed one when `fail_on` is `None`).
/// * `fail_findings`: baseline findings that fail, each entry a finding id
///   (`KILN-BASE-006`) or a severity (`high` = high and above).
/// * `max_advisory_age_hours`: the advisory data must be this fresh: its age
///   is now − the newest `modified` of the advisories that apply to the
///   image. With no such advisory its age is unknown and the gate fails; a
///   newest `modified` more than [`MAX_CLOCK_SKEW_SECS`] in the future fails
///   too (the data or the clock is wrong, and the age would mean nothing).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gate {
    #[serde(default)]
    pub fail_on: Option<Severity>,
    #[serde(default)]
    pub fail_unfixed: bool,
    #[serde(default)]
    pub fail_findings: Vec<String>,
    #[serde(default)]
    pub max_advisory_age_hours: Option<u64>,
    #[serde(default)]
    pub allow_empty_advisories: bool,
    #[serde(default)]
    pub allow_no_packages: bool,
}

/// How far in the future an advisory's `modified` may be before the age
/// check refuses the data.
pub const MAX_CLOCK_SKEW_SECS: u64 = 3600;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub pass: bool,
    pub reasons: Vec<String>,
}

impl Gate {
    pub fn evaluate(&self, report: &ScanReport) -> Verdict {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.evaluate_at(report, now)
    }

    /// Why the scan saw nothing it could judge by (and the gate does not
    /// allow that): these fail the gate, and `kiln scan` refuses to report
    /// or attest such a scan at all.
    pub fn refusals(&self, report: &ScanReport) -> Vec<String> {
        let mut out = Vec::new();
        let a = &report.advisories;
        if a.count == 0 && !self.allow_empty_advisories {
            out.push(if a.loaded == 0 {
                format!(
                    "no advisories loaded from {} ({} advisory file(s) read, {} other file(s) skipped, \
                     {} withdrawn record(s), {} record(s) without a Debian entry): a scan against \
                     no advisories finds nothing (--allow-empty-advisories accepts that)",
                    if a.source.is_empty() { "<nothing>" } else { &a.source },
                    a.files,
                    a.skipped_files,
                    a.withdrawn,
                    a.non_debian
                )
            } else {
                format!(
                    "none of the {} Debian advisories loaded from {} applies to Debian {} \
                     (the image's release): a scan against no advisories finds nothing \
                     (--allow-empty-advisories accepts that)",
                    a.loaded,
                    a.source,
                    a.release.as_deref().unwrap_or("?"),
                )
            });
        }
        if report.packages.is_empty() && !self.allow_no_packages {
            out.push(
                "the image has no installed dpkg packages (no /var/lib/dpkg/status or \
                 status.d entries): there is nothing to match advisories against \
                 (--allow-no-packages accepts that)"
                    .to_string(),
            );
        }
        out
    }

    /// [`Gate::evaluate`] with `now` in Unix seconds.
    pub fn evaluate_at(&self, report: &ScanReport, now: u64) -> Verdict {
        let mut reasons = self.refusals(report);
        for v in &report.vulnerabilities {
            let counts = match v.state {
                VulnState::Vulnerable => self.fail_on.is_some_and(|t| v.severity >= t),
                VulnState::Unfixed => {
                    self.fail_unfixed && self.fail_on.is_none_or(|t| v.severity >= t)
                }
            };
            if counts {
                reasons.push(match &v.fixed {
                    Some(f) => format!(
                        "{} ({}) in {} {}: fixed in {f}",
                        v.id, v.severity, v.package, v.installed
                    ),
                    None => format!(
                        "{} ({}) in {} {}: {}",
                        v.id,
                        v.severity,
                        v.package,
                        v.installed,
                        if v.state == VulnState::Unfixed {
                            "no fix available"
                        } else {
                            "affected"
                        }
                    ),
                });
            }
        }
        for f in &report.findings {
            let hit = self.fail_findings.iter().any(|rule| {
                rule.eq_ignore_ascii_case(&f.id)
                    || Severity::parse(rule).is_some_and(|t| f.severity >= t)
            });
            if hit {
                reasons.push(format!(
                    "{} ({}): {}{}",
                    f.id,
                    f.severity,
                    f.detail,
                    f.path
                        .as_deref()
                        .map(|p| format!(" [{p}]"))
                        .unwrap_or_default()
                ));
            }
        }
        if let Some(max) = self.max_advisory_age_hours {
            let stamp = report.advisories.newest_modified.as_deref();
            match stamp.and_then(crate::osv::parse_time) {
                None => reasons.push(format!(
                    "--max-advisory-age-hours {max}: no advisory applies to the image, so the \
                     age of the data is unknown"
                )),
                Some(t) if t > now.saturating_add(MAX_CLOCK_SKEW_SECS) => reasons.push(format!(
                    "the newest advisory was modified {} — in the future; the data or this \
                     machine's clock is wrong, so its age is unknown",
                    stamp.unwrap_or("")
                )),
                Some(t) => {
                    let age = now.saturating_sub(t);
                    if age > max.saturating_mul(3600) {
                        reasons.push(format!(
                            "the advisory data is {} hours old (newest record modified {}); at most {max} allowed",
                            age / 3600,
                            stamp.unwrap_or("")
                        ));
                    }
                }
            }
        }
        Verdict {
            pass: reasons.is_empty(),
            reasons,
        }
    }
}
