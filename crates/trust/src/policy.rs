//! `trust.toml`: which keys kiln trusts, grouped into roles with thresholds, and which rules an
//! image must satisfy.
//!
//! ```toml
//! [keys]
//! ci = "ci.pub"            # PEM public key, relative to this file
//!
//! [roles.builder]
//! keys = ["ci"]
//! threshold = 1            # distinct keys that must sign
//!
//! [require]
//! signature = "builder"    # the image must be signed by the role
//! provenance = "builder"   # SLSA provenance for this digest, signed by the role
//! approvals = "reviewers"  # approvals of this digest by `threshold` distinct role keys
//! scan = "builder"         # a passing, signed kiln scan attestation (v2) for this digest
//! scan_max_age_hours = 24  # …whose newest advisory was modified at most this long ago
//! ```
//!
//! A scan attestation counts only as [`check_scan_predicate`] says: predicate
//! `https://kiln.dev/scan/v2`, a passing gate, a recorded advisory set of at least one
//! advisory, and with a maximum age, an advisory set whose newest `modified` is recent. The age
//! is that of the data, not of the scan: re-scanning old advisories does not make them fresh.
//!
//! Unknown keys are errors, and every error names `file:line:column`. Each rule is an optional
//! field of `[require]` and a [`Rule`] variant.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use kiln_oci::Digest;
use serde::Deserialize;
use toml::Spanned;

use crate::keys::PublicKey;

/// A policy error located in its file.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}:{column}: {message}", file.display())]
pub struct PolicyError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    keys: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    roles: BTreeMap<String, Spanned<RawRole>>,
    require: Option<Spanned<RawRequire>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    keys: Vec<Spanned<String>>,
    threshold: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequire {
    signature: Option<Spanned<String>>,
    provenance: Option<Spanned<String>>,
    approvals: Option<Spanned<String>>,
    scan: Option<Spanned<String>>,
    scan_max_age_hours: Option<Spanned<i64>>,
}

/// A role: named policy keys of which `threshold` distinct ones must sign.
#[derive(Clone, Debug)]
pub struct Role {
    pub name: String,
    pub keys: Vec<String>,
    pub threshold: usize,
}

/// A rule an image must satisfy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// `threshold` distinct keys of `role` signed the image's exact digest.
    Signature { role: String },
    /// A SLSA provenance attestation for the image's exact digest, signed by `threshold`
    /// distinct keys of `role`.
    Provenance { role: String },
    /// Approval attestations for the image's exact digest by `threshold` distinct keys of
    /// `role`.
    Approvals { role: String },
    /// A passing kiln scan attestation (v2) for the image's exact digest, signed by `threshold`
    /// distinct keys of `role`, made against at least one advisory, the newest of which was
    /// modified at most `max_age_hours` ago ([`check_scan_predicate`]).
    Scan {
        role: String,
        max_age_hours: Option<u64>,
    },
}

impl Rule {
    pub fn name(&self) -> &'static str {
        match self {
            Rule::Signature { .. } => "signature",
            Rule::Provenance { .. } => "provenance",
            Rule::Approvals { .. } => "approvals",
            Rule::Scan { .. } => "scan",
        }
    }

    /// The role the rule names.
    pub fn role(&self) -> &str {
        match self {
            Rule::Signature { role }
            | Rule::Provenance { role }
            | Rule::Approvals { role }
            | Rule::Scan { role, .. } => role,
        }
    }
}

/// A loaded, validated policy.
#[derive(Clone, Debug)]
pub struct Policy {
    pub path: PathBuf,
    pub keys: BTreeMap<String, PublicKey>,
    pub roles: BTreeMap<String, Role>,
    pub rules: Vec<Rule>,
}

struct Cx<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Cx<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        kiln_oci::textpos::line_col(self.text, offset)
    }

    fn err(&self, span: Range<usize>, message: String) -> PolicyError {
        let (line, column) = self.line_col(span.start);
        PolicyError {
            file: self.file.to_path_buf(),
            line,
            column,
            message,
        }
    }
}

impl Policy {
    /// The policy of `kiln verify --key`: a signature by this one key (named `name`, read
    /// from `path`), no other rule.
    pub fn single_key(path: &Path, name: &str, key: PublicKey) -> Policy {
        Policy {
            path: path.to_path_buf(),
            keys: BTreeMap::from([(name.to_owned(), key)]),
            roles: BTreeMap::from([(
                name.to_owned(),
                Role {
                    name: name.to_owned(),
                    keys: vec![name.to_owned()],
                    threshold: 1,
                },
            )]),
            rules: vec![Rule::Signature {
                role: name.to_owned(),
            }],
        }
    }

    /// Reads and validates the policy at `path`, loading its key files.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let bytes = kiln_oci::untrusted::read_small(path).map_err(|e| PolicyError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read the policy: {e}"),
        })?;
        let text = kiln_oci::textpos::decode(bytes).map_err(|e| PolicyError {
            file: path.to_path_buf(),
            line: e.line,
            column: e.column,
            message: e.message("the policy"),
        })?;
        Policy::parse(path, &text)
    }

    /// Parses policy text; key paths resolve against `path`'s directory.
    pub fn parse(path: &Path, text: &str) -> Result<Policy, PolicyError> {
        let cx = Cx { file: path, text };
        let raw: RawPolicy = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            cx.err(span, e.message().trim().to_string())
        })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };

        let mut keys = BTreeMap::new();
        for (name, file) in &raw.keys {
            let kp = dir.join(file.get_ref());
            let pem = kiln_oci::untrusted::read_small_string(&kp).map_err(|e| {
                cx.err(
                    file.span(),
                    format!("keys.{name}: cannot read {}: {e}", kp.display()),
                )
            })?;
            let key = PublicKey::from_pem(&pem).map_err(|e| {
                cx.err(
                    file.span(),
                    format!("keys.{name}: {} is not a public key: {e}", kp.display()),
                )
            })?;
            keys.insert(name.clone(), key);
        }

        let mut roles = BTreeMap::new();
        for (name, role) in &raw.roles {
            let r = role.get_ref();
            let mut names: Vec<String> = Vec::new();
            for k in &r.keys {
                if !keys.contains_key(k.get_ref()) {
                    return Err(cx.err(
                        k.span(),
                        format!(
                            "roles.{name}.keys: unknown key {:?} (not in [keys])",
                            k.get_ref()
                        ),
                    ));
                }
                if names.contains(k.get_ref()) {
                    return Err(cx.err(
                        k.span(),
                        format!("roles.{name}.keys: key {:?} listed twice", k.get_ref()),
                    ));
                }
                names.push(k.get_ref().clone());
            }
            let t = *r.threshold.get_ref();
            if t < 1 || t as u64 > names.len() as u64 {
                return Err(cx.err(
                    r.threshold.span(),
                    format!(
                        "roles.{name}.threshold must be between 1 and the number of keys ({}), not {t}",
                        names.len()
                    ),
                ));
            }
            roles.insert(
                name.clone(),
                Role {
                    name: name.clone(),
                    keys: names,
                    threshold: t as usize,
                },
            );
        }

        let Some(require) = &raw.require else {
            return Err(cx.err(
                text.len()..text.len(),
                "missing [require] table: a policy must require at least one rule".into(),
            ));
        };
        let mut rules = Vec::new();
        let req = require.get_ref();
        type MakeRule = fn(String) -> Rule;
        let named: [(&str, &Option<Spanned<String>>, MakeRule); 3] = [
            ("signature", &req.signature, |role| Rule::Signature { role }),
            ("provenance", &req.provenance, |role| Rule::Provenance {
                role,
            }),
            ("approvals", &req.approvals, |role| Rule::Approvals { role }),
        ];
        for (field, value, make) in named {
            let Some(role) = value else { continue };
            if !roles.contains_key(role.get_ref()) {
                return Err(cx.err(
                    role.span(),
                    format!(
                        "require.{field}: unknown role {:?} (not in [roles])",
                        role.get_ref()
                    ),
                ));
            }
            rules.push(make(role.get_ref().clone()));
        }
        let max_age = match &req.scan_max_age_hours {
            None => None,
            Some(h) if *h.get_ref() > 0 => Some(*h.get_ref() as u64),
            Some(h) => {
                return Err(cx.err(
                    h.span(),
                    "require.scan_max_age_hours must be a positive number of hours".into(),
                ));
            }
        };
        match &req.scan {
            Some(role) => {
                if !roles.contains_key(role.get_ref()) {
                    return Err(cx.err(
                        role.span(),
                        format!(
                            "require.scan: unknown role {:?} (not in [roles])",
                            role.get_ref()
                        ),
                    ));
                }
                rules.push(Rule::Scan {
                    role: role.get_ref().clone(),
                    max_age_hours: max_age,
                });
            }
            None => {
                if let Some(h) = &req.scan_max_age_hours {
                    return Err(cx.err(
                        h.span(),
                        "require.scan_max_age_hours needs require.scan".into(),
                    ));
                }
            }
        }
        if rules.is_empty() {
            return Err(cx.err(
                require.span(),
                "[require] names no rule: a policy must require at least one".into(),
            ));
        }
        Ok(Policy {
            path: path.to_path_buf(),
            keys,
            roles,
            rules,
        })
    }

    /// Checks signed claims about images against `role`: which distinct keys of the role
    /// signed `subject`. A key counts once however many times it signed, and two policy
    /// names for the same key material count once.
    pub fn tally(&self, role: &str, subject: &Digest, claims: &[Claim]) -> Tally {
        let (threshold, names) = match self.roles.get(role) {
            Some(r) => (r.threshold, r.keys.clone()),
            None => (usize::MAX, Vec::new()),
        };
        let keys: Vec<(&str, &PublicKey)> = names
            .iter()
            .filter_map(|n| self.keys.get(n).map(|k| (n.as_str(), k)))
            .collect();
        let mut signers: Vec<(String, String)> = Vec::new(); // (key id, name)
        let mut results = Vec::new();
        for c in claims {
            let hit = keys
                .iter()
                .find(|(_, k)| k.verify(&c.message, &c.signature).is_ok());
            let outcome = match hit {
                None => Outcome::NoRoleKey,
                Some((name, _)) if !c.digests.contains(subject) => Outcome::WrongDigest {
                    key: (*name).to_owned(),
                    claimed: c.digests.clone(),
                },
                Some((name, k)) => {
                    let id = k.key_id();
                    match signers.iter().find(|(i, _)| *i == id) {
                        Some((_, first)) => Outcome::AlreadyCounted {
                            key: (*name).to_owned(),
                            as_key: first.clone(),
                        },
                        None => {
                            signers.push((id, (*name).to_owned()));
                            Outcome::Counted {
                                key: (*name).to_owned(),
                            }
                        }
                    }
                }
            };
            results.push(ClaimResult {
                source: c.source.clone(),
                outcome,
            });
        }
        Tally {
            role: role.to_owned(),
            threshold,
            signers: signers.into_iter().map(|(_, n)| n).collect(),
            results,
        }
    }
}

/// How far in the future a scan attestation's newest advisory may be dated before its age is
/// treated as unknown.
pub const MAX_CLOCK_SKEW_SECS: u64 = 3600;

/// Why a scan attestation's predicate does not satisfy the scan rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanPredicateError {
    #[error("scan attestation records a failed gate")]
    FailedGate,
    #[error("scan attestation does not name its advisory set (advisories.digest)")]
    NoAdvisoryDigest,
    #[error("scan attestation has no advisories.count")]
    NoAdvisoryCount,
    #[error(
        "scan attestation was made against no advisories (advisories.count 0{}): \
         it shows nothing; re-scan with advisories for the image's release",
        allowed_note(.allowed)
    )]
    NoAdvisories {
        /// The scan allowed an empty advisory set (`--allow-empty-advisories`).
        allowed: bool,
    },
    #[error("scan attestation has no valid advisories.newest_modified ({0:?})")]
    NoNewestModified(String),
    #[error(
        "scan attestation's newest advisory was modified {0}, in the future: \
         the age of its data is unknown"
    )]
    InTheFuture(String),
    #[error(
        "scan attestation's advisory data is {hours} h old (newest advisory modified {newest}); \
         policy allows {max_hours} h: re-scan with current advisories"
    )]
    Stale {
        hours: u64,
        newest: String,
        max_hours: u64,
    },
}

fn allowed_note(allowed: &bool) -> &'static str {
    if *allowed {
        ", allowed by --allow-empty-advisories"
    } else {
        ""
    }
}

/// Whether the predicate of a `https://kiln.dev/scan/v2` attestation satisfies the scan rule
/// at `now` (Unix seconds): the gate passed; `advisories.digest` names the set; at least one
/// advisory applied (`advisories.count` > 0, even when the scan allowed an empty set); and
/// with `max_age_hours`, `advisories.newest_modified` is at most that old (and not in the
/// future). `Err` says why not.
pub fn check_scan_predicate(
    p: &serde_json::Value,
    max_age_hours: Option<u64>,
    now: u64,
) -> Result<(), ScanPredicateError> {
    if p["result"]["pass"] != true {
        return Err(ScanPredicateError::FailedGate);
    }
    let a = &p["advisories"];
    let digest = a["digest"].as_str().unwrap_or("");
    let hex = digest.strip_prefix("sha256:").unwrap_or("");
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ScanPredicateError::NoAdvisoryDigest);
    }
    match a["count"].as_u64() {
        None => return Err(ScanPredicateError::NoAdvisoryCount),
        Some(0) => {
            return Err(ScanPredicateError::NoAdvisories {
                allowed: p["gate"]["allow_empty_advisories"] == true,
            });
        }
        Some(_) => {}
    }
    if let Some(h) = max_age_hours {
        let stamp = a["newest_modified"].as_str().unwrap_or("");
        let newest = kiln_oci::time::parse_utc(stamp)
            .ok_or_else(|| ScanPredicateError::NoNewestModified(stamp.into()))?;
        if newest > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(ScanPredicateError::InTheFuture(stamp.into()));
        }
        let age = now.saturating_sub(newest);
        if age > h.saturating_mul(3600) {
            return Err(ScanPredicateError::Stale {
                hours: age / 3600,
                newest: stamp.into(),
                max_hours: h,
            });
        }
    }
    Ok(())
}

/// Why an attestation of type `found` does not count where `wanted` is required, when `found`
/// is a superseded version of it (`None` otherwise: simply another predicate).
pub fn superseded_predicate(found: &str, wanted: &str) -> Option<String> {
    (found == crate::attest::SCAN_PREDICATE_TYPE_V1 && wanted == crate::attest::SCAN_PREDICATE_TYPE)
        .then(|| {
            format!(
                "scan attestation v1 ({found}) does not record which advisories it used and no \
                 longer counts; re-scan with `kiln scan --attest` to make a {wanted} attestation"
            )
        })
}

/// A signature over `message` that claims to be about the images `digests`.
#[derive(Clone, Debug)]
pub struct Claim {
    /// Where it came from, for messages (e.g. `sha256-….sig layer 0`).
    pub source: String,
    pub message: Vec<u8>,
    pub signature: Vec<u8>,
    pub digests: Vec<Digest>,
}

/// What [`Policy::tally`] made of one claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Verified by role key `key`, for this image: counts.
    Counted { key: String },
    /// Verified, but `key` already counted (as `as_key`).
    AlreadyCounted { key: String, as_key: String },
    /// Verified by `key`, but signs other images.
    WrongDigest { key: String, claimed: Vec<Digest> },
    /// No key of the role verifies the signature.
    NoRoleKey,
}

#[derive(Clone, Debug)]
pub struct ClaimResult {
    pub source: String,
    pub outcome: Outcome,
}

impl std::fmt::Display for ClaimResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.outcome {
            Outcome::Counted { key } => write!(f, "{}: valid signature by key {key}", self.source),
            Outcome::AlreadyCounted { key, as_key } if key == as_key => write!(
                f,
                "{}: key {key} already counted; one key counts once",
                self.source
            ),
            Outcome::AlreadyCounted { key, as_key } => write!(
                f,
                "{}: key {key} already counted (same key as {as_key}); one key counts once",
                self.source
            ),
            Outcome::WrongDigest { key, claimed } => {
                let c: Vec<String> = claimed.iter().map(|d| d.to_string()).collect();
                write!(
                    f,
                    "{}: signature by key {key} is for {}, not this image",
                    self.source,
                    c.join(", ")
                )
            }
            Outcome::NoRoleKey => write!(
                f,
                "{}: signature does not verify with any key of the role",
                self.source
            ),
        }
    }
}

/// The result of counting signatures for a role.
#[derive(Clone, Debug)]
pub struct Tally {
    pub role: String,
    pub threshold: usize,
    /// Policy key names that counted, in order.
    pub signers: Vec<String>,
    pub results: Vec<ClaimResult>,
}

impl Tally {
    pub fn passed(&self) -> bool {
        self.signers.len() >= self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeyAlgorithm, PrivateKey};

    fn setup(policy: &str) -> (tempfile::TempDir, Result<Policy, PolicyError>, PrivateKey) {
        let d = tempfile::tempdir().unwrap();
        let k = PrivateKey::generate(KeyAlgorithm::EcdsaP256Sha256).unwrap();
        std::fs::write(d.path().join("ci.pub"), k.public_key().to_pem()).unwrap();
        let k2 = PrivateKey::generate(KeyAlgorithm::Ed25519).unwrap();
        std::fs::write(d.path().join("ops.pub"), k2.public_key().to_pem()).unwrap();
        let p = d.path().join("trust.toml");
        let r = Policy::parse(&p, policy);
        (d, r, k)
    }

    #[test]
    fn a_non_utf8_policy_names_the_line_and_column() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("trust.toml");
        std::fs::write(&p, b"[keys]\nci = \"c\xffi.pub\"\n").unwrap();
        let e = Policy::load(&p).unwrap_err();
        assert_eq!((e.line, e.column), (2, 8), "{e}");
        assert!(e.to_string().contains("trust.toml:2:8: "), "{e}");
        assert!(e.message.contains("byte 0xff at offset 14"), "{e}");
    }

    const GOOD: &str = "[keys]\nci = \"ci.pub\"\nops = \"ops.pub\"\n\n[roles.builder]\nkeys = [\"ci\", \"ops\"]\nthreshold = 1\n\n[require]\nsignature = \"builder\"\n";

    #[test]
    fn parses_and_tallies() {
        let (_d, p, k) = setup(GOOD);
        let p = p.unwrap();
        assert_eq!(
            p.rules,
            vec![Rule::Signature {
                role: "builder".into()
            }]
        );
        let img = Digest::of(b"img");
        let other = Digest::of(b"other");
        let claim = |d: Digest| Claim {
            source: "s".into(),
            message: b"m".to_vec(),
            signature: k.sign(b"m"),
            digests: vec![d],
        };
        let t = p.tally("builder", &img, &[claim(img), claim(img), claim(other)]);
        assert!(t.passed());
        assert_eq!(t.signers, vec!["ci".to_string()]);
        assert!(matches!(
            t.results[1].outcome,
            Outcome::AlreadyCounted { .. }
        ));
        assert!(matches!(t.results[2].outcome, Outcome::WrongDigest { .. }));
        let t = p.tally("builder", &img, &[claim(other)]);
        assert!(!t.passed());
    }

    #[test]
    fn parses_provenance_and_approvals_rules() {
        let text = GOOD.replace(
            "signature = \"builder\"\n",
            "provenance = \"builder\"\napprovals = \"builder\"\n",
        );
        let (_d, p, _) = setup(&text);
        let p = p.unwrap();
        assert_eq!(
            p.rules,
            vec![
                Rule::Provenance {
                    role: "builder".into()
                },
                Rule::Approvals {
                    role: "builder".into()
                }
            ]
        );
        assert_eq!(p.rules[1].name(), "approvals");
        assert_eq!(p.rules[1].role(), "builder");
        let bad = GOOD.replace("signature = \"builder\"", "approvals = \"nobody\"");
        let (_d, p, _) = setup(&bad);
        let e = p.unwrap_err();
        assert!(
            e.to_string().contains("require.approvals: unknown role"),
            "{e}"
        );
        assert_eq!(e.line, 10);
    }

    #[test]
    fn errors_have_positions() {
        for (text, line, col, needle) in [
            ("[keys]\nci = \"ci.pub\"\nbogus = 1\n", 3, 9, "invalid type"),
            (
                "[keys]\nci = \"ci.pub\"\n[roles.b]\nkeys = [\"ci\"]\nthreshold = 1\nextra = 2\n",
                6,
                1,
                "unknown field",
            ),
            (
                "[keys]\nci = \"ci.pub\"\n[roles.b]\nkeys = [\"nope\"]\nthreshold = 1\n",
                4,
                9,
                "unknown key",
            ),
            (
                "[keys]\nci = \"ci.pub\"\n[roles.b]\nkeys = [\"ci\"]\nthreshold = 2\n",
                5,
                13,
                "threshold",
            ),
            ("[keys]\nci = \"missing.pub\"\n", 2, 6, "cannot read"),
            (
                "[keys]\nci = \"ci.pub\"\n[roles.b]\nkeys = [\"ci\"]\nthreshold = 1\n[require]\nsignature = \"x\"\n",
                7,
                13,
                "unknown role",
            ),
        ] {
            let (_d, p, _) = setup(text);
            let e = p.unwrap_err();
            assert_eq!((e.line, e.column), (line, col), "{e}");
            assert!(e.to_string().contains(needle), "{e}");
            assert!(e.to_string().contains("trust.toml:"), "{e}");
        }
        let (_d, p, _) = setup("[keys]\nci = \"ci.pub\"\n");
        assert!(p.unwrap_err().to_string().contains("[require]"));
    }

    fn scan_predicate(count: u64, newest: &str) -> serde_json::Value {
        serde_json::json!({
            "advisories": {
                "digest": format!("sha256:{}", "ab".repeat(32)),
                "count": count,
                "newest_modified": newest,
            },
            "gate": {"allow_empty_advisories": count == 0},
            "result": {"pass": true},
        })
    }

    #[test]
    fn scan_predicate_rules() {
        const T: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z
        let ok = scan_predicate(3, "2026-01-01T00:00:00Z");
        assert_eq!(check_scan_predicate(&ok, None, T), Ok(()));
        assert_eq!(check_scan_predicate(&ok, Some(24), T + 23 * 3600), Ok(()));
        // Stale: measured from the data's newest modified, whenever it was scanned.
        let e = check_scan_predicate(&ok, Some(24), T + 25 * 3600)
            .unwrap_err()
            .to_string();
        assert!(e.contains("25 h old") && e.contains("re-scan"), "{e}");
        // In the future: the age means nothing.
        let e = check_scan_predicate(&ok, Some(24), T - 2 * 3600)
            .unwrap_err()
            .to_string();
        assert!(e.contains("in the future"), "{e}");
        // A scan of nothing never counts, allowed or not, with or without an age limit.
        for max in [None, Some(24)] {
            let e = check_scan_predicate(&scan_predicate(0, ""), max, T)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("no advisories") && e.contains("--allow-empty-advisories"),
                "{e}"
            );
        }
        let mut failed = ok.clone();
        failed["result"]["pass"] = serde_json::json!(false);
        assert!(
            check_scan_predicate(&failed, None, T)
                .unwrap_err()
                .to_string()
                .contains("failed gate")
        );
        // v1 predicates had neither digest nor count.
        let v1 = serde_json::json!({
            "advisories": {"source": "osv", "count": 5, "loaded_at": "2026-01-01T00:00:00.000Z"},
            "result": {"pass": true},
        });
        assert!(
            check_scan_predicate(&v1, None, T)
                .unwrap_err()
                .to_string()
                .contains("advisories.digest")
        );
        let mut no_count = ok.clone();
        no_count["advisories"]["count"] = serde_json::Value::Null;
        assert!(check_scan_predicate(&no_count, None, T).is_err());
        let mut no_time = ok;
        no_time["advisories"]["newest_modified"] = serde_json::Value::Null;
        assert!(check_scan_predicate(&no_time, None, T).is_ok());
        assert!(check_scan_predicate(&no_time, Some(24), T).is_err());
        let note = superseded_predicate(
            crate::attest::SCAN_PREDICATE_TYPE_V1,
            crate::attest::SCAN_PREDICATE_TYPE,
        )
        .expect("v1 is superseded");
        assert!(
            note.starts_with("scan attestation v1") && note.contains("re-scan"),
            "{note}"
        );
        assert_eq!(
            superseded_predicate(
                crate::attest::PROVENANCE_PREDICATE_TYPE,
                crate::attest::SCAN_PREDICATE_TYPE
            ),
            None
        );
    }

    #[test]
    fn single_key_policy_requires_that_key() {
        let k = PrivateKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let p = Policy::single_key(Path::new("ci.pub"), "ci.pub", k.public_key());
        assert_eq!(
            p.rules,
            vec![Rule::Signature {
                role: "ci.pub".into()
            }]
        );
        let img = Digest::of(b"img");
        let claim = Claim {
            source: "s".into(),
            message: b"m".to_vec(),
            signature: k.sign(b"m"),
            digests: vec![img],
        };
        assert!(p.tally("ci.pub", &img, &[claim]).passed());
        assert!(!p.tally("ci.pub", &img, &[]).passed());
    }
}
