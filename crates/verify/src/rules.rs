//! From a rule's claims to its result: the policy's tally (distinct keys of the role,
//! each counted once, for this exact digest), then the verdict in words.

use kiln_oci::Digest;
use kiln_trust::policy::ClaimResult;
use kiln_trust::{Outcome, Policy};

use crate::envelopes::{Collected, Form};
use crate::report::{Problem, ProblemKind, RuleKind, RuleResult};

/// The result of rule `kind` for `role` over what was collected about `digest`.
/// `predicate_type` is the attestation type an attestation rule counts.
pub(crate) fn result(
    policy: &Policy,
    kind: RuleKind,
    role: &str,
    digest: &Digest,
    predicate_type: Option<&str>,
    collected: Collected,
) -> RuleResult {
    let Collected {
        envelopes,
        claims,
        problems: notes,
    } = collected;
    let forms: Vec<Form> = claims.iter().map(|(f, _)| *f).collect();
    let claims: Vec<_> = claims.into_iter().map(|(_, c)| c).collect();
    let tally = policy.tally(role, digest, &claims);
    let signers = if tally.signers.is_empty() {
        "none".to_owned()
    } else {
        tally.signers.join(", ")
    };
    let attestation = predicate_type.is_some();
    let mut problems: Vec<Problem> = tally
        .results
        .iter()
        .filter_map(|r| claim_problem(r, role, attestation))
        .collect();
    problems.extend(notes);
    let (mut reason, found) = match predicate_type {
        None => {
            // Which keys counted through each form of signature.
            let counted = |want: &dyn Fn(Form) -> bool| {
                let mut keys: Vec<&str> = Vec::new();
                for (r, f) in tally.results.iter().zip(&forms) {
                    if let Outcome::Counted { key } | Outcome::AlreadyCounted { key, .. } =
                        &r.outcome
                        && want(*f)
                        && !keys.contains(&key.as_str())
                    {
                        keys.push(key);
                    }
                }
                if keys.is_empty() {
                    "none".to_owned()
                } else {
                    keys.join(", ")
                }
            };
            let via = format!(
                ".sig: {}; bundle: {}",
                counted(&|f| f == Form::SimpleSigning),
                counted(&|f| f != Form::SimpleSigning)
            );
            let mut reason = format!(
                "role {role}: {} of {} required distinct key(s) signed {digest} (keys: {signers}; via {via})",
                tally.signers.len(),
                tally.threshold
            );
            if claims.is_empty() && problems.is_empty() {
                reason.push_str("; no signatures found");
            }
            (reason, claims.len())
        }
        Some(predicate_type) => {
            let what = kind.name();
            let mut reason = format!(
                "role {role}: {} of {} required distinct key(s) signed {what} for {digest} (keys: {signers}; {envelopes} {predicate_type} envelope(s))",
                tally.signers.len(),
                tally.threshold
            );
            if claims.is_empty() {
                reason.push_str(&format!("; missing: no valid {what} attestation found"));
            }
            (reason, envelopes)
        }
    };
    let pass = tally.passed();
    // On failure the reason also lists the problems; the details list what counted,
    // then the problems.
    if !pass && !problems.is_empty() {
        reason.push_str("; ");
        reason.push_str(
            &problems
                .iter()
                .map(|p| p.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        );
    }
    let details = tally
        .results
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Counted { .. }))
        .map(|r| r.to_string())
        .chain(problems.iter().map(|p| p.message.clone()))
        .collect();
    RuleResult {
        kind,
        role: role.to_owned(),
        required: tally.threshold,
        found,
        counted_keys: tally.signers,
        problems,
        pass,
        reason,
        details,
    }
}

/// A claim that did not count, as a problem (`None` if it counted).
fn claim_problem(r: &ClaimResult, role: &str, attestation: bool) -> Option<Problem> {
    let (kind, message) = match (&r.outcome, attestation) {
        (Outcome::Counted { .. }, _) => return None,
        (Outcome::NoRoleKey, true) => (
            ProblemKind::UnknownKey,
            format!(
                "{}: unknown key: the signature does not verify with any key of role {role}",
                r.source
            ),
        ),
        (Outcome::NoRoleKey, false) => (ProblemKind::UnknownKey, r.to_string()),
        (Outcome::AlreadyCounted { .. }, true) => (
            ProblemKind::AlreadyCounted,
            format!("{r} (counted twice: ignored)"),
        ),
        (Outcome::AlreadyCounted { .. }, false) => (ProblemKind::AlreadyCounted, r.to_string()),
        (Outcome::WrongDigest { .. }, _) => (ProblemKind::WrongDigest, r.to_string()),
    };
    Some(Problem { kind, message })
}
