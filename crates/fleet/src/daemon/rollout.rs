//! The reconciler's roll-out steps (pure, like `reconcile.rs`): starting a
//! new release's instances, blue-green switch, canary steps, abort, keeping
//! the active release at its replica count and rotating instances past
//! their maximum lifetime or with drift, new instance first.
//!
//! With `[service.X.analysis]` each canary step (and the blue-green window after the
//! switch) is judged on the new release's traffic through the proxy
//! ([`crate::analysis::judge`]): pass, abort, or pause for an operator.

use std::time::Duration;

use kiln_audit::{Actor, Event, Resource};
use serde_json::Value;

use crate::analysis::{Analysis, CommandOp, Counts, Judgement, Outcome, Pause, judge};

use super::fingerprint;
use super::reconcile::{Decide, ms};
use crate::deploy::ServiceSpec;
use crate::state::{Instance, Phase, Release, Rollout};

impl Decide<'_> {
    pub(super) fn progress_rollout(&mut self, spec: &ServiceSpec) {
        let now = self.now();
        let t = self.input.timing;
        let Some(r) = self.svc.rollout.clone() else {
            return;
        };
        let Some(rel) = self.svc.release(&r.release).cloned() else {
            return;
        };
        let replicas = rel.spec.replicas.max(spec.replicas.min(rel.spec.replicas)) as usize;
        let new: Vec<Instance> = self
            .svc
            .instances
            .values()
            .filter(|i| i.release == r.release && i.phase != Phase::Retiring)
            .cloned()
            .collect();
        let analysis = rel.spec.analysis;
        // An operator's command first.
        let mut operator_pass = false;
        if let Some(cmd) = r.command.clone() {
            if let Some(ro) = self.svc.rollout.as_mut() {
                ro.command = None;
            }
            match cmd.op {
                CommandOp::Abort => {
                    let why = match &cmd.reason {
                        Some(m) => format!("aborted by {}: {m}", cmd.actor.user),
                        None => format!("aborted by {}", cmd.actor.user),
                    };
                    self.abort_with(&r, &why, None, Some(cmd.actor));
                    return;
                }
                CommandOp::Resume => {
                    let base = analysis.map(|a| self.counts(&r.release, &a));
                    if let Some(ro) = self.svc.rollout.as_mut() {
                        ro.paused = None;
                        ro.base = base;
                        ro.step_since = now;
                    }
                    // After a timeout the operator vouches for the step; after a manual
                    // pause the step is judged again from now.
                    operator_pass = r.paused.as_ref().is_some_and(|p| p.timeout);
                }
            }
        }
        let r = self.svc.rollout.clone().unwrap_or(r);
        if r.paused.is_some() {
            return;
        }
        if let Some(at) = r.switched {
            self.judge_window(&r, &rel, analysis, at);
            return;
        }
        // Abort: too many failures, or too slow to become healthy (once traffic shifts,
        // analysis and step_timeout decide).
        let limit = (replicas as u32).max(3);
        let shifting = r.step.is_some();
        if r.failures >= limit
            || (!shifting && now.saturating_sub(r.started) > ms(t.rollout_timeout))
        {
            let why = if r.failures >= limit {
                format!("{} instance failures", r.failures)
            } else {
                format!("not healthy within {} s", t.rollout_timeout.as_secs())
            };
            self.abort(&r, &why);
            return;
        }
        let backoff = self.svc.backoff_until > now;
        if new.len() < replicas && !backoff {
            for _ in new.len()..replicas {
                self.start(&r.release, None, true);
            }
            return;
        }
        let healthy = new.iter().filter(|i| i.phase == Phase::Healthy).count();
        if r.from.is_none() {
            // First deploy: each instance joins the rotation when healthy.
            for i in self.svc.instances.values_mut() {
                if i.release == r.release && i.phase == Phase::Healthy && !i.in_rotation {
                    i.in_rotation = true;
                }
            }
            if healthy >= replicas {
                self.svc.active = Some(r.release.clone());
                self.svc.rollout = None;
                self.svc.message = format!("serving {} ({healthy} healthy)", r.release);
                let ev = self
                    .switch_event(&r, &rel)
                    .detail("from", Value::Null)
                    .detail("instances", healthy);
                self.record(ev);
            }
            return;
        }
        if healthy < replicas {
            return;
        }
        let Some(steps) = &r.canary else {
            match analysis {
                Some(a) if r.from.is_some() => self.switch_and_watch(&r, &rel, &a),
                _ => self.switch(&r, &rel, None),
            }
            return;
        };
        let mut verdict = None;
        let next = match r.step {
            None => Some(0),
            Some(i) => {
                let elapsed = Duration::from_millis(now.saturating_sub(r.step_since));
                let passed = if operator_pass {
                    true
                } else if let Some(a) = analysis {
                    let counts = self
                        .counts(&r.release, &a)
                        .since(r.base.unwrap_or_default());
                    let j = judge(&a, counts, elapsed, spec.step_pause);
                    match j.outcome {
                        Outcome::Fail => {
                            let why = format!("canary step {}: {}", i + 1, j.describe(&a));
                            self.abort_with(&r, &why, Some(j.to_json(&a)), None);
                            return;
                        }
                        Outcome::Timeout => {
                            self.pause_for_traffic(&r, &a, &j, i);
                            return;
                        }
                        Outcome::Wait => false,
                        Outcome::Pass => {
                            verdict = Some(j.to_json(&a));
                            true
                        }
                    }
                } else {
                    elapsed >= spec.step_pause
                };
                if !passed {
                    None
                } else if steps.get(i).copied() == Some(100) || i + 1 >= steps.len() {
                    self.switch(&r, &rel, verdict.take());
                    None
                } else {
                    Some(i + 1)
                }
            }
        };
        let Some(i) = next else { return };
        let pct = steps.get(i).copied().unwrap_or(100);
        let base = analysis.map(|a| self.counts(&r.release, &a));
        if let Some(ro) = self.svc.rollout.as_mut() {
            ro.step = Some(i);
            ro.step_since = now;
            ro.base = base;
        }
        for inst in self.svc.instances.values_mut() {
            if inst.release == r.release && inst.phase == Phase::Healthy {
                inst.in_rotation = true;
            }
        }
        self.svc.message = format!(
            "canary {}: step {} of {}, {pct}% of new connections",
            r.release,
            i + 1,
            steps.len()
        );
        let mut ev = self
            .event("release.step")
            .resource(Resource::new("release", &r.release))
            .detail("percent", pct)
            .detail("step", i + 1);
        if let Some(v) = verdict {
            // The verdict on the step before, which let this one begin.
            ev = ev.detail("analysis", v);
        }
        if operator_pass {
            ev = ev.detail("resumed", true);
        }
        self.record(ev);
    }

    /// The new release's cumulative requests and errors as `a` counts them.
    fn counts(&self, release: &str, a: &Analysis) -> Counts {
        self.input
            .traffic
            .get(release)
            .map(|s| {
                let (requests, errors) = s.analysis_counts(a.http);
                Counts { requests, errors }
            })
            .unwrap_or_default()
    }

    /// Too little traffic by `step_timeout`: stand still until an operator resumes or aborts.
    fn pause_for_traffic(&mut self, r: &Rollout, a: &Analysis, j: &Judgement, step: usize) {
        let why = format!(
            "step {}: only {} of {} {} in {}; waiting for `kiln rollout resume` or `kiln rollout abort`",
            step + 1,
            j.counts.requests,
            a.min_requests,
            if a.http { "requests" } else { "connections" },
            crate::deploy::format_duration(a.step_timeout)
        );
        let now = self.now();
        if let Some(ro) = self.svc.rollout.as_mut() {
            ro.paused = Some(Pause {
                why: why.clone(),
                timeout: true,
                since: now,
            });
        }
        self.svc.message = format!("rollout of {} paused: {why}", r.release);
        let ev = self
            .event("release.pause")
            .resource(Resource::new("release", &r.release))
            .reason(Some(&why))
            .detail("step", step + 1)
            .detail("analysis", j.to_json(a));
        self.record(ev);
    }

    /// Blue-green with analysis: all new connections to the new set, the old set stands
    /// by (out of rotation, not retiring) for the analysis window.
    fn switch_and_watch(&mut self, r: &Rollout, rel: &Release, a: &Analysis) {
        let now = self.now();
        let base = self.counts(&r.release, a);
        for inst in self.svc.instances.values_mut() {
            if inst.release == r.release {
                if inst.phase == Phase::Healthy {
                    inst.in_rotation = true;
                }
            } else if inst.phase != Phase::Retiring {
                inst.in_rotation = false;
            }
        }
        self.svc.active = Some(r.release.clone());
        if let Some(ro) = self.svc.rollout.as_mut() {
            ro.switched = Some(now);
            ro.base = Some(base);
        }
        self.svc.message = format!(
            "serving {} ({}); analysis window of {}, {} standing by",
            r.release,
            rel.image,
            crate::deploy::format_duration(a.window),
            r.from.as_deref().unwrap_or("nothing")
        );
        self.sync_rotation();
        let ev = self
            .switch_event(r, rel)
            .detail("from", r.from.clone())
            .detail("strategy", "blue-green")
            .detail("window_ms", ms(a.window))
            .detail("rollout_ms", now.saturating_sub(r.started));
        self.record(ev);
    }

    /// The blue-green window: fail switches back to the standing-by set; when the window
    /// passes, the old set drains.
    fn judge_window(&mut self, r: &Rollout, rel: &Release, a: Option<Analysis>, at: u64) {
        let now = self.now();
        let a = a.unwrap_or_default();
        let elapsed = Duration::from_millis(now.saturating_sub(at));
        let counts = self
            .counts(&r.release, &a)
            .since(r.base.unwrap_or_default());
        // The window is the minimum dwell; too little traffic by its end passes (there is
        // nothing to hold the old set for).
        let j = judge(&a, counts, elapsed, a.window);
        let failing = j.outcome == Outcome::Fail || r.failures >= 3;
        if failing {
            let why = if j.outcome == Outcome::Fail {
                format!("blue-green window: {}", j.describe(&a))
            } else {
                format!("{} instance failures in the analysis window", r.failures)
            };
            self.abort_with(r, &why, Some(j.to_json(&a)), None);
            return;
        }
        if elapsed < a.window {
            return;
        }
        let mut j = j;
        if j.outcome != Outcome::Pass {
            j.outcome = Outcome::Pass;
        }
        let old: Vec<String> = self
            .svc
            .instances
            .values()
            .filter(|i| i.release != r.release && i.phase != Phase::Retiring)
            .map(|i| i.id.clone())
            .collect();
        for id in &old {
            self.start_retiring(id, &format!("replaced by release {}", r.release));
        }
        self.svc.rollout = None;
        self.svc.failed = None;
        self.svc.message = format!("serving {} ({})", r.release, rel.image);
        let ev = self
            .event("release.step")
            .resource(Resource::new("release", &r.release))
            .detail("step", "window")
            .detail("percent", 100)
            .detail("draining", old.len())
            .detail("analysis", j.to_json(&a));
        self.record(ev);
    }

    /// All new connections to the new release at once; the old set drains. `verdict`: the
    /// analysis of the last canary step, if any.
    fn switch(&mut self, r: &Rollout, rel: &Release, verdict: Option<Value>) {
        let now = self.now();
        let mut retired = 0;
        for inst in self.svc.instances.values_mut() {
            if inst.release == r.release {
                if inst.phase == Phase::Healthy {
                    inst.in_rotation = true;
                }
            } else if inst.phase != Phase::Retiring {
                inst.phase = Phase::Retiring;
                inst.in_rotation = false;
                inst.retiring_since = now;
                inst.retire_reason = Some(format!("replaced by release {}", r.release));
                retired += 1;
            }
        }
        self.svc.active = Some(r.release.clone());
        self.svc.rollout = None;
        self.svc.failed = None;
        self.svc.message = format!("serving {} ({})", r.release, rel.image);
        self.sync_rotation();
        let mut ev = self
            .switch_event(r, rel)
            .detail("from", r.from.clone())
            .detail(
                "strategy",
                if r.canary.is_some() {
                    "canary"
                } else {
                    "blue-green"
                },
            )
            .detail("draining", retired)
            .detail("rollout_ms", now.saturating_sub(r.started));
        if let Some(n) = &r.note {
            ev = ev.detail("guardrail", n.clone());
        }
        if let Some(v) = verdict {
            ev = ev.detail("analysis", v);
        }
        self.record(ev);
    }

    /// The `release.switch` event of release `rel` of rollout `r`, before its details.
    fn switch_event(&self, r: &Rollout, rel: &Release) -> Event {
        self.event("release.switch")
            .resource(Resource::new("release", &r.release))
            .resource(Resource::named(
                "image",
                &rel.image.digest,
                rel.image.to_string(),
            ))
    }

    /// Give up on a rollout: the new instances go, the old ones keep
    /// serving (canary weights return to the stable set).
    fn abort(&mut self, r: &Rollout, why: &str) {
        self.abort_with(r, why, None, None);
    }

    /// [`Self::abort`] with the analysis that decided it and the operator who asked.
    fn abort_with(&mut self, r: &Rollout, why: &str, analysis: Option<Value>, by: Option<Actor>) {
        // A blue-green window switches back: the standing-by set serves again.
        if r.switched.is_some() {
            self.svc.active.clone_from(&r.from);
            for i in self.svc.instances.values_mut() {
                if Some(&i.release) == r.from.as_ref() && i.phase == Phase::Healthy {
                    i.in_rotation = true;
                }
            }
        }
        let ids: Vec<String> = self
            .svc
            .instances
            .values()
            .filter(|i| i.release == r.release)
            .map(|i| i.id.clone())
            .collect();
        for id in &ids {
            if let Some(i) = self.svc.instances.get_mut(id) {
                i.in_rotation = false;
            }
        }
        let fingerprint = self
            .svc
            .release(&r.release)
            .map(|rel| fingerprint(&rel.spec));
        self.svc.rollout = None;
        self.svc.failed = fingerprint;
        self.svc.message = format!(
            "rollout of {} aborted: {why}; still serving {}",
            r.release,
            r.from.as_deref().unwrap_or("nothing")
        );
        self.sync_rotation();
        for id in &ids {
            self.remove_instance(id);
        }
        let mut ev = self
            .event("release.abort")
            .resource(Resource::new("release", &r.release))
            .reason(Some(why))
            .detail("rolled_back_to", r.from.clone());
        if let Some(a) = analysis {
            ev = ev.detail("analysis", a);
        }
        if let Some(actor) = by {
            ev.actor = actor;
        }
        self.record(ev);
    }

    /// Keep the active release at its replica count; rotate instances past
    /// their maximum lifetime, new one first.
    pub(super) fn maintain(&mut self, spec: &ServiceSpec) {
        let now = self.now();
        let Some(active) = self.svc.active_release().cloned() else {
            return;
        };
        if self.svc.backoff_until > now {
            return;
        }
        let replicas = spec.replicas as usize;
        let mine: Vec<Instance> = self
            .svc
            .instances
            .values()
            .filter(|i| i.release == active.id && i.phase != Phase::Retiring)
            .cloned()
            .collect();
        let primary: Vec<&Instance> = mine.iter().filter(|i| i.replaces.is_none()).collect();
        // Scale up or replace lost instances.
        for _ in primary.len()..replicas {
            self.start(&active.id, None, false);
        }
        // Scale down: retire the newest extras.
        if primary.len() > replicas {
            let mut extra: Vec<&Instance> = primary.clone();
            extra.sort_by_key(|i| std::cmp::Reverse(i.started));
            for i in &extra[..primary.len() - replicas] {
                self.start_retiring(&i.id, "scaled down");
            }
        }
        // Healthy instances of the active release serve.
        for i in self.svc.instances.values_mut() {
            if i.release == active.id
                && i.phase == Phase::Healthy
                && !i.in_rotation
                && i.replaces.is_none()
            {
                i.in_rotation = true;
            }
        }
        // Maximum lifetime and drift: a replacement first, then retire the
        // old instance (capacity never drops; nothing is repaired).
        let max = spec.max_lifetime.map(ms);
        for old in &mine {
            let why = if let Some(d) = &old.drifted {
                format!("drift: {d}")
            } else if max.is_some_and(|m| now.saturating_sub(old.started) >= m) {
                "maximum lifetime reached".to_string()
            } else {
                continue;
            };
            if old.replaces.is_some() || (old.phase != Phase::Healthy && old.drifted.is_none()) {
                continue;
            }
            let successor = mine
                .iter()
                .find(|i| i.replaces.as_deref() == Some(old.id.as_str()));
            match successor {
                None => self.start(&active.id, Some(old.id.clone()), false),
                Some(s) if s.phase == Phase::Healthy => {
                    let sid = s.id.clone();
                    if let Some(i) = self.svc.instances.get_mut(&sid) {
                        i.replaces = None;
                        i.in_rotation = true;
                    }
                    self.start_retiring(&old.id, &why);
                    let mut ev = self
                        .event("instance.replace")
                        .resource(Resource::new("instance", &old.id))
                        .resource(Resource::new("instance", &sid))
                        .reason(Some(&why));
                    if let Some(m) = max {
                        ev = ev.detail("max_lifetime_ms", m);
                    }
                    self.record(ev);
                }
                Some(_) => {}
            }
        }
    }
}
