//! kiln's policy engine: whether an image may run.
//!
//! Everything that decides "only verified images run" lives here, so the CLI
//! (`kiln verify`), the fleet daemon (`kiln serve`, `kiln apply`), `kiln patch` and the
//! admission paths that follow share one implementation.
//!
//! # Inputs
//!
//! - A [`Source`] of manifests, blobs and referrers: the local store today
//!   ([`kiln_oci::Store`] implements it), a registry next.
//! - The image, resolved through the source ([`resolve`]).
//! - A [`Policy`] (`trust.toml`: keys, roles with thresholds, required rules), or the
//!   one-key policy of `kiln verify --key` ([`Policy::single_key`]).
//! - The time the policy is evaluated at (scan rules bound the age of advisory data);
//!   the engine never reads the clock.
//!
//! # What is checked
//!
//! 1. **Integrity**: every blob of the image (manifest, config, layers) is re-hashed
//!    against its descriptor.
//! 2. **Each rule of the policy**, independently, over the image's exact manifest digest:
//!    - `signature`: signatures of the image, as cosign writes them (a simple-signing
//!      layer of the `sha256-<hex>.sig` manifest, or a Sigstore bundle referrer whose
//!      statement is a cosign image signature);
//!    - `provenance`, `approvals`, `scan`: in-toto attestations with the rule's predicate
//!      type in DSSE envelopes, stored as DSSE referrers, Sigstore bundle referrers or
//!      layers of the `sha256-<hex>.att` manifest. The same envelope in several forms
//!      counts once. A scan attestation counts only if its gate passed over a recorded,
//!      non-empty advisory set recent enough for the rule
//!      ([`kiln_trust::policy::check_scan_predicate`]).
//!
//!    A rule holds when at least `threshold` distinct keys of its role made a valid
//!    signature over a statement about this digest. A key counts once however often it
//!    signed; a signature by a key outside the role, or about another image, does not
//!    count and is reported.
//!
//! Every rule shares one path from stored blobs to claims (`envelopes`) and one tally
//! (`rules`); a new kind of evidence is one more [`RuleKind`] and the predicate type it
//! counts.
//!
//! # Output
//!
//! A [`Report`]: the [`IntegrityResult`] and one [`RuleResult`] per rule, in the
//! policy's order, each with what was required, what was found, which keys counted and
//! the [`Problem`]s, plus the exact sentences `kiln verify` prints. [`Report::audit_event`]
//! makes the `image.verify` audit event every caller records.

#![forbid(unsafe_code)]

mod envelopes;
mod report;
mod rules;
mod source;

use std::time::{SystemTime, UNIX_EPOCH};

use kiln_oci::Resolved;
use kiln_trust::attest;
use kiln_trust::{Policy, Rule};

pub use report::{
    IntegrityResult, Problem, ProblemKind, Report, RuleKind, RuleResult, Verdict, key_resource,
    policy_resource,
};
pub use source::{
    IntegrityError, ResolveError, Source, SourceError, Tagged, resolve, verify_image_blobs,
};

use envelopes::Wanted;

/// Why a verification could not be carried out at all (as opposed to a failing rule,
/// which is a result in the [`Report`]).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The source could not list the image's referrers or tags.
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// Verify `img` from `source` against `policy` at time `now`: integrity, then every
/// rule of the policy.
pub fn evaluate(
    source: &dyn Source,
    img: &Resolved,
    policy: &Policy,
    now: SystemTime,
) -> Result<Report, VerifyError> {
    let digest = img.descriptor.digest;
    let integrity = match verify_image_blobs(source, img) {
        Ok(n) => IntegrityResult {
            pass: true,
            blobs: n,
            reason: format!("all {n} blobs (manifest, config, layers) match their digests"),
        },
        Err(e) => IntegrityResult {
            pass: false,
            blobs: e.verified,
            reason: source::chain(&e),
        },
    };
    let now = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut results = Vec::with_capacity(policy.rules.len());
    for rule in &policy.rules {
        results.push(evaluate_rule(source, policy, rule, &digest, now)?);
    }
    Ok(Report {
        image: img.reference.clone(),
        digest,
        integrity,
        rules: results,
    })
}

/// One rule's result; `now` in Unix seconds.
fn evaluate_rule(
    source: &dyn Source,
    policy: &Policy,
    rule: &Rule,
    digest: &kiln_oci::Digest,
    now: u64,
) -> Result<RuleResult, VerifyError> {
    let kind = RuleKind::of(rule);
    let any = |_: &serde_json::Value| Ok(());
    let scan = |p: &serde_json::Value| {
        let max_age_hours = match rule {
            Rule::Scan { max_age_hours, .. } => *max_age_hours,
            _ => None,
        };
        kiln_trust::policy::check_scan_predicate(p, max_age_hours, now)
            .map_err(|e| Box::new(e) as envelopes::PredicateError)
    };
    let (wanted, predicate_type) = match kind {
        RuleKind::Signature => (Wanted::ImageSignature, None),
        RuleKind::Provenance => attestation(attest::PROVENANCE_PREDICATE_TYPE, &any),
        RuleKind::Approvals => attestation(attest::APPROVAL_PREDICATE_TYPE, &any),
        RuleKind::Scan => attestation(attest::SCAN_PREDICATE_TYPE, &scan),
    };
    let collected = envelopes::collect(source, digest, &wanted)?;
    Ok(rules::result(
        policy,
        kind,
        rule.role(),
        digest,
        predicate_type,
        collected,
    ))
}

fn attestation<'a>(
    predicate_type: &'a str,
    check: envelopes::PredicateCheck<'a>,
) -> (Wanted<'a>, Option<&'a str>) {
    (
        Wanted::Attestation {
            predicate_type,
            check,
        },
        Some(predicate_type),
    )
}

#[cfg(test)]
mod tests;
