//! OpenVEX (v0.2.0) statements applied to a scan (`kiln scan --vex FILE`):
//! written-down decisions that a vulnerability does not apply to a package,
//! or that its risk is accepted until a date.
//!
//! Reading ([`load`], [`parse`]): at most 1 MiB, a regular file, parsed
//! strictly: unknown fields are errors, `@context` must be OpenVEX's
//! (`https://openvex.dev/ns…`), times are RFC 3339, and each statement needs
//! a vulnerability (`name`, else `@id`), at least one product and a status
//! (`not_affected`, `affected`, `fixed`, `under_investigation`).
//! `not_affected` needs a `justification` (one of the spec's five values) or
//! an `impact_statement`; `affected` needs an `action_statement`.
//!
//! Products are package URLs (the product's `@id` or `identifiers.purl`):
//! `pkg:deb/<vendor>/<name>[@<version>]` names a package (binary or source
//! name; with a version, the installed binary version or the source
//! version must equal it; qualifiers are ignored), and
//! `pkg:oci/<name>[@sha256:<hex>]` with `subcomponents` that are such
//! `pkg:deb` URLs names packages of one image (with a digest: only that
//! image). Any other product is an error: kiln could not match it.
//!
//! kiln's extension, the statement field [`EXPIRES_FIELD`] (`kiln:expires`,
//! an RFC 3339 time), bounds a statement in time. An *accepted risk* is a
//! statement with status `affected`, an `action_statement` (the reason) and
//! `kiln:expires`; `affected` without an expiry suppresses nothing.
//!
//! Applying ([`apply`]): for each vulnerability the statements naming it
//! (its id or one of its aliases, or one of the statement's aliases) and
//! its package are found; the latest (statement `timestamp`, else the
//! document's; later in the file wins a tie) decides. `not_affected`, or an
//! accepted risk, moves the vulnerability to [`ScanReport::suppressed`] with
//! the statement and a reason: it no longer counts against the gate, and it
//! is still listed in every output and in the attestation. A statement whose
//! `kiln:expires` has passed is not applied, and a note says so; so are
//! `fixed` (kiln's match says the installed version is affected) and
//! `under_investigation`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::osv::parse_time;
use crate::report::{ScanReport, Vuln};

/// kiln's statement field for an expiry.
pub const EXPIRES_FIELD: &str = "kiln:expires";

/// OpenVEX's `justification` values for `not_affected`.
pub const JUSTIFICATIONS: [&str; 5] = [
    "component_not_present",
    "vulnerable_code_not_present",
    "vulnerable_code_not_in_execute_path",
    "vulnerable_code_cannot_be_controlled_by_adversary",
    "inline_mitigations_already_exist",
];

/// A VEX file that cannot be used, naming the file and the statement.
#[derive(Debug, thiserror::Error)]
pub enum VexError {
    #[error("{file}: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    NotAffected,
    Affected,
    Fixed,
    UnderInvestigation,
}

impl Status {
    fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "not_affected" => Status::NotAffected,
            "affected" => Status::Affected,
            "fixed" => Status::Fixed,
            "under_investigation" => Status::UnderInvestigation,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::NotAffected => "not_affected",
            Status::Affected => "affected",
            Status::Fixed => "fixed",
            Status::UnderInvestigation => "under_investigation",
        }
    }
}

/// A package a statement names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `sha256:<hex>` of the image, when the product is a digest-pinned `pkg:oci`.
    pub image: Option<String>,
    pub package: String,
    pub version: Option<String>,
}

/// One statement.
#[derive(Clone, Debug)]
pub struct VexStatement {
    /// Position in the document's `statements`.
    pub index: usize,
    pub id: Option<String>,
    pub vulnerability: String,
    pub aliases: Vec<String>,
    pub targets: Vec<Target>,
    pub status: Status,
    pub justification: Option<String>,
    pub impact_statement: Option<String>,
    pub action_statement: Option<String>,
    pub expires: Option<String>,
    expires_secs: Option<u64>,
    timestamp_secs: u64,
}

/// A parsed OpenVEX document.
#[derive(Clone, Debug)]
pub struct VexDocument {
    /// The file it came from.
    pub file: String,
    pub id: String,
    pub author: String,
    pub timestamp: String,
    /// `sha256:<hex>` of the file's bytes.
    pub digest: String,
    pub statements: Vec<VexStatement>,
}

/// What a report records about the VEX document applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VexSummary {
    pub file: String,
    pub id: String,
    pub author: String,
    pub digest: String,
    pub statements: usize,
}

/// The statement that suppressed a vulnerability.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    pub status: Status,
    /// Why, in one line: the justification or the accepted risk's reason.
    pub reason: String,
    pub justification: Option<String>,
    pub impact_statement: Option<String>,
    pub action_statement: Option<String>,
    pub expires: Option<String>,
    /// The statement's index in the document, and its `@id`.
    pub statement: usize,
    pub statement_id: Option<String>,
    /// The document's `@id`.
    pub document: String,
}

/// A vulnerability a VEX statement suppressed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppressed {
    #[serde(flatten)]
    pub vuln: Vuln,
    pub suppression: Suppression,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDoc {
    #[serde(rename = "@context")]
    context: String,
    #[serde(rename = "@id")]
    id: String,
    author: String,
    #[serde(default)]
    role: Option<String>,
    timestamp: String,
    #[serde(default)]
    last_updated: Option<String>,
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    tooling: Option<String>,
    statements: Vec<RawStatement>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatement {
    #[serde(rename = "@id", default)]
    id: Option<String>,
    #[serde(default)]
    version: Option<u64>,
    vulnerability: RawVuln,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    last_updated: Option<String>,
    #[serde(default)]
    products: Vec<RawProduct>,
    status: String,
    #[serde(default)]
    supplier: Option<String>,
    #[serde(default)]
    status_notes: Option<String>,
    #[serde(default)]
    justification: Option<String>,
    #[serde(default)]
    impact_statement: Option<String>,
    #[serde(default)]
    action_statement: Option<String>,
    #[serde(default)]
    action_statement_timestamp: Option<String>,
    #[serde(rename = "kiln:expires", default)]
    expires: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVuln {
    #[serde(rename = "@id", default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProduct {
    #[serde(rename = "@id", default)]
    id: Option<String>,
    #[serde(default)]
    identifiers: Option<RawIdentifiers>,
    #[serde(default)]
    hashes: Option<Value>,
    #[serde(default)]
    subcomponents: Vec<RawProduct>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentifiers {
    #[serde(default)]
    purl: Option<String>,
    #[serde(default)]
    cpe22: Option<String>,
    #[serde(default)]
    cpe23: Option<String>,
}

/// Read and parse the OpenVEX document at `path`.
pub fn load(path: &Path) -> Result<VexDocument, VexError> {
    let file = path.display().to_string();
    let bytes = kiln_oci::untrusted::read_small(path).map_err(|source| VexError::Read {
        file: file.clone(),
        source,
    })?;
    parse(&bytes, &file)
}

/// A package URL's type, namespace-less name and version (percent-decoded).
fn purl(s: &str) -> Option<(&str, String, Option<String>)> {
    let rest = s.strip_prefix("pkg:")?;
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let (ty, path) = rest.split_once('/')?;
    let (path, version) = match path.rsplit_once('@') {
        Some((p, v)) => (p, Some(decode(v)?)),
        None => (path, None),
    };
    let name = decode(path.rsplit('/').next().unwrap_or(path))?;
    (!name.is_empty() && !ty.is_empty()).then_some((ty, name, version))
}

fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn product_purl(p: &RawProduct) -> Option<&str> {
    p.identifiers
        .as_ref()
        .and_then(|i| i.purl.as_deref())
        .or(p.id.as_deref().filter(|i| i.starts_with("pkg:")))
}

/// Parse an OpenVEX document (`file` names it in errors).
pub fn parse(bytes: &[u8], file: &str) -> Result<VexDocument, VexError> {
    let err = |message: String| VexError::Invalid {
        file: file.to_string(),
        message,
    };
    let raw: RawDoc =
        serde_json::from_slice(bytes).map_err(|e| err(format!("not an OpenVEX document: {e}")))?;
    if !raw.context.starts_with("https://openvex.dev/ns") {
        return Err(err(format!(
            "@context {:?} is not OpenVEX's (https://openvex.dev/ns/v0.2.0)",
            raw.context
        )));
    }
    let time = |s: &str, what: &str| {
        parse_time(s).ok_or_else(|| err(format!("{what} {s:?} is not an RFC 3339 time")))
    };
    let doc_time = time(&raw.timestamp, "timestamp")?;
    if let Some(t) = &raw.last_updated {
        time(t, "last_updated")?;
    }
    let _ = (&raw.role, raw.version, &raw.tooling);
    let mut statements = Vec::with_capacity(raw.statements.len());
    for (n, s) in raw.statements.into_iter().enumerate() {
        let at = |m: String| err(format!("statements[{n}]: {m}"));
        let vulnerability = s
            .vulnerability
            .name
            .clone()
            .or(s.vulnerability.id.clone())
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| at("vulnerability has no name or @id".into()))?;
        let _ = (
            &s.vulnerability.description,
            s.version,
            &s.supplier,
            &s.status_notes,
        );
        let status = Status::parse(&s.status).ok_or_else(|| {
            at(format!(
                "status {:?} is not not_affected, affected, fixed or under_investigation",
                s.status
            ))
        })?;
        let timestamp_secs = match &s.timestamp {
            Some(t) => time(t, &format!("statements[{n}].timestamp"))?,
            None => doc_time,
        };
        for (what, v) in [
            ("last_updated", &s.last_updated),
            ("action_statement_timestamp", &s.action_statement_timestamp),
        ] {
            if let Some(t) = v {
                time(t, &format!("statements[{n}].{what}"))?;
            }
        }
        let expires_secs = match &s.expires {
            Some(t) => Some(time(t, &format!("statements[{n}].{EXPIRES_FIELD}"))?),
            None => None,
        };
        if let Some(j) = &s.justification {
            if status != Status::NotAffected {
                return Err(at(format!(
                    "a justification is for status not_affected, not {}",
                    status.as_str()
                )));
            }
            if !JUSTIFICATIONS.contains(&j.as_str()) {
                return Err(at(format!(
                    "justification {j:?} is not one of {}",
                    JUSTIFICATIONS.join(", ")
                )));
            }
        }
        let nonempty = |o: &Option<String>| o.as_deref().is_some_and(|x| !x.trim().is_empty());
        match status {
            Status::NotAffected if s.justification.is_none() && !nonempty(&s.impact_statement) => {
                return Err(at(
                    "status not_affected needs a justification or an impact_statement".into(),
                ));
            }
            Status::Affected if !nonempty(&s.action_statement) => {
                return Err(at(
                    "status affected needs an action_statement (for an accepted risk: the reason)"
                        .into(),
                ));
            }
            _ => {}
        }
        if s.products.is_empty() {
            return Err(at("no products".into()));
        }
        let mut targets = Vec::new();
        for (pi, p) in s.products.iter().enumerate() {
            let _ = &p.hashes;
            if let Some(i) = &p.identifiers {
                let _ = (&i.cpe22, &i.cpe23);
            }
            let bad = |m: String| at(format!("products[{pi}]: {m}"));
            let Some(u) = product_purl(p) else {
                return Err(bad("no package URL (@id or identifiers.purl)".into()));
            };
            match purl(u) {
                Some(("deb", name, version)) => {
                    if !p.subcomponents.is_empty() {
                        return Err(bad(format!("{u}: a pkg:deb product has no subcomponents")));
                    }
                    targets.push(Target {
                        image: None,
                        package: name,
                        version,
                    });
                }
                Some(("oci", _, digest)) => {
                    if let Some(d) = &digest
                        && !d.starts_with("sha256:")
                    {
                        return Err(bad(format!(
                            "{u}: the version of a pkg:oci URL is a sha256: digest"
                        )));
                    }
                    if p.subcomponents.is_empty() {
                        return Err(bad(format!(
                            "{u} names an image but no package: list the packages as pkg:deb subcomponents"
                        )));
                    }
                    for (si, sub) in p.subcomponents.iter().enumerate() {
                        let su = product_purl(sub).unwrap_or("");
                        match purl(su) {
                            Some(("deb", name, version)) if sub.subcomponents.is_empty() => targets
                                .push(Target {
                                    image: digest.clone(),
                                    package: name,
                                    version,
                                }),
                            _ => {
                                return Err(bad(format!(
                                    "subcomponents[{si}] {su:?} is not a pkg:deb package URL"
                                )));
                            }
                        }
                    }
                }
                _ => {
                    return Err(bad(format!(
                        "{u:?} is not a pkg:deb or pkg:oci package URL (kiln matches Debian packages)"
                    )));
                }
            }
        }
        statements.push(VexStatement {
            index: n,
            id: s.id,
            vulnerability,
            aliases: s.vulnerability.aliases,
            targets,
            status,
            justification: s.justification,
            impact_statement: s.impact_statement,
            action_statement: s.action_statement,
            expires: s.expires,
            expires_secs,
            timestamp_secs,
        });
    }
    Ok(VexDocument {
        file: file.to_string(),
        id: raw.id,
        author: raw.author,
        timestamp: raw.timestamp,
        digest: format!("sha256:{}", hex::encode(Sha256::digest(bytes))),
        statements,
    })
}

impl VexStatement {
    fn names(&self, v: &Vuln) -> bool {
        let mine = std::iter::once(&self.vulnerability).chain(&self.aliases);
        let theirs: Vec<&String> = std::iter::once(&v.id).chain(&v.aliases).collect();
        mine.into_iter().any(|m| theirs.contains(&m))
    }

    fn covers(&self, v: &Vuln, image: Option<&str>) -> bool {
        self.targets.iter().any(|t| {
            (t.package == v.package || t.package == v.source)
                && t.version
                    .as_deref()
                    .is_none_or(|x| x == v.installed || x == v.source_version)
                && t.image.as_deref().is_none_or(|d| Some(d) == image)
        })
    }
}

impl VexDocument {
    /// The statement that decides about `v` in the image of digest `image`.
    pub fn decide(&self, v: &Vuln, image: Option<&str>) -> Option<&VexStatement> {
        self.statements
            .iter()
            .filter(|s| s.names(v) && s.covers(v, image))
            .max_by_key(|s| (s.timestamp_secs, s.index))
    }

    pub fn summary(&self) -> VexSummary {
        VexSummary {
            file: self.file.clone(),
            id: self.id.clone(),
            author: self.author.clone(),
            digest: self.digest.clone(),
            statements: self.statements.len(),
        }
    }
}

/// Apply `doc` to `report` at `now` (Unix seconds): see the module docs.
pub fn apply(report: &mut ScanReport, doc: &VexDocument, now: u64) {
    let vulns = std::mem::take(&mut report.vulnerabilities);
    let image = report.digest.clone();
    for v in vulns {
        let Some(s) = doc.decide(&v, image.as_deref()) else {
            report.vulnerabilities.push(v);
            continue;
        };
        let what = format!(
            "VEX statement {} ({}) for {} in {} {}",
            s.index, s.vulnerability, v.id, v.package, v.installed
        );
        if let (Some(exp), Some(t)) = (&s.expires, s.expires_secs)
            && t <= now
        {
            report.notes.push(format!(
                "{what}: {} expired {exp}; not applied",
                if s.status == Status::Affected {
                    "the accepted risk"
                } else {
                    "the statement"
                }
            ));
            report.vulnerabilities.push(v);
            continue;
        }
        let reason = match s.status {
            Status::NotAffected => format!(
                "not affected: {}",
                [s.justification.as_deref(), s.impact_statement.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(": ")
            ),
            Status::Affected if s.expires.is_some() => format!(
                "accepted risk until {}: {}",
                s.expires.as_deref().unwrap_or(""),
                s.action_statement.as_deref().unwrap_or("")
            ),
            Status::Affected => {
                report.notes.push(format!(
                    "{what}: affected without {EXPIRES_FIELD}; an accepted risk needs an expiry, not applied"
                ));
                report.vulnerabilities.push(v);
                continue;
            }
            Status::Fixed | Status::UnderInvestigation => {
                report.notes.push(format!(
                    "{what}: status {}; not applied (the installed version matches the advisory)",
                    s.status.as_str()
                ));
                report.vulnerabilities.push(v);
                continue;
            }
        };
        report.suppressed.push(Suppressed {
            vuln: v,
            suppression: Suppression {
                status: s.status,
                reason,
                justification: s.justification.clone(),
                impact_statement: s.impact_statement.clone(),
                action_statement: s.action_statement.clone(),
                expires: s.expires.clone(),
                statement: s.index,
                statement_id: s.id.clone(),
                document: doc.id.clone(),
            },
        });
    }
    report.vex = Some(doc.summary());
    report.recount();
}

#[cfg(test)]
#[path = "vex_tests.rs"]
mod tests;
