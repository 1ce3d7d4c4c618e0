//! The result of a verification: an integrity result and one result per policy rule,
//! typed for programs (what was required, what was found, which keys counted, what went
//! wrong) and worded for people (`reason` and `details`, exactly as `kiln verify` prints
//! them), and the `image.verify` audit event every caller records from it.

use std::path::Path;

use kiln_audit::{Event, Recorder, Resource};
use kiln_oci::Digest;
use kiln_trust::Rule;
use serde::Serialize;

/// Which kind of rule a result is for. A new kind of evidence (test results, say) is
/// one more variant and one more envelope kind in [`crate::evaluate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// Signatures of the image itself (cosign `.sig` and Sigstore bundles).
    Signature,
    /// SLSA provenance attestations.
    Provenance,
    /// Approval attestations.
    Approvals,
    /// Passing kiln scan attestations over recent advisory data.
    Scan,
}

impl RuleKind {
    /// The kind of a policy rule.
    pub fn of(rule: &Rule) -> RuleKind {
        match rule {
            Rule::Signature { .. } => RuleKind::Signature,
            Rule::Provenance { .. } => RuleKind::Provenance,
            Rule::Approvals { .. } => RuleKind::Approvals,
            Rule::Scan { .. } => RuleKind::Scan,
        }
    }

    /// The name `kiln verify` and `trust.toml` use.
    pub fn name(self) -> &'static str {
        match self {
            RuleKind::Signature => "signature",
            RuleKind::Provenance => "provenance",
            RuleKind::Approvals => "approvals",
            RuleKind::Scan => "scan",
        }
    }
}

/// What kind of problem a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// No key of the rule's role verifies the signature.
    UnknownKey,
    /// A role key signed, but it had already counted (one key counts once).
    AlreadyCounted,
    /// A role key signed, but for other images.
    WrongDigest,
    /// An envelope, signature or manifest that could not be read or parsed.
    Unreadable,
    /// A well-formed attestation whose predicate does not satisfy the rule (a failed
    /// scan gate, advisory data too old).
    Rejected,
    /// An attestation of a predicate type the rule no longer accepts.
    Superseded,
}

/// Something found that did not count, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The line `kiln verify` prints for it (names where it was found).
    pub message: String,
}

/// Whether every blob of the image matches its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IntegrityResult {
    pub pass: bool,
    /// Blobs that matched (manifest, config, layers; on failure, those before it).
    pub blobs: usize,
    /// The human verdict.
    pub reason: String,
}

/// The result of one policy rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleResult {
    pub kind: RuleKind,
    /// The role whose keys count.
    pub role: String,
    /// Distinct keys of the role required (the role's threshold).
    pub required: usize,
    /// What was found: signatures (signature rule) or distinct envelopes of the rule's
    /// predicate type (attestation rules).
    pub found: usize,
    /// Policy key names that counted, in order.
    pub counted_keys: Vec<String>,
    /// What did not count, and why: signatures first, then envelopes.
    pub problems: Vec<Problem>,
    pub pass: bool,
    /// The one-line verdict (on failure it also lists the problems).
    pub reason: String,
    /// What counted, then the problems.
    pub details: Vec<String>,
}

impl RuleResult {
    /// `signature (builder)`, `scan (ci)`: the rule as `kiln verify` names it.
    pub fn label(&self) -> String {
        format!("{} ({})", self.kind.name(), self.role)
    }
}

/// A verification of one image against one policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The reference verified, as given.
    pub image: String,
    pub digest: Digest,
    pub integrity: IntegrityResult,
    /// One result per rule, in the policy's order.
    pub rules: Vec<RuleResult>,
}

/// One line of `kiln verify`: the integrity check or a rule, as `--json` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub rule: String,
    pub pass: bool,
    pub reason: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

impl Report {
    /// Whether the image is intact and every rule holds.
    pub fn passed(&self) -> bool {
        self.failed() == 0
    }

    /// How many verdicts failed (integrity counts as one).
    pub fn failed(&self) -> usize {
        usize::from(!self.integrity.pass) + self.rules.iter().filter(|r| !r.pass).count()
    }

    /// The integrity verdict, then each rule's.
    pub fn verdicts(&self) -> Vec<Verdict> {
        let mut out = vec![Verdict {
            rule: "integrity".into(),
            pass: self.integrity.pass,
            reason: self.integrity.reason.clone(),
            details: Vec::new(),
        }];
        out.extend(self.rules.iter().map(|r| Verdict {
            rule: r.label(),
            pass: r.pass,
            reason: r.reason.clone(),
            details: r.details.clone(),
        }));
        out
    }

    /// The `image.verify` audit event of this report, against `trust` ([`policy_resource`]
    /// or [`key_resource`]): each verdict, and failure if any failed.
    pub fn audit_event(&self, recorder: &dyn Recorder, trust: Resource) -> Event {
        let verdicts = self.verdicts();
        let mut ev = recorder
            .event("image.verify")
            .resource(Resource::named(
                "image",
                self.digest.to_string(),
                self.image.clone(),
            ))
            .resource(trust)
            .detail(
                "rules",
                verdicts
                    .iter()
                    .map(|v| serde_json::json!({"rule": v.rule, "ok": v.pass, "detail": v.reason}))
                    .collect::<Vec<_>>(),
            );
        let failed = self.failed();
        if failed > 0 {
            ev = ev.failed(&format!("{failed} of {} rule(s) failed", verdicts.len()));
        }
        ev
    }
}

/// The audit resource of a policy file: its digest (empty if unreadable) and path.
pub fn policy_resource(path: &Path) -> Resource {
    let digest = kiln_oci::untrusted::read_small(path)
        .map(|b| Digest::of(&b).to_string())
        .unwrap_or_default();
    Resource::named("policy", digest, path.display().to_string())
}

/// The audit resource of a public key given instead of a policy: its key id and path.
pub fn key_resource(path: &Path, key_id: &str) -> Resource {
    Resource::named("key", key_id, path.display().to_string())
}
