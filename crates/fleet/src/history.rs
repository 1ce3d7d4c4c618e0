//! The release history of a service, as `kiln history` shows it: assembled
//! from the audit log's `release.*` events (and the `fleet.apply` /
//! `release.rollback` that caused them: who and why) and the fleet state
//! (what serves now, what is rolling out, releases whose events are not in
//! the log).
//!
//! Outcomes: `in progress`, `serving`, `superseded` (a later release took
//! over), `rolled back` (`kiln rollback` moved away from it), `aborted` (the
//! analysis, or an operator, stopped its rollout), `failed` (its own
//! instances failed or were not healthy in time), `destroyed` (its service
//! was destroyed while it served).

use std::collections::HashMap;

use kiln_audit::{AuditLog, Event};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::state::ServiceState;

/// Why the history could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading the audit log for the history of {service}: {source}")]
pub struct HistoryError {
    pub service: String,
    #[source]
    pub source: kiln_audit::AuditError,
}

/// What became of a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    InProgress,
    Serving,
    Superseded,
    RolledBack,
    Aborted,
    Failed,
    Destroyed,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::InProgress => "in progress",
            Outcome::Serving => "serving",
            Outcome::Superseded => "superseded",
            Outcome::RolledBack => "rolled back",
            Outcome::Aborted => "aborted",
            Outcome::Failed => "failed",
            Outcome::Destroyed => "destroyed",
        })
    }
}

/// One step of a release's rollout: a canary weight shift, a pause, a resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// `step`, `pause` or `resume`.
    pub kind: String,
    /// The canary step number (1-based), for `step`.
    pub step: Option<u64>,
    /// Percent of new connections to the new release, for `step`.
    pub percent: Option<u64>,
    /// RFC 3339 time of the event.
    pub time: String,
    /// ms since the rollout started.
    pub after_ms: Option<u64>,
    /// `details.analysis` of the event, when present.
    pub analysis: Option<Value>,
    pub reason: Option<String>,
}

/// One release of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    pub id: String,
    /// The image reference (tag and digest) as the events name it.
    pub image: Option<String>,
    pub digest: Option<String>,
    /// `initial`, `blue-green`, `canary [10, 50, 100]`.
    pub strategy: Option<String>,
    /// Why the strategy differs from the requested one (a guardrail).
    pub guardrail: Option<String>,
    /// The release it replaced.
    pub from: Option<String>,
    pub steps: Vec<Step>,
    pub outcome: Outcome,
    /// Why it ended so (the abort's reason, who rolled it back).
    pub outcome_reason: Option<String>,
    /// The analysis that decided its end (`release.switch` / `release.abort`).
    pub analysis: Option<Value>,
    /// Who asked for it: the user of the `kiln apply` or `kiln rollback`.
    pub who: Option<String>,
    /// Why (`--reason`).
    pub reason: Option<String>,
    /// RFC 3339 time its rollout started.
    pub started: Option<String>,
    /// RFC 3339 time it took all traffic, or its rollout ended.
    pub ended: Option<String>,
    /// From start to switch or abort.
    pub duration_ms: Option<u64>,
    /// Audit log index of its `release.start` event.
    pub log_index: Option<u64>,
}

impl Release {
    fn new(id: &str) -> Release {
        Release {
            id: id.to_string(),
            image: None,
            digest: None,
            strategy: None,
            guardrail: None,
            from: None,
            steps: Vec::new(),
            outcome: Outcome::InProgress,
            outcome_reason: None,
            analysis: None,
            who: None,
            reason: None,
            started: None,
            ended: None,
            duration_ms: None,
            log_index: None,
        }
    }
}

/// ms since the epoch of an RFC 3339 UTC time kiln wrote (`…:ss.fffZ`).
pub fn time_ms(t: &str) -> Option<u64> {
    let secs = kiln_oci::time::parse_utc(t)?;
    let ms = t
        .rsplit_once('.')
        .and_then(|(_, f)| f.strip_suffix('Z'))
        .filter(|f| !f.is_empty() && f.len() <= 3 && f.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|f| format!("{f:0<3}").parse::<u64>().ok())
        .unwrap_or(0);
    Some(secs * 1000 + ms)
}

fn who(e: &Event) -> String {
    match &e.actor.sudo_user {
        Some(s) => format!("{} (sudo from {s})", e.actor.user),
        None => e.actor.user.clone(),
    }
}

fn resource<'a>(e: &'a Event, kind: &str) -> Option<&'a kiln_audit::Resource> {
    e.resources.iter().find(|r| r.kind == kind)
}

fn of_service(e: &Event, service: &str) -> bool {
    e.resources
        .iter()
        .any(|r| r.kind == "service" && r.id == service)
}

/// Whether a `fleet.apply` changed `service` (its plan's action is not `unchanged`).
fn apply_touches(e: &Event, service: &str) -> bool {
    match e
        .details
        .get("plan")
        .and_then(|p| p["services"].get(service))
    {
        Some(a) => a["action"] != "unchanged",
        None => false,
    }
}

/// Abort reasons of the reconciler's own (the release's instances).
fn instance_failure(reason: Option<&str>) -> bool {
    reason.is_some_and(|r| r.ends_with("instance failures") || r.starts_with("not healthy within"))
}

/// Assemble the history of `service` from audit events (in log order, with
/// their index) and its current state, oldest release first.
pub fn assemble<'a>(
    service: &str,
    events: impl IntoIterator<Item = (u64, &'a Event)>,
    state: Option<&ServiceState>,
) -> Vec<Release> {
    let mut out: Vec<Release> = Vec::new();
    // Release id → its latest record (an id used again starts a new one).
    let mut by_id: HashMap<String, usize> = HashMap::new();
    // Who asked for the next release of the service, and why.
    let mut asked: Option<(String, Option<String>)> = None;
    let mut serving: Option<usize> = None;
    for (index, e) in events {
        if e.action == "fleet.apply" {
            if apply_touches(e, service) {
                asked = Some((who(e), e.reason.clone()));
            }
            continue;
        }
        if !of_service(e, service) {
            continue;
        }
        let rel_id = resource(e, "release").map(|r| r.id.clone());
        let rec = rel_id.as_ref().and_then(|id| by_id.get(id).copied());
        let at = time_ms(&e.time);
        match e.action.as_str() {
            "release.start" => {
                let Some(id) = rel_id else { continue };
                let mut r = Release::new(&id);
                if let Some(img) = resource(e, "image") {
                    r.digest = Some(img.id.clone());
                    r.image = img.name.clone().or_else(|| Some(img.id.clone()));
                }
                r.strategy = e
                    .details
                    .get("strategy")
                    .and_then(|v| v.as_str())
                    .map(str::to_string);
                r.guardrail = e
                    .details
                    .get("guardrail")
                    .and_then(|v| v.as_str())
                    .map(str::to_string);
                r.from = e
                    .details
                    .get("from")
                    .and_then(|v| v.as_str())
                    .map(str::to_string);
                r.started = Some(e.time.clone());
                r.log_index = Some(index);
                let (asker, why) = asked.take().unwrap_or_else(|| (who(e), None));
                r.who = Some(asker);
                r.reason = e.reason.clone().or(why);
                by_id.insert(id, out.len());
                out.push(r);
            }
            "release.step" | "release.pause" | "release.resume" => {
                let Some(i) = rec else { continue };
                let start = out[i].started.as_deref().and_then(time_ms);
                let num = |k: &str| e.details.get(k).and_then(Value::as_u64);
                out[i].steps.push(Step {
                    kind: e.action.trim_start_matches("release.").to_string(),
                    step: num("step"),
                    percent: num("percent"),
                    time: e.time.clone(),
                    after_ms: start.zip(at).map(|(s, t)| t.saturating_sub(s)),
                    analysis: e.details.get("analysis").cloned(),
                    reason: e.reason.clone(),
                });
            }
            "release.switch" => {
                let Some(i) = rec else { continue };
                if let Some(prev) = serving.filter(|p| *p != i)
                    && out[prev].outcome == Outcome::Serving
                {
                    out[prev].outcome = Outcome::Superseded;
                    out[prev].outcome_reason = Some(format!("replaced by {}", out[i].id));
                }
                serving = Some(i);
                let r = &mut out[i];
                r.outcome = Outcome::Serving;
                r.analysis = e.details.get("analysis").cloned();
                if r.guardrail.is_none() {
                    r.guardrail = e
                        .details
                        .get("guardrail")
                        .and_then(|v| v.as_str())
                        .map(str::to_string);
                }
                end(r, e, at);
            }
            "release.abort" => {
                let Some(i) = rec else { continue };
                let r = &mut out[i];
                r.analysis = e.details.get("analysis").cloned();
                r.outcome = if r.analysis.is_none() && instance_failure(e.reason.as_deref()) {
                    Outcome::Failed
                } else {
                    Outcome::Aborted
                };
                r.outcome_reason = e.reason.clone();
                end(r, e, at);
            }
            "release.rollback" => {
                // Resource `release`: the release rolled back from.
                if let Some(i) = rec {
                    out[i].outcome = Outcome::RolledBack;
                    let to = e
                        .details
                        .get("to_release")
                        .and_then(|v| v.as_str())
                        .unwrap_or("?");
                    out[i].outcome_reason = Some(match &e.reason {
                        Some(why) => format!("{} rolled back to {to}: {why}", who(e)),
                        None => format!("{} rolled back to {to}", who(e)),
                    });
                    if serving == Some(i) {
                        serving = None;
                    }
                }
                asked = Some((who(e), e.reason.clone()));
            }
            "service.destroy" | "fleet.destroy" => {
                if let Some(i) = serving.take()
                    && out[i].outcome == Outcome::Serving
                {
                    out[i].outcome = Outcome::Destroyed;
                    out[i].outcome_reason = e.reason.clone();
                }
                if e.action == "fleet.destroy" {
                    // Whatever rolls out is torn down too.
                    for r in out.iter_mut().filter(|r| r.outcome == Outcome::InProgress) {
                        r.outcome = Outcome::Destroyed;
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(st) = state {
        merge_state(&mut out, &by_id, st);
    }
    out
}

fn end(r: &mut Release, e: &Event, at: Option<u64>) {
    r.ended = Some(e.time.clone());
    let start = r.started.as_deref().and_then(time_ms);
    r.duration_ms = start.zip(at).map(|(s, t)| t.saturating_sub(s));
}

/// What the fleet state knows better than the log: what serves now, what
/// rolls out, and releases whose events the log does not hold.
fn merge_state(out: &mut Vec<Release>, by_id: &HashMap<String, usize>, st: &ServiceState) {
    for rel in &st.releases {
        if by_id.contains_key(&rel.id) {
            continue;
        }
        let mut r = Release::new(&rel.id);
        r.image = Some(rel.image.to_string());
        r.digest = Some(rel.image.digest.clone());
        r.reason = rel.reason.clone();
        r.started = Some(rel.created.clone());
        r.outcome = Outcome::Superseded;
        out.push(r);
    }
    let index: HashMap<String, usize> = out
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.clone(), i))
        .collect();
    if let Some(i) = st.active.as_ref().and_then(|a| index.get(a)) {
        let r = &mut out[*i];
        if matches!(r.outcome, Outcome::InProgress | Outcome::Superseded) {
            r.outcome = Outcome::Serving;
        }
    }
    if let Some(ro) = &st.rollout
        && let Some(i) = index.get(&ro.release)
    {
        let r = &mut out[*i];
        r.outcome = Outcome::InProgress;
        if r.guardrail.is_none() {
            r.guardrail = ro.note.clone();
        }
    }
}

/// The history of `service` from the audit log and its state.
pub fn read(
    log: &AuditLog,
    service: &str,
    state: Option<&ServiceState>,
) -> Result<Vec<Release>, HistoryError> {
    let mut events = Vec::new();
    log.events(0, |le| {
        let e = le.event;
        if e.action == "fleet.apply" || e.action.starts_with("release.") || of_service(&e, service)
        {
            events.push((le.index, e));
        }
        true
    })
    .map_err(|source| HistoryError {
        service: service.to_string(),
        source,
    })?;
    Ok(assemble(
        service,
        events.iter().map(|(i, e)| (*i, e)),
        state,
    ))
}

#[cfg(test)]
mod tests;
