//! The reconciler's roll-out steps (pure, like `reconcile.rs`): starting a
//! new release's instances, blue-green switch, canary steps, abort, keeping
//! the active release at its replica count and rotating instances past
//! their maximum lifetime or with drift, new instance first.

use kiln_audit::{Event, Resource};
use serde_json::Value;

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
        // Abort: too many failures, or too slow.
        let limit = (replicas as u32).max(3);
        if r.failures >= limit || now.saturating_sub(r.started) > ms(t.rollout_timeout) {
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
            self.switch(&r, &rel);
            return;
        };
        let next = match r.step {
            None => Some(0),
            Some(i) if now.saturating_sub(r.step_since) >= ms(spec.step_pause) => {
                if steps.get(i).copied() == Some(100) || i + 1 >= steps.len() {
                    self.switch(&r, &rel);
                    None
                } else {
                    Some(i + 1)
                }
            }
            Some(_) => None,
        };
        let Some(i) = next else { return };
        let pct = steps.get(i).copied().unwrap_or(100);
        if let Some(ro) = self.svc.rollout.as_mut() {
            ro.step = Some(i);
            ro.step_since = now;
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
        let ev = self
            .event("release.step")
            .resource(Resource::new("release", &r.release))
            .detail("percent", pct)
            .detail("step", i + 1);
        self.record(ev);
    }

    /// All new connections to the new release at once; the old set drains.
    fn switch(&mut self, r: &Rollout, rel: &Release) {
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
        let ev = self
            .event("release.abort")
            .resource(Resource::new("release", &r.release))
            .reason(Some(why))
            .detail("rolled_back_to", r.from.clone());
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
