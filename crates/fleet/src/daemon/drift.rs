//! Drift: watch each unpacked rootfs, its inode record, sweeps, quarantine and replacement, `kiln drift check`.

use super::*;

impl Shared {
    /// Watch a root filesystem that was just unpacked or checked.
    pub(super) fn ensure_watch(&self, rootfs: &kiln_runtime::Rootfs) {
        self.watch_rootfs(&rootfs.path, true);
    }

    /// Start an inotify watcher for `root` unless it has one. A new watcher
    /// asks for a check at once unless the tree is known to be `clean`.
    pub(super) fn watch_rootfs(&self, root: &Path, clean: bool) {
        let mut ws = lock(&self.watches);
        if !ws.contains_key(root)
            && let Ok(wt) = crate::drift::RootfsWatch::new(root)
        {
            if clean {
                wt.dirty.store(false, Ordering::Relaxed);
            }
            ws.insert(root.to_path_buf(), wt);
        }
    }

    pub(super) fn drift_baseline(&self, digest: &str) -> Result<Arc<Baseline>, String> {
        if let Some(b) = lock(&self.baselines).get(digest) {
            return Ok(b.clone());
        }
        let store = Store::open(self.opts.state_dir.join("store")).map_err(|e| e.to_string())?;
        let d: Digest = digest.parse().map_err(|e| format!("{digest}: {e}"))?;
        let mut manifest = None;
        for (_, m) in store.referrers(&d).map_err(|e| e.to_string())? {
            if m.artifact_type.as_deref() == Some(kiln_sbom::MEDIA_TYPE_FILE_MANIFEST)
                && let Some(layer) = m.layers.first()
            {
                let bytes = store.read_descriptor(layer).map_err(|e| e.to_string())?;
                manifest = Some(kiln_sbom::FileManifest::parse(&bytes).map_err(|e| e.to_string())?);
                break;
            }
        }
        let manifest =
            manifest.ok_or_else(|| format!("{digest} has no file manifest to compare against"))?;
        let cfg = self.image_config(digest)?;
        let mut ports: Vec<u16> = cfg
            .config
            .exposed_ports
            .keys()
            .filter_map(|p| p.split('/').next()?.parse().ok())
            .collect();
        if let Some(b) = cfg.config.labels.get("dev.kiln.baseline")
            && let Ok(v) = serde_json::from_str::<Value>(b)
        {
            ports.extend(
                v["ingress"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.as_u64())
                    .map(|p| p as u16),
            );
        }
        let files = manifest
            .entries
            .iter()
            .filter_map(|e| Some((e.path.clone(), e.sha256.clone()?)))
            .collect();
        let b = Arc::new(Baseline {
            entries: kiln_drift::baseline_from_manifest(&manifest),
            manifest,
            files,
            ports,
        });
        lock(&self.baselines).insert(digest.to_string(), b.clone());
        Ok(b)
    }

    /// Keep the inode record a fresh unpack of `digest` took (in memory and
    /// in the state database); `None` (a cached rootfs) keeps what is kept.
    pub(super) fn keep_inodes(&self, digest: &str, record: Option<kiln_drift::InodeRecord>) {
        let Some(record) = record else { return };
        if let Err(e) = self.db.save_inodes(digest, &record) {
            // Held in memory still; after a restart the rootfs has no record
            // and is replaced by a fresh unpack (see `fs_drift`).
            eprintln!("kiln serve: {e}");
        }
        lock(&self.inodes).insert(digest.to_string(), Arc::new(record));
    }

    /// The inode record of the rootfs of `digest`, if one was kept.
    pub(super) fn inode_record(&self, digest: &str) -> Option<Arc<kiln_drift::InodeRecord>> {
        if let Some(r) = lock(&self.inodes).get(digest) {
            return Some(r.clone());
        }
        match self.db.load_inodes(digest) {
            Ok(Some(r)) => {
                let r = Arc::new(r);
                lock(&self.inodes).insert(digest.to_string(), r.clone());
                Some(r)
            }
            Ok(None) => None,
            Err(e) => {
                eprintln!("kiln serve: {e}; the root filesystem counts as having no record");
                None
            }
        }
    }

    /// Unpack `digest` after its cached copy was moved away; anything but a
    /// fresh unpack (which takes its record before the rootfs is visible)
    /// is refused.
    pub(super) fn unpack_fresh(
        &self,
        store: &Store,
        digest: &Digest,
        image: &str,
    ) -> Result<kiln_runtime::Rootfs, String> {
        let mut rootfs = kiln_runtime::unpack(store, digest, &self.rootfs_dir)
            .map_err(|e| format!("unpacking {image}: {e}"))?;
        if !rootfs.fresh {
            return Err(refuse_drifted(image, "it is still in the cache"));
        }
        self.keep_inodes(&digest.to_string(), rootfs.inodes.take());
        Ok(rootfs)
    }

    /// Forget the inode record of `digest` (its rootfs was moved away).
    pub(super) fn forget_inodes(&self, digest: &str) {
        lock(&self.inodes).remove(digest);
        if let Err(e) = self.db.remove_inodes(digest) {
            eprintln!("kiln serve: {e}");
        }
    }

    /// Compare one root filesystem with its image's file manifest: every
    /// content, and each path's inode number and link count with the record
    /// taken at unpack. A rootfs without a record (unpacked by an older
    /// kiln, or its record lost) is drift: what is on disk now cannot be
    /// told apart from a tampered tree (a file swapped for an outside inode
    /// with the same content passes every hash and link count), so it is
    /// never recorded here — it is quarantined and unpacked afresh, and the
    /// fresh unpack takes the record.
    pub(super) fn fs_drift(&self, rootfs: &Path, digest: &str) -> Result<Option<Value>, String> {
        let b = self.drift_baseline(digest)?;
        let Some(record) = self.inode_record(digest) else {
            return Ok(Some(no_record_diff()));
        };
        let (diff, _) =
            kiln_drift::check_rootfs_with(rootfs, &b.manifest, Some(&record), &MOUNT_POINTS)
                .map_err(|e| e.to_string())?;
        if diff.exit_code() == 0 {
            return Ok(None);
        }
        Ok(Some(serde_json::to_value(&diff).unwrap_or(Value::Null)))
    }

    /// The cheap metadata sweep of one root filesystem (see
    /// [`crate::drift::sweep_rootfs`]); no record is drift, as in
    /// [`Shared::fs_drift`].
    pub(super) fn sweep_drift(&self, rootfs: &Path, digest: &str) -> Result<Option<Value>, String> {
        let b = self.drift_baseline(digest)?;
        let Some(record) = self.inode_record(digest) else {
            return Ok(Some(no_record_diff()));
        };
        let diff = crate::drift::sweep_rootfs(rootfs, &b.entries, Some(&record), &MOUNT_POINTS)
            .map_err(|e| e.to_string())?;
        Ok(diff.map(|d| serde_json::to_value(&d).unwrap_or(Value::Null)))
    }

    /// Runtime checks of one instance.
    pub(super) fn runtime_drift(
        &self,
        inst: &Instance,
        digest: &str,
        port: u16,
    ) -> Vec<crate::drift::Finding> {
        let Ok(b) = self.drift_baseline(digest) else {
            return Vec::new();
        };
        let mut allowed = b.ports.clone();
        allowed.push(port);
        let mut f = crate::drift::process_drift(inst.pid, &b.files, &self.exe_hashes);
        f.extend(crate::drift::socket_drift(inst.pid, &allowed));
        if let Some(want) = &inst.config_sha256
            && let Some(x) = crate::drift::config_drift(&self.bundles_dir.join(&inst.id), want)
        {
            f.push(x);
        }
        f
    }

    /// Move the directory of a drifted root filesystem into quarantine
    /// (evidence, and out of the cache so the next unpack is fresh). Its
    /// inode record is forgotten only once the move succeeded: a copy left
    /// at its cached path stays held to the record (and is refused).
    pub(super) fn quarantine_rootfs(&self, rootfs: &Path, digest: &str) -> Result<PathBuf, String> {
        let dir = rootfs
            .parent()
            .ok_or_else(|| format!("{} has no parent directory", rootfs.display()))?;
        let quarantine = self.fleet_dir.join("quarantine");
        std::fs::create_dir_all(&quarantine)
            .map_err(|e| format!("creating {}: {e}", quarantine.display()))?;
        let to = quarantine.join(format!(
            "{}-{}",
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            now_ms()
        ));
        std::fs::rename(dir, &to)
            .map_err(|e| format!("moving {} to {}: {e}", dir.display(), to.display()))?;
        lock(&self.condemned).remove(rootfs);
        self.forget_inodes(digest);
        Ok(to)
    }

    /// A drifted root filesystem: keep it as evidence outside the cache (so
    /// replacements unpack a fresh copy) and mark every instance on it.
    /// `Err` when it could not be moved away: it stays condemned, and no
    /// instance starts on it until a retried move succeeds.
    pub(super) fn rootfs_drifted(
        &self,
        w: &mut World,
        rootfs: &Path,
        digest: &str,
        diff: &Value,
        how: &str,
    ) -> Result<(), String> {
        let mut affected = Vec::new();
        for (name, svc) in w.st.services.iter_mut() {
            for inst in svc.instances.values_mut() {
                if inst.rootfs.as_deref() == Some(rootfs)
                    && inst.drifted.is_none()
                    && inst.phase != Phase::Retiring
                {
                    inst.drifted = Some(format!("root filesystem of {digest} changed"));
                    affected.push((name.clone(), inst.id.clone()));
                }
            }
        }
        lock(&self.watches).remove(rootfs);
        lock(&self.sweep_clock).remove(rootfs);
        let kept = self.quarantine_rootfs(rootfs, digest);
        if kept.is_err() {
            lock(&self.condemned).insert(rootfs.to_path_buf());
        }
        w.dirty = true;
        let reason = if is_no_record(diff) {
            format!(
                "root filesystem has no unpack-time inode record, so it cannot be told apart from a tampered one ({how})"
            )
        } else {
            format!("root filesystem differs from the image's file manifest ({how})")
        };
        let mut ev = Event::new("drift.detected", "kiln serve")
            .resource(Resource::new("image", digest))
            .reason(Some(&reason))
            .detail("kind", "filesystem")
            .detail("diff", diff.clone());
        ev = match &kept {
            Ok(to) => ev
                .detail(
                    "response",
                    "replace every instance on it; the root filesystem is kept as evidence",
                )
                .detail("evidence", to.display().to_string()),
            Err(e) => ev
                .detail(
                    "response",
                    "replace every instance on it; the root filesystem could not be moved away, so no instance starts on it until it can be",
                )
                .detail("quarantine_error", e.clone()),
        };
        for (name, id) in &affected {
            ev = ev.resource(Resource::named("instance", id, name.clone()));
        }
        self.record(ev);
        kept.map(|_| ())
    }

    pub(super) fn instance_drifted(
        &self,
        w: &mut World,
        name: &str,
        id: &str,
        findings: &[crate::drift::Finding],
        how: &str,
    ) {
        let summary = findings
            .iter()
            .map(|f| f.detail.clone())
            .collect::<Vec<_>>()
            .join("; ");
        if let Some(i) =
            w.st.services
                .get_mut(name)
                .and_then(|s| s.instances.get_mut(id))
        {
            if i.drifted.is_some() {
                return;
            }
            i.drifted = Some(summary.clone());
            w.dirty = true;
        }
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
    }

    /// Continuous detection: runtime checks every second, a root filesystem
    /// check as soon as inotify reports a change, a metadata sweep of every
    /// root filesystem every few seconds (what inotify cannot see: an
    /// outside hard link), and a full re-hash on a schedule.
    pub(super) fn drift_tick(&self, w: &mut World) {
        let now = Instant::now();
        let run_runtime = {
            let mut c = lock(&self.drift_clock);
            if now.duration_since(c.0) >= Duration::from_secs(1) {
                c.0 = now;
                true
            } else {
                false
            }
        };
        // (rootfs, digest) of every live instance, and the runtime targets.
        let mut roots: Vec<(PathBuf, String)> = Vec::new();
        let mut targets = Vec::new();
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
        for (root, digest) in roots {
            // Adopted instances' root filesystems get their watcher here.
            self.watch_rootfs(&root, false);
            let changed = lock(&self.watches)
                .get(&root)
                .is_some_and(|wt| wt.dirty.swap(false, Ordering::Relaxed));
            let due = {
                let mut c = lock(&self.drift_clock);
                let last = *c.1.entry(root.clone()).or_insert(now);
                if now.duration_since(last) >= self.full_scan {
                    c.1.insert(root.clone(), now);
                    true
                } else {
                    false
                }
            };
            let sweep = {
                let mut c = lock(&self.sweep_clock);
                let last = *c.entry(root.clone()).or_insert(now);
                if now.duration_since(last) >= self.sweep_every {
                    c.insert(root.clone(), now);
                    true
                } else {
                    false
                }
            };
            if !(changed || due || sweep) {
                continue;
            }
            let (how, result) = if changed || due {
                let how = if changed {
                    "change event"
                } else {
                    "scheduled full re-hash"
                };
                (how, self.fs_drift(&root, &digest))
            } else {
                ("metadata sweep", self.sweep_drift(&root, &digest))
            };
            match result {
                Ok(Some(diff)) => {
                    // A failed move is in the event; the rootfs stays condemned.
                    let _ = self.rootfs_drifted(w, &root, &digest, &diff, how);
                }
                Ok(None) => {
                    if due {
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
                let f = self.runtime_drift(&inst, &digest, port);
                if !f.is_empty() {
                    self.instance_drifted(w, &name, &inst.id, &f, "runtime check");
                }
            }
        }
    }

    pub(super) fn drift_check(&self, target: Option<&str>, actor: &Actor) -> Response {
        let mut w = lock(&self.world);
        let mut results = Vec::new();
        let mut checked_roots: HashMap<PathBuf, Option<Value>> = HashMap::new();
        let mut todo = Vec::new();
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
        if todo.is_empty() {
            return Response::err(match target {
                Some(t) => format!("no service or instance {t:?}"),
                None => "no instances are running".to_string(),
            });
        }
        let mut drifted = 0;
        for (name, inst, digest, port) in todo {
            let fs = match &inst.rootfs {
                Some(r) => match checked_roots.get(r) {
                    Some(v) => v.clone(),
                    None => {
                        let v = match self.fs_drift(r, &digest) {
                            Ok(v) => v,
                            Err(e) => return Response::err(format!("checking {}: {e}", inst.id)),
                        };
                        if let Some(diff) = &v {
                            // A failed move is in the event; the rootfs stays condemned.
                            let _ =
                                self.rootfs_drifted(&mut w, r, &digest, diff, "kiln drift check");
                        }
                        checked_roots.insert(r.clone(), v.clone());
                        v
                    }
                },
                None => None,
            };
            let findings = self.runtime_drift(&inst, &digest, port);
            if !findings.is_empty() {
                self.instance_drifted(&mut w, &name, &inst.id, &findings, "kiln drift check");
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
        drop(w);
        self.wake.notify_all();
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

    // ---- API --------------------------------------------------------------
}
