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
//! scan = "builder"         # a passing, signed kiln scan attestation for this digest
//! scan_max_age_hours = 24  # …made with an advisory set loaded at most this long ago
//! ```
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
    /// A passing kiln scan attestation for the image's exact digest, signed by `threshold`
    /// distinct keys of `role`, made with advisories loaded at most `max_age_hours` ago.
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
    /// Reads and validates the policy at `path`, loading its key files.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let bytes = kiln_oci::untrusted::read_small(path).map_err(|e| PolicyError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read the policy: {e}"),
        })?;
        let text = String::from_utf8(bytes).map_err(|e| PolicyError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!(
                "the policy is not UTF-8 (byte {})",
                e.utf8_error().valid_up_to()
            ),
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
}
