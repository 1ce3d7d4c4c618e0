//! `kiln serve`: the reconciler, the supervisor of runc instances, the front
//! proxies and the API.
//!
//! One thread ticks the reconciler (every 100 ms, or at once when the API
//! changes the desired state). Each instance has a health-check thread and a
//! log reader. The reconciler compares desired with actual state and acts:
//! starts instances of a new release, switches the proxy, retires and
//! destroys old instances, replaces ones that exited, failed health checks
//! or outlived `max_lifetime` — never repairs one. Every such action is an
//! audit event. State is saved to the embedded database after each tick
//! that changed it.

use std::collections::{HashMap, VecDeque};
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kiln_audit::{Actor, AuditLog, Event, Resource};
use kiln_oci::{Digest, Store};
use kiln_runtime::{Bundle, InstanceSpec, Runtime};
use serde_json::{Value, json};

use crate::api::{Request, Response, socket_path};
use crate::deploy::{Deployment, HealthCheck, ImageRef, ServiceSpec, Strategy};
use crate::proxy::{Backend, Dial, Proxy, weights_for_step};
use crate::state::{Db, FleetState, Instance, Phase, Release, Rollout};

/// Decides whether an image may run: the trust policy (signatures,
/// provenance, approvals) and every blob digest. Implemented by the CLI with
/// `kiln verify`'s rules.
pub trait ImageGate: Send + Sync {
    /// `Ok(summary)` if `image` passes `policy`, else `Err(why)`.
    fn check(&self, image: &ImageRef, policy: &Path) -> Result<String, String>;
}

/// Settings of one daemon.
pub struct Options {
    pub state_dir: PathBuf,
    /// Tools mounted read-only into debug instances (e.g. a static busybox
    /// as `<dir>/busybox`).
    pub debug_tools: Option<PathBuf>,
}

/// How long a new instance may take to become healthy.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a rollout may take before it is aborted.
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a retiring instance may drain.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a retiring instance stays up after leaving the rotation, at least.
const RETIRE_GRACE: Duration = Duration::from_millis(500);
/// Unplanned replacements within 30 s that count as a crash loop.
const CRASH_LOOP: usize = 5;
/// Lines of output kept per service.
const LOG_LINES: usize = 5000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
struct HealthCell {
    ok_streak: AtomicU32,
    fail_streak: AtomicU32,
    ever_ok: AtomicBool,
    /// When the first check passed (ms since the epoch).
    first_ok_ms: std::sync::OnceLock<u64>,
    last_error: Mutex<String>,
}

struct Live {
    health: Arc<HealthCell>,
    /// Fresh sockets inside the instance's network namespace, for the proxy.
    sockets: Option<Arc<kiln_runtime::NetnsSockets>>,
    stop: Arc<AtomicBool>,
    /// Our child (started by this daemon): reaped with waitpid. Adopted
    /// instances are watched through /proc.
    child: bool,
}

struct DebugSession {
    service: String,
    expires: u64,
}

#[derive(Default)]
struct LogRing {
    lines: VecDeque<(u64, String)>,
    next: u64,
}

struct World {
    st: FleetState,
    live: HashMap<String, Live>,
    proxies: HashMap<String, (SocketAddr, Proxy, String)>,
    debug: HashMap<String, DebugSession>,
    /// Instances killed on purpose (chaos): their exit is not a crash.
    expected_exits: std::collections::HashSet<String>,
    dirty: bool,
}

struct Shared {
    opts: Options,
    fleet_dir: PathBuf,
    rootfs_dir: PathBuf,
    bundles_dir: PathBuf,
    runtime: Arc<dyn Runtime>,
    gate: Arc<dyn ImageGate>,
    audit: AuditLog,
    db: Db,
    world: Mutex<World>,
    wake: Condvar,
    logs: Arc<Logs>,
    stop: AtomicBool,
    exe_hashes: crate::drift::ExeHashes,
    /// inotify watchers, per unpacked root filesystem.
    watches: Mutex<HashMap<PathBuf, crate::drift::RootfsWatch>>,
    /// File manifests (the drift baselines), per image digest.
    baselines: Mutex<HashMap<String, Arc<Baseline>>>,
    /// When runtime checks and full re-hashes last ran.
    drift_clock: Mutex<(Instant, HashMap<PathBuf, Instant>)>,
    /// How often every root filesystem is fully re-hashed.
    full_scan: Duration,
    /// Inode records of unpacked root filesystems, per image digest (a
    /// cache of the state database's `rootfs-inodes` table).
    inodes: Mutex<HashMap<String, Arc<kiln_drift::InodeRecord>>>,
    /// Drifted root filesystems that could not be moved into quarantine:
    /// still at their cached path, so no instance may start on them until
    /// a retried quarantine succeeds.
    condemned: Mutex<std::collections::HashSet<PathBuf>>,
    /// When each root filesystem was last swept, and how often to.
    sweep_clock: Mutex<HashMap<PathBuf, Instant>>,
    sweep_every: Duration,
}

/// What an instance of one image must look like.
struct Baseline {
    manifest: kiln_sbom::FileManifest,
    /// The manifest's entries as a drift baseline (for the sweep).
    entries: Vec<kiln_drift::Entry>,
    /// path → sha256 of regular files.
    files: HashMap<String, String>,
    /// Declared ports (image config and `[baseline] ingress`).
    ports: Vec<u16>,
}

/// How often every unpacked root filesystem is fully re-hashed (PCI DSS
/// asks for at least weekly). `KILN_DRIFT_FULL_SECS` overrides it.
fn full_scan_interval() -> Duration {
    std::env::var("KILN_DRIFT_FULL_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(3600), Duration::from_secs)
}

/// How often every unpacked root filesystem gets the cheap metadata sweep
/// (`lstat` of every path: inode numbers and link counts, which inotify on
/// the rootfs cannot see change from outside). `KILN_DRIFT_SWEEP_SECS`
/// overrides the 5 s default (fractions allowed, at least 0.1 s).
fn sweep_interval() -> Duration {
    std::env::var("KILN_DRIFT_SWEEP_SECS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite())
        .map_or(Duration::from_secs(5), |s| {
            Duration::from_secs_f64(s.clamp(0.1, 86_400.0))
        })
}

/// Paths of a rootfs that are mount points in every instance.
const MOUNT_POINTS: [&str; 5] = ["/proc", "/sys", "/dev", "/tmp", "/run"];

/// The daemon.
pub struct Daemon {
    sh: Arc<Shared>,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Setup(String),
}

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> DaemonError + '_ {
    move |e| DaemonError::Setup(format!("{what}: {e}"))
}

/// The privacy-relevant settings of an image's `[baseline]`: a change in any
/// of them may only roll out all-or-nothing.
pub const PRIVACY_KEYS: [&str; 6] = [
    "log_level",
    "tls_min_version",
    "ingress",
    "egress",
    "encryption_at_rest",
    "pii",
];

/// The privacy-relevant differences between two baselines, as
/// `key: old → new`.
pub fn privacy_diff(old: Option<&Value>, new: Option<&Value>) -> Vec<String> {
    let get = |v: Option<&Value>, k: &str| v.and_then(|v| v.get(k)).cloned().unwrap_or(Value::Null);
    PRIVACY_KEYS
        .iter()
        .filter_map(|k| {
            let (a, b) = (get(old, k), get(new, k));
            (a != b).then(|| format!("{k}: {a} → {b}"))
        })
        .collect()
}

/// What makes a release: a failed rollout of the same is not retried until a
/// new apply changes it.
fn fingerprint(spec: &ServiceSpec) -> String {
    format!(
        "{}|{}|{:?}|{:?}",
        spec.image, spec.port, spec.env, spec.tmpfs_mb
    )
}

fn instance_fields_differ(a: &ServiceSpec, b: &ServiceSpec) -> bool {
    a.image != b.image || a.port != b.port || a.env != b.env || a.tmpfs_mb != b.tmpfs_mb
}

impl Daemon {
    /// Open the state, adopt or clean up what a previous daemon left, and
    /// get ready to serve. Call [`Daemon::run`] next.
    pub fn new(
        opts: Options,
        runtime: Arc<dyn Runtime>,
        gate: Arc<dyn ImageGate>,
    ) -> Result<Daemon, DaemonError> {
        let fleet_dir = opts.state_dir.join("fleet");
        let rootfs_dir = fleet_dir.join("rootfs");
        let bundles_dir = fleet_dir.join("instances");
        for d in [&fleet_dir, &rootfs_dir, &bundles_dir] {
            std::fs::create_dir_all(d).map_err(setup(&d.display().to_string()))?;
        }
        std::fs::set_permissions(&fleet_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(setup("fleet directory"))?;
        let db = Db::open(&fleet_dir.join("fleet.redb")).map_err(setup("state database"))?;
        let st = db.load().map_err(setup("state database"))?;
        let audit = AuditLog::open(&opts.state_dir).map_err(setup("audit log"))?;
        if let Some(why) = audit.log().poisoned() {
            return Err(DaemonError::Setup(format!(
                "the audit log refuses appends ({why}); run `kiln log verify`"
            )));
        }
        kiln_runtime::set_child_subreaper().map_err(setup("PR_SET_CHILD_SUBREAPER"))?;
        let sh = Arc::new(Shared {
            opts,
            fleet_dir,
            rootfs_dir,
            bundles_dir,
            runtime,
            gate,
            audit,
            db,
            world: Mutex::new(World {
                st,
                live: HashMap::new(),
                proxies: HashMap::new(),
                debug: HashMap::new(),
                expected_exits: std::collections::HashSet::new(),
                dirty: false,
            }),
            wake: Condvar::new(),
            logs: Arc::new(Logs::default()),
            stop: AtomicBool::new(false),
            exe_hashes: crate::drift::ExeHashes::default(),
            watches: Mutex::new(HashMap::new()),
            baselines: Mutex::new(HashMap::new()),
            drift_clock: Mutex::new((Instant::now(), HashMap::new())),
            full_scan: full_scan_interval(),
            inodes: Mutex::new(HashMap::new()),
            condemned: Mutex::new(std::collections::HashSet::new()),
            sweep_clock: Mutex::new(HashMap::new()),
            sweep_every: sweep_interval(),
        });
        sh.adopt();
        Ok(Daemon { sh })
    }

    /// Serve the API and reconcile until `stop` is set. Instances keep
    /// running when the daemon stops, so a restarted daemon re-adopts them.
    pub fn run(&self, stop: &'static AtomicBool) -> Result<(), DaemonError> {
        let sock = socket_path(&self.sh.opts.state_dir);
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock).map_err(setup(&sock.display().to_string()))?;
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))
            .map_err(setup("API socket"))?;
        listener
            .set_nonblocking(true)
            .map_err(setup("API socket"))?;
        let sh = self.sh.clone();
        let api = std::thread::spawn(move || {
            while !sh.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let sh = sh.clone();
                        std::thread::spawn(move || sh.serve_client(s));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        });
        while !stop.load(Ordering::Relaxed) {
            self.sh.tick();
            let w = lock(&self.sh.world);
            let _ = self
                .sh
                .wake
                .wait_timeout(w, Duration::from_millis(100))
                .map(|(g, _)| drop(g));
        }
        self.sh.stop.store(true, Ordering::Relaxed);
        let _ = api.join();
        let mut w = lock(&self.sh.world);
        for live in w.live.values() {
            live.stop.store(true, Ordering::Relaxed);
        }
        for (_, (_, p, _)) in w.proxies.drain() {
            p.stop();
        }
        let _ = self.sh.db.save(&w.st);
        let _ = std::fs::remove_file(&sock);
        Ok(())
    }
}

impl Shared {
    /// Record the event of a change a client asked for, before making it:
    /// a change whose event cannot be recorded is refused.
    fn record_first(&self, e: Event) -> Result<(), String> {
        self.audit.record(&e).map(|_| ()).map_err(|err| {
            format!(
                "could not record {} in the audit log ({err}); nothing was changed",
                e.action
            )
        })
    }

    fn record(&self, e: Event) {
        if let Err(err) = self.audit.record(&e) {
            eprintln!(
                "kiln serve: could not record {} in the audit log: {err}",
                e.action
            );
        }
    }

    fn event(&self, action: &str, service: &str) -> Event {
        Event::new(action, "kiln serve").resource(Resource::new("service", service))
    }

    /// Re-adopt instances that survived a daemon restart; forget the rest.
    fn adopt(&self) {
        let mut w = lock(&self.world);
        let known = self.runtime.list().unwrap_or_default();
        let names: Vec<String> = w.st.services.keys().cloned().collect();
        let mut keep = std::collections::HashSet::new();
        for name in names {
            let ids: Vec<String> = w.st.services[&name].instances.keys().cloned().collect();
            for id in ids {
                let inst = w.st.services[&name].instances[&id].clone();
                let running = known
                    .iter()
                    .any(|s| s.id == id && s.pid == inst.pid && s.pid != 0 && pid_alive(s.pid));
                if running {
                    let spec = w.st.services[&name]
                        .release(&inst.release)
                        .map(|r| r.spec.clone());
                    if let Some(spec) = spec {
                        let live = self.watch(&name, &inst, &spec, false);
                        // Seed health from the phase it had.
                        if inst.phase != Phase::Starting {
                            live.health.ever_ok.store(true, Ordering::Relaxed);
                            live.health.ok_streak.store(1, Ordering::Relaxed);
                        }
                        w.live.insert(id.clone(), live);
                        keep.insert(id);
                        continue;
                    }
                }
                let _ = self.runtime.delete(&id, true);
                if let Some(svc) = w.st.services.get_mut(&name) {
                    svc.instances.remove(&id);
                }
                self.record(
                    self.event("instance.replace", &name)
                        .resource(Resource::new("instance", &id))
                        .reason(Some("not running when kiln serve restarted")),
                );
                w.dirty = true;
            }
        }
        // Containers in kiln's runc root that no state knows: orphans.
        for s in known {
            if !keep.contains(&s.id) {
                let _ = self.runtime.delete(&s.id, true);
            }
        }
    }

    fn tick(&self) {
        let mut w = lock(&self.world);
        let mut names: Vec<String> = w.st.desired.services.keys().cloned().collect();
        for n in w.st.services.keys() {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        for name in names {
            if let Err(e) = self.reconcile(&mut w, &name)
                && let Some(svc) = w.st.services.get_mut(&name)
                && svc.message != e
            {
                svc.message = e;
                w.dirty = true;
            }
        }
        self.drift_tick(&mut w);
        let now = now_ms();
        let expired: Vec<String> = w
            .debug
            .iter()
            .filter(|(_, d)| d.expires <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(d) = w.debug.remove(&id) {
                self.end_debug(&id, &d.service, "TTL expired");
            }
        }
        if w.dirty {
            if let Err(e) = self.db.save(&w.st) {
                eprintln!("kiln serve: saving state: {e}");
            }
            w.dirty = false;
        }
    }

    fn reconcile(&self, w: &mut World, name: &str) -> Result<(), String> {
        let desired = w.st.desired.services.get(name).cloned();
        self.monitor(w, name, desired.as_ref());
        let Some(spec) = desired else {
            return self.teardown(w, name);
        };
        self.ensure_proxy(w, name, spec.listen)?;
        self.plan_release(w, name, &spec)?;
        self.progress_rollout(w, name, &spec);
        self.maintain(w, name, &spec);
        self.sync_rotation(w, name);
        self.retire(w, name);
        Ok(())
    }

    /// Watch every instance: exits, health, start timeouts.
    fn monitor(&self, w: &mut World, name: &str, desired: Option<&ServiceSpec>) {
        let now = now_ms();
        let Some(svc) = w.st.services.get(name) else {
            return;
        };
        let ids: Vec<String> = svc.instances.keys().cloned().collect();
        for id in ids {
            let Some(inst) = w.st.services[name].instances.get(&id).cloned() else {
                continue;
            };
            let spec = w.st.services[name]
                .release(&inst.release)
                .map(|r| r.spec.clone())
                .or_else(|| desired.cloned());
            let unhealthy_after = spec.as_ref().map_or(3, |s| s.health.unhealthy_after.max(1));
            let healthy_after = spec.as_ref().map_or(1, |s| s.health.healthy_after.max(1));
            let live = w.live.get(&id);
            let exited = match live {
                Some(l) if l.child => match kiln_runtime::try_reap(inst.pid) {
                    Ok(Some(status)) => Some(describe_wait(status)),
                    Ok(None) => None,
                    Err(_) => (!pid_alive(inst.pid)).then(|| "exited".to_string()),
                },
                _ => (!pid_alive(inst.pid)).then(|| "exited".to_string()),
            };
            let health = live.map(|l| l.health.clone());
            let reason = if let Some(how) = exited {
                Some(format!("instance {how}"))
            } else if let Some(h) = &health {
                let fails = h.fail_streak.load(Ordering::Relaxed);
                let oks = h.ok_streak.load(Ordering::Relaxed);
                if inst.phase != Phase::Retiring
                    && h.ever_ok.load(Ordering::Relaxed)
                    && fails >= unhealthy_after
                {
                    Some(format!(
                        "unhealthy: {fails} consecutive failed health checks ({})",
                        lock(&h.last_error)
                    ))
                } else if inst.phase == Phase::Starting && oks >= healthy_after {
                    if let Some(i) =
                        w.st.services
                            .get_mut(name)
                            .and_then(|s| s.instances.get_mut(&id))
                    {
                        i.phase = Phase::Healthy;
                        i.start_to_healthy_ms =
                            h.first_ok_ms.get().map(|t| t.saturating_sub(inst.started));
                        w.dirty = true;
                    }
                    None
                } else if inst.phase == Phase::Starting
                    && now.saturating_sub(inst.started) > START_TIMEOUT.as_millis() as u64
                {
                    Some(format!(
                        "never became healthy in {} s ({})",
                        START_TIMEOUT.as_secs(),
                        lock(&h.last_error)
                    ))
                } else {
                    None
                }
            } else {
                None
            };
            let Some(reason) = reason else { continue };
            self.remove_instance(w, name, &id);
            let deliberate = w.expected_exits.remove(&id);
            let svc = w.st.services.entry(name.to_string()).or_default();
            if inst.phase == Phase::Retiring {
                continue;
            }
            if !deliberate {
                svc.restarts.push(now);
            }
            svc.restarts.retain(|t| now.saturating_sub(*t) < 30_000);
            let n = svc.restarts.len();
            if n >= CRASH_LOOP {
                let delay = (250u64 << (n - CRASH_LOOP).min(7)).min(30_000);
                svc.backoff_until = now + delay;
                svc.message = format!(
                    "crash loop: {n} replacements in 30 s, next start in {:.1} s (last: {reason})",
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
            self.record(
                self.event("instance.replace", name)
                    .resource(Resource::new("instance", &id))
                    .resource(Resource::new("release", &inst.release))
                    .reason(Some(&reason))
                    .detail("outcome", "replaced by a new instance of the same release"),
            );
        }
    }

    /// Stop watching, kill and delete an instance, and forget it.
    fn remove_instance(&self, w: &mut World, name: &str, id: &str) {
        if let Some(l) = w.live.remove(id) {
            l.stop.store(true, Ordering::Relaxed);
        }
        let _ = self.runtime.kill(id, libc::SIGKILL);
        let _ = self.runtime.delete(id, true);
        if let Some(svc) = w.st.services.get_mut(name)
            && let Some(inst) = svc.instances.remove(id)
        {
            let _ = kiln_runtime::try_reap(inst.pid);
        }
        let _ = std::fs::remove_dir_all(self.bundles_dir.join(id));
        w.dirty = true;
    }

    /// The service left the desired state: drain and destroy it.
    fn teardown(&self, w: &mut World, name: &str) -> Result<(), String> {
        let Some(svc) = w.st.services.get_mut(name) else {
            return Ok(());
        };
        let now = now_ms();
        for inst in svc.instances.values_mut() {
            if inst.phase != Phase::Retiring {
                inst.phase = Phase::Retiring;
                inst.in_rotation = false;
                inst.retiring_since = now;
                inst.retire_reason = Some("service destroyed".into());
            }
        }
        svc.rollout = None;
        w.dirty = true;
        self.sync_rotation(w, name);
        self.retire(w, name);
        if w.st
            .services
            .get(name)
            .is_some_and(|s| s.instances.is_empty())
        {
            w.st.services.remove(name);
            if let Some((_, p, _)) = w.proxies.remove(name) {
                p.stop();
            }
            self.record(
                self.event("service.destroy", name)
                    .detail("instances_left", 0),
            );
        }
        Ok(())
    }

    fn ensure_proxy(&self, w: &mut World, name: &str, listen: SocketAddr) -> Result<(), String> {
        if let Some((addr, _, _)) = w.proxies.get(name) {
            if *addr == listen {
                return Ok(());
            }
            if let Some((_, p, _)) = w.proxies.remove(name) {
                p.stop();
            }
        }
        let p = Proxy::start(listen).map_err(|e| format!("front proxy on {listen}: {e}"))?;
        w.proxies
            .insert(name.to_string(), (listen, p, String::new()));
        Ok(())
    }

    fn next_id(&self, w: &mut World, prefix: &str) -> String {
        w.st.seq += 1;
        format!("{prefix}{:04}", w.st.seq)
    }

    /// Start a rollout when the desired instance configuration differs from
    /// the active release; update the active release in place otherwise.
    fn plan_release(&self, w: &mut World, name: &str, spec: &ServiceSpec) -> Result<(), String> {
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
    fn image_config(&self, digest: &str) -> Result<kiln_oci::ImageConfig, String> {
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
    fn baseline(&self, image: &ImageRef) -> Option<Value> {
        let c = self.image_config(&image.digest).ok()?;
        serde_json::from_str(c.config.labels.get("dev.kiln.baseline")?).ok()
    }

    fn progress_rollout(&self, w: &mut World, name: &str, spec: &ServiceSpec) {
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
    fn switch(&self, w: &mut World, name: &str, r: &Rollout, rel: &Release) {
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
    fn abort(&self, w: &mut World, name: &str, r: &Rollout, why: &str) {
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
    fn maintain(&self, w: &mut World, name: &str, spec: &ServiceSpec) {
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

    fn start_retiring(&self, w: &mut World, name: &str, id: &str, why: &str) {
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
    fn retire(&self, w: &mut World, name: &str) {
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
    fn sync_rotation(&self, w: &mut World, name: &str) {
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

    /// Create, start and watch one instance of `rel`.
    fn start_instance(
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
    fn stdio(&self, service: &str, id: &str, dir: &Path) -> Result<(OwnedFd, OwnedFd), String> {
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

    fn read_output(&self, service: &str, id: &str, fifo: &Path) {
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
    fn watch(&self, service: &str, inst: &Instance, spec: &ServiceSpec, child: bool) -> Live {
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

    fn end_debug(&self, id: &str, service: &str, why: &str) {
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

    /// Watch a root filesystem that was just unpacked or checked.
    fn ensure_watch(&self, rootfs: &kiln_runtime::Rootfs) {
        self.watch_rootfs(&rootfs.path, true);
    }

    /// Start an inotify watcher for `root` unless it has one. A new watcher
    /// asks for a check at once unless the tree is known to be `clean`.
    fn watch_rootfs(&self, root: &Path, clean: bool) {
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

    fn drift_baseline(&self, digest: &str) -> Result<Arc<Baseline>, String> {
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
    fn keep_inodes(&self, digest: &str, record: Option<kiln_drift::InodeRecord>) {
        let Some(record) = record else { return };
        if let Err(e) = self.db.save_inodes(digest, &record) {
            // Held in memory still; after a restart the rootfs has no record
            // and is replaced by a fresh unpack (see `fs_drift`).
            eprintln!("kiln serve: {e}");
        }
        lock(&self.inodes).insert(digest.to_string(), Arc::new(record));
    }

    /// The inode record of the rootfs of `digest`, if one was kept.
    fn inode_record(&self, digest: &str) -> Option<Arc<kiln_drift::InodeRecord>> {
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
    fn unpack_fresh(
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
    fn forget_inodes(&self, digest: &str) {
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
    fn fs_drift(&self, rootfs: &Path, digest: &str) -> Result<Option<Value>, String> {
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
    fn sweep_drift(&self, rootfs: &Path, digest: &str) -> Result<Option<Value>, String> {
        let b = self.drift_baseline(digest)?;
        let Some(record) = self.inode_record(digest) else {
            return Ok(Some(no_record_diff()));
        };
        let diff = crate::drift::sweep_rootfs(rootfs, &b.entries, Some(&record), &MOUNT_POINTS)
            .map_err(|e| e.to_string())?;
        Ok(diff.map(|d| serde_json::to_value(&d).unwrap_or(Value::Null)))
    }

    /// Runtime checks of one instance.
    fn runtime_drift(
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
    fn quarantine_rootfs(&self, rootfs: &Path, digest: &str) -> Result<PathBuf, String> {
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
    fn rootfs_drifted(
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

    fn instance_drifted(
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
    fn drift_tick(&self, w: &mut World) {
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

    fn drift_check(&self, target: Option<&str>, actor: &Actor) -> Response {
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

    fn serve_client(self: Arc<Self>, s: UnixStream) {
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
            Request::Rollback { service, reason } => self.rollback(&service, reason, &actor),
            Request::Destroy { service, reason } => self.destroy(&service, reason, &actor),
            Request::Logs { service, follow } => {
                self.stream_logs(&s, &service, follow);
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
            Request::Images => {
                Response::ok(json!({"images": lock(&self.world).st.image_digests()}))
            }
        };
        let _ = reply(&s, &resp);
    }

    fn status(&self) -> Value {
        let w = lock(&self.world);
        let now = now_ms();
        let mut services = Vec::new();
        for (name, svc) in &w.st.services {
            let desired = w.st.desired.services.get(name);
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
            let stats = w
                .proxies
                .get(name)
                .map(|(_, p, _)| serde_json::to_value(p.stats()).unwrap_or(Value::Null));
            services.push(json!({
                "name": name,
                "listen": desired.map(|d| d.listen.to_string()),
                "replicas": desired.map(|d| d.replicas),
                "active": svc.active_release().map(|r| json!({"id": r.id, "image": r.image.to_string(), "created": r.created})),
                "rollout": svc.rollout.as_ref().map(|r| json!({"release": r.release, "from": r.from, "canary": r.canary, "step": r.step, "note": r.note, "failures": r.failures})),
                "healthy": healthy,
                "converged": svc.rollout.is_none() && desired.is_some_and(|d| healthy == d.replicas as usize) && svc.instances.values().all(|i| i.phase != Phase::Retiring),
                "failed": svc.failed.is_some(),
                "message": svc.message,
                "instances": instances,
                "proxy": stats,
            }));
        }
        json!({ "services": services })
    }

    fn apply(&self, path: &Path, reason: Option<String>, actor: &Actor) -> Response {
        let mut d = match Deployment::load(path) {
            Ok(d) => d,
            Err(e) => return Response::err(e),
        };
        let mut w = lock(&self.world);
        // Ports: new listen addresses must be free on the host.
        for (name, spec) in &d.services {
            let ours = w.proxies.values().any(|(a, _, _)| *a == spec.listen);
            if !ours && let Err(e) = crate::deploy::check_listen_free(name, spec.listen) {
                return Response::err(e);
            }
        }
        // Only verified images: refuse the whole apply before changing anything.
        for (name, spec) in &d.services {
            let current = w.st.desired.services.get(name);
            if current.is_some_and(|c| c.image == spec.image && c.policy == spec.policy) {
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
        if let Some(r) = &reason {
            for s in d.services.values_mut() {
                s.reason.get_or_insert_with(|| r.clone());
            }
        }
        let plan = crate::deploy::plan(&w.st.desired, &d);
        let mut ev = Event::new("fleet.apply", "kiln apply")
            .resource(Resource::new("deployment", path.display().to_string()))
            .reason(reason.as_deref())
            .detail("plan", serde_json::to_value(&plan).unwrap_or(Value::Null));
        ev.actor = actor.clone();
        if let Err(e) = self.record_first(ev) {
            return Response::err(e);
        }
        for (name, spec) in &d.services {
            let changed = w.st.desired.services.get(name) != Some(spec);
            if changed && let Some(svc) = w.st.services.get_mut(name) {
                svc.failed = None;
            }
        }
        w.st.desired = d;
        w.dirty = true;
        drop(w);
        self.wake.notify_all();
        Response::ok(json!({"plan": plan, "text": plan.to_string()}))
    }

    fn rollback(&self, service: &str, reason: Option<String>, actor: &Actor) -> Response {
        let mut w = lock(&self.world);
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
        if let Err(why) = self.gate.check(&prev.image, &spec.policy) {
            return Response::err(format!(
                "rollback target {} is refused: {why}; nothing was changed",
                prev.image
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
            .detail("to_release", prev.id.clone());
        ev.actor = actor.clone();
        if let Err(e) = self.record_first(ev) {
            return Response::err(e);
        }
        let mut next = spec.clone();
        next.image = prev.image.clone();
        next.env = prev.spec.env.clone();
        next.port = prev.spec.port;
        next.tmpfs_mb = prev.spec.tmpfs_mb;
        next.reason = reason.clone().or(Some(format!("rollback to {}", prev.id)));
        w.st.desired.services.insert(service.to_string(), next);
        if let Some(svc) = w.st.services.get_mut(service) {
            svc.failed = None;
        }
        w.dirty = true;
        drop(w);
        self.wake.notify_all();
        Response::ok(
            json!({"service": service, "from": active, "to": prev.id, "image": prev.image.to_string()}),
        )
    }

    fn destroy(&self, service: &str, reason: Option<String>, actor: &Actor) -> Response {
        let mut w = lock(&self.world);
        if !w.st.desired.services.contains_key(service) {
            return Response::err(format!("unknown service {service:?}"));
        }
        let mut ev = self
            .event("fleet.destroy", service)
            .reason(reason.as_deref());
        ev.actor = actor.clone();
        if let Err(e) = self.record_first(ev) {
            return Response::err(e);
        }
        w.st.desired.services.remove(service);
        w.dirty = true;
        drop(w);
        self.wake.notify_all();
        Response::ok(json!({"destroying": service}))
    }

    fn stream_logs(&self, s: &UnixStream, service: &str, follow: bool) {
        {
            let w = lock(&self.world);
            if !w.st.services.contains_key(service) {
                let _ = reply(s, &Response::err(format!("unknown service {service:?}")));
                return;
            }
        }
        let mut next = 0u64;
        loop {
            let lines: Vec<String> = {
                let logs = lock(&self.logs.rings);
                let ring = logs.get(service);
                let lines = ring
                    .map(|r| {
                        r.lines
                            .iter()
                            .filter(|(n, _)| *n >= next)
                            .map(|(n, l)| (*n, l.clone()))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                if let Some((n, _)) = lines.last() {
                    next = n + 1;
                }
                lines.into_iter().map(|(_, l)| l).collect()
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

    fn debug_start(&self, service: &str, ttl_ms: u64, terminal: bool, actor: &Actor) -> Response {
        let Some(tools) = self.opts.debug_tools.clone() else {
            return Response::err("kiln serve has no debug tools directory");
        };
        let mut w = lock(&self.world);
        let Some(rel) =
            w.st.services
                .get(service)
                .and_then(|s| s.active_release())
                .cloned()
        else {
            return Response::err(format!("service {service:?} has no active release"));
        };
        let id = self.next_id(&mut w, &format!("debug-{service}-"));
        drop(w);
        let res = (|| -> Result<Value, String> {
            let store =
                Store::open(self.opts.state_dir.join("store")).map_err(|e| e.to_string())?;
            let digest: Digest = rel.image.digest.parse().map_err(|e| format!("{e}"))?;
            let mut rootfs = kiln_runtime::unpack(&store, &digest, &self.rootfs_dir)
                .map_err(|e| e.to_string())?;
            self.keep_inodes(&rel.image.digest, rootfs.inodes.take());
            if !rootfs.fresh && lock(&self.condemned).contains(&rootfs.path) {
                return Err(refuse_drifted(
                    &rel.image.to_string(),
                    "it is still in the cache",
                ));
            }
            let mut spec = InstanceSpec::from_image(&id, &rootfs).map_err(|e| e.to_string())?;
            spec.args = vec!["/run/kiln-debug/busybox".into(), "sh".into()];
            spec.terminal = terminal;
            spec.set_env("PATH", "/run/kiln-debug:/usr/local/bin:/usr/bin:/bin");
            spec.set_env("PS1", &format!("[kiln debug {id}] $ "));
            spec.bind_mounts.push(kiln_runtime::BindMount {
                source: tools.clone(),
                destination: "/run/kiln-debug".into(),
            });
            spec.annotations
                .insert("dev.kiln.debug".into(), "true".into());
            let dir = self.fleet_dir.join("debug").join(&id);
            Bundle::write(&dir, &spec, &rootfs.path).map_err(|e| e.to_string())?;
            Ok(
                json!({"id": id, "bundle": dir, "runc_root": self.runtime_root(), "image": rel.image.to_string(), "ttl_ms": ttl_ms}),
            )
        })();
        match res {
            Ok(v) => {
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
                        expires: now_ms() + ttl_ms,
                    },
                );
                Response::ok(v)
            }
            Err(e) => Response::err(format!("debug instance for {service}: {e}")),
        }
    }

    fn runtime_root(&self) -> PathBuf {
        self.fleet_dir.join("runc")
    }

    fn chaos(
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
            let mut seed = now_ms() ^ 0x9E37_79B9_7F4A_7C15;
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
                    let _ = sh.runtime.kill(&id, libc::SIGKILL);
                    sh.record(
                        sh.event("chaos.kill", &service)
                            .resource(Resource::new("instance", &id))
                            .detail("signal", "SIGKILL"),
                    );
                    sh.wake.notify_all();
                }
            }
        });
        Response::ok(json!({"service": service, "every_ms": every_ms, "for_ms": for_ms}))
    }
}

/// Output of every service's instances, a bounded ring per service.
#[derive(Default)]
struct Logs {
    rings: Mutex<HashMap<String, LogRing>>,
    cv: Condvar,
}

impl Logs {
    fn push(&self, service: &str, line: String) {
        let mut m = lock(&self.rings);
        let ring = m.entry(service.to_string()).or_default();
        let n = ring.next;
        ring.next += 1;
        ring.lines.push_back((n, line));
        while ring.lines.len() > LOG_LINES {
            ring.lines.pop_front();
        }
        self.cv.notify_all();
    }
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

fn reply(mut s: &UnixStream, r: &Response) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(r).map_err(std::io::Error::other)?;
    line.push(b'\n');
    s.write_all(&line)
}

/// The caller, from SO_PEERCRED; `None` unless root or the daemon's user.
fn peer_actor(s: &UnixStream) -> Option<Actor> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if rc != 0 || (cred.uid != 0 && cred.uid != me) {
        return None;
    }
    Some(Actor::for_uid(cred.uid))
}

fn pid_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // State is the field after the ")" that ends the command name.
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|st| st != "Z" && st != "X"),
        Err(_) => false,
    }
}

fn describe_wait(status: i32) -> String {
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        let name = match sig {
            libc::SIGKILL => "SIGKILL".to_string(),
            libc::SIGTERM => "SIGTERM".to_string(),
            libc::SIGSEGV => "SIGSEGV".to_string(),
            n => format!("signal {n}"),
        };
        format!("was killed by {name}")
    } else if libc::WIFEXITED(status) {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    } else {
        format!("stopped (wait status {status})")
    }
}

/// The diff of a root filesystem that has no unpack-time inode record.
fn no_record_diff() -> Value {
    json!({"inode_record": "missing"})
}

fn is_no_record(diff: &Value) -> bool {
    diff.get("inode_record").and_then(Value::as_str) == Some("missing")
}

/// Why no instance starts on a drifted root filesystem still in the cache.
fn refuse_drifted(image: &str, why: &str) -> String {
    format!(
        "the root filesystem of {image} drifted and could not be moved away ({why}); refusing to start on it"
    )
}
