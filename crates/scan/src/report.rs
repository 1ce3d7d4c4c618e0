//! The scan report, its forms (table, JSON, SARIF 2.1.0), and the gate.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Severity;
use crate::baseline::{Finding, baseline_findings};
use crate::inventory::{Inventory, Package};
use crate::osv::AdvisoryDb;

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
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvisorySummary {
    pub source: String,
    pub count: usize,
    pub newest_modified: Option<String>,
    pub loaded_at: String,
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
        ScanReport {
            image: inv.image.clone(),
            digest: inv.digest.map(|d| d.to_string()),
            advisories: AdvisorySummary {
                source: db.source.clone(),
                count: db.len(),
                newest_modified: db.newest_modified.clone(),
                loaded_at: db.loaded_at.clone(),
            },
            packages: inv.packages.clone(),
            vulnerabilities,
            findings,
            counts,
            notes,
        }
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// A readable table, grouped by severity (critical first).
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} {}\n{} packages, {} advisories from {} (newest modified {}, loaded {})",
            self.image,
            self.digest.as_deref().unwrap_or(""),
            self.packages.len(),
            self.advisories.count,
            self.advisories.source,
            self.advisories.newest_modified.as_deref().unwrap_or("-"),
            self.advisories.loaded_at,
        );
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
        for v in &self.vulnerabilities {
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
            results.push(json!({
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
            }));
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
        json!({
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
        })
    }
}

/// The scan gate policy.
///
/// * `fail_on`: a vulnerability in state `vulnerable` with severity at or
///   above this fails the gate.
/// * `fail_unfixed`: `unfixed` vulnerabilities count too (at or above
///   `fail_on`; every unfixed one when `fail_on` is `None`).
/// * `fail_findings`: baseline findings that fail, each entry a finding id
///   (`KILN-BASE-006`) or a severity (`high` = high and above).
/// * `max_advisory_age_hours`: the advisory set must be this fresh; its age
///   is now − `newest_modified` (or `loaded_at` when no record had one).
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
}

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

    /// [`Gate::evaluate`] with `now` in Unix seconds.
    pub fn evaluate_at(&self, report: &ScanReport, now: u64) -> Verdict {
        let mut reasons = Vec::new();
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
            let stamp = report
                .advisories
                .newest_modified
                .as_deref()
                .or(Some(report.advisories.loaded_at.as_str()))
                .filter(|s| !s.is_empty());
            match stamp.and_then(crate::osv::parse_time) {
                None => reasons.push(
                    "the advisory set has no modification or load time: its age is unknown"
                        .to_string(),
                ),
                Some(t) => {
                    let age_h = now.saturating_sub(t) / 3600;
                    if now.saturating_sub(t) > max.saturating_mul(3600) {
                        reasons.push(format!(
                            "the advisory set is {age_h} hours old (newest record {}); at most {max} allowed",
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
