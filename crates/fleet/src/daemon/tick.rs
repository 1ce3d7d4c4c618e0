//! The shell around the reconciler: each tick observes every instance
//! (exits, health, connections in flight), runs [`decide`] per service
//! under the world lock, stores the new state and applies the quick
//! actions (proxy rotation, forgetting watchers); then, without the lock,
//! it runs the slow ones in order — instance starts, destroys, audit
//! events — followed by debug-session expiry, publishing the state to
//! `status` and the database write. Image verification runs on a thread of
//! its own (its verdict feeds a later tick), drift checks on another (see
//! `Daemon::run`). Also adoption of instances after a restart.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use kiln_audit::Resource;

use super::host::HostError;
use super::reconcile::{Action, Input, Seen, Slot, Verdict, decide, verify_key};
use super::{Front, Live, Shared, World, lock, next_id};
use crate::deploy::{ImageRef, ServiceSpec};
use crate::proxy::{Backend, Proxy};
use crate::state::{Instance, Phase, ServiceState};

impl Shared {
    /// One round of the reconciler over every service.
    pub(super) fn tick(self: &Arc<Self>) {
        let mut work: Vec<(String, Vec<Action>)> = Vec::new();
        {
            let mut w = lock(&self.world);
            let mut names: Vec<String> = w.st.desired.services.keys().cloned().collect();
            for n in w.st.services.keys() {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
            for name in names {
                let actions = self.decide_locked(&mut w, &name);
                work.push((name, actions));
            }
        }
        for (name, actions) in work {
            self.execute(&name, actions);
        }
        self.expire_debug();
        self.prune_secrets();
        self.publish();
        self.save();
    }

    /// Forget (and zero) the secret values no release still needs: those of the desired
    /// spec, the active and rolling-out releases and any release with instances stay.
    fn prune_secrets(&self) {
        if self.secrets.is_empty() {
            return;
        }
        let w = lock(&self.world);
        let mut keep = std::collections::HashSet::new();
        let mut add = |svc: &str, spec: &ServiceSpec| {
            for (n, s) in &spec.secrets {
                keep.insert((svc.to_string(), n.clone(), s.hmac.clone()));
            }
        };
        for (name, spec) in &w.st.desired.services {
            add(name, spec);
        }
        for (name, svc) in &w.st.services {
            for r in &svc.releases {
                let used = svc.active.as_deref() == Some(r.id.as_str())
                    || svc.rollout.as_ref().is_some_and(|ro| ro.release == r.id)
                    || svc.instances.values().any(|i| i.release == r.id);
                if used {
                    add(name, &r.spec);
                }
            }
        }
        self.secrets
            .retain(|s, n, h| keep.contains(&(s.to_string(), n.to_string(), h.to_string())));
    }

    /// Observe, decide and apply one service's state and quick actions;
    /// returns the actions to run without the lock.
    fn decide_locked(&self, w: &mut World, name: &str) -> Vec<Action> {
        let desired: Option<ServiceSpec> = w.st.desired.services.get(name).cloned();
        if desired.is_none() && !w.st.services.contains_key(name) {
            return Vec::new();
        }
        let proxy_error = desired
            .as_ref()
            .and_then(|s| ensure_proxy(w, name, s.listen));
        let seen = self.observe(w, name);
        let traffic: HashMap<String, crate::proxy::ReleaseStats> = match w.proxies.get(name) {
            Some(f) => {
                if let Some(d) = &desired {
                    f.proxy.set_http(d.analysis.is_some_and(|a| a.http));
                    f.proxy.set_proxy_protocol(d.proxy_protocol);
                }
                f.proxy
                    .release_stats()
                    .into_iter()
                    .map(|s| (s.release.clone(), s))
                    .collect()
            }
            None => HashMap::new(),
        };
        let verdict = desired.as_ref().and_then(|d| {
            let key = verify_key(d);
            w.verdicts
                .get(name)
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| v.clone())
        });
        let mut svc: ServiceState = w.st.services.get(name).cloned().unwrap_or_else(|| {
            // A service created again continues the release numbering of its name.
            ServiceState {
                release_seq: w.st.release_seqs.get(name).copied().unwrap_or(0),
                ..ServiceState::default()
            }
        });
        let before = w.st.services.get(name).cloned();
        let actions = decide(
            &mut svc,
            &Input {
                name,
                desired: desired.as_ref(),
                seen: &seen,
                verdict: verdict.as_ref(),
                proxy_error,
                now: self.clock.now_ms(),
                timing: &self.timing,
                traffic: &traffic,
            },
        );
        let forget = actions.iter().any(|a| matches!(a, Action::Forget));
        let changed = !forget && before.as_ref() != Some(&svc);
        if forget {
            if let Some(gone) = w.st.services.remove(name) {
                let last = gone
                    .releases
                    .iter()
                    .filter_map(|r| crate::state::release_number(&r.id))
                    .fold(gone.release_seq, u64::max);
                w.st.release_seqs.insert(name.to_string(), last);
            }
            if let Some(f) = w.proxies.remove(name) {
                f.proxy.stop();
            }
            w.touch();
        } else {
            w.st.services.insert(name.to_string(), svc);
        }
        if changed {
            w.touch();
        }
        let mut later = Vec::new();
        for a in actions {
            match a {
                Action::Remove { ref id, .. } => {
                    if let Some(l) = w.live.remove(id) {
                        l.watch.stop.store(true, Ordering::Relaxed);
                    }
                    w.expected_exits.remove(id);
                    later.push(a);
                }
                Action::Rotate(slots) => self.rotate(w, name, slots),
                Action::VerdictUsed => {
                    w.verdicts.remove(name);
                }
                Action::Forget => {}
                Action::Verify { .. } | Action::Start { .. } | Action::Record(_) => later.push(a),
            }
        }
        later
    }

    /// What can be seen of each instance of `name` now.
    fn observe(&self, w: &World, name: &str) -> HashMap<String, Seen> {
        let Some(svc) = w.st.services.get(name) else {
            return HashMap::new();
        };
        let front = w.proxies.get(name);
        svc.instances
            .values()
            .map(|inst| {
                let live = w.live.get(&inst.id);
                let mut seen = Seen {
                    exited: self
                        .host
                        .exited(&inst.id, inst.pid, live.is_some_and(|l| l.child)),
                    in_flight: front.map_or(0, |f| f.proxy.in_flight(&inst.id)),
                    deliberate: w.expected_exits.contains(&inst.id),
                    ..Seen::default()
                };
                if let Some(l) = live {
                    let h = &l.watch.health;
                    seen.watched = true;
                    seen.ok_streak = h.ok_streak.load(Ordering::Relaxed);
                    seen.fail_streak = h.fail_streak.load(Ordering::Relaxed);
                    seen.ever_ok = h.ever_ok.load(Ordering::Relaxed);
                    seen.first_ok_ms = h.first_ok_ms.get().copied();
                    seen.last_error = lock(&h.last_error).clone();
                }
                (inst.id.clone(), seen)
            })
            .collect()
    }

    /// Give the proxy the rotation (only when it changed).
    fn rotate(&self, w: &mut World, name: &str, slots: Vec<Slot>) {
        let Some(front) = w.proxies.get(name) else {
            return;
        };
        if front.rotation.as_ref() == Some(&slots) {
            return;
        }
        let backends = slots
            .iter()
            .map(|s| Backend {
                id: s.id.clone(),
                group: s.release.clone(),
                weight: s.weight,
                dial: self
                    .host
                    .dial(s.pid, s.port, w.live.get(&s.id).map(|l| &l.watch)),
            })
            .collect();
        front.proxy.set_backends(backends);
        if let Some(f) = w.proxies.get_mut(name) {
            f.rotation = Some(slots);
        }
    }

    /// Run the slow actions of one service, in order, without the lock.
    fn execute(self: &Arc<Self>, name: &str, actions: Vec<Action>) {
        let mut start_failed = false;
        for a in actions {
            match a {
                Action::Verify { key, image, policy } => {
                    let mut w = lock(&self.world);
                    if w.verifying.get(name) == Some(&key) {
                        continue;
                    }
                    w.verifying.insert(name.to_string(), key.clone());
                    drop(w);
                    let (sh, name) = (self.clone(), name.to_string());
                    std::thread::spawn(move || sh.verify(&name, key, &image, &policy));
                }
                Action::Start {
                    release,
                    replaces,
                    for_rollout,
                } => {
                    if !start_failed {
                        start_failed = self
                            .start_instance(name, &release, replaces, for_rollout)
                            .is_err();
                    }
                }
                Action::Remove { id, pid } => self.host.destroy(&id, pid),
                Action::Record(e) => self.record(*e),
                Action::Rotate(_) | Action::VerdictUsed | Action::Forget => {}
            }
        }
    }

    /// Ask the image gate (and read the image's `[baseline]`), on a thread
    /// of its own: the reconciler carries on meanwhile. The verdict is kept
    /// only if the desired spec still has `key` (else it is stale).
    fn verify(&self, name: &str, key: String, image: &ImageRef, policy: &std::path::Path) {
        let verdict = match self.gate.check(image, policy) {
            Ok(_) => Verdict::Pass {
                baseline: self.drift.baseline(&image.digest),
            },
            Err(why) => Verdict::Refused {
                why: why.to_string(),
            },
        };
        {
            let mut w = lock(&self.world);
            let current = w.st.desired.services.get(name).map(verify_key);
            if current.as_ref() == Some(&key) {
                w.verdicts.insert(name.to_string(), (key.clone(), verdict));
            }
            if w.verifying.get(name) == Some(&key) {
                w.verifying.remove(name);
            }
            w.again = true;
        }
        self.wake.notify_all();
    }

    /// Wait until no verification is in flight (tests).
    #[cfg(test)]
    pub(super) fn wait_verified(&self) {
        let mut w = lock(&self.world);
        while !w.verifying.is_empty() {
            w = kiln_oci::sync::wait(&self.wake, w);
        }
    }

    /// `service` waits for secrets it does not hold (`missing`): its message says so.
    fn wait_for_secrets(&self, service: &str, missing: Vec<String>) -> HostError {
        let e = HostError::WaitingForSecrets { names: missing };
        let msg = e.to_string();
        let mut w = lock(&self.world);
        if let Some(svc) = w.st.services.get_mut(service)
            && svc.message != msg
        {
            svc.message = msg;
            w.touch();
        }
        e
    }

    /// Create, start and watch one instance of release `release_id`.
    fn start_instance(
        &self,
        name: &str,
        release_id: &str,
        replaces: Option<String>,
        for_rollout: bool,
    ) -> Result<(), HostError> {
        let (id, rel) = {
            let mut w = lock(&self.world);
            let Some(rel) =
                w.st.services
                    .get(name)
                    .and_then(|s| s.release(release_id))
                    .cloned()
            else {
                return Ok(());
            };
            (next_id(&mut w, &format!("{name}-")), rel)
        };
        // After a restart the daemon holds no secret until the next apply: wait for it. The
        // values taken here are the ones the instance gets.
        let secrets = match self.secrets.held(name, &rel.spec.secrets) {
            Ok(held) => held,
            Err(missing) => return Err(self.wait_for_secrets(name, missing)),
        };
        let t0 = self.clock.now_ms();
        let launched = {
            let _one = lock(&self.drift_busy);
            self.host.launch(name, &id, &rel, &secrets)
        };
        drop(secrets);
        let l = match launched {
            Ok(l) => l,
            Err(e) => {
                if let HostError::Drifted { drift: Some(d), .. } = &e {
                    self.apply_rootfs_drift(d);
                }
                let msg = e.to_string();
                if replaces.is_some() {
                    eprintln!(
                        "kiln serve: replacing {}: {msg}",
                        replaces.as_deref().unwrap_or("")
                    );
                }
                let mut w = lock(&self.world);
                if let Some(svc) = w.st.services.get_mut(name) {
                    svc.message = msg;
                    if for_rollout
                        && let Some(ro) = svc.rollout.as_mut()
                        && ro.release == release_id
                    {
                        ro.failures += 1;
                    }
                }
                w.touch();
                return Err(e);
            }
        };
        if let Some(d) = &l.drift {
            self.apply_rootfs_drift(d);
        }
        let inst = Instance {
            id: id.clone(),
            release: rel.id.clone(),
            pid: l.pid,
            started: t0,
            phase: Phase::Starting,
            in_rotation: false,
            replaces,
            retiring_since: 0,
            retire_reason: None,
            start_to_healthy_ms: None,
            config_sha256: l.config_sha256,
            rootfs: l.rootfs,
            drifted: None,
        };
        let watch = self.host.watch(name, &inst, &rel.spec, true);
        {
            let mut w = lock(&self.world);
            w.live.insert(id.clone(), Live { watch, child: true });
            w.st.services
                .entry(name.to_string())
                .or_default()
                .instances
                .insert(id.clone(), inst);
            w.touch();
        }
        self.record(
            self.event("instance.start", name)
                .resource(Resource::new("instance", &id))
                .resource(Resource::named(
                    "image",
                    &rel.image.digest,
                    rel.image.to_string(),
                ))
                .resource(Resource::new("release", &rel.id))
                .detail("pid", l.pid)
                .detail("read_only_root", true)
                .detail("network", "own namespace, loopback only"),
        );
        Ok(())
    }

    /// End debug sessions past their TTL.
    fn expire_debug(&self) {
        let now = self.clock.now_ms();
        let expired: Vec<(String, String)> = {
            let mut w = lock(&self.world);
            let ids: Vec<String> = w
                .debug
                .iter()
                .filter(|(_, d)| d.expires <= now)
                .map(|(id, _)| id.clone())
                .collect();
            ids.into_iter()
                .filter_map(|id| w.debug.remove(&id).map(|d| (id, d.service)))
                .collect()
        };
        for (id, service) in expired {
            self.end_debug(&id, &service, "TTL expired");
        }
    }

    pub(super) fn end_debug(&self, id: &str, service: &str, why: &str) {
        self.host.end_debug(id);
        self.record(
            self.event("debug.stop", service)
                .resource(Resource::new("instance", id))
                .reason(Some(why)),
        );
    }

    /// Write the state if it changed: a snapshot under the lock, the write
    /// without it; `dirty` is cleared only if nothing changed meanwhile.
    pub(super) fn save(&self) {
        let _one = lock(&self.saving);
        let (st, generation) = {
            let w = lock(&self.world);
            if !w.dirty {
                return;
            }
            (w.st.clone(), w.generation)
        };
        if let Err(e) = self.db.save(&st) {
            eprintln!("kiln serve: saving state: {e}");
        }
        let mut w = lock(&self.world);
        if w.generation == generation {
            w.dirty = false;
        }
    }

    /// Re-adopt instances that survived a daemon restart; forget the rest.
    pub(super) fn adopt(&self) {
        let known = self.host.list();
        let mut gone = Vec::new();
        let mut keep = std::collections::HashSet::new();
        {
            let mut w = lock(&self.world);
            let names: Vec<String> = w.st.services.keys().cloned().collect();
            for name in names {
                let insts: Vec<Instance> =
                    w.st.services[&name].instances.values().cloned().collect();
                for inst in insts {
                    let id = inst.id.clone();
                    let running = known.iter().any(|(kid, pid)| {
                        *kid == id && *pid == inst.pid && *pid != 0 && self.host.alive(*pid)
                    });
                    let spec = w.st.services[&name]
                        .release(&inst.release)
                        .map(|r| r.spec.clone());
                    if running && let Some(spec) = spec {
                        let watch = self.host.watch(&name, &inst, &spec, false);
                        // Seed health from the phase it had.
                        if inst.phase != Phase::Starting {
                            watch.health.ever_ok.store(true, Ordering::Relaxed);
                            watch.health.ok_streak.store(1, Ordering::Relaxed);
                        }
                        w.live.insert(
                            id.clone(),
                            Live {
                                watch,
                                child: false,
                            },
                        );
                        keep.insert(id);
                        continue;
                    }
                    self.host.delete(&id);
                    if let Some(svc) = w.st.services.get_mut(&name) {
                        svc.instances.remove(&id);
                    }
                    gone.push((name.clone(), id));
                    w.touch();
                }
            }
        }
        for (name, id) in gone {
            self.record(
                self.event("instance.replace", &name)
                    .resource(Resource::new("instance", &id))
                    .reason(Some("not running when kiln serve restarted")),
            );
        }
        // Containers in kiln's runc root that no state knows: orphans.
        for (id, _) in known {
            if !keep.contains(&id) {
                self.host.delete(&id);
            }
        }
    }
}

/// Start (or move) the service's front proxy; why it cannot listen, if so.
fn ensure_proxy(w: &mut World, name: &str, listen: SocketAddr) -> Option<String> {
    if let Some(f) = w.proxies.get(name) {
        if f.listen == listen {
            return None;
        }
        if let Some(f) = w.proxies.remove(name) {
            f.proxy.stop();
        }
    }
    let proxy = match Proxy::start(listen) {
        Ok(p) => p,
        Err(e) => return Some(format!("front proxy on {listen}: {e}")),
    };
    w.proxies.insert(
        name.to_string(),
        Front {
            listen,
            proxy,
            rotation: None,
        },
    );
    None
}
