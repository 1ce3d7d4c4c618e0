//! The real [`Host`]: instances under runc (verified bundle on a checked
//! root filesystem, stdio FIFOs), health checks inside their network
//! namespaces, exits through `waitpid` or `/proc` (with the memory
//! controller's word on OOM kills), cgroup limits, debug bundles; secrets on the
//! daemon's tmpfs (see [`crate::secrets`]); an instance with declared egress gets its
//! own read-only `/etc/hosts` and kiln's forwarder listening inside its namespace (see
//! [`crate::egress`]).

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use kiln_oci::{Digest, Store};
use kiln_runtime::cgroup::CgroupLayout;
use kiln_runtime::{Bundle, InstanceSpec, Runtime};
use serde_json::{Value, json};

use super::clock::Clock;
use super::drift::DriftWatch;
use super::host::{HealthCell, Host, HostError, Launched, RootfsDrift, Watch};
use super::host_paths::{bundle_dir, run_dir, secrets_dir, tmpfs_bundle_dir};
use super::{Logs, lock};
use crate::deploy::{HealthCheck, ServiceSpec};
use crate::egress::forward::{Caps, Egress};
use crate::proxy::Dial;
use crate::secrets::SecretStore;
use crate::state::{Instance, Release};
use crate::sys;

/// runc, network namespaces and `/proc`.
pub(super) struct RuncHost {
    pub runtime: Arc<dyn Runtime>,
    pub drift: Arc<DriftWatch>,
    pub logs: Arc<Logs>,
    pub clock: Arc<dyn Clock>,
    pub state_dir: PathBuf,
    pub fleet_dir: PathBuf,
    pub rootfs_dir: PathBuf,
    pub bundles_dir: PathBuf,
    /// This state directory's tag ([`super::host_paths::state_tag`]).
    pub tag: String,
    /// Secret values (memory only), delivered at launch.
    pub secrets: Arc<SecretStore>,
    /// Egress forwarders started by `launch`, until `watch` takes them.
    pub egress: Mutex<HashMap<String, Arc<Egress>>>,
}

impl RuncHost {
    fn store(&self) -> Result<Store, kiln_oci::OciError> {
        Store::open(self.state_dir.join("store"))
    }

    /// A FIFO for the instance's stdout and stderr. The container gets it
    /// read-write, so it never sees EPIPE while kiln restarts; kiln reads it.
    fn stdio(&self, service: &str, id: &str, dir: &Path) -> Result<(OwnedFd, OwnedFd), HostError> {
        let fifo = dir.join("output.fifo");
        match sys::mkfifo(&fifo, 0o600) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                return Err(HostError::BadPath { path: fifo });
            }
            Err(e) => return Err(HostError::io(&fifo)(e)),
        }
        let rw = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .map_err(HostError::io(&fifo))?;
        self.read_output(service, id, &fifo);
        let out: OwnedFd = rw.into();
        let err = out.try_clone().map_err(HostError::io(&fifo))?;
        Ok((out, err))
    }

    fn read_output(&self, service: &str, id: &str, fifo: &Path) {
        let Ok(f) = sys::open_fifo_reader(fifo) else {
            return;
        };
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
                        logs.push(&service, &id, text.trim_end().to_string());
                    }
                }
            }
        });
    }

    /// Move a drifted cached copy away and describe it; `Err` when it
    /// could not be moved (it stays condemned).
    fn drifted_before_use(
        &self,
        rootfs: &Path,
        digest: &str,
        diff: Value,
        image: &str,
    ) -> Result<RootfsDrift, HostError> {
        let quarantine = self.drift.condemn(rootfs, digest);
        let d = RootfsDrift {
            rootfs: rootfs.to_path_buf(),
            digest: digest.to_string(),
            diff,
            how: "unwatched cached copy, checked before use".into(),
            quarantine,
        };
        match &d.quarantine {
            super::host::Quarantine::Moved(_) => Ok(d),
            super::host::Quarantine::Failed(why) => Err(HostError::Drifted {
                image: image.to_string(),
                why: why.clone(),
                drift: Some(Box::new(d.clone())),
            }),
        }
    }
}

/// This host's cgroup layout (the mount table does not change under a daemon).
fn cgroups() -> Option<&'static CgroupLayout> {
    static LAYOUT: OnceLock<Option<CgroupLayout>> = OnceLock::new();
    LAYOUT.get_or_init(CgroupLayout::detect).as_ref()
}

impl RuncHost {
    /// The runtime spec every instance of `rel` starts from, a debug one too: the image's
    /// process, `id`'s cgroup under this daemon's (`/kiln/<tag>/<id>`), the release's limits
    /// and its `/tmp` size.
    fn base_spec(
        &self,
        id: &str,
        rootfs: &kiln_runtime::Rootfs,
        rel: &Release,
    ) -> Result<InstanceSpec, HostError> {
        let mut spec =
            InstanceSpec::from_image(id, rootfs).map_err(|source| HostError::Instance {
                id: id.to_string(),
                source,
            })?;
        spec.cgroups_path = Some(super::host_paths::cgroup_path(&self.tag, id));
        if let Some(limits) = &rel.spec.limits {
            let swap_accounted = cgroups().is_none_or(CgroupLayout::swap_limit_supported);
            limits.apply_to(&mut spec, swap_accounted);
        }
        if let Some(mb) = rel.spec.tmpfs_mb {
            spec.tmp_size_mib = u64::from(mb);
        }
        Ok(spec)
    }

    /// Removes this daemon's cgroup directory (`/kiln/<tag>`) once its last
    /// instance is gone (a busy one stays).
    fn remove_cgroup_parent(&self, id: &str) {
        let path = super::host_paths::cgroup_path(&self.tag, id);
        if let (Some(c), Some((parent, _))) = (cgroups(), path.rsplit_once('/')) {
            c.remove_if_empty(parent);
        }
    }

    /// Put instance `id`'s secrets (`held`) on the daemon's tmpfs and into `spec`: the files
    /// (mode 0400, the image user's) bind-mounted read-only at `/run/secrets`, and the
    /// `env = true` ones as variables. `true` when `spec` now holds a secret (its bundle must
    /// go on the tmpfs too).
    fn deliver_secrets(
        &self,
        id: &str,
        held: &[crate::secrets::HeldSecret],
        spec: &mut InstanceSpec,
    ) -> Result<bool, HostError> {
        if held.is_empty() {
            return Ok(false);
        }
        let run = run_dir(&self.tag);
        crate::secrets::ensure_tmpfs(&run).map_err(HostError::io(&run))?;
        let dir = secrets_dir(&self.tag, id);
        let files: Vec<(&str, &[u8])> = held
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_slice()))
            .collect();
        crate::secrets::write_instance_secrets(&dir, &files, spec.user.uid, spec.user.gid)
            .map_err(HostError::io(&dir))?;
        spec.bind_mounts.push(kiln_runtime::BindMount {
            source: dir,
            destination: "/run/secrets".into(),
        });
        let mut in_env = false;
        for h in held {
            if h.env
                && let Some(value) = crate::secrets::env_value(&h.value)
            {
                spec.set_env(&h.name, &value);
                in_env = true;
            }
        }
        Ok(in_env)
    }

    /// Remove instance `id`'s secret files and tmpfs bundle, if any.
    fn remove_memory_files(&self, id: &str) {
        let _ = crate::secrets::remove_instance_dir(&secrets_dir(&self.tag, id));
        let _ = crate::secrets::remove_instance_dir(&tmpfs_bundle_dir(&self.tag, id));
    }

    /// For an instance with declared egress: its routes, its own read-only `/etc/hosts` in
    /// the bundle directory `dir`, bound over the shared rootfs's (a mount point made if
    /// the image has none). No egress: nothing, no routes.
    fn egress_hosts(
        &self,
        id: &str,
        svc: &ServiceSpec,
        rootfs: &Path,
        dir: &Path,
        spec: &mut InstanceSpec,
    ) -> Result<Vec<crate::egress::Route>, HostError> {
        if svc.egress.is_empty() {
            return Ok(Vec::new());
        }
        let egress = |source| HostError::Egress {
            id: id.to_string(),
            source,
        };
        let routes = crate::egress::routes(&svc.egress)
            .map_err(|e| egress(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
        hosts_mount_point(rootfs).map_err(egress)?;
        let hosts = dir.join("hosts");
        write_hosts(&hosts, &crate::egress::hosts_file(&routes)).map_err(egress)?;
        spec.bind_mounts.push(kiln_runtime::BindMount {
            source: hosts,
            destination: "/etc/hosts".into(),
        });
        Ok(routes)
    }

    /// Start the instance; with `routes`, kiln's egress listeners are made inside its
    /// network namespace before its process runs (and kept for `watch`).
    fn start_with_egress(
        &self,
        id: &str,
        bundle: &Path,
        out: OwnedFd,
        err: OwnedFd,
        routes: Vec<crate::egress::Route>,
    ) -> Result<u32, HostError> {
        let mut egress = None;
        let started = if routes.is_empty() {
            self.runtime.start(id, bundle, out, err)
        } else {
            self.runtime
                .start_prepared(id, bundle, out, err, &mut |pid| {
                    egress = Some(start_egress(pid, routes.clone())?);
                    Ok(())
                })
        };
        let pid = started.map_err(|source| HostError::Start {
            id: id.to_string(),
            source,
        })?;
        if let Some(eg) = egress {
            lock(&self.egress).insert(id.to_string(), eg);
        }
        Ok(pid)
    }
}

impl Host for RuncHost {
    fn list(&self) -> Vec<(String, u32)> {
        self.runtime
            .list()
            .unwrap_or_default()
            .into_iter()
            .map(|s| (s.id, s.pid))
            .collect()
    }

    fn alive(&self, pid: u32) -> bool {
        sys::pid_alive(pid)
    }

    fn exited(&self, id: &str, pid: u32, child: bool) -> Option<String> {
        let how = 'how: {
            if child {
                match kiln_runtime::try_reap(pid) {
                    Ok(Some(status)) => break 'how sys::describe_wait(status),
                    Ok(None) => return None,
                    Err(_) => {}
                }
            }
            if sys::pid_alive(pid) {
                return None;
            }
            "exited".to_string()
        };
        // Its cgroup is still there (runc delete comes with destroy): did
        // the memory limit kill it?
        let cgroup = super::host_paths::cgroup_path(&self.tag, id);
        let oom = cgroups()
            .and_then(|c| c.memory_verdict(&cgroup))
            .and_then(|v| crate::limits::oom_reason(&how, &v));
        Some(oom.unwrap_or(how))
    }

    fn launch(
        &self,
        service: &str,
        id: &str,
        rel: &Release,
        secrets: &[crate::secrets::HeldSecret],
    ) -> Result<Launched, HostError> {
        let image = rel.image.to_string();
        let store = self.store().map_err(HostError::Store)?;
        let digest: Digest = rel
            .image
            .digest
            .parse()
            .map_err(|source| HostError::Image {
                image: image.clone(),
                source,
            })?;
        let unpack = |store: &Store| {
            kiln_runtime::unpack(store, &digest, &self.rootfs_dir).map_err(|source| {
                HostError::Unpack {
                    image: image.clone(),
                    source,
                }
            })
        };
        let mut rootfs = unpack(&store)?;
        self.drift
            .keep_inodes(&rel.image.digest, rootfs.inodes.take());
        let mut found = None;
        // A drifted copy that could not be moved away earlier is never used:
        // move it now, or refuse.
        if !rootfs.fresh && self.drift.is_condemned(&rootfs.path) {
            self.drift
                .quarantine_rootfs(&rootfs.path, &rel.image.digest)
                .map_err(|e| HostError::Drifted {
                    image: image.clone(),
                    why: e.to_string(),
                    drift: None,
                })?;
            rootfs = self.drift.unpack_fresh(&store, &digest, &image)?;
        }
        // A cached root filesystem nobody watched may have been changed: check
        // it before anything runs on it, and start over from the image if so.
        if !rootfs.fresh && !self.drift.is_watched(&rootfs.path) {
            match self.drift.fs_drift(&rootfs.path, &rel.image.digest) {
                Ok(None) => {}
                Ok(Some(diff)) => {
                    found = Some(self.drifted_before_use(
                        &rootfs.path,
                        &rel.image.digest,
                        diff,
                        &image,
                    )?);
                    rootfs = self.drift.unpack_fresh(&store, &digest, &image)?;
                }
                Err(source) => return Err(HostError::Check { image, source }),
            }
        }
        let instance = |source| HostError::Instance {
            id: id.to_string(),
            source,
        };
        let mut spec = self.base_spec(id, &rootfs, rel)?;
        for (k, v) in &rel.spec.env {
            spec.set_env(k, v);
        }
        spec.annotations
            .insert("dev.kiln.service".into(), service.into());
        spec.annotations
            .insert("dev.kiln.release".into(), rel.id.clone());
        spec.annotations
            .insert("org.opencontainers.image.ref.name".into(), image.clone());
        let on_tmpfs = self.deliver_secrets(id, secrets, &mut spec)?;
        let started = (|| {
            // An env secret is in config.json: that bundle lives on the tmpfs.
            let dir = if on_tmpfs {
                tmpfs_bundle_dir(&self.tag, id)
            } else {
                self.bundles_dir.join(id)
            };
            let routes = self.egress_hosts(id, &rel.spec, &rootfs.path, &dir, &mut spec)?;
            let bundle = Bundle::write(&dir, &spec, &rootfs.path).map_err(instance)?;
            let (out, err) = self.stdio(service, id, &bundle.dir)?;
            let config_sha256 = std::fs::read(bundle.config_path()).ok().and_then(|b| {
                let b = zeroize::Zeroizing::new(b);
                if on_tmpfs {
                    // It holds a secret: keyed, so the record is no oracle for guesses.
                    let key = self.secrets.loaded_key()?;
                    Some(crate::secrets::config_mac(&key, &b))
                } else {
                    Some(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&b)))
                }
            });
            self.drift.watch_rootfs(&rootfs.path, true);
            let pid = self.start_with_egress(id, &bundle.dir, out, err, routes)?;
            Ok::<_, HostError>((pid, config_sha256))
        })();
        if on_tmpfs {
            // The env = true values: this copy is no longer needed.
            for e in &mut spec.env {
                zeroize::Zeroize::zeroize(e);
            }
        }
        let (pid, config_sha256) = started.inspect_err(|_| self.remove_memory_files(id))?;
        Ok(Launched {
            pid,
            config_sha256,
            rootfs: Some(rootfs.path.clone()),
            drift: found,
        })
    }

    fn watch(&self, service: &str, inst: &Instance, spec: &ServiceSpec, child: bool) -> Watch {
        let health = Arc::new(HealthCell::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (health.clone(), stop.clone());
        let (pid, port, check) = (inst.pid, spec.port, spec.health.clone());
        // With `proxy_protocol` the instance expects a PROXY v2 header on every connection:
        // kiln's checks send the LOCAL form (no client address).
        let preamble = if spec.proxy_protocol {
            crate::proxy::proxyv2::local_header()
        } else {
            Vec::new()
        };
        if !child {
            // An adopted instance's output FIFO is read again.
            let fifo = bundle_dir(&self.bundles_dir, &self.tag, &inst.id).join("output.fifo");
            self.read_output(service, &inst.id, &fifo);
        }
        // Started with the instance; an adopted one gets its listeners again. If that fails
        // the instance cannot reach what it declares: its health checks fail with the
        // reason (so the service's message says it, and the instance is replaced).
        let mut egress = lock(&self.egress).remove(&inst.id);
        let mut egress_down = None;
        if egress.is_none() && !spec.egress.is_empty() {
            match crate::egress::routes(&spec.egress)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
                .and_then(|routes| start_egress(inst.pid, routes))
            {
                Ok(eg) => egress = Some(eg),
                Err(e) => {
                    let msg = format!("egress of {} not restored: {e}", inst.id);
                    eprintln!("kiln serve: {msg}");
                    self.logs.push(service, "", format!("kiln serve: {msg}"));
                    egress_down = Some(msg);
                }
            }
        }
        let clock = self.clock.clone();
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let failure = if let Some(e) = &egress_down {
                    Some(e.clone())
                } else {
                    match &check.check {
                        HealthCheck::HttpGet { path } => {
                            match kiln_runtime::http_get_in_netns_after(
                                pid,
                                port,
                                path,
                                check.timeout,
                                &preamble,
                            ) {
                                Ok(code) if (200..400).contains(&code) => None,
                                Ok(code) => Some(format!("GET {path}: HTTP {code}")),
                                Err(e) => Some(format!("GET {path}: {e}")),
                            }
                        }
                        HealthCheck::Tcp => kiln_runtime::connect_in_netns(
                            pid,
                            SocketAddr::from(([127, 0, 0, 1], port)),
                            check.timeout,
                        )
                        .and_then(|mut s| {
                            if preamble.is_empty() {
                                Ok(())
                            } else {
                                std::io::Write::write_all(&mut s, &preamble)
                            }
                        })
                        .err()
                        .map(|e| format!("connect :{port}: {e}")),
                    }
                };
                match failure {
                    None => {
                        h.ok_streak.fetch_add(1, Ordering::Relaxed);
                        h.fail_streak.store(0, Ordering::Relaxed);
                        h.ever_ok.store(true, Ordering::Relaxed);
                        let _ = h.first_ok_ms.set(clock.now_ms());
                    }
                    Some(e) => {
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
        Watch {
            health,
            stop,
            sockets: kiln_runtime::NetnsSockets::new(inst.pid).ok().map(Arc::new),
            egress,
        }
    }

    fn dial(&self, pid: u32, port: u16, watch: Option<&Watch>) -> Arc<dyn Dial> {
        Arc::new(NetnsDial {
            pid,
            port,
            sockets: watch.and_then(|w| w.sockets.clone()),
        })
    }

    fn kill(&self, id: &str) {
        let _ = self.runtime.kill(id, libc::SIGKILL);
    }

    fn destroy(&self, id: &str, pid: u32) {
        if let Some(eg) = lock(&self.egress).remove(id) {
            eg.close();
        }
        let _ = self.runtime.kill(id, libc::SIGKILL);
        let _ = self.runtime.delete(id, true);
        let _ = kiln_runtime::try_reap(pid);
        let _ = std::fs::remove_dir_all(self.bundles_dir.join(id));
        self.remove_cgroup_parent(id);
        self.remove_memory_files(id);
    }

    fn delete(&self, id: &str) {
        let _ = self.runtime.delete(id, true);
        self.remove_cgroup_parent(id);
        self.remove_memory_files(id);
    }

    fn prepare_debug(
        &self,
        id: &str,
        rel: &Release,
        tools: &Path,
        terminal: bool,
    ) -> Result<Value, HostError> {
        let store = self.store()?;
        let digest: Digest = rel.image.digest.parse()?;
        let mut rootfs = kiln_runtime::unpack(&store, &digest, &self.rootfs_dir)?;
        self.drift
            .keep_inodes(&rel.image.digest, rootfs.inodes.take());
        if !rootfs.fresh && self.drift.is_condemned(&rootfs.path) {
            return Err(HostError::Drifted {
                image: rel.image.to_string(),
                why: "it is still in the cache".into(),
                drift: None,
            });
        }
        let mut spec = self.base_spec(id, &rootfs, rel)?;
        spec.args = vec!["/run/kiln-debug/busybox".into(), "sh".into()];
        spec.terminal = terminal;
        spec.set_env("PATH", "/run/kiln-debug:/usr/local/bin:/usr/bin:/bin");
        spec.set_env("PS1", &format!("[kiln debug {id}] $ "));
        spec.bind_mounts.push(kiln_runtime::BindMount {
            source: tools.to_path_buf(),
            destination: "/run/kiln-debug".into(),
        });
        spec.annotations
            .insert("dev.kiln.debug".into(), "true".into());
        let dir = self.fleet_dir.join("debug").join(id);
        Bundle::write(&dir, &spec, &rootfs.path)?;
        Ok(json!({"id": id, "bundle": dir, "runc_root": self.fleet_dir.join("runc")}))
    }

    fn end_debug(&self, id: &str) {
        let _ = self.runtime.kill(id, libc::SIGKILL);
        let _ = self.runtime.delete(id, true);
        let _ = std::fs::remove_dir_all(self.fleet_dir.join("debug").join(id));
        self.remove_cgroup_parent(id);
    }
}

/// Kiln's egress listeners inside the network namespace of `pid`, forwarding `routes`.
fn start_egress(pid: u32, routes: Vec<crate::egress::Route>) -> std::io::Result<Arc<Egress>> {
    Egress::start(
        routes,
        |a| kiln_runtime::listen_in_netns(pid, a),
        Caps::default(),
    )
    .map(Arc::new)
}

struct NetnsDial {
    pid: u32,
    port: u16,
    sockets: Option<Arc<kiln_runtime::NetnsSockets>>,
}

impl Dial for NetnsDial {
    fn dial(&self) -> std::io::Result<std::net::TcpStream> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        match &self.sockets {
            Some(s) => s.connect(addr, Duration::from_secs(1)),
            None => kiln_runtime::connect_in_netns(self.pid, addr, Duration::from_secs(1)),
        }
    }
}

/// Make sure the shared rootfs has a regular file at `/etc/hosts` for the instance's own
/// to be bound over, so runc never has to create one: an absent `/etc` or `/etc/hosts` is
/// created (the drift checks leave these out when the image has none; `/etc`'s mtime is
/// kept); a symlink or anything else there is refused.
pub(super) fn hosts_mount_point(rootfs: &Path) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let etc = rootfs.join("etc");
    let kept = match std::fs::symlink_metadata(&etc) {
        Ok(m) if m.is_dir() => m.modified().ok(),
        Ok(_) => {
            return Err(Error::other(
                "the image's /etc is not a directory, so kiln cannot give the instance its own /etc/hosts",
            ));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            std::fs::DirBuilder::new().mode(0o755).create(&etc)?;
            None
        }
        Err(e) => return Err(e),
    };
    let hosts = etc.join("hosts");
    match std::fs::symlink_metadata(&hosts) {
        Ok(m) if m.is_file() => return Ok(()),
        Ok(_) => {
            return Err(Error::other(
                "the image's /etc/hosts is not a regular file (a symlink?), so kiln cannot bind the instance's own over it",
            ));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&hosts)
    {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    if let Some(t) = kept {
        let dir = std::fs::File::open(&etc)?;
        dir.set_times(std::fs::FileTimes::new().set_modified(t))?;
    }
    Ok(())
}

/// Write an instance's `/etc/hosts` (read-only for everyone, bound read-only).
fn write_hosts(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let _ = std::fs::remove_file(path);
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444))
}
