//! Releases: planning, roll-out steps (blue-green, canary), switch, abort, rotation and retirement.

use super::*;

impl Shared {
    /// Start a rollout when the desired instance configuration differs from
    /// the active release; update the active release in place otherwise.
    pub(super) fn plan_release(
        &self,
        w: &mut World,
        name: &str,
        spec: &ServiceSpec,
    ) -> Result<(), String> {
        let svc = w.st.services.entry(name.to_string()).or_default();
        if svc.rollout.is_some() {
            // A rollout in progress for an older desired state is superseded
            // by a newer one only after it finishes or aborts.
            return Ok(());
        }
        let active = svc.active_release().cloned();
        if let Some(a) = &active
            && !instance_fields_differ(&a.spec, spec)
        {
            if a.spec != *spec
                && let Some(r) = svc.releases.iter_mut().find(|r| r.id == a.id)
            {
                r.spec = spec.clone();
                w.dirty = true;
            }
            return Ok(());
        }
        let fingerprint = fingerprint(spec);
        if svc.failed.as_deref() == Some(fingerprint.as_str()) {
            return Ok(());
        }
        // Only verified images run.
        if let Err(why) = self.gate.check(&spec.image, &spec.policy) {
            let svc = w.st.services.entry(name.to_string()).or_default();
            svc.failed = Some(fingerprint);
            svc.message = format!("refused {}: {why}", spec.image);
            w.dirty = true;
            self.record(
                self.event("release.refused", name)
                    .resource(Resource::new("image", &spec.image.digest))
                    .reason(Some(&why)),
            );
            return Err(format!("refused {}: {why}", spec.image));
        }
        let baseline = self.baseline(&spec.image);
        let id = self.next_id(w, "r");
        let svc = w.st.services.entry(name.to_string()).or_default();
        let from = svc.active.clone();
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
        let now = now_ms();
        svc.releases.push(Release {
            id: id.clone(),
            image: spec.image.clone(),
            spec: spec.clone(),
            created: kiln_oci::time::rfc3339_millis(SystemTime::now()),
            baseline,
            reason: spec.reason.clone(),
        });
        svc.rollout = Some(Rollout {
            release: id.clone(),
            from: from.clone(),
            canary: canary.clone(),
            step: None,
            step_since: now,
            started: now,
            note: note.clone(),
            failures: 0,
        });
        svc.message = match (&from, &canary) {
            (None, _) => format!("deploying {id} ({})", spec.image),
            (Some(_), Some(_)) => format!("canary {id} ({})", spec.image),
            (Some(_), None) => format!("blue-green {id} ({})", spec.image),
        };
        if let Some(n) = &note {
            svc.message = n.clone();
        }
        w.dirty = true;
        let mut ev = self
            .event("release.start", name)
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
        self.record(ev);
        Ok(())
    }

    /// The config of an image in the store, by manifest digest.
    pub(super) fn image_config(&self, digest: &str) -> Result<kiln_oci::ImageConfig, String> {
        let e = |x: &dyn std::fmt::Display| format!("{digest}: {x}");
        let store = Store::open(self.opts.state_dir.join("store")).map_err(|x| e(&x))?;
        let d: Digest = digest.parse().map_err(|x| e(&x))?;
        let desc = store
            .resolve(&kiln_oci::ImageRef::Digest {
                name: None,
                digest: d,
            })
            .map_err(|x| e(&x))?;
        let bytes = store.read_descriptor(&desc).map_err(|x| e(&x))?;
        let m = kiln_oci::ImageManifest::from_bytes(&bytes, "manifest").map_err(|x| e(&x))?;
        let bytes = store.read_descriptor(&m.config).map_err(|x| e(&x))?;
        kiln_oci::ImageConfig::from_bytes(&bytes, "config").map_err(|x| e(&x))
    }

    /// The image's `[baseline]` (config label `dev.kiln.baseline`).
    pub(super) fn baseline(&self, image: &ImageRef) -> Option<Value> {
        let c = self.image_config(&image.digest).ok()?;
        serde_json::from_str(c.config.labels.get("dev.kiln.baseline")?).ok()
    }

    pub(super) fn progress_rollout(&self, w: &mut World, name: &str, spec: &ServiceSpec) {
        let now = now_ms();
        let Some(svc) = w.st.services.get(name) else {
            return;
        };
        let Some(r) = svc.rollout.clone() else { return };
        let Some(rel) = svc.release(&r.release).cloned() else {
            return;
        };
        let replicas = rel.spec.replicas.max(spec.replicas.min(rel.spec.replicas)) as usize;
        let new: Vec<Instance> = svc
            .instances
            .values()
            .filter(|i| i.release == r.release && i.phase != Phase::Retiring)
            .cloned()
            .collect();
        // Abort: too many failures, or too slow.
        let limit = (replicas as u32).max(3);
        if r.failures >= limit || now.saturating_sub(r.started) > ROLLOUT_TIMEOUT.as_millis() as u64
        {
            let why = if r.failures >= limit {
                format!("{} instance failures", r.failures)
            } else {
                format!("not healthy within {} s", ROLLOUT_TIMEOUT.as_secs())
            };
            self.abort(w, name, &r, &why);
            return;
        }
        let backoff = svc.backoff_until > now;
        if new.len() < replicas && !backoff {
            for _ in new.len()..replicas {
                if let Err(e) = self.start_instance(w, name, &rel, None) {
                    if let Some(svc) = w.st.services.get_mut(name) {
                        svc.message = e;
                        if let Some(ro) = svc.rollout.as_mut() {
                            ro.failures += 1;
                        }
                    }
                    w.dirty = true;
                    return;
                }
            }
            return;
        }
        let healthy = new.iter().filter(|i| i.phase == Phase::Healthy).count();
        if r.from.is_none() {
            // First deploy: each instance joins the rotation when healthy.
            let svc = w.st.services.get_mut(name).expect("service exists");
            for i in svc.instances.values_mut() {
                if i.release == r.release && i.phase == Phase::Healthy && !i.in_rotation {
                    i.in_rotation = true;
                    w.dirty = true;
                }
            }
            if healthy >= replicas {
                svc.active = Some(r.release.clone());
                svc.rollout = None;
                svc.message = format!("serving {} ({healthy} healthy)", r.release);
                w.dirty = true;
                self.record(
                    self.event("release.switch", name)
                        .resource(Resource::new("release", &r.release))
                        .resource(Resource::named(
                            "image",
                            &rel.image.digest,
                            rel.image.to_string(),
                        ))
                        .detail("from", Value::Null)
                        .detail("instances", healthy),
                );
            }
            return;
        }
        if healthy < replicas {
            return;
        }
        match &r.canary {
            None => self.switch(w, name, &r, &rel),
            Some(steps) => {
                let next = match r.step {
                    None => Some(0),
                    Some(i)
                        if now.saturating_sub(r.step_since)
                            >= spec.step_pause.as_millis() as u64 =>
                    {
                        if steps.get(i).copied() == Some(100) || i + 1 >= steps.len() {
                            self.switch(w, name, &r, &rel);
                            None
                        } else {
                            Some(i + 1)
                        }
                    }
                    Some(_) => None,
                };
                if let Some(i) = next {
                    let pct = steps.get(i).copied().unwrap_or(100);
                    if let Some(ro) = w.st.services.get_mut(name).and_then(|s| s.rollout.as_mut()) {
                        ro.step = Some(i);
                        ro.step_since = now;
                    }
                    let svc = w.st.services.get_mut(name).expect("service exists");
                    for inst in svc.instances.values_mut() {
                        if inst.release == r.release && inst.phase == Phase::Healthy {
                            inst.in_rotation = true;
                        }
                    }
                    svc.message = format!(
                        "canary {}: step {} of {}, {pct}% of new connections",
                        r.release,
                        i + 1,
                        steps.len()
                    );
                    w.dirty = true;
                    self.record(
                        self.event("release.step", name)
                            .resource(Resource::new("release", &r.release))
                            .detail("percent", pct)
                            .detail("step", i + 1),
                    );
                }
            }
        }
    }

    /// All new connections to the new release at once; the old set drains.
    pub(super) fn switch(&self, w: &mut World, name: &str, r: &Rollout, rel: &Release) {
        let now = now_ms();
        let svc = w.st.services.get_mut(name).expect("service exists");
        let mut retired = 0;
        for inst in svc.instances.values_mut() {
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
        svc.active = Some(r.release.clone());
        svc.rollout = None;
        svc.failed = None;
        svc.message = format!("serving {} ({})", r.release, rel.image);
        w.dirty = true;
        self.sync_rotation(w, name);
        let mut ev = self
            .event("release.switch", name)
            .resource(Resource::new("release", &r.release))
            .resource(Resource::named(
                "image",
                &rel.image.digest,
                rel.image.to_string(),
            ))
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

    /// Give up on a rollout: the new instances go, the old ones keep
    /// serving (canary weights return to the stable set).
    pub(super) fn abort(&self, w: &mut World, name: &str, r: &Rollout, why: &str) {
        let ids: Vec<String> = w.st.services[name]
            .instances
            .values()
            .filter(|i| i.release == r.release)
            .map(|i| i.id.clone())
            .collect();
        let svc = w.st.services.get_mut(name).expect("service exists");
        for id in &ids {
            if let Some(i) = svc.instances.get_mut(id) {
                i.in_rotation = false;
            }
        }
        let fingerprint = svc.release(&r.release).map(|rel| fingerprint(&rel.spec));
        svc.rollout = None;
        svc.failed = fingerprint;
        svc.message = format!(
            "rollout of {} aborted: {why}; still serving {}",
            r.release,
            r.from.as_deref().unwrap_or("nothing")
        );
        w.dirty = true;
        self.sync_rotation(w, name);
        for id in &ids {
            self.remove_instance(w, name, id);
        }
        self.record(
            self.event("release.abort", name)
                .resource(Resource::new("release", &r.release))
                .reason(Some(why))
                .detail("rolled_back_to", r.from.clone()),
        );
    }

    /// Keep the active release at its replica count; rotate instances past
    /// their maximum lifetime, new one first.
    pub(super) fn maintain(&self, w: &mut World, name: &str, spec: &ServiceSpec) {
        let now = now_ms();
        let Some(svc) = w.st.services.get(name) else {
            return;
        };
        let Some(active) = svc.active_release().cloned() else {
            return;
        };
        if svc.backoff_until > now {
            return;
        }
        let replicas = spec.replicas as usize;
        let mine: Vec<Instance> = svc
            .instances
            .values()
            .filter(|i| i.release == active.id && i.phase != Phase::Retiring)
            .cloned()
            .collect();
        let primary: Vec<&Instance> = mine.iter().filter(|i| i.replaces.is_none()).collect();
        // Scale up or replace lost instances.
        if primary.len() < replicas {
            for _ in primary.len()..replicas {
                if let Err(e) = self.start_instance(w, name, &active, None) {
                    if let Some(svc) = w.st.services.get_mut(name) {
                        svc.message = e;
                    }
                    w.dirty = true;
                    return;
                }
            }
        }
        // Scale down: retire the newest extras.
        if primary.len() > replicas {
            let mut extra: Vec<&Instance> = primary.clone();
            extra.sort_by_key(|i| std::cmp::Reverse(i.started));
            let ids: Vec<String> = extra[..primary.len() - replicas]
                .iter()
                .map(|i| i.id.clone())
                .collect();
            for id in ids {
                self.start_retiring(w, name, &id, "scaled down");
            }
        }
        // Healthy instances of the active release serve.
        let svc = w.st.services.get_mut(name).expect("service exists");
        for i in svc.instances.values_mut() {
            if i.release == active.id
                && i.phase == Phase::Healthy
                && !i.in_rotation
                && i.replaces.is_none()
            {
                i.in_rotation = true;
                w.dirty = true;
            }
        }
        // Maximum lifetime and drift: a replacement first, then retire the
        // old instance (capacity never drops; nothing is repaired).
        let max = spec.max_lifetime.map(|m| m.as_millis() as u64);
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
                None => {
                    if let Err(e) = self.start_instance(w, name, &active, Some(old.id.clone())) {
                        if let Some(svc) = w.st.services.get_mut(name)
                            && svc.message != e
                        {
                            eprintln!("kiln serve: replacing {}: {e}", old.id);
                            svc.message = e;
                            w.dirty = true;
                        }
                        return;
                    }
                }
                Some(s) if s.phase == Phase::Healthy => {
                    let sid = s.id.clone();
                    if let Some(i) =
                        w.st.services
                            .get_mut(name)
                            .and_then(|sv| sv.instances.get_mut(&sid))
                    {
                        i.replaces = None;
                        i.in_rotation = true;
                    }
                    self.start_retiring(w, name, &old.id, &why);
                    let mut ev = self
                        .event("instance.replace", name)
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

    pub(super) fn start_retiring(&self, w: &mut World, name: &str, id: &str, why: &str) {
        if let Some(i) =
            w.st.services
                .get_mut(name)
                .and_then(|s| s.instances.get_mut(id))
            && i.phase != Phase::Retiring
        {
            i.phase = Phase::Retiring;
            i.in_rotation = false;
            i.retiring_since = now_ms();
            i.retire_reason = Some(why.to_string());
            w.dirty = true;
        }
    }

    /// Destroy retiring instances once their connections drained.
    pub(super) fn retire(&self, w: &mut World, name: &str) {
        let now = now_ms();
        let Some(svc) = w.st.services.get(name) else {
            return;
        };
        let retiring: Vec<Instance> = svc
            .instances
            .values()
            .filter(|i| i.phase == Phase::Retiring)
            .cloned()
            .collect();
        for inst in retiring {
            let in_flight = w
                .proxies
                .get(name)
                .map_or(0, |(_, p, _)| p.in_flight(&inst.id));
            // A connection accepted just before the rotation changed may
            // still be dialling the old instance: give it a moment.
            if now.saturating_sub(inst.retiring_since) < RETIRE_GRACE.as_millis() as u64 {
                continue;
            }
            if in_flight > 0
                && now.saturating_sub(inst.retiring_since) < DRAIN_TIMEOUT.as_millis() as u64
            {
                continue;
            }
            self.remove_instance(w, name, &inst.id);
            self.record(
                self.event("instance.destroy", name)
                    .resource(Resource::new("instance", &inst.id))
                    .resource(Resource::new("release", &inst.release))
                    .reason(inst.retire_reason.as_deref())
                    .detail("in_flight_at_destroy", in_flight),
            );
        }
    }

    /// Give the proxy the current rotation (only when it changed).
    pub(super) fn sync_rotation(&self, w: &mut World, name: &str) {
        let Some(svc) = w.st.services.get(name) else {
            return;
        };
        let spec = w.st.desired.services.get(name);
        let port = spec.map(|s| s.port);
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
        let mut backends = Vec::new();
        let mut sig = String::new();
        for i in rotation {
            let port = svc
                .release(&i.release)
                .map(|r| r.spec.port)
                .or(port)
                .unwrap_or(80);
            let is_canary = canary.as_ref().is_some_and(|(rel, _)| &i.release == rel);
            let weight = match &weights {
                Some(ws) if is_canary => ws.canary,
                Some(ws) => ws.stable,
                None => 1,
            };
            sig.push_str(&format!("{}:{}:{weight};", i.id, i.pid));
            let sockets = w.live.get(&i.id).and_then(|l| l.sockets.clone());
            backends.push(Backend {
                id: i.id.clone(),
                group: i.release.clone(),
                weight,
                dial: Arc::new(NetnsDial {
                    pid: i.pid,
                    port,
                    sockets,
                }) as Arc<dyn Dial>,
            });
        }
        if let Some((_, p, last)) = w.proxies.get_mut(name)
            && *last != sig
        {
            p.set_backends(backends);
            *last = sig;
        }
    }
}
