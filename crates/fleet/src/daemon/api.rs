//! The API socket: one client at a time per thread; status, apply, rollback,
//! destroy, logs, debug and chaos. Client changes are checked by the image
//! gate and recorded in the audit log without the world lock (one change
//! at a time), then made under it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kiln_audit::{Actor, Event, Resource};
use serde_json::{Value, json};

use super::logs::{LogQuery, format_line};
use super::{DebugSession, Shared, lock, next_id, release_pending};
use crate::analysis::{Command, CommandOp, Pause};
use crate::api::{Request, Response, RolloutAction};
use crate::deploy::Deployment;
use crate::state::Phase;

impl Shared {
    pub(super) fn serve_client(self: Arc<Self>, s: UnixStream) {
        let Some(actor) = peer_actor(&s) else {
            let _ = reply(
                &s,
                &Response::err("kiln serve: permission denied (root only)"),
            );
            return;
        };
        let mut r = BufReader::new(&s);
        let mut line = String::new();
        if r.read_line(&mut line).is_err() {
            return;
        }
        let req: Request = match serde_json::from_str(&line) {
            Ok(q) => q,
            Err(e) => {
                let _ = reply(&s, &Response::err(format!("bad request: {e}")));
                return;
            }
        };
        let resp = match req {
            Request::Status => Response::ok(self.status()),
            Request::Apply { path, reason } => self.apply(&path, reason, &actor),
            Request::Rollback {
                service,
                reason,
                now,
            } => self.rollback(&service, reason, now, &actor),
            Request::Rollout {
                service,
                action,
                reason,
            } => self.rollout_control(&service, action, reason, &actor),
            Request::Destroy { service, reason } => self.destroy(&service, reason, &actor),
            Request::Logs {
                service,
                follow,
                since_ms,
                tail,
                instance,
                timestamps,
            } => {
                let q = LogQuery {
                    since_ms,
                    tail,
                    instance,
                    timestamps,
                };
                self.stream_logs(&s, &service, follow, &q);
                return;
            }
            Request::DebugStart {
                service,
                ttl_ms,
                terminal,
            } => self.debug_start(&service, ttl_ms, terminal, &actor),
            Request::DebugStop { id } => {
                let mut w = lock(&self.world);
                match w.debug.remove(&id) {
                    Some(d) => {
                        drop(w);
                        self.end_debug(&id, &d.service, "session ended");
                        Response::ok(json!({"stopped": id}))
                    }
                    None => Response::err(format!("no debug session {id}")),
                }
            }
            Request::Chaos {
                service,
                every_ms,
                for_ms,
            } => self.clone().chaos(&service, every_ms, for_ms, &actor),
            Request::DriftCheck { target } => self.drift_check(target.as_deref(), &actor),
            Request::History { service } => {
                // The view: what status shows, its events already in the log.
                let svc = lock(&self.view).services.get(&service).cloned();
                match crate::history::read(&self.audit, &service, svc.as_ref()) {
                    Ok(h) if h.is_empty() && svc.is_none() => {
                        Response::err(format!("service {service:?} has no releases"))
                    }
                    Ok(h) => Response::ok(json!({"service": service, "releases": h})),
                    Err(e) => Response::err(e),
                }
            }
            Request::Images => {
                Response::ok(json!({"images": lock(&self.world).st.image_digests()}))
            }
        };
        let _ = reply(&s, &resp);
    }

    pub(super) fn status(&self) -> Value {
        let v = lock(&self.view);
        let (stats, egress) = {
            let w = lock(&self.world);
            let stats: std::collections::HashMap<String, Value> = w
                .proxies
                .iter()
                .map(|(name, f)| {
                    let stats = serde_json::to_value(f.proxy.stats()).unwrap_or(Value::Null);
                    (name.clone(), stats)
                })
                .collect();
            let egress: std::collections::HashMap<String, Value> = w
                .live
                .iter()
                .filter_map(|(id, l)| {
                    let eg = l.watch.egress.as_ref()?;
                    Some((id.clone(), serde_json::to_value(eg.stats()).ok()?))
                })
                .collect();
            (stats, egress)
        };
        let now = self.clock.now_ms();
        let mut services = Vec::new();
        let mut states = Vec::new();
        for (name, svc) in &v.services {
            let desired = v.desired.services.get(name);
            let instances: Vec<Value> = svc
                .instances
                .values()
                .map(|i| {
                    let image = svc.release(&i.release).map(|r| r.image.digest.clone());
                    json!({
                        "id": i.id,
                        "release": i.release,
                        "image": image,
                        "pid": i.pid,
                        "age_ms": now.saturating_sub(i.started),
                        "phase": i.phase,
                        "in_rotation": i.in_rotation,
                        "replaces": i.replaces,
                        "start_to_healthy_ms": i.start_to_healthy_ms,
                        "limits": svc.release(&i.release).map(|r| crate::limits::Limits::status_json(r.spec.limits.as_ref())),
                        "egress": egress.get(&i.id).cloned().unwrap_or_else(|| json!([])),
                    })
                })
                .collect();
            let healthy = svc
                .instances
                .values()
                .filter(|i| {
                    Some(&i.release) == svc.active.as_ref()
                        && i.phase == Phase::Healthy
                        && i.in_rotation
                })
                .count();
            let stats = stats.get(name);
            let converged = svc.rollout.is_none()
                && desired
                    .is_some_and(|d| healthy == d.replicas as usize && !release_pending(svc, d))
                && svc.instances.values().all(|i| i.phase != Phase::Retiring);
            let secrets_missing = desired.map(|d| self.secrets.missing(name, &d.secrets));
            let (state, why) = crate::health::judge(&crate::health::Facts {
                replicas: desired.map(|d| d.replicas),
                healthy,
                converged,
                failed: svc.failed.is_some(),
                rolling_out: svc.rollout.is_some(),
                paused: svc.rollout.as_ref().is_some_and(|r| r.paused.is_some()),
                secrets_missing: secrets_missing.as_ref().map_or(0, Vec::len),
                backoff: svc.backoff_until > now,
            });
            states.push(state);
            services.push(json!({
                "name": name,
                "listen": desired.map(|d| d.listen.to_string()),
                "replicas": desired.map(|d| d.replicas),
                "limits": desired.map(|d| crate::limits::Limits::status_json(d.limits.as_ref())),
                "active": svc.active_release().map(|r| json!({"id": r.id, "image": r.image.to_string(), "created": r.created})),
                "rollout": svc.rollout.as_ref().map(|r| json!({"release": r.release, "from": r.from, "canary": r.canary, "step": r.step, "note": r.note, "failures": r.failures, "paused": r.paused.as_ref().map(|p| &p.why), "analysis_window": r.switched.is_some()})),
                "analysis": desired.and_then(|d| d.analysis),
                "healthy": healthy,
                "converged": converged,
                "failed": svc.failed.is_some(),
                "message": svc.message,
                "instances": instances,
                "proxy": stats,
                "secrets": desired.map(|d| d.secrets.keys().collect::<Vec<_>>()),
                "secrets_missing": secrets_missing,
                "state": state,
                "state_why": why,
                "backoff_ms": svc.backoff_until.saturating_sub(now),
            }));
        }
        json!({ "services": services, "exit": crate::health::exit_code(states) })
    }

    pub(super) fn apply(&self, path: &Path, reason: Option<String>, actor: &Actor) -> Response {
        let mut d = match Deployment::load(path) {
            Ok(d) => d,
            Err(e) => return Response::err(e),
        };
        let _one = lock(&self.changes);
        // Secrets: read here, by the daemon, before anything is checked or changed; a secret
        // that cannot be read refuses the whole apply.
        let values = if d.has_secrets() {
            let key = match self.secrets.key(&self.fleet_dir) {
                Ok(k) => k,
                Err(e) => return Response::err(format!("{e}; nothing was changed")),
            };
            match d.read_secrets(&key) {
                Ok(v) => v,
                Err(e) => return Response::err(e),
            }
        } else {
            crate::secrets::SecretValues::new()
        };
        // Services whose secrets the daemon lacked (it restarted): this apply lets them start,
        // even if it changes nothing else.
        let waiting: Vec<String> = d
            .services
            .iter()
            .filter(|(n, s)| !self.secrets.missing(n, &s.secrets).is_empty())
            .map(|(n, _)| n.clone())
            .collect();
        let (current, ours): (Deployment, Vec<std::net::SocketAddr>) = {
            let w = lock(&self.world);
            let ours = w.proxies.values().map(|f| f.listen).collect();
            (w.st.desired.clone(), ours)
        };
        // Ports: new listen addresses must be free on the host.
        for (name, spec) in &d.services {
            if !ours.contains(&spec.listen)
                && let Err(e) = crate::deploy::check_listen_free(name, spec.listen)
            {
                return Response::err(e);
            }
        }
        // Limits this host cannot give one instance.
        let (cpus, memory) = crate::limits::host_capacity();
        if let Err(e) = d.check_limits_fit(cpus, memory) {
            return Response::err(e);
        }
        // Only verified images: refuse the whole apply before changing
        // anything (unlocked: `changes` keeps the desired state as it is).
        for (name, spec) in &d.services {
            let cur = current.services.get(name);
            if cur.is_some_and(|c| c.image == spec.image && c.policy == spec.policy) {
                continue;
            }
            if let Err(why) = self.gate.check(&spec.image, &spec.policy) {
                return Response::err(format!(
                    "service {name}: image {} is refused by {}: {why}; nothing was changed",
                    spec.image,
                    spec.policy.display()
                ));
            }
        }
        // Egress: exactly what each image declares, never back at kiln's own proxies.
        let listens: Vec<std::net::SocketAddr> = d
            .services
            .values()
            .map(|s| s.listen)
            .chain(ours.iter().copied())
            .collect();
        for (name, spec) in &d.services {
            let baseline = self.drift.baseline(&spec.image.digest);
            if let Err(e) = d.check_egress(name, baseline.as_ref(), &listens) {
                return Response::err(e);
            }
        }
        if let Some(r) = &reason {
            for s in d.services.values_mut() {
                s.reason.get_or_insert_with(|| r.clone());
            }
        }
        let plan = crate::deploy::plan(&current, &d);
        let mut ev = Event::new("fleet.apply", "kiln apply")
            .resource(Resource::new("deployment", path.display().to_string()))
            .reason(reason.as_deref())
            .detail("plan", serde_json::to_value(&plan).unwrap_or(Value::Null));
        if !values.is_empty() {
            // Names and HMACs only: a rotation is visible, the value is not.
            let secrets: serde_json::Map<String, Value> = values
                .iter()
                .filter(|(_, vs)| !vs.is_empty())
                .map(|(svc, vs)| {
                    let list = vs
                        .iter()
                        .map(|v| json!({"name": v.name, "hmac": v.hmac, "env": v.env}))
                        .collect();
                    (svc.clone(), Value::Array(list))
                })
                .collect();
            ev = ev.detail("secrets", Value::Object(secrets));
        }
        ev.actor = actor.clone();
        if let Err(e) = self.record_first(ev) {
            return Response::err(e);
        }
        self.change(|st| {
            // Under the world lock, with the desired state: the tick's pruning keeps them.
            self.secrets.insert(&values);
            for (name, spec) in &d.services {
                let changed = st.desired.services.get(name) != Some(spec) || waiting.contains(name);
                if changed && let Some(svc) = st.services.get_mut(name) {
                    svc.failed = None;
                }
            }
            st.desired = d.clone();
        });
        Response::ok(json!({"plan": plan, "text": plan.to_string()}))
    }

    pub(super) fn rollback(
        &self,
        service: &str,
        reason: Option<String>,
        now: bool,
        actor: &Actor,
    ) -> Response {
        let _one = lock(&self.changes);
        let (active, prev, spec) = {
            let w = lock(&self.world);
            let Some(svc) = w.st.services.get(service) else {
                return Response::err(format!("unknown service {service:?}"));
            };
            let Some(active) = svc.active.clone() else {
                return Response::err(format!(
                    "service {service} has no active release to roll back from"
                ));
            };
            let pos = svc
                .releases
                .iter()
                .position(|r| r.id == active)
                .unwrap_or(0);
            let Some(prev) = svc.releases[..pos]
                .iter()
                .rev()
                .find(|r| r.image != svc.releases[pos].image)
                .cloned()
            else {
                return Response::err(format!(
                    "service {service} has no earlier release to roll back to"
                ));
            };
            let Some(spec) = w.st.desired.services.get(service).cloned() else {
                return Response::err(format!("service {service} is being destroyed"));
            };
            (active, prev, spec)
        };
        if let Err(why) = self.gate.check(&prev.image, &spec.policy) {
            return Response::err(format!(
                "rollback target {} is refused: {why}; nothing was changed",
                prev.image
            ));
        }
        // Its egress mapping was checked when it was applied; kiln's proxies may listen
        // elsewhere now.
        let listens: Vec<std::net::SocketAddr> = {
            let w = lock(&self.world);
            w.st.desired
                .services
                .values()
                .map(|s| s.listen)
                .chain(w.proxies.values().map(|f| f.listen))
                .collect()
        };
        if let Err(e) = crate::egress::check_destinations(service, &prev.spec.egress, &listens) {
            return Response::err(format!(
                "rollback target {} is refused: {e}; nothing was changed",
                prev.id
            ));
        }
        let mut ev = self
            .event("release.rollback", service)
            .resource(Resource::new("release", &active))
            .resource(Resource::named(
                "image",
                &prev.image.digest,
                prev.image.to_string(),
            ))
            .reason(reason.as_deref())
            .detail("to_release", prev.id.clone())
            .detail("now", now);
        ev.actor = actor.clone();
        if let Err(e) = self.record_first(ev) {
            return Response::err(e);
        }
        let mut next = spec.clone();
        next.image = prev.image.clone();
        next.env = prev.spec.env.clone();
        next.port = prev.spec.port;
        next.tmpfs_mb = prev.spec.tmpfs_mb;
        next.egress = prev.spec.egress.clone();
        next.reason = reason.clone().or(Some(format!("rollback to {}", prev.id)));
        if now {
            next.strategy = crate::deploy::Strategy::BlueGreen;
            next.analysis = None;
        }
        self.change(|st| {
            st.desired
                .services
                .insert(service.to_string(), next.clone());
            if let Some(svc) = st.services.get_mut(service) {
                svc.failed = None;
            }
        });
        Response::ok(
            json!({"service": service, "from": active, "to": prev.id, "image": prev.image.to_string()}),
        )
    }

    /// `kiln rollout pause|resume|abort`: a pause takes effect here; resume and abort are
    /// carried out by the reconciler's next step (abort records `release.abort` with the
    /// operator as actor).
    pub(super) fn rollout_control(
        &self,
        service: &str,
        action: RolloutAction,
        reason: Option<String>,
        actor: &Actor,
    ) -> Response {
        let _one = lock(&self.changes);
        let (release, paused, step) = {
            let w = lock(&self.world);
            let Some(svc) = w.st.services.get(service) else {
                return Response::err(format!("unknown service {service:?}"));
            };
            let Some(r) = &svc.rollout else {
                return Response::err(format!("service {service} has no rollout in progress"));
            };
            (r.release.clone(), r.paused.clone(), r.step.map(|i| i + 1))
        };
        let now = self.clock.now_ms();
        match action {
            RolloutAction::Pause => {
                if let Some(p) = &paused {
                    return Response::err(format!(
                        "the rollout of {release} is already paused: {}",
                        p.why
                    ));
                }
                let mut ev = self
                    .event("release.pause", service)
                    .resource(Resource::new("release", &release))
                    .reason(reason.as_deref())
                    .detail("step", step);
                ev.actor = actor.clone();
                if let Err(e) = self.record_first(ev) {
                    return Response::err(e);
                }
                let why = match &reason {
                    Some(m) => format!("paused by {}: {m}", actor.user),
                    None => format!("paused by {}", actor.user),
                };
                self.change(|st| {
                    if let Some(r) = st
                        .services
                        .get_mut(service)
                        .and_then(|s| s.rollout.as_mut())
                        && r.release == release
                    {
                        r.paused = Some(Pause {
                            why: why.clone(),
                            timeout: false,
                            since: now,
                        });
                    }
                    if let Some(s) = st.services.get_mut(service) {
                        s.message = format!("rollout of {release} {why}");
                    }
                });
            }
            RolloutAction::Resume | RolloutAction::Abort => {
                let op = if action == RolloutAction::Resume {
                    let Some(p) = &paused else {
                        return Response::err(format!("the rollout of {release} is not paused"));
                    };
                    let mut ev = self
                        .event("release.resume", service)
                        .resource(Resource::new("release", &release))
                        .reason(reason.as_deref())
                        .detail("step", step)
                        .detail("paused", p.why.clone())
                        .detail("paused_ms", now.saturating_sub(p.since));
                    ev.actor = actor.clone();
                    if let Err(e) = self.record_first(ev) {
                        return Response::err(e);
                    }
                    CommandOp::Resume
                } else {
                    CommandOp::Abort
                };
                self.change(|st| {
                    if let Some(r) = st
                        .services
                        .get_mut(service)
                        .and_then(|s| s.rollout.as_mut())
                        && r.release == release
                    {
                        r.command = Some(Command {
                            op,
                            actor: actor.clone(),
                            reason: reason.clone(),
                        });
                    }
                });
            }
        }
        Response::ok(json!({"service": service, "release": release, "action": action}))
    }

    pub(super) fn destroy(&self, service: &str, reason: Option<String>, actor: &Actor) -> Response {
        let _one = lock(&self.changes);
        if !lock(&self.world).st.desired.services.contains_key(service) {
            return Response::err(format!("unknown service {service:?}"));
        }
        let mut ev = self
            .event("fleet.destroy", service)
            .reason(reason.as_deref());
        ev.actor = actor.clone();
        if let Err(e) = self.record_first(ev) {
            return Response::err(e);
        }
        self.change(|st| {
            st.desired.services.remove(service);
        });
        Response::ok(json!({"destroying": service}))
    }

    pub(super) fn stream_logs(&self, s: &UnixStream, service: &str, follow: bool, q: &LogQuery) {
        let (known, live) = {
            let w = lock(&self.world);
            let svc = w.st.services.get(service);
            let live = q
                .instance
                .as_ref()
                .is_some_and(|id| svc.is_some_and(|s| s.instances.contains_key(id)));
            (svc.is_some(), live)
        };
        {
            // A destroyed service's output stays readable while it is kept.
            let rings = lock(&self.logs.rings);
            let ring = rings.get(service);
            let refusal = if !known && ring.is_none() {
                Some(format!("unknown service {service:?}"))
            } else {
                q.instance
                    .as_ref()
                    .filter(|id| !live && !ring.is_some_and(|r| r.has_instance(id)))
                    .map(|id| {
                        format!(
                            "service {service} has no instance {id:?}, and no output of one is kept"
                        )
                    })
            };
            if let Some(why) = refusal {
                drop(rings);
                let _ = reply(s, &Response::err(why));
                return;
            }
        }
        let (mut next, mut first) = (0u64, true);
        loop {
            let lines: Vec<String> = {
                let logs = lock(&self.logs.rings);
                let picked = logs
                    .get(service)
                    .map(|r| r.select(q, next, std::mem::take(&mut first)))
                    .unwrap_or_default();
                if let Some(r) = logs.get(service) {
                    // Everything up to here was considered, selected or not.
                    next = r.next;
                }
                picked
                    .into_iter()
                    .map(|l| format_line(l, q.timestamps))
                    .collect()
            };
            if !lines.is_empty() {
                let mut resp = Response::ok(json!({"lines": lines}));
                resp.more = follow;
                if reply(s, &resp).is_err() {
                    return;
                }
            }
            if !follow || self.stop.load(Ordering::Relaxed) {
                if lines.is_empty() {
                    let _ = reply(s, &Response::ok(json!({"lines": []})));
                }
                return;
            }
            let logs = lock(&self.logs.rings);
            let _ = self.logs.cv.wait_timeout(logs, Duration::from_millis(500));
        }
    }

    pub(super) fn debug_start(
        &self,
        service: &str,
        ttl_ms: u64,
        terminal: bool,
        actor: &Actor,
    ) -> Response {
        let Some(tools) = self.opts.debug_tools.clone() else {
            return Response::err("kiln serve has no debug tools directory");
        };
        let (id, rel) = {
            let mut w = lock(&self.world);
            let Some(rel) =
                w.st.services
                    .get(service)
                    .and_then(|s| s.active_release())
                    .cloned()
            else {
                return Response::err(format!("service {service:?} has no active release"));
            };
            (next_id(&mut w, &format!("debug-{service}-")), rel)
        };
        match self.host.prepare_debug(&id, &rel, &tools, terminal) {
            Ok(mut v) => {
                v["image"] = json!(rel.image.to_string());
                v["ttl_ms"] = json!(ttl_ms);
                // The bundle is prepared; the session exists (and the
                // client may start it) only once its event is recorded.
                let mut ev = self
                    .event("debug.start", service)
                    .resource(Resource::new("instance", &id))
                    .resource(Resource::named(
                        "image",
                        &rel.image.digest,
                        rel.image.to_string(),
                    ))
                    .detail("ttl_ms", ttl_ms)
                    .detail("in_rotation", false);
                ev.actor = actor.clone();
                if let Err(e) = self.record_first(ev) {
                    let _ = std::fs::remove_dir_all(self.fleet_dir.join("debug").join(&id));
                    return Response::err(e);
                }
                lock(&self.world).debug.insert(
                    id.clone(),
                    DebugSession {
                        service: service.to_string(),
                        expires: self.clock.now_ms() + ttl_ms,
                    },
                );
                Response::ok(v)
            }
            Err(e) => Response::err(format!("debug instance for {service}: {e}")),
        }
    }

    pub(super) fn chaos(
        self: Arc<Self>,
        service: &str,
        every_ms: u64,
        for_ms: u64,
        actor: &Actor,
    ) -> Response {
        if !lock(&self.world).st.services.contains_key(service) {
            return Response::err(format!("unknown service {service:?}"));
        }
        let mut ev = self
            .event("chaos.start", service)
            .detail("every_ms", every_ms)
            .detail("for_ms", for_ms);
        ev.actor = actor.clone();
        if let Err(e) = self.record_first(ev) {
            return Response::err(e);
        }
        let sh = self.clone();
        let name = service.to_string();
        std::thread::spawn(move || {
            let service = name;
            let end = Instant::now() + Duration::from_millis(for_ms);
            let mut seed = sh.clock.now_ms() ^ 0x9E37_79B9_7F4A_7C15;
            while Instant::now() < end && !sh.stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(every_ms.max(50)));
                let victim = {
                    let mut w = lock(&sh.world);
                    let ids: Vec<String> = w.st.services.get(&service).map_or_else(Vec::new, |s| {
                        s.instances
                            .values()
                            .filter(|i| i.in_rotation)
                            .map(|i| i.id.clone())
                            .collect()
                    });
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let v =
                        (!ids.is_empty()).then(|| ids[(seed % ids.len() as u64) as usize].clone());
                    if let Some(id) = &v {
                        w.expected_exits.insert(id.clone());
                    }
                    v
                };
                if let Some(id) = victim {
                    sh.host.kill(&id);
                    sh.record(
                        sh.event("chaos.kill", &service)
                            .resource(Resource::new("instance", &id))
                            .detail("signal", "SIGKILL"),
                    );
                    sh.wake();
                }
            }
        });
        Response::ok(json!({"service": service, "every_ms": every_ms, "for_ms": for_ms}))
    }
}

fn reply(mut s: &UnixStream, r: &Response) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(r).map_err(std::io::Error::other)?;
    line.push(b'\n');
    s.write_all(&line)
}

/// The caller, from SO_PEERCRED; `None` unless root or the daemon's user.
fn peer_actor(s: &UnixStream) -> Option<Actor> {
    let uid = crate::sys::peer_uid(s).ok()?;
    if uid != 0 && uid != crate::sys::euid() {
        return None;
    }
    Some(Actor::for_uid(uid))
}
