//! Instances: start one (verified bundle, stdio FIFOs), read its output, watch it, end a debug session.

use super::*;

impl Shared {
    /// Create, start and watch one instance of `rel`.
    pub(super) fn start_instance(
        &self,
        w: &mut World,
        name: &str,
        rel: &Release,
        replaces: Option<String>,
    ) -> Result<(), String> {
        let id = self.next_id(w, &format!("{name}-"));
        let t0 = now_ms();
        let store = Store::open(self.opts.state_dir.join("store"))
            .map_err(|e| format!("image store: {e}"))?;
        let digest: Digest = rel
            .image
            .digest
            .parse()
            .map_err(|e| format!("{}: {e}", rel.image))?;
        let mut rootfs = kiln_runtime::unpack(&store, &digest, &self.rootfs_dir)
            .map_err(|e| format!("unpacking {}: {e}", rel.image))?;
        self.keep_inodes(&rel.image.digest, rootfs.inodes.take());
        // A drifted copy that could not be moved away earlier is never used:
        // move it now, or refuse.
        if !rootfs.fresh && lock(&self.condemned).contains(&rootfs.path) {
            self.quarantine_rootfs(&rootfs.path, &rel.image.digest)
                .map_err(|e| refuse_drifted(&rel.image.to_string(), &e))?;
            rootfs = self.unpack_fresh(&store, &digest, &rel.image.to_string())?;
        }
        // A cached root filesystem nobody watched may have been changed: check
        // it before anything runs on it, and start over from the image if so.
        if !rootfs.fresh && !lock(&self.watches).contains_key(&rootfs.path) {
            match self.fs_drift(&rootfs.path, &rel.image.digest) {
                Ok(None) => {}
                Ok(Some(diff)) => {
                    self.rootfs_drifted(
                        w,
                        &rootfs.path,
                        &rel.image.digest,
                        &diff,
                        "unwatched cached copy, checked before use",
                    )
                    .map_err(|e| refuse_drifted(&rel.image.to_string(), &e))?;
                    rootfs = self.unpack_fresh(&store, &digest, &rel.image.to_string())?;
                }
                Err(e) => {
                    return Err(format!(
                        "checking the cached root filesystem of {}: {e}",
                        rel.image
                    ));
                }
            }
        }
        let mut spec = InstanceSpec::from_image(&id, &rootfs).map_err(|e| format!("{id}: {e}"))?;
        for (k, v) in &rel.spec.env {
            spec.set_env(k, v);
        }
        if let Some(mb) = rel.spec.tmpfs_mb {
            spec.tmp_size_mib = u64::from(mb);
        }
        spec.annotations
            .insert("dev.kiln.service".into(), name.into());
        spec.annotations
            .insert("dev.kiln.release".into(), rel.id.clone());
        spec.annotations.insert(
            "org.opencontainers.image.ref.name".into(),
            rel.image.to_string(),
        );
        let dir = self.bundles_dir.join(&id);
        let bundle = Bundle::write(&dir, &spec, &rootfs.path).map_err(|e| format!("{id}: {e}"))?;
        let (out, err) = self.stdio(name, &id, &bundle.dir)?;
        let config_sha256 = std::fs::read(bundle.config_path())
            .ok()
            .map(|b| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&b)));
        self.ensure_watch(&rootfs);
        let pid = self
            .runtime
            .start(&id, &bundle.dir, out, err)
            .map_err(|e| format!("starting {id}: {e}"))?;
        let inst = Instance {
            id: id.clone(),
            release: rel.id.clone(),
            pid,
            started: t0,
            phase: Phase::Starting,
            in_rotation: false,
            replaces,
            retiring_since: 0,
            retire_reason: None,
            start_to_healthy_ms: None,
            config_sha256,
            rootfs: Some(rootfs.path.clone()),
            drifted: None,
        };
        let live = self.watch(name, &inst, &rel.spec, true);
        w.live.insert(id.clone(), live);
        w.st.services
            .entry(name.to_string())
            .or_default()
            .instances
            .insert(id.clone(), inst);
        w.dirty = true;
        self.record(
            self.event("instance.start", name)
                .resource(Resource::new("instance", &id))
                .resource(Resource::named(
                    "image",
                    &rel.image.digest,
                    rel.image.to_string(),
                ))
                .resource(Resource::new("release", &rel.id))
                .detail("pid", pid)
                .detail("read_only_root", true)
                .detail("network", "own namespace, loopback only"),
        );
        Ok(())
    }

    /// A FIFO for the instance's stdout and stderr. The container gets it
    /// read-write, so it never sees EPIPE while kiln restarts; kiln reads it.
    pub(super) fn stdio(
        &self,
        service: &str,
        id: &str,
        dir: &Path,
    ) -> Result<(OwnedFd, OwnedFd), String> {
        let fifo = dir.join("output.fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes())
            .map_err(|_| format!("{}: bad path", fifo.display()))?;
        // SAFETY: mkfifo with a valid NUL-terminated path.
        if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(format!("{}: {e}", fifo.display()));
            }
        }
        let rw = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .map_err(|e| format!("{}: {e}", fifo.display()))?;
        self.read_output(service, id, &fifo);
        let out: OwnedFd = rw.into();
        let err = out
            .try_clone()
            .map_err(|e| format!("{}: {e}", fifo.display()))?;
        Ok((out, err))
    }

    pub(super) fn read_output(&self, service: &str, id: &str, fifo: &Path) {
        let Ok(f) = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo)
        else {
            return;
        };
        // Back to blocking reads.
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            use std::os::fd::AsRawFd;
            let fd = f.as_raw_fd();
            let fl = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK);
        }
        let (service, id) = (service.to_string(), id.to_string());
        let logs = self.logs.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(f);
            let mut line = Vec::new();
            loop {
                line.clear();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line);
                        logs.push(&service, format!("{id} | {}", text.trim_end()));
                    }
                }
            }
        });
    }

    /// Start the health-check thread of an instance.
    pub(super) fn watch(
        &self,
        service: &str,
        inst: &Instance,
        spec: &ServiceSpec,
        child: bool,
    ) -> Live {
        let health = Arc::new(HealthCell::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (health.clone(), stop.clone());
        let (pid, port, check) = (inst.pid, spec.port, spec.health.clone());
        if !child {
            // An adopted instance's output FIFO is read again.
            let fifo = self.bundles_dir.join(&inst.id).join("output.fifo");
            self.read_output(service, &inst.id, &fifo);
        }
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let res = match &check.check {
                    HealthCheck::HttpGet { path } => {
                        match kiln_runtime::http_get_in_netns(pid, port, path, check.timeout) {
                            Ok(code) if (200..400).contains(&code) => Ok(()),
                            Ok(code) => Err(format!("GET {path}: HTTP {code}")),
                            Err(e) => Err(format!("GET {path}: {e}")),
                        }
                    }
                    HealthCheck::Tcp => kiln_runtime::connect_in_netns(
                        pid,
                        SocketAddr::from(([127, 0, 0, 1], port)),
                        check.timeout,
                    )
                    .map(drop)
                    .map_err(|e| format!("connect :{port}: {e}")),
                };
                match res {
                    Ok(()) => {
                        h.ok_streak.fetch_add(1, Ordering::Relaxed);
                        h.fail_streak.store(0, Ordering::Relaxed);
                        h.ever_ok.store(true, Ordering::Relaxed);
                        let _ = h.first_ok_ms.set(now_ms());
                    }
                    Err(e) => {
                        h.fail_streak.fetch_add(1, Ordering::Relaxed);
                        h.ok_streak.store(0, Ordering::Relaxed);
                        *lock(&h.last_error) = e;
                    }
                }
                // Poll fast until first healthy, then at the interval.
                let pause = if h.ever_ok.load(Ordering::Relaxed) {
                    check.interval
                } else {
                    Duration::from_millis(10)
                };
                let until = Instant::now() + pause;
                while Instant::now() < until && !s.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20).min(pause));
                }
            }
        });
        Live {
            health,
            sockets: kiln_runtime::NetnsSockets::new(inst.pid).ok().map(Arc::new),
            stop,
            child,
        }
    }

    pub(super) fn end_debug(&self, id: &str, service: &str, why: &str) {
        let _ = self.runtime.kill(id, libc::SIGKILL);
        let _ = self.runtime.delete(id, true);
        let _ = std::fs::remove_dir_all(self.fleet_dir.join("debug").join(id));
        self.record(
            self.event("debug.stop", service)
                .resource(Resource::new("instance", id))
                .reason(Some(why)),
        );
    }

    // ---- drift --------------------------------------------------------------
}
