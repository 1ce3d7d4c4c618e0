//! Drift in the daemon: which roots and instances to check (a snapshot
//! under the world lock), the checks themselves (unlocked: a full re-hash
//! takes seconds), then the audit event (unlocked) and marking the
//! instances found drifted (locked again). The reconciler replaces marked
//! instances, new one first. Also `kiln drift check`.

use std::collections::HashMap;
use std::path::PathBuf;

use kiln_audit::{Actor, Event, Resource};
use serde_json::{Value, json};

use super::drift::{Due, is_no_record};
use super::host::{Quarantine, RootfsDrift};
use super::{Shared, lock};
use crate::api::Response;
use crate::drift::Finding;
use crate::state::{Instance, Phase};

/// A runtime-check target: (service, instance, image digest, service port).
type Target = (String, Instance, String, u16);

impl Shared {
    /// Record what was found on a drifted root filesystem (the host already
    /// moved it away, or condemned it), then mark every instance on it.
    pub(super) fn apply_rootfs_drift(&self, d: &RootfsDrift) {
        let on_it = |inst: &Instance| {
            inst.rootfs.as_deref() == Some(d.rootfs.as_path())
                && inst.drifted.is_none()
                && inst.phase != Phase::Retiring
        };
        let affected: Vec<(String, String)> = {
            let w = lock(&self.world);
            w.st.services
                .iter()
                .flat_map(|(name, svc)| {
                    svc.instances
                        .values()
                        .filter(|i| on_it(i))
                        .map(|i| (name.clone(), i.id.clone()))
                })
                .collect()
        };
        let reason = if is_no_record(&d.diff) {
            format!(
                "root filesystem has no unpack-time inode record, so it cannot be told apart from a tampered one ({})",
                d.how
            )
        } else {
            format!(
                "root filesystem differs from the image's file manifest ({})",
                d.how
            )
        };
        let mut ev = Event::new("drift.detected", "kiln serve")
            .resource(Resource::new("image", &d.digest))
            .reason(Some(&reason))
            .detail("kind", "filesystem")
            .detail("diff", d.diff.clone());
        ev = match &d.quarantine {
            Quarantine::Moved(to) => ev
                .detail(
                    "response",
                    "replace every instance on it; the root filesystem is kept as evidence",
                )
                .detail("evidence", to.display().to_string()),
            Quarantine::Failed(e) => ev
                .detail(
                    "response",
                    "replace every instance on it; the root filesystem could not be moved away, so no instance starts on it until it can be",
                )
                .detail("quarantine_error", e.clone()),
        };
        for (name, id) in &affected {
            ev = ev.resource(Resource::named("instance", id, name.clone()));
        }
        // The event first: the reconciler replaces what is marked.
        self.record(ev);
        let mut w = lock(&self.world);
        for (name, id) in &affected {
            if let Some(i) =
                w.st.services
                    .get_mut(name)
                    .and_then(|s| s.instances.get_mut(id))
                && on_it(i)
            {
                i.drifted = Some(format!("root filesystem of {} changed", d.digest));
            }
        }
        w.touch();
    }

    /// A root filesystem found drifted: quarantine it, mark, record.
    fn rootfs_drifted(&self, root: &std::path::Path, digest: &str, diff: &Value, how: &str) {
        let quarantine = self.drift.condemn(root, digest);
        self.apply_rootfs_drift(&RootfsDrift {
            rootfs: root.to_path_buf(),
            digest: digest.to_string(),
            diff: diff.clone(),
            how: how.to_string(),
            quarantine,
        });
    }

    fn instance_drifted(&self, name: &str, id: &str, findings: &[Finding], how: &str) {
        let summary = findings
            .iter()
            .map(|f| f.detail.clone())
            .collect::<Vec<_>>()
            .join("; ");
        let marked = lock(&self.world)
            .st
            .services
            .get(name)
            .and_then(|s| s.instances.get(id))
            .is_some_and(|i| i.drifted.is_some());
        if marked {
            return;
        }
        // The event first: the reconciler replaces what is marked.
        self.record(
            Event::new("drift.detected", "kiln serve")
                .resource(Resource::named("instance", id, name))
                .reason(Some(&format!("{summary} ({how})")))
                .detail("kind", "runtime")
                .detail(
                    "findings",
                    serde_json::to_value(findings).unwrap_or(Value::Null),
                )
                .detail("response", "replace the instance"),
        );
        let mut w = lock(&self.world);
        if let Some(i) =
            w.st.services
                .get_mut(name)
                .and_then(|s| s.instances.get_mut(id))
        {
            i.drifted = Some(summary);
            w.touch();
        }
    }

    /// Continuous detection: runtime checks every second, a root filesystem
    /// check as soon as inotify reports a change, a metadata sweep of every
    /// root filesystem every few seconds (what inotify cannot see: an
    /// outside hard link), and a full re-hash on a schedule. Runs without
    /// the world lock but for the snapshot and the marking.
    pub(super) fn drift_tick(&self) {
        let _one = lock(&self.drift_busy);
        let run_runtime = self.drift.runtime_due();
        // (rootfs, digest) of every live instance, and the runtime targets.
        let mut roots: Vec<(PathBuf, String)> = Vec::new();
        let mut targets: Vec<Target> = Vec::new();
        {
            let w = lock(&self.world);
            for (name, svc) in &w.st.services {
                let port = w.st.desired.services.get(name).map_or(0, |s| s.port);
                for inst in svc.instances.values() {
                    let Some(rel) = svc.release(&inst.release) else {
                        continue;
                    };
                    if let Some(r) = &inst.rootfs
                        && !roots.iter().any(|(p, _)| p == r)
                        && inst.drifted.is_none()
                    {
                        roots.push((r.clone(), rel.image.digest.clone()));
                    }
                    if inst.phase == Phase::Healthy && inst.drifted.is_none() {
                        targets.push((name.clone(), inst.clone(), rel.image.digest.clone(), port));
                    }
                }
            }
        }
        for (root, digest) in roots {
            let Due {
                changed,
                full,
                sweep,
            } = self.drift.due(&root);
            if !(changed || full || sweep) {
                continue;
            }
            let (how, result) = if changed || full {
                let how = if changed {
                    "change event"
                } else {
                    "scheduled full re-hash"
                };
                (how, self.drift.fs_drift(&root, &digest))
            } else {
                ("metadata sweep", self.drift.sweep_drift(&root, &digest))
            };
            match result {
                // A failed move is in the event; the rootfs stays condemned.
                Ok(Some(diff)) => self.rootfs_drifted(&root, &digest, &diff, how),
                Ok(None) => {
                    if full {
                        self.record(
                            Event::new("drift.check", "kiln serve")
                                .resource(Resource::new("image", &digest))
                                .detail("kind", "scheduled full re-hash")
                                .detail("drift", false),
                        );
                    }
                }
                Err(e) => eprintln!("kiln serve: drift check of {}: {e}", root.display()),
            }
        }
        if run_runtime {
            for (name, inst, digest, port) in targets {
                let f = self.drift.runtime_drift(&inst, &digest, port);
                if !f.is_empty() {
                    self.instance_drifted(&name, &inst.id, &f, "runtime check");
                }
            }
        }
    }

    pub(super) fn drift_check(&self, target: Option<&str>, actor: &Actor) -> Response {
        let _one = lock(&self.drift_busy);
        let mut todo: Vec<Target> = Vec::new();
        {
            let w = lock(&self.world);
            for (name, svc) in &w.st.services {
                let port = w.st.desired.services.get(name).map_or(0, |s| s.port);
                for inst in svc.instances.values() {
                    let hit = target.is_none_or(|t| t == name || t == inst.id);
                    if !hit || inst.phase == Phase::Retiring {
                        continue;
                    }
                    if let Some(rel) = svc.release(&inst.release) {
                        todo.push((name.clone(), inst.clone(), rel.image.digest.clone(), port));
                    }
                }
            }
        }
        if todo.is_empty() {
            return Response::err(match target {
                Some(t) => format!("no service or instance {t:?}"),
                None => "no instances are running".to_string(),
            });
        }
        let mut results = Vec::new();
        let mut checked_roots: HashMap<PathBuf, Option<Value>> = HashMap::new();
        let mut drifted = 0;
        for (name, inst, digest, port) in todo {
            let fs = match &inst.rootfs {
                Some(r) => match checked_roots.get(r) {
                    Some(v) => v.clone(),
                    None => {
                        let v = match self.drift.fs_drift(r, &digest) {
                            Ok(v) => v,
                            Err(e) => return Response::err(format!("checking {}: {e}", inst.id)),
                        };
                        if let Some(diff) = &v {
                            // A failed move is in the event; the rootfs stays condemned.
                            self.rootfs_drifted(r, &digest, diff, "kiln drift check");
                        }
                        checked_roots.insert(r.clone(), v.clone());
                        v
                    }
                },
                None => None,
            };
            let findings = self.drift.runtime_drift(&inst, &digest, port);
            if !findings.is_empty() {
                self.instance_drifted(&name, &inst.id, &findings, "kiln drift check");
            }
            let any = fs.is_some() || !findings.is_empty() || inst.drifted.is_some();
            if any {
                drifted += 1;
            }
            results.push(json!({
                "service": name,
                "instance": inst.id,
                "image": digest,
                "drift": any,
                "filesystem": fs,
                "runtime": findings,
                "already_marked": inst.drifted,
            }));
        }
        self.wake();
        let mut ev = Event::new("drift.check", "kiln drift check")
            .detail("kind", "on demand")
            .detail("instances", results.len())
            .detail("drifted", drifted);
        ev.actor = actor.clone();
        if let Some(t) = target {
            ev = ev.resource(Resource::new("target", t));
        }
        self.record(ev);
        Response::ok(json!({"instances": results, "drifted": drifted}))
    }
}
