//! The reconciler: a pure function from one service's desired spec, its
//! persisted state, what the shell observed of its instances and the time to
//! the new state and the actions the shell must carry out (start, remove,
//! verify, set the proxy's rotation, record an event).
//!
//! Nothing here touches the host, the clock, a lock or the audit log: the
//! shell in `tick.rs` gathers a [`Input`], calls [`decide`], stores the
//! state it returns and executes the [`Action`]s in order. Roll-out steps
//! (blue-green, canary, switch, abort, max-lifetime rotation) are in
//! `rollout.rs`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use kiln_audit::{Event, Resource};
use serde_json::Value;

use super::{fingerprint, instance_fields_differ, privacy_diff};
use crate::deploy::{ImageRef, ServiceSpec, Strategy};
use crate::proxy::weights_for_step;
use crate::state::{Instance, Phase, Release, Rollout, ServiceState};

/// The reconciler's timers and limits.
#[derive(Debug, Clone)]
pub struct Timing {
    /// How long a new instance may take to become healthy.
    pub start_timeout: Duration,
    /// How long a rollout may take before it is aborted.
    pub rollout_timeout: Duration,
    /// How long a retiring instance may drain.
    pub drain_timeout: Duration,
    /// How long a retiring instance stays up after leaving the rotation, at least.
    pub retire_grace: Duration,
    /// Unplanned replacements within `crash_window` that count as a crash loop.
    pub crash_loop: usize,
    pub crash_window: Duration,
    /// How often the reconciler runs when nothing wakes it.
    pub tick: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            start_timeout: Duration::from_secs(30),
            rollout_timeout: Duration::from_secs(120),
            drain_timeout: Duration::from_secs(15),
            retire_grace: Duration::from_millis(500),
            crash_loop: 5,
            crash_window: Duration::from_secs(30),
            tick: Duration::from_millis(100),
        }
    }
}

pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What the shell saw of one instance this tick.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seen {
    /// How it exited (`Some`), if it did.
    pub exited: Option<String>,
    /// A health checker watches it (the fields below mean something).
    pub watched: bool,
    pub ok_streak: u32,
    pub fail_streak: u32,
    pub ever_ok: bool,
    /// When the first check passed (ms since the epoch).
    pub first_ok_ms: Option<u64>,
    pub last_error: String,
    /// Connections the proxy has open to it.
    pub in_flight: usize,
    /// It was killed on purpose (chaos): its exit is not a crash.
    pub deliberate: bool,
}

/// The image gate's answer for a release candidate, with the image's
/// `[baseline]` read alongside (both slow: the shell gets them unlocked).
#[derive(Debug, Clone)]
pub(crate) enum Verdict {
    Pass { baseline: Option<Value> },
    Refused { why: String },
}

/// What identifies a release candidate's verification: its fingerprint and
/// the policy it is checked against. A verdict for another key is stale.
pub(crate) fn verify_key(spec: &ServiceSpec) -> String {
    format!("{}|{}", fingerprint(spec), spec.policy.display())
}

/// Everything [`decide`] looks at besides the service's state.
pub(crate) struct Input<'a> {
    pub name: &'a str,
    pub desired: Option<&'a ServiceSpec>,
    /// Per instance id.
    pub seen: &'a HashMap<String, Seen>,
    /// The verdict for the desired spec's [`verify_key`], if one is in.
    pub verdict: Option<&'a Verdict>,
    /// Why the front proxy could not listen, if it could not.
    pub proxy_error: Option<String>,
    /// ms since the epoch.
    pub now: u64,
    pub timing: &'a Timing,
    /// The proxy's per-release counters (by release id), for canary analysis.
    pub traffic: &'a HashMap<String, crate::proxy::ReleaseStats>,
}

/// One backend of the proxy's rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slot {
    pub id: String,
    pub pid: u32,
    pub release: String,
    pub port: u16,
    pub weight: u32,
}

/// Something the shell must do.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    /// Ask the image gate about the desired image (unlocked); its answer
    /// comes back as [`Input::verdict`].
    Verify {
        key: String,
        image: ImageRef,
        policy: PathBuf,
    },
    /// The verdict was used: forget it.
    VerdictUsed,
    /// Start an instance of `release`; `for_rollout` counts a failure
    /// against the rollout; `replaces` is the instance it will rotate out.
    Start {
        release: String,
        replaces: Option<String>,
        for_rollout: bool,
    },
    /// Stop watching, kill and delete an instance (already gone from the state).
    Remove {
        id: String,
        pid: u32,
    },
    /// The proxy's rotation.
    Rotate(Vec<Slot>),
    Record(Box<Event>),
    /// The service is gone: stop its proxy, forget its state.
    Forget,
}

/// The reconciler's step for one service: updates `svc` (its release ids
/// included) and returns what the shell must do, in order.
pub(crate) fn decide(svc: &mut ServiceState, input: &Input) -> Vec<Action> {
    let mut d = Decide {
        svc,
        input,
        out: Vec::new(),
    };
    d.monitor();
    match input.desired {
        None => d.teardown(),
        Some(spec) => {
            if let Some(e) = &input.proxy_error {
                d.svc.message = e.clone();
            } else if d.plan_release(spec) {
                d.progress_rollout(spec);
                d.maintain(spec);
                d.sync_rotation();
                d.retire();
            }
        }
    }
    d.out
}

pub(super) struct Decide<'a> {
    pub svc: &'a mut ServiceState,
    pub input: &'a Input<'a>,
    pub out: Vec<Action>,
}

impl Decide<'_> {
    pub fn now(&self) -> u64 {
        self.input.now
    }

    pub fn event(&self, action: &str) -> Event {
        Event::new(action, "kiln serve").resource(Resource::new("service", self.input.name))
    }

    pub fn record(&mut self, e: Event) {
        self.out.push(Action::Record(Box::new(e)));
    }

    pub fn start(&mut self, release: &str, replaces: Option<String>, for_rollout: bool) {
        self.out.push(Action::Start {
            release: release.to_string(),
            replaces,
            for_rollout,
        });
    }

    /// Forget an instance and have the shell destroy it.
    pub fn remove_instance(&mut self, id: &str) {
        if let Some(inst) = self.svc.instances.remove(id) {
            self.out.push(Action::Remove {
                id: id.to_string(),
                pid: inst.pid,
            });
        }
    }

    /// Watch every instance: exits, health, start timeouts.
    fn monitor(&mut self) {
        let now = self.now();
        let t = self.input.timing;
        let ids: Vec<String> = self.svc.instances.keys().cloned().collect();
        for id in ids {
            let Some(inst) = self.svc.instances.get(&id).cloned() else {
                continue;
            };
            let spec = self
                .svc
                .release(&inst.release)
                .map(|r| r.spec.clone())
                .or_else(|| self.input.desired.cloned());
            let unhealthy_after = spec.as_ref().map_or(3, |s| s.health.unhealthy_after.max(1));
            let healthy_after = spec.as_ref().map_or(1, |s| s.health.healthy_after.max(1));
            let seen = self.input.seen.get(&id).cloned().unwrap_or_default();
            let reason = if let Some(how) = &seen.exited {
                Some(format!("instance {how}"))
            } else if seen.watched {
                let (fails, oks) = (seen.fail_streak, seen.ok_streak);
                if inst.phase != Phase::Retiring && seen.ever_ok && fails >= unhealthy_after {
                    Some(format!(
                        "unhealthy: {fails} consecutive failed health checks ({})",
                        seen.last_error
                    ))
                } else if inst.phase == Phase::Starting && oks >= healthy_after {
                    if let Some(i) = self.svc.instances.get_mut(&id) {
                        i.phase = Phase::Healthy;
                        i.start_to_healthy_ms =
                            seen.first_ok_ms.map(|t| t.saturating_sub(inst.started));
                    }
                    None
                } else if inst.phase == Phase::Starting
                    && now.saturating_sub(inst.started) > ms(t.start_timeout)
                {
                    Some(format!(
                        "never became healthy in {} s ({})",
                        t.start_timeout.as_secs(),
                        seen.last_error
                    ))
                } else {
                    None
                }
            } else {
                None
            };
            let Some(reason) = reason else { continue };
            self.remove_instance(&id);
            if inst.phase == Phase::Retiring {
                continue;
            }
            let svc = &mut *self.svc;
            if !seen.deliberate {
                svc.restarts.push(now);
            }
            let window = ms(t.crash_window);
            svc.restarts.retain(|t| now.saturating_sub(*t) < window);
            let n = svc.restarts.len();
            if n >= t.crash_loop {
                let delay = (250u64 << (n - t.crash_loop).min(7)).min(30_000);
                svc.backoff_until = now + delay;
                svc.message = format!(
                    "crash loop: {n} replacements in {} s, next start in {:.1} s (last: {reason})",
                    t.crash_window.as_secs(),
                    delay as f64 / 1000.0
                );
            } else {
                svc.message = format!("replaced {id}: {reason}");
            }
            if let Some(r) = svc.rollout.as_mut()
                && r.release == inst.release
            {
                r.failures += 1;
            }
            let ev = self
                .event("instance.replace")
                .resource(Resource::new("instance", &id))
                .resource(Resource::new("release", &inst.release))
                .reason(Some(&reason))
                .detail("outcome", "replaced by a new instance of the same release");
            self.record(ev);
        }
    }

    /// Start a rollout when the desired instance configuration differs from
    /// the active release; update the active release in place otherwise.
    /// `false` when the rest of the step must wait (the image was refused).
    fn plan_release(&mut self, spec: &ServiceSpec) -> bool {
        if self.svc.rollout.is_some() {
            // A rollout in progress for an older desired state is superseded
            // by a newer one only after it finishes or aborts.
            return true;
        }
        let active = self.svc.active_release().cloned();
        if let Some(a) = &active
            && !instance_fields_differ(&a.spec, spec)
        {
            if a.spec != *spec
                && let Some(r) = self.svc.releases.iter_mut().find(|r| r.id == a.id)
            {
                r.spec = spec.clone();
            }
            return true;
        }
        let fingerprint = fingerprint(spec);
        if self.svc.failed.as_deref() == Some(fingerprint.as_str()) {
            return true;
        }
        // Only verified images run.
        let baseline = match self.input.verdict {
            None => {
                self.out.push(Action::Verify {
                    key: verify_key(spec),
                    image: spec.image.clone(),
                    policy: spec.policy.clone(),
                });
                return true;
            }
            Some(Verdict::Refused { why }) => {
                self.out.push(Action::VerdictUsed);
                self.svc.failed = Some(fingerprint);
                self.svc.message = format!("refused {}: {why}", spec.image);
                let ev = self
                    .event("release.refused")
                    .resource(Resource::new("image", &spec.image.digest))
                    .reason(Some(why));
                self.record(ev);
                return false;
            }
            Some(Verdict::Pass { baseline }) => baseline.clone(),
        };
        self.out.push(Action::VerdictUsed);
        let id = self.svc.next_release_id();
        let now = self.now();
        let from = self.svc.active.clone();
        let mut canary = match &spec.strategy {
            Strategy::Canary { steps } if from.is_some() => Some(steps.clone()),
            _ => None,
        };
        let mut note = None;
        if canary.is_some() {
            let old = active.as_ref().and_then(|a| a.baseline.as_ref());
            let diff = privacy_diff(old, baseline.as_ref());
            if !diff.is_empty() {
                canary = None;
                note = Some(format!(
                    "privacy-relevant baseline change ({}): canary refused, rolling out blue-green, all-or-nothing",
                    diff.join("; ")
                ));
            }
        }
        let created = std::time::UNIX_EPOCH + Duration::from_millis(now);
        self.svc.releases.push(Release {
            id: id.clone(),
            image: spec.image.clone(),
            spec: spec.clone(),
            created: kiln_oci::time::rfc3339_millis(created),
            baseline,
            reason: spec.reason.clone(),
        });
        self.svc.rollout = Some(Rollout {
            release: id.clone(),
            from: from.clone(),
            canary: canary.clone(),
            step: None,
            step_since: now,
            started: now,
            note: note.clone(),
            failures: 0,
            base: None,
            paused: None,
            command: None,
            switched: None,
        });
        self.svc.message = match (&from, &canary) {
            (None, _) => format!("deploying {id} ({})", spec.image),
            (Some(_), Some(_)) => format!("canary {id} ({})", spec.image),
            (Some(_), None) => format!("blue-green {id} ({})", spec.image),
        };
        if let Some(n) = &note {
            self.svc.message = n.clone();
        }
        let mut ev = self
            .event("release.start")
            .resource(Resource::new("release", &id))
            .resource(Resource::named(
                "image",
                &spec.image.digest,
                spec.image.to_string(),
            ))
            .reason(spec.reason.as_deref())
            .detail(
                "strategy",
                match (&from, &canary) {
                    (None, _) => "initial".to_string(),
                    (Some(_), Some(s)) => format!("canary {s:?}"),
                    (Some(_), None) => "blue-green".to_string(),
                },
            )
            .detail("from", from);
        if let Some(n) = note {
            ev = ev.detail("guardrail", n);
        }
        if !spec.secrets.is_empty() {
            // Names and HMACs (never values): which secrets this release runs with.
            let secrets: Vec<Value> = spec
                .secrets
                .iter()
                .map(|(n, s)| serde_json::json!({"name": n, "hmac": s.hmac, "env": s.env}))
                .collect();
            ev = ev.detail("secrets", secrets);
        }
        self.record(ev);
        true
    }

    /// The service left the desired state: drain and destroy it.
    fn teardown(&mut self) {
        let now = self.now();
        for inst in self.svc.instances.values_mut() {
            if inst.phase != Phase::Retiring {
                inst.phase = Phase::Retiring;
                inst.in_rotation = false;
                inst.retiring_since = now;
                inst.retire_reason = Some("service destroyed".into());
            }
        }
        self.svc.rollout = None;
        self.sync_rotation();
        self.retire();
        if self.svc.instances.is_empty() {
            self.out.push(Action::Forget);
            let ev = self.event("service.destroy").detail("instances_left", 0);
            self.record(ev);
        }
    }

    pub fn start_retiring(&mut self, id: &str, why: &str) {
        let now = self.now();
        if let Some(i) = self.svc.instances.get_mut(id)
            && i.phase != Phase::Retiring
        {
            i.phase = Phase::Retiring;
            i.in_rotation = false;
            i.retiring_since = now;
            i.retire_reason = Some(why.to_string());
        }
    }

    /// Destroy retiring instances once their connections drained.
    fn retire(&mut self) {
        let now = self.now();
        let t = self.input.timing;
        let retiring: Vec<Instance> = self
            .svc
            .instances
            .values()
            .filter(|i| i.phase == Phase::Retiring)
            .cloned()
            .collect();
        for inst in retiring {
            let in_flight = self.input.seen.get(&inst.id).map_or(0, |s| s.in_flight);
            // A connection accepted just before the rotation changed may
            // still be dialling the old instance: give it a moment.
            if now.saturating_sub(inst.retiring_since) < ms(t.retire_grace) {
                continue;
            }
            if in_flight > 0 && now.saturating_sub(inst.retiring_since) < ms(t.drain_timeout) {
                continue;
            }
            self.remove_instance(&inst.id);
            let ev = self
                .event("instance.destroy")
                .resource(Resource::new("instance", &inst.id))
                .resource(Resource::new("release", &inst.release))
                .reason(inst.retire_reason.as_deref())
                .detail("in_flight_at_destroy", in_flight);
            self.record(ev);
        }
    }

    /// The proxy's rotation as it stands (the shell applies it only when
    /// it changed).
    pub fn sync_rotation(&mut self) {
        let svc = &*self.svc;
        let port = self.input.desired.map(|s| s.port);
        let canary = svc.rollout.as_ref().and_then(|r| {
            let steps = r.canary.as_ref()?;
            let pct = steps.get(r.step?).copied()?;
            Some((r.release.clone(), pct))
        });
        let rotation: Vec<&Instance> = svc.instances.values().filter(|i| i.in_rotation).collect();
        let n_canary = canary.as_ref().map_or(0, |(rel, _)| {
            rotation.iter().filter(|i| &i.release == rel).count()
        });
        let n_stable = rotation.len() - n_canary;
        let weights = canary
            .as_ref()
            .map(|(_, pct)| weights_for_step(*pct, n_canary, n_stable));
        let slots = rotation
            .into_iter()
            .map(|i| {
                let is_canary = canary.as_ref().is_some_and(|(rel, _)| &i.release == rel);
                Slot {
                    id: i.id.clone(),
                    pid: i.pid,
                    release: i.release.clone(),
                    port: svc
                        .release(&i.release)
                        .map(|r| r.spec.port)
                        .or(port)
                        .unwrap_or(80),
                    weight: match &weights {
                        Some(ws) if is_canary => ws.canary,
                        Some(ws) => ws.stable,
                        None => 1,
                    },
                }
            })
            .collect();
        self.out.push(Action::Rotate(slots));
    }
}
